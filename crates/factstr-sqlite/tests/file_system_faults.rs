//! The store on a file system that fails under it: a full disk, and a file
//! system that turns read-only while the store runs (as ext4 does after an
//! I/O error) or is read-only when the store opens.
//!
//! Each scenario needs a file system of its own: a size-limited tmpfs, or an
//! ext4 image on a loop device. The test runs it in a child process (this
//! test binary again, running only `file_system_child`) inside a private
//! mount namespace, so whatever the child mounts disappears with it, also
//! when it crashes. The namespace comes from `unshare --mount` when the tests
//! run as root, from an unprivileged user namespace otherwise (tmpfs only),
//! and on CI from `sudo -n`. A machine that offers none of these skips the
//! scenario with a printed reason; under CI (the variable `CI` is set) it
//! fails instead.
//!
//! What is not tested here, because Linux does not allow it: making a file
//! read-only underneath a process that holds it open for writing. A
//! read-only remount fails with EBUSY while any file is open for writing,
//! and `chmod` or `chattr +i` do not affect descriptors already open. The
//! one way the kernel turns writes on open files into errors is a file
//! system that goes read-only after an error, simulated below with ext4's
//! `trigger_fs_error`.

#![cfg(target_os = "linux")]
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::print_stderr)]

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicUsize, Ordering};

use factstr::{
    AppendResult, DurableStream, EventQuery, EventRecord, EventStore, EventStoreError, NewEvent,
};
use factstr_conformance::support::{Deliveries, sequence_numbers};
use factstr_sqlite::SqliteStore;
use serde_json::json;

const SCENARIO: &str = "FACTSTR_SQLITE_FAULT_SCENARIO";
const FOLDER: &str = "FACTSTR_SQLITE_FAULT_FOLDER";

/// Printed by the child once its file system is mounted: from then on a
/// failing child is a failing test, not a machine that cannot mount.
const MOUNTED: &str = "@MOUNTED";
/// Printed by the child when it cannot mount, with the reason.
const CANNOT_MOUNT: &str = "@CANNOT-MOUNT";

#[test]
fn appends_on_a_full_disk_fail_cleanly_and_resume_once_space_is_freed() {
    run_in_mount_namespace("full-disk", Privilege::AnyMountNamespace);
}

#[test]
fn a_store_opened_on_a_read_only_file_system_says_so_and_opens_once_writable() {
    run_in_mount_namespace("read-only-at-open", Privilege::AnyMountNamespace);
}

#[test]
fn a_file_system_turning_read_only_under_a_running_store_fails_appends_and_loses_nothing() {
    run_in_mount_namespace("read-only-underneath", Privilege::RealRoot);
}

/// The entry point of every child; does nothing in a normal test run.
#[test]
fn file_system_child() {
    let Ok(scenario) = std::env::var(SCENARIO) else {
        return;
    };
    let folder = PathBuf::from(std::env::var(FOLDER).unwrap());
    match scenario.as_str() {
        "full-disk" => full_disk(&folder),
        "read-only-at-open" => read_only_at_open(&folder),
        "read-only-underneath" => read_only_underneath(&folder),
        other => panic!("unknown scenario {other}"),
    }
}

// ---------------------------------------------------------------------------
// The scenarios, run inside the child.

/// Payload text large enough that the disk fills after a few thousand events.
fn filler_text() -> String {
    "x".repeat(900)
}

/// `size` events of appended batch `batch`, each naming its batch, its
/// place in it and the batch's size.
fn batch_of(batch: u64, size: u64) -> Vec<NewEvent> {
    (0..size)
        .map(|index| {
            NewEvent::new(
                "filled",
                json!({"batch": batch, "index": index, "size": size, "text": filler_text()}),
            )
        })
        .collect()
}

/// An acknowledged append.
#[derive(Clone, Copy, Debug)]
struct Acknowledged {
    batch: u64,
    first: u64,
    last: u64,
}

impl Acknowledged {
    fn new(batch: u64, result: &AppendResult) -> Self {
        Self {
            batch,
            first: result.first_sequence_number,
            last: result.last_sequence_number,
        }
    }
}

