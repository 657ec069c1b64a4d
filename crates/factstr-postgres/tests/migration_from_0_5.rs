//! Schemas written by the published factstr-postgres 0.5.x open with every
//! event, batch boundary and durable cursor; the 0.5.x tables stay as they
//! were; a 0.5.x log that grew after the migration is refused with the
//! remedy; many connects at once migrate once. The fixtures are `pg_dump`s
//! of logs the real 0.5.2 and 0.5.0 crates wrote (see
//! `fixtures/factstr-0.5.2/README.md`), loaded into a fresh schema.

// Test code: helpers outside #[test] functions unwrap too.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};
use std::sync::{Arc, Barrier};
use std::time::{SystemTime, UNIX_EPOCH};

use factstr::{EventQuery, EventStore, EventStoreError, NewEvent};
use factstr_conformance::fixtures_0_5::{self, LegacyFixture};
use factstr_postgres::{PostgresBootstrapOptions, PostgresStore};
use serde_json::json;
use support::{database_url, execute, fetch_texts, new_schema, schema_url, store_in, test_options};

/// The 0.5.x tables (0.5.0 has no store_metadata).
const OLD_TABLES: [&str; 4] = [
    "append_batches",
    "durable_stream_cursors",
    "events",
    "store_metadata",
];

fn fixture_path(file: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(file)
}

fn expected(version: &str) -> LegacyFixture {
    LegacyFixture::read(&fixture_path(&format!("factstr-{version}.expected.json")))
}

/// The fixture dump of `version` as SQL that creates its tables in `schema`:
/// psql's meta-commands dropped, `public.` replaced.
fn fixture_sql(version: &str, schema: &str) -> String {
    let dump = std::fs::read_to_string(fixture_path(&format!("factstr-{version}.sql"))).unwrap();
    let mut sql: String = dump
        .lines()
        .filter(|line| !line.starts_with('\\'))
        .collect::<Vec<_>>()
        .join("\n");
    if schema != "public" {
        for table in OLD_TABLES {
            sql = sql.replace(&format!("public.{table}"), &format!("{schema}.{table}"));
        }
        assert!(!sql.contains("public."), "the dump names other objects");
    }
    sql
}

/// A new schema holding the fixture of `version`.
fn schema_with(version: &str) -> String {
    let schema = new_schema();
    execute(fixture_sql(version, &schema));
    schema
}

fn connect(schema: &str) -> Result<PostgresStore, EventStoreError> {
    PostgresStore::connect_with(&schema_url(schema), test_options())
}

/// The definitions and rows of the 0.5.x tables in `schema`, as text.
fn old_tables(schema: &str) -> Vec<String> {
    let mut rows = fetch_texts(format!(
        "SELECT c.relname || ' ' || c.relkind::text || ' ' || \
                string_agg(a.attname || ' ' || format_type(a.atttypid, a.atttypmod), ', ' ORDER BY a.attnum) \
         FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 \
         WHERE n.nspname = '{schema}' AND c.relname NOT LIKE 'factstr%' \
         GROUP BY c.relname, c.relkind ORDER BY 1"
    ));
    rows.extend(fetch_texts(format!(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = '{schema}' \
         AND tablename NOT LIKE 'factstr%' ORDER BY 1"
    )));
    for table in OLD_TABLES {
        let exists = fetch_texts(format!(
            "SELECT COALESCE(to_regclass('{schema}.{table}')::text, '')"
        ));
        if exists != [""] {
            rows.extend(fetch_texts(format!(
                "SELECT '{table} ' || row_to_json(t)::text FROM {schema}.{table} t ORDER BY 1"
            )));
        }
    }
    rows
}

fn count(sql: String) -> i64 {
    fetch_texts(format!("SELECT ({sql})::text"))[0]
        .parse()
        .unwrap()
}

fn invalid_input_message(result: Result<PostgresStore, EventStoreError>) -> String {
    match result {
        Err(EventStoreError::InvalidInput { message }) => message,
        other => panic!("expected InvalidInput, got {other:?}"),
    }
}

