//! Checks for a store opened on a log the published factstr 0.5.x crates
//! wrote (the fixtures of `fixtures/factstr-0.5.2`): every event, batch and
//! durable stream, compared with what the fixture's `expected.json` says the
//! 0.5.x store reported. The SQLite and PostgreSQL tests run the same checks.

use std::path::Path;

use chrono::{DateTime, SubsecRound, Utc};
use factstr::{DurableStream, EventQuery, EventRecord, EventStore, EventStoreError, NewEvent};
use serde_json::{Value, json};

use crate::support::{Deliveries, sequence_numbers};

/// What a fixture's `expected.json` says about its log.
#[derive(Clone, Debug)]
pub struct LegacyFixture {
    /// Every event, `occurred_at` cut to whole microseconds.
    pub events: Vec<EventRecord>,
    /// The sequence numbers of each committed batch, in order.
    pub batches: Vec<Vec<u64>>,
    /// The durable streams, with the cursors 0.5.x stored.
    pub durable_streams: Vec<LegacyDurableStream>,
}

/// One durable stream of a fixture.
#[derive(Clone, Debug)]
pub struct LegacyDurableStream {
    pub name: String,
    /// The query it was registered with (`EventQuery::all()` for
    /// `stream_all_durable`).
    pub query: EventQuery,
    /// The last sequence number it processed, as 0.5.x stored it.
    pub cursor: u64,
}

impl LegacyFixture {
    /// Reads the `expected.json` at `path`.
    pub fn read(path: &Path) -> Self {
        let text = std::fs::read_to_string(path)
            .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()));
        let expected: Value = serde_json::from_str(&text).unwrap();
        let events = expected["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|event| EventRecord {
                sequence_number: event["sequence_number"].as_u64().unwrap(),
                occurred_at: DateTime::parse_from_rfc3339(event["occurred_at"].as_str().unwrap())
                    .unwrap()
                    .with_timezone(&Utc)
                    .trunc_subsecs(6),
                event_type: event["event_type"].as_str().unwrap().to_owned(),
                payload: event["payload"].clone(),
            })
            .collect();
        let batches = expected["batches"]
            .as_array()
            .unwrap()
            .iter()
            .map(|batch| {
                (batch["first"].as_u64().unwrap()..=batch["last"].as_u64().unwrap()).collect()
            })
            .collect();
        let stored = expected["stored_durable_cursors"].as_array().unwrap();
        let durable_streams = expected["durable_streams"]
            .as_array()
            .unwrap()
            .iter()
            .map(|stream| {
                let name = stream["name"].as_str().unwrap().to_owned();
                let query = match &stream["query"] {
                    Value::Null => EventQuery::all(),
                    query => serde_json::from_value(query.clone()).unwrap(),
                };
                let cursor = stored
                    .iter()
                    .find(|row| row["name"] == json!(name))
                    .and_then(|row| row["last_processed_sequence_number"].as_u64())
                    .unwrap_or_else(|| panic!("no stored cursor for durable stream {name}"));
                LegacyDurableStream {
                    name,
                    query,
                    cursor,
                }
            })
            .collect();
        Self {
            events,
            batches,
            durable_streams,
        }
    }

    /// The last sequence number of the log.
    pub fn last_sequence_number(&self) -> u64 {
        self.events.last().map_or(0, |event| event.sequence_number)
    }

    /// The batches (as sequence numbers) that a durable stream with `query`
    /// is given after `cursor`: each committed batch filtered by the query,
    /// batches without a match left out.
    pub fn batches_after(&self, cursor: u64, query: &EventQuery) -> Vec<Vec<u64>> {
        self.batches
            .iter()
            .map(|batch| {
                batch
                    .iter()
                    .copied()
                    .filter(|sequence_number| *sequence_number > cursor)
                    .filter(|sequence_number| {
                        query.matches_record(&self.events[(*sequence_number - 1) as usize])
                    })
                    .collect::<Vec<u64>>()
            })
            .filter(|batch| !batch.is_empty())
            .collect()
    }
}

/// The store holds every event of the fixture: sequence number, commit time
/// (to the microsecond), type and payload.
pub fn assert_every_event_kept(store: &dyn EventStore, fixture: &LegacyFixture) {
    let result = store.query(&EventQuery::all()).unwrap();
    assert_eq!(result.event_records.len(), fixture.events.len());
    for (record, expected) in result.event_records.iter().zip(&fixture.events) {
        assert_eq!(record, expected, "event {}", expected.sequence_number);
    }
    assert_eq!(
        result.last_returned_sequence_number,
        Some(fixture.last_sequence_number())
    );
}

