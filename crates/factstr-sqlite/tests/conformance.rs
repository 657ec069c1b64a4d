//! The whole conformance suite against `SqliteStore`, each case on a fresh
//! database file in its own temporary folder.

mod common;

use common::TemporaryStore;

fn new_store() -> TemporaryStore {
    TemporaryStore::new()
}

factstr_conformance::conformance_tests!(new_store);

/// The address of a folder's log: the path of its file `events.db`.
fn database_address(folder: &tempfile::TempDir) -> String {
    common::database_in(folder).to_str().unwrap().to_owned()
}

/// A store on the file at `path`. Generous with a busy database: in the
/// cases across processes, four writers may queue for a while on a loaded
/// machine.
fn open_database(path: &str) -> factstr_sqlite::SqliteStore {
    factstr_sqlite::SqliteStore::open_with(
        path,
        factstr_sqlite::SqliteStoreOptions::default()
            .busy_timeout(std::time::Duration::from_secs(60)),
    )
    .unwrap()
}

// A folder is the place a SQLite log lives in (its file `events.db`).
factstr_conformance::persistent_conformance_tests! {
    new_location: common::new_folder,
    address: database_address,
    open: open_database,
    reference: factstr_memory::MemoryStore::new,
    random_cases: 48,
}
