//! The native half of `@factstr/factstr-node`.
//!
//! One class, `NativeStore`, wraps any FACTSTR store. The public JavaScript
//! API (`index.js`, described by `index.d.ts`) builds the documented classes
//! on top of it. The boundary is deliberately narrow and cheap:
//!
//! - batches of new events arrive as JSON text (`JSON.stringify` in JS is far
//!   faster than walking objects through Node-API); queries and expected
//!   versions arrive as JS values (they may hold `bigint`s);
//! - both are decoded by `factstr-interop`, whose errors name the field;
//! - every result is a JSON envelope, `{"ok": ...}` or `{"error": ...}`, with
//!   sequence numbers as decimal strings so JS can turn them into exact
//!   `bigint`s (see `wire`). Store errors are never thrown from here; the JS
//!   layer throws them with their stable `code`.
//!
//! Nothing that can wait on JavaScript or for long runs on the JS thread:
//! the `*Async` calls, durable registration (whose replay runs handlers on
//! the JS thread) and closing (which waits for the streams' handlers) run on
//! the addon's threads and settle through `calls` (see there). What stays
//! synchronous returns at once or costs what its synchronous store call
//! costs: `append`, `query`, `queryPage`, `appendIf`, live registration (a thread start;
//! on PostgreSQL one round trip) and `unsubscribe`.

// `deny`, not `forbid`: the code napi-derive generates allows itself unsafe blocks.
#![deny(unsafe_code)]

mod calls;
mod handler;
mod stores;
mod wire;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use factstr::{DurableStream, EventQuery, EventStore, EventStoreError, EventStream};
use factstr_interop::{
    AppendIfResultDto, decode_event_query, decode_expected_context_version, decode_new_events_json,
};
use napi_derive::napi;
use serde_json::Value;

pub use crate::calls::NativeCalls;
use crate::calls::Settlements;
use crate::handler::JsHandler;

type SharedStore = Arc<dyn EventStore + Send + Sync>;
type Streams = Arc<Mutex<HashMap<i64, EventStream>>>;

/// The version of this addon, which is the crate's and the npm package's
/// version. The JS loader compares it with its own `package.json`, so a stale
/// local build or a platform package of another release is refused with the
/// exact package to install, and a binary without this export is not ours.
#[napi]
pub fn factstr_addon_version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// A store opened from JavaScript, plus the streams registered through it.
///
/// Field order matters when it is dropped: the store closes first (its
/// streams stop as `store_closed`, delivering what was committed before),
/// then the stream handles go (dropping a handle first would unsubscribe it).
struct OpenStore {
    store: SharedStore,
    streams: Streams,
}

/// The native store handle behind every public store class.
#[napi]
pub struct NativeStore {
    open: Mutex<Option<Arc<OpenStore>>>,
    settlements: Arc<Settlements>,
}

#[napi]
impl NativeStore {
    /// A handle with no store yet, settling its calls through `calls`; open
    /// a store with `openMemory`, `openSqlite`, `connectPostgres` or
    /// `bootstrapPostgres`.
    #[napi(constructor)]
    pub fn new(calls: &NativeCalls) -> Self {
        Self {
            open: Mutex::new(None),
            settlements: calls.settlements(),
        }
    }

    /// Opens an in-memory store.
    #[napi]
    pub fn open_memory(&self) -> String {
        self.install(Ok(Arc::new(factstr_memory::MemoryStore::new())))
    }

    /// Opens (creating when missing) a SQLite store at `path`.
    #[napi]
    pub fn open_sqlite(&self, path: String) -> String {
        self.install(stores::open_sqlite(&path))
    }

    /// Connects to a PostgreSQL store at `url`.
    #[napi]
    pub fn connect_postgres(&self, url: String) -> String {
        self.install(stores::connect_postgres(&url))
    }

    /// Creates the database `database_name` on the server at `server_url`
    /// when missing, then connects to it.
    #[napi]
    pub fn bootstrap_postgres(&self, server_url: String, database_name: String) -> String {
        self.install(stores::bootstrap_postgres(server_url, database_name))
    }

    /// Appends a batch given as JSON text.
    #[napi]
    pub fn append(&self, events_json: String) -> String {
        run_append(self.store(), &events_json)
    }

    /// Queries; `query` is a JS value (`null`/`undefined` match everything).
    #[napi]
    pub fn query(&self, query: Option<Value>) -> String {
        run_query(self.store(), query)
    }

    /// Reads at most `limit` records of `query` (a bounded read); the
    /// envelope is a query result whose `last_returned_sequence_number` is
    /// the cursor to continue from.
    #[napi]
    pub fn query_page(&self, query: Option<Value>, limit: i64) -> String {
        run_query_page(self.store(), query, limit)
    }

