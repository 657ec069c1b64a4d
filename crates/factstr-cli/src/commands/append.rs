//! `factstr append`: one fact from the options, or JSON Lines of
//! `{"event_type", "payload"}` from standard input, appended as one batch.

use std::io::{BufRead, Write};

use factstr::NewEvent;
use serde::Deserialize;
use serde_json::Value;

use super::{counted, flushed, stdout, written};
use crate::cli::AppendArgs;
use crate::failure::{Failure, StoreResultExt};
use crate::filter::parse_json;
use crate::store::{self, Opening};

/// One line of standard input.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FactToAppend {
    event_type: String,
    #[serde(default = "empty_object")]
    payload: Value,
}

fn empty_object() -> Value {
    Value::Object(serde_json::Map::new())
}

pub(crate) fn run(arguments: &AppendArgs) -> Result<(), Failure> {
    let events = match &arguments.event_type {
        Some(event_type) => {
            let payload = match &arguments.payload {
                Some(text) => parse_json("--payload", text)?,
                None => empty_object(),
            };
            vec![NewEvent::new(event_type.clone(), payload)]
        }
        None => read_facts(std::io::stdin().lock())?,
    };
    if events.is_empty() {
        return Err(Failure::usage(
            "nothing to append: give --type, or JSON Lines of {\"event_type\", \"payload\"} \
             on standard input",
        ));
    }
    let store = store::open(&arguments.store, Opening::CreateIfMissing)?;
    let result = store.append(events).or_fail("the append was refused")?;
    let mut out = stdout();
    written(writeln!(
        out,
        "committed {}..={} ({})",
        result.first_sequence_number,
        result.last_sequence_number,
        counted(result.committed_count, "fact")
    ))?;
    flushed(&mut out)
}

/// The facts of the JSON Lines in `input` (blank lines skipped).
fn read_facts(input: impl BufRead) -> Result<Vec<NewEvent>, Failure> {
    let mut events = Vec::new();
    for (index, line) in input.lines().enumerate() {
        let line = line.map_err(|error| Failure::io("reading standard input", &error))?;
        if line.trim().is_empty() {
            continue;
        }
        let fact: FactToAppend = serde_json::from_str(&line)
            .map_err(|error| Failure::json_line("standard input", index + 1, &error))?;
        events.push(NewEvent::new(fact.event_type, fact.payload));
    }
    Ok(events)
}
