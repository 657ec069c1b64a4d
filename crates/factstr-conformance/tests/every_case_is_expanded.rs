//! Guards the one list of cases: every public case function of every area
//! module appears in `conformance_tests!`, and nothing else does.

use std::collections::BTreeSet;
use std::fs;
use std::path::Path;

const AREAS: [&str; 11] = [
    "paging",
    "append",
    "query",
    "filters",
    "payload_predicates",
    "conditional_append",
    "live_streams",
    "durable_streams",
    "concurrency",
    "runtime",
    "stopping",
];

#[test]
fn every_public_case_appears_in_the_macro_exactly_once() {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = fs::read_to_string(source.join("lib.rs")).unwrap();
    let macro_body = lib
        .split("macro_rules! __conformance_case_list")
        .nth(1)
        .and_then(|rest| rest.split("macro_rules! __conformance_cases").next())
        .unwrap();
    for area in AREAS {
        let module = fs::read_to_string(source.join(format!("{area}.rs"))).unwrap();
        let defined: BTreeSet<&str> = module
            .lines()
            .filter_map(|line| line.strip_prefix("pub fn "))
            .map(|rest| rest.split(['<', '(']).next().unwrap())
            .collect();
        let listed_block = macro_body
            .split(&format!("{area}: ["))
            .nth(1)
            .and_then(|rest| rest.split(']').next())
            .unwrap_or_else(|| panic!("area {area} is missing from conformance_tests!"));
        let listed: Vec<&str> = listed_block
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .collect();
        let listed_set: BTreeSet<&str> = listed.iter().copied().collect();
        assert_eq!(
            listed.len(),
            listed_set.len(),
            "a case of {area} is listed twice"
        );
        assert_eq!(
            defined, listed_set,
            "cases of {area} and the macro's list differ"
        );
    }
}

/// The public case functions of `src/{area}.rs`.
#[allow(clippy::unwrap_used)]
fn defined_cases(source: &Path, area: &str) -> BTreeSet<String> {
    fs::read_to_string(source.join(format!("{area}.rs")))
        .unwrap()
        .lines()
        .filter_map(|line| line.strip_prefix("pub fn "))
        .map(|rest| rest.split(['<', '(']).next().unwrap().to_owned())
        .filter(|name| !NOT_CASES.contains(&name.as_str()))
        .collect()
}

/// Public functions of the persistent areas that are not cases.
const NOT_CASES: [&str; 3] = ["tell_parent", "wait_for_parent", "run_child"];

#[test]
fn every_persistent_case_appears_in_its_macro_exactly_once() {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = fs::read_to_string(source.join("lib.rs")).unwrap();
    let macro_body = lib
        .split("macro_rules! persistent_conformance_tests")
        .nth(1)
        .and_then(|rest| rest.split("macro_rules! __persistent_cases").next())
        .unwrap();
    for area in ["persistent", "processes", "operations"] {
        let listed_block = macro_body
            .split(&format!("{area}: ["))
            .nth(1)
            .and_then(|rest| rest.split(']').next())
            .unwrap_or_else(|| panic!("area {area} is missing from persistent_conformance_tests!"));
        let listed: Vec<String> = listed_block
            .split(',')
            .map(str::trim)
            .filter(|name| !name.is_empty())
            .map(str::to_owned)
            .collect();
        let listed_set: BTreeSet<String> = listed.iter().cloned().collect();
        assert_eq!(
            listed.len(),
            listed_set.len(),
            "a case of {area} is listed twice"
        );
        assert_eq!(
            defined_cases(&source, area),
            listed_set,
            "cases of {area} and the macro's list differ"
        );
    }
    for case in defined_cases(&source, "model") {
        assert_eq!(
            macro_body.matches(&format!("fn {case}()")).count(),
            1,
            "model case {case} is not expanded exactly once"
        );
    }
}
