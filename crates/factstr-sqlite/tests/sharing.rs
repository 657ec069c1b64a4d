//! Two stores on one file in one process: opening and closing the second
//! keeps the file locks of the first. What two instances on one file show
//! through the `EventStore` API is tested by the persistent conformance
//! suite (`tests/conformance.rs`).

// The locks are read from /proc/locks.
#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use factstr::{EventQuery, EventStore};
use factstr_conformance::support::numbered;
use factstr_sqlite::SqliteStore;

/// The POSIX locks this process holds on the file at `path`, as Linux lists
/// them.
fn locks_held_on(path: &std::path::Path) -> Vec<String> {
    use std::os::unix::fs::MetadataExt;
    let inode = std::fs::metadata(path).unwrap().ino();
    let process = std::process::id().to_string();
    std::fs::read_to_string("/proc/locks")
        .unwrap()
        .lines()
        .filter(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields.get(1) == Some(&"POSIX")
                && fields.get(4) == Some(&process.as_str())
                && fields
                    .get(5)
                    .is_some_and(|file| file.ends_with(&format!(":{inode}")))
        })
        .map(str::to_owned)
        .collect()
}

#[test]
fn opening_a_second_store_on_the_file_keeps_the_locks_of_the_first() {
    let folder = tempfile::tempdir().unwrap();
    let path = common::database_in(&folder);
    let first = SqliteStore::open(&path).unwrap();
    first.append(numbered("a", 1)).unwrap();
    first.query(&EventQuery::all()).unwrap();
    // A connection in WAL mode keeps a shared lock on the file; another
    // process closing the file's last connection deletes the write-ahead
    // log unless it finds one, and the first store's later commits would
    // go to a deleted file.
    assert!(
        !locks_held_on(&path).is_empty(),
        "the first store holds no lock"
    );
    // Closing any descriptor of the file releases every POSIX lock the
    // process holds on it: opening must not do that.
    let second = SqliteStore::open(&path).unwrap();
    assert!(
        !locks_held_on(&path).is_empty(),
        "opening released the locks"
    );
    drop(second);
    assert!(
        !locks_held_on(&path).is_empty(),
        "closing released the locks"
    );
}
