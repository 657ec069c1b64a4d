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

pub mod server;

/// Runs SQL against the test database on a thread of its own (callers may
/// be inside a tokio runtime).
pub fn execute(sql: String) {
    execute_at(database_url(), sql);
}

/// Runs SQL against the database `url` names, on a thread of its own.
pub fn execute_at(url: String, sql: String) {
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

/// The rows `sql` returns, each as the text of its first column, read on a
/// thread of its own (callers may be inside a tokio runtime).
pub fn fetch_texts(sql: String) -> Vec<String> {
    let url = database_url();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            use sqlx::Connection;
            let mut connection = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(sql))
                .fetch_all(&mut connection)
                .await
                .unwrap()
        })
    })
    .join()
    .unwrap()
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
    PostgresStoreOptions::default().max_connections(8)
}

/// A child process running one test of the current test binary as a
/// helper: `child_test` reads `FACTSTR_TEST_CHILD_ROLE` and does nothing
/// when it is absent (so the normal run passes it trivially).
pub struct ChildProcess {
    process: std::process::Child,
    stdout: std::io::BufReader<std::process::ChildStdout>,
    role: String,
}

impl ChildProcess {
    pub fn spawn(child_test: &str, role: &str, schema: &str, worker: usize) -> Self {
        use std::process::{Command, Stdio};
        let mut process = Command::new(std::env::current_exe().unwrap())
            .args(["--exact", child_test, "--nocapture", "--test-threads=1"])
            .env("FACTSTR_TEST_CHILD_ROLE", role)
            .env("FACTSTR_TEST_CHILD_SCHEMA", schema)
            .env("FACTSTR_TEST_CHILD_WORKER", worker.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = std::io::BufReader::new(process.stdout.take().unwrap());
        Self {
            process,
            stdout,
            role: role.to_owned(),
        }
    }

    /// Waits until the child prints a line ending in `marker` (the test
    /// harness may have printed the test's name before it on that line).
    pub fn wait_for_line(&mut self, marker: &str) {
        use std::io::BufRead;
        let mut line = String::new();
        loop {
            line.clear();
            let read = self.stdout.read_line(&mut line).unwrap();
            assert!(
                read > 0,
                "child {} ended before printing {marker}",
                self.role
            );
            if line.trim_end().ends_with(marker) {
                return;
            }
        }
    }

    /// The child's next line of output, `None` at its end.
    pub fn read_line(&mut self) -> Option<String> {
        use std::io::BufRead;
        let mut line = String::new();
        let read = self.stdout.read_line(&mut line).unwrap();
        (read > 0).then(|| line.trim_end().to_owned())
    }

    /// Kills the child with SIGKILL and waits for it to end.
    pub fn kill(&mut self) {
        self.process.kill().unwrap();
        self.process.wait().unwrap();
    }

    /// Tells the child to go on (it waits for a line on stdin).
    pub fn tell(&mut self) {
        use std::io::Write;
        let stdin = self.process.stdin.as_mut().unwrap();
        stdin.write_all(b"go\n").unwrap();
        stdin.flush().unwrap();
    }

    /// Waits for the child and asserts it succeeded.
    pub fn finish(mut self) {
        drop(self.process.stdin.take());
        let status = self.process.wait().unwrap();
        assert!(status.success(), "child {} failed: {status}", self.role);
    }

    pub fn has_exited(&mut self) -> bool {
        self.process.try_wait().unwrap().is_some()
    }
}

/// The role this process plays when started by [`ChildProcess::spawn`].
pub fn child_role() -> Option<(String, String, usize)> {
    let role = std::env::var("FACTSTR_TEST_CHILD_ROLE").ok()?;
    let schema = std::env::var("FACTSTR_TEST_CHILD_SCHEMA").unwrap();
    let worker = std::env::var("FACTSTR_TEST_CHILD_WORKER")
        .unwrap()
        .parse()
        .unwrap();
    Some((role, schema, worker))
}

/// Reads one line from stdin (the parent's go-ahead).
pub fn wait_for_parent() {
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

/// Prints `marker` on its own line for the parent (written to stdout
/// directly: the test harness may capture `println!`).
pub fn tell_parent(marker: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(format!("{marker}\n").as_bytes()).unwrap();
    stdout.flush().unwrap();
}

/// The first column of the first row `sql` returns from the database `url`
/// names, as a number.
pub fn fetch_i64_at(url: String, sql: String) -> i64 {
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            use sqlx::Connection;
            let mut connection = sqlx::PgConnection::connect(&url).await.unwrap();
            sqlx::query_scalar::<_, i64>(sqlx::AssertSqlSafe(sql))
                .fetch_one(&mut connection)
                .await
                .unwrap()
        })
    })
    .join()
    .unwrap()
}
