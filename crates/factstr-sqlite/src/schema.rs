//! The database layout, its version, and the checks run when a file is
//! opened.
//!
//! Opening never changes a file it refuses: the file header and the schema
//! are inspected first, and only a new (empty) file, a factstr 0.5.x log (see
//! [`legacy`]) or a FACTSTR database of a known version is
//! switched to WAL mode or initialised.

use std::fs::File;
use std::io::Read;
use std::path::Path;
use std::time::{Duration, Instant};

use factstr::EventStoreError;
use rusqlite::config::DbConfig;
use rusqlite::{Connection, ErrorCode, MAIN_DB, OpenFlags, OptionalExtension};

use crate::error::{self, SqliteResultExt};
use crate::legacy;
use crate::options::{SqliteDurability, SqliteStoreOptions};

/// The schema version this build writes and reads. Version 1 (never
/// released) kept the payload index in a B-tree table of terms; version 2
/// indexed every event in its own commit, so its files are brought to
/// version 3 on open by marking every event as indexed (see
/// [`crate::index`]). A build reading version 2 only refuses version 3
/// files, whose newest events it would not find through the index.
pub(crate) const SCHEMA_VERSION: i64 = 3;

/// Brings a version 2 database to version 3: every event of a version 2
/// file is in the payload index.
const UPGRADE_FROM_2: &str = "
INSERT OR REPLACE INTO factstr_metadata (key, value)
    SELECT 'payload_indexed_through', COALESCE(MAX(sequence_number), 0) FROM factstr_events;
UPDATE factstr_metadata SET value = '3' WHERE key = 'schema_version';
";

/// The value of the `format` key that marks a FACTSTR database.
const FORMAT_MARKER: &str = "factstr-event-store";

/// WAL size (in pages) after which a commit copies the WAL back into the
/// database file. Larger than SQLite's default (1,000): a page rewritten by
/// many commits is copied once per checkpoint, so fewer, larger checkpoints
/// cost the writer less (measured: about 1.5x the throughput of batches of
/// 100 events with scattered payload terms).
const WAL_AUTOCHECKPOINT_PAGES: u32 = 8_192;

/// The writer connection's page cache, in KiB (`PRAGMA cache_size` takes
/// negative values as KiB). SQLite scans the whole cache at the end of a
/// write transaction that rebalanced a B-tree page, so a larger cache makes
/// every such commit slower (measured: 8 MiB commits batches of 100 events
/// about 8 % faster than 32 MiB), while appends touch few pages.
const WRITER_CACHE_KIB: u32 = 8_192;

/// How long an opener waits for the write lock while another connection may
/// be bringing a factstr 0.5.x log over (at least the busy timeout). The
/// copy is far slower than any append (measured: 4 s for 500,000 events in
/// a release build on a 2-core machine).
const MIGRATION_PATIENCE: Duration = Duration::from_secs(600);

