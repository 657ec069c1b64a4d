//! Where a single SQLite append goes: commits one event at a time (or
//! batches of the size the third argument gives), either
//! through `SqliteStore` (default durability) or as a bare SQLite commit
//! (one row, no index, WAL, `synchronous = FULL`), and prints the mean time
//! per commit and the write-ahead log frames (pages) each commit wrote.
//!
//! ```text
//! cargo build --release -p factstr-bench --bin factstr-sqlite-commit-profile
//! strace -f -c -e trace=fdatasync,fsync,pwrite64 \
//!     target/x86_64-unknown-linux-gnu/release/factstr-sqlite-commit-profile store 1000
//! ```
//!
//! `strace -c` then counts the syncs and page writes of those commits
//! (divide by the count; opening the file adds a few). Run the two sides
//! back to back: the disk's sync rate swings from minute to minute.

// A command-line tool: its output is the result.
#![allow(clippy::print_stdout)]

use std::path::Path;
use std::time::Instant;

use factstr::{EventStore, NewEvent};
use factstr_sqlite::SqliteStore;
use serde_json::json;

/// SQLite's page size (the default, which both sides use) plus the WAL
/// frame header.
const WAL_FRAME_BYTES: u64 = 4096 + 24;
/// The WAL file header.
const WAL_HEADER_BYTES: u64 = 32;

fn main() -> Result<(), String> {
    let mut arguments = std::env::args().skip(1);
    let side = arguments.next().unwrap_or_else(|| "store".to_owned());
    let commits: u64 = match arguments.next() {
        Some(count) => count
            .parse()
            .map_err(|error| format!("the commit count {count:?}: {error}"))?,
        // Below the store's checkpoint threshold (8,192 frames), so the WAL
        // only grows.
        None => 1_000,
    };
    let batch: u64 = match arguments.next() {
        Some(size) => size
            .parse()
            .ok()
            .filter(|size| *size > 0)
            .ok_or_else(|| format!("the batch size {size:?} is not a positive number"))?,
        None => 1,
    };
    let folder =
        std::env::temp_dir().join(format!("factstr-commit-profile-{}", std::process::id()));
    std::fs::create_dir_all(&folder).map_err(|error| error.to_string())?;
    let path = folder.join(format!("{side}.db"));
    let outcome = match side.as_str() {
        "store" => profile_store(&path, commits, batch),
        "bare" => profile_bare(&path, commits, batch),
        other => Err(format!("unknown side {other:?}: use `store` or `bare`")),
    };
    let _ = std::fs::remove_dir_all(&folder);
    let (elapsed_seconds, frames) = outcome?;
    println!(
        "{side}: {commits} commits of {batch} event(s), {:.1} µs per commit, {:.2} WAL frames per commit",
        elapsed_seconds * 1e6 / commits as f64,
        frames as f64 / commits as f64
    );
    Ok(())
}

fn deposit(n: u64) -> serde_json::Value {
    json!({ "account": format!("account-{}", n % 1_000), "amount": n % 97, "currency": "EUR" })
}

/// Frames in the WAL of `database` (it only grew since it was created).
fn wal_frames(database: &Path) -> Result<u64, String> {
    let mut wal = database.as_os_str().to_owned();
    wal.push("-wal");
    let bytes = std::fs::metadata(&wal)
        .map_err(|error| format!("reading the size of the WAL: {error}"))?
        .len();
    Ok(bytes.saturating_sub(WAL_HEADER_BYTES) / WAL_FRAME_BYTES)
}

fn profile_store(path: &Path, commits: u64, batch: u64) -> Result<(f64, u64), String> {
    let store = SqliteStore::open(path).map_err(|error| error.to_string())?;
    let before = wal_frames(path).unwrap_or(0);
    let started = Instant::now();
    for n in 0..commits {
        let events = (n * batch..(n + 1) * batch)
            .map(|event| NewEvent::new("deposited", deposit(event)))
            .collect();
        store.append(events).map_err(|error| error.to_string())?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok((elapsed, wal_frames(path)? - before))
}

fn profile_bare(path: &Path, commits: u64, batch: u64) -> Result<(f64, u64), String> {
    let failed = |error: rusqlite::Error| format!("bare SQLite failed: {error}");
    let connection = rusqlite::Connection::open(path).map_err(failed)?;
    connection
        .execute_batch(
            "PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL;
             PRAGMA wal_autocheckpoint = 8192;
             CREATE TABLE bare_events (
                 sequence_number INTEGER PRIMARY KEY NOT NULL,
                 occurred_at_micros INTEGER NOT NULL,
                 event_type TEXT NOT NULL,
                 payload TEXT NOT NULL
             );",
        )
        .map_err(failed)?;
    let before = wal_frames(path).unwrap_or(0);
    let started = Instant::now();
    for n in 0..commits {
        connection
            .execute_batch("BEGIN IMMEDIATE")
            .map_err(failed)?;
        connection
            .prepare_cached(
                "INSERT INTO bare_events (sequence_number, occurred_at_micros, event_type, payload)
                 VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut insert| {
                for event in n * batch..(n + 1) * batch {
                    insert.execute(rusqlite::params![
                        (event + 1) as i64,
                        0_i64,
                        "deposited",
                        deposit(event).to_string()
                    ])?;
                }
                Ok(())
            })
            .map_err(failed)?;
        connection.execute_batch("COMMIT").map_err(failed)?;
    }
    let elapsed = started.elapsed().as_secs_f64();
    Ok((elapsed, wal_frames(path)? - before))
}
