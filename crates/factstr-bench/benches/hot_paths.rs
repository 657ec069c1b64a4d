//! Micro-benchmarks of the hot paths: the payload matcher, payload index
//! terms, the memory store's indexed lookup, and DTO conversion.
//! Run with `cargo bench -p factstr-bench`; not run in CI.

#![allow(missing_docs, clippy::unwrap_used)]

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use factstr::backend::payload_terms::payload_terms;
use factstr::{EventFilter, EventQuery, EventStore, NewEvent, payload_matches};
use factstr_interop::{EventRecordDto, QueryResultDto, decode_event_query, decode_new_events};
use factstr_memory::MemoryStore;
use serde_json::json;

fn matcher(criterion: &mut Criterion) {
    let payload = json!({
        "account": "acc-42", "amount": 1250, "currency": "EUR",
        "lines": [{"sku": "a", "qty": 1}, {"sku": "b", "qty": 2}, {"sku": "c", "qty": 3}],
        "meta": {"source": "web", "tags": ["x", "y", "z"]}
    });
    let hit = json!({"account": "acc-42", "lines": [{"sku": "c"}], "meta": {"tags": ["z"]}});
    let miss = json!({"account": "acc-42", "lines": [{"sku": "d"}]});
    criterion.bench_function("payload_matches/hit", |bench| {
        bench.iter(|| payload_matches(black_box(&hit), black_box(&payload)))
    });
    criterion.bench_function("payload_matches/miss", |bench| {
        bench.iter(|| payload_matches(black_box(&miss), black_box(&payload)))
    });
    criterion.bench_function("payload_terms/payload", |bench| {
        bench.iter(|| payload_terms(black_box(&payload)))
    });
}

fn indexed_lookup(criterion: &mut Criterion) {
    let store = MemoryStore::new();
    for chunk in 0..100 {
        let batch = (0..1_000)
            .map(|index| {
                NewEvent::new(
                    format!("type-{}", index % 10),
                    json!({"account": format!("acc-{}", (chunk * 1_000 + index) % 10_000)}),
                )
            })
            .collect();
        store.append(batch).unwrap();
    }
    let by_payload = EventQuery::all().with_filters([
        EventFilter::default().with_payload_predicates([json!({"account": "acc-77"})])
    ]);
    let by_type_and_payload = EventQuery::all()
        .with_filters([EventFilter::for_event_types(["type-7"])
            .with_payload_predicates([json!({"account": "acc-77"})])]);
    criterion.bench_function("memory/query by payload in 100k", |bench| {
        bench.iter(|| store.query(black_box(&by_payload)).unwrap())
    });
    criterion.bench_function("memory/query by type+payload in 100k", |bench| {
        bench.iter(|| store.query(black_box(&by_type_and_payload)).unwrap())
    });
}

fn dto_conversion(criterion: &mut Criterion) {
    let store = MemoryStore::new();
    let events: Vec<NewEvent> = (0..100)
        .map(|index| {
            NewEvent::new(
                "money-deposited",
                json!({"account": format!("acc-{index}"), "amount": index}),
            )
        })
        .collect();
    store.append(events).unwrap();
    let result = store.query(&EventQuery::all()).unwrap();
    let batch_json = serde_json::to_value(
        (0..100).map(|index| json!({"event_type": "money-deposited", "payload": {"account": format!("acc-{index}"), "amount": index}})).collect::<Vec<_>>(),
    )
    .unwrap();
    let query_json = json!({"filters": [{"event_types": ["a", "b"], "payload_predicates": [{"account": "x"}]}], "min_sequence_number": 10});
    criterion.bench_function("interop/query result of 100 to DTO", |bench| {
        bench.iter(|| QueryResultDto::from(black_box(result.clone())))
    });
    criterion.bench_function("interop/record DTO back", |bench| {
        let dto = EventRecordDto::from(result.event_records[0].clone());
        bench.iter(|| factstr::EventRecord::try_from(black_box(dto.clone())).unwrap())
    });
    criterion.bench_function("interop/decode 100 new events", |bench| {
        bench.iter(|| decode_new_events(black_box(&batch_json)).unwrap())
    });
    criterion.bench_function("interop/decode query", |bench| {
        bench.iter(|| decode_event_query(black_box(&query_json)).unwrap())
    });
}

criterion_group!(hot_paths, matcher, indexed_lookup, dto_conversion);
criterion_main!(hot_paths);
