//! The `http_service` example over real HTTP (reqwest against the axum
//! server on 127.0.0.1): 100 concurrent withdrawals never overdraw an
//! account, the read model catches up, an account's history pages through,
//! and a restart (server and store dropped, started again on the same file
//! or schema) resumes the projection without handling a batch twice. Runs on
//! SQLite always, on PostgreSQL against `FACTSTR_TEST_DATABASE_URL` (which
//! `scripts/test` sets; under CI its absence fails the test), and on memory
//! (restarting the service on the same store).

#![allow(clippy::unwrap_used, clippy::expect_used)]
#![allow(dead_code)] // the example's modules, compiled here, hold what only its main uses

#[path = "../../../examples/http_service/accounts.rs"]
mod accounts;
#[path = "../../../examples/http_service/app.rs"]
mod app;
#[path = "../../../examples/http_service/balances.rs"]
mod balances;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use factstr::AsyncEventStore;
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpListener;

use crate::balances::{Balances, Progress};

type Store = Arc<dyn AsyncEventStore>;

const WITHDRAWALS: usize = 100;
const DEPOSIT: i64 = 1_000;
const WITHDRAWAL: i64 = 15;
/// 1,000 covers 66 withdrawals of 15, leaving 10.
const PAID_OUT: usize = 66;

async fn start(store: &Store, model_file: &Path) -> (app::RunningService, String) {
    let balances = Arc::new(Balances::load(model_file).unwrap());
    let listener = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
    let service = app::start(Arc::clone(store), balances, listener)
        .await
        .unwrap();
    let base = format!("http://{}", service.address());
    (service, base)
}