/// The first 16 bytes of every SQLite database file.
const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// Creates the schema; every statement is idempotent, so two processes
/// initialising a new file one after the other both succeed.
const CREATE_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS factstr_metadata (
    key TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS factstr_events (
    sequence_number INTEGER PRIMARY KEY NOT NULL,
    batch_last_sequence_number INTEGER NOT NULL,
    occurred_at_micros INTEGER NOT NULL,
    event_type TEXT NOT NULL,
    payload TEXT NOT NULL
);

CREATE INDEX IF NOT EXISTS factstr_events_by_type
    ON factstr_events (event_type, sequence_number);

CREATE VIRTUAL TABLE IF NOT EXISTS factstr_payload_index USING fts5 (
    terms,
    content = '',
    detail = none,
    columnsize = 0
);

CREATE TABLE IF NOT EXISTS factstr_durable_streams (
    name TEXT PRIMARY KEY NOT NULL,
    query TEXT NOT NULL,
    cursor INTEGER NOT NULL
) WITHOUT ROWID;

INSERT OR IGNORE INTO factstr_metadata (key, value)
    VALUES ('format', 'factstr-event-store'), ('schema_version', '3'),
           ('payload_indexed_through', '0');
";

/// Opens (and when new, initialises) the database at `path` and returns the
/// writer connection.
pub(crate) fn open_writer_connection(
    path: &Path,
    options: &SqliteStoreOptions,
) -> Result<Connection, EventStoreError> {
    // The file is inspected through SQLite only: a file this process
    // opened and closed itself would release every POSIX lock the process
    // holds on it, those of another store's connections included, and
    // SQLite relies on them (another process closing the file's last
    // connection would delete the write-ahead log in use). SQLite changes
    // nothing in a file before it has read the header.
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|error| open_failure(path, &error))?;
    if connection.is_readonly(MAIN_DB).unwrap_or(false) {
        // SQLite falls back to reading a file it cannot open for writing.
        return Err(EventStoreError::backend(format!(
            "cannot open {} for writing{}",
            path.display(),
            error::FileProblem::of(path)
                .map_or(" (SQLite opened it read-only)", error::FileProblem::hint)
        )));
    }
    connection
        .busy_timeout(options.busy_timeout)
        .or_failed("setting the busy timeout")?;

    match inspect(&connection, path)? {
        Layout::Factstr {
            version: SCHEMA_VERSION,
            with_05_log,
        } => {
            enable_wal(&connection, path, options.busy_timeout)?;
            if with_05_log {
                check_05_log_contained(&connection, path)?;
            }
        }
        Layout::Factstr {
            version: 2,
            with_05_log,
        } => {
            initialise(&connection, path, options.busy_timeout)?;
            if with_05_log {
                check_05_log_contained(&connection, path)?;
            }
        }
        Layout::Factstr { version, .. } => return Err(unsupported_version(path, version)),
        Layout::Empty => initialise(&connection, path, options.busy_timeout)?,
        Layout::Only05Log => {
            connection
                .busy_timeout(options.busy_timeout.max(MIGRATION_PATIENCE))
                .or_failed("setting the busy timeout")?;
            initialise(&connection, path, options.busy_timeout)?;
            connection
                .busy_timeout(options.busy_timeout)
                .or_failed("setting the busy timeout")?;
        }
    }

    let synchronous = match options.durability {
        SqliteDurability::Full => "FULL",
        SqliteDurability::Normal => "NORMAL",
    };
    connection
        .execute_batch(&format!(
            "PRAGMA synchronous = {synchronous};
             PRAGMA cache_size = -{WRITER_CACHE_KIB};
             PRAGMA temp_store = MEMORY;
             PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES};"
        ))
        .or_failed("configuring the writer connection")?;
    keep_plans_on_rebinding(&connection)?;
    Ok(connection)
}

/// Opens a read connection on an initialised database.
pub(crate) fn open_reader_connection(
    path: &Path,
    options: &SqliteStoreOptions,
) -> Result<Connection, EventStoreError> {
    let connection = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(|error| open_failure(path, &error))?;
    connection
        .busy_timeout(options.busy_timeout)
        .or_failed("setting the busy timeout")?;
    connection
        .execute_batch(
            "PRAGMA query_only = ON;
             PRAGMA cache_size = -16384;
             PRAGMA temp_store = MEMORY;",
        )
        .or_failed("configuring a read connection")?;
    keep_plans_on_rebinding(&connection)?;
    connection.set_prepared_statement_cache_capacity(64);
    Ok(connection)
}

/// Makes cached statements keep their plan when new values are bound.
/// Otherwise SQLite compiles a statement again whenever a value it could
/// plan with changes (a `LIMIT ?`, for one), which made every candidate
/// read pay a new compilation; the store's reads do not depend on such
/// values (they name their index where it matters).
fn keep_plans_on_rebinding(connection: &Connection) -> Result<(), EventStoreError> {
    connection
        .set_db_config(DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)
        .or_failed("configuring query planning")?;
    Ok(())
}

