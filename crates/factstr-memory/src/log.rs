//! The in-memory log: records stored once, batch boundaries, and the indexes
//! that keep `query` and `append_if` proportional to the matching events.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use factstr::backend::payload_terms::payload_terms;
use factstr::backend::sequence::next_range;
use factstr::backend::{BatchReadRequest, CommittedBatchPage, commit_timestamp, committed_batch};
use factstr::{
    AppendResult, EventFilter, EventQuery, EventRecord, EventStoreError, NewEvent, QueryResult,
};

/// A batch about to be committed, with its index terms computed outside the
/// write lock.
pub(crate) struct PreparedBatch {
    events: Vec<NewEvent>,
    terms: Vec<Vec<String>>,
}

impl PreparedBatch {
    pub(crate) fn new(events: Vec<NewEvent>) -> Self {
        let terms = events
            .iter()
            .map(|event| payload_terms(&event.payload))
            .collect();
        Self { events, terms }
    }
}

#[derive(Default)]
pub(crate) struct LogState {
    /// `records[i]` has sequence number `i + 1`.
    records: Vec<EventRecord>,
    /// First sequence number of each committed batch, ascending.
    batch_starts: Vec<u64>,
    /// Sequence numbers per event type, ascending.
    by_type: HashMap<String, Vec<u64>>,
    /// Sequence numbers per payload term and event type, ascending.
    by_term: HashMap<String, TermPostings>,
    last_commit_time: Option<DateTime<Utc>>,
}

#[derive(Default)]
struct TermPostings {
    total: usize,
    by_type: HashMap<String, Vec<u64>>,
}

/// Which records may match: all of them, or these sequence numbers
/// (ascending, distinct). The shared matcher decides among them.
enum Candidates {
    All,
    Listed(Vec<u64>),
}

impl LogState {
    pub(crate) fn last_sequence_number(&self) -> u64 {
        self.records.len() as u64
    }

    /// Commits `batch` and returns its range.
    pub(crate) fn commit(&mut self, batch: PreparedBatch) -> Result<AppendResult, EventStoreError> {
        let (first, _) = next_range(self.last_sequence_number(), batch.events.len())?;
        let occurred_at = commit_timestamp(self.last_commit_time);
        self.last_commit_time = Some(occurred_at);
        self.batch_starts.push(first);
        let (result, records) = committed_batch(batch.events, first, occurred_at);
        for (record, terms) in records.into_iter().zip(batch.terms) {
            push_posting(
                &mut self.by_type,
                &record.event_type,
                record.sequence_number,
            );
            for term in terms {
                let postings = self.by_term.entry(term).or_default();
                postings.total += 1;
                push_posting(
                    &mut postings.by_type,
                    &record.event_type,
                    record.sequence_number,
                );
            }
            self.records.push(record);
        }
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
        let candidates = self.candidates(query);
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
            Candidates::Listed(sequence_numbers) => {
                let start = sequence_numbers.partition_point(|&sequence| sequence <= after);
                sequence_numbers[start..]
                    .iter()
                    .map(|&sequence| self.record(sequence))
                    .filter(|record| query.matches_record(record))
                    .take(limit)
                    .cloned()
                    .collect()
            }
        };
        let last_returned_sequence_number =
            event_records.last().map(|record| record.sequence_number);
        let current_context_version = match last_returned_sequence_number {
            // Nothing newer can match if the newest returned record is also the
            // newest candidate.
            Some(last) if self.is_last_candidate(&candidates, last) => Some(last),
            _ => self.newest_match(query, &candidates),
        };
        QueryResult {
            event_records,
            last_returned_sequence_number,
            current_context_version,
        }
    }

    pub(crate) fn context_version(&self, query: &EventQuery) -> Option<u64> {
        let candidates = self.candidates(query);
        self.newest_match(query, &candidates)
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

    fn is_last_candidate(&self, candidates: &Candidates, sequence_number: u64) -> bool {
        match candidates {
            Candidates::All => sequence_number == self.last_sequence_number(),
            Candidates::Listed(listed) => listed.last() == Some(&sequence_number),
        }
    }

    fn newest_match(&self, query: &EventQuery, candidates: &Candidates) -> Option<u64> {
        match candidates {
            Candidates::All => self
                .records
                .iter()
                .rev()
                .find(|record| query.matches_record(record))
                .map(|record| record.sequence_number),
            Candidates::Listed(listed) => listed
                .iter()
                .rev()
                .copied()
                .find(|&sequence| query.matches_record(self.record(sequence))),
        }
    }

    fn candidates(&self, query: &EventQuery) -> Candidates {
        let Some(filters) = query.filters.as_ref().filter(|filters| !filters.is_empty()) else {
            return Candidates::All;
        };
        let mut listed = Vec::new();
        for filter in filters {
            match self.filter_candidates(filter) {
                Candidates::All => return Candidates::All,
                Candidates::Listed(sequence_numbers) => listed.extend(sequence_numbers),
            }
        }
        Candidates::Listed(sorted_distinct(listed))
    }

    fn filter_candidates(&self, filter: &EventFilter) -> Candidates {
        let types = filter.event_types.as_deref();
        let Some(predicates) = &filter.payload_predicates else {
            return self.type_candidates(types);
        };
        let mut listed = Vec::new();
        for predicate in predicates {
            let terms = payload_terms(predicate);
            if terms.is_empty() {
                match self.type_candidates(types) {
                    Candidates::All => return Candidates::All,
                    Candidates::Listed(sequence_numbers) => listed.extend(sequence_numbers),
                }
                continue;
            }
            // Every term of a matching predicate is a term of the payload, so
            // the rarest term's postings hold every match (none if a term is
            // held by no event).
            let rarest = terms
                .iter()
                .map(|term| self.by_term.get(term))
                .min_by_key(|postings| postings.map_or(0, |postings| postings.count(types)));
            if let Some(Some(postings)) = rarest {
                listed.extend(postings.sequence_numbers(types));
            }
        }
        Candidates::Listed(sorted_distinct(listed))
    }

    fn type_candidates(&self, types: Option<&[String]>) -> Candidates {
        match types {
            None => Candidates::All,
            Some(types) => Candidates::Listed(sorted_distinct(
                types
                    .iter()
                    .filter_map(|event_type| self.by_type.get(event_type))
                    .flatten()
                    .copied()
                    .collect(),
            )),
        }
    }
}

impl TermPostings {
    fn count(&self, types: Option<&[String]>) -> usize {
        match types {
            None => self.total,
            Some(types) => types
                .iter()
                .filter_map(|event_type| self.by_type.get(event_type))
                .map(Vec::len)
                .sum(),
        }
    }

    fn sequence_numbers(&self, types: Option<&[String]>) -> Vec<u64> {
        match types {
            None => self.by_type.values().flatten().copied().collect(),
            Some(types) => types
                .iter()
                .filter_map(|event_type| self.by_type.get(event_type))
                .flatten()
                .copied()
                .collect(),
        }
    }
}

/// Appends `sequence_number` to the postings of `event_type`, allocating the
/// key only the first time the type is seen.
fn push_posting(postings: &mut HashMap<String, Vec<u64>>, event_type: &str, sequence_number: u64) {
    match postings.get_mut(event_type) {
        Some(list) => list.push(sequence_number),
        None => {
            postings.insert(event_type.to_owned(), vec![sequence_number]);
        }
    }
}

fn sorted_distinct(mut sequence_numbers: Vec<u64>) -> Vec<u64> {
    sequence_numbers.sort_unstable();
    sequence_numbers.dedup();
    sequence_numbers
}
