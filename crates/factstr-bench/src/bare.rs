//! The bare engines under the SQLite and PostgreSQL stores, doing the
//! writes and reads a store row does with nothing of the store on top: one
//! row per event in a table without indexes, the same durability, the same
//! engine (the bundled SQLite through rusqlite; the same PostgreSQL server
//! through sqlx). A store row's share of its bare row is how close the store
//! sits to the limit of its engine.

use std::path::{Path, PathBuf};

use serde_json::Value;
use sqlx::types::chrono::{DateTime, Utc};

use crate::stores::Durability;

/// Rows read per page by the bare reads: the page size of the stores'
/// durable replay.
pub(crate) const READ_PAGE_ROWS: i64 = 2_048;

/// An event as the bare engines store it.
pub(crate) struct BareEvent {
    pub(crate) event_type: &'static str,
    pub(crate) payload: Value,
}

/// A decoded row of a bare read: what a store must produce per event before
/// it can deliver it.
#[allow(dead_code)] // the fields are read only by dropping the page
struct ReadRow {
    sequence_number: i64,
    occurred_at: i64,
    event_type: String,
    payload: Value,
}

fn occurred_at_micros() -> i64 {
    Utc::now().timestamp_micros()
}

/// Bare SQLite as `SqliteStore` configures it (WAL, the given
/// `synchronous`).
pub(crate) struct BareSqlite {
    connection: rusqlite::Connection,
    path: PathBuf,
    next_sequence: i64,
}

fn sqlite_failed(error: rusqlite::Error) -> String {
    format!("bare SQLite failed: {error}")
}

impl BareSqlite {
    /// A new database file `name` in `directory`, with the events table
    /// (`INTEGER PRIMARY KEY` is the row id: no index).
    pub(crate) fn create(
        directory: &Path,
        name: &str,
        durability: Durability,
    ) -> Result<Self, String> {
        let path = directory.join(format!("{name}.db"));
        remove_database(&path);
        let connection = rusqlite::Connection::open(&path).map_err(sqlite_failed)?;
        let synchronous = match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        };
        connection
            .execute_batch(&format!(
                "PRAGMA journal_mode = WAL; PRAGMA synchronous = {synchronous};
                 CREATE TABLE bare_events (
                     sequence_number INTEGER PRIMARY KEY NOT NULL,
                     occurred_at_micros INTEGER NOT NULL,
                     event_type TEXT NOT NULL,
                     payload TEXT NOT NULL
                 );"
            ))
            .map_err(sqlite_failed)?;
        Ok(Self {
            connection,
            path,
            next_sequence: 1,
        })
    }

    /// Commits `events` in one transaction, one row each (a cached prepared
    /// insert per row: the cheapest way SQLite takes several rows).
    pub(crate) fn commit(&mut self, events: &[BareEvent]) -> Result<(), String> {
        let occurred_at = occurred_at_micros();
        let transaction = self
            .connection
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .map_err(sqlite_failed)?;
        {
            let mut insert = transaction
                .prepare_cached(
                    "INSERT INTO bare_events (sequence_number, occurred_at_micros, event_type, payload)
                     VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(sqlite_failed)?;
            for event in events {
                let payload = serde_json::to_string(&event.payload)
                    .map_err(|error| format!("cannot encode a payload: {error}"))?;
                insert
                    .execute(rusqlite::params![
                        self.next_sequence,
                        occurred_at,
                        event.event_type,
                        payload
                    ])
                    .map_err(sqlite_failed)?;
                self.next_sequence += 1;
            }
        }
        transaction.commit().map_err(sqlite_failed)
    }

    /// Fills the table with `rows` deposit events (one statement, one
    /// transaction) for `read_all`.
    pub(crate) fn fill(&mut self, rows: u64) -> Result<(), String> {
        let first = self.next_sequence;
        self.connection
            .execute(
                "WITH RECURSIVE numbers(n) AS (SELECT ?1 UNION ALL SELECT n + 1 FROM numbers WHERE n < ?2)
                 INSERT INTO bare_events (sequence_number, occurred_at_micros, event_type, payload)
                 SELECT n, ?3, 'money-deposited',
                        json_object('account', 'acc-' || (n % 4) || '-' || (n % 1000), 'amount', n, 'currency', 'EUR')
                 FROM numbers",
                rusqlite::params![first, first + rows as i64 - 1, occurred_at_micros()],
            )
            .map_err(sqlite_failed)?;
        self.next_sequence += rows as i64;
        Ok(())
    }

    /// Reads every row in pages of `READ_PAGE_ROWS` in sequence order,
    /// decoding each payload; returns the rows read.
    pub(crate) fn read_all(&self) -> Result<u64, String> {
        let mut statement = self
            .connection
            .prepare_cached(
                "SELECT sequence_number, occurred_at_micros, event_type, payload FROM bare_events
                 WHERE sequence_number > ?1 ORDER BY sequence_number LIMIT ?2",
            )
            .map_err(sqlite_failed)?;
        let (mut after, mut read) = (0_i64, 0_u64);
        loop {
            let page = statement
                .query_map(rusqlite::params![after, READ_PAGE_ROWS], |row| {
                    Ok(ReadRow {
                        sequence_number: row.get(0)?,
                        occurred_at: row.get(1)?,
                        event_type: row.get(2)?,
                        payload: serde_json::from_str(row.get_ref(3)?.as_str()?).map_err(
                            |error| rusqlite::Error::ToSqlConversionFailure(error.into()),
                        )?,
                    })
                })
                .map_err(sqlite_failed)?
                .collect::<Result<Vec<_>, _>>()
                .map_err(sqlite_failed)?;
            let Some(last) = page.last() else {
                return Ok(read);
            };
            after = last.sequence_number;
            read += page.len() as u64;
        }
    }
}

