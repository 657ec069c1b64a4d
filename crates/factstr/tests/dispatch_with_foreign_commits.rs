//! The shared dispatcher against a log that also receives batches it was not
//! told about (as when another process appends to the same database).

#![allow(clippy::unwrap_used)] // test doubles outside #[test] functions

use std::collections::HashMap;
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use chrono::Utc;
use factstr::backend::{
    BatchReadRequest, CommittedBatchPage, CommittedLog, DurableStreamState, StreamDispatcher,
};
use factstr::{DurableStream, EventQuery, EventRecord, EventStoreError, HandleStream};
use factstr_conformance::support::eventually;
use serde_json::json;

#[derive(Default)]
struct SharedFile {
    batches: Mutex<Vec<Vec<EventRecord>>>,
    cursors: Mutex<HashMap<String, DurableStreamState>>,
}

impl SharedFile {
    /// Commits a batch of `size` events and returns it.
    fn commit(&self, event_type: &str, size: usize) -> Vec<EventRecord> {
        let mut batches = self.batches.lock().unwrap();
        let next = batches.iter().map(Vec::len).sum::<usize>() as u64 + 1;
        let batch: Vec<EventRecord> = (0..size as u64)
            .map(|offset| EventRecord {
                sequence_number: next + offset,
                occurred_at: Utc::now(),
                event_type: event_type.to_owned(),
                payload: json!({}),
            })
            .collect();
        batches.push(batch.clone());
        batch
    }
}

impl CommittedLog for SharedFile {
    fn committed_head(&self) -> Result<u64, EventStoreError> {
        Ok(self
            .batches
            .lock()
            .unwrap()
            .last()
            .and_then(|batch| batch.last())
            .map_or(0, |record| record.sequence_number))
    }

    fn read_committed_batches(
        &self,
        request: &BatchReadRequest<'_>,
    ) -> Result<CommittedBatchPage, EventStoreError> {
        let batches: Vec<Vec<EventRecord>> = self
            .batches
            .lock()
            .unwrap()
            .iter()
            .filter(|batch| {
                batch[0].sequence_number > request.after
                    && batch[batch.len() - 1].sequence_number <= request.through
            })
            .cloned()
            .collect();
        Ok(CommittedBatchPage {
            batches,
            scanned_through: request.through,
        })
    }

    fn open_durable_stream(
        &self,
        name: &str,
        query: &EventQuery,
    ) -> Result<DurableStreamState, EventStoreError> {
        Ok(self
            .cursors
            .lock()
            .unwrap()
            .entry(name.to_owned())
            .or_insert(DurableStreamState {
                query: query.clone(),
                cursor: 0,
            })
            .clone())
    }

    fn advance_durable_cursor(&self, name: &str, cursor: u64) -> Result<(), EventStoreError> {
        let mut cursors = self.cursors.lock().unwrap();
        let stream = cursors.get_mut(name).unwrap();
        stream.cursor = stream.cursor.max(cursor);
        Ok(())
    }

    fn close_durable_stream(&self, _name: &str) {}
}

fn recording_handler() -> (HandleStream, mpsc::Receiver<Vec<u64>>) {
    let (sender, receiver) = mpsc::channel();
    let sender = Mutex::new(sender);
    let handle = HandleStream::new(move |batch: Vec<EventRecord>| {
        let numbers = batch.iter().map(|record| record.sequence_number).collect();
        let _ = sender.lock().unwrap().send(numbers);
        async { Ok(()) }
    });
    (handle, receiver)
}

fn receive(receiver: &mpsc::Receiver<Vec<u64>>, count: usize) -> Vec<Vec<u64>> {
    (0..count)
        .map(|_| receiver.recv_timeout(Duration::from_secs(30)).unwrap())
        .collect()
}

#[test]
fn batches_committed_by_another_process_are_read_from_the_log_not_skipped() {
    let file = Arc::new(SharedFile::default());
    let dispatcher = StreamDispatcher::new(0);
    let log: Arc<dyn CommittedLog> = file.clone();
    let (live, live_batches) = recording_handler();
    let (durable, durable_batches) = recording_handler();
    let _live = dispatcher.stream_all(Arc::clone(&log), live).unwrap();
    let _durable = dispatcher
        .stream_to_durable(
            Arc::clone(&log),
            &DurableStream::new("projection"),
            &EventQuery::for_event_types(["mine", "theirs"]),
            durable,
        )
        .unwrap();

    dispatcher.publish(file.commit("mine", 2));
    // Another process commits two batches this dispatcher never hears about.
    file.commit("theirs", 1);
    file.commit("theirs", 3);
    dispatcher.publish(file.commit("mine", 1));
    dispatcher.publish(file.commit("mine", 1));

    let expected = vec![vec![1, 2], vec![3], vec![4, 5, 6], vec![7], vec![8]];
    assert_eq!(receive(&live_batches, 5), expected);
    assert_eq!(receive(&durable_batches, 5), expected);
    // The cursor moves only after the handler returned, so it may trail the
    // last delivery for a moment; it must reach 8 and never pass it.
    let cursor = || file.cursors.lock().unwrap()["projection"].cursor;
    eventually("the durable cursor reaching 8", || cursor() >= 8);
    assert_eq!(cursor(), 8);
}

#[test]
fn a_batch_published_twice_is_delivered_once() {
    let file = Arc::new(SharedFile::default());
    let dispatcher = StreamDispatcher::new(0);
    let (live, batches) = recording_handler();
    let _live = dispatcher.stream_all(file.clone(), live).unwrap();
    let first = file.commit("a", 1);
    dispatcher.publish(first.clone());
    dispatcher.publish(first);
    dispatcher.publish(file.commit("a", 1));
    assert_eq!(receive(&batches, 2), vec![vec![1], vec![2]]);
    assert_eq!(dispatcher.last_published(), 2);
}
