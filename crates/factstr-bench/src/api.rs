//! The store API as the paired workloads use it, once for our crates and
//! once for the published `factstr` 0.5.2 crates they replace.
//!
//! Both implementations come from one macro, so the two sides run the same
//! code, each compiled against its own crate: events and queries are built
//! with that crate's own constructors and no value is converted from one
//! crate's types to the other's. Both stores sit behind `Arc<dyn EventStore>`
//! of their crate, so each call pays the same dynamic dispatch.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use crate::stats::Latencies;

/// The outcome of an `append_if` that did not fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Decision {
    Committed,
    Conflict,
}

/// What a query returned, as far as the workloads look at it.
pub(crate) struct Queried {
    pub(crate) matches: usize,
    pub(crate) context_version: Option<u64>,
}

/// One implementation of the event-store API.
pub(crate) trait Api {
    type Store: Send + Sync;
    type Event: Send;
    type Query: Send + Sync;
    /// A running stream; dropping it unsubscribes.
    type Stream;

    fn event(event_type: &str, payload: Value) -> Self::Event;
    fn type_query(event_type: &str) -> Self::Query;
    /// Events (of `event_type`, when given) whose payload matches `predicate`.
    fn payload_query(event_type: Option<&str>, predicate: Value) -> Self::Query;
    /// Returns the number of events committed.
    fn append(store: &Self::Store, events: Vec<Self::Event>) -> Result<u64, String>;
    fn query(store: &Self::Store, query: &Self::Query) -> Result<Queried, String>;
    fn append_if(
        store: &Self::Store,
        events: Vec<Self::Event>,
        context: &Self::Query,
        expected: Option<u64>,
    ) -> Result<Decision, String>;
    /// A `stream_all` handler that records, per delivered event, now minus
    /// its payload's `sent_us`, and counts the events in `delivered`.
    fn stream_latencies(
        store: &Self::Store,
        samples: &Arc<Mutex<Latencies>>,
        delivered: &Arc<AtomicU64>,
    ) -> Result<Self::Stream, String>;
    /// A durable `stream_all` named `name` whose handler counts events in
    /// `handled`.
    fn replay_counting(
        store: &Self::Store,
        name: &str,
        handled: &Arc<AtomicU64>,
    ) -> Result<Self::Stream, String>;
}

/// Microseconds since the Unix epoch: the clock live events carry.
pub(crate) fn now_us() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |since| since.as_secs_f64() * 1e6)
}

/// Our crates (any of our stores).
pub(crate) struct Ours;

/// The published `factstr` / `factstr-memory` 0.5.2.
pub(crate) struct Published052;

macro_rules! implement_api {
    ($side:ty, $api:ident) => {
        impl Api for $side {
            type Store = Arc<dyn $api::EventStore + Send + Sync>;
            type Event = $api::NewEvent;
            type Query = $api::EventQuery;
            type Stream = $api::EventStream;

            fn event(event_type: &str, payload: Value) -> Self::Event {
                $api::NewEvent::new(event_type, payload)
            }

            fn type_query(event_type: &str) -> Self::Query {
                $api::EventQuery::for_event_types([event_type])
            }

            fn payload_query(event_type: Option<&str>, predicate: Value) -> Self::Query {
                let filter = match event_type {
                    Some(event_type) => $api::EventFilter::for_event_types([event_type]),
                    None => $api::EventFilter::default(),
                };
                $api::EventQuery::all().with_filters([filter.with_payload_predicates([predicate])])
            }

            fn append(store: &Self::Store, events: Vec<Self::Event>) -> Result<u64, String> {
                store
                    .append(events)
                    .map(|appended| appended.committed_count)
                    .map_err(|error| error.to_string())
            }

            fn query(store: &Self::Store, query: &Self::Query) -> Result<Queried, String> {
                store
                    .query(query)
                    .map(|result| Queried {
                        matches: result.event_records.len(),
                        context_version: result.current_context_version,
                    })
                    .map_err(|error| error.to_string())
            }

            fn append_if(
                store: &Self::Store,
                events: Vec<Self::Event>,
                context: &Self::Query,
                expected: Option<u64>,
            ) -> Result<Decision, String> {
                match store.append_if(events, context, expected) {
                    Ok(_) => Ok(Decision::Committed),
                    Err($api::EventStoreError::ConditionalAppendConflict { .. }) => {
                        Ok(Decision::Conflict)
                    }
                    Err(error) => Err(error.to_string()),
                }
            }

            fn stream_latencies(
                store: &Self::Store,
                samples: &Arc<Mutex<Latencies>>,
                delivered: &Arc<AtomicU64>,
            ) -> Result<Self::Stream, String> {
                let (samples, delivered) = (Arc::clone(samples), Arc::clone(delivered));
                let handle = $api::HandleStream::new(move |batch: Vec<$api::EventRecord>| {
                    let now = now_us();
                    if let Ok(mut samples) = samples.lock() {
                        for record in &batch {
                            samples
                                .record_us(now - record.payload["sent_us"].as_f64().unwrap_or(now));
                        }
                    }
                    delivered.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    async { Ok(()) }
                });
                store.stream_all(handle).map_err(|error| error.to_string())
            }

            fn replay_counting(
                store: &Self::Store,
                name: &str,
                handled: &Arc<AtomicU64>,
            ) -> Result<Self::Stream, String> {
                let handled = Arc::clone(handled);
                let handle = $api::HandleStream::new(move |batch: Vec<$api::EventRecord>| {
                    handled.fetch_add(batch.len() as u64, Ordering::Relaxed);
                    async { Ok(()) }
                });
                store
                    .stream_all_durable(&$api::DurableStream::new(name), handle)
                    .map_err(|error| error.to_string())
            }
        }
    };
}

implement_api!(Ours, factstr);
implement_api!(Published052, factstr_052);

/// A fresh, empty 0.5.2 memory store.
pub(crate) fn open_published_052() -> <Published052 as Api>::Store {
    Arc::new(factstr_memory_052::MemoryStore::new())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Both sides answer the same calls the same way, so their figures
    /// measure the same work.
    fn round_trip<A: Api>(store: &A::Store) {
        let appended = A::append(
            store,
            vec![
                A::event("deposited", json!({"account": "a", "amount": 1})),
                A::event("deposited", json!({"account": "b", "amount": 2})),
            ],
        );
        assert_eq!(appended, Ok(2));
        let context = A::payload_query(Some("deposited"), json!({"account": "a"}));
        let queried = A::query(store, &context).unwrap();
        assert_eq!(queried.matches, 1);
        assert_eq!(queried.context_version, Some(1));
        assert_eq!(
            A::query(store, &A::type_query("deposited"))
                .unwrap()
                .matches,
            2
        );
        let stale = A::append_if(
            store,
            vec![A::event("deposited", json!({"account": "a"}))],
            &context,
            None,
        );
        assert_eq!(stale, Ok(Decision::Conflict));
        let current = A::append_if(
            store,
            vec![A::event("deposited", json!({"account": "a"}))],
            &context,
            Some(1),
        );
        assert_eq!(current, Ok(Decision::Committed));

        let handled = Arc::new(AtomicU64::new(0));
        let stream = A::replay_counting(store, "test", &handled).unwrap();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while handled.load(Ordering::Relaxed) < 3 && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        drop(stream);
        assert_eq!(handled.load(Ordering::Relaxed), 3);
    }

    #[test]
    fn ours_and_published_052_do_the_same_work() {
        round_trip::<Ours>(
            &(Arc::new(factstr_memory::MemoryStore::new()) as crate::stores::SharedStore),
        );
        round_trip::<Published052>(&open_published_052());
    }
}
