//! Facts as JSON Lines and as a table, and commit times as text.

use std::io::{self, Write};

use chrono::{DateTime, SecondsFormat, Utc};
use factstr::EventRecord;
use serde::Serialize;
use serde_json::Value;

/// A commit time in RFC 3339 with every fractional digit it has, so it
/// reads back to the same instant.
pub(crate) fn time_text(time: &DateTime<Utc>) -> String {
    time.to_rfc3339_opts(SecondsFormat::AutoSi, true)
}

/// A fact as `query` and `tail` print it, fields in this order.
#[derive(Serialize)]
struct FactLine<'a> {
    sequence_number: u64,
    occurred_at: String,
    event_type: &'a str,
    payload: &'a Value,
}

/// Writes `record` as one JSON line.
pub(crate) fn write_json_line(out: &mut impl Write, record: &EventRecord) -> io::Result<()> {
    let line = FactLine {
        sequence_number: record.sequence_number,
        occurred_at: time_text(&record.occurred_at),
        event_type: &record.event_type,
        payload: &record.payload,
    };
    serde_json::to_writer(&mut *out, &line)?;
    out.write_all(b"\n")
}

/// The table's header line.
pub(crate) fn write_table_header(out: &mut impl Write) -> io::Result<()> {
    writeln!(
        out,
        "{:>10}  {:<27}  {:<24}  payload",
        "sequence", "occurred_at", "event_type"
    )
}

/// Writes `record` as one row of the table.
pub(crate) fn write_table_row(out: &mut impl Write, record: &EventRecord) -> io::Result<()> {
    writeln!(
        out,
        "{:>10}  {:<27}  {:<24}  {}",
        record.sequence_number,
        time_text(&record.occurred_at),
        record.event_type,
        record.payload
    )
}
