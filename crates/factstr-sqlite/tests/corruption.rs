//! A database file with bytes overwritten inside a page: opening it, or the
//! first read of the damaged page, fails with a `BackendFailure` saying the
//! file is corrupt. Nothing panics and no call hangs.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::fs::{self, OpenOptions};
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Duration;

use factstr::{DurableStream, EventQuery, EventStore, EventStoreError, HandleStream, NewEvent};
use factstr_conformance::support::numbered;
use factstr_sqlite::SqliteStore;
use serde_json::json;
use tempfile::TempDir;

const EVENTS: usize = 600;

/// How long one case may take before it counts as hanging; a liveness
/// bound, not a timing assertion.
const PATIENCE: Duration = Duration::from_secs(30);

/// A closed store of `EVENTS` events in batches of ten, each payload naming
/// its event (`"marker": "event-0042"`), so that a page can be found by
/// what it holds.
fn written_database() -> (TempDir, PathBuf) {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("events.db");
    let store = SqliteStore::open(&path).unwrap();
    for batch in 0..EVENTS / 10 {
        let events = (0..10)
            .map(|index| {
                let number = batch * 10 + index + 1;
                NewEvent::new(
                    "noted",
                    json!({"marker": format!("event-{number:04}"), "text": "y".repeat(150)}),
                )
            })
            .collect();
        store.append(events).unwrap();
    }
    drop(store);
    // The last connection to close copied the write-ahead log into the file
    // and removed it, so every page is in the database file itself.
    assert!(!Path::new(&format!("{}-wal", path.display())).exists());
    (folder, path)
}

/// The page size from the database header (bytes 16 and 17, big-endian; 1
/// means 65,536).
fn page_size(bytes: &[u8]) -> usize {
    match u16::from_be_bytes([bytes[16], bytes[17]]) {
        1 => 65_536,
        size => usize::from(size),
    }
}

/// The start of the table leaf page (b-tree page type 13) that holds
/// `needle`.
fn leaf_page_holding(path: &Path, needle: &str) -> usize {
    let bytes = fs::read(path).unwrap();
    let size = page_size(&bytes);
    bytes
        .chunks(size)
        .enumerate()
        .find(|(_, page)| {
            page[0] == 13
                && page
                    .windows(needle.len())
                    .any(|window| window == needle.as_bytes())
        })
        .map(|(index, _)| index * size)
        .unwrap_or_else(|| panic!("no table leaf page holds {needle}"))
}

fn overwrite(path: &Path, offset: usize, bytes: &[u8]) {
    let mut file = OpenOptions::new().write(true).open(path).unwrap();
    file.seek(SeekFrom::Start(offset as u64)).unwrap();
    file.write_all(bytes).unwrap();
    file.sync_all().unwrap();
}

fn assert_reports_corruption(error: &EventStoreError) {
    match error {
        EventStoreError::BackendFailure { message } => assert!(
            message.contains("corrupt"),
            "expected a message saying the file is corrupt, got: {message}"
        ),
        other => panic!("expected a BackendFailure saying the file is corrupt, got: {other:?}"),
    }
}

/// Runs `case` on a thread of its own and fails if it panics or does not
/// finish within `PATIENCE`.
fn without_hanging(case: impl FnOnce() + Send + 'static) {
    let (done, finished) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        case();
        let _ = done.send(());
    });
    match finished.recv_timeout(PATIENCE) {
        Ok(()) => thread.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Disconnected) => {
            // The case panicked: show its panic.
            if let Err(panic) = thread.join() {
                std::panic::resume_unwind(panic);
            }
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("the case hung for {PATIENCE:?}"),
    }
}

