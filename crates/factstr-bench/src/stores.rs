//! The stores under test, each opened fresh (empty) per workload.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use factstr::EventStore;

pub(crate) type SharedStore = Arc<dyn EventStore + Send + Sync>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum StoreKind {
    Memory,
    Sqlite,
    Postgres,
}

impl StoreKind {
    pub(crate) const ALL: [StoreKind; 3] =
        [StoreKind::Memory, StoreKind::Sqlite, StoreKind::Postgres];

    pub(crate) fn parse(name: &str) -> Option<Self> {
        match name {
            "memory" => Some(Self::Memory),
            "sqlite" => Some(Self::Sqlite),
            "postgres" => Some(Self::Postgres),
            _ => None,
        }
    }
}

impl fmt::Display for StoreKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Self::Memory => "memory",
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        })
    }
}

/// How durable a fresh store should be, where the store offers a choice
/// (SQLite: `synchronous=FULL` or `NORMAL`). Memory ignores it; PostgreSQL
/// uses the server's settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Durability {
    Full,
    Normal,
}

/// A temporary folder for database files, removed at the end of the run.
pub(crate) struct Scratch {
    path: PathBuf,
}

impl Scratch {
    pub(crate) fn new() -> Result<Self, String> {
        let path = std::env::temp_dir().join(format!("factstr-bench-{}", std::process::id()));
        std::fs::create_dir_all(&path)
            .map_err(|error| format!("cannot create {}: {error}", path.display()))?;
        Ok(Self { path })
    }

    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

/// Opens fresh stores of one kind.
pub(crate) struct StoreFactory {
    kind: StoreKind,
    directory: PathBuf,
    opened: AtomicU64,
}

impl StoreFactory {
    pub(crate) fn new(kind: StoreKind, scratch: &Scratch) -> Result<Self, String> {
        Ok(Self {
            kind,
            directory: scratch.path().to_owned(),
            opened: AtomicU64::new(0),
        })
    }

    pub(crate) fn kind(&self) -> StoreKind {
        self.kind
    }

    /// A new, empty store.
    pub(crate) fn fresh(&self, durability: Durability) -> Result<SharedStore, String> {
        let number = self.opened.fetch_add(1, Ordering::Relaxed);
        match self.kind {
            StoreKind::Memory => {
                let _ = (durability, number, &self.directory);
                Ok(Arc::new(factstr_memory::MemoryStore::new()))
            }
            StoreKind::Sqlite | StoreKind::Postgres => {
                Err(format!("{} is not wired into the benchmark yet", self.kind))
            }
        }
    }

    /// Arguments that let a child process open the same store as `fresh` last did
    /// (cross-process workloads); `None` where the store cannot be shared.
    pub(crate) fn child_arguments(&self) -> Option<Vec<String>> {
        None
    }
}

/// Opens the store a parent process named in `child_arguments`.
pub(crate) fn open_for_child(arguments: &[String]) -> Result<SharedStore, String> {
    Err(format!("no shareable store in {arguments:?}"))
}
