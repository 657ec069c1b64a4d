//! The memory store's indexes: sequence numbers by event type and by payload
//! term, and how a query turns them into candidate lists.
//!
//! Terms are kept as 64-bit hashes (keyed per store, see [`TermHasher`]),
//! event types as small numbers, so that indexing
//! an event allocates nothing but the growth of its postings. A hash
//! collision only adds candidates: the shared matcher decides every record.

use std::collections::HashMap;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};

use factstr::backend::payload_terms::for_each_term;
use factstr::{EventFilter, EventQuery, EventRecord};
use serde_json::Value;

/// An interned event type: its position in [`Index::by_type`].
type TypeNumber = u32;

/// The hash of payload terms: keyed per store with random keys, so that
/// payloads cannot be crafted to collide, and cheap (a folded multiply per 8
/// bytes), as every appended event hashes each of its terms.
#[derive(Clone, Debug)]
pub(crate) struct TermHasher {
    seed: u64,
    key: u64,
}

const MULTIPLIER: u64 = 0x9e37_79b9_7f4a_7c15;

impl Default for TermHasher {
    fn default() -> Self {
        let random = RandomState::new();
        Self {
            seed: random.hash_one(1_u64),
            // Odd, so that the multiply loses no bits.
            key: random.hash_one(2_u64) | 1,
        }
    }
}

impl TermHasher {
    /// Calls `each` with the hash of every term of `value` (repeats
    /// included); `buffer` is scratch space for the terms.
    fn for_each_hash(&self, value: &Value, buffer: &mut Vec<u8>, mut each: impl FnMut(u64)) {
        for_each_term(value, buffer, |term| each(self.hash(term)));
    }

    fn hash(&self, term: &[u8]) -> u64 {
        let (words, tail) = term.as_chunks::<8>();
        let mut hash = self.seed ^ (term.len() as u64).wrapping_mul(MULTIPLIER);
        for word in words {
            hash = folded_multiply(hash ^ u64::from_le_bytes(*word), self.key);
        }
        let mut last = [0_u8; 8];
        last[..tail.len()].copy_from_slice(tail);
        hash = folded_multiply(hash ^ u64::from_le_bytes(last), self.key);
        folded_multiply(hash, MULTIPLIER ^ self.seed)
    }
}

/// The high and low halves of the full product, xored: every input bit
/// reaches every output bit.
fn folded_multiply(left: u64, right: u64) -> u64 {
    let product = u128::from(left) * u128::from(right);
    (product as u64) ^ ((product >> 64) as u64)
}

/// Term hashes are already keyed hashes: the table uses them as they are.
#[derive(Default)]
struct AlreadyHashed(u64);

impl Hasher for AlreadyHashed {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Only `write_u64` is used by `u64` keys; anything else still hashes.
        for &byte in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(byte)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        }
    }

    fn write_u64(&mut self, hash: u64) {
        self.0 = hash;
    }
}

/// Ascending, distinct sequence numbers; one number is kept inline (most
/// payload terms, such as an amount or an id, belong to one event).
#[derive(Debug)]
enum Postings {
    One([u64; 1]),
    Many(Vec<u64>),
}

impl Postings {
    fn as_slice(&self) -> &[u64] {
        match self {
            Self::One(one) => one,
            Self::Many(many) => many,
        }
    }

    /// Adds `sequence_number`, the greatest so far; an event holding a
    /// term twice is listed once.
    fn push(&mut self, sequence_number: u64) {
        match self {
            Self::One([only]) if *only == sequence_number => {}
            Self::One([only]) => *self = Self::Many(vec![*only, sequence_number]),
            Self::Many(many) => {
                if many.last() != Some(&sequence_number) {
                    many.push(sequence_number);
                }
            }
        }
    }
}

/// The postings of one term, per event type.
#[derive(Debug)]
enum TermPostings {
    OneType(TypeNumber, Postings),
    Types(Vec<(TypeNumber, Postings)>),
}

impl TermPostings {
    fn push(&mut self, event_type: TypeNumber, sequence_number: u64) {
        match self {
            Self::OneType(held, postings) if *held == event_type => postings.push(sequence_number),
            Self::OneType(held, postings) => {
                let first = (*held, std::mem::replace(postings, Postings::One([0])));
                *self = Self::Types(vec![first, (event_type, Postings::One([sequence_number]))]);
            }
            Self::Types(types) => match types.iter_mut().find(|(held, _)| *held == event_type) {
                Some((_, postings)) => postings.push(sequence_number),
                None => types.push((event_type, Postings::One([sequence_number]))),
            },
        }
    }