/// Opens the damaged file and reads it all: `open`, or the first read of
/// the whole log, must report corruption. Then the store (if it opened)
/// closes without hanging.
fn assert_corruption_is_reported(path: PathBuf) {
    without_hanging(move || {
        let store = match SqliteStore::open(&path) {
            Err(error) => {
                assert_reports_corruption(&error);
                return;
            }
            Ok(store) => store,
        };
        let error = store.query(&EventQuery::all()).unwrap_err();
        assert_reports_corruption(&error);
        // A durable replay reads the same pages.
        let error = store
            .stream_all_durable(
                &DurableStream::new("replay"),
                HandleStream::new(|_| async { Ok(()) }),
            )
            .unwrap_err();
        assert_reports_corruption(&error);
        drop(store);
    });
}

#[test]
fn a_damaged_page_header_of_the_events_table_is_reported_as_corruption() {
    let (_folder, path) = written_database();
    let page = leaf_page_holding(&path, "event-0300");
    // The b-tree page header and the start of the cell pointer array.
    overwrite(&path, page, &[0xA5; 24]);
    assert_corruption_is_reported(path);
}

#[test]
fn damaged_cells_inside_an_events_page_are_reported_as_corruption() {
    let (_folder, path) = written_database();
    let page = leaf_page_holding(&path, "event-0300");
    let size = page_size(&fs::read(&path).unwrap());
    // The middle of the page: record headers and payload text.
    overwrite(&path, page + size / 2, &[0xFF; 200]);
    assert_corruption_is_reported(path);
}

/// The offset in the file of the first occurrence of `needle`.
fn offset_of(path: &Path, needle: &str) -> usize {
    fs::read(path)
        .unwrap()
        .windows(needle.len())
        .position(|window| window == needle.as_bytes())
        .unwrap_or_else(|| panic!("the file does not hold {needle}"))
}

#[test]
fn a_payload_whose_text_is_no_longer_utf8_is_reported_as_corruption() {
    let (_folder, path) = written_database();
    // Inside the payload text of event 300: the page and record stay
    // intact, so only reading the value shows the damage.
    let text = offset_of(&path, "event-0300") + 20;
    overwrite(&path, text, &[0xFF; 4]);
    assert_corruption_is_reported(path);
}

#[test]
fn a_payload_that_is_no_longer_json_is_reported_as_corruption() {
    let (_folder, path) = written_database();
    // The payload's opening brace, somewhere before the marker.
    let marker = offset_of(&path, "event-0300");
    let bytes = fs::read(&path).unwrap();
    let brace = bytes[..marker]
        .iter()
        .rposition(|&byte| byte == b'{')
        .unwrap();
    overwrite(&path, brace, b"<");
    assert_corruption_is_reported(path);
}

#[test]
fn a_damaged_schema_page_is_reported_as_corruption() {
    let (_folder, path) = written_database();
    // Page 1 holds the schema table after the 100-byte database header.
    overwrite(&path, 100, &[0xA5; 24]);
    assert_corruption_is_reported(path);
}

#[test]
fn a_damaged_database_header_is_reported_as_corruption() {
    let (_folder, path) = written_database();
    // The page size, file format versions and reserved space fields (after
    // the 16-byte "SQLite format 3" string, which `open` checks itself).
    overwrite(&path, 16, &[0xA5; 8]);
    assert_corruption_is_reported(path);
}

#[test]
fn appends_to_a_store_with_a_damaged_page_do_not_hang_or_panic() {
    let (_folder, path) = written_database();
    let page = leaf_page_holding(&path, "event-0300");
    overwrite(&path, page, &[0xA5; 24]);
    without_hanging(move || {
        let store = SqliteStore::open(&path).unwrap();
        // The damaged page is not on the append path: appends still work
        // (SQLite checks a page when it reads it), and reads of the damaged
        // part keep failing.
        let appended = store.append(numbered("after", 3)).unwrap();
        assert_eq!(appended.first_sequence_number, EVENTS as u64 + 1);
        let recent = store
            .query(&EventQuery::all().with_min_sequence_number(EVENTS as u64))
            .unwrap();
        assert_eq!(recent.event_records.len(), 3);
        assert_reports_corruption(&store.query(&EventQuery::all()).unwrap_err());
    });
}
