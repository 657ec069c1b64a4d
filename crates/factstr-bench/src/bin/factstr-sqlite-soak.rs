//! Crash soak of the SQLite store: cycle after cycle, a child process opens
//! one database file, runs two durable streams and appends batches until it
//! is killed with SIGKILL at a random moment; after each kill the file is
//! checked.
//!
//! ```text
//! cargo run --release -p factstr-bench --bin factstr-sqlite-soak -- [--cycles N] [--seed S] [--folder DIR]
//! ```
//! (or `scripts/soak [N]`). Not run in CI: 1,000 cycles take minutes.
//!
//! The child reports to a side file, one line per `write`, which survives
//! the kill: `A first last batch size kind` after each acknowledged append,
//! `H first last` when the handler of durable stream `soak-all` is called
//! (before it returns, so before its cursor may move), `F seq ...` for
//! durable stream `soak-counter` (a `stream_to_durable` of the counter
//! events), and `STARTED` once both registrations returned. Each cycle
//! then checks, with a plain SQLite connection of its own:
//! - the log is gapless, and no event of an earlier cycle was lost;
//! - every batch is whole (its events carry their batch's number, index and
//!   size) and every acknowledged append is there with its content; at most
//!   the one batch in flight at the kill is present without acknowledgement;
//! - every conditional append was decided on the context version just
//!   before it (`expected` is the previous counter event);
//! - each durable stream's cursor never moved backwards, is not ahead of the
//!   log, not ahead of what its handler saw, and passed no matching event
//!   its handler did not see;
//! - each durable stream resumed strictly after its stored cursor and
//!   delivered whole batches without gap or duplicate within the cycle.
//!
//! Odd cycles open the store with `SqliteDurability::Normal`, even ones
//! with `Full`; both promise that an acknowledged append survives a crash
//! of the process.

#![allow(clippy::print_stdout, clippy::print_stderr)]
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use factstr::{DurableStream, EventQuery, EventRecord, EventStore, HandleStream, NewEvent};
use factstr_sqlite::{SqliteDurability, SqliteStore, SqliteStoreOptions};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OpenFlags};
use serde_json::{Value, json};

const CHILD: &str = "child";
const ALL_STREAM: &str = "soak-all";
const COUNTER_STREAM: &str = "soak-counter";
const COUNTER_TYPE: &str = "counter-ticked";
const NOTED_TYPE: &str = "noted";
/// Batch sizes, drawn at random: mostly small, some large.
const BATCH_SIZES: [u64; 10] = [1, 1, 1, 2, 3, 5, 8, 13, 40, 120];

const USAGE: &str = "usage: factstr-sqlite-soak [--cycles N] [--seed S] [--folder DIR]";

