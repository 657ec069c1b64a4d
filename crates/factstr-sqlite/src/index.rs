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

use factstr::backend::fnv1a_64;
use factstr::backend::sequence::to_stored;
use rusqlite::{Connection, params};

use crate::sql;

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
