//! The PostgreSQL schema and its versioned migrations.
//!
//! `hush_schema` records every applied version (one row each). [`migrate`] runs on every
//! connect, in one transaction under the store's advisory lock (the one every batch takes), so
//! nodes starting together neither race nor migrate under a running writer: it refuses a
//! database written by a newer relay, refuses a database that holds other tables but no hush
//! schema, and applies each missing entry of [`MIGRATIONS`] in order. A crash mid-migration
//! leaves the old version intact. To change the schema, append one entry; never edit one.
//!
//! Version 1 is the whole schema of SQLite version 4 (this backend has no older history), with
//! the same CHECK constraints. Differences: `BYTEA`/`BIGINT`/`BIGSERIAL` types; envelopes are
//! stored uncompressed (`STORAGE EXTERNAL`: they are ciphertext); the trigger-kept totals
//! (`prekey_totals`, `group_totals`) use statement-level triggers with transition tables, so a
//! sweep deleting many rows updates the totals row once, not once per row; the counter tables
//! rewritten by every batch (`mailbox_usage`, `sender_usage`) leave half of each page free so
//! their updates stay on the page (HOT) without touching the index.

use postgres::Transaction;

use crate::store::StoreError;

use super::WRITE_LOCK;

/// The schema version this code reads and writes. A database with a newer one is refused.
pub const SCHEMA_VERSION: i32 = 1;

/// Migration `i` brings the database from version `i` to `i + 1`.
const MIGRATIONS: &[&str] = &[V1];

const _: () = assert!(MIGRATIONS.len() == SCHEMA_VERSION as usize);

/// Version 1: users, prekeys (classical and PQ), KeyPackages, mailboxes and their counters,
/// groups (epoch, members, commit log, shared blobs) and the metrics totals.
///
/// Messages are keyed by (recipient, id): every read and delete names the mailbox, so the one
/// index serves mailbox reads and acks (ids are unique anyway, drawn from one sequence). The
/// `messages_id_seq` sequence must keep the default `CACHE 1`: message ids are allocated
/// under the write lock and must increase in commit order across all nodes (with a per-session
/// cache, two nodes would hand out interleaved ranges).
const V1: &str = "
CREATE TABLE users (
    identity         BYTEA  NOT NULL PRIMARY KEY CHECK (length(identity) = 32),
    name             TEXT   NOT NULL UNIQUE,
    signature        BYTEA  NOT NULL,
    registered_at_ms BIGINT NOT NULL
);
CREATE TABLE signed_prekeys (
    identity   BYTEA  NOT NULL PRIMARY KEY CHECK (length(identity) = 32),
    id         BIGINT NOT NULL CHECK (id BETWEEN 0 AND 4294967295),
    created_at BIGINT NOT NULL,
    public     BYTEA  NOT NULL CHECK (length(public) = 32),
    signature  BYTEA  NOT NULL CHECK (length(signature) = 64)
);
CREATE TABLE one_time_prekeys (
    identity BYTEA  NOT NULL REFERENCES signed_prekeys (identity) ON DELETE CASCADE,
    id       BIGINT NOT NULL CHECK (id BETWEEN 0 AND 4294967295),
    public   BYTEA  NOT NULL CHECK (length(public) = 32),
    PRIMARY KEY (identity, id)
);
CREATE TABLE messages (
    id             BIGSERIAL,
    recipient      BYTEA  NOT NULL CHECK (length(recipient) = 32),
    sender         BYTEA  NOT NULL CHECK (length(sender) = 32),
    received_at_ms BIGINT NOT NULL CHECK (received_at_ms >= 0),
    envelope       BYTEA  NOT NULL,
    blob           BIGINT,
    PRIMARY KEY (recipient, id)
);
ALTER TABLE messages ALTER COLUMN envelope SET STORAGE EXTERNAL;
CREATE INDEX messages_by_age ON messages (received_at_ms);
CREATE TABLE mailbox_usage (
    recipient BYTEA  NOT NULL PRIMARY KEY,
    messages  BIGINT NOT NULL CHECK (messages >= 0),
    bytes     BIGINT NOT NULL CHECK (bytes >= 0)
) WITH (fillfactor = 50);
CREATE TABLE mailbox_totals (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 0),
    messages  BIGINT NOT NULL CHECK (messages >= 0),
    bytes     BIGINT NOT NULL CHECK (bytes >= 0)
);
INSERT INTO mailbox_totals (singleton, messages, bytes) VALUES (0, 0, 0);
CREATE TABLE sender_usage (
    sender BYTEA  NOT NULL PRIMARY KEY,
    bytes  BIGINT NOT NULL CHECK (bytes >= 0)
) WITH (fillfactor = 50);

