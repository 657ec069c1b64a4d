use std::time::Duration;

/// How hard a commit works to survive a crash, mapped to SQLite's
/// `PRAGMA synchronous` in WAL mode.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SqliteDurability {
    /// `synchronous = FULL`: every commit is synced to disk before `append`
    /// returns, so an acknowledged append survives a power loss. The
    /// default.
    #[default]
    Full,
    /// `synchronous = NORMAL`: commits are synced at checkpoints only. An
    /// acknowledged append survives a crash of the process, but the last
    /// commits before a power loss or OS crash may be lost (never partially:
    /// the log stays consistent and gapless).
    Normal,
}

/// Options for [`SqliteStore::open_with`](crate::SqliteStore::open_with).
///
/// Start from [`Default`] and change what you need:
///
/// ```
/// use std::time::Duration;
/// use factstr_sqlite::{SqliteDurability, SqliteStoreOptions};
///
/// let options = SqliteStoreOptions::default()
///     .durability(SqliteDurability::Normal)
///     .busy_timeout(Duration::from_secs(10));
/// assert_eq!(options.durability, SqliteDurability::Normal);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SqliteStoreOptions {
    /// When commits reach the disk; [`SqliteDurability::Full`] by default.
    pub durability: SqliteDurability,
    /// How long a connection waits for a lock held by another process (or
    /// another store on the same file) before the operation fails with
    /// `BackendFailure`; 5 seconds by default.
    pub busy_timeout: Duration,
    /// How many idle read connections the store keeps open for queries and
    /// stream reads (more are opened while needed); 4 by default.
    pub idle_readers: usize,
}

impl SqliteStoreOptions {
    /// Sets [`durability`](Self::durability).
    #[must_use]
    pub fn durability(mut self, durability: SqliteDurability) -> Self {
        self.durability = durability;
        self
    }

    /// Sets [`busy_timeout`](Self::busy_timeout).
    #[must_use]
    pub fn busy_timeout(mut self, busy_timeout: Duration) -> Self {
        self.busy_timeout = busy_timeout;
        self
    }

    /// Sets [`idle_readers`](Self::idle_readers).
    #[must_use]
    pub fn idle_readers(mut self, idle_readers: usize) -> Self {
        self.idle_readers = idle_readers;
        self
    }
}

impl Default for SqliteStoreOptions {
    fn default() -> Self {
        Self {
            durability: SqliteDurability::Full,
            busy_timeout: Duration::from_secs(5),
            idle_readers: 4,
        }
    }
}