#[test]
fn every_event_of_a_0_5_2_schema_is_kept_with_its_time_type_and_payload() {
    let store = store_in(&schema_with("0.5.2"));
    let fixture = expected("0.5.2");
    fixtures_0_5::assert_every_event_kept(&store, &fixture);
    fixtures_0_5::assert_queries_find_the_matching_events(&store, &fixture);
}

#[test]
fn replay_after_migration_delivers_the_batches_0_5_2_committed() {
    let store = store_in(&schema_with("0.5.2"));
    fixtures_0_5::assert_replay_delivers(&store, &expected("0.5.2").batches);
}

#[test]
fn durable_streams_of_0_5_2_resume_after_their_stored_cursor() {
    let store = store_in(&schema_with("0.5.2"));
    fixtures_0_5::assert_durable_streams_resume(&store, &expected("0.5.2"));
}

#[test]
fn durable_cursors_and_queries_are_stored_as_factstr_stores_them() {
    let schema = schema_with("0.5.2");
    drop(store_in(&schema));
    let stored = fetch_texts(format!(
        "SELECT name || ' ' || query || ' ' || cursor FROM {schema}.factstr_durable_streams \
         ORDER BY name"
    ));
    let mut expected: Vec<String> = expected("0.5.2")
        .durable_streams
        .iter()
        .map(|stream| {
            let query = factstr::backend::normalized_stream_query(&stream.query);
            format!(
                "{} {} {}",
                stream.name,
                serde_json::to_string(&query).unwrap(),
                stream.cursor
            )
        })
        .collect();
    expected.sort();
    assert_eq!(stored, expected);
}

#[test]
fn appends_after_the_migration_continue_and_survive_reconnecting() {
    let schema = schema_with("0.5.2");
    let fixture = expected("0.5.2");
    {
        let store = store_in(&schema);
        fixtures_0_5::assert_appends_continue(&store, &fixture);
    }
    let again = store_in(&schema);
    let all = again.query(&EventQuery::all()).unwrap();
    assert_eq!(
        all.last_returned_sequence_number,
        Some(fixture.last_sequence_number() + 2)
    );
    assert_eq!(
        all.event_records[..fixture.events.len()],
        fixture.events[..]
    );
}

#[test]
fn the_0_5_x_tables_are_left_unchanged() {
    let schema = schema_with("0.5.2");
    let before = old_tables(&schema);
    assert!(before.len() > 30, "{before:?}");
    {
        let store = store_in(&schema);
        fixtures_0_5::assert_durable_streams_resume(&store, &expected("0.5.2"));
        store
            .append(vec![NewEvent::new("after", json!({}))])
            .unwrap();
    }
    drop(store_in(&schema));
    assert_eq!(old_tables(&schema), before);
}

#[test]
fn a_0_5_0_schema_without_metadata_keeps_every_batch() {
    // 0.5.0 wrote a batch row for every batch, and no store_metadata table.
    let schema = schema_with("0.5.0");
    assert_eq!(
        fetch_texts(format!(
            "SELECT COALESCE(to_regclass('{schema}.store_metadata')::text, 'none')"
        )),
        ["none"]
    );
    let fixture = expected("0.5.0");
    let store = store_in(&schema);
    fixtures_0_5::assert_every_event_kept(&store, &fixture);
    fixtures_0_5::assert_replay_delivers(&store, &fixture.batches);
    fixtures_0_5::assert_durable_streams_resume(&store, &fixture);
}

#[test]
fn without_the_marker_the_batch_rows_still_give_the_batches() {
    let schema = schema_with("0.5.2");
    execute(format!(
        "DELETE FROM {schema}.store_metadata WHERE key = 'append_batch_boundary_format'"
    ));
    let store = store_in(&schema);
    fixtures_0_5::assert_replay_delivers(&store, &expected("0.5.2").batches);
}