/// The log holds exactly the acknowledged batches, whole, in order and
/// without gaps, and a durable replay (which registers a new durable stream,
/// a write) delivers them with their shapes.
fn assert_log_is(store: &SqliteStore, acknowledged: &[Acknowledged]) {
    assert_query_is(store, acknowledged);
    assert_replay_is(store, acknowledged);
}

/// A query of the whole log finds exactly the acknowledged events, in
/// order and without gaps.
fn assert_query_is(store: &SqliteStore, acknowledged: &[Acknowledged]) {
    let records = store.query(&EventQuery::all()).unwrap().event_records;
    let expected_count = acknowledged.last().map_or(0, |ack| ack.last);
    assert_eq!(
        sequence_numbers(&records),
        (1..=expected_count).collect::<Vec<_>>(),
        "the log is gapless and ends at the last acknowledged event"
    );
    for ack in acknowledged {
        let batch = &records[(ack.first - 1) as usize..ack.last as usize];
        for (index, record) in batch.iter().enumerate() {
            assert_eq!(record.payload["batch"], json!(ack.batch), "{ack:?}");
            assert_eq!(record.payload["index"], json!(index), "{ack:?}");
            assert_eq!(record.payload["size"], json!(batch.len()), "{ack:?}");
        }
    }
}

/// A durable replay delivers exactly the acknowledged batches.
fn assert_replay_is(store: &SqliteStore, acknowledged: &[Acknowledged]) {
    // A new name each time, so that the replay starts at the beginning.
    static VERIFICATIONS: AtomicUsize = AtomicUsize::new(0);
    let name = format!("verify-{}", VERIFICATIONS.fetch_add(1, Ordering::Relaxed));
    let replayed = Deliveries::new();
    let stream = store
        .stream_all_durable(&DurableStream::new(name), replayed.handler())
        .unwrap();
    stream.unsubscribe();
    assert_batches_match(&replayed.batches(), acknowledged);
}

/// `batches` are the acknowledged batches, in order, with their shapes.
fn assert_batches_match(batches: &[Vec<EventRecord>], acknowledged: &[Acknowledged]) {
    let shapes: Vec<(u64, u64)> = batches
        .iter()
        .map(|batch| {
            (
                batch[0].sequence_number,
                batch[batch.len() - 1].sequence_number,
            )
        })
        .collect();
    let expected: Vec<(u64, u64)> = acknowledged
        .iter()
        .map(|ack| (ack.first, ack.last))
        .collect();
    assert_eq!(shapes, expected);
}

fn assert_backend_failure_saying(error: &EventStoreError, words: &str) {
    match error {
        EventStoreError::BackendFailure { message } => assert!(
            message.contains(words),
            "expected a message saying `{words}`, got: {message}"
        ),
        other => panic!("expected a BackendFailure saying `{words}`, got: {other:?}"),
    }
}

