//! The payload index: an FTS5 inverted index from payload terms to events.
//!
//! Every event with at least one payload term (see
//! `factstr::backend::payload_terms`) has one row in the contentless FTS5
//! table `factstr_payload_index`: its rowid is the event's sequence number
//! and its document lists one token per term. A token is `h` followed by the
//! 16 lowercase hex digits of the term's 64-bit FNV-1a hash, so it is a
//! single FTS5 bareword whatever the term holds, and stable across builds.
//!
//! A predicate matches a payload only if every term of the predicate is a
//! term of the payload, so the events whose documents hold the token of any
//! one of a predicate's terms include every match. Two terms with the same
//! hash only add candidates; the shared matcher decides each one.
//!
//! FTS5 writes the documents a statement inserts as one new segment of
//! sorted postings and merges segments in steps during later writes (an LSM
//! tree), so an append writes a few new pages instead of one posting per
//! term at scattered places of a B-tree.
//!
//! Even so, a segment costs about five pages (leaf, segment index,
//! structure and averages records), against one or two for the event rows
//! of a small append. So the index is written behind the log: the metadata
//! key `payload_indexed_through` holds the sequence number through which
//! it is written, and a commit that leaves [`UNINDEXED_EVENTS_LIMIT`] or
//! more events after it writes all of them (their documents computed again
//! from the stored payloads when an earlier commit left them out), in the
//! same transaction as the events. Every read of the index adds the events
//! after that sequence number as candidates (`plan::Source`), so a query
//! or an `append_if` condition sees them as it sees indexed ones.

use factstr::EventStoreError;
use factstr::backend::fnv1a_64;
use factstr::backend::payload_terms::payload_terms;
use factstr::backend::sequence::{from_stored, to_stored};
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use crate::error::SqliteResultExt;
use crate::sql;

/// How many events may wait after the payload index before a commit
/// writes them into it. Each query reading the index reads that many
/// events at most on top; a single append saves about four pages in its
/// commit (measured: 6.9 WAL frames per single append when indexed at
/// once, 2.3 with this limit).
pub(crate) const UNINDEXED_EVENTS_LIMIT: u64 = 32;

/// The sequence number through which the payload index is written, when
/// events after it are not (`None`: every event is indexed).
pub(crate) fn unindexed_after(connection: &Connection) -> Result<Option<u64>, EventStoreError> {
    let (indexed_through, last) = marks(connection)?;
    Ok((indexed_through < last).then_some(indexed_through))
}

/// The sequence number through which the payload index is written.
pub(crate) fn indexed_through(connection: &Connection) -> Result<u64, EventStoreError> {
    Ok(marks(connection)?.0)
}

/// How far the payload index is written, and the last committed sequence
/// number.
fn marks(connection: &Connection) -> Result<(u64, u64), EventStoreError> {
    let reading = "reading how far the payload index is written";
    let (indexed_through, last) = connection
        .prepare_cached(sql::SELECT_INDEXED_THROUGH)
        .and_then(|mut statement| {
            statement
                .query_row([], |row| {
                    Ok((row.get::<_, Option<i64>>(0)?, row.get::<_, Option<i64>>(1)?))
                })
                .optional()
        })
        .or_failed(reading)?
        .unwrap_or((None, None));
    let last = last.map_or(Ok(0), |last| from_stored(last, "sequence number"))?;
    // Without the mark, nothing counts as indexed: slower, never wrong.
    let indexed_through =
        indexed_through.map_or(Ok(0), |indexed| from_stored(indexed, "payload index mark"))?;
    Ok((indexed_through.min(last), last))
}

/// Records that the payload index is written through `sequence_number`.
pub(crate) fn set_indexed_through(
    connection: &Connection,
    sequence_number: u64,
) -> rusqlite::Result<()> {
    connection
        .prepare_cached(sql::SET_INDEXED_THROUGH)?
        .execute([to_stored(sequence_number)])?;
    Ok(())
}

/// Adds the documents of the stored events in `after < s <= through` to
/// `documents`, computed from their payloads.
pub(crate) fn add_stored_documents(
    connection: &Connection,
    after: u64,
    through: u64,
    documents: &mut IndexDocuments,
) -> Result<(), EventStoreError> {
    let reading = "reading payloads to index";
    let mut statement = connection
        .prepare_cached(sql::SELECT_PAYLOADS)
        .or_failed(reading)?;
    let mut rows = statement
        .query(params![to_stored(after), to_stored(through)])
        .or_failed(reading)?;
    while let Some(row) = rows.next().or_failed(reading)? {
        let sequence_number = from_stored(row.get(0).or_failed(reading)?, "sequence number")?;
        let payload_text = row
            .get_ref(1)
            .and_then(|value| value.as_str().map_err(Into::into))
            .or_failed(reading)?;
        let payload: Value = serde_json::from_str(payload_text).map_err(|error| {
            EventStoreError::backend(format!(
                "event {sequence_number} does not hold JSON ({error}); the file may be corrupt"
            ))
        })?;
        documents.push(sequence_number, &payload_terms(&payload));
    }
    Ok(())
}

const HEX_DIGITS: &[u8; 16] = b"0123456789abcdef";

/// Bytes of one token: `h` and 16 hex digits.
const TOKEN_BYTES: usize = 17;