/// What an opened file holds.
enum Layout {
    /// No tables at all: a new file.
    Empty,
    /// The tables of a factstr 0.5.x log, and nothing else.
    Only05Log,
    /// A FACTSTR database of schema `version`; `with_05_log` when the
    /// tables of a factstr 0.5.x log (normally the one it was migrated
    /// from) are there too.
    Factstr { version: i64, with_05_log: bool },
}

/// Whether the file at `path` starts with the SQLite file header. Read
/// only once SQLite found the file is not a database: no connection of this
/// process holds a lock on such a file (see `open_writer_connection`).
fn starts_with_sqlite_header(path: &Path) -> bool {
    let mut header = Vec::with_capacity(SQLITE_HEADER.len());
    File::open(path)
        .and_then(|file| {
            file.take(SQLITE_HEADER.len() as u64)
                .read_to_end(&mut header)
        })
        .map_or(true, |_| header == SQLITE_HEADER)
}

/// Reads the schema without changing anything and decides whether the file
/// is new, ours, or something else.
fn inspect(connection: &Connection, path: &Path) -> Result<Layout, EventStoreError> {
    let reading = |error: rusqlite::Error| {
        if error.sqlite_error_code() == Some(ErrorCode::NotADatabase)
            && !starts_with_sqlite_header(path)
        {
            return EventStoreError::invalid_input(format!(
                "{} is not a SQLite database (it does not start with the SQLite file header); \
                 it was left unchanged",
                path.display()
            ));
        }
        EventStoreError::backend(format!(
            "cannot read the schema of {}: {error}{}",
            path.display(),
            error::hint_for_file(path, &error)
        ))
    };
    let mut statement = connection
        .prepare(
            "SELECT name FROM sqlite_schema
             WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\'
             ORDER BY name",
        )
        .map_err(reading)?;
    let tables = statement
        .query_map([], |row| row.get::<_, String>(0))
        .and_then(Iterator::collect::<Result<Vec<String>, _>>)
        .map_err(reading)?;
    if tables.is_empty() {
        return Ok(Layout::Empty);
    }
    let has_factstr_tables = tables.iter().any(|table| table == "factstr_metadata");
    if !has_factstr_tables && legacy::is_exactly_tables(&tables) {
        legacy::check_layout(connection, path)?;
        return Ok(Layout::Only05Log);
    }
    if !has_factstr_tables {
        return Err(EventStoreError::invalid_input(format!(
            "{} is a SQLite database but not a FACTSTR database (it has the tables {} \
             and no FACTSTR marker); it was left unchanged",
            path.display(),
            tables.join(", ")
        )));
    }
    let metadata = |key: &str| {
        connection
            .query_row(
                "SELECT value FROM factstr_metadata WHERE key = ?1",
                [key],
                |row| row.get::<_, String>(0),
            )
            .optional()
            .map_err(reading)
    };
    if metadata("format")?.as_deref() != Some(FORMAT_MARKER) {
        return Err(EventStoreError::invalid_input(format!(
            "{} has a factstr_metadata table without the FACTSTR marker; \
             it is not a FACTSTR database and was left unchanged",
            path.display()
        )));
    }
    let version = metadata("schema_version")?;
    match version.as_deref().map(str::parse::<i64>) {
        Some(Ok(version)) => Ok(Layout::Factstr {
            version,
            with_05_log: legacy::has_tables(&tables),
        }),
        _ => Err(EventStoreError::invalid_input(format!(
            "{} is marked as a FACTSTR database but its schema version {version:?} \
             is not a number; it was left unchanged",
            path.display()
        ))),
    }
}

fn unsupported_version(path: &Path, version: i64) -> EventStoreError {
    let advice = if version > SCHEMA_VERSION {
        "use a newer factstr-sqlite"
    } else {
        "that layout predates the first release and is not converted; \
         rebuild the log in a new file"
    };
    EventStoreError::invalid_input(format!(
        "{} was written with FACTSTR schema version {version}, but this build of \
         factstr-sqlite reads schema version {SCHEMA_VERSION} only; {advice} \
         (the file was left unchanged)",
        path.display()
    ))
}

