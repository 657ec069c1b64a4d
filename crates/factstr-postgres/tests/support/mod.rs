//! The throwaway server the tests run against, and a fresh schema per store.
// Test code: helpers may unwrap, and not every test file uses every helper.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use factstr_postgres::{PostgresStore, PostgresStoreOptions};

/// The URL of the test database, from `FACTSTR_TEST_DATABASE_URL`.
pub fn database_url() -> String {
    std::env::var("FACTSTR_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "FACTSTR_TEST_DATABASE_URL is not set. The PostgreSQL tests need the throwaway \
             server: run `scripts/test`, or `eval \"$(scripts/postgres start)\"` before \
             `cargo test -p factstr-postgres` (and `scripts/postgres stop` after)."
        )
    })
}

/// Runs SQL against the test database on a thread of its own (callers may
/// be inside a tokio runtime).
pub fn execute(sql: String) {
    let url = database_url();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            use sqlx::{Connection, Executor};
            let mut connection = sqlx::PgConnection::connect(&url)
                .await
                .unwrap_or_else(|error| {
                    panic!("cannot reach the test server at {url}: {error}; run scripts/test")
                });
            connection.execute(sqlx::AssertSqlSafe(sql)).await.unwrap();
        })
    })
    .join()
    .unwrap();
}

/// Creates a schema no other test uses and returns its name.
pub fn new_schema() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros();
    let schema = format!(
        "t_{}_{}_{}",
        std::process::id(),
        micros % 1_000_000_000_000,
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    execute(format!("CREATE SCHEMA {schema}"));
    schema
}

/// The test database URL with `search_path` set to `schema`.
pub fn schema_url(schema: &str) -> String {
    let url = database_url();
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}options=-csearch_path%3D{schema}")
}

/// A store in `schema`.
pub fn store_in(schema: &str) -> PostgresStore {
    PostgresStore::connect_with(&schema_url(schema), test_options()).unwrap()
}

/// A store in a fresh schema.
pub fn new_store() -> PostgresStore {
    store_in(&new_schema())
}

pub fn test_options() -> PostgresStoreOptions {
    PostgresStoreOptions::default().with_max_connections(8)
}
