//! Reading a log page by page in bounded memory.

use crate::{EventQuery, EventStore, EventStoreError, QueryResult};

/// Whether `page`, read with at most `limit` records, is the last one: no
/// matching record lies after it.
pub(crate) fn is_last_page(page: &QueryResult, limit: usize) -> bool {
    page.event_records.len() < limit
        || page.last_returned_sequence_number.is_none()
        || page.last_returned_sequence_number >= page.current_context_version
}

/// The page [`EventStore::query_page`] returns when a store only has
/// `query`: the first `limit` records of `result`.
pub(crate) fn truncated(mut result: QueryResult, limit: usize) -> QueryResult {
    result.event_records.truncate(limit);
    result.last_returned_sequence_number = result
        .event_records
        .last()
        .map(|record| record.sequence_number);
    result
}

/// Refuses a page that could hold nothing.
pub(crate) fn check_limit(limit: usize) -> Result<(), EventStoreError> {
    if limit == 0 {
        return Err(EventStoreError::invalid_input(
            "a page limit of 0 reads nothing; ask for at least 1 record",
        ));
    }
    Ok(())
}

/// The pages of a query, read one [`EventStore::query_page`] at a time: see
/// [`EventStore::query_pages`].
///
/// Each item is one page (a [`QueryResult`] with at most `page_size`
/// records and the context version of the query at the time of that page);
/// the next page starts after the last record of the previous one. The
/// iterator ends after the last matching record, or after an error.
#[derive(Debug)]
pub struct QueryPages<'a, S: EventStore + ?Sized> {
    store: &'a S,
    query: EventQuery,
    page_size: usize,
    finished: bool,
}

impl<'a, S: EventStore + ?Sized> QueryPages<'a, S> {
    /// The pages of `query` (starting after its `min_sequence_number`) in
    /// `store`, `page_size` records each at most. Works on `&dyn EventStore`
    /// too.
    pub fn new(store: &'a S, query: &EventQuery, page_size: usize) -> Self {
        Self {
            store,
            query: query.clone(),
            page_size,
            finished: false,
        }
    }
}

impl<S: EventStore + ?Sized> Iterator for QueryPages<'_, S> {
    type Item = Result<QueryResult, EventStoreError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.finished {
            return None;
        }
        let page = match self.store.query_page(&self.query, self.page_size) {
            Ok(page) => page,
            Err(error) => {
                self.finished = true;
                return Some(Err(error));
            }
        };
        self.finished = is_last_page(&page, self.page_size);
        match page.last_returned_sequence_number {
            Some(last) => {
                self.query.min_sequence_number = Some(last);
                Some(Ok(page))
            }
            None => None,
        }
    }
}