#[test]
fn without_the_marker_events_no_batch_row_covers_are_delivered_one_by_one() {
    let schema = schema_with("0.5.2");
    execute(format!(
        "DELETE FROM {schema}.store_metadata WHERE key = 'append_batch_boundary_format';
         DELETE FROM {schema}.append_batches WHERE first_sequence_number IN (2, 14);"
    ));
    let fixture = expected("0.5.2");
    let store = store_in(&schema);
    fixtures_0_5::assert_every_event_kept(&store, &fixture);
    let batches: Vec<Vec<u64>> = fixture
        .batches
        .iter()
        .flat_map(|batch| {
            if batch[0] == 2 || batch[0] == 14 {
                batch
                    .iter()
                    .map(|sequence_number| vec![*sequence_number])
                    .collect()
            } else {
                vec![batch.clone()]
            }
        })
        .collect();
    assert!(batches.contains(&vec![3]) && batches.contains(&vec![16]));
    fixtures_0_5::assert_replay_delivers(&store, &batches);
}

#[test]
fn a_0_5_x_log_that_grew_after_the_migration_is_refused_with_the_remedy() {
    let schema = schema_with("0.5.2");
    drop(store_in(&schema));
    // What 0.5.2 does when the application goes back to it and appends.
    execute(format!(
        "INSERT INTO {schema}.events (sequence_number, occurred_at, event_type, payload) \
         VALUES (22, now(), 'appended-by-0.5.2', '{{}}')"
    ));
    let before = old_tables(&schema);
    let events_before = count(format!("SELECT COUNT(*) FROM {schema}.factstr_events"));

    let message = invalid_input_message(connect(&schema));
    assert!(message.contains(&schema), "{message}");
    assert!(
        message.contains("the 0.5.x log has events the FACTSTR log lacks"),
        "{message}"
    );
    assert!(message.contains("22"), "{message}");
    assert!(
        message.contains("drop the tables factstr_events"),
        "{message}"
    );
    assert_eq!(old_tables(&schema), before);
    assert_eq!(
        count(format!("SELECT COUNT(*) FROM {schema}.factstr_events")),
        events_before
    );

    // The remedy that keeps the 0.5.x log: drop the FACTSTR tables.
    execute(format!(
        "DROP TABLE {schema}.factstr_events, {schema}.factstr_durable_streams, \
         {schema}.factstr_metadata"
    ));
    let store = store_in(&schema);
    let records = store.query(&EventQuery::all()).unwrap().event_records;
    assert_eq!(records.len(), 22);
    assert_eq!(records[21].event_type, "appended-by-0.5.2");
}

#[test]
fn a_0_5_x_log_whose_newest_event_differs_from_ours_is_refused() {
    let schema = schema_with("0.5.2");
    {
        let store = store_in(&schema);
        store
            .append(vec![NewEvent::new("appended-by-factstr", json!({}))])
            .unwrap();
    }
    execute(format!(
        "INSERT INTO {schema}.events (sequence_number, occurred_at, event_type, payload) \
         VALUES (22, now(), 'appended-by-0.5.2', '{{}}')"
    ));
    let message = invalid_input_message(connect(&schema));
    assert!(message.contains("differs"), "{message}");
}

#[test]
fn empty_factstr_tables_created_next_to_a_0_5_x_log_are_filled_from_it() {
    // Earlier builds created their tables next to the 0.5.x tables and
    // ignored them.
    let schema = new_schema();
    drop(store_in(&schema));
    execute(fixture_sql("0.5.2", &schema));
    let store = store_in(&schema);
    let fixture = expected("0.5.2");
    fixtures_0_5::assert_every_event_kept(&store, &fixture);
    fixtures_0_5::assert_replay_delivers(&store, &fixture.batches);
}

