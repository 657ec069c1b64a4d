//! The stores under test, each opened fresh (empty) per workload.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use factstr::EventStore;
use factstr_postgres::{PostgresStore, PostgresStoreOptions};
use factstr_sqlite::{SqliteDurability, SqliteStore, SqliteStoreOptions};

use crate::bare::BarePostgres;

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
    postgres: Option<PostgresServer>,
    last_location: std::sync::Mutex<Option<String>>,
}

impl StoreFactory {
    pub(crate) fn new(kind: StoreKind, scratch: &Scratch) -> Result<Self, String> {
        let postgres = match kind {
            StoreKind::Postgres => Some(PostgresServer::find_or_start()?),
            _ => None,
        };
        Ok(Self {
            kind,
            directory: scratch.path().to_owned(),
            opened: AtomicU64::new(0),
            postgres,
            last_location: std::sync::Mutex::new(None),
        })
    }

    pub(crate) fn kind(&self) -> StoreKind {
        self.kind
    }

    /// Where this factory's database files go (the bare SQLite files too).
    pub(crate) fn directory(&self) -> &Path {
        &self.directory
    }

    /// Bare PostgreSQL on the server the stores use, in a fresh schema.
    pub(crate) fn bare_postgres(&self) -> Result<BarePostgres, String> {
        let server = self.postgres.as_ref().ok_or("no PostgreSQL server")?;
        let number = self.opened.fetch_add(1, Ordering::Relaxed);
        BarePostgres::connect(&server.fresh_schema_url(number)?)
    }

    /// A new, empty store. The previous store of this factory must be dropped
    /// (its files are removed).
    pub(crate) fn fresh(&self, durability: Durability) -> Result<SharedStore, String> {
        let number = self.opened.fetch_add(1, Ordering::Relaxed);
        match self.kind {
            StoreKind::Memory => Ok(Arc::new(factstr_memory::MemoryStore::new())),
            StoreKind::Sqlite => {
                remove_store_files(&self.directory);
                let path = self.directory.join(format!("store-{number}.db"));
                let durability = match durability {
                    Durability::Full => SqliteDurability::Full,
                    Durability::Normal => SqliteDurability::Normal,
                };
                let store = SqliteStore::open_with(
                    &path,
                    SqliteStoreOptions::default().durability(durability),
                )
                .map_err(|error| error.to_string())?;
                self.remember(path.display().to_string());
                Ok(Arc::new(store))
            }
            StoreKind::Postgres => {
                let server = self.postgres.as_ref().ok_or("no PostgreSQL server")?;
                let url = server.fresh_schema_url(number)?;
                let store = open_postgres(&url)?;
                self.remember(url);
                Ok(Arc::new(store))
            }
        }
    }

    /// Arguments that let a child process open the store `fresh` opened last
    /// (cross-process workloads); `None` where live streams do not see other
    /// processes' appends.
    pub(crate) fn child_arguments(&self) -> Option<Vec<String>> {
        if self.kind != StoreKind::Postgres {
            return None;
        }
        let location = self.last_location.lock().ok()?.clone()?;
        Some(vec!["--postgres".to_owned(), location])
    }

    fn remember(&self, location: String) {
        if let Ok(mut last) = self.last_location.lock() {
            *last = Some(location);
        }
    }
}

fn open_postgres(url: &str) -> Result<PostgresStore, String> {
    PostgresStore::connect_with(url, PostgresStoreOptions::default().max_connections(24))
        .map_err(|error| error.to_string())
}

fn remove_store_files(directory: &Path) {
    let Ok(entries) = std::fs::read_dir(directory) else {
        return;
    };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with("store-") {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// Opens the store a parent process named in `child_arguments`.
pub(crate) fn open_for_child(arguments: &[String]) -> Result<SharedStore, String> {
    match arguments {
        [flag, url] if flag == "--postgres" => Ok(Arc::new(open_postgres(url)?)),
        other => Err(format!("cannot open a store from {other:?}")),
    }
}

/// The PostgreSQL server the workloads run on: `DATABASE_URL`, or a
/// throwaway server started (and stopped) with `scripts/postgres`.
struct PostgresServer {
    url: String,
    throwaway: Option<Vec<(String, String)>>,
    schemas: std::sync::Mutex<Vec<String>>,
}

impl PostgresServer {
    fn find_or_start() -> Result<Self, String> {
        if let Ok(url) = std::env::var("DATABASE_URL") {
            eprintln!("[postgres] using DATABASE_URL");
            return Ok(Self {
                url,
                throwaway: None,
                schemas: Default::default(),
            });
        }
        eprintln!("[postgres] starting a throwaway server with scripts/postgres");
        let output = std::process::Command::new("bash")
            .arg(postgres_script())
            .arg("start")
            .stderr(std::process::Stdio::inherit())
            .output()
            .map_err(|error| format!("cannot run scripts/postgres: {error}"))?;
        if !output.status.success() {
            return Err(format!("scripts/postgres start failed: {}", output.status));
        }
        let exports: Vec<(String, String)> = String::from_utf8_lossy(&output.stdout)
            .lines()
            .filter_map(|line| line.strip_prefix("export "))
            .filter_map(|assignment| assignment.split_once('='))
            .map(|(name, value)| (name.to_owned(), value.trim_matches('\'').to_owned()))
            .collect();
        let url = exports
            .iter()
            .find(|(name, _)| name == "FACTSTR_TEST_DATABASE_URL")
            .map(|(_, value)| value.clone())
            .ok_or("scripts/postgres did not print FACTSTR_TEST_DATABASE_URL")?;
        Ok(Self {
            url,
            throwaway: Some(exports),
            schemas: Default::default(),
        })
    }

    fn fresh_schema_url(&self, number: u64) -> Result<String, String> {
        let schema = format!("bench_{}_{number}", std::process::id());
        self.execute(&format!("CREATE SCHEMA {schema}"))?;
        if let Ok(mut schemas) = self.schemas.lock() {
            schemas.push(schema.clone());
        }
        let separator = if self.url.contains('?') { '&' } else { '?' };
        Ok(format!(
            "{}{separator}options=-csearch_path%3D{schema}",
            self.url
        ))
    }

    fn execute(&self, sql: &str) -> Result<(), String> {
        use sqlx::{Connection, Executor};
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| error.to_string())?;
        runtime.block_on(async {
            let mut connection = sqlx::PgConnection::connect(&self.url)
                .await
                .map_err(|error| format!("cannot connect to {}: {error}", self.url))?;
            connection
                .execute(sqlx::AssertSqlSafe(sql.to_owned()))
                .await
                .map_err(|error| format!("`{sql}` failed: {error}"))?;
            Ok(())
        })
    }
}

impl Drop for PostgresServer {
    fn drop(&mut self) {
        match &self.throwaway {
            Some(exports) => {
                let _ = std::process::Command::new("bash")
                    .arg(postgres_script())
                    .arg("stop")
                    .envs(exports.iter().map(|(name, value)| (name, value)))
                    .status();
            }
            None => {
                let schemas = self
                    .schemas
                    .lock()
                    .map(|schemas| schemas.clone())
                    .unwrap_or_default();
                for schema in schemas {
                    let _ = self.execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"));
                }
            }
        }
    }
}

fn postgres_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/postgres")
}
