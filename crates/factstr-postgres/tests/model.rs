//! Random operations on a `PostgresStore` and on the reference `MemoryStore`
//! give the same results: appends, conditional appends (winning and
//! conflicting), queries and pages with every filter shape, and live stream
//! deliveries. Commit times differ between the stores and are not compared.

// Test code: helpers outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use factstr::{EventFilter, EventQuery, EventRecord, EventStore, NewEvent, QueryResult};
use factstr_conformance::support::Deliveries;
use factstr_memory::MemoryStore;
use serde_json::{Value, json};

/// xorshift64*: reproducible pseudo-random numbers.
struct Random(u64);

impl Random {
    fn below(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % bound
    }

    fn pick<T: Clone>(&mut self, items: &[T]) -> T {
        items[self.below(items.len() as u64) as usize].clone()
    }
}

const TYPES: [&str; 4] = ["opened", "deposited", "withdrawn", "Deposited"];

fn scalar(random: &mut Random) -> Value {
    random.pick(&[
        json!(1),
        json!(1.0),
        json!(2),
        json!("1"),
        json!("a1"),
        json!(null),
        json!(true),
        json!(1e17),
    ])
}

fn payload(random: &mut Random) -> Value {
    match random.below(7) {
        0 => json!({"account": random.pick(&["a1", "a2", "a3"]), "amount": scalar(random)}),
        1 => {
            json!({"account": random.pick(&["a1", "a2"]), "tags": [scalar(random), scalar(random)]})
        }
        2 => json!({"nested": {"k": scalar(random)}, "account": "a1"}),
        3 => json!([scalar(random), {"k": scalar(random)}]),
        4 => scalar(random),
        5 => json!({}),
        _ => json!({"amount": scalar(random)}),
    }
}

fn predicate(random: &mut Random) -> Value {
    match random.below(9) {
        0 => json!({"account": random.pick(&["a1", "a2", "a3"])}),
        1 => json!({"amount": scalar(random)}),
        2 => json!({"tags": [scalar(random)]}),
        3 => json!({"nested": {"k": scalar(random)}}),
        4 => json!([scalar(random)]),
        5 => scalar(random),
        6 => json!({}),
        7 => json!([]),
        _ => json!({"account": "a1", "amount": scalar(random)}),
    }
}

fn query(random: &mut Random) -> EventQuery {
    let mut query = match random.below(8) {
        0 => EventQuery::all(),
        1 => EventQuery::all().with_filters([]),
        2 => EventQuery::for_event_types([random.pick(&TYPES)]),
        _ => {
            let filters: Vec<EventFilter> = (0..1 + random.below(2))
                .map(|_| {
                    let mut filter = match random.below(4) {
                        0 => EventFilter::default(),
                        1 => EventFilter::for_event_types(Vec::<String>::new()),
                        _ => EventFilter::for_event_types(
                            (0..1 + random.below(2)).map(|_| random.pick(&TYPES)),
                        ),
                    };
                    if random.below(3) > 0 {
                        let count = random.below(3);
                        filter =
                            filter.with_payload_predicates((0..count).map(|_| predicate(random)));
                    }
                    filter
                })
                .collect();
            EventQuery::all().with_filters(filters)
        }
    };
    if random.below(3) == 0 {
        query = query.with_min_sequence_number(random.below(40));
    }
    query
}

fn batch(random: &mut Random) -> Vec<NewEvent> {
    (0..1 + random.below(4))
        .map(|_| NewEvent::new(random.pick(&TYPES), payload(random)))
        .collect()
}

/// A record without its commit time: sequence number, type, payload.
type Content = (u64, String, Value);

fn content(record: &EventRecord) -> Content {
    (
        record.sequence_number,
        record.event_type.clone(),
        record.payload.clone(),
    )
}

fn result_content(result: &QueryResult) -> (Vec<Content>, Option<u64>, Option<u64>) {
    (
        result.event_records.iter().map(content).collect(),
        result.last_returned_sequence_number,
        result.current_context_version,
    )
}