CREATE TABLE pq_last_resort_prekeys (
    identity          BYTEA  NOT NULL PRIMARY KEY CHECK (length(identity) = 32)
                             REFERENCES users (identity) ON DELETE CASCADE,
    id                BIGINT NOT NULL CHECK (id BETWEEN 2147483648 AND 4294967295),
    encapsulation_key BYTEA  NOT NULL CHECK (length(encapsulation_key) = 1184),
    signature         BYTEA  NOT NULL CHECK (length(signature) = 64)
);
CREATE TABLE pq_one_time_prekeys (
    identity          BYTEA  NOT NULL CHECK (length(identity) = 32)
                             REFERENCES users (identity) ON DELETE CASCADE,
    id                BIGINT NOT NULL CHECK (id BETWEEN 0 AND 2147483647),
    encapsulation_key BYTEA  NOT NULL CHECK (length(encapsulation_key) = 1184),
    signature         BYTEA  NOT NULL CHECK (length(signature) = 64),
    UNIQUE (identity, id)
);
CREATE TABLE prekey_totals (
    singleton      INTEGER PRIMARY KEY CHECK (singleton = 0),
    one_time       BIGINT NOT NULL CHECK (one_time >= 0),
    pq_one_time    BIGINT NOT NULL CHECK (pq_one_time >= 0),
    pq_last_resort BIGINT NOT NULL CHECK (pq_last_resort >= 0)
);
INSERT INTO prekey_totals (singleton, one_time, pq_one_time, pq_last_resort) VALUES (0, 0, 0, 0);

CREATE TABLE key_packages_last_resort (
    identity    BYTEA NOT NULL PRIMARY KEY CHECK (length(identity) = 32)
                      REFERENCES users (identity) ON DELETE CASCADE,
    key_package BYTEA NOT NULL CHECK (length(key_package) BETWEEN 1 AND 2048)
);
CREATE TABLE key_packages_one_time (
    id          BIGSERIAL PRIMARY KEY,
    identity    BYTEA NOT NULL CHECK (length(identity) = 32)
                      REFERENCES users (identity) ON DELETE CASCADE,
    key_package BYTEA NOT NULL CHECK (length(key_package) BETWEEN 1 AND 2048)
);
CREATE INDEX key_packages_by_identity ON key_packages_one_time (identity, id);

CREATE TABLE groups (
    group_id      BYTEA  NOT NULL PRIMARY KEY CHECK (length(group_id) BETWEEN 1 AND 32),
    epoch         BIGINT NOT NULL CHECK (epoch >= 0),
    created_at_ms BIGINT NOT NULL
);
CREATE TABLE group_members (
    group_id BYTEA NOT NULL REFERENCES groups (group_id) ON DELETE CASCADE,
    identity BYTEA NOT NULL CHECK (length(identity) = 32),
    PRIMARY KEY (group_id, identity)
);
CREATE TABLE group_commits (
    group_id       BYTEA  NOT NULL REFERENCES groups (group_id) ON DELETE CASCADE,
    epoch          BIGINT NOT NULL CHECK (epoch >= 0),
    sender         BYTEA  NOT NULL CHECK (length(sender) = 32),
    envelope       BYTEA  NOT NULL,
    received_at_ms BIGINT NOT NULL CHECK (received_at_ms >= 0),
    UNIQUE (group_id, epoch)
);
ALTER TABLE group_commits ALTER COLUMN envelope SET STORAGE EXTERNAL;
CREATE INDEX group_commits_by_age ON group_commits (received_at_ms);
CREATE TABLE group_blobs (
    id             BIGSERIAL PRIMARY KEY,
    sender         BYTEA  NOT NULL CHECK (length(sender) = 32),
    received_at_ms BIGINT NOT NULL CHECK (received_at_ms >= 0),
    refs           BIGINT NOT NULL CHECK (refs >= 0),
    envelope       BYTEA  NOT NULL
);
ALTER TABLE group_blobs ALTER COLUMN envelope SET STORAGE EXTERNAL;
CREATE INDEX group_blobs_by_age ON group_blobs (received_at_ms);
CREATE TABLE group_totals (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 0),
    groups    BIGINT NOT NULL CHECK (groups >= 0),
    members   BIGINT NOT NULL CHECK (members >= 0)
);
INSERT INTO group_totals (singleton, groups, members) VALUES (0, 0, 0);

-- Totals kept by triggers: TG_ARGV = (table, column). Statement-level with transition tables
-- (an upsert that updates an existing row is not an insert, as in SQLite).
CREATE FUNCTION hush_count_rows() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    delta BIGINT;
BEGIN
    IF TG_OP = 'INSERT' THEN
        SELECT count(*) INTO delta FROM added_rows;
    ELSE
        SELECT -count(*) INTO delta FROM removed_rows;
    END IF;
    IF delta <> 0 THEN
        EXECUTE format('UPDATE %I SET %I = %I + $1 WHERE singleton = 0',
                       TG_ARGV[0], TG_ARGV[1], TG_ARGV[1])
            USING delta;
    END IF;
    RETURN NULL;
