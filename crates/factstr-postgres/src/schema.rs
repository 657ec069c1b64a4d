//! The store's tables: their names and the lock keys and channel derived
//! from the schema they live in, the statements creating them, and the
//! version of their layout.

use factstr::EventStoreError;
use factstr::backend::fnv1a_64_parts;
use sqlx::PgConnection;

use crate::error::database_failure;

/// The version of the table layout this code reads and writes.
pub(crate) const SCHEMA_VERSION: i64 = 1;

/// The schema the store uses and everything derived from its name.
#[derive(Debug)]
pub(crate) struct SchemaNames {
    schema: String,
    events: String,
    durable_streams: String,
    metadata: String,
    append_lock_key: i64,
    creation_lock_key: i64,
    channel: String,
}

impl SchemaNames {
    pub(crate) fn new(schema: &str) -> Self {
        let quoted = quote_identifier(schema);
        Self {
            schema: schema.to_owned(),
            events: format!("{quoted}.factstr_events"),
            durable_streams: format!("{quoted}.factstr_durable_streams"),
            metadata: format!("{quoted}.factstr_metadata"),
            append_lock_key: lock_key(&["append", schema]),
            creation_lock_key: lock_key(&["create", schema]),
            channel: format!("factstr_{:016x}", fnv1a_64_parts(&["channel", schema])),
        }
    }

    /// The schema's name, as PostgreSQL reports it.
    pub(crate) fn schema(&self) -> &str {
        &self.schema
    }

    /// The qualified, quoted events table.
    pub(crate) fn events(&self) -> &str {
        &self.events
    }

    /// The qualified, quoted durable streams table.
    pub(crate) fn durable_streams(&self) -> &str {
        &self.durable_streams
    }

    /// The advisory lock every append transaction of this schema takes.
    pub(crate) fn append_lock_key(&self) -> i64 {
        self.append_lock_key
    }

    /// The advisory lock that serializes creating the tables.
    pub(crate) fn creation_lock_key(&self) -> i64 {
        self.creation_lock_key
    }

    /// The notification channel of this schema's commits.
    pub(crate) fn channel(&self) -> &str {
        &self.channel
    }

    /// The session lock that makes a durable stream name exclusive.
    pub(crate) fn durable_lock_key(&self, name: &str) -> i64 {
        lock_key(&["durable", &self.schema, name])
    }

    /// A table of this schema, qualified and quoted.
    pub(crate) fn table(&self, table: &str) -> String {
        format!("{}.{table}", quote_identifier(&self.schema))
    }
}

/// The version of the store's tables in the schema, `None` when they are
/// missing (or hold no version yet).
pub(crate) async fn stored_version(
    connection: &mut PgConnection,
    names: &SchemaNames,
) -> Result<Option<i64>, EventStoreError> {
    let exists: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(&names.metadata)
        .fetch_one(&mut *connection)
        .await
        .map_err(|error| database_failure("cannot look for the store's tables", &error))?;
    if exists.is_none() {
        return Ok(None);
    }
    read_version(connection, names).await
}

/// The version stored in the metadata table; refuses a version newer than
/// this code reads.
pub(crate) async fn read_version(
    connection: &mut PgConnection,
    names: &SchemaNames,
) -> Result<Option<i64>, EventStoreError> {
    let sql = format!(
        "SELECT value FROM {} WHERE key = 'schema_version'",
        names.metadata
    );
    let value: Option<String> = sqlx::query_scalar(sqlx::AssertSqlSafe(sql))
        .fetch_optional(&mut *connection)
        .await
        .map_err(|error| database_failure("cannot read the schema version", &error))?;
    let Some(value) = value else {
        return Ok(None);
    };
    let version = value.parse::<i64>().map_err(|_| {
        EventStoreError::backend(format!(
            "the schema version stored in {} is not a number: {value:?}",
            names.metadata
        ))
    })?;
    if version > SCHEMA_VERSION {
        return Err(EventStoreError::backend(format!(
            "schema {} holds version {version} of the store's tables; this version of \
             factstr-postgres reads version {SCHEMA_VERSION}",
            names.schema
        )));
    }
    Ok(Some(version))
}