fn memory_head(memory: &MemoryStore) -> u64 {
    memory
        .query(&EventQuery::all())
        .unwrap()
        .current_context_version
        .unwrap_or(0)
}

fn run_model(seed: u64, operations: usize) {
    let mut random = Random(seed);
    let postgres = support::new_store();
    let memory = MemoryStore::new();
    let stream_query = query(&mut random);
    let delivered_postgres = Deliveries::new();
    let delivered_memory = Deliveries::new();
    let _postgres_stream = postgres
        .stream_to(&stream_query, delivered_postgres.handler())
        .unwrap();
    let _memory_stream = memory
        .stream_to(&stream_query, delivered_memory.handler())
        .unwrap();

    let (mut wins, mut conflicts, mut nonempty_queries) = (0, 0, 0);
    for step in 0..operations {
        match random.below(3) {
            0 => {
                let events = batch(&mut random);
                assert_eq!(
                    postgres.append(events.clone()),
                    memory.append(events),
                    "seed {seed} step {step}: append"
                );
            }
            1 => {
                let context = query(&mut random);
                let current = memory.query(&context).unwrap().current_context_version;
                let expected = match random.below(3) {
                    0 => current,
                    1 => current.and_then(|version| version.checked_sub(1)),
                    _ => None,
                };
                let events = batch(&mut random);
                let outcome = memory.append_if(events.clone(), &context, expected);
                assert_eq!(
                    postgres.append_if(events, &context, expected),
                    outcome,
                    "seed {seed} step {step}: append_if {context:?} expecting {expected:?}"
                );
                if outcome.is_ok() {
                    wins += 1;
                } else {
                    conflicts += 1;
                }
            }
            _ => {
                let query = query(&mut random);
                let expected = result_content(&memory.query(&query).unwrap());
                assert_eq!(
                    result_content(&postgres.query(&query).unwrap()),
                    expected,
                    "seed {seed} step {step}: query {query:?}"
                );
                if !expected.0.is_empty() {
                    nonempty_queries += 1;
                }
                // A page of the same query, after a cursor inside the log:
                // candidates the matcher refuses must not leave it short.
                let limit = 1 + random.below(4) as usize;
                let after = random.below(memory_head(&memory) + 1);
                let page_query = query.clone().with_min_sequence_number(after);
                assert_eq!(
                    result_content(&postgres.query_page(&page_query, limit).unwrap()),
                    result_content(&memory.query_page(&page_query, limit).unwrap()),
                    "seed {seed} step {step}: query_page {page_query:?} limit {limit}"
                );
            }
        }
    }

    assert!(
        wins > 5 && conflicts > 5 && nonempty_queries > 5,
        "seed {seed} exercised too little: {wins} wins, {conflicts} conflicts, {nonempty_queries} queries with records"
    );
    let all_postgres = postgres.query(&EventQuery::all()).unwrap();
    let all_memory = memory.query(&EventQuery::all()).unwrap();
    assert_eq!(result_content(&all_postgres), result_content(&all_memory));

    // Both streams received the same batches: wait for the memory store's
    // last delivered event to arrive from PostgreSQL too.
    let expected: Vec<Vec<Content>> = delivered_memory
        .batches()
        .iter()
        .map(|batch| batch.iter().map(content).collect())
        .collect();
    if let Some(last) = expected.last().and_then(|batch| batch.last()) {
        delivered_postgres.wait_for_sequence(last.0);
    }
    let received: Vec<Vec<Content>> = delivered_postgres
        .batches()
        .iter()
        .map(|batch| batch.iter().map(content).collect())
        .collect();
    assert_eq!(
        received, expected,
        "seed {seed}: stream_to {stream_query:?}"
    );
}

#[test]
fn random_operations_match_the_memory_store() {
    for seed in [
        0x9e37_79b9_7f4a_7c15,
        0x0123_4567_89ab_cdef,
        0xdead_beef_cafe_f00d,
    ] {
        run_model(seed, 150);
    }
}
