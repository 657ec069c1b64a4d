//! The `bank_slices_cli` example as its user meets it: arguments are checked
//! before a file is made, `--help` succeeds, balances never overflow, and a
//! race reports as it goes. Runs the example binary that `cargo test` builds
//! next to this test.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn example_binary() -> PathBuf {
    // target/<profile>/deps/<this test> -> target/<profile>/examples/bank_slices_cli
    let test = std::env::current_exe().unwrap();
    let profile = test.parent().and_then(Path::parent).unwrap();
    let binary = profile
        .join("examples")
        .join(format!("bank_slices_cli{}", std::env::consts::EXE_SUFFIX));
    assert!(
        binary.exists(),
        "{} is missing: `cargo test -p factstr-examples` builds it (a test filter such as --test skips it)",
        binary.display()
    );
    binary
}

/// Runs the CLI in `folder` (its default database is `folder/bank.db`).
fn bank(folder: &Path, arguments: &[&str]) -> Output {
    Command::new(example_binary())
        .args(arguments)
        .current_dir(folder)
        .output()
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

fn files_in(folder: &Path) -> Vec<String> {
    std::fs::read_dir(folder)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect()
}

#[test]
fn help_succeeds_prints_usage_and_makes_no_file() {
    let folder = tempfile::tempdir().unwrap();
    for flag in ["--help", "-h", "help"] {
        let output = bank(folder.path(), &[flag]);
        assert_eq!(output.status.code(), Some(0), "{flag}: {}", stderr(&output));
        assert!(
            stdout(&output).starts_with("usage: bank_slices_cli"),
            "{flag}"
        );
    }
    assert_eq!(files_in(folder.path()), Vec::<String>::new());
}

#[test]
fn wrong_arguments_are_refused_before_any_file_is_made() {
    let folder = tempfile::tempdir().unwrap();
    for (arguments, message) in [
        (&[][..], "no command given"),
        (&["bogus"][..], "unknown command `bogus`"),
        (&["deposit", "a1"][..], "wrong arguments for `deposit`"),
        (&["deposit", "a1", "ten"][..], "`ten` is not an amount"),
        (&["deposit", "a1", "-5"][..], "`-5` is not an amount"),
        (
            &["deposit", "a1", "9223372036854775808"][..],
            "`9223372036854775808` is not an amount",
        ),
        (
            &["race", "a1", "0", "5"][..],
            "`0` is not a number of withdrawals",
        ),
        (&["--db"][..], "--db needs a path"),
    ] {
        let output = bank(folder.path(), arguments);
        assert_eq!(output.status.code(), Some(2), "{arguments:?}");
        let error = stderr(&output);
        assert!(error.starts_with(message), "{arguments:?}: {error}");
        assert!(error.contains("usage: bank_slices_cli"), "{arguments:?}");
    }
    assert_eq!(files_in(folder.path()), Vec::<String>::new());
}

#[test]
fn a_deposit_that_would_overflow_the_balance_is_refused_and_the_account_stays_usable() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path();
    assert!(bank(path, &["open", "a1", "Ada"]).status.success());
    let largest = i64::MAX.to_string();
    let full = bank(path, &["deposit", "a1", &largest]);
    assert!(full.status.success(), "{}", stderr(&full));

    let refused = bank(path, &["deposit", "a1", "1"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("receiving 1 would exceed the largest balance"),
        "{}",
        stderr(&refused)
    );

    // Every later command on the account still works.
    let balance = bank(path, &["balance", "a1"]);
    assert_eq!(stdout(&balance), format!("a1: {largest}\n"));
    assert!(bank(path, &["withdraw", "a1", "7"]).status.success());
    assert!(bank(path, &["deposit", "a1", "7"]).status.success());
    let history = bank(path, &["history", "a1"]);
    assert!(history.status.success(), "{}", stderr(&history));
    assert_eq!(stdout(&history).lines().count(), 4);
}

#[test]
fn a_transfer_that_would_overflow_the_receiver_is_refused() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path();
    for words in [
        &["open", "a1", "Ada"][..],
        &["open", "a2", "Bob"][..],
        &["deposit", "a1", &i64::MAX.to_string()][..],
        &["deposit", "a2", "5"][..],
    ] {
        assert!(bank(path, words).status.success(), "{words:?}");
    }
    let refused = bank(path, &["transfer", "a2", "a1", "5"]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(
        stderr(&refused).contains("a1 holds"),
        "{}",
        stderr(&refused)
    );
    assert_eq!(stdout(&bank(path, &["balance", "a2"])), "a2: 5\n");

    // The other direction is fine: the sender's balance only shrinks.
    assert!(bank(path, &["transfer", "a1", "a2", "5"]).status.success());
    assert_eq!(stdout(&bank(path, &["balance", "a2"])), "a2: 10\n");
}

#[test]
fn a_race_reports_every_withdrawal_as_it_finishes() {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path();
    assert!(bank(path, &["open", "a1", "Ada"]).status.success());
    assert!(bank(path, &["deposit", "a1", "45"]).status.success());

    let race = bank(path, &["race", "a1", "8", "10"]);
    assert!(race.status.success(), "{}", stderr(&race));
    let text = stdout(&race);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "8 withdrawals of 10 at once from a1 (balance 45):"
    );
    for (index, line) in lines[1..9].iter().enumerate() {
        assert!(
            line.starts_with(&format!("  [{}/8] withdrawal ", index + 1)),
            "{line}"
        );
    }
    assert_eq!(lines[9], "4 succeeded, 4 refused; balance now 5");
    assert_eq!(lines.len(), 10);
}

#[test]
fn the_database_goes_where_db_says() {
    let folder = tempfile::tempdir().unwrap();
    let output = bank(
        folder.path(),
        &["--db", "ledger/money.db", "open", "a1", "Ada"],
    );
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(folder.path().join("ledger/money.db").exists());
    assert!(!folder.path().join("bank.db").exists());
}

#[test]
fn the_demo_prints_values_not_debug_forms() {
    let folder = tempfile::tempdir().unwrap();
    let output = bank(folder.path(), &["demo"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(text.contains("a2: 50"), "{text}");
    for debug_form in ["Some(", "None", "Ok(", "Err("] {
        assert!(!text.contains(debug_form), "{debug_form} in:\n{text}");
    }
}