    /// Appends a batch given as JSON text if the context version of `query`
    /// equals `expected`; a conflict is a result, not an error.
    #[napi]
    pub fn append_if(
        &self,
        events_json: String,
        query: Option<Value>,
        expected: Option<Value>,
    ) -> String {
        run_append_if(self.store(), &events_json, query, expected)
    }

    /// `append` on the addon's threads; settles call `call`.
    #[napi]
    pub fn append_async(&self, call: i64, events_json: String) {
        let store = self.store();
        calls::submit(&self.settlements, call, move || {
            run_append(store, &events_json)
        });
    }

    /// `query` on the addon's threads; settles call `call`.
    #[napi]
    pub fn query_async(&self, call: i64, query: Option<Value>) {
        let store = self.store();
        calls::submit(&self.settlements, call, move || run_query(store, query));
    }

    /// `queryPage` on the addon's threads; settles call `call`.
    #[napi]
    pub fn query_page_async(&self, call: i64, query: Option<Value>, limit: i64) {
        let store = self.store();
        calls::submit(&self.settlements, call, move || {
            run_query_page(store, query, limit)
        });
    }

    /// `appendIf` on the addon's threads; settles call `call`.
    #[napi]
    pub fn append_if_async(
        &self,
        call: i64,
        events_json: String,
        query: Option<Value>,
        expected: Option<Value>,
    ) {
        let store = self.store();
        calls::submit(&self.settlements, call, move || {
            run_append_if(store, &events_json, query, expected)
        });
    }

    /// Registers a live stream of every committed batch; the envelope holds
    /// the stream id. Once registered, the stream settles `stop_call` with
    /// its stop reason when it stops.
    #[napi]
    pub fn stream_all(&self, stop_call: i64, handler: JsHandler) -> String {
        let open = self.open_store();
        register(open, &self.settlements, stop_call, move |store| {
            store.stream_all(handler::handle_stream(handler))
        })
    }

    /// Registers a live stream of the events matching `query`.
    #[napi]
    pub fn stream_to(&self, stop_call: i64, query: Option<Value>, handler: JsHandler) -> String {
        let open = self.open_store();
        register(open, &self.settlements, stop_call, move |store| {
            let query = decode_query(query)?;
            store.stream_to(&query, handler::handle_stream(handler))
        })
    }

    /// Registers a durable stream on a thread of its own; settles `call`
    /// once its replay has finished (with the stream id) or failed.
    #[napi]
    pub fn stream_all_durable(&self, call: i64, stop_call: i64, name: String, handler: JsHandler) {
        let open = self.open_store();
        let settlements = Arc::clone(&self.settlements);
        calls::spawn(&self.settlements, call, "factstr-register", move || {
            register(open, &settlements, stop_call, move |store| {
                store.stream_all_durable(&DurableStream::new(name), handler::handle_stream(handler))
            })
        });
    }

    /// Registers a durable stream of the events matching `query`, like
    /// `streamAllDurable`.
    #[napi]
    pub fn stream_to_durable(
        &self,
        call: i64,
        stop_call: i64,
        name: String,
        query: Option<Value>,
        handler: JsHandler,
    ) {
        let open = self.open_store();
        let settlements = Arc::clone(&self.settlements);
        calls::spawn(&self.settlements, call, "factstr-register", move || {
            register(open, &settlements, stop_call, move |store| {
                let query = decode_query(query)?;
                store.stream_to_durable(
                    &DurableStream::new(name),
                    &query,
                    handler::handle_stream(handler),
                )
            })
        });
    }

    /// Stops the stream `id` (it still delivers the batches committed before);
    /// returns at once. Unknown ids are ignored.
    #[napi]
    pub fn unsubscribe(&self, id: i64) {
        let stream = self
            .open_store()
            .and_then(|open| lock(&open.streams).remove(&id));
        if let Some(stream) = stream {
            stream.unsubscribe();
        }
    }

    /// Closes the store: calls after it fail with a `FACTSTR_BACKEND_FAILURE`
    /// at once; calls already running finish first, the streams deliver what
    /// was committed before (waiting at most 5 s for their handlers), and
    /// then `call` settles. The waiting happens on a thread of its own.
    #[napi]
    pub fn close(&self, call: i64) {
        match lock(&self.open).take() {
            Some(open) => calls::spawn(&self.settlements, call, "factstr-close", move || {
                close_store(open);
                wire::ok_unit()
            }),
            None => self.settlements.settle(call, wire::ok_unit()),
        }
    }

    /// Whether the store is open.
    #[napi(getter)]
    pub fn is_open(&self) -> bool {
        lock(&self.open).is_some()
    }
}

impl Drop for NativeStore {
    /// A store whose JS object was collected without `close()` closes in the
    /// background: its streams' handlers need the JS thread this runs on.
    fn drop(&mut self) {
        if let Some(open) = lock(&self.open).take() {
            let spawned = std::thread::Builder::new()
                .name("factstr-close".to_owned())
                .spawn(move || close_store(open));
            drop(spawned);
        }
    }
}

