//! Several filtered live streams on one store: each receives exactly the
//! batches meant for it, in commit order, and an unsubscribed stream stops.
//!
//! Run: `cargo run --example live_subscriptions`

#![allow(clippy::print_stdout)] // an example reports to its user

use std::sync::mpsc;
use std::time::Duration;

use factstr::{EventFilter, EventQuery, EventStore, EventStoreError, HandleStream, NewEvent};
use factstr_memory::MemoryStore;
use serde_json::json;

/// A handler that forwards `name` and the batch's sequence numbers to `log`.
fn reporter(name: &'static str, log: &mpsc::Sender<String>) -> HandleStream {
    let log = log.clone();
    HandleStream::new(move |batch| {
        let numbers: Vec<String> = batch
            .iter()
            .map(|record| format!("#{}", record.sequence_number))
            .collect();
        let _ = log.send(format!("{name:<14} got {}", numbers.join(", ")));
        async { Ok(()) }
    })
}

fn main() -> Result<(), EventStoreError> {
    let store = MemoryStore::new();
    let (log, lines) = mpsc::channel();

    // Everything, for an audit trail.
    let audit = store.stream_all(reporter("audit", &log))?;
    // Only new accounts, for a welcome mail.
    let welcome = store.stream_to(
        &EventQuery::for_event_types(["account-opened"]),
        reporter("welcome", &log),
    )?;
    // Only euro deposits, for a currency report: type AND payload predicate.
    let euro_deposits = store.stream_to(
        &EventQuery::all().with_filters([EventFilter::for_event_types(["money-deposited"])
            .with_payload_predicates([json!({"currency": "EUR"})])]),
        reporter("euro deposits", &log),
    )?;

    store.append(vec![
        NewEvent::new("account-opened", json!({"account": "a1"})),
        NewEvent::new(
            "money-deposited",
            json!({"account": "a1", "amount": 5, "currency": "EUR"}),
        ),
    ])?;
    store.append(vec![NewEvent::new(
        "money-deposited",
        json!({"account": "a1", "amount": 7, "currency": "USD"}),
    )])?;

    // audit: 2 batches, welcome: 1, euro deposits: 1.
    for _ in 0..4 {
        println!(
            "{}",
            lines
                .recv_timeout(Duration::from_secs(10))
                .unwrap_or_default()
        );
    }

    welcome.unsubscribe();
    store.append(vec![NewEvent::new(
        "account-opened",
        json!({"account": "a2"}),
    )])?;
    println!(
        "{}",
        lines
            .recv_timeout(Duration::from_secs(10))
            .unwrap_or_default()
    );
    println!("(welcome was unsubscribed and did not get sequence 4)");
    drop((audit, euro_deposits));
    Ok(())
}