impl Drop for BareSqlite {
    fn drop(&mut self) {
        remove_database(&self.path);
    }
}

fn remove_database(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
    }
}

/// Bare PostgreSQL: one connection to the server the store uses, in a
/// schema of its own, default `synchronous_commit`.
pub(crate) struct BarePostgres {
    runtime: tokio::runtime::Runtime,
    connection: sqlx::PgConnection,
    next_sequence: i64,
}

fn postgres_failed(error: sqlx::Error) -> String {
    format!("bare PostgreSQL failed: {error}")
}

impl BarePostgres {
    /// Connects to `url` (whose search path names a fresh schema) and
    /// creates the events table there: no primary key, no index.
    pub(crate) fn connect(url: &str) -> Result<Self, String> {
        use sqlx::{Connection, Executor};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| error.to_string())?;
        let connection = runtime.block_on(async {
            let mut connection = sqlx::PgConnection::connect(url)
                .await
                .map_err(postgres_failed)?;
            connection
                .execute(
                    "CREATE TABLE bare_events (
                         sequence_number bigint NOT NULL,
                         occurred_at timestamptz NOT NULL,
                         event_type text NOT NULL,
                         payload json NOT NULL
                     )",
                )
                .await
                .map_err(postgres_failed)?;
            Ok::<_, String>(connection)
        })?;
        Ok(Self {
            runtime,
            connection,
            next_sequence: 1,
        })
    }

    /// Commits `events` with one statement (its own transaction): a single
    /// event as one `INSERT ... VALUES`, several as one multi-row insert of
    /// arrays, the way the store sends a batch.
    pub(crate) fn commit(&mut self, events: &[BareEvent]) -> Result<(), String> {
        let occurred_at = Utc::now();
        let first = self.next_sequence;
        self.next_sequence += events.len() as i64;
        let connection = &mut self.connection;
        self.runtime.block_on(async {
            if let [event] = events {
                let payload = serde_json::to_string(&event.payload)
                    .map_err(|error| format!("cannot encode a payload: {error}"))?;
                sqlx::query(
                    "INSERT INTO bare_events (sequence_number, occurred_at, event_type, payload)
                     VALUES ($1, $2, $3, $4::json)",
                )
                .bind(first)
                .bind(occurred_at)
                .bind(event.event_type)
                .bind(payload)
                .execute(&mut *connection)
                .await
                .map_err(postgres_failed)?;
                return Ok(());
            }
            let sequence_numbers: Vec<i64> = (first..first + events.len() as i64).collect();
            let event_types: Vec<&str> = events.iter().map(|event| event.event_type).collect();
            let payloads = events
                .iter()
                .map(|event| serde_json::to_string(&event.payload))
                .collect::<Result<Vec<String>, _>>()
                .map_err(|error| format!("cannot encode a payload: {error}"))?;
            sqlx::query(
                "INSERT INTO bare_events (sequence_number, occurred_at, event_type, payload)
                 SELECT s, $2, t, p::json FROM UNNEST($1::bigint[], $3::text[], $4::text[]) AS u(s, t, p)",
            )
            .bind(&sequence_numbers)
            .bind(occurred_at)
            .bind(&event_types)
            .bind(&payloads)
            .execute(&mut *connection)
            .await
            .map_err(postgres_failed)?;
            Ok(())
        })
    }

    /// One `SELECT 1`: a round trip to the server and nothing else.
    pub(crate) fn round_trip(&mut self) -> Result<(), String> {
        let connection = &mut self.connection;
        self.runtime.block_on(async {
            let one: i32 = sqlx::query_scalar("SELECT 1")
                .fetch_one(&mut *connection)
                .await
                .map_err(postgres_failed)?;
            if one == 1 {
                Ok(())
            } else {
                Err(format!("SELECT 1 returned {one}"))
            }
        })
    }

    /// Creates a table of `rows` deposit events with a primary key (pages
    /// are read by it, as the store reads its log) for `read_all`.
    pub(crate) fn fill_log(&mut self, rows: u64) -> Result<(), String> {
        use sqlx::Executor;
        let connection = &mut self.connection;
        self.runtime.block_on(async {
            connection
                .execute(
                    "CREATE TABLE bare_log (
                         sequence_number bigint PRIMARY KEY,
                         occurred_at timestamptz NOT NULL,
                         event_type text NOT NULL,
                         payload json NOT NULL
                     )",
                )
                .await
                .map_err(postgres_failed)?;
            sqlx::query(
                "INSERT INTO bare_log (sequence_number, occurred_at, event_type, payload)
                 SELECT n, now(), 'money-deposited',
                        json_build_object('account', 'acc-' || (n % 4) || '-' || (n % 1000), 'amount', n, 'currency', 'EUR')
                 FROM generate_series(1, $1::bigint) AS n",
            )
            .bind(rows as i64)
            .execute(&mut *connection)
            .await
            .map_err(postgres_failed)?;
            connection
                .execute("VACUUM ANALYZE bare_log")
                .await
                .map_err(postgres_failed)?;
            Ok(())
        })
    }

    /// Reads the table `fill_log` made in pages of `READ_PAGE_ROWS` in
    /// sequence order, decoding each payload; returns the rows read.
    pub(crate) fn read_all(&mut self) -> Result<u64, String> {
        use sqlx::Row;
        let connection = &mut self.connection;
        self.runtime.block_on(async {
            let (mut after, mut read) = (0_i64, 0_u64);
            loop {
                let rows = sqlx::query(
                    "SELECT sequence_number, occurred_at, event_type, payload::text FROM bare_log
                     WHERE sequence_number > $1 ORDER BY sequence_number LIMIT $2",
                )
                .bind(after)
                .bind(READ_PAGE_ROWS)
                .fetch_all(&mut *connection)
                .await
                .map_err(postgres_failed)?;
                let page = rows
                    .iter()
                    .map(|row| {
                        let payload: &str = row.try_get(3)?;
                        Ok(ReadRow {
                            sequence_number: row.try_get(0)?,
                            occurred_at: row.try_get::<DateTime<Utc>, _>(1)?.timestamp_micros(),
                            event_type: row.try_get(2)?,
                            payload: serde_json::from_str(payload)
                                .map_err(|error| sqlx::Error::Decode(error.into()))?,
                        })
                    })
                    .collect::<Result<Vec<_>, sqlx::Error>>()
                    .map_err(postgres_failed)?;
                let Some(last) = page.last() else {
                    return Ok(read);
                };
                after = last.sequence_number;
                read += page.len() as u64;
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn bare_sqlite_commits_one_row_per_event_and_reads_them_back_in_pages() {
        let directory =
            std::env::temp_dir().join(format!("factstr-bench-bare-{}", std::process::id()));
        std::fs::create_dir_all(&directory).unwrap();
        let mut bare = BareSqlite::create(&directory, "test", Durability::Normal).unwrap();
        let event = |amount: u64| BareEvent {
            event_type: "money-deposited",
            payload: json!({"account": "acc-0-1", "amount": amount}),
        };
        bare.commit(&[event(1)]).unwrap();
        bare.commit(&(2..=100).map(event).collect::<Vec<_>>())
            .unwrap();
        // Past one page, so the keyset paging is exercised.
        bare.fill(READ_PAGE_ROWS as u64 + 1).unwrap();
        assert_eq!(bare.read_all().unwrap(), 100 + READ_PAGE_ROWS as u64 + 1);
        let path = bare.path.clone();
        drop(bare);
        assert!(!path.exists(), "the database file is removed");
        std::fs::remove_dir_all(&directory).unwrap();
    }
}