/// A tmpfs of 8 MiB with a 4 MiB filler file: the store fills the rest,
/// then the filler is deleted and the same store goes on. (Each commit
/// adds some 50 KB to the write-ahead log here, so the space freed lasts
/// for about 80 commits.)
fn full_disk(folder: &Path) {
    mount_or_give_up(&["-t", "tmpfs", "-o", "size=8m,mode=0755", "tmpfs"], folder);
    println_marker(MOUNTED);
    let filler = folder.join("filler");
    fs::write(&filler, vec![7_u8; 4 << 20]).unwrap();
    let path = folder.join("events.db");

    let store = SqliteStore::open(&path).unwrap();
    let live = Deliveries::new();
    let _live_stream = store.stream_all(live.handler()).unwrap();
    let durable = Deliveries::new();
    let durable_stream = store
        .stream_all_durable(&DurableStream::new("projection"), durable.handler())
        .unwrap();

    let mut acknowledged = Vec::new();
    let mut batch = 0;
    // Appends until three in a row fail: a failed batch may leave room for a
    // smaller one after it.
    let mut failures_in_a_row = 0;
    while failures_in_a_row < 3 {
        let size = 1 + batch % 7;
        let outcome = if batch % 3 == 0 {
            // A conditional append: expects the log as this test last saw it.
            let expected = acknowledged.last().map(|ack: &Acknowledged| ack.last);
            store.append_if(batch_of(batch, size), &EventQuery::all(), expected)
        } else {
            store.append(batch_of(batch, size))
        };
        match outcome {
            Ok(result) => {
                acknowledged.push(Acknowledged::new(batch, &result));
                failures_in_a_row = 0;
            }
            Err(error) => {
                if failures_in_a_row == 0 {
                    eprintln!("full after {} batches: {error}", acknowledged.len());
                }
                assert_backend_failure_saying(&error, "disk is full");
                failures_in_a_row += 1;
            }
        }
        batch += 1;
        assert!(batch < 100_000, "the disk never filled");
    }
    assert!(acknowledged.len() > 10, "{acknowledged:?}");
    // A batch larger than the writer's page cache, which SQLite writes out
    // before the commit.
    let error = store.append(batch_of(batch, 12_000)).unwrap_err();
    eprintln!("a batch larger than the page cache: {error}");
    assert_backend_failure_saying(&error, "disk is full");
    let last = acknowledged.last().unwrap().last;
    // Reads go on, and show the acknowledged batches only.
    assert_query_is(&store, &acknowledged);
    live.wait_for_sequence(last);
    durable.wait_for_sequence(last);

    // Space comes back: the same store appends again.
    fs::remove_file(&filler).unwrap();
    for _ in 0..20 {
        batch += 1;
        let size = 1 + batch % 7;
        let result = store.append(batch_of(batch, size)).unwrap();
        acknowledged.push(Acknowledged::new(batch, &result));
    }
    let last = acknowledged.last().unwrap().last;
    let result = store
        .append_if(batch_of(batch + 1, 3), &EventQuery::all(), Some(last))
        .unwrap();
    acknowledged.push(Acknowledged::new(batch + 1, &result));
    let last = result.last_sequence_number;
    assert_log_is(&store, &acknowledged);
    // Streams saw every acknowledged batch once, in order, and nothing else.
    assert_batches_match(&live.wait_for_sequence(last), &acknowledged);
    assert_batches_match(&durable.wait_for_sequence(last), &acknowledged);
    durable_stream.unsubscribe();
    drop(store);

    // Reopened: everything acknowledged is there, and the durable stream
    // resumes after what it handled.
    let store = SqliteStore::open(&path).unwrap();
    assert_log_is(&store, &acknowledged);
    let resumed = Deliveries::new();
    let _resumed = store
        .stream_all_durable(&DurableStream::new("projection"), resumed.handler())
        .unwrap();
    assert!(resumed.batches().is_empty(), "{:?}", resumed.batches());
    drop(store);
    umount(folder);
}

/// A store closed, its file system remounted read-only, opened again.
fn read_only_at_open(folder: &Path) {
    mount_or_give_up(&["-t", "tmpfs", "-o", "size=4m,mode=0755", "tmpfs"], folder);
    println_marker(MOUNTED);
    let path = folder.join("events.db");
    let mut acknowledged = Vec::new();
    {
        let store = SqliteStore::open(&path).unwrap();
        for batch in 0..5 {
            let result = store.append(batch_of(batch, 1 + batch % 3)).unwrap();
            acknowledged.push(Acknowledged::new(batch, &result));
        }
    }
    run("mount", &["-o", "remount,bind,ro", path_str(folder)]).unwrap();
    let error = SqliteStore::open(&path).unwrap_err();
    eprintln!("opening on a read-only file system: {error}");
    assert_backend_failure_saying(&error, "read-only");
    run("mount", &["-o", "remount,bind,rw", path_str(folder)]).unwrap();
    let store = SqliteStore::open(&path).unwrap();
    assert_log_is(&store, &acknowledged);
    let result = store.append(batch_of(5, 2)).unwrap();
    acknowledged.push(Acknowledged::new(5, &result));
    assert_log_is(&store, &acknowledged);
    drop(store);
    umount(folder);
}