/// Appends the index token of `term` to `target`.
fn push_token(target: &mut String, term: &str) {
    let hash = fnv1a_64(term.as_bytes());
    target.push('h');
    for shift in (0..16).rev() {
        let digit = (hash >> (shift * 4)) & 0xf;
        target.push(char::from(HEX_DIGITS[digit as usize]));
    }
}

/// Appends the index document of a payload with `terms` to `target` as a
/// JSON string: their tokens separated by spaces, `""` when the payload has
/// no term (such an event gets no index row). Tokens need no JSON escaping.
pub(crate) fn push_document(target: &mut String, terms: &[String]) {
    target.reserve(terms.len() * (TOKEN_BYTES + 1) + 2);
    target.push('"');
    for (position, term) in terms.iter().enumerate() {
        if position > 0 {
            target.push(' ');
        }
        push_token(target, term);
    }
    target.push('"');
}

/// The index token of `term`.
pub(crate) fn token(term: &str) -> String {
    let mut token = String::with_capacity(TOKEN_BYTES);
    push_token(&mut token, term);
    token
}

/// The payload index documents of consecutive events, collected to be
/// written in one statement: FTS5 writes what one statement inserts as one
/// segment.
pub(crate) struct IndexDocuments {
    /// The sequence number of the first document.
    first: u64,
    /// A JSON array of the documents, without its closing bracket.
    documents: String,
    /// How many documents `documents` holds.
    count: u64,
    /// Some document is not empty.
    has_terms: bool,
}

impl IndexDocuments {
    /// No documents.
    pub(crate) fn new() -> Self {
        Self {
            first: 0,
            documents: String::from("["),
            count: 0,
            has_terms: false,
        }
    }

    /// How many documents are collected.
    pub(crate) fn len(&self) -> u64 {
        self.count
    }

    /// The sequence number the next document would belong to; `None` when
    /// nothing is collected.
    pub(crate) fn next_sequence_number(&self) -> Option<u64> {
        (self.count > 0).then_some(self.first + self.count)
    }

    /// Adds the document of event `sequence_number`, which follows the
    /// collected ones, for a payload with `terms`.
    pub(crate) fn push(&mut self, sequence_number: u64, terms: &[String]) {
        self.start_at(sequence_number);
        push_document(&mut self.documents, terms);
        self.count += 1;
        self.has_terms |= !terms.is_empty();
    }

    /// Adds the `count` documents of the events from `first` on, which
    /// follow the collected ones: `documents` as [`push_document`] wrote
    /// them, separated by commas, `has_terms` when one is not empty.
    pub(crate) fn extend(&mut self, first: u64, count: u64, documents: &str, has_terms: bool) {
        self.start_at(first);
        self.documents.push_str(documents);
        self.count += count;
        self.has_terms |= has_terms;
    }

    /// The sequence number of the first collected document.
    pub(crate) fn first_sequence_number(&self) -> Option<u64> {
        (self.count > 0).then_some(self.first)
    }

    /// Adds the documents of `later`, which follow the collected ones.
    pub(crate) fn append(&mut self, later: IndexDocuments) {
        if let Some(first) = later.first_sequence_number() {
            self.extend(first, later.count, &later.documents[1..], later.has_terms);
        }
    }

    fn start_at(&mut self, first: u64) {
        if self.count == 0 {
            self.first = first;
        } else {
            self.documents.push(',');
        }
    }

    /// Writes the collected documents that are not empty, in one
    /// statement, and empties the collection.
    pub(crate) fn write(&mut self, connection: &Connection) -> rusqlite::Result<()> {
        if self.has_terms {
            self.documents.push(']');
            connection
                .prepare_cached(sql::INSERT_INDEX_DOCUMENTS)
                .and_then(|mut statement| {
                    statement.execute(params![to_stored(self.first), self.documents])
                })?;
        }
        self.documents.clear();
        self.documents.push('[');
        self.count = 0;
        self.has_terms = false;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Tokens are stored in the payload index of every database, so they
    /// never change: these are the tokens every release has written.
    #[test]
    fn tokens_stay_the_same_across_builds() {
        assert_eq!(token(""), "hcbf29ce484222325");
        assert_eq!(token("=null"), "he2293896f72817e5");
        assert_eq!(token(r#""id"=7"#), "h3ec3bafbb117c5c2");
        assert_eq!(token(r#""account"="a1""#), "hfe76c46ed95061ff");
    }

    #[test]
    fn tokens_are_one_lowercase_bareword_of_fixed_length() {
        for term in [
            r#""account"="a1""#,
            "=null",
            "",
            "[][]=1",
            "#0123456789abcdef",
        ] {
            let token = token(term);
            assert_eq!(token.len(), TOKEN_BYTES, "{token}");
            assert!(token.starts_with('h'));
            assert!(
                token[1..]
                    .bytes()
                    .all(|byte| byte.is_ascii_hexdigit() && !byte.is_ascii_uppercase())
            );
            assert_eq!(token[1..], format!("{:016x}", fnv1a_64(term.as_bytes())));
        }
        assert_ne!(token("=1"), token("=1.0"));
    }

    #[test]
    fn documents_list_the_tokens_as_json_strings() {
        let terms = vec!["=1".to_owned(), "=2".to_owned()];
        let mut documents = String::new();
        push_document(&mut documents, &terms);
        push_document(&mut documents, &[]);
        assert_eq!(
            documents,
            format!("\"{} {}\"\"\"", token("=1"), token("=2"))
        );
    }
}