fn main() -> ExitCode {
    let arguments: Vec<String> = std::env::args().skip(1).collect();
    if arguments.first().map(String::as_str) == Some(CHILD) {
        return match run_child(&arguments[1..]) {
            Ok(()) => ExitCode::SUCCESS,
            Err(error) => {
                eprintln!("child: {error}");
                ExitCode::from(2)
            }
        };
    }
    match Options::parse(&arguments).and_then(|options| run(&options)) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(error) => {
            eprintln!("{error}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

struct Options {
    cycles: u64,
    seed: u64,
    folder: Option<PathBuf>,
}

impl Options {
    fn parse(arguments: &[String]) -> Result<Self, String> {
        let mut options = Self {
            cycles: 1_000,
            seed: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(1, |elapsed| elapsed.as_nanos() as u64),
            folder: None,
        };
        let mut arguments = arguments.iter();
        while let Some(argument) = arguments.next() {
            let mut value = || {
                arguments
                    .next()
                    .ok_or_else(|| format!("{argument} needs a value"))
            };
            match argument.as_str() {
                "--cycles" => options.cycles = parse_number(value()?)?,
                "--seed" => options.seed = parse_number(value()?)?,
                "--folder" => options.folder = Some(PathBuf::from(value()?)),
                other => return Err(format!("unknown argument {other}")),
            }
        }
        Ok(options)
    }
}

fn parse_number(text: &str) -> Result<u64, String> {
    text.parse()
        .map_err(|error| format!("{text} is not a number: {error}"))
}

/// A small deterministic generator (xorshift), so a seed draws a run's kill
/// delays and batch sizes again.
struct Generator(u64);

impl Generator {
    /// A generator for `seed`; distinct seeds start distinct sequences.
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, bound: u64) -> u64 {
        self.next() % bound
    }
}

// ---------------------------------------------------------------------------
// The child.

/// `child <database> <report file> <cycle> <seed> <full|normal>`
fn run_child(arguments: &[String]) -> Result<(), String> {
    let [database, report_file, cycle, seed, durability] = arguments else {
        return Err(format!("expected 5 arguments, got {arguments:?}"));
    };
    let cycle: u64 = parse_number(cycle)?;
    let mut generator = Generator::new(parse_number(seed)?);
    let durability = match durability.as_str() {
        "full" => SqliteDurability::Full,
        _ => SqliteDurability::Normal,
    };
    let file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(report_file)
        .map_err(|error| format!("cannot open {report_file}: {error}"))?;
    let report = Reporter(Arc::new(Mutex::new(file)));

    let store = SqliteStore::open_with(
        database,
        SqliteStoreOptions::default().durability(durability),
    )
    .map_err(|error| format!("open: {error}"))?;
    let all_handler = {
        let report = report.clone();
        HandleStream::new(move |batch: Vec<EventRecord>| {
            report.line(&format!(
                "H {} {}",
                batch[0].sequence_number,
                batch[batch.len() - 1].sequence_number
            ));
            // Now and then a slow handler, so the cursor lags behind.
            if batch[0].sequence_number.is_multiple_of(16) {
                std::thread::sleep(Duration::from_millis(2));
            }
            async { Ok(()) }
        })
    };
    let counter_handler = {
        let report = report.clone();
        HandleStream::new(move |batch: Vec<EventRecord>| {
            let numbers: Vec<String> = batch
                .iter()
                .map(|record| record.sequence_number.to_string())
                .collect();
            report.line(&format!("F {}", numbers.join(" ")));
            async { Ok(()) }
        })
    };
    let counter_query = EventQuery::for_event_types([COUNTER_TYPE]);
    let _all = store
        .stream_all_durable(&DurableStream::new(ALL_STREAM), all_handler)
        .map_err(|error| format!("registering {ALL_STREAM}: {error}"))?;
    let _counter = store
        .stream_to_durable(
            &DurableStream::new(COUNTER_STREAM),
            &counter_query,
            counter_handler,
        )
        .map_err(|error| format!("registering {COUNTER_STREAM}: {error}"))?;
    report.line("STARTED");

    for batch in 1_u64.. {
        let size = BATCH_SIZES[generator.below(BATCH_SIZES.len() as u64) as usize];
        let payload =
            |index: u64| json!({"cycle": cycle, "batch": batch, "index": index, "size": size});
        let conditional = batch.is_multiple_of(4);
        let result = if conditional {
            // The first event ticks the counter; it names the context
            // version it was decided on.
            let version = store
                .query(&counter_query)
                .map_err(|error| format!("query: {error}"))?
                .current_context_version;
            let mut events = Vec::new();
            let mut first = payload(0);
            first["expected"] = json!(version);
            events.push(NewEvent::new(COUNTER_TYPE, first));
            events.extend((1..size).map(|index| NewEvent::new(NOTED_TYPE, payload(index))));
            store.append_if(events, &counter_query, version)
        } else {
            store.append(
                (0..size)
                    .map(|index| NewEvent::new(NOTED_TYPE, payload(index)))
                    .collect(),
            )
        }
        .map_err(|error| format!("append of batch {batch}: {error}"))?;
        report.line(&format!(
            "A {} {} {batch} {size} {}",
            result.first_sequence_number,
            result.last_sequence_number,
            if conditional { "if" } else { "plain" }
        ));
    }
    Ok(())
}

/// Writes report lines, each with one `write` call, so a kill leaves whole
/// lines (the kernel keeps what was written; no sync is needed for a
/// process crash).
#[derive(Clone)]
struct Reporter(Arc<Mutex<File>>);

impl Reporter {
    fn line(&self, line: &str) {
        let mut file = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // A failed report shows as a missing acknowledgement, never as a
        // false one.
        let _ = file.write_all(format!("{line}\n").as_bytes());
    }
}

// ---------------------------------------------------------------------------
// The driver.

fn run(options: &Options) -> Result<bool, String> {
    let (folder, _temporary) = match &options.folder {
        Some(folder) => {
            fs::create_dir_all(folder).map_err(|error| error.to_string())?;
            (folder.clone(), None)
        }
        None => {
            let temporary = tempfile_folder()?;
            (temporary.clone(), Some(RemoveOnDrop(temporary)))
        }
    };
    let database = folder.join("soak.db");
    let report_file = folder.join("report.txt");
    let child_errors = folder.join("child-stderr.txt");
    let executable = std::env::current_exe().map_err(|error| error.to_string())?;
    let mut generator = Generator::new(options.seed);
    println!(
        "crash soak: {} cycles on {} (seed {})",
        options.cycles,
        database.display(),
        options.seed
    );

    let started = Instant::now();
    let mut checked = Checked::default();
    let mut statistics = Statistics::default();
    let mut failures: Vec<(u64, Vec<String>)> = Vec::new();
    for cycle in 1..=options.cycles {
        // Some kills land while the child opens and replays, most while it
        // appends.
        let delay = if generator.below(4) == 0 {
            generator.below(40)
        } else {
            40 + generator.below(360)
        };
        let durability = if cycle.is_multiple_of(2) {
            "full"
        } else {
            "normal"
        };
        let _ = fs::remove_file(&report_file);
        let errors = File::create(&child_errors).map_err(|error| error.to_string())?;
        let mut child = Command::new(&executable)
            .arg(CHILD)
            .arg(&database)
            .arg(&report_file)
            .arg(cycle.to_string())
            .arg(generator.next().to_string())
            .arg(durability)
            .stdout(Stdio::null())
            .stderr(errors)
            .spawn()
            .map_err(|error| format!("cannot start the child: {error}"))?;
        std::thread::sleep(Duration::from_millis(delay));
        let _ = child.kill(); // SIGKILL
        let status = child.wait().map_err(|error| error.to_string())?;

        let mut problems = Vec::new();
        if status.signal() != Some(9) {
            problems.push(format!(
                "the child ended by itself ({status}): {}",
                fs::read_to_string(&child_errors).unwrap_or_default().trim()
            ));
        }
        let report = Report::read(&report_file);
        statistics.count(&report);
        if let Err(problem) = check_cycle(&database, cycle, &report, &mut checked, &mut problems) {
            problems.push(problem);
        }
        if !problems.is_empty() {
            eprintln!(
                "cycle {cycle} (killed after {delay} ms, {durability}) FAILED:\n  {}",
                problems.join("\n  ")
            );
            failures.push((cycle, problems));
        }
        if cycle.is_multiple_of(100) {
            eprintln!(
                "{cycle} cycles, {} failed, {} events, {:.0?}",
                failures.len(),
                checked.head,
                started.elapsed()
            );
        }
    }

    let passed = options.cycles - failures.len() as u64;
    println!(
        "{} events in {} batches; {} acknowledged appends ({} conditional); \
         {} kills before the streams were registered; {ALL_STREAM} was handed {} batches, \
         {} of them again after a kill",
        checked.head,
        checked.batches,
        statistics.acknowledged,
        statistics.conditional,
        statistics.killed_before_start,
        statistics.handled,
        checked.redelivered
    );
    println!("duration {:.1?}, seed {}", started.elapsed(), options.seed);
    for (cycle, problems) in &failures {
        println!("cycle {cycle}: {}", problems.join("; "));
    }
    println!("{passed} passed, {} failed", failures.len());
    Ok(failures.is_empty())
}

/// A new folder under the system's temporary folder.
fn tempfile_folder() -> Result<PathBuf, String> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_nanos());
    let folder = std::env::temp_dir().join(format!(
        "factstr-sqlite-soak-{}-{nanos}",
        std::process::id()
    ));
    fs::create_dir_all(&folder).map_err(|error| error.to_string())?;
    Ok(folder)
}

