//! `factstr stats`: figures about the log and its durable streams.

use std::io::Write;

use serde_json::{Map, Value, json};

use super::{flushed, stdout, written};
use crate::failure::{Failure, StoreResultExt};
use crate::output::time_text;
use crate::store::{self, Opening};

pub(crate) fn run(url: &str, as_json: bool) -> Result<(), Failure> {
    let store = store::open(url, Opening::Existing)?;
    let stats = store.log_stats().or_fail("reading the log's figures")?;
    let streams = store
        .durable_streams()
        .or_fail("reading the durable streams")?;
    let mut out = stdout();
    if as_json {
        let per_type: Map<String, Value> = stats
            .facts_per_type
            .iter()
            .map(|(event_type, facts)| (event_type.clone(), json!(facts)))
            .collect();
        let streams: Vec<Value> = streams
            .iter()
            .map(|stream| {
                json!({
                    "name": stream.name,
                    "cursor": stream.cursor,
                    "behind": stats.head.saturating_sub(stream.cursor),
                    "active": stream.active,
                    "query": stream.query,
                })
            })
            .collect();
        let document = json!({
            "facts": stats.facts,
            "batches": stats.batches,
            "head": stats.head,
            "first_commit": stats.first_commit.as_ref().map(time_text),
            "last_commit": stats.last_commit.as_ref().map(time_text),
            "facts_per_type": per_type,
            "durable_streams": streams,
        });
        written(serde_json::to_writer_pretty(&mut out, &document).map_err(Into::into))?;
        written(writeln!(out))?;
        return flushed(&mut out);
    }
    let time =
        |time: Option<&chrono::DateTime<chrono::Utc>>| time.map_or("-".to_owned(), time_text);
    written(writeln!(out, "facts         {}", stats.facts))?;
    written(writeln!(out, "batches       {}", stats.batches))?;
    written(writeln!(out, "head          {}", stats.head))?;
    written(writeln!(
        out,
        "first commit  {}",
        time(stats.first_commit.as_ref())
    ))?;
    written(writeln!(
        out,
        "last commit   {}",
        time(stats.last_commit.as_ref())
    ))?;
    written(writeln!(out, "\nfacts per event type"))?;
    for (event_type, facts) in &stats.facts_per_type {
        written(writeln!(out, "  {facts:>12}  {event_type}"))?;
    }
    written(writeln!(out, "\ndurable streams"))?;
    if streams.is_empty() {
        written(writeln!(out, "  (none)"))?;
    }
    for stream in &streams {
        written(writeln!(
            out,
            "  {}  cursor {}  behind {}{}",
            stream.name,
            stream.cursor,
            stats.head.saturating_sub(stream.cursor),
            if stream.active == Some(true) {
                "  (active)"
            } else {
                ""
            }
        ))?;
    }
    flushed(&mut out)
}