#[test]
fn connects_to_a_0_5_x_schema_at_once_migrate_it_once() {
    let schema = schema_with("0.5.2");
    let fixture = expected("0.5.2");
    let connects = 6;
    let barrier = Arc::new(Barrier::new(connects));
    let stores: Vec<PostgresStore> = (0..connects)
        .map(|_| {
            let barrier = Arc::clone(&barrier);
            let schema = schema.clone();
            std::thread::spawn(move || {
                barrier.wait();
                connect(&schema).unwrap()
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|connecting| connecting.join().unwrap())
        .collect();
    for store in &stores {
        fixtures_0_5::assert_every_event_kept(store, &fixture);
    }
    drop(stores);
    assert_eq!(
        count(format!("SELECT COUNT(*) FROM {schema}.factstr_events")),
        i64::try_from(fixture.events.len()).unwrap()
    );
    assert_eq!(
        count(format!(
            "SELECT COUNT(*) FROM {schema}.factstr_durable_streams"
        )),
        2
    );
}

#[test]
fn bootstrap_brings_a_0_5_x_database_over() {
    let micros = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_micros();
    let database = format!(
        "factstr_legacy_{}_{}",
        std::process::id(),
        micros % 1_000_000_000
    );
    execute(format!("CREATE DATABASE {database}"));
    let url = database_url();
    let server = url[..url.rfind('/').unwrap()].to_owned();
    let dump = fixture_sql("0.5.2", "public");
    let database_url = format!("{server}/{database}");
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            use sqlx::{Connection, Executor};
            let mut connection = sqlx::PgConnection::connect(&database_url).await.unwrap();
            connection.execute(sqlx::AssertSqlSafe(dump)).await.unwrap();
        });
    })
    .join()
    .unwrap();

    let store = PostgresStore::bootstrap(PostgresBootstrapOptions {
        server_url: server,
        database_name: database,
    })
    .unwrap();
    assert_eq!(store.schema(), "public");
    fixtures_0_5::assert_every_event_kept(&store, &expected("0.5.2"));
}

#[test]
fn other_tables_named_events_are_left_alone() {
    let schema = new_schema();
    execute(format!(
        "CREATE TABLE {schema}.events (id bigint PRIMARY KEY, name text);
         INSERT INTO {schema}.events VALUES (1, 'theirs');"
    ));
    let store = store_in(&schema);
    assert!(
        store
            .query(&EventQuery::all())
            .unwrap()
            .event_records
            .is_empty()
    );
    assert_eq!(
        fetch_texts(format!("SELECT name FROM {schema}.events")),
        ["theirs"]
    );
}

#[test]
fn tables_named_like_0_5_x_but_with_other_columns_are_refused_without_change() {
    let schema = new_schema();
    execute(format!(
        "CREATE TABLE {schema}.events (id bigint PRIMARY KEY, name text);
         CREATE TABLE {schema}.append_batches (first_sequence_number bigint PRIMARY KEY, last_sequence_number bigint NOT NULL);
         CREATE TABLE {schema}.durable_stream_cursors (durable_stream_id text PRIMARY KEY, event_query text NOT NULL, last_processed_sequence_number bigint NOT NULL);"
    ));
    let message = invalid_input_message(connect(&schema));
    assert!(
        message.contains("its table events has the columns"),
        "{message}"
    );
    assert!(message.contains("nothing was changed"), "{message}");
    assert_eq!(
        count(format!(
            "SELECT COUNT(*) FROM pg_tables WHERE schemaname = '{schema}' \
             AND tablename LIKE 'factstr%'"
        )),
        0
    );
}

#[test]
fn a_0_5_x_layout_with_unknown_metadata_is_refused_without_change() {
    let schema = schema_with("0.5.2");
    execute(format!(
        "UPDATE {schema}.store_metadata SET value = '2' WHERE key = 'store_format_version'"
    ));
    let message = invalid_input_message(connect(&schema));
    assert!(
        message.contains("store_format_version = \"2\""),
        "{message}"
    );
    assert_eq!(
        count(format!(
            "SELECT COUNT(*) FROM pg_tables WHERE schemaname = '{schema}' \
             AND tablename LIKE 'factstr%'"
        )),
        0
    );
}

#[test]
fn a_0_5_x_log_with_a_gap_is_refused_without_change() {
    let schema = schema_with("0.5.2");
    execute(format!(
        "DELETE FROM {schema}.events WHERE sequence_number = 5"
    ));
    match connect(&schema) {
        Err(EventStoreError::BackendFailure { message }) => {
            assert!(message.contains("without gaps"), "{message}");
            assert!(message.contains("nothing was changed"), "{message}");
        }
        other => panic!("expected BackendFailure, got {other:?}"),
    }
    assert_eq!(
        count(format!(
            "SELECT COUNT(*) FROM pg_tables WHERE schemaname = '{schema}' \
             AND tablename LIKE 'factstr%'"
        )),
        0
    );
}
