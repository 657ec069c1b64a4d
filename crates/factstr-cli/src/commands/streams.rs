//! `factstr streams`: list durable streams, move a cursor, delete one.

use std::io::Write;

use super::{flushed, stdout, written};
use crate::failure::{Failure, StoreResultExt};
use crate::store::{self, Opening};

pub(crate) fn list(url: &str) -> Result<(), Failure> {
    let store = store::open(url, Opening::Existing)?;
    let streams = store
        .durable_streams()
        .or_fail("reading the durable streams")?;
    let head = store::head(&*store)?;
    let mut out = stdout();
    written(writeln!(
        out,
        "{:<24}  {:>10}  {:>10}  {:<6}  query",
        "name", "cursor", "behind", "active"
    ))?;
    for stream in &streams {
        let query = serde_json::to_string(&stream.query).unwrap_or_default();
        let active = match stream.active {
            Some(true) => "yes",
            Some(false) => "no",
            None => "?",
        };
        written(writeln!(
            out,
            "{:<24}  {:>10}  {:>10}  {:<6}  {query}",
            stream.name,
            stream.cursor,
            head.saturating_sub(stream.cursor),
            active
        ))?;
    }
    flushed(&mut out)
}

pub(crate) fn reset(url: &str, name: &str, to: u64) -> Result<(), Failure> {
    let store = store::open(url, Opening::Existing)?;
    let streams = store
        .durable_streams()
        .or_fail("reading the durable streams")?;
    let Some(stream) = streams.iter().find(|stream| stream.name == name) else {
        return Err(Failure::new(format!(
            "the store has no durable stream `{name}`"
        )));
    };
    store
        .set_durable_stream(name, &stream.query, to)
        .or_fail(&format!("cannot move durable stream `{name}`"))?;
    let mut out = stdout();
    written(writeln!(
        out,
        "durable stream `{name}`: cursor {} -> {to}",
        stream.cursor
    ))?;
    flushed(&mut out)
}

pub(crate) fn delete(url: &str, name: &str) -> Result<(), Failure> {
    let store = store::open(url, Opening::Existing)?;
    let existed = store
        .delete_durable_stream(name)
        .or_fail(&format!("cannot delete durable stream `{name}`"))?;
    if !existed {
        return Err(Failure::new(format!(
            "the store has no durable stream `{name}`"
        )));
    }
    let mut out = stdout();
    written(writeln!(out, "durable stream `{name}` deleted"))?;
    flushed(&mut out)
}
