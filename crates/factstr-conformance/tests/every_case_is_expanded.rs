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

#[test]
fn every_persistent_case_appears_in_its_macro_exactly_once() {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let lib = fs::read_to_string(source.join("lib.rs")).unwrap();
    let listed_block = lib
        .split("macro_rules! persistent_conformance_tests")
        .nth(1)
        .and_then(|rest| rest.split("$new_location, $open;").nth(1))
        .and_then(|rest| rest.split('}').next())
        .unwrap();
    let listed: Vec<&str> = listed_block
        .split(',')
        .map(str::trim)
        .filter(|name| !name.is_empty())
        .collect();
    let listed_set: BTreeSet<&str> = listed.iter().copied().collect();
    assert_eq!(
        listed.len(),
        listed_set.len(),
        "a persistent case is listed twice"
    );
    let module = fs::read_to_string(source.join("persistent.rs")).unwrap();
    let defined: BTreeSet<&str> = module
        .lines()
        .filter_map(|line| line.strip_prefix("pub fn "))
        .map(|rest| rest.split(['<', '(']).next().unwrap())
        .collect();
    assert_eq!(
        defined, listed_set,
        "persistent cases and the macro's list differ"
    );
}
