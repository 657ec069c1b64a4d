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
    walk_terms(value, &mut Vec::new(), &mut |term| {
        terms.push(shorten(String::from_utf8_lossy(term).into_owned()));
    });
    terms.sort_unstable();
    terms.dedup();
    terms
}

/// Calls `each` with the bytes of every term of `value` (a payload or a
/// predicate), in no particular order and possibly with repeats: the terms
/// of [`payload_terms`], whole (never shortened), built in one reused buffer.
///
/// For in-memory indexes that keep a hash of each term: with one hash
/// function, equal terms give equal hashes, so the rule above holds for
/// hashes too (a collision only adds candidates). The terms are built in
/// `buffer` (cleared first; pass the same one again to allocate nothing).
///
/// ```
/// use factstr::backend::payload_terms::for_each_term;
/// use serde_json::json;
///
/// let mut terms = Vec::new();
/// for_each_term(&json!({"account": "a1", "tags": [1, 1]}), &mut Vec::new(), |term| {
///     terms.push(String::from_utf8_lossy(term).into_owned());
/// });
/// assert_eq!(terms, vec![r#""account"="a1""#, r#""tags"[]=1"#, r#""tags"[]=1"#]);
/// ```
pub fn for_each_term(value: &Value, buffer: &mut Vec<u8>, mut each: impl FnMut(&[u8])) {
    buffer.clear();
    walk_terms(value, buffer, &mut each);
}

/// Calls `sink` with the bytes of each term of `value` (repeats included),
/// built in `path`, which holds the path leading to `value`.
fn walk_terms(value: &Value, path: &mut Vec<u8>, sink: &mut impl FnMut(&[u8])) {
    let path_length = path.len();
    match value {
        Value::Object(entries) => {
            for (key, child) in entries {
                push_json_string(path, key);
                walk_terms(child, path, sink);
                path.truncate(path_length);
            }
        }
        Value::Array(items) => {
            path.extend_from_slice(b"[]");
            for item in items {
                walk_terms(item, path, sink);
            }
            path.truncate(path_length);
        }
        scalar => {
            path.push(b'=');
            push_scalar(path, scalar);
            sink(path);
            path.truncate(path_length);
        }
    }
}

/// `text` as a JSON string, exactly as `serde_json` writes it.
fn push_json_string(target: &mut Vec<u8>, text: &str) {
    // serde_json escapes only quotes, backslashes and control characters;
    // most keys and values have none, and are copied as they are.
    if text
        .bytes()
        .any(|byte| byte < 0x20 || byte == b'"' || byte == b'\\')
    {
        // Writing JSON into a Vec cannot fail.
        let _ = serde_json::to_writer(target, text);
    } else {
        target.reserve(text.len() + 2);
        target.push(b'"');
        target.extend_from_slice(text.as_bytes());
        target.push(b'"');
    }
}

fn push_scalar(target: &mut Vec<u8>, scalar: &Value) {
    match scalar {
        Value::Number(number) if number.as_f64() == Some(0.0) && number.is_f64() => {
            target.extend_from_slice(b"0.0");
        }
        Value::String(text) => push_json_string(target, text),
        // serde_json writes numbers, booleans and null as it displays them;
        // writing into a Vec cannot fail.
        other => {
            let _ = serde_json::to_writer(target, other);
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
    fn the_encoding_stays_as_stored_on_disk() {
        let payload = json!({
            "quote\"d": "a\u{1}\n\u{e9}", "n": [-1, 2.5, -0.0, 7], "t": [true, null, {"k": "v"}],
            "big": [u64::MAX, i64::MIN, 1e300, 0.1, -2.5e-7, false], "sl\\a\u{7f}sh": "\t"
        });
        assert_eq!(
            payload_terms(&payload),
            vec![
                r#""big"[]=-2.5e-7"#,
                r#""big"[]=-9223372036854775808"#,
                r#""big"[]=0.1"#,
                r#""big"[]=18446744073709551615"#,
                r#""big"[]=1e+300"#,
                r#""big"[]=false"#,
                r#""n"[]=-1"#,
                r#""n"[]=0.0"#,
                r#""n"[]=2.5"#,
                r#""n"[]=7"#,
                "\"quote\\\"d\"=\"a\\u0001\\n\u{e9}\"",
                "\"sl\\\\a\u{7f}sh\"=\"\\t\"",
                r#""t"[]"k"="v""#,
                r#""t"[]=null"#,
                r#""t"[]=true"#,
            ]
        );
    }

    #[test]
    fn each_term_is_a_term_whole() {
        let payload = json!({"a": {"b": [1, {"c": "x"}, 1]}, "long": "y".repeat(300), "z": -0.0});
        let mut each = Vec::new();
        for_each_term(&payload, &mut Vec::new(), |term| {
            each.push(String::from_utf8(term.to_vec()).unwrap());
        });
        assert_eq!(each.len(), 5, "repeats are kept");
        let mut shortened: Vec<String> = each.into_iter().map(shorten).collect();
        shortened.sort_unstable();
        shortened.dedup();
        assert_eq!(shortened, payload_terms(&payload));
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
