//! Durable cursor advances waiting for the writer.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use factstr::backend::PendingCursors;

/// The pending cursors (see [`PendingCursors`]) and whether the writer
/// thread was told about them.
///
/// The writer thread is told once after each transaction took them: the
/// first advance after that queues one `CursorsPending` request, later
/// ones ride along. Cursors put back by a failed transaction are told again
/// by the next advance.
#[derive(Default)]
pub(super) struct PendingCursorWrites {
    cursors: PendingCursors,
    /// A `CursorsPending` request is on its way to the writer thread.
    announced: AtomicBool,
}

impl PendingCursorWrites {
    /// Records that `name` handled everything up to `cursor`; returns
    /// whether the writer thread must be told.
    pub(super) fn record(&self, name: &str, cursor: u64) -> bool {
        self.cursors.record(name, cursor);
        // After the record: a transaction that takes the cursors before
        // this swap has reset the flag first, so this advance is told.
        !self.announced.swap(true, Ordering::SeqCst)
    }

    /// The pending cursor of `name`, if any.
    pub(super) fn get(&self, name: &str) -> Option<u64> {
        self.cursors.get(name)
    }

    /// Takes every pending cursor, to write them.
    pub(super) fn take(&self) -> HashMap<String, u64> {
        self.announced.store(false, Ordering::SeqCst);
        self.cursors.take()
    }

    /// Puts back cursors whose transaction failed.
    pub(super) fn restore(&self, failed: HashMap<String, u64>) {
        self.cursors.restore(failed);
    }
}
