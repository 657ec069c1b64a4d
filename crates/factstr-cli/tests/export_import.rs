//! `export` then `import` reproduces a log: the same `stats --json`, the
//! same `query` output, the same batches and cursors; an import that does
//! not fit writes nothing; errors are one line.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use factstr_postgres::PostgresStore;
use factstr_sqlite::SqliteStore;
use support::*;

const FACTS: usize = 5_000;

fn query_outputs(url: &str) -> Vec<String> {
    [
        vec!["query", url, "--json"],
        vec!["query", url, "--type", "type-1", "--type", "type-3"],
        vec![
            "query",
            url,
            "--where",
            r#"{"account": 7}"#,
            "--after",
            "100",
        ],
        vec![
            "query",
            url,
            "--type",
            "type-2",
            "--where",
            r#"{"amount": 42}"#,
            "--where",
            r#"{"amount": 4002}"#,
        ],
        vec!["query", url, "--limit", "10", "--after", "4990"],
    ]
    .iter()
    .map(|args| ok(args))
    .collect()
}

#[test]
fn export_then_import_into_sqlite_reproduces_the_store() {
    let folder = tempfile::tempdir().unwrap();
    let source = sqlite_fixture(&folder.path().join("source.db"), FACTS);
    let source_url = sqlite_url(&folder.path().join("source.db"));
    let export = folder.path().join("export.jsonl");
    ok(&["export", &source_url, "--output", export.to_str().unwrap()]);
    let target_path = folder.path().join("target.db");
    let target_url = sqlite_url(&target_path);
    ok(&["import", &target_url, "--input", export.to_str().unwrap()]);

    assert_eq!(
        ok(&["stats", &source_url, "--json"]),
        ok(&["stats", &target_url, "--json"])
    );
    let outputs = query_outputs(&source_url);
    assert_eq!(outputs, query_outputs(&target_url));
    assert_eq!(outputs[0].lines().count(), FACTS);
    assert_eq!(outputs[4].lines().count(), 10);
    let target = SqliteStore::open(&target_path).unwrap();
    assert_same_log(&source, &target);

    // A second export of the copy is the same text.
    let again = folder.path().join("again.jsonl");
    ok(&["export", &target_url, "-o", again.to_str().unwrap()]);
    assert_eq!(
        std::fs::read_to_string(&export).unwrap(),
        std::fs::read_to_string(&again).unwrap()
    );
}

#[test]
fn export_then_import_into_postgres_reproduces_the_store() {
    let folder = tempfile::tempdir().unwrap();
    let source = sqlite_fixture(&folder.path().join("source.db"), FACTS);
    let source_url = sqlite_url(&folder.path().join("source.db"));
    // Through a pipe: export on standard output, import from standard input.
    let export = ok(&["export", &source_url]);
    let target_url = new_postgres_url();
    let imported = run_with_input(&["import", &target_url], &export);
    assert!(imported.success, "{}", imported.stderr);

    assert_eq!(
        ok(&["stats", &source_url, "--json"]),
        ok(&["stats", &target_url, "--json"])
    );
    assert_eq!(query_outputs(&source_url), query_outputs(&target_url));
    let target = PostgresStore::connect(&postgres_connection_url(&target_url)).unwrap();
    assert_same_log(&source, &target);
}

#[test]
fn an_export_after_a_point_continues_a_store_holding_the_part_before() {
    let folder = tempfile::tempdir().unwrap();
    sqlite_fixture(&folder.path().join("source.db"), 300);
    let source_url = sqlite_url(&folder.path().join("source.db"));
    let target_url = sqlite_url(&folder.path().join("target.db"));
    // 125 is the end of the sixth batch (1+3+10+100+1+7+... = 122, 1000 next:
    // batch ends are 1, 4, 14, 114, 115, 122, 300).
    let first = ok(&["export", &source_url]);
    let head_part: Vec<&str> = first.lines().take(1 + 122).collect();
    let mut partial = head_part.join("\n");
    partial.push_str("\n{\"end\":{\"facts\":122,\"batches\":6,\"durable_streams\":0}}\n");
    let imported = run_with_input(&["import", &target_url], &partial);
    assert!(imported.success, "{}", imported.stderr);
    let rest = ok(&["export", &source_url, "--after", "122"]);
    let imported = run_with_input(&["import", &target_url], &rest);
    assert!(imported.success, "{}", imported.stderr);
    assert_eq!(
        ok(&["stats", &source_url, "--json"]),
        ok(&["stats", &target_url, "--json"])
    );
}

