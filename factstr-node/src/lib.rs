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
//! Calls that may wait on JavaScript (durable registration, whose replay runs
//! handlers on the JS thread) and the `*Async` variants run on the libuv
//! thread pool as async tasks, so the event loop stays free.

// `deny`, not `forbid`: the code napi-derive generates allows itself unsafe blocks.
#![deny(unsafe_code)]

mod handler;
mod stores;
mod wire;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use factstr::{DurableStream, EventQuery, EventStore, EventStoreError, EventStream};
use factstr_interop::{
    AppendIfResultDto, decode_event_query, decode_expected_context_version, decode_new_events_json,
};
use napi::bindgen_prelude::AsyncTask;
use napi::{Env, Task};
use napi_derive::napi;
use serde_json::Value;

use crate::handler::JsHandler;

type SharedStore = Arc<dyn EventStore + Send + Sync>;

/// The version of this addon, which is the crate's and the npm package's
/// version. The JS loader compares it with its own `package.json`, so a stale
/// local build or a platform package of another release is refused with the
/// exact package to install, and a binary without this export is not ours.
#[napi]
pub fn factstr_addon_version() -> &'static str {
    env!("CARGO_PKG_VERSION")
}

/// A store opened from JavaScript, plus the streams registered through it.
struct OpenStore {
    store: SharedStore,
    streams: Mutex<HashMap<i64, EventStream>>,
}

/// The native store handle behind every public store class.
#[napi]
pub struct NativeStore {
    open: Mutex<Option<Arc<OpenStore>>>,
}

impl Default for NativeStore {
    fn default() -> Self {
        Self::new()
    }
}

#[napi]
impl NativeStore {
    /// A handle with no store yet; open one with `openMemory`, `openSqlite`
    /// or `connectPostgres`.
    #[napi(constructor)]
    pub fn new() -> Self {
        Self {
            open: Mutex::new(None),
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

    /// `append` on the thread pool; resolves with the envelope.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn append_async(&self, events_json: String) -> AsyncTask<StoreTask> {
        let store = self.store();
        StoreTask::new(move || run_append(store, &events_json))
    }

    /// `query` on the thread pool; resolves with the envelope.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn query_async(&self, query: Option<Value>) -> AsyncTask<StoreTask> {
        let store = self.store();
        StoreTask::new(move || run_query(store, query))
    }

    /// `appendIf` on the thread pool; resolves with the envelope.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn append_if_async(
        &self,
        events_json: String,
        query: Option<Value>,
        expected: Option<Value>,
    ) -> AsyncTask<StoreTask> {
        let store = self.store();
        StoreTask::new(move || run_append_if(store, &events_json, query, expected))
    }

    /// Registers a live stream of every committed batch; the envelope holds
    /// the stream id.
    #[napi]
    pub fn stream_all(&self, handler: JsHandler) -> String {
        let open = self.open_store();
        register(open, move |store| {
            store.stream_all(handler::handle_stream(handler))
        })
    }

    /// Registers a live stream of the events matching `query`.
    #[napi]
    pub fn stream_to(&self, query: Option<Value>, handler: JsHandler) -> String {
        let open = self.open_store();
        register(open, move |store| {
            let query = decode_query(query)?;
            store.stream_to(&query, handler::handle_stream(handler))
        })
    }

    /// Registers a durable stream; resolves once its replay has finished.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn stream_all_durable(&self, name: String, handler: JsHandler) -> AsyncTask<StoreTask> {
        let open = self.open_store();
        StoreTask::new(move || {
            register(open, move |store| {
                store.stream_all_durable(&DurableStream::new(name), handler::handle_stream(handler))
            })
        })
    }

    /// Registers a durable stream of the events matching `query`; resolves
    /// once its replay has finished.
    #[napi(ts_return_type = "Promise<string>")]
    pub fn stream_to_durable(
        &self,
        name: String,
        query: Option<Value>,
        handler: JsHandler,
    ) -> AsyncTask<StoreTask> {
        let open = self.open_store();
        StoreTask::new(move || {
            register(open, move |store| {
                let query = decode_query(query)?;
                store.stream_to_durable(
                    &DurableStream::new(name),
                    &query,
                    handler::handle_stream(handler),
                )
            })
        })
    }

    /// Stops the stream `id`; unknown ids are ignored.
    #[napi]
    pub fn unsubscribe(&self, id: i64) {
        let stream = self
            .open_store()
            .and_then(|open| lock(&open.streams).remove(&id));
        if let Some(stream) = stream {
            stream.unsubscribe();
        }
    }

    /// Stops every stream and closes the store. Calls after it fail with a
    /// `FACTSTR_BACKEND_FAILURE`; calls already running finish first.
    #[napi]
    pub fn close(&self) {
        let closed = lock(&self.open).take();
        if let Some(open) = closed {
            let streams: Vec<EventStream> = lock(&open.streams).drain().map(|(_, s)| s).collect();
            for stream in streams {
                stream.unsubscribe();
            }
        }
    }

    /// Whether the store is open.
    #[napi(getter)]
    pub fn is_open(&self) -> bool {
        lock(&self.open).is_some()
    }
}

impl NativeStore {
    fn install(&self, opened: Result<SharedStore, EventStoreError>) -> String {
        match opened {
            Ok(store) => {
                let previous = lock(&self.open).replace(Arc::new(OpenStore {
                    store,
                    streams: Mutex::new(HashMap::new()),
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

fn register(
    open: Option<Arc<OpenStore>>,
    start: impl FnOnce(&dyn EventStore) -> Result<EventStream, EventStoreError>,
) -> String {
    let outcome = open.ok_or_else(closed).and_then(|open| {
        let stream = start(open.store.as_ref())?;
        let id = i64::try_from(stream.id())
            .map_err(|_| EventStoreError::backend("stream id out of range"))?;
        lock(&open.streams).insert(id, stream);
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

/// A store call run on the libuv thread pool; resolves with its envelope.
pub struct StoreTask {
    work: Option<Box<dyn FnOnce() -> String + Send>>,
}

impl StoreTask {
    fn new(work: impl FnOnce() -> String + Send + 'static) -> AsyncTask<StoreTask> {
        AsyncTask::new(Self {
            work: Some(Box::new(work)),
        })
    }
}

impl Task for StoreTask {
    type Output = String;
    type JsValue = String;

    fn compute(&mut self) -> napi::Result<String> {
        Ok(match self.work.take() {
            Some(work) => work(),
            None => wire::error(&EventStoreError::backend("task ran twice")),
        })
    }

    fn resolve(&mut self, _env: Env, output: String) -> napi::Result<String> {
        Ok(output)
    }
}
