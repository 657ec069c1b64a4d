//! `factstr query`: the facts matching a filter, as a table or JSON Lines.

use std::io::IsTerminal;

use factstr::QueryPages;

use super::{flushed, stdout, written};
use crate::cli::QueryArgs;
use crate::failure::{Failure, StoreResultExt};
use crate::filter::event_query;
use crate::output::{write_json_line, write_table_header, write_table_row};
use crate::store::{self, Opening};

/// Records read per page: memory stays bounded on any log.
const PAGE: usize = 1_000;

pub(crate) fn run(arguments: &QueryArgs) -> Result<(), Failure> {
    let mut query = event_query(&arguments.filter)?;
    query.min_sequence_number = arguments.after;
    if arguments.limit == Some(0) {
        return Err(Failure::usage("--limit 0 prints nothing; give at least 1"));
    }
    let store = store::open(&arguments.store, Opening::Existing)?;
    let as_json = arguments.json || !std::io::stdout().is_terminal();
    let mut out = stdout();
    if !as_json {
        written(write_table_header(&mut out))?;
    }
    let mut left = arguments.limit.unwrap_or(usize::MAX);
    let page_size = PAGE.min(left);
    for page in QueryPages::new(&*store, &query, page_size) {
        let page = page.or_fail("query failed")?;
        for record in page.event_records.iter().take(left) {
            written(if as_json {
                write_json_line(&mut out, record)
            } else {
                write_table_row(&mut out, record)
            })?;
        }
        left = left.saturating_sub(page.event_records.len());
        if left == 0 {
            break;
        }
    }
    flushed(&mut out)
}