#[test]
fn an_import_that_does_not_continue_the_store_writes_nothing() {
    let folder = tempfile::tempdir().unwrap();
    sqlite_fixture(&folder.path().join("source.db"), 200);
    let source_url = sqlite_url(&folder.path().join("source.db"));
    let export = ok(&["export", &source_url]);

    // A store with a log of its own.
    let target_url = sqlite_url(&folder.path().join("target.db"));
    ok(&[
        "append",
        &target_url,
        "--type",
        "other",
        "--payload",
        r#"{"k":1}"#,
    ]);
    let before = ok(&["stats", &target_url, "--json"]);
    let refused = run_with_input(&["import", &target_url], &export);
    assert!(!refused.success);
    assert!(
        refused
            .stderr
            .contains("the store's head is 1 (it must be 0)"),
        "{}",
        refused.stderr
    );
    assert_eq!(refused.stderr.lines().count(), 1);
    assert_eq!(ok(&["stats", &target_url, "--json"]), before);

    // The same into PostgreSQL.
    let postgres_url = new_postgres_url();
    ok(&["append", &postgres_url, "--type", "other"]);
    let before = ok(&["stats", &postgres_url, "--json"]);
    let refused = run_with_input(&["import", &postgres_url], &export);
    assert!(!refused.success);
    assert!(
        refused.stderr.contains("nothing was imported"),
        "{}",
        refused.stderr
    );
    assert_eq!(ok(&["stats", &postgres_url, "--json"]), before);

    // A file whose last batch is broken is refused before anything is
    // written, also into an empty store.
    let empty_url = sqlite_url(&folder.path().join("empty.db"));
    let mut lines: Vec<String> = export.lines().map(str::to_owned).collect();
    let broken = lines.len() - 4;
    lines[broken] = lines[broken].replace("\"sequence_number\":", "\"sequence_number\":1");
    let refused = run_with_input(&["import", &empty_url], &(lines.join("\n") + "\n"));
    assert!(!refused.success);
    assert!(
        refused.stderr.contains("do not follow each other"),
        "{}",
        refused.stderr
    );
    assert!(!folder.path().join("empty.db").exists());
}

#[test]
fn errors_are_one_line_and_name_where_json_is_invalid() {
    let folder = tempfile::tempdir().unwrap();
    let url = sqlite_url(&folder.path().join("store.db"));
    ok(&["append", &url, "--type", "a"]);

    let message = fails(&["stats", "mysql://localhost/db"]);
    assert!(message.contains("unknown store URL"), "{message}");
    let message = fails(&["stats", "postgres://nobody@127.0.0.1:1/none"]);
    assert!(message.contains("cannot connect"), "{message}");
    let message = fails(&["stats", &sqlite_url(&folder.path().join("missing.db"))]);
    assert!(message.contains("no SQLite database"), "{message}");

    let message = fails(&["query", &url, "--where", "{\"a\":\n  [1, }"]);
    assert!(message.contains("--where at line 2 column 7"), "{message}");
    let message = fails(&["append", &url, "--type", "a", "--payload", "{\"a\" 1}"]);
    assert!(
        message.contains("--payload at line 1 column 6"),
        "{message}"
    );

    let input = "{\"event_type\":\"a\"}\n{\"event_type\":\"b\",\"payload\":{]}\n";
    let refused = run_with_input(&["append", &url], input);
    assert!(!refused.success);
    assert!(
        refused
            .stderr
            .contains("standard input at line 2 column 30"),
        "{}",
        refused.stderr
    );
    let export = "{\"format\":\"factstr-export\",\"version\":1}\n{\"sequence_number\":1,\n";
    let refused = run_with_input(&["import", &url], export);
    assert!(!refused.success);
    assert!(
        refused
            .stderr
            .contains("standard input at line 2 column 21"),
        "{}",
        refused.stderr
    );
    // Nothing of the refused appends and imports was written.
    let facts = ok(&["query", &url, "--json"]);
    assert_eq!(facts.lines().count(), 1, "{facts}");
}