/// Initialises a new file, or one holding only a factstr 0.5.x log, or
/// upgrades one of schema version 2: WAL mode, then the schema (and the
/// copy of the 0.5.x log, or the upgrade) inside one
/// `BEGIN IMMEDIATE` transaction, checking again under the write lock in
/// case another process or thread initialised (or migrated) the file
/// meanwhile.
fn initialise(
    connection: &Connection,
    path: &Path,
    busy_timeout: Duration,
) -> Result<(), EventStoreError> {
    enable_wal(connection, path, busy_timeout)?;
    connection
        .execute_batch("BEGIN IMMEDIATE")
        .or_failed("starting the schema transaction")?;
    let created = match inspect(connection, path) {
        Ok(Layout::Empty) => connection
            .execute_batch(CREATE_SCHEMA)
            .or_failed("creating the schema")
            .map(|()| None),
        Ok(Layout::Only05Log) => connection
            .execute_batch(CREATE_SCHEMA)
            .or_failed("creating the schema")
            .and_then(|()| legacy::migrate(connection, path))
            .map(Some),
        Ok(Layout::Factstr {
            version: SCHEMA_VERSION,
            with_05_log,
        }) => {
            if with_05_log {
                legacy::check_contained(connection, path).map(|()| None)
            } else {
                Ok(None)
            }
        }
        Ok(Layout::Factstr { version: 2, .. }) => connection
            .execute_batch(UPGRADE_FROM_2)
            .or_failed("upgrading the schema from version 2")
            .map(|()| None),
        Ok(Layout::Factstr { version, .. }) => Err(unsupported_version(path, version)),
        Err(error) => Err(error),
    };
    match created {
        Ok(migrated) => {
            connection
                .execute_batch("COMMIT")
                .or_failed("committing the schema")?;
            if let Some(migrated) = migrated {
                tracing::info!(
                    path = %path.display(),
                    events = migrated.events,
                    durable_streams = migrated.durable_streams,
                    "brought the factstr 0.5.x log over"
                );
            }
            Ok(())
        }
        Err(error) => {
            let _ = connection.execute_batch("ROLLBACK");
            Err(error)
        }
    }
}

/// Checks, in one read transaction, that a factstr 0.5.x log next to the
/// FACTSTR log has nothing the FACTSTR log lacks.
fn check_05_log_contained(connection: &Connection, path: &Path) -> Result<(), EventStoreError> {
    connection
        .execute_batch("BEGIN")
        .or_failed("starting a read transaction")?;
    let checked = legacy::check_contained(connection, path);
    let ended = connection
        .execute_batch("COMMIT")
        .or_failed("ending a read transaction");
    checked.and(ended)
}

/// Switches the file to WAL mode, retrying while another connection (of this
/// or another process opening the same new file) holds a lock.
fn enable_wal(
    connection: &Connection,
    path: &Path,
    busy_timeout: Duration,
) -> Result<(), EventStoreError> {
    let deadline = Instant::now() + busy_timeout;
    loop {
        let outcome = connection
            .pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get::<_, String>(0));
        let retry = match &outcome {
            Ok(mode) if mode.eq_ignore_ascii_case("wal") => return Ok(()),
            Ok(_) => true,
            Err(error) => matches!(
                error.sqlite_error_code(),
                Some(ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked)
            ),
        };
        if !retry || Instant::now() >= deadline {
            return Err(EventStoreError::backend(format!(
                "cannot switch {} to WAL mode: {}",
                path.display(),
                match outcome {
                    Ok(mode) => format!("SQLite kept journal mode `{mode}`"),
                    Err(error) => error.to_string(),
                }
            )));
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn open_failure(path: &Path, error: &rusqlite::Error) -> EventStoreError {
    EventStoreError::backend(format!(
        "cannot open {}: {error}{}",
        path.display(),
        error::hint_for_file(path, error)
    ))
}
