//! Running the built `factstr` binary, SQLite fixtures, and a fresh
//! PostgreSQL schema per test.
// Test code: helpers may unwrap, and not every test file uses every helper.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use factstr::backend::StoreOperations;
use factstr::{EventRecord, EventStore, NewEvent};
use factstr_sqlite::{SqliteDurability, SqliteStore, SqliteStoreOptions};
use serde_json::json;

/// The binary under test.
pub fn factstr() -> Command {
    Command::new(env!("CARGO_BIN_EXE_factstr"))
}

/// What a finished command printed.
pub struct Run {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

fn finished(output: Output) -> Run {
    Run {
        success: output.status.success(),
        stdout: String::from_utf8(output.stdout).unwrap(),
        stderr: String::from_utf8(output.stderr).unwrap(),
    }
}

/// Runs `factstr ARGS` to the end.
pub fn run(args: &[&str]) -> Run {
    finished(factstr().args(args).stdin(Stdio::null()).output().unwrap())
}

/// Runs `factstr ARGS` with `input` on standard input.
pub fn run_with_input(args: &[&str], input: &str) -> Run {
    use std::io::Write;
    let mut child = factstr()
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(input.as_bytes()).unwrap();
    drop(stdin);
    finished(child.wait_with_output().unwrap())
}

/// Runs `factstr ARGS`, which must succeed; returns its standard output.
pub fn ok(args: &[&str]) -> String {
    let run = run(args);
    assert!(
        run.success,
        "factstr {args:?} failed: {}{}",
        run.stderr, run.stdout
    );
    run.stdout
}

/// Runs `factstr ARGS`, which must fail with one line on standard error;
/// returns that line.
pub fn fails(args: &[&str]) -> String {
    let run = run(args);
    assert!(!run.success, "factstr {args:?} succeeded: {}", run.stdout);
    assert_eq!(run.stderr.lines().count(), 1, "{:?}", run.stderr);
    run.stderr
}

/// `sqlite:PATH`.
pub fn sqlite_url(path: &Path) -> String {
    format!("sqlite:{}", path.display())
}

/// Batch sizes the fixtures cycle through.
pub const BATCH_SIZES: [usize; 9] = [1, 3, 10, 100, 1, 7, 1000, 50, 2];

/// A SQLite store at `path` holding `facts` facts in batches of
/// [`BATCH_SIZES`], of five types with small payloads, and the durable
/// streams `balances` (everything) and `accounts` (one type), with cursors.
pub fn sqlite_fixture(path: &Path, facts: usize) -> SqliteStore {
    let options = SqliteStoreOptions::default().durability(SqliteDurability::Normal);
    let store = SqliteStore::open_with(path, options).unwrap();
    let mut appended = 0;
    let mut sizes = BATCH_SIZES.iter().cycle();
    while appended < facts {
        let size = (*sizes.next().unwrap()).min(facts - appended);
        let batch = (appended..appended + size)
            .map(|index| {
                NewEvent::new(
                    format!("type-{}", index % 5),
                    json!({"account": index % 1000, "amount": index, "note": "é\"x"}),
                )
            })
            .collect();
        store.append(batch).unwrap();
        appended += size;
    }
    let head = facts as u64;
    store
        .set_durable_stream("balances", &factstr::EventQuery::all(), head / 2)
        .unwrap();
    store
        .set_durable_stream(
            "accounts",
            &factstr::EventQuery::for_event_types(["type-1"]),
            head / 3,
        )
        .unwrap();
    store
}

/// Every batch of `store`, page by page, handed to `each`.
pub fn for_each_batch(store: &dyn StoreOperations, mut each: impl FnMut(Vec<EventRecord>)) {
    let mut after = 0;
    loop {
        let page = store.read_batches(after, 10_000).unwrap();
        let Some(last) = page.last().and_then(|batch| batch.last()) else {
            return;
        };
        after = last.sequence_number;
        page.into_iter().for_each(&mut each);
    }
}

/// Asserts that two stores hold the same batches (numbers, times, types,
/// payloads, boundaries) and durable streams, comparing page by page.
pub fn assert_same_log(left: &dyn StoreOperations, right: &dyn StoreOperations) {
    let mut after = 0;
    loop {
        let left_page = left.read_batches(after, 10_000).unwrap();
        let right_page = right.read_batches(after, 10_000).unwrap();
        assert_eq!(left_page.len(), right_page.len(), "batches after {after}");
        for (left_batch, right_batch) in left_page.iter().zip(&right_page) {
            assert_eq!(left_batch, right_batch, "batch after {after}");
        }
        let Some(last) = left_page.last().and_then(|batch| batch.last()) else {
            break;
        };
        after = last.sequence_number;
    }
    let streams = |store: &dyn StoreOperations| {
        store
            .durable_streams()
            .unwrap()
            .into_iter()
            .map(|stream| (stream.name, stream.query, stream.cursor))
            .collect::<Vec<_>>()
    };
    assert_eq!(streams(left), streams(right));
}

/// The URL of the test database, from `FACTSTR_TEST_DATABASE_URL`.
pub fn database_url() -> String {
    std::env::var("FACTSTR_TEST_DATABASE_URL").unwrap_or_else(|_| {
        panic!(
            "FACTSTR_TEST_DATABASE_URL is not set. The PostgreSQL tests need the throwaway \
             server: run `scripts/test`, or `eval \"$(scripts/postgres start)\"` first."
        )
    })
}

/// Creates a schema no other test uses; returns the store URL naming it
/// (with the `schema=` parameter the command understands).
pub fn new_postgres_url() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros();
    let schema = format!(
        "cli_{}_{}_{}",
        std::process::id(),
        micros % 1_000_000_000_000,
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    let url = database_url();
    execute_admin(format!("CREATE SCHEMA {schema}"));
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}schema={schema}")
}

/// Drops the schema of a store URL made by [`new_postgres_url`], for tests
/// that leave much data behind.
pub fn drop_postgres_schema(store_url: &str) {
    let schema = store_url
        .rsplit_once("schema=")
        .map(|(_, schema)| schema.to_owned())
        .unwrap();
    execute_admin(format!("DROP SCHEMA {schema} CASCADE"));
}

/// Runs `sql` on the test database.
fn execute_admin(sql: String) {
    let admin_url = database_url();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            use sqlx::{Connection, Executor};
            let mut connection = sqlx::PgConnection::connect(&admin_url).await.unwrap();
            connection.execute(sqlx::AssertSqlSafe(sql)).await.unwrap();
        })
    })
    .join()
    .unwrap();
}

/// The connection URL of a store URL made by [`new_postgres_url`], for
/// opening the store in the test itself.
pub fn postgres_connection_url(store_url: &str) -> String {
    store_url.replace("schema=", "options=-csearch_path%3D")
}
