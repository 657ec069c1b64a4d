//! A bank as an axum service on FACTSTR, through `Arc<dyn AsyncEventStore>`.
//!
//! Accounts are opened, receive deposits and pay out withdrawals only while
//! the balance allows it: each withdrawal reads the account's facts, decides
//! and appends with `append_if` on the account's context, so no number of
//! concurrent requests can overdraw an account. Balances come from a read
//! model fed by a durable stream, which resumes after a restart where it
//! stopped. An account's history is served page by page (`query_page`).
//!
//! ```text
//! cargo run --example http_service
//! curl -X POST localhost:<port>/accounts/a1
//! curl -X POST localhost:<port>/accounts/a1/deposits -H 'content-type: application/json' -d '{"amount": 100}'
//! curl -X POST localhost:<port>/accounts/a1/withdrawals -H 'content-type: application/json' -d '{"amount": 30}'
//! curl localhost:<port>/accounts/a1/balance
//! curl 'localhost:<port>/accounts/a1/history?limit=2'
//! ```
//!
//! The store is SQLite, in `bank.db` of the folder `FACTSTR_HTTP_DATA`
//! names (default: `factstr-http-service` in the system's temporary
//! folder), or PostgreSQL when `DATABASE_URL` is set. The read model is
//! saved next to it in that folder. The service listens on 127.0.0.1, on
//! the port `PORT` names or on a free one, and prints its address. Ctrl-C
//! stops it.

#![allow(clippy::print_stdout)] // an example reports to its user

mod accounts;
mod app;
mod balances;

use std::path::PathBuf;
use std::sync::Arc;

use factstr::AsyncEventStore;
use factstr_postgres::PostgresStore;
use factstr_sqlite::SqliteStore;
use tokio::net::TcpListener;

use crate::balances::Balances;

#[tokio::main]
async fn main() -> Result<(), app::Error> {
    let data = std::env::var_os("FACTSTR_HTTP_DATA").map_or_else(
        || std::env::temp_dir().join("factstr-http-service"),
        PathBuf::from,
    );
    let (store, model_file, described) = open_store(&data).await?;
    let balances = Arc::new(Balances::load(&model_file)?);

    let port: u16 = match std::env::var("PORT") {
        Ok(port) => port
            .parse()
            .map_err(|_| format!("PORT must be a port number, got {port:?}"))?,
        Err(_) => 0,
    };
    let listener = TcpListener::bind(("127.0.0.1", port)).await?;
    let service = app::start(Arc::clone(&store), balances, listener).await?;
    println!(
        "http_service on {described} listening on http://{}",
        service.address()
    );

    tokio::signal::ctrl_c().await?;
    service.stop().await?;
    // Closing a store waits for its streams and writes their cursors: off
    // the runtime's workers.
    tokio::task::spawn_blocking(move || drop(store)).await?;
    Ok(())
}

/// The store, the read model's file, and what to call them.
async fn open_store(
    data: &std::path::Path,
) -> Result<(Arc<dyn AsyncEventStore>, PathBuf, String), app::Error> {
    // Opening connects or creates files: done off the runtime's workers.
    if let Ok(url) = std::env::var("DATABASE_URL") {
        let store = tokio::task::spawn_blocking(move || PostgresStore::connect(&url)).await??;
        let described = format!("PostgreSQL (schema {})", store.schema());
        return Ok((
            Arc::new(store),
            data.join("balances-postgres.json"),
            described,
        ));
    }
    let path = data.join("bank.db");
    let described = format!("SQLite ({})", path.display());
    let store = tokio::task::spawn_blocking(move || SqliteStore::open(path)).await??;
    Ok((
        Arc::new(store),
        data.join("balances-sqlite.json"),
        described,
    ))
}