async fn post(client: &reqwest::Client, url: String, body: Value) -> (StatusCode, Value) {
    let response = client.post(url).json(&body).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

async fn get(client: &reqwest::Client, url: String) -> (StatusCode, Value) {
    let response = client.get(url).send().await.unwrap();
    let status = response.status();
    (status, response.json().await.unwrap())
}

/// The balance of a1 once the read model has applied the log through `sequence`.
async fn balance_once_applied(client: &reqwest::Client, base: &str, sequence: u64) -> i64 {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = get(client, format!("{base}/accounts/a1/balance")).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        if body["applied_through"].as_u64().unwrap() >= sequence {
            return body["balance"].as_i64().unwrap();
        }
        assert!(
            Instant::now() < deadline,
            "the read model did not reach {sequence}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn progress(client: &reqwest::Client, base: &str) -> Progress {
    let (status, body) = get(client, format!("{base}/projection")).await;
    assert_eq!(status, StatusCode::OK);
    serde_json::from_value(body).unwrap()
}

/// Every fact of a1, read through the history endpoint `limit` at a time.
async fn history(client: &reqwest::Client, base: &str, limit: usize) -> Vec<Value> {
    let mut events = Vec::new();
    let mut after = String::new();
    loop {
        let (status, page) = get(
            client,
            format!("{base}/accounts/a1/history?limit={limit}{after}"),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        let records = page["events"].as_array().unwrap();
        assert!(records.len() <= limit);
        events.extend(records.iter().cloned());
        match page["next_after"].as_u64() {
            Some(next) => after = format!("&after={next}"),
            None => return events,
        }
    }
}

/// Drops the last handle of a store off the runtime's workers: closing it
/// waits for its streams and writes their cursors.
async fn close(store: Store) {
    assert_eq!(
        Arc::strong_count(&store),
        1,
        "the service let go of the store"
    );
    tokio::task::spawn_blocking(move || drop(store))
        .await
        .unwrap();
}

/// The whole scenario: `open()` opens the store (again, after the restart,
/// when `reopen` is set; otherwise the restarted service uses the same one).
async fn bank_over_http(open: impl Fn() -> Store, reopen: bool, model_file: PathBuf) {
    let client = reqwest::Client::new();
    let store = open();
    let (service, base) = start(&store, &model_file).await;

    let (status, _) = post(&client, format!("{base}/accounts/a1"), json!({})).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, _) = post(&client, format!("{base}/accounts/a1"), json!({})).await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = post(
        &client,
        format!("{base}/accounts/zz/deposits"),
        json!({"amount": 5}),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = post(
        &client,
        format!("{base}/accounts/a1/deposits"),
        json!({"amount": 0}),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = post(
        &client,
        format!("{base}/accounts/a1/deposits"),
        json!({"amount": DEPOSIT}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);

    // 100 withdrawals at once: exactly as many succeed as the balance covers.
    let racing: Vec<_> = (0..WITHDRAWALS)
        .map(|_| {
            let client = client.clone();
            let url = format!("{base}/accounts/a1/withdrawals");
            tokio::spawn(async move { post(&client, url, json!({"amount": WITHDRAWAL})).await })
        })
        .collect();
    let mut paid = Vec::new();
    let mut refused = 0;
    for outcome in racing {
        let (status, body) = outcome.await.unwrap();
        match status {
            StatusCode::OK => paid.push(body["sequence_number"].as_u64().unwrap()),
            StatusCode::CONFLICT => {
                assert_eq!(body["error"], "insufficient funds");
                assert!(body["balance"].as_i64().unwrap() < WITHDRAWAL);
                refused += 1;
            }
            other => panic!("withdrawal answered {other}: {body}"),
        }
    }
    assert_eq!((paid.len(), refused), (PAID_OUT, WITHDRAWALS - PAID_OUT));
    let head = paid.iter().copied().max().unwrap();

    // The log itself: never below zero at any point of its history.
    let facts = history(&client, &base, 7).await;
    assert_eq!(facts.len(), 2 + PAID_OUT);
    assert_eq!(facts[0]["event_type"], "account-opened");
    assert_eq!(facts[1]["event_type"], "money-deposited");
    let mut running = 0;
    let mut previous = 0;
    for fact in &facts {
        let sequence = fact["sequence_number"].as_u64().unwrap();
        assert!(sequence > previous, "history in ascending order");
        previous = sequence;
        let amount = fact["amount"].as_i64().unwrap_or(0);
        match fact["event_type"].as_str().unwrap() {
            "money-deposited" => running += amount,
            "money-withdrawn" => running -= amount,
            _ => {}
        }
        assert!(running >= 0, "overdrawn at {sequence}");
    }
    assert_eq!(running, DEPOSIT - WITHDRAWAL * PAID_OUT as i64);

    // The read model catches up, one handler call per committed batch.
    assert_eq!(balance_once_applied(&client, &base, head).await, running);
    assert_eq!(
        progress(&client, &base).await,
        Progress {
            applied_through: head,
            batches_handled: 2 + PAID_OUT as u64
        }
    );

    // Restart: server and projection stopped, the store dropped and opened again.
    service.stop().await.unwrap();
    let store = if reopen {
        close(store).await;
        open()
    } else {
        store
    };
    let (service, base) = start(&store, &model_file).await;
    // The model is back from its file and the stream replayed nothing.
    assert_eq!(
        progress(&client, &base).await,
        Progress {
            applied_through: head,
            batches_handled: 0
        }
    );
    assert_eq!(balance_once_applied(&client, &base, head).await, running);
    let (status, body) = post(
        &client,
        format!("{base}/accounts/a1/deposits"),
        json!({"amount": 5}),
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let deposited = body["sequence_number"].as_u64().unwrap();
    assert_eq!(deposited, head + 1);
    assert_eq!(
        balance_once_applied(&client, &base, deposited).await,
        running + 5
    );
    assert_eq!(
        progress(&client, &base).await,
        Progress {
            applied_through: deposited,
            batches_handled: 1
        }
    );
    assert_eq!(history(&client, &base, 1000).await.len(), 3 + PAID_OUT);

    service.stop().await.unwrap();
    if reopen {
        close(store).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_bank_over_http_restarting_on_the_same_store() {
    let folder = tempfile::tempdir().unwrap();
    let store: Store = Arc::new(factstr_memory::MemoryStore::new());
    bank_over_http(
        move || Arc::clone(&store),
        false,
        folder.path().join("balances.json"),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_bank_over_http_restarting_on_the_same_file() {
    let folder = tempfile::tempdir().unwrap();
    let database = folder.path().join("bank.db");
    let open = move || -> Store {
        // Opening creates or checks the file: a blocking call, as in the example's main.
        let database = database.clone();
        let store = std::thread::spawn(move || factstr_sqlite::SqliteStore::open(database))
            .join()
            .unwrap()
            .unwrap();
        Arc::new(store)
    };
    bank_over_http(open, true, folder.path().join("balances.json")).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_bank_over_http_restarting_on_the_same_schema() {
    let Ok(url) = std::env::var("FACTSTR_TEST_DATABASE_URL") else {
        let under_ci = std::env::var_os("CI").is_some_and(|value| !value.is_empty());
        assert!(
            !under_ci,
            "FACTSTR_TEST_DATABASE_URL is not set under CI: run scripts/test, which starts PostgreSQL"
        );
        eprintln!(
            "FACTSTR_TEST_DATABASE_URL is not set: the PostgreSQL run of the HTTP service needs \
             `eval \"$(scripts/postgres start)\"` first (scripts/test does it)"
        );
        return;
    };
    let schema = format!("http_service_{}", std::process::id());
    execute(
        &url,
        format!("DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}"),
    )
    .await;
    let separator = if url.contains('?') { '&' } else { '?' };
    let schema_url = format!("{url}{separator}options=-csearch_path%3D{schema}");
    let folder = tempfile::tempdir().unwrap();
    let open = move || -> Store {
        let schema_url = schema_url.clone();
        let store =
            std::thread::spawn(move || factstr_postgres::PostgresStore::connect(&schema_url))
                .join()
                .unwrap()
                .unwrap();
        Arc::new(store)
    };
    bank_over_http(open, true, folder.path().join("balances.json")).await;
    execute(&url, format!("DROP SCHEMA {schema} CASCADE")).await;
}

async fn execute(url: &str, sql: String) {
    use sqlx::{Connection, Executor};
    let mut connection = sqlx::PgConnection::connect(url).await.unwrap();
    connection.execute(sqlx::AssertSqlSafe(sql)).await.unwrap();
}

/// `cargo run --example http_service` as its user meets it: it prints its
/// address and answers there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_example_binary_prints_its_address_and_serves() {
    use std::io::BufRead;

    // target/<profile>/deps/<this test> -> target/<profile>/examples/http_service
    let test = std::env::current_exe().unwrap();
    let profile = test.parent().and_then(Path::parent).unwrap();
    let binary = profile
        .join("examples")
        .join(format!("http_service{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.exists(),
        "{} is missing: `cargo test -p factstr-examples` builds it (a test filter such as --test skips it)",
        binary.display()
    );
    let folder = tempfile::tempdir().unwrap();
    let mut child = std::process::Command::new(binary)
        .env("FACTSTR_HTTP_DATA", folder.path())
        .env_remove("DATABASE_URL")
        .env_remove("PORT")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let first_line = tokio::task::spawn_blocking(move || {
        let mut line = String::new();
        std::io::BufReader::new(stdout)
            .read_line(&mut line)
            .unwrap();
        line
    })
    .await
    .unwrap();
    let address = first_line
        .split_whitespace()
        .find(|word| word.starts_with("http://"))
        .unwrap_or_else(|| panic!("no address in {first_line:?}"))
        .to_owned();
    assert!(first_line.contains("SQLite"), "{first_line}");
    let client = reqwest::Client::new();
    let (status, _) = post(&client, format!("{address}/accounts/a1"), json!({})).await;
    assert_eq!(status, StatusCode::CREATED);
    let (status, body) = get(&client, format!("{address}/projection")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["applied_through"], 1, "{body}");
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(folder.path().join("bank.db").exists());
}
