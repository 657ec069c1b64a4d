//! A durable projection on SQLite that resumes after a restart.
//!
//! Each run records two page visits, then registers the durable stream
//! "visit-counter". Registration replays only what the stream has not handled
//! yet (its cursor is stored in the database), then returns. The read model
//! (visits per page) is saved in a JSON file next to the database together
//! with the last sequence number it applied, so a batch delivered twice
//! (possible after a crash) is applied once.
//!
//! Run it twice and watch it continue:
//!
//! ```text
//! cargo run --example durable_projection
//! cargo run --example durable_projection
//! ```
//!
//! The files go to `target/durable_projection/` (pass another folder as the
//! first argument).

#![allow(clippy::print_stdout)] // an example reports to its user

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use factstr::{
    DurableStream, EventQuery, EventRecord, EventStore, HandleStream, NewEvent, StreamHandlerError,
};
use factstr_sqlite::SqliteStore;
use serde_json::json;

/// The read model: visits per page, and how far it has applied the log.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct VisitCounter {
    applied_through: u64,
    visits: BTreeMap<String, u64>,
}

impl VisitCounter {
    fn load(path: &Path) -> Self {
        std::fs::read_to_string(path)
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default()
    }

    fn apply(&mut self, batch: &[EventRecord]) -> usize {
        let mut applied = 0;
        for record in batch {
            if record.sequence_number <= self.applied_through {
                continue; // delivered again after a crash: already counted
            }
            let page = record.payload["page"].as_str().unwrap_or("?").to_owned();
            *self.visits.entry(page).or_default() += 1;
            self.applied_through = record.sequence_number;
            applied += 1;
        }
        applied
    }

    fn save(&self, path: &Path) -> Result<(), StreamHandlerError> {
        let text = serde_json::to_string_pretty(self)
            .map_err(|error| StreamHandlerError::new(error.to_string()))?;
        std::fs::write(path, text).map_err(|error| StreamHandlerError::new(error.to_string()))
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let folder = std::env::args()
        .nth(1)
        .map_or_else(|| PathBuf::from("target/durable_projection"), PathBuf::from);
    let store = SqliteStore::open(folder.join("visits.db"))?;
    let model_path = folder.join("visit-counter.json");

    let run = store
        .query(&EventQuery::for_event_types(["page-visited"]))?
        .event_records
        .len()
        / 2
        + 1;
    store.append(vec![
        NewEvent::new("page-visited", json!({"page": "/home", "run": run})),
        NewEvent::new(
            "page-visited",
            json!({"page": format!("/run-{run}"), "run": run}),
        ),
    ])?;

    let model = Arc::new(Mutex::new(VisitCounter::load(&model_path)));
    let replayed = Arc::new(Mutex::new(0_usize));
    let handler = {
        let (model, replayed, model_path) = (
            Arc::clone(&model),
            Arc::clone(&replayed),
            model_path.clone(),
        );
        HandleStream::new(move |batch| {
            let (model, replayed, model_path) = (
                Arc::clone(&model),
                Arc::clone(&replayed),
                model_path.clone(),
            );
            async move {
                let mut model = model
                    .lock()
                    .map_err(|_| StreamHandlerError::new("model lock poisoned"))?;
                let applied = model.apply(&batch);
                model.save(&model_path)?;
                *replayed
                    .lock()
                    .map_err(|_| StreamHandlerError::new("poisoned"))? += applied;
                Ok(())
            }
        })
    };
    let stream = store.stream_to_durable(
        &DurableStream::new("visit-counter"),
        &EventQuery::for_event_types(["page-visited"]),
        handler,
    )?;

    let model = model.lock().map_err(|_| "poisoned")?;
    println!(
        "run {run}: the replay applied {} new visit(s)",
        replayed.lock().map_err(|_| "poisoned")?
    );
    println!(
        "the projection has applied the log through sequence {}",
        model.applied_through
    );
    for (page, visits) in &model.visits {
        println!("  {page}: {visits}");
    }
    println!("(run me again: the next run replays only its own two visits)");
    stream.unsubscribe();
    Ok(())
}