struct RemoveOnDrop(PathBuf);

impl Drop for RemoveOnDrop {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[derive(Default)]
struct Statistics {
    acknowledged: u64,
    conditional: u64,
    killed_before_start: u64,
    handled: u64,
}

impl Statistics {
    fn count(&mut self, report: &Report) {
        self.acknowledged += report.acknowledged.len() as u64;
        self.conditional += report
            .acknowledged
            .iter()
            .filter(|ack| ack.conditional)
            .count() as u64;
        self.killed_before_start += u64::from(!report.started);
        self.handled += report.handled.len() as u64;
    }
}

/// An acknowledged append.
struct Acknowledged {
    first: u64,
    last: u64,
    batch: u64,
    size: u64,
    conditional: bool,
}

/// What a child reported before it was killed.
#[derive(Default)]
struct Report {
    started: bool,
    acknowledged: Vec<Acknowledged>,
    /// `(first, last)` of each batch `soak-all` was handed.
    handled: Vec<(u64, u64)>,
    /// The sequence numbers `soak-counter` was handed, in order.
    counted: Vec<u64>,
    /// Lines that could not be read (a kill in the middle of a line).
    unreadable: Vec<String>,
}

impl Report {
    fn read(path: &Path) -> Self {
        let mut report = Self::default();
        let text = fs::read_to_string(path).unwrap_or_default();
        // Only whole lines: the text after the last newline was cut short.
        let whole = text.rfind('\n').map_or("", |end| &text[..end]);
        for line in whole.lines() {
            let fields: Vec<&str> = line.split(' ').collect();
            let numbers: Vec<u64> = fields[1..]
                .iter()
                .filter_map(|field| field.parse().ok())
                .collect();
            match (fields[0], numbers.as_slice()) {
                ("STARTED", []) => report.started = true,
                ("A", &[first, last, batch, size]) if fields.len() == 6 => {
                    report.acknowledged.push(Acknowledged {
                        first,
                        last,
                        batch,
                        size,
                        conditional: fields[5] == "if",
                    });
                }
                ("H", &[first, last]) => report.handled.push((first, last)),
                ("F", numbers) if !numbers.is_empty() => report.counted.extend(numbers),
                _ => report.unreadable.push(line.to_owned()),
            }
        }
        report
    }
}

/// What the earlier cycles established.
#[derive(Default)]
struct Checked {
    /// The last sequence number checked.
    head: u64,
    /// The newest counter event.
    last_counter: Option<u64>,
    /// Each durable stream's stored cursor after the last cycle.
    cursors: HashMap<&'static str, u64>,
    /// The greatest sequence number each durable stream's handler saw.
    handled_through: HashMap<&'static str, u64>,
    /// Batches `soak-all` was handed again after a kill: handled before,
    /// but the kill came before their cursor was written.
    redelivered: u64,
    /// Committed batches.
    batches: u64,
}

/// A stored event, as the checks need it.
struct Row {
    sequence_number: u64,
    batch_last: u64,
    event_type: String,
    payload: Value,
}

/// Checks the file after cycle `cycle`; records what it found in
/// `problems`, and returns an error when the file cannot be read at all.
fn check_cycle(
    database: &Path,
    cycle: u64,
    report: &Report,
    checked: &mut Checked,
    problems: &mut Vec<String>,
) -> Result<(), String> {
    if !database.exists() {
        // Killed before the file was created.
        return Ok(());
    }
    let connection = Connection::open_with_flags(database, OpenFlags::SQLITE_OPEN_READ_WRITE)
        .map_err(|error| format!("cannot open the database: {error}"))?;
    // Leave the write-ahead log as the kill left it, so that the next child
    // starts with a hot log to recover.
    connection
        .set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
        .map_err(|error| error.to_string())?;
    let sql = |error: rusqlite::Error| format!("reading the database failed: {error}");
    let has_schema: bool = connection
        .query_row(
            "SELECT COUNT(*) = 2 FROM sqlite_schema WHERE name IN ('factstr_events', 'factstr_durable_streams')",
            [],
            |row| row.get(0),
        )
        .map_err(sql)?;
    if !has_schema {
        return Ok(());
    }
    for line in &report.unreadable {
        problems.push(format!("unreadable report line: {line}"));
    }

    // Gapless, and nothing of earlier cycles lost.
    let (count, head): (u64, u64) = connection
        .query_row(
            "SELECT COUNT(*), COALESCE(MAX(sequence_number), 0) FROM factstr_events",
            [],
            |row| Ok((number(row, 0)?, number(row, 1)?)),
        )
        .map_err(sql)?;
    if count != head {
        problems.push(format!("{count} events but the last is {head}: a gap"));
    }
    if head < checked.head {
        problems.push(format!(
            "the log ends at {head}, but {} was there after the last cycle",
            checked.head
        ));
    }

    // The new events: whole batches of this cycle.
    let rows = read_rows(&connection, checked.head, head).map_err(sql)?;
    checked.batches += check_batches(&rows, cycle, checked.head, problems);
    check_counter_chain(&rows, &mut checked.last_counter, problems);
    check_acknowledged(&rows, report, checked.head, problems);

    // Durable streams.
    let cursors = read_cursors(&connection).map_err(sql)?;
    check_all_stream(&connection, report, checked, &cursors, head, problems).map_err(sql)?;
    check_counter_stream(&connection, report, checked, &cursors, head, problems).map_err(sql)?;
    for (name, cursor) in cursors {
        if let Some(name) = [ALL_STREAM, COUNTER_STREAM]
            .into_iter()
            .find(|known| *known == name)
        {
            checked.cursors.insert(name, cursor);
        }
    }
    checked.head = checked.head.max(head);
    Ok(())
}

/// Column `index` of `row`, a sequence number or count.
fn number(row: &rusqlite::Row<'_>, index: usize) -> rusqlite::Result<u64> {
    Ok(row.get::<_, i64>(index)?.max(0) as u64)
}

/// A sequence number as SQLite stores it (they stay far below `i64::MAX`).
fn integer(sequence_number: u64) -> i64 {
    i64::try_from(sequence_number).unwrap_or(i64::MAX)
}

fn read_rows(connection: &Connection, after: u64, through: u64) -> rusqlite::Result<Vec<Row>> {
    let mut statement = connection.prepare(
        "SELECT sequence_number, batch_last_sequence_number, event_type, payload \
         FROM factstr_events WHERE sequence_number > ?1 AND sequence_number <= ?2 \
         ORDER BY sequence_number",
    )?;
    statement
        .query_map([integer(after), integer(through)], |row| {
            let payload: String = row.get(3)?;
            Ok(Row {
                sequence_number: number(row, 0)?,
                batch_last: number(row, 1)?,
                event_type: row.get(2)?,
                payload: serde_json::from_str(&payload).unwrap_or(Value::Null),
            })
        })?
        .collect()
}

fn read_cursors(connection: &Connection) -> rusqlite::Result<HashMap<String, u64>> {
    let mut statement = connection.prepare("SELECT name, cursor FROM factstr_durable_streams")?;
    statement
        .query_map([], |row| Ok((row.get(0)?, number(row, 1)?)))?
        .collect()
}

/// Every batch among `rows` is whole: consecutive events ending at their
/// batch's last sequence number, as many as the batch's size, each with its
/// index, all of one append of this cycle. Returns how many batches there
/// are.
fn check_batches(rows: &[Row], cycle: u64, after: u64, problems: &mut Vec<String>) -> u64 {
    let mut batches = 0;
    let mut start = 0;
    let mut expected_first = after + 1;
    while start < rows.len() {
        let batch_last = rows[start].batch_last;
        let end = rows[start..]
            .iter()
            .position(|row| row.batch_last != batch_last)
            .map_or(rows.len(), |offset| start + offset);
        let batch = &rows[start..end];
        let first = batch[0].sequence_number;
        let last = batch[batch.len() - 1].sequence_number;
        let head = &batch[0].payload;
        let whole = first == expected_first
            && last == batch_last
            && head["size"].as_u64() == Some(batch.len() as u64)
            && head["cycle"].as_u64() == Some(cycle)
            && batch.iter().enumerate().all(|(index, row)| {
                row.payload["index"].as_u64() == Some(index as u64)
                    && row.payload["batch"] == head["batch"]
                    && row.payload["cycle"] == head["cycle"]
            });
        if !whole {
            problems.push(format!(
                "the batch stored as {first}..={last} (batch_last {batch_last}) is not one whole \
                 append of cycle {cycle}: {}",
                batch
                    .iter()
                    .map(|row| row.payload.to_string())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        expected_first = last + 1;
        start = end;
        batches += 1;
    }
    batches
}

/// Every counter event names the counter event before it: each
/// conditional append was decided on the current context version.
fn check_counter_chain(rows: &[Row], last_counter: &mut Option<u64>, problems: &mut Vec<String>) {
    for row in rows.iter().filter(|row| row.event_type == COUNTER_TYPE) {
        let expected = row.payload["expected"].as_u64();
        if expected != *last_counter {
            problems.push(format!(
                "counter event {} was decided on version {expected:?}, but the version before it was {last_counter:?}",
                row.sequence_number
            ));
        }
        *last_counter = Some(row.sequence_number);
    }
}

/// Every acknowledged append is stored as acknowledged; besides them, at
/// most the last batch (committed, not yet acknowledged at the kill).
fn check_acknowledged(rows: &[Row], report: &Report, after: u64, problems: &mut Vec<String>) {
    let head = rows.last().map_or(after, |row| row.sequence_number);
    for ack in &report.acknowledged {
        let stored = (ack.first > after && ack.last <= head)
            .then(|| &rows[(ack.first - after - 1) as usize..(ack.last - after) as usize]);
        let matches = stored.is_some_and(|batch| {
            batch.len() as u64 == ack.size
                && batch.iter().all(|row| {
                    row.batch_last == ack.last && row.payload["batch"].as_u64() == Some(ack.batch)
                })
                && (batch[0].event_type == COUNTER_TYPE) == ack.conditional
        });
        if !matches {
            problems.push(format!(
                "acknowledged append {}..={} (batch {}) is missing or altered (log after the last cycle: {after}, now {head})",
                ack.first, ack.last, ack.batch
            ));
        }
    }
    let acknowledged_through = report.acknowledged.last().map_or(after, |ack| ack.last);
    let unacknowledged_batches = {
        let mut lasts: Vec<u64> = rows
            .iter()
            .filter(|row| row.sequence_number > acknowledged_through)
            .map(|row| row.batch_last)
            .collect();
        lasts.dedup();
        lasts.len()
    };
    if unacknowledged_batches > 1 {
        problems.push(format!(
            "{unacknowledged_batches} batches after the last acknowledgement ({acknowledged_through}); \
             a child appending one batch at a time can leave one"
        ));
    }
}

/// `soak-all`: resumed right after its stored cursor, handed whole stored
/// batches without gap or duplicate; its cursor moved forward only, and not
/// beyond the log or what its handler saw.
fn check_all_stream(
    connection: &Connection,
    report: &Report,
    checked: &mut Checked,
    cursors: &HashMap<String, u64>,
    head: u64,
    problems: &mut Vec<String>,
) -> rusqlite::Result<()> {
    let before = checked.cursors.get(ALL_STREAM).copied().unwrap_or(0);
    let handled_before = checked
        .handled_through
        .get(ALL_STREAM)
        .copied()
        .unwrap_or(0);
    checked.redelivered += report
        .handled
        .iter()
        .filter(|(_, last)| *last <= handled_before)
        .count() as u64;
    let mut next = before + 1;
    for &(first, last) in &report.handled {
        if first != next {
            problems.push(format!(
                "{ALL_STREAM} was handed {first}..={last}, expected a batch starting at {next} \
                 (stored cursor before the cycle: {before})"
            ));
        }
        let (count, batch_lasts_agree, before_is_boundary): (u64, bool, bool) = connection
            .query_row(
                "SELECT COUNT(*), COALESCE(MIN(batch_last_sequence_number) = ?2 \
                 AND MAX(batch_last_sequence_number) = ?2, 0), \
                 ?1 = 1 OR EXISTS (SELECT 1 FROM factstr_events WHERE sequence_number = ?1 - 1 \
                 AND batch_last_sequence_number = ?1 - 1) \
                 FROM factstr_events WHERE sequence_number >= ?1 AND sequence_number <= ?2",
                [integer(first), integer(last)],
                |row| Ok((number(row, 0)?, row.get(1)?, row.get(2)?)),
            )?;
        if count != last - first + 1 || !batch_lasts_agree || !before_is_boundary {
            problems.push(format!(
                "{ALL_STREAM} was handed {first}..={last}, which is not a stored batch"
            ));
        }
        next = last + 1;
    }
    let handled_through = checked.handled_through.entry(ALL_STREAM).or_insert(0);
    *handled_through = (*handled_through).max(next - 1);
    let cursor = cursors.get(ALL_STREAM).copied().unwrap_or(0);
    if cursor < before {
        problems.push(format!(
            "the cursor of {ALL_STREAM} moved back from {before} to {cursor}"
        ));
    }
    if cursor > head || cursor > (*handled_through).max(before) {
        problems.push(format!(
            "the cursor of {ALL_STREAM} is {cursor}, ahead of the log ({head}) or of what its \
             handler saw ({handled_through})"
        ));
    }
    Ok(())
}

/// `soak-counter`: handed exactly the counter events after its stored
/// cursor, in order; its cursor passed no counter event it was not handed.
fn check_counter_stream(
    connection: &Connection,
    report: &Report,
    checked: &mut Checked,
    cursors: &HashMap<String, u64>,
    head: u64,
    problems: &mut Vec<String>,
) -> rusqlite::Result<()> {
    let before = checked.cursors.get(COUNTER_STREAM).copied().unwrap_or(0);
    let counter_events = |after: u64, through: u64| -> rusqlite::Result<Vec<u64>> {
        let mut statement = connection.prepare_cached(
            "SELECT sequence_number FROM factstr_events WHERE event_type = ?1 \
             AND sequence_number > ?2 AND sequence_number <= ?3 ORDER BY sequence_number",
        )?;
        statement
            .query_map(
                rusqlite::params![COUNTER_TYPE, integer(after), integer(through)],
                |row| number(row, 0),
            )?
            .collect()
    };
    if let Some(&last_handed) = report.counted.last() {
        let stored = counter_events(before, last_handed)?;
        if stored != report.counted {
            problems.push(format!(
                "{COUNTER_STREAM} was handed {:?} after cursor {before}; the counter events there are {stored:?}",
                report.counted
            ));
        }
    }
    let handled_through = checked.handled_through.entry(COUNTER_STREAM).or_insert(0);
    if let Some(&last_handed) = report.counted.last() {
        *handled_through = (*handled_through).max(last_handed);
    }
    let cursor = cursors.get(COUNTER_STREAM).copied().unwrap_or(0);
    if cursor < before {
        problems.push(format!(
            "the cursor of {COUNTER_STREAM} moved back from {before} to {cursor}"
        ));
    }
    let seen = (*handled_through).max(before);
    let passed_unseen = counter_events(seen, cursor)?;
    if cursor > head || !passed_unseen.is_empty() {
        problems.push(format!(
            "the cursor of {COUNTER_STREAM} is {cursor} (log: {head}); it passed counter events \
             its handler was not handed: {passed_unseen:?}"
        ));
    }
    Ok(())
}
