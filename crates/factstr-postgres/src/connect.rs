//! Connecting: the store's URL and session settings, connections of their
//! own for the writer and durable claims, and the database `bootstrap`
//! creates.

use std::str::FromStr;
use std::time::Duration;

use factstr::EventStoreError;
use sqlx::postgres::PgConnectOptions;
use sqlx::{Connection, Executor, PgConnection};

use crate::error::database_failure;
use crate::options::{PostgresBootstrapOptions, PostgresStoreOptions};

/// The pattern `bootstrap` accepts database names by.
const DATABASE_NAME_PATTERN: &str = "[A-Za-z_][A-Za-z0-9_]*";
/// PostgreSQL's identifier length limit (longer names are cut silently).
const MAX_DATABASE_NAME_BYTES: usize = 63;

/// The connect options of a URL; a malformed URL is `InvalidInput`.
pub(crate) fn parse_url(url: &str) -> Result<PgConnectOptions, EventStoreError> {
    PgConnectOptions::from_str(url).map_err(|error| {
        EventStoreError::invalid_input(format!("the PostgreSQL URL is not valid: {error}"))
    })
}

/// The settings every session of the store runs with, added to what the
/// URL gives.
pub(crate) fn session_options(
    connect_options: PgConnectOptions,
    options: &PostgresStoreOptions,
) -> PgConnectOptions {
    let mut connect_options = connect_options;
    if connect_options.get_application_name().is_none() {
        connect_options = connect_options.application_name("factstr");
    }
    // Candidate queries bind event types and payload documents whose
    // selectivity decides between index paths; a generic plan (chosen after
    // a statement ran five times) can walk the whole table backwards.
    // A plan_cache_mode given in the URL's options wins.
    if connect_options
        .get_options()
        .is_none_or(|given| !given.contains("plan_cache_mode"))
    {
        connect_options = connect_options.options([("plan_cache_mode", "force_custom_plan")]);
    }
    if let Some(timeout) = options.statement_timeout {
        connect_options =
            connect_options.options([("statement_timeout", format!("{}ms", timeout.as_millis()))]);
    }
    connect_options
}

/// Opens connections of their own (not from the pool) for the writer and
/// durable stream claims, bounded by the connect timeout.
#[derive(Clone, Debug)]
pub(crate) struct Connector {
    options: PgConnectOptions,
    timeout: Duration,
}

impl Connector {
    pub(crate) fn new(options: PgConnectOptions, timeout: Duration) -> Self {
        Self { options, timeout }
    }

    /// A new connection, to do `purpose` with.
    pub(crate) async fn connect(&self, purpose: &str) -> Result<PgConnection, EventStoreError> {
        match tokio::time::timeout(self.timeout, PgConnection::connect_with(&self.options)).await {
            Ok(Ok(connection)) => Ok(connection),
            Ok(Err(error)) => Err(database_failure(
                &format!("cannot connect to PostgreSQL to {purpose}"),
                &error,
            )),
            Err(_) => Err(EventStoreError::backend(format!(
                "cannot connect to PostgreSQL to {purpose}: no connection within {:?}",
                self.timeout
            ))),
        }
    }

    /// How long connecting may take.
    pub(crate) fn timeout(&self) -> Duration {
        self.timeout
    }
}

/// A database `bootstrap` creates when missing.
pub(crate) struct DatabaseToCreate {
    server: PgConnectOptions,
    name: String,
}

impl DatabaseToCreate {
    /// The database `bootstrap` names; a name not matching
    /// [`DATABASE_NAME_PATTERN`] or a malformed URL is `InvalidInput`.
    pub(crate) fn of(bootstrap: PostgresBootstrapOptions) -> Result<Self, EventStoreError> {
        validate_database_name(&bootstrap.database_name)?;
        Ok(Self {
            server: parse_url(&bootstrap.server_url)?,
            name: bootstrap.database_name,
        })
    }

