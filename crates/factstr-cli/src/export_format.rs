//! The export format, JSON Lines:
//!
//! ```text
//! {"format":"factstr-export","version":1}
//! {"sequence_number":1,"occurred_at":"…","event_type":"…","payload":…,"batch_end":false}
//! {"sequence_number":2,"occurred_at":"…","event_type":"…","payload":…,"batch_end":true}
//! {"durable_stream":"name","query":{…},"cursor":2}
//! {"end":{"facts":2,"batches":1,"durable_streams":1}}
//! ```
//!
//! Facts in sequence order; `batch_end` marks the last fact of each
//! committed batch (every fact of a batch has its commit time); then each
//! durable stream with its stored query and cursor; the last line counts
//! what came before it, so a cut-off file is recognised.

use std::io::{self, BufRead, Write};

use chrono::{DateTime, Utc};
use factstr::backend::DurableStreamInfo;
use factstr::{EventQuery, EventRecord};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::failure::Failure;
use crate::output::time_text;

pub(crate) const FORMAT: &str = "factstr-export";
pub(crate) const VERSION: u32 = 1;

/// The first line.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    format: String,
    version: u32,
}

/// One fact.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FactLine {
    sequence_number: u64,
    occurred_at: String,
    event_type: String,
    payload: Value,
    batch_end: bool,
}

/// One durable stream.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct StreamLine {
    durable_stream: String,
    query: EventQuery,
    cursor: u64,
}

/// What the export holds, on its last line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Totals {
    pub(crate) facts: u64,
    pub(crate) batches: u64,
    pub(crate) durable_streams: u64,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndLine {
    end: Totals,
}

/// A line after the header.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum Line {
    Fact(FactLine),
    Stream(StreamLine),
    End(EndLine),
}

/// A durable stream as exported.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct ExportedStream {
    pub(crate) name: String,
    pub(crate) query: EventQuery,
    pub(crate) cursor: u64,
}

/// Writes an export, counting what it wrote.
pub(crate) struct ExportWriter<W: Write> {
    out: W,
    totals: Totals,
}

impl<W: Write> ExportWriter<W> {
    /// Starts an export on `out` with its header line.
    pub(crate) fn start(mut out: W) -> io::Result<Self> {
        let header = Header {
            format: FORMAT.to_owned(),
            version: VERSION,
        };
        serde_json::to_writer(&mut out, &header)?;
        out.write_all(b"\n")?;
        Ok(Self {
            out,
            totals: Totals::default(),
        })
    }

    /// Writes the facts of one committed batch.
    pub(crate) fn batch(&mut self, batch: &[EventRecord]) -> io::Result<()> {
        for (index, record) in batch.iter().enumerate() {
            let line = FactLine {
                sequence_number: record.sequence_number,
                occurred_at: time_text(&record.occurred_at),
                event_type: record.event_type.clone(),
                payload: record.payload.clone(),
                batch_end: index + 1 == batch.len(),
            };
            serde_json::to_writer(&mut self.out, &line)?;
            self.out.write_all(b"\n")?;
        }
        self.totals.facts += batch.len() as u64;
        self.totals.batches += 1;
        Ok(())
    }

    /// Writes one durable stream.
    pub(crate) fn durable_stream(&mut self, stream: &DurableStreamInfo) -> io::Result<()> {
        let line = StreamLine {
            durable_stream: stream.name.clone(),
            query: stream.query.clone(),
            cursor: stream.cursor,
        };
        serde_json::to_writer(&mut self.out, &line)?;
        self.out.write_all(b"\n")?;
        self.totals.durable_streams += 1;
        Ok(())
    }

    /// Writes the end line and flushes; returns what was written.
    pub(crate) fn finish(mut self) -> io::Result<Totals> {
        serde_json::to_writer(&mut self.out, &EndLine { end: self.totals })?;
        self.out.write_all(b"\n")?;
        self.out.flush()?;
        Ok(self.totals)
    }
}

/// What reading an export yields, in order.
#[derive(Debug)]
pub(crate) enum Item {
    /// One whole committed batch.
    Batch(Vec<EventRecord>),
    Stream(ExportedStream),
    End(Totals),
}

/// Reads an export line by line, checking its header and grouping facts
/// into their batches. `source` names the input in errors.
pub(crate) struct ExportReader<R: BufRead> {
    input: R,
    source: String,
    line_number: usize,
    text: String,
    pending: Vec<EventRecord>,
    ended: bool,
}