    fn per_type(&self) -> impl Iterator<Item = (TypeNumber, &[u64])> {
        let (one, many) = match self {
            Self::OneType(held, postings) => (Some((*held, postings.as_slice())), None),
            Self::Types(types) => (None, Some(types.iter())),
        };
        one.into_iter().chain(
            many.into_iter()
                .flatten()
                .map(|(held, postings)| (*held, postings.as_slice())),
        )
    }

    /// The lists of `types` (every type when `None`).
    fn lists<'s, 't>(
        &'s self,
        types: Option<&'t [TypeNumber]>,
    ) -> impl Iterator<Item = &'s [u64]> + use<'s, 't> {
        self.per_type()
            .filter(move |(held, _)| types.is_none_or(|types| types.contains(held)))
            .map(|(_, list)| list)
    }
}

#[derive(Default)]
pub(crate) struct Index {
    term_hasher: TermHasher,
    type_numbers: HashMap<String, TypeNumber>,
    type_names: Vec<String>,
    /// Postings per event type, by type number.
    by_type: Vec<Vec<u64>>,
    by_term: HashMap<u64, TermPostings, BuildHasherDefault<AlreadyHashed>>,
    /// Scratch space for building terms.
    term_buffer: Vec<u8>,
}

/// The events a query may match: every event, or those in the union of these
/// ascending lists. The shared matcher decides among them.
pub(crate) enum Candidates<'a> {
    All,
    Lists(Vec<&'a [u64]>),
}

impl Index {
    /// Indexes the next records of the log, in sequence order.
    pub(crate) fn add<'a>(&mut self, records: impl IntoIterator<Item = &'a EventRecord>) {
        let Self {
            term_hasher,
            by_term,
            term_buffer,
            ..
        } = self;
        let mut previous: Option<TypeNumber> = None;
        for record in records {
            let type_number = match previous {
                Some(number) if self.type_names[number as usize] == record.event_type => number,
                _ => {
                    let number = Self::type_number(
                        &mut self.type_numbers,
                        &mut self.type_names,
                        &mut self.by_type,
                        &record.event_type,
                    );
                    previous = Some(number);
                    number
                }
            };
            let sequence_number = record.sequence_number;
            self.by_type[type_number as usize].push(sequence_number);
            term_hasher.for_each_hash(&record.payload, term_buffer, |hash| {
                by_term
                    .entry(hash)
                    .and_modify(|postings| postings.push(type_number, sequence_number))
                    .or_insert(TermPostings::OneType(
                        type_number,
                        Postings::One([sequence_number]),
                    ));
            });
        }
    }

    fn type_number(
        type_numbers: &mut HashMap<String, TypeNumber>,
        type_names: &mut Vec<String>,
        by_type: &mut Vec<Vec<u64>>,
        event_type: &str,
    ) -> TypeNumber {
        if let Some(&number) = type_numbers.get(event_type) {
            return number;
        }
        let number = by_type.len() as TypeNumber;
        type_numbers.insert(event_type.to_owned(), number);
        type_names.push(event_type.to_owned());
        by_type.push(Vec::new());
        number
    }

    pub(crate) fn candidates(&self, query: &EventQuery) -> Candidates<'_> {
        let Some(filters) = query.filters.as_ref().filter(|filters| !filters.is_empty()) else {
            return Candidates::All;
        };
        let mut lists = Vec::new();
        for filter in filters {
            if !self.filter_lists(filter, &mut lists) {
                return Candidates::All;
            }
        }
        Candidates::Lists(lists)
    }

    /// Adds the lists holding every match of `filter`; `false` when the
    /// index cannot narrow it.
    fn filter_lists<'a>(&'a self, filter: &EventFilter, lists: &mut Vec<&'a [u64]>) -> bool {
        let types: Option<Vec<TypeNumber>> = filter.event_types.as_ref().map(|names| {
            names
                .iter()
                .filter_map(|name| self.type_numbers.get(name.as_str()).copied())
                .collect()
        });
        let types = types.as_deref();
        let type_lists = |lists: &mut Vec<&'a [u64]>| match types {
            None => false,
            Some(types) => {
                lists.extend(
                    types
                        .iter()
                        .map(|&number| self.by_type[number as usize].as_slice()),
                );
                true
            }
        };
        let Some(predicates) = &filter.payload_predicates else {
            return type_lists(lists);
        };
        for predicate in predicates {
            // Every term of a matching predicate is a term of the payload, so
            // the rarest term's postings hold every match (none if a term is
            // held by no event of these types).
            let mut hashes = Vec::with_capacity(8);
            self.term_hasher
                .for_each_hash(predicate, &mut Vec::with_capacity(64), |hash| {
                    hashes.push(hash);
                });
            let rarest = hashes
                .into_iter()
                .map(|hash| {
                    let postings = self.by_term.get(&hash);
                    let count: usize = postings
                        .map_or(0, |postings| postings.lists(types).map(<[u64]>::len).sum());
                    (count, postings)
                })
                .min_by_key(|(count, _)| *count);
            match rarest {
                // A predicate without terms (`{}`, `[]`) narrows nothing.
                None => {
                    if !type_lists(lists) {
                        return false;
                    }
                }
                Some((_, None)) => {}
                Some((_, Some(postings))) => lists.extend(postings.lists(types)),
            }
        }
        true
    }
}