END
$$;
CREATE TRIGGER one_time_prekey_added AFTER INSERT ON one_time_prekeys
    REFERENCING NEW TABLE AS added_rows FOR EACH STATEMENT
    EXECUTE FUNCTION hush_count_rows('prekey_totals', 'one_time');
CREATE TRIGGER one_time_prekey_removed AFTER DELETE ON one_time_prekeys
    REFERENCING OLD TABLE AS removed_rows FOR EACH STATEMENT
    EXECUTE FUNCTION hush_count_rows('prekey_totals', 'one_time');
CREATE TRIGGER pq_one_time_prekey_added AFTER INSERT ON pq_one_time_prekeys
    REFERENCING NEW TABLE AS added_rows FOR EACH STATEMENT
    EXECUTE FUNCTION hush_count_rows('prekey_totals', 'pq_one_time');
CREATE TRIGGER pq_one_time_prekey_removed AFTER DELETE ON pq_one_time_prekeys
    REFERENCING OLD TABLE AS removed_rows FOR EACH STATEMENT
    EXECUTE FUNCTION hush_count_rows('prekey_totals', 'pq_one_time');
CREATE TRIGGER pq_last_resort_prekey_added AFTER INSERT ON pq_last_resort_prekeys
    REFERENCING NEW TABLE AS added_rows FOR EACH STATEMENT
    EXECUTE FUNCTION hush_count_rows('prekey_totals', 'pq_last_resort');
CREATE TRIGGER pq_last_resort_prekey_removed AFTER DELETE ON pq_last_resort_prekeys
    REFERENCING OLD TABLE AS removed_rows FOR EACH STATEMENT
    EXECUTE FUNCTION hush_count_rows('prekey_totals', 'pq_last_resort');
CREATE TRIGGER group_added AFTER INSERT ON groups
    REFERENCING NEW TABLE AS added_rows FOR EACH STATEMENT
    EXECUTE FUNCTION hush_count_rows('group_totals', 'groups');
CREATE TRIGGER group_removed AFTER DELETE ON groups
    REFERENCING OLD TABLE AS removed_rows FOR EACH STATEMENT
    EXECUTE FUNCTION hush_count_rows('group_totals', 'groups');
CREATE TRIGGER group_member_added AFTER INSERT ON group_members
    REFERENCING NEW TABLE AS added_rows FOR EACH STATEMENT
    EXECUTE FUNCTION hush_count_rows('group_totals', 'members');
CREATE TRIGGER group_member_removed AFTER DELETE ON group_members
    REFERENCING OLD TABLE AS removed_rows FOR EACH STATEMENT
    EXECUTE FUNCTION hush_count_rows('group_totals', 'members');
";

/// Bring the database to [`SCHEMA_VERSION`] (see the module doc). Returns the version found.
pub(super) fn migrate(tx: &mut Transaction<'_>) -> Result<i32, StoreError> {
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&WRITE_LOCK])?;
    let has_schema_table: bool = tx
        .query_one("SELECT to_regclass('hush_schema') IS NOT NULL", &[])?
        .try_get(0)?;
    let found = if has_schema_table {
        let version: Option<i32> = tx
            .query_one("SELECT max(version) FROM hush_schema", &[])?
            .try_get(0)?;
        let version = version.ok_or_else(|| {
            StoreError("malformed hush_schema table in the database: no version".to_owned())
        })?;
        if version > SCHEMA_VERSION {
            return Err(StoreError(format!(
                "database schema version {version} is newer than this relay supports \
                 ({SCHEMA_VERSION}); upgrade the relay"
            )));
        }
        if version < 1 {
            return Err(StoreError(format!(
                "unknown database schema version {version} (this relay supports {SCHEMA_VERSION})"
            )));
        }
        version
    } else {
        let tables: i64 = tx
            .query_one(
                "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = current_schema()",
                &[],
            )?
            .try_get(0)?;
        if tables != 0 {
            return Err(StoreError(
                "not a hush relay database (it has tables but no hush schema)".to_owned(),
            ));
        }
        tx.batch_execute(
            "CREATE TABLE hush_schema (
                 version    INTEGER     NOT NULL PRIMARY KEY CHECK (version >= 1),
                 applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
             )",
        )?;
        0
    };
    let mut version = found;
    for migration in MIGRATIONS.iter().skip(usize::try_from(found).unwrap_or(0)) {
        tx.batch_execute(migration)?;
        version = version.saturating_add(1);
        tx.execute("INSERT INTO hush_schema (version) VALUES ($1)", &[&version])?;
    }
    if version != SCHEMA_VERSION {
        return Err(StoreError(format!(
            "no migration from schema version {version} to {SCHEMA_VERSION}"
        )));
    }
    Ok(found)
}