/// An ext4 file system that goes read-only after a (simulated) error while
/// the store runs, as ext4 does with `errors=remount-ro`.
fn read_only_underneath(folder: &Path) {
    // The image lives on a tmpfs of the child's own, so nothing is left
    // behind on the real disk.
    mount_or_give_up(
        &["-t", "tmpfs", "-o", "size=64m,mode=0755", "tmpfs"],
        folder,
    );
    let image = folder.join("ext4.img");
    fs::File::create(&image).unwrap().set_len(16 << 20).unwrap();
    let disk = folder.join("disk");
    fs::create_dir(&disk).unwrap();
    if let Err(reason) = run(
        "mkfs.ext4",
        &["-q", "-F", "-O", "^has_journal", path_str(&image)],
    )
    .and_then(|()| mount_ext4(&image, &disk))
    {
        give_up(&format!("cannot mount an ext4 image: {reason}"));
    }
    let trigger = error_trigger(&disk);
    if !trigger.exists() {
        give_up(&format!("{} does not exist", trigger.display()));
    }
    println_marker(MOUNTED);

    let path = disk.join("events.db");
    let store = SqliteStore::open(&path).unwrap();
    let durable = Deliveries::new();
    let _durable_stream = store
        .stream_all_durable(&DurableStream::new("projection"), durable.handler())
        .unwrap();
    let mut acknowledged = Vec::new();
    for batch in 0..30 {
        let result = store.append(batch_of(batch, 1 + batch % 4)).unwrap();
        acknowledged.push(Acknowledged::new(batch, &result));
    }
    let last = acknowledged.last().unwrap().last;
    durable.wait_for_sequence(last);

    fs::write(&trigger, "1").unwrap();
    for batch in 30..33 {
        let error = store.append(batch_of(batch, 2)).unwrap_err();
        eprintln!("append on a file system turned read-only: {error}");
        assert_backend_failure_saying(&error, "read-only");
    }
    // Reads go on.
    assert_eq!(
        store.query(&EventQuery::all()).unwrap().event_records.len() as u64,
        last
    );
    drop(store);

    // The file system must be mounted again (which needs every file on it
    // closed); then a reopened store has every acknowledged append.
    run("umount", &[path_str(&disk)]).unwrap();
    mount_ext4(&image, &disk).unwrap();
    let store = SqliteStore::open(&path).unwrap();
    assert_log_is(&store, &acknowledged);
    let result = store.append(batch_of(30, 2)).unwrap();
    acknowledged.push(Acknowledged::new(30, &result));
    assert_log_is(&store, &acknowledged);
    drop(store);
    umount(&disk);
    umount(folder);
}

fn mount_ext4(image: &Path, mount_point: &Path) -> Result<(), String> {
    run(
        "mount",
        &[
            "-t",
            "ext4",
            "-o",
            "loop,errors=remount-ro",
            path_str(image),
            path_str(mount_point),
        ],
    )
}

/// `/sys/fs/ext4/<device>/trigger_fs_error` of the file system mounted at
/// `mount_point`: writing to it reports an error, as a failing disk would.
fn error_trigger(mount_point: &Path) -> PathBuf {
    let output = Command::new("findmnt")
        .args(["-n", "-o", "SOURCE", path_str(mount_point)])
        .output()
        .unwrap();
    let source = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let device = Path::new(&source)
        .file_name()
        .unwrap_or_default()
        .to_owned();
    Path::new("/sys/fs/ext4")
        .join(device)
        .join("trigger_fs_error")
}

// ---------------------------------------------------------------------------
// Mounting, inside the child.

fn path_str(path: &Path) -> &str {
    path.to_str().unwrap()
}

fn println_marker(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}").unwrap();
    out.flush().unwrap();
}

/// Ends the child without failing: this machine cannot run the scenario.
fn give_up(reason: &str) -> ! {
    println_marker(&format!("{CANNOT_MOUNT} {reason}"));
    std::process::exit(0);
}

/// Mounts `arguments` on `mount_point`, or gives up.
fn mount_or_give_up(arguments: &[&str], mount_point: &Path) {
    let mut all = arguments.to_vec();
    all.push(path_str(mount_point));
    if let Err(reason) = run("mount", &all) {
        give_up(&format!("mount {}: {reason}", all.join(" ")));
    }
}