impl<R: BufRead> ExportReader<R> {
    /// Reads the header of the export in `input`.
    pub(crate) fn open(input: R, source: &str) -> Result<Self, Failure> {
        let mut reader = Self {
            input,
            source: source.to_owned(),
            line_number: 0,
            text: String::new(),
            pending: Vec::new(),
            ended: false,
        };
        if !reader.next_line()? {
            return Err(Failure::new(format!(
                "{source} is empty, not a factstr export"
            )));
        }
        let header: Header = serde_json::from_str(&reader.text).map_err(|error| {
            if error.is_syntax() || error.is_eof() {
                Failure::json_line(source, 1, &error)
            } else {
                Failure::new(format!(
                    "{source} does not start with the line of a factstr export \
                     ({{\"format\":\"{FORMAT}\",\"version\":{VERSION}}})"
                ))
            }
        })?;
        if header.format != FORMAT || header.version != VERSION {
            return Err(Failure::new(format!(
                "{source} is a {} export of version {}; this command reads {FORMAT} version \
                 {VERSION}",
                header.format, header.version
            )));
        }
        Ok(reader)
    }

    /// The next whole batch, stream or end; `None` after the end line.
    pub(crate) fn next_item(&mut self) -> Result<Option<Item>, Failure> {
        loop {
            if self.ended {
                return Ok(None);
            }
            if !self.next_line()? {
                return Err(Failure::new(format!(
                    "{} ends at line {} without the end line of an export: it was cut off",
                    self.source, self.line_number
                )));
            }
            let line: Line = serde_json::from_str(&self.text).map_err(|error| {
                if error.is_syntax() || error.is_eof() {
                    Failure::json_line(&self.source, self.line_number, &error)
                } else {
                    self.invalid("is not a fact, durable stream or end line of a factstr export")
                }
            })?;
            match line {
                Line::Fact(fact) => {
                    let occurred_at = DateTime::parse_from_rfc3339(&fact.occurred_at)
                        .map_err(|error| {
                            self.invalid(&format!(
                                "has occurred_at {:?}, not an RFC 3339 time ({error})",
                                fact.occurred_at
                            ))
                        })?
                        .with_timezone(&Utc);
                    if !self.pending.is_empty() && self.pending[0].occurred_at != occurred_at {
                        return Err(self.invalid(
                            "has another commit time than the facts of its batch before it",
                        ));
                    }
                    self.pending.push(EventRecord {
                        sequence_number: fact.sequence_number,
                        occurred_at,
                        event_type: fact.event_type,
                        payload: fact.payload,
                    });
                    if fact.batch_end {
                        return Ok(Some(Item::Batch(std::mem::take(&mut self.pending))));
                    }
                }
                Line::Stream(stream) => {
                    self.no_open_batch()?;
                    return Ok(Some(Item::Stream(ExportedStream {
                        name: stream.durable_stream,
                        query: stream.query,
                        cursor: stream.cursor,
                    })));
                }
                Line::End(end) => {
                    self.no_open_batch()?;
                    self.ended = true;
                    return Ok(Some(Item::End(end.end)));
                }
            }
        }
    }

    /// Refuses a stream or end line while a batch is not finished.
    fn no_open_batch(&self) -> Result<(), Failure> {
        if self.pending.is_empty() {
            Ok(())
        } else {
            Err(self.invalid("comes before the last fact of a batch was marked with batch_end"))
        }
    }

    /// The line after the current one in `self.text`; false at the end.
    fn next_line(&mut self) -> Result<bool, Failure> {
        self.text.clear();
        let read = self
            .input
            .read_line(&mut self.text)
            .map_err(|error| Failure::io(&format!("reading {}", self.source), &error))?;
        if read == 0 {
            return Ok(false);
        }
        // So that serde_json's positions are on this line.
        let content = self.text.trim_end_matches(['\n', '\r']).len();
        self.text.truncate(content);
        self.line_number += 1;
        Ok(true)
    }

    /// Line `self.line_number` is wrong in the way `what` says.
    fn invalid(&self, what: &str) -> Failure {
        Failure::new(format!(
            "line {} of {} {what}",
            self.line_number, self.source
        ))
    }

    /// The line number of the current line.
    pub(crate) fn line_number(&self) -> usize {
        self.line_number
    }
}