    /// The connect options of the database itself.
    pub(crate) fn connect_options(&self) -> PgConnectOptions {
        self.server.clone().database(&self.name)
    }

    /// Creates the database unless it exists. When two processes create it
    /// at once, the one that loses sees it created and goes on.
    pub(crate) async fn create(&self, timeout: Duration) -> Result<(), EventStoreError> {
        let mut connection = self.maintenance_connection(timeout).await?;
        let failed = |error: sqlx::Error| {
            database_failure(&format!("cannot create database {}", self.name), &error)
        };
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
                .bind(&self.name)
                .fetch_one(&mut connection)
                .await
                .map_err(failed)?;
        if !exists {
            // The name matched DATABASE_NAME_PATTERN: quoting it is safe.
            let created = connection
                .execute(sqlx::AssertSqlSafe(format!(
                    "CREATE DATABASE \"{}\"",
                    self.name
                )))
                .await;
            match created {
                Ok(_) => tracing::info!(database = %self.name, "created the database"),
                Err(sqlx::Error::Database(error))
                    if matches!(error.code().as_deref(), Some("42P04" | "23505")) => {}
                Err(error) => return Err(failed(error)),
            }
        }
        let _ = connection.close().await;
        Ok(())
    }

    /// A connection to the `postgres` database (or `template1` where there
    /// is none), from which databases are created.
    async fn maintenance_connection(
        &self,
        timeout: Duration,
    ) -> Result<PgConnection, EventStoreError> {
        let mut last_error = None;
        for database in ["postgres", "template1"] {
            let options = self.server.clone().database(database);
            match tokio::time::timeout(timeout, PgConnection::connect_with(&options)).await {
                Ok(Ok(connection)) => return Ok(connection),
                Ok(Err(sqlx::Error::Database(error)))
                    if error.code().as_deref() == Some("3D000") =>
                {
                    last_error = Some(database_failure(
                        "cannot connect to the server to create a database",
                        &sqlx::Error::Database(error),
                    ));
                }
                Ok(Err(error)) => {
                    return Err(database_failure(
                        "cannot connect to the server to create a database",
                        &error,
                    ));
                }
                Err(_) => {
                    return Err(EventStoreError::backend(format!(
                        "cannot connect to the server to create a database: no connection within {timeout:?}"
                    )));
                }
            }
        }
        Err(last_error.unwrap_or_else(|| {
            EventStoreError::backend("cannot connect to the server to create a database")
        }))
    }
}

fn validate_database_name(name: &str) -> Result<(), EventStoreError> {
    let mut characters = name.chars();
    let valid_start = characters
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == '_');
    let valid_rest = characters.all(|rest| rest.is_ascii_alphanumeric() || rest == '_');
    if !(valid_start && valid_rest) {
        return Err(EventStoreError::invalid_input(format!(
            "database name {name:?} does not match {DATABASE_NAME_PATTERN}"
        )));
    }
    if name.len() > MAX_DATABASE_NAME_BYTES {
        return Err(EventStoreError::invalid_input(format!(
            "database name {name:?} matches {DATABASE_NAME_PATTERN} but is longer than \
             {MAX_DATABASE_NAME_BYTES} characters"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_follow_the_pattern() {
        for good in ["a", "_", "factstr_test", "A1_b2", &"x".repeat(63)] {
            assert_eq!(validate_database_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            "1a",
            "a-b",
            "a b",
            "a\"b",
            "ä",
            "a;drop",
            &"x".repeat(64),
        ] {
            match validate_database_name(bad) {
                Err(EventStoreError::InvalidInput { message }) => {
                    assert!(message.contains(DATABASE_NAME_PATTERN), "{message}");
                }
                other => panic!("{bad:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn malformed_urls_are_invalid_input() {
        assert!(matches!(
            parse_url("postgres://[::1"),
            Err(EventStoreError::InvalidInput { .. })
        ));
    }
}
