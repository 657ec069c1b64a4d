//! A feature-owned read model kept current by `stream_to`.
//!
//! The "balances" feature owns its read model (account -> balance) and the
//! query of the facts it needs. A live stream delivers each committed batch of
//! those facts; the handler folds them into the model. Commands elsewhere only
//! append facts and never touch the model.
//!
//! Run: `cargo run --example account_projection`

#![allow(clippy::print_stdout)] // an example reports to its user

use std::collections::BTreeMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use factstr::{EventQuery, EventRecord, EventStore, EventStoreError, HandleStream, NewEvent};
use factstr_memory::MemoryStore;
use serde_json::json;

/// The balances feature: its query, its read model, and how facts change it.
#[derive(Default)]
struct Balances {
    by_account: Mutex<BTreeMap<String, i64>>,
    applied_through: Mutex<u64>,
    changed: Condvar,
}

impl Balances {
    fn query() -> EventQuery {
        EventQuery::for_event_types(["money-deposited", "money-withdrawn"])
    }

    fn apply(&self, batch: &[EventRecord]) {
        let mut balances = self.by_account.lock().unwrap_or_else(|e| e.into_inner());
        for record in batch {
            let account = record.payload["account"].as_str().unwrap_or("?").to_owned();
            let amount = record.payload["amount"].as_i64().unwrap_or(0);
            let change = if record.event_type == "money-deposited" {
                amount
            } else {
                -amount
            };
            *balances.entry(account).or_default() += change;
        }
        if let Some(last) = batch.last() {
            *self
                .applied_through
                .lock()
                .unwrap_or_else(|e| e.into_inner()) = last.sequence_number;
            self.changed.notify_all();
        }
    }

    /// Waits until the model has applied every fact up to `sequence_number`.
    fn wait_for(&self, sequence_number: u64) {
        let applied = self
            .applied_through
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        let _ = self
            .changed
            .wait_timeout_while(applied, Duration::from_secs(10), |applied| {
                *applied < sequence_number
            });
    }
}

fn main() -> Result<(), EventStoreError> {
    let store = MemoryStore::new();

    let balances = Arc::new(Balances::default());
    let model = Arc::clone(&balances);
    let _stream = store.stream_to(
        &Balances::query(),
        HandleStream::new(move |batch| {
            model.apply(&batch);
            async { Ok(()) }
        }),
    )?;

    store.append(vec![NewEvent::new(
        "account-opened",
        json!({"account": "a1"}),
    )])?;
    store.append(vec![
        NewEvent::new("money-deposited", json!({"account": "a1", "amount": 100})),
        NewEvent::new("money-deposited", json!({"account": "a2", "amount": 40})),
    ])?;
    let last = store.append(vec![NewEvent::new(
        "money-withdrawn",
        json!({"account": "a1", "amount": 30}),
    )])?;

    balances.wait_for(last.last_sequence_number);
    for (account, balance) in balances
        .by_account
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .iter()
    {
        println!("{account}: {balance}");
    }
    Ok(())
}