impl NativeStore {
    fn install(&self, opened: Result<SharedStore, EventStoreError>) -> String {
        match opened {
            Ok(store) => {
                let previous = lock(&self.open).replace(Arc::new(OpenStore {
                    store,
                    streams: Arc::default(),
                }));
                drop(previous);
                wire::ok_unit()
            }
            Err(error) => wire::error(&error),
        }
    }

    fn open_store(&self) -> Option<Arc<OpenStore>> {
        lock(&self.open).clone()
    }

    fn store(&self) -> Option<SharedStore> {
        self.open_store().map(|open| Arc::clone(&open.store))
    }
}

/// Waits until the calls and registrations still using the store have
/// finished, then drops it here, so its close (which waits up to 5 s for
/// streams) runs on this thread and not on a pool thread or the JS thread.
fn close_store(open: Arc<OpenStore>) {
    let mut pause = Duration::from_millis(1);
    // Nothing can take a new reference: the NativeStore gave up its own.
    while Arc::strong_count(&open) > 1 || Arc::strong_count(&open.store) > 1 {
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
    drop(open);
}

fn closed() -> EventStoreError {
    EventStoreError::backend("the store is closed")
}

fn run_append(store: Option<SharedStore>, events_json: &str) -> String {
    let outcome = store.ok_or_else(closed).and_then(|store| {
        let events = decode_events(events_json)?;
        store.append(events)
    });
    match outcome {
        Ok(result) => wire::ok_append(&result),
        Err(error) => wire::error(&error),
    }
}

fn run_query(store: Option<SharedStore>, query: Option<Value>) -> String {
    let outcome = store.ok_or_else(closed).and_then(|store| {
        let query = decode_query(query)?;
        store.query(&query)
    });
    match outcome {
        Ok(result) => wire::ok_query(&result),
        Err(error) => wire::error(&error),
    }
}

fn run_query_page(store: Option<SharedStore>, query: Option<Value>, limit: i64) -> String {
    let outcome = store.ok_or_else(closed).and_then(|store| {
        let query = decode_query(query)?;
        let limit = usize::try_from(limit).map_err(|_| {
            EventStoreError::invalid_input(format!(
                "limit: expected a whole number of at least 1, got {limit}"
            ))
        })?;
        store.query_page(&query, limit)
    });
    match outcome {
        Ok(result) => wire::ok_query(&result),
        Err(error) => wire::error(&error),
    }
}

fn run_append_if(
    store: Option<SharedStore>,
    events_json: &str,
    query: Option<Value>,
    expected: Option<Value>,
) -> String {
    let outcome = store.ok_or_else(closed).and_then(|store| {
        let events = decode_events(events_json)?;
        let query = decode_query(query)?;
        let expected = decode_expected_context_version(&expected.unwrap_or(Value::Null))?;
        AppendIfResultDto::from_outcome(store.append_if(events, &query, expected))
    });
    match outcome {
        Ok(result) => wire::ok_append_if(&result),
        Err(error) => wire::error(&error),
    }
}

/// Registers a stream, keeps its handle under its id, and has it settle
/// `stop_call` with its stop reason when it stops (also dropping the handle).
fn register(
    open: Option<Arc<OpenStore>>,
    settlements: &Arc<Settlements>,
    stop_call: i64,
    start: impl FnOnce(&dyn EventStore) -> Result<EventStream, EventStoreError>,
) -> String {
    let outcome = open.ok_or_else(closed).and_then(|open| {
        let stream = start(open.store.as_ref())?;
        let id = i64::try_from(stream.id())
            .map_err(|_| EventStoreError::backend("stream id out of range"))?;
        let streams: Weak<Mutex<HashMap<i64, EventStream>>> = Arc::downgrade(&open.streams);
        let settlements = Arc::clone(settlements);
        stream.on_stop(move |reason| {
            settlements.settle(stop_call, wire::stopped(reason));
            let handle = streams
                .upgrade()
                .and_then(|streams| lock(&streams).remove(&id));
            drop(handle);
        });
        // A stream that stopped before it was kept here (its callback found
        // nothing to remove) is not kept.
        let stopped = {
            let mut streams = lock(&open.streams);
            streams.insert(id, stream);
            match streams.get(&id) {
                Some(stream) if !stream.is_running() => streams.remove(&id),
                _ => None,
            }
        };
        drop(stopped);
        Ok(id)
    });
    match outcome {
        Ok(id) => wire::ok_stream_id(id),
        Err(error) => wire::error(&error),
    }
}

fn decode_events(events_json: &str) -> Result<Vec<factstr::NewEvent>, EventStoreError> {
    Ok(decode_new_events_json(events_json)?)
}

fn decode_query(query: Option<Value>) -> Result<EventQuery, EventStoreError> {
    Ok(decode_event_query(&query.unwrap_or(Value::Null))?)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}
