//! A store connected again to the same schema finds the same log and the
//! durable cursors, and continues both.

// Test code: helpers outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use factstr::{DurableStream, EventQuery, EventStore};
use factstr_conformance::support::{Deliveries, numbered, sequence_numbers};
use support::{new_schema, store_in};

#[test]
fn a_reconnected_store_continues_the_log_and_the_durable_cursors() {
    let schema = new_schema();
    let durable = DurableStream::new("projection");
    let only_b = EventQuery::for_event_types(["b"]);
    let before = {
        let store = store_in(&schema);
        store.append(numbered("a", 2)).unwrap();
        store.append(numbered("b", 3)).unwrap();
        let handled = Deliveries::new();
        let stream = store
            .stream_to_durable(&durable, &only_b, handled.handler())
            .unwrap();
        assert_eq!(sequence_numbers(&handled.batches().concat()), vec![3, 4, 5]);
        stream.unsubscribe();
        store.append(numbered("b", 1)).unwrap();
        store.query(&EventQuery::all()).unwrap().event_records
    };

    let store = store_in(&schema);
    // The same records, commit times included.
    assert_eq!(
        store.query(&EventQuery::all()).unwrap().event_records,
        before
    );
    let next = store.append(numbered("a", 1)).unwrap();
    assert_eq!(next.first_sequence_number, 7);

    let resumed = Deliveries::new();
    let _stream = store
        .stream_to_durable(&durable, &only_b, resumed.handler())
        .unwrap();
    assert_eq!(
        resumed
            .batches()
            .iter()
            .map(|batch| sequence_numbers(batch))
            .collect::<Vec<_>>(),
        vec![vec![6]]
    );
    store.append(numbered("b", 2)).unwrap();
    assert_eq!(
        sequence_numbers(&resumed.wait_for_sequence(9).concat()),
        vec![6, 8, 9]
    );
}