/// Queries narrowed by event types and payload predicates find what the
/// shared matcher decides over the fixture's events (the store's indexes
/// cover the migrated events).
pub fn assert_queries_find_the_matching_events(store: &dyn EventStore, fixture: &LegacyFixture) {
    let mut queries: Vec<EventQuery> = fixture
        .durable_streams
        .iter()
        .map(|stream| stream.query.clone())
        .collect();
    queries.extend([
        EventQuery::for_event_types(["note-added"]),
        serde_json::from_value(json!({"filters": [{"payload_predicates": [{"currency": "EUR"}]}]}))
            .unwrap(),
        serde_json::from_value(json!({"filters": [{"payload_predicates": [{"tags": ["vip"]}]}]}))
            .unwrap(),
        serde_json::from_value(
            json!({"filters": [{"payload_predicates": [{"owner": {"name": "Zoë Ñúñez 李雷"}}]}]}),
        )
        .unwrap(),
        serde_json::from_value(json!({"filters": [{"payload_predicates": [{"value": 1.0}]}]}))
            .unwrap(),
        serde_json::from_value(json!({"filters": [{"payload_predicates": [{"value": 1}]}]}))
            .unwrap(),
        serde_json::from_value(json!({"filters": [{"payload_predicates": [[{"k": []}]]}]}))
            .unwrap(),
        serde_json::from_value(json!({"filters": [{"payload_predicates": [42]}]})).unwrap(),
    ]);
    for query in queries {
        let expected: Vec<u64> = fixture
            .events
            .iter()
            .filter(|event| query.matches_record(event))
            .map(|event| event.sequence_number)
            .collect();
        let result = store.query(&query).unwrap();
        assert_eq!(
            sequence_numbers(&result.event_records),
            expected,
            "{query:?}"
        );
        assert_eq!(result.current_context_version, expected.last().copied());
    }
}

/// A durable stream registered under a new name replays the log in the
/// batches of `expected_batches` (one handler call per committed batch).
pub fn assert_replay_delivers(store: &dyn EventStore, expected_batches: &[Vec<u64>]) {
    let deliveries = Deliveries::new();
    let stream = store
        .stream_all_durable(
            &DurableStream::new("replay-after-migration"),
            deliveries.handler(),
        )
        .unwrap();
    let delivered: Vec<Vec<u64>> = deliveries
        .batches()
        .iter()
        .map(|batch| sequence_numbers(batch))
        .collect();
    assert_eq!(delivered, expected_batches);
    stream.unsubscribe();
}

/// Each durable stream of the fixture, registered with its name and query,
/// resumes after the cursor 0.5.x stored and is given exactly the rest, in
/// its committed batches; registering it with another query is refused.
pub fn assert_durable_streams_resume(store: &dyn EventStore, fixture: &LegacyFixture) {
    for stream in &fixture.durable_streams {
        assert!(
            stream.cursor < fixture.last_sequence_number(),
            "the fixture's cursor of {} must leave something to resume",
            stream.name
        );
        let expected = fixture.batches_after(stream.cursor, &stream.query);
        assert!(!expected.is_empty());
        let deliveries = Deliveries::new();
        let durable = DurableStream::new(stream.name.clone());
        let registered = if stream.query == EventQuery::all() {
            store.stream_all_durable(&durable, deliveries.handler())
        } else {
            store.stream_to_durable(&durable, &stream.query, deliveries.handler())
        };
        let registered = registered.unwrap();
        let delivered: Vec<Vec<u64>> = deliveries
            .batches()
            .iter()
            .map(|batch| sequence_numbers(batch))
            .collect();
        assert_eq!(delivered, expected, "durable stream {}", stream.name);
        // The name is free once the stream has stopped, not when
        // `unsubscribe` returns (the stream still delivers what was
        // committed before it).
        let (stopped, stop) = std::sync::mpsc::channel();
        registered.on_stop(move |reason| {
            let _ = stopped.send(reason.clone());
        });
        registered.unsubscribe();
        drop(registered);
        stop.recv_timeout(crate::support::PATIENCE)
            .expect("the stream stopped after unsubscribe");

        let other_query = EventQuery::for_event_types(["not-the-stored-query"]);
        let refused = store.stream_to_durable(&durable, &other_query, Deliveries::new().handler());
        match refused {
            Err(EventStoreError::BackendFailure { message }) => {
                assert!(message.contains("different query"), "{message}");
            }
            other => panic!("registering {} with another query: {other:?}", stream.name),
        }
    }
}

/// An append after the migration continues at the next sequence number.
pub fn assert_appends_continue(store: &dyn EventStore, fixture: &LegacyFixture) {
    let next = fixture.last_sequence_number() + 1;
    let result = store
        .append(vec![
            NewEvent::new("appended-after-migration", json!({"n": 1})),
            NewEvent::new("appended-after-migration", json!({"n": 2})),
        ])
        .unwrap();
    assert_eq!(result.first_sequence_number, next);
    assert_eq!(result.last_sequence_number, next + 1);
    let appended = store
        .query(&EventQuery::all().with_min_sequence_number(next - 1))
        .unwrap();
    assert_eq!(
        sequence_numbers(&appended.event_records),
        vec![next, next + 1]
    );
}
