//! The whole conformance suite against `PostgresStore`, each case in a
//! schema of its own on the throwaway server (see `scripts/postgres`).

mod support;

fn new_store() -> factstr_postgres::PostgresStore {
    support::new_store()
}

factstr_conformance::conformance_tests!(new_store);

// A schema is the place a PostgreSQL log lives in; its name is its
// address. Few random runs: each one sets up a schema on the server.
factstr_conformance::persistent_conformance_tests! {
    new_location: support::new_schema,
    address: String::clone,
    open: support::store_in,
    reference: factstr_memory::MemoryStore::new,
    random_cases: 16,
}
