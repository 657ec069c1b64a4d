//! A PostgreSQL server of one test's own, which the test stops, kills with
//! SIGKILL and starts again without disturbing tests running against the
//! shared throwaway server.
//!
//! `scripts/postgres start` creates it (a fresh cluster on a free port);
//! then the postmaster runs as a child of the test process instead of the
//! daemon `pg_ctl` starts, so that a postmaster killed with SIGKILL is
//! reaped (where PID 1 reaps no orphans, a dead daemon stays a zombie and
//! its lock file keeps the next postmaster from starting). Dropping the
//! server stops it and deletes its files.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use factstr_postgres::{PostgresStore, PostgresStoreOptions};

/// How long starting the server may take (crash recovery included).
const START_PATIENCE: Duration = Duration::from_secs(60);

pub struct PrivateServer {
    /// The `export` lines of `scripts/postgres start`, as variables.
    environment: Vec<(String, String)>,
    url: String,
    port: String,
    bin: PathBuf,
    data: String,
    root: String,
    run_as: String,
    postmaster: Option<Child>,
}

impl PrivateServer {
    /// Creates a cluster and starts its postmaster.
    pub fn start() -> Self {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/postgres");
        let output = Command::new("bash")
            .arg(&script)
            .arg("start")
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "scripts/postgres start failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        let environment: Vec<(String, String)> = String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .filter_map(|line| {
                let (name, value) = line.strip_prefix("export ")?.split_once('=')?;
                Some((name.to_owned(), value.trim_matches('\'').to_owned()))
            })
            .collect();
        let variable = |name: &str| {
            environment
                .iter()
                .find(|(variable, _)| variable == name)
                .map(|(_, value)| value.clone())
                .unwrap_or_else(|| panic!("scripts/postgres start did not export {name}"))
        };
        let url = variable("FACTSTR_TEST_DATABASE_URL");
        let port = url
            .rsplit_once(':')
            .and_then(|(_, rest)| rest.split_once('/'))
            .map(|(port, _)| port.to_owned())
            .unwrap();
        let pg_ctl = PathBuf::from(variable("FACTSTR_TEST_PG_CTL"));
        let mut server = Self {
            url,
            port,
            bin: pg_ctl.parent().unwrap().to_owned(),
            data: variable("FACTSTR_TEST_PG_DATA"),
            root: variable("FACTSTR_TEST_PG_ROOT"),
            run_as: variable("FACTSTR_TEST_PG_RUNAS"),
            environment,
            postmaster: None,
        };
        // Hand the server over from pg_ctl's daemon to a child of ours.
        server.pg_ctl(&["-m", "fast", "stop"]);
        server.start_again();
        server
    }

    /// `postgres://...` of the server's test database.
    pub fn database_url(&self) -> &str {
        &self.url
    }

    /// The database URL with `search_path` set to `schema`.
    pub fn schema_url(&self, schema: &str) -> String {
        format!("{}?options=-csearch_path%3D{schema}", self.url)
    }

    /// Creates a schema and returns its name.
    pub fn new_schema(&self, name: &str) -> String {
        self.execute(format!("CREATE SCHEMA {name}"));
        name.to_owned()
    }

    /// A store in `schema` on this server.
    pub fn store_in(&self, schema: &str, options: PostgresStoreOptions) -> PostgresStore {
        PostgresStore::connect_with(&self.schema_url(schema), options).unwrap()
    }

    /// Runs SQL against the test database.
    pub fn execute(&self, sql: String) {
        super::execute_at(self.url.clone(), sql);
    }

    /// Stops the server cleanly (`pg_ctl stop -m fast`).
    pub fn stop(&mut self) {
        self.pg_ctl(&["-m", "fast", "stop"]);
        self.reap();
    }

    /// Kills the postmaster with SIGKILL (the pid in `postmaster.pid`), as a
    /// crash would; its backends end when they notice.
    pub fn kill(&mut self) {
        let pid_file = std::fs::read_to_string(format!("{}/postmaster.pid", self.data)).unwrap();
        let pid = pid_file.lines().next().unwrap().trim().to_owned();
        let status = Command::new("kill").args(["-9", &pid]).status().unwrap();
        assert!(status.success(), "kill -9 {pid} failed");
        self.reap();
    }

    /// Starts the postmaster (again) and waits until it accepts
    /// connections; after a kill that includes crash recovery, and retries
    /// while backends of the killed postmaster still hold its shared memory.
    pub fn start_again(&mut self) {
        let deadline = Instant::now() + START_PATIENCE;
        loop {
            if self.postmaster.is_none() {
                self.postmaster = Some(self.spawn_postmaster());
            }
            // Ready only while our postmaster runs: one that could not start
            // (say, another server took the port meanwhile) exits.
            let ready = self.is_ready();
            let exited = self
                .postmaster
                .as_mut()
                .is_some_and(|child| child.try_wait().unwrap().is_some());
            if exited {
                self.postmaster = None;
            } else if ready {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the private PostgreSQL server did not start within {START_PATIENCE:?}; see {}/postmaster.log",
                self.root
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn spawn_postmaster(&self) -> Child {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(format!("{}/postmaster.log", self.root))
            .unwrap();
        let postgres = self.bin.join("postgres");
        let mut command = if self.run_as.is_empty() {
            Command::new(&postgres)
        } else {
            let mut command = Command::new("runuser");
            command.args(["-u", &self.run_as, "--"]).arg(&postgres);
            command
        };
        command
            .args(["-D", &self.data])
            .current_dir("/tmp")
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap()
    }

    fn is_ready(&self) -> bool {
        Command::new(self.bin.join("pg_isready"))
            .args(["-q", "-h", "127.0.0.1", "-p", &self.port, "-t", "1"])
            .status()
            .is_ok_and(|status| status.success())
    }

    /// Waits for the postmaster child to end.
    fn reap(&mut self) {
        if let Some(mut child) = self.postmaster.take() {
            child.wait().unwrap();
        }
    }

    fn pg_ctl(&self, arguments: &[&str]) {
        let pg_ctl = self.bin.join("pg_ctl");
        let mut command = if self.run_as.is_empty() {
            Command::new(&pg_ctl)
        } else {
            let mut command = Command::new("runuser");
            command.args(["-u", &self.run_as, "--"]).arg(&pg_ctl);
            command
        };
        let status = command
            .args(["-D", &self.data, "-w", "-t", "60"])
            .args(arguments)
            .current_dir("/tmp")
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "pg_ctl {arguments:?} failed: {status}");
    }
}

impl Drop for PrivateServer {
    fn drop(&mut self) {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/postgres");
        let _ = Command::new("bash")
            .arg(&script)
            .arg("stop")
            .envs(self.environment.iter().map(|(name, value)| (name, value)))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        if let Some(mut child) = self.postmaster.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
