//! The whole conformance suite against `PostgresStore`, each case in a
//! schema of its own on the throwaway server (see `scripts/postgres`).

mod support;

fn new_store() -> factstr_postgres::PostgresStore {
    support::new_store()
}

factstr_conformance::conformance_tests!(new_store);