fn umount(mount_point: &Path) {
    run("umount", &[path_str(mount_point)]).unwrap();
}

/// Runs `program` and returns its error output if it fails.
fn run(program: &str, arguments: &[&str]) -> Result<(), String> {
    match Command::new(program).args(arguments).output() {
        Ok(output) if output.status.success() => Ok(()),
        Ok(output) => Err(format!(
            "{program} {}: {}",
            output.status,
            String::from_utf8_lossy(&output.stderr).trim()
        )),
        Err(error) => Err(format!("cannot run {program}: {error}")),
    }
}

// ---------------------------------------------------------------------------
// Starting the child, in the test.

/// What a scenario needs to mount its file system.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Privilege {
    /// tmpfs: any mount namespace will do, an unprivileged one too.
    AnyMountNamespace,
    /// Loop devices and ext4: root of the machine.
    RealRoot,
}

fn in_ci() -> bool {
    std::env::var_os("CI").is_some_and(|value| !value.is_empty())
}

/// Runs `scenario` in a child inside a private mount namespace, trying each
/// way of getting one; skips (outside CI) when none works.
fn run_in_mount_namespace(scenario: &str, privilege: Privilege) {
    let mut routes: Vec<(&str, Vec<&str>)> = vec![(
        "unshare --mount (as root)",
        vec!["unshare", "--mount", "--propagation", "private", "--"],
    )];
    if privilege == Privilege::AnyMountNamespace {
        routes.push((
            "an unprivileged user namespace",
            vec![
                "unshare",
                "--user",
                "--map-root-user",
                "--mount",
                "--propagation",
                "private",
                "--",
            ],
        ));
    }
    if in_ci() {
        // Never raises privileges on a developer's machine.
        routes.push((
            "sudo -n (CI)",
            vec![
                "sudo",
                "-n",
                "unshare",
                "--mount",
                "--propagation",
                "private",
                "--",
            ],
        ));
    }

    let mut reasons = Vec::new();
    for (route, prefix) in routes {
        let folder = tempfile::tempdir().unwrap();
        let output = match run_child(&prefix, scenario, folder.path()) {
            Ok(output) => output,
            Err(error) => {
                reasons.push(format!("{route}: cannot run {}: {error}", prefix[0]));
                continue;
            }
        };
        let stdout = String::from_utf8_lossy(&output.stdout);
        let stderr = String::from_utf8_lossy(&output.stderr);
        if stdout.lines().any(|line| line.contains(MOUNTED)) {
            assert!(
                output.status.success(),
                "scenario {scenario} failed (through {route}): {}\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
                output.status
            );
            assert!(
                !stdout.contains(CANNOT_MOUNT),
                "scenario {scenario} gave up after mounting: {stdout}"
            );
            return;
        }
        let reason = stdout
            .lines()
            .find_map(|line| line.split_once(CANNOT_MOUNT).map(|(_, reason)| reason))
            .map_or_else(
                || stderr.trim().to_owned(),
                |reason| reason.trim().to_owned(),
            );
        reasons.push(format!("{route}: {reason}"));
    }
    let reasons = reasons.join("; ");
    assert!(
        !in_ci(),
        "scenario {scenario} must run on CI, but no mount namespace could be made: {reasons}"
    );
    eprintln!(
        "skipped scenario {scenario}: this machine cannot mount a file system for it ({reasons})"
    );
}

fn run_child(prefix: &[&str], scenario: &str, folder: &Path) -> std::io::Result<Output> {
    let executable = std::env::current_exe().unwrap();
    let mut command = Command::new(prefix[0]);
    command.args(&prefix[1..]);
    if prefix[0] == "sudo" {
        // sudo drops the environment; `env` passes the child's on.
        command.args([
            "env".to_owned(),
            format!("{SCENARIO}={scenario}"),
            format!("{FOLDER}={}", folder.display()),
        ]);
    }
    command
        .arg(executable)
        .args([
            "--exact",
            "file_system_child",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(SCENARIO, scenario)
        .env(FOLDER, folder);
    command.output()
}
