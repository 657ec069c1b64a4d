//! The whole conformance suite against `SqliteStore`, each case on a fresh
//! database file in its own temporary folder.

mod common;

use common::TemporaryStore;

fn new_store() -> TemporaryStore {
    TemporaryStore::new()
}

factstr_conformance::conformance_tests!(new_store);

// A folder is the place a SQLite log lives in (its file `events.db`).
factstr_conformance::persistent_conformance_tests!(common::new_folder, common::open_in);
