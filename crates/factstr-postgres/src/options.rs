//! Options for opening a `PostgresStore`.

use std::time::Duration;

/// How a [`PostgresStore`](crate::PostgresStore) uses its server.
///
/// ```
/// use std::time::Duration;
/// use factstr_postgres::PostgresStoreOptions;
///
/// let options = PostgresStoreOptions::default()
///     .with_max_connections(4)
///     .with_connect_timeout(Duration::from_secs(2))
///     .with_statement_timeout(Duration::from_secs(30));
/// assert_eq!(options.max_connections(), 4);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostgresStoreOptions {
    max_connections: u32,
    connect_timeout: Duration,
    statement_timeout: Option<Duration>,
}

impl Default for PostgresStoreOptions {
    /// 10 pooled connections, a 5 second connect timeout and the server's
    /// statement timeout.
    fn default() -> Self {
        Self {
            max_connections: 10,
            connect_timeout: Duration::from_secs(5),
            statement_timeout: None,
        }
    }
}

impl PostgresStoreOptions {
    /// The most connections the store's pool opens for queries, stream reads
    /// and cursor writes (at least 1). Appends, notifications and each active
    /// durable stream use one connection of their own besides.
    pub fn with_max_connections(mut self, max_connections: u32) -> Self {
        self.max_connections = max_connections;
        self
    }

    /// How long the store waits for a connection (a new one, or a free one
    /// from the pool) before the operation fails with `BackendFailure`.
    /// While the server is down, operations fail after at most this long.
    pub fn with_connect_timeout(mut self, connect_timeout: Duration) -> Self {
        self.connect_timeout = connect_timeout;
        self
    }

    /// The server-side `statement_timeout` for the store's connections;
    /// a statement running longer fails with `BackendFailure`. Unset, the
    /// server's setting applies.
    pub fn with_statement_timeout(mut self, statement_timeout: Duration) -> Self {
        self.statement_timeout = Some(statement_timeout);
        self
    }

    /// See [`with_max_connections`](Self::with_max_connections).
    pub fn max_connections(&self) -> u32 {
        self.max_connections
    }

    /// See [`with_connect_timeout`](Self::with_connect_timeout).
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    /// See [`with_statement_timeout`](Self::with_statement_timeout).
    pub fn statement_timeout(&self) -> Option<Duration> {
        self.statement_timeout
    }
}

/// What [`PostgresStore::bootstrap`](crate::PostgresStore::bootstrap) needs:
/// a server and the name of the database to create (when missing) and use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PostgresBootstrapOptions {
    /// A URL of the server, such as `postgres://user:password@host:5432`.
    /// Its database path, if any, is replaced by `database_name`; its query
    /// parameters are kept.
    pub server_url: String,
    /// The database to create when missing and then use; must match
    /// `[A-Za-z_][A-Za-z0-9_]*` (at most 63 characters).
    pub database_name: String,
}
