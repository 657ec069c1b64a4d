//! Index terms for narrowing payload predicates.
//!
//! A term is one (path, scalar) leaf of a JSON value: the object keys and
//! array levels leading to a scalar, and the scalar itself. Array levels carry
//! no position, because array predicates match elements anywhere.
//!
//! The rule stores rely on: **a predicate matches a payload only if every term
//! of the predicate is also a term of the payload** (the converse does not
//! hold). So a store may index each event's terms and take as candidates the
//! events holding all (or any one) of a predicate's terms, then decide with
//! [`payload_matches`](crate::payload_matches). A predicate without terms
//! (`{}`, `[]`, `{"k": []}`) cannot be narrowed this way.
//!
//! The encoding is stable: persistent stores keep these strings on disk. A
//! path step is a key as a JSON string (`"account"`) or `[]`; the scalar
//! follows `=` as JSON (`1`, `1.0`, `"a"`, `null`), with `-0.0` written as
//! `0.0` because they compare equal. Terms longer than [`MAX_TERM_BYTES`]
//! are replaced by `#` and a 64-bit FNV-1a hash of the full term.

use std::fmt::Write as _;

use serde_json::Value;

/// Longest term kept verbatim.
pub const MAX_TERM_BYTES: usize = 128;

/// The distinct terms of `value` (a payload or a predicate), sorted.
///
/// ```
/// use factstr::backend::payload_terms::payload_terms;
/// use serde_json::json;
///
/// let terms = payload_terms(&json!({"account": "a1", "tags": ["x", 1.0]}));
/// assert_eq!(terms, vec![r#""account"="a1""#, r#""tags"[]="x""#, r#""tags"[]=1.0"#]);
/// ```
pub fn payload_terms(value: &Value) -> Vec<String> {
    let mut terms = Vec::new();
    let mut path = String::new();
    collect_terms(value, &mut path, &mut terms);
    terms.sort_unstable();
    terms.dedup();
    terms
}

fn collect_terms(value: &Value, path: &mut String, terms: &mut Vec<String>) {
    let path_length = path.len();
    match value {
        Value::Object(entries) => {
            for (key, child) in entries {
                push_json_string(path, key);
                collect_terms(child, path, terms);
                path.truncate(path_length);
            }
        }
        Value::Array(items) => {
            path.push_str("[]");
            for item in items {
                collect_terms(item, path, terms);
            }
            path.truncate(path_length);
        }
        scalar => {
            let mut term = String::with_capacity(path.len() + 8);
            term.push_str(path);
            term.push('=');
            push_scalar(&mut term, scalar);
            terms.push(shorten(term));
        }
    }
}

fn push_json_string(target: &mut String, text: &str) {
    // Serializing a str to JSON cannot fail.
    target.push_str(&serde_json::to_string(text).unwrap_or_default());
}

fn push_scalar(target: &mut String, scalar: &Value) {
    match scalar {
        Value::Number(number) if number.as_f64() == Some(0.0) && number.is_f64() => {
            target.push_str("0.0");
        }
        Value::String(text) => push_json_string(target, text),
        other => {
            let _ = write!(target, "{other}");
        }
    }
}

fn shorten(term: String) -> String {
    if term.len() <= MAX_TERM_BYTES {
        return term;
    }
    let hash = term.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    });
    format!("#{hash:016x}")
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::payload_matches;

    #[test]
    fn number_kinds_and_signed_zero_get_the_terms_the_matcher_implies() {
        assert_ne!(payload_terms(&json!(1)), payload_terms(&json!(1.0)));
        let negative_zero: Value = serde_json::from_str("-0.0").unwrap();
        assert!(payload_matches(&json!(0.0), &negative_zero));
        assert_eq!(payload_terms(&json!(0.0)), payload_terms(&negative_zero));
    }

    #[test]
    fn scalars_inside_arrays_differ_from_scalars_in_place() {
        assert_ne!(
            payload_terms(&json!({"k": 1})),
            payload_terms(&json!({"k": [1]}))
        );
        assert_eq!(payload_terms(&json!([[1]])), vec!["[][]=1".to_owned()]);
    }

    #[test]
    fn keys_with_quotes_and_dots_stay_unambiguous() {
        assert_ne!(
            payload_terms(&json!({"a.b": 1})),
            payload_terms(&json!({"a": {"b": 1}}))
        );
        assert_ne!(
            payload_terms(&json!({"a\"": {"b": 1}})),
            payload_terms(&json!({"a": {"\"b": 1}}))
        );
    }

    #[test]
    fn long_terms_are_hashed_stably() {
        let long = "x".repeat(500);
        let terms = payload_terms(&json!({ "k": long }));
        assert_eq!(terms.len(), 1);
        assert!(terms[0].starts_with('#') && terms[0].len() == 17);
        assert_eq!(terms, payload_terms(&json!({ "k": "x".repeat(500) })));
    }

    #[test]
    fn every_predicate_term_is_a_payload_term_when_the_predicate_matches() {
        let payload = json!({"a": {"b": [1, {"c": "x", "d": null}], "e": true}, "f": 2.5});
        let predicates = [
            json!({"a": {"b": [{"c": "x"}]}}),
            json!({"a": {"e": true}, "f": 2.5}),
            json!({"a": {"b": [1, {"d": null}]}}),
        ];
        let payload_terms = payload_terms(&payload);
        for predicate in predicates {
            assert!(payload_matches(&predicate, &payload));
            for term in super::payload_terms(&predicate) {
                assert!(payload_terms.contains(&term), "{term} missing");
            }
        }
    }
}
