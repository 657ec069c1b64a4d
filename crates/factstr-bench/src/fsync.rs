//! The disk's fsync rate: the physical limit of a durable single-event append.

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use crate::report::Measurement;
use crate::stats::Latencies;

/// Overwrites one preallocated 8 KiB block and `fdatasync`s it in a loop for
/// `duration`, in `directory` (where the SQLite files go): the cost of making
/// a small write durable, as a database commit into a reused log file pays
/// it (the method of PostgreSQL's `pg_test_fsync`).
pub(crate) fn measure(directory: &Path, duration: Duration) -> Result<Measurement, String> {
    let path = directory.join("fsync-probe");
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .map_err(|error| format!("cannot create {}: {error}", path.display()))?;
    let block = vec![0x5a_u8; 8192];
    file.write_all(&block)
        .and_then(|()| file.sync_all())
        .map_err(|error| format!("cannot prepare {}: {error}", path.display()))?;
    let mut latencies = Latencies::default();
    let started = Instant::now();
    let mut syncs = 0_u64;
    while started.elapsed() < duration || syncs < 20 {
        let one = Instant::now();
        file.seek(SeekFrom::Start(0))
            .and_then(|_| file.write_all(&block))
            .and_then(|()| file.sync_data())
            .map_err(|error| format!("fsync probe failed: {error}"))?;
        latencies.record(one.elapsed());
        syncs += 1;
    }
    let seconds = started.elapsed().as_secs_f64();
    drop(file);
    let _ = std::fs::remove_file(&path);
    Ok(Measurement::new(
        "disk",
        "fsync",
        "8 KiB overwrite + fdatasync",
        syncs,
        syncs,
        seconds,
    )
    .with_latencies(&latencies))
}
