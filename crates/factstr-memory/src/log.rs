//! The in-memory log: records stored once, batch boundaries, and the indexes
//! that keep `query` and `append_if` proportional to the matching events.

use chrono::{DateTime, Utc};
use factstr::backend::sequence::next_range;
use factstr::backend::{BatchReadRequest, CommittedBatchPage, commit_timestamp, committed_records};
use factstr::{AppendResult, EventQuery, EventRecord, EventStoreError, NewEvent, QueryResult};

use crate::index::{Candidates, Index, merged_after, newest_listed};

#[derive(Default)]
pub(crate) struct LogState {
    /// `records[i]` has sequence number `i + 1`.
    records: Vec<EventRecord>,
    /// First sequence number of each committed batch, ascending.
    batch_starts: Vec<u64>,
    index: Index,
    last_commit_time: Option<DateTime<Utc>>,
}

impl LogState {
    pub(crate) fn last_sequence_number(&self) -> u64 {
        self.records.len() as u64
    }

    /// Commits `events` and returns their range.
    pub(crate) fn commit(
        &mut self,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, EventStoreError> {
        let (first, _) = next_range(self.last_sequence_number(), events.len())?;
        let occurred_at = commit_timestamp(self.last_commit_time);
        self.last_commit_time = Some(occurred_at);
        self.batch_starts.push(first);
        let (result, records) = committed_records(events, first, occurred_at);
        let start = self.records.len();
        self.records.extend(records);
        self.index.add(&self.records[start..]);
        Ok(result)
    }

    /// The records of a committed range (to hand to streams).
    pub(crate) fn committed(&self, result: &AppendResult) -> Vec<EventRecord> {
        (result.first_sequence_number..=result.last_sequence_number)
            .map(|sequence| self.record(sequence).clone())
            .collect()
    }

    /// The records matching `query` after its cursor, at most `limit` of
    /// them, and the context version.
    pub(crate) fn query(&self, query: &EventQuery, limit: usize) -> QueryResult {
        let after = query.min_sequence_number.unwrap_or(0);
        let candidates = self.index.candidates(query);
        let event_records: Vec<EventRecord> = match &candidates {
            Candidates::All => {
                let start = usize::try_from(after)
                    .unwrap_or(usize::MAX)
                    .min(self.records.len());
                self.records[start..]
                    .iter()
                    .filter(|record| query.matches_record(record))
                    .take(limit)
                    .cloned()
                    .collect()
            }
            Candidates::Lists(lists) => merged_after(lists, after)
                .map(|sequence| self.record(sequence))
                .filter(|record| query.matches_record(record))
                .take(limit)
                .cloned()
                .collect(),
        };
        let last_returned_sequence_number =
            event_records.last().map(|record| record.sequence_number);
        let newest_candidate = match &candidates {
            Candidates::All => Some(self.last_sequence_number()),
            Candidates::Lists(_) => candidates.last_listed(),
        };
        let current_context_version = match last_returned_sequence_number {
            // Nothing newer can match if the newest returned record is also the
            // newest candidate.
            Some(last) if newest_candidate == Some(last) => Some(last),
            _ => self.newest_match(query, &candidates),
        };
        QueryResult {
            event_records,
            last_returned_sequence_number,
            current_context_version,
        }
    }

    pub(crate) fn context_version(&self, query: &EventQuery) -> Option<u64> {
        self.newest_match(query, &self.index.candidates(query))
    }

    pub(crate) fn read_committed_batches(
        &self,
        request: &BatchReadRequest<'_>,
    ) -> CommittedBatchPage {
        let through = request.through.min(self.last_sequence_number());
        let mut page = CommittedBatchPage {
            batches: Vec::new(),
            scanned_through: request.after,
        };
        let mut batch_index = self
            .batch_starts
            .partition_point(|&start| start <= request.after)
            .saturating_sub(1);
        let mut read_events = 0;
        while batch_index < self.batch_starts.len() && page.scanned_through < through {
            let start = self.batch_starts[batch_index];
            let end = self
                .batch_starts
                .get(batch_index + 1)
                .map_or(self.last_sequence_number(), |next| next - 1)
                .min(through);
            let from = start.max(request.after + 1);
            let batch: Vec<EventRecord> = (from..=end)
                .map(|sequence| self.record(sequence))
                .filter(|record| {
                    request
                        .query
                        .is_none_or(|query| query.matches_record(record))
                })
                .cloned()
                .collect();
            read_events += (end + 1 - from) as usize;
            if !batch.is_empty() {
                page.batches.push(batch);
            }
            page.scanned_through = end;
            batch_index += 1;
            if read_events >= request.max_events {
                break;
            }
        }
        page
    }

    fn record(&self, sequence_number: u64) -> &EventRecord {
        &self.records[(sequence_number - 1) as usize]
    }

    fn newest_match(&self, query: &EventQuery, candidates: &Candidates<'_>) -> Option<u64> {
        match candidates {
            Candidates::All => self
                .records
                .iter()
                .rev()
                .find(|record| query.matches_record(record))
                .map(|record| record.sequence_number),
            Candidates::Lists(lists) => newest_listed(lists, |sequence| {
                query.matches_record(self.record(sequence))
            }),
        }
    }
}
