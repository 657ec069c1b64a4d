//! The in-memory examples run and tell their reader values, not Rust's debug
//! forms. Runs the example binaries that `cargo test` builds next to this test.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::Command;

fn run_example(name: &str) -> String {
    // target/<profile>/deps/<this test> -> target/<profile>/examples/<name>
    let test = std::env::current_exe().unwrap();
    let profile = test.parent().and_then(Path::parent).unwrap();
    let binary = profile
        .join("examples")
        .join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.exists(),
        "{} is missing: `cargo test -p factstr-examples-memory` builds it",
        binary.display()
    );
    let output = Command::new(&binary).output().unwrap();
    assert!(
        output.status.success(),
        "{name}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).unwrap();
    for debug_form in ["Some(", "None", "Ok(", "Err(", "[1", "\""] {
        assert!(
            !text.contains(debug_form),
            "{name} prints {debug_form}:\n{text}"
        );
    }
    text
}

#[test]
fn basic_memory_reports_the_refused_second_withdrawal() {
    let text = run_example("basic_memory");
    assert!(
        text.contains("balance of a1 is 100 at context version 2"),
        "{text}"
    );
    assert!(
        text.contains("second withdrawal refused: context moved from version 2 to 3"),
        "{text}"
    );
}

#[test]
fn account_projection_prints_the_balances() {
    assert_eq!(run_example("account_projection"), "a1: 70\na2: 40\n");
}

#[test]
fn live_subscriptions_prints_sequence_numbers() {
    let text = run_example("live_subscriptions");
    assert!(text.contains("audit          got #1, #2"), "{text}");
    assert!(text.contains("did not get sequence 4"), "{text}");
}
