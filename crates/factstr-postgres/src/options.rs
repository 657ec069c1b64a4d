//! Options for opening a `PostgresStore`.

use std::time::Duration;

/// How a [`PostgresStore`](crate::PostgresStore) uses its server.
///
/// Built like `SqliteStoreOptions`: start from `Default` and change what you
/// need with the setters.
///
/// ```
/// use std::time::Duration;
/// use factstr_postgres::PostgresStoreOptions;
///
/// let options = PostgresStoreOptions::default()
///     .max_connections(4)
///     .connect_timeout(Duration::from_secs(2))
///     .statement_timeout(Duration::from_secs(30));
/// assert_eq!(options.max_connections, 4);
/// assert_eq!(options.statement_timeout, Some(Duration::from_secs(30)));
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct PostgresStoreOptions {
    /// The most connections the store's pool opens for queries, stream reads
    /// and cursor writes (at least 1). Appends, notifications and each active
    /// durable stream use one connection of their own besides. Default 10.
    pub max_connections: u32,
    /// How long the store waits for a connection (a new one, or a free one
    /// from the pool) before the operation fails with `BackendFailure`; while
    /// the server is down, operations fail after at most this long. Default 5 s.
    pub connect_timeout: Duration,
    /// The server-side `statement_timeout` of the store's sessions; a
    /// statement running longer fails with `BackendFailure`. Default `None`:
    /// the server's setting applies.
    pub statement_timeout: Option<Duration>,
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
    /// Sets [`max_connections`](Self::max_connections).
    #[must_use]
    pub fn max_connections(mut self, max_connections: u32) -> Self {
        self.max_connections = max_connections;
        self
    }

    /// Sets [`connect_timeout`](Self::connect_timeout).
    #[must_use]
    pub fn connect_timeout(mut self, connect_timeout: Duration) -> Self {
        self.connect_timeout = connect_timeout;
        self
    }

    /// Sets [`statement_timeout`](Self::statement_timeout).
    #[must_use]
    pub fn statement_timeout(mut self, statement_timeout: Duration) -> Self {
        self.statement_timeout = Some(statement_timeout);
        self
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
