//! Append facts, read a context, decide, and append only if the context is
//! unchanged; a second decision on the same stale context is refused.
//!
//! Run: `cargo run --example basic_memory`

#![allow(clippy::print_stdout)] // an example reports to its user

use factstr::{EventFilter, EventQuery, EventStore, EventStoreError, NewEvent};
use factstr_memory::MemoryStore;
use serde_json::json;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let store = MemoryStore::new();

    store.append(vec![
        NewEvent::new("account-opened", json!({"account": "a1", "owner": "Ada"})),
        NewEvent::new("money-deposited", json!({"account": "a1", "amount": 100})),
    ])?;

    // The context of a withdrawal: everything that moves money on account a1.
    let context = EventQuery::all().with_filters([EventFilter::for_event_types([
        "money-deposited",
        "money-withdrawn",
    ])
    .with_payload_predicates([json!({"account": "a1"})])]);
    let seen = store.query(&context)?;
    let balance: i64 = seen
        .event_records
        .iter()
        .map(|record| {
            let amount = record.payload["amount"].as_i64().unwrap_or(0);
            if record.event_type == "money-deposited" {
                amount
            } else {
                -amount
            }
        })
        .sum();
    println!(
        "balance of a1 is {balance} at context version {}",
        version_text(seen.current_context_version)
    );

    // Decide on what was read, and append only if nothing changed since.
    let withdrawal = vec![NewEvent::new(
        "money-withdrawn",
        json!({"account": "a1", "amount": 60}),
    )];
    let committed = store.append_if(withdrawal.clone(), &context, seen.current_context_version)?;
    println!(
        "withdrew 60 as sequence number {}",
        committed.first_sequence_number
    );

    // A second withdrawal decided on the same (now stale) balance is refused.
    match store.append_if(withdrawal, &context, seen.current_context_version) {
        Err(EventStoreError::ConditionalAppendConflict { expected, actual }) => {
            println!(
                "second withdrawal refused: context moved from version {} to {}",
                version_text(expected),
                version_text(actual)
            );
        }
        Err(other) => return Err(other.into()),
        Ok(_) => return Err("a withdrawal decided on a stale balance committed".into()),
    }

    let all = store.query(&EventQuery::all())?;
    println!("the log holds {} facts", all.event_records.len());
    Ok(())
}

/// A context version as a reader says it: `None` means no fact matched yet.
fn version_text(version: Option<u64>) -> String {
    version.map_or_else(
        || "none (no matching fact)".to_owned(),
        |version| version.to_string(),
    )
}
