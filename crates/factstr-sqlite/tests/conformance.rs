//! The whole conformance suite against `SqliteStore`, each case on a fresh
//! database file in its own temporary folder.

mod common;

use common::TemporaryStore;

fn new_store() -> TemporaryStore {
    TemporaryStore::new()
}

factstr_conformance::conformance_tests!(new_store);

fn new_location() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

fn open_in(folder: &tempfile::TempDir) -> factstr_sqlite::SqliteStore {
    factstr_sqlite::SqliteStore::open(common::database_in(folder)).unwrap()
}

factstr_conformance::persistent_conformance_tests!(new_location, open_in);
