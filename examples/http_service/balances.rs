//! The balances read model, fed by the durable stream "balances".
//!
//! The store keeps the stream's cursor; the model keeps itself in a JSON
//! file together with the last sequence number it applied. After a restart
//! the model is loaded from the file and the stream replays only the facts
//! after its cursor, so nothing is applied twice; a batch delivered again
//! after a crash (between saving the model and storing the cursor) is
//! recognised by its sequence numbers and skipped. A service with a database
//! of its own would keep the model there instead, in the same transaction as
//! its progress.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use factstr::{
    AsyncEventStore, DurableStream, EventQuery, EventRecord, EventStoreError, EventStream,
    HandleStream, StreamHandlerError,
};
use serde::{Deserialize, Serialize};

use crate::accounts::{ACCOUNT_OPENED, MONEY_DEPOSITED, MONEY_WITHDRAWN};

/// The name under which the store keeps the projection's cursor.
pub(crate) const STREAM_NAME: &str = "balances";

#[derive(Clone, Default, Serialize, Deserialize)]
struct Model {
    applied_through: u64,
    balances: BTreeMap<String, i64>,
}

impl Model {
    fn apply(&mut self, batch: &[EventRecord]) {
        for record in batch {
            if record.sequence_number <= self.applied_through {
                continue; // delivered again after a crash: applied already
            }
            let account = record.payload["account"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            let amount = record.payload["amount"].as_i64().unwrap_or(0);
            let balance = self.balances.entry(account).or_default();
            match record.event_type.as_str() {
                MONEY_DEPOSITED => *balance = balance.saturating_add(amount),
                MONEY_WITHDRAWN => *balance = balance.saturating_sub(amount),
                _ => {}
            }
            self.applied_through = record.sequence_number;
        }
    }
}

/// The balances of every account, as far as the projection has applied the log.
pub(crate) struct Balances {
    model: Mutex<Model>,
    file: PathBuf,
    /// Handler calls since this process started: shows that a restart
    /// replays nothing it had applied.
    batches_handled: AtomicU64,
}

/// What the projection reports about itself.
#[derive(Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(crate) struct Progress {
    pub(crate) applied_through: u64,
    pub(crate) batches_handled: u64,
}

impl Balances {
    /// The model saved in `file`, or an empty one when the file does not exist.
    pub(crate) fn load(file: &Path) -> Result<Self, Box<dyn std::error::Error + Send + Sync>> {
        let model = match std::fs::read_to_string(file) {
            Ok(text) => serde_json::from_str(&text)
                .map_err(|error| format!("{} is not a balances file: {error}", file.display()))?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => Model::default(),
            Err(error) => return Err(format!("cannot read {}: {error}", file.display()).into()),
        };
        Ok(Self {
            model: Mutex::new(model),
            file: file.to_owned(),
            batches_handled: AtomicU64::new(0),
        })
    }

    /// The balance of `account`, if the model has seen it opened.
    pub(crate) fn balance(&self, account: &str) -> Option<i64> {
        self.model().balances.get(account).copied()
    }

    pub(crate) fn progress(&self) -> Progress {
        Progress {
            applied_through: self.model().applied_through,
            batches_handled: self.batches_handled.load(Ordering::SeqCst),
        }
    }

    /// Applies one delivered batch and saves the model before the stream
    /// may advance its cursor; the model in memory changes only once saved.
    fn handle(&self, batch: &[EventRecord]) -> Result<(), StreamHandlerError> {
        let mut model = self.model();
        let mut next = model.clone();
        next.apply(batch);
        save(&self.file, &next).map_err(|error| StreamHandlerError::new(error.to_string()))?;
        *model = next;
        self.batches_handled.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn model(&self) -> std::sync::MutexGuard<'_, Model> {
        self.model.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Writes the model to a temporary file and renames it over `file`, so a
/// crash leaves the old model or the new one, never half of one.
fn save(file: &Path, model: &Model) -> std::io::Result<()> {
    let text = serde_json::to_vec(model).map_err(std::io::Error::other)?;
    let temporary = file.with_extension("json.tmp");
    if let Some(folder) = file.parent() {
        std::fs::create_dir_all(folder)?;
    }
    std::fs::write(&temporary, text)?;
    std::fs::rename(&temporary, file)
}

/// Registers the projection's durable stream; returns once the facts after
/// its cursor are applied. Keep the returned stream: dropping it stops the
/// projection.
pub(crate) async fn start(
    store: &dyn AsyncEventStore,
    balances: Arc<Balances>,
) -> Result<EventStream, EventStoreError> {
    let money = EventQuery::for_event_types([ACCOUNT_OPENED, MONEY_DEPOSITED, MONEY_WITHDRAWN]);
    // The handler runs on the stream's own runtime, off the service's
    // workers: a short synchronous file write there never delays appends.
    let handle = HandleStream::new(move |batch: Vec<EventRecord>| {
        let balances = Arc::clone(&balances);
        async move { balances.handle(&batch) }
    });
    store
        .stream_to_durable(&DurableStream::new(STREAM_NAME), &money, handle)
        .await
}