/// The statements creating the tables (when missing) and recording the
/// version, in order.
pub(crate) fn table_statements(names: &SchemaNames) -> [String; 4] {
    [
        format!(
            "CREATE TABLE IF NOT EXISTS {} (key text PRIMARY KEY, value text NOT NULL)",
            names.metadata
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (
                sequence_number bigint PRIMARY KEY,
                batch_last_sequence_number bigint NOT NULL,
                occurred_at timestamptz NOT NULL,
                event_type text COLLATE \"C\" NOT NULL,
                payload json NOT NULL
            )",
            names.events
        ),
        format!(
            "CREATE TABLE IF NOT EXISTS {} (
                name text PRIMARY KEY,
                query text NOT NULL,
                cursor bigint NOT NULL DEFAULT 0
            )",
            names.durable_streams
        ),
        format!(
            "INSERT INTO {} (key, value) VALUES ('schema_version', '{SCHEMA_VERSION}') \
             ON CONFLICT (key) DO NOTHING",
            names.metadata
        ),
    ]
}

/// The statements creating the indexes of the events table (when missing).
pub(crate) fn index_statements(names: &SchemaNames) -> [String; 2] {
    [
        format!(
            "CREATE INDEX IF NOT EXISTS factstr_events_type_sequence ON {} (event_type, sequence_number)",
            names.events
        ),
        format!(
            "CREATE INDEX IF NOT EXISTS factstr_events_payload ON {} USING gin ((payload::jsonb) jsonb_path_ops) WITH (fastupdate = off)",
            names.events
        ),
    ]
}

/// `name` as a quoted SQL identifier.
fn quote_identifier(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// An advisory lock key for `parts`; distinct parts give distinct keys
/// (up to 64-bit hash collisions). Every process sharing a database must
/// agree on it: the hash is the stable one.
fn lock_key(parts: &[&str]) -> i64 {
    i64::from_ne_bytes(fnv1a_64_parts(parts).to_ne_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_quoted_and_keys_differ_per_schema_and_purpose() {
        let names = SchemaNames::new("we\"ird");
        assert_eq!(names.events, "\"we\"\"ird\".factstr_events");
        let other = SchemaNames::new("other");
        assert_ne!(names.append_lock_key, other.append_lock_key);
        assert_ne!(names.append_lock_key, names.creation_lock_key);
        assert_ne!(names.durable_lock_key("a"), other.durable_lock_key("a"));
        assert_ne!(names.durable_lock_key("a"), names.durable_lock_key("b"));
        assert_ne!(names.channel, other.channel);
        assert!(names.channel.len() < 63);
    }

    #[test]
    fn lock_keys_are_stable() {
        // Processes of different builds share locks: the key must not change.
        assert_eq!(lock_key(&[]), 0xcbf2_9ce4_8422_2325_u64 as i64);
        assert_eq!(lock_key(&["a"]), lock_key(&["a"]));
        assert_ne!(lock_key(&["ab", "c"]), lock_key(&["a", "bc"]));
    }

    #[test]
    fn lock_keys_and_channels_keep_the_values_every_build_uses() {
        // Processes of different builds share one schema, so these values
        // must never change.
        let public = SchemaNames::new("public");
        assert_eq!(public.append_lock_key, 1_854_022_816_157_159_162);
        assert_eq!(public.creation_lock_key, 2_941_465_083_418_265_126);
        assert_eq!(public.channel, "factstr_d390a02c7a4d1857");
        assert_eq!(public.durable_lock_key("a"), 2_844_180_197_746_222_618);
        let quoted = SchemaNames::new("we\"ird");
        assert_eq!(quoted.append_lock_key, -9_060_728_075_339_385_192);
        assert_eq!(quoted.creation_lock_key, -173_315_700_778_063_876);
        assert_eq!(quoted.channel, "factstr_d177481239245ebd");
        assert_eq!(quoted.durable_lock_key("a"), -3_853_401_773_875_363_192);
    }
}