impl Candidates<'_> {
    /// The greatest candidate, if any (`None` for `All`).
    pub(crate) fn last_listed(&self) -> Option<u64> {
        match self {
            Self::All => None,
            Self::Lists(lists) => lists.iter().filter_map(|list| list.last().copied()).max(),
        }
    }
}

/// The union of ascending lists after `after`, ascending and distinct.
pub(crate) fn merged_after<'a>(
    lists: &[&'a [u64]],
    after: u64,
) -> impl Iterator<Item = u64> + use<'a> {
    let mut heads: Vec<&'a [u64]> = lists
        .iter()
        .map(|list| &list[list.partition_point(|&sequence| sequence <= after)..])
        .filter(|list| !list.is_empty())
        .collect();
    std::iter::from_fn(move || {
        let least = heads.iter().map(|list| list[0]).min()?;
        for list in &mut heads {
            if list[0] == least {
                *list = &list[1..];
            }
        }
        heads.retain(|list| !list.is_empty());
        Some(least)
    })
}

/// The newest sequence number in the union of `lists` for which `matches`
/// holds, walking each list from its end and only as far as it can still
/// beat the best found.
pub(crate) fn newest_listed(lists: &[&[u64]], mut matches: impl FnMut(u64) -> bool) -> Option<u64> {
    if let [list] = lists {
        return list
            .iter()
            .rev()
            .copied()
            .find(|&sequence| matches(sequence));
    }
    let mut ordered: Vec<&[u64]> = lists.to_vec();
    ordered.sort_unstable_by_key(|list| std::cmp::Reverse(list.last().copied()));
    let mut best: Option<u64> = None;
    for list in ordered {
        for &sequence in list.iter().rev() {
            if best.is_some_and(|best| sequence <= best) {
                break;
            }
            if matches(sequence) {
                best = Some(sequence);
                break;
            }
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merging_keeps_order_and_drops_repeats() {
        let lists: [&[u64]; 3] = [&[1, 4, 9], &[2, 4, 10], &[]];
        assert_eq!(
            merged_after(&lists, 0).collect::<Vec<_>>(),
            vec![1, 2, 4, 9, 10]
        );
        assert_eq!(merged_after(&lists, 4).collect::<Vec<_>>(), vec![9, 10]);
        assert_eq!(merged_after(&lists, 10).count(), 0);
    }

    #[test]
    fn the_newest_match_is_found_across_lists() {
        let lists: [&[u64]; 2] = [&[1, 4, 9], &[2, 5, 7]];
        assert_eq!(newest_listed(&lists, |sequence| sequence % 2 == 1), Some(9));
        assert_eq!(newest_listed(&lists, |sequence| sequence < 6), Some(5));
        assert_eq!(newest_listed(&lists, |_| false), None);
    }

    #[test]
    fn postings_keep_one_entry_per_event_and_type() {
        let mut term = TermPostings::OneType(0, Postings::One([3]));
        term.push(0, 3);
        term.push(0, 5);
        term.push(1, 6);
        term.push(0, 8);
        let per_type: Vec<(TypeNumber, Vec<u64>)> = term
            .per_type()
            .map(|(number, list)| (number, list.to_vec()))
            .collect();
        assert_eq!(per_type, vec![(0, vec![3, 5, 8]), (1, vec![6])]);
        assert_eq!(term.lists(Some(&[1])).collect::<Vec<_>>(), vec![&[6][..]]);
    }
}
