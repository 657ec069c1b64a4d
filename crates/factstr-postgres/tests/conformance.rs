//! The whole conformance suite against `PostgresStore`, each case in a
//! schema of its own on the throwaway server (see `scripts/postgres`).

mod support;

fn new_store() -> factstr_postgres::PostgresStore {
    support::new_store()
}

factstr_conformance::conformance_tests!(new_store);

/// A fresh schema is the place a PostgreSQL log lives in.
fn new_location() -> String {
    support::new_schema()
}

// The persistent suite hands back a reference to what `new_location` made.
#[allow(clippy::ptr_arg)]
fn open_in(schema: &String) -> factstr_postgres::PostgresStore {
    support::store_in(schema)
}

factstr_conformance::persistent_conformance_tests!(new_location, open_in);
