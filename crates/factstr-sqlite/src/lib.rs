//! Placeholder; the SQLite store is being written.
