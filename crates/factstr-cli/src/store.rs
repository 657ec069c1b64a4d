//! Stores named by URL: `sqlite:PATH`, `postgres://…`, `postgresql://…`.

use std::path::Path;

use factstr::backend::StoreOperations;
use factstr::backend::validation::MAX_SEQUENCE_NUMBER;
use factstr::{EventQuery, EventStore};
use factstr_postgres::PostgresStore;
use factstr_sqlite::SqliteStore;

use crate::failure::Failure;

/// What a command needs of a store.
pub(crate) trait Store: EventStore + StoreOperations + Send + Sync {}

impl<T: EventStore + StoreOperations + Send + Sync> Store for T {}

/// The last sequence number of `store`'s log (0 when empty), read without
/// counting anything: the context version of everything, asked for nothing.
pub(crate) fn head(store: &dyn Store) -> Result<u64, Failure> {
    let probe = EventQuery::all().with_min_sequence_number(MAX_SEQUENCE_NUMBER);
    let result = store
        .query_page(&probe, 1)
        .map_err(|error| Failure::store("reading the log's head", &error))?;
    Ok(result.current_context_version.unwrap_or(0))
}

/// Whether a command may create the store it names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Opening {
    /// Reading: a SQLite file that does not exist is an error, not a new
    /// empty log.
    Existing,
    /// Writing (append, import, copy's destination): a missing SQLite file
    /// is created.
    CreateIfMissing,
}

/// Where a URL points.
#[derive(Debug, PartialEq, Eq)]
enum Location {
    Sqlite(String),
    Postgres(String),
}

/// Opens the store `url` names.
pub(crate) fn open(url: &str, opening: Opening) -> Result<Box<dyn Store>, Failure> {
    match parse(url)? {
        Location::Sqlite(path) => {
            if opening == Opening::Existing && !Path::new(&path).exists() {
                return Err(Failure::new(format!(
                    "no SQLite database at {path} (from the store URL {url})"
                )));
            }
            SqliteStore::open(&path)
                .map(|store| Box::new(store) as Box<dyn Store>)
                .map_err(|error| Failure::store(&format!("cannot open {url}"), &error))
        }
        Location::Postgres(connection_url) => PostgresStore::connect(&connection_url)
            .map(|store| Box::new(store) as Box<dyn Store>)
            .map_err(|error| Failure::store(&format!("cannot connect to {url}"), &error)),
    }
}

fn parse(url: &str) -> Result<Location, Failure> {
    if let Some(path) = url.strip_prefix("sqlite:") {
        // `sqlite:///abs/path` and `sqlite://rel/path` are read as URLs are.
        let path = path.strip_prefix("//").unwrap_or(path);
        if path.is_empty() {
            return Err(Failure::new(format!(
                "the store URL {url} names no file; write sqlite:PATH"
            )));
        }
        return Ok(Location::Sqlite(path.to_owned()));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return with_schema_option(url).map(Location::Postgres);
    }
    Err(Failure::new(format!(
        "unknown store URL {url:?}: use sqlite:PATH, postgres://… or postgresql://…"
    )))
}

/// Turns a `schema=NAME` query parameter (which the PostgreSQL driver does
/// not know) into the `search_path` option the store reads its schema from.
fn with_schema_option(url: &str) -> Result<String, Failure> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok(url.to_owned());
    };
    let mut schema = None;
    let mut kept = Vec::new();
    for parameter in query.split('&') {
        match parameter.strip_prefix("schema=") {
            Some(name) => schema = Some(name),
            None => kept.push(parameter.to_owned()),
        }
    }
    let Some(schema) = schema else {
        return Ok(url.to_owned());
    };
    let valid = !schema.is_empty()
        && schema.len() <= 63
        && schema
            .chars()
            .all(|character| character.is_ascii_alphanumeric() || character == '_')
        && !schema.starts_with(|character: char| character.is_ascii_digit());
    if !valid {
        return Err(Failure::new(format!(
            "schema={schema} in the store URL is not a plain schema name (letters, digits, \
             underscores); use options=-csearch_path%3D… for other names"
        )));
    }
    if kept
        .iter()
        .any(|parameter| parameter.starts_with("options="))
    {
        return Err(Failure::new(
            "the store URL has both schema= and options=; put the search_path into options",
        ));
    }
    kept.push(format!("options=-csearch_path%3D{schema}"));
    Ok(format!("{base}?{}", kept.join("&")))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn urls_name_a_sqlite_file_or_a_postgres_schema() {
        assert_eq!(
            parse("sqlite:data/events.db").unwrap(),
            Location::Sqlite("data/events.db".to_owned())
        );
        assert_eq!(
            parse("sqlite:///tmp/e.db").unwrap(),
            Location::Sqlite("/tmp/e.db".to_owned())
        );
        assert_eq!(
            parse("postgres://u@h/db?schema=app&sslmode=disable").unwrap(),
            Location::Postgres(
                "postgres://u@h/db?sslmode=disable&options=-csearch_path%3Dapp".to_owned()
            )
        );
        assert_eq!(
            parse("postgresql://u@h/db").unwrap(),
            Location::Postgres("postgresql://u@h/db".to_owned())
        );
        assert!(parse("mysql://h/db").is_err());
        assert!(parse("sqlite:").is_err());
        assert!(parse("postgres://h/db?schema=a;b").is_err());
    }
}
