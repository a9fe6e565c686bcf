//! The relay database's schema and its explicit, versioned migrations (`PRAGMA user_version`):
//! version 1 had mailboxes and prekeys, version 2 added per-sender byte counters, version 3 added
//! the PQ prekeys of profile `hush-v2`, version 4 adds MLS KeyPackages and groups. A database is migrated forward one step at a time, in
//! the same immediate transaction that checks its version, so a crash mid-migration leaves the
//! old version intact.

use rusqlite::Connection;

use super::StoreError;

/// The schema version this code reads and writes (`PRAGMA user_version`). A database with a
/// newer version is refused rather than misread.
pub const SCHEMA_VERSION: i64 = 4;

/// `PRAGMA application_id` of a hush relay database ("hush" in ASCII), so the relay refuses to
/// adopt some other application's SQLite file.
pub(super) const APPLICATION_ID: i64 = 0x6875_7368;

/// Version 1: users, classical prekeys, mailboxes and their counters.
pub(super) const SCHEMA: &str = "
CREATE TABLE users (
    identity         BLOB    NOT NULL UNIQUE CHECK (length(identity) = 32),
    name             TEXT    NOT NULL UNIQUE,
    signature        BLOB    NOT NULL,
    registered_at_ms INTEGER NOT NULL
);
CREATE TABLE signed_prekeys (
    identity   BLOB    NOT NULL PRIMARY KEY CHECK (length(identity) = 32),
    id         INTEGER NOT NULL CHECK (id BETWEEN 0 AND 4294967295),
    created_at INTEGER NOT NULL,
    public     BLOB    NOT NULL CHECK (length(public) = 32),
    signature  BLOB    NOT NULL CHECK (length(signature) = 64)
) WITHOUT ROWID;
CREATE TABLE one_time_prekeys (
    identity BLOB    NOT NULL REFERENCES signed_prekeys (identity) ON DELETE CASCADE,
    id       INTEGER NOT NULL CHECK (id BETWEEN 0 AND 4294967295),
    public   BLOB    NOT NULL CHECK (length(public) = 32),
    PRIMARY KEY (identity, id)
) WITHOUT ROWID;
CREATE TABLE messages (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    recipient      BLOB    NOT NULL CHECK (length(recipient) = 32),
    sender         BLOB    NOT NULL CHECK (length(sender) = 32),
    received_at_ms INTEGER NOT NULL CHECK (received_at_ms >= 0),
    envelope       BLOB    NOT NULL
);
CREATE INDEX messages_by_recipient ON messages (recipient, id);
CREATE INDEX messages_by_age ON messages (received_at_ms);
CREATE TABLE mailbox_usage (
    recipient BLOB    NOT NULL PRIMARY KEY,
    messages  INTEGER NOT NULL CHECK (messages >= 0),
    bytes     INTEGER NOT NULL CHECK (bytes >= 0)
) WITHOUT ROWID;
CREATE TABLE mailbox_totals (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 0),
    messages  INTEGER NOT NULL CHECK (messages >= 0),
    bytes     INTEGER NOT NULL CHECK (bytes >= 0)
);
INSERT INTO mailbox_totals (singleton, messages, bytes) VALUES (0, 0, 0);
";

/// Version 2: envelope bytes stored per sender, so one sender cannot take the whole storage
/// quota. Also the migration from version 1 (filled from the messages already stored).
pub(super) const SENDER_USAGE: &str = "
CREATE TABLE sender_usage (
    sender BLOB    NOT NULL PRIMARY KEY,
    bytes  INTEGER NOT NULL CHECK (bytes >= 0)
) WITHOUT ROWID;
INSERT INTO sender_usage (sender, bytes)
    SELECT sender, sum(length(envelope)) FROM messages GROUP BY sender
    HAVING sum(length(envelope)) > 0;
";

/// Version 3: `hush-v2` PQ prekeys (ML-KEM-768, 1 184-byte encapsulation keys). At most one
/// last-resort key per identity (a new one replaces it; it is served whenever the one-time stock
/// is empty and never deleted by a fetch) and a capped stock of one-time keys, each popped by
/// exactly one fetch. Both go with the name: deleting the user row deletes them (and the expiry
/// sweep deletes any whose identity holds no name). Ordinary rowid tables, because the rows are
/// large (about 1.4 KB stored). Nothing to fill from older data: a version-2 relay never stored
/// PQ prekeys.
///
/// Also `prekey_totals`, the stock of every prekey table over all identities for the metrics,
/// kept by triggers so that every insert and delete (fetch pops, expiry, `free-name`, foreign-key
/// cascades) updates it in its own transaction; filled here from the classical one-time prekeys
/// already stored. Writers must upsert rather than `INSERT OR REPLACE` (a REPLACE deletes
/// without firing delete triggers).
pub(super) const PQ_PREKEYS: &str = "
CREATE TABLE pq_last_resort_prekeys (
    identity          BLOB    NOT NULL PRIMARY KEY CHECK (length(identity) = 32)
                              REFERENCES users (identity) ON DELETE CASCADE,
    id                INTEGER NOT NULL CHECK (id BETWEEN 2147483648 AND 4294967295),
    encapsulation_key BLOB    NOT NULL CHECK (length(encapsulation_key) = 1184),
    signature         BLOB    NOT NULL CHECK (length(signature) = 64)
);
CREATE TABLE pq_one_time_prekeys (
    identity          BLOB    NOT NULL CHECK (length(identity) = 32)
                              REFERENCES users (identity) ON DELETE CASCADE,
    id                INTEGER NOT NULL CHECK (id BETWEEN 0 AND 2147483647),
    encapsulation_key BLOB    NOT NULL CHECK (length(encapsulation_key) = 1184),
    signature         BLOB    NOT NULL CHECK (length(signature) = 64),
    UNIQUE (identity, id)
);
CREATE TABLE prekey_totals (
    singleton      INTEGER PRIMARY KEY CHECK (singleton = 0),
    one_time       INTEGER NOT NULL CHECK (one_time >= 0),
    pq_one_time    INTEGER NOT NULL CHECK (pq_one_time >= 0),
    pq_last_resort INTEGER NOT NULL CHECK (pq_last_resort >= 0)
);
INSERT INTO prekey_totals (singleton, one_time, pq_one_time, pq_last_resort)
    VALUES (0, (SELECT count(*) FROM one_time_prekeys), 0, 0);
CREATE TRIGGER one_time_prekey_added AFTER INSERT ON one_time_prekeys BEGIN
    UPDATE prekey_totals SET one_time = one_time + 1 WHERE singleton = 0;
END;
CREATE TRIGGER one_time_prekey_removed AFTER DELETE ON one_time_prekeys BEGIN
    UPDATE prekey_totals SET one_time = one_time - 1 WHERE singleton = 0;
END;
CREATE TRIGGER pq_one_time_prekey_added AFTER INSERT ON pq_one_time_prekeys BEGIN
    UPDATE prekey_totals SET pq_one_time = pq_one_time + 1 WHERE singleton = 0;
END;
CREATE TRIGGER pq_one_time_prekey_removed AFTER DELETE ON pq_one_time_prekeys BEGIN
    UPDATE prekey_totals SET pq_one_time = pq_one_time - 1 WHERE singleton = 0;
END;
CREATE TRIGGER pq_last_resort_prekey_added AFTER INSERT ON pq_last_resort_prekeys BEGIN
    UPDATE prekey_totals SET pq_last_resort = pq_last_resort + 1 WHERE singleton = 0;
END;
CREATE TRIGGER pq_last_resort_prekey_removed AFTER DELETE ON pq_last_resort_prekeys BEGIN
    UPDATE prekey_totals SET pq_last_resort = pq_last_resort - 1 WHERE singleton = 0;
END;
";

/// Version 4: MLS KeyPackages and the relay as MLS delivery service. Nothing to fill from older
/// data: a version-3 relay stored neither. Existing mail keeps `blob` NULL.
///
/// - KeyPackages (opaque bytes) go with the name, like PQ prekeys: one last-resort KeyPackage
///   per identity, replaced on publish, and a capped stock of one-time ones, popped oldest first.
/// - `groups` holds each group's epoch (the compare-and-set target of commits), `group_members`
///   the identities mail is fanned out to, `group_commits` a log of accepted commits for
///   `GroupSync` (kept for the message TTL, at most a configured number per group).
/// - A group message, commit or Welcome is stored once in `group_blobs` and each recipient's
///   mailbox row references it (`messages.blob`, with an empty `envelope`); `refs` counts those
///   rows, and the store deletes the blob with its last reference (ack or expiry). No foreign
///   key: its check on every blob delete would scan `messages`, which has no index on `blob`.
/// - `group_totals` (groups, members) for the metrics, kept by triggers like `prekey_totals`.
pub(super) const GROUPS: &str = "
CREATE TABLE key_packages_last_resort (
    identity    BLOB NOT NULL PRIMARY KEY CHECK (length(identity) = 32)
                     REFERENCES users (identity) ON DELETE CASCADE,
    key_package BLOB NOT NULL CHECK (length(key_package) BETWEEN 1 AND 2048)
);
CREATE TABLE key_packages_one_time (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    identity    BLOB NOT NULL CHECK (length(identity) = 32)
                     REFERENCES users (identity) ON DELETE CASCADE,
    key_package BLOB NOT NULL CHECK (length(key_package) BETWEEN 1 AND 2048)
);
CREATE INDEX key_packages_by_identity ON key_packages_one_time (identity, id);
CREATE TABLE groups (
    group_id      BLOB    NOT NULL PRIMARY KEY CHECK (length(group_id) BETWEEN 1 AND 32),
    epoch         INTEGER NOT NULL CHECK (epoch >= 0),
    created_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE group_members (
    group_id BLOB NOT NULL REFERENCES groups (group_id) ON DELETE CASCADE,
    identity BLOB NOT NULL CHECK (length(identity) = 32),
    PRIMARY KEY (group_id, identity)
) WITHOUT ROWID;
CREATE TABLE group_commits (
    group_id       BLOB    NOT NULL REFERENCES groups (group_id) ON DELETE CASCADE,
    epoch          INTEGER NOT NULL CHECK (epoch >= 0),
    sender         BLOB    NOT NULL CHECK (length(sender) = 32),
    envelope       BLOB    NOT NULL,
    received_at_ms INTEGER NOT NULL CHECK (received_at_ms >= 0),
    UNIQUE (group_id, epoch)
);
CREATE INDEX group_commits_by_age ON group_commits (received_at_ms);
CREATE TABLE group_blobs (
    id             INTEGER PRIMARY KEY AUTOINCREMENT,
    sender         BLOB    NOT NULL CHECK (length(sender) = 32),
    received_at_ms INTEGER NOT NULL CHECK (received_at_ms >= 0),
    refs           INTEGER NOT NULL CHECK (refs >= 0),
    envelope       BLOB    NOT NULL
);
CREATE INDEX group_blobs_by_age ON group_blobs (received_at_ms);
ALTER TABLE messages ADD COLUMN blob INTEGER;
CREATE TABLE group_totals (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 0),
    groups    INTEGER NOT NULL CHECK (groups >= 0),
    members   INTEGER NOT NULL CHECK (members >= 0)
);
INSERT INTO group_totals (singleton, groups, members) VALUES (0, 0, 0);
CREATE TRIGGER group_added AFTER INSERT ON groups BEGIN
    UPDATE group_totals SET groups = groups + 1 WHERE singleton = 0;
END;
CREATE TRIGGER group_removed AFTER DELETE ON groups BEGIN
    UPDATE group_totals SET groups = groups - 1 WHERE singleton = 0;
END;
CREATE TRIGGER group_member_added AFTER INSERT ON group_members BEGIN
    UPDATE group_totals SET members = members + 1 WHERE singleton = 0;
END;
CREATE TRIGGER group_member_removed AFTER DELETE ON group_members BEGIN
    UPDATE group_totals SET members = members - 1 WHERE singleton = 0;
END;
";

/// Refuse a database from another application or from a newer relay. Returns the version.
pub(super) fn check_header(conn: &Connection) -> Result<i64, StoreError> {
    let version: i64 = conn.pragma_query_value(None, "user_version", |row| row.get(0))?;
    let application_id: i64 = conn.pragma_query_value(None, "application_id", |row| row.get(0))?;
    if version == 0 {
        let objects: i64 = conn.query_row(
            "SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'",
            [],
            |row| row.get(0),
        )?;
        if objects != 0 || application_id != 0 {
            return Err(StoreError(
                "not a hush relay database (it has contents but no hush schema)".to_owned(),
            ));
        }
        return Ok(0);
    }
    if application_id != APPLICATION_ID {
        return Err(StoreError(format!(
            "not a hush relay database (application_id {application_id:#x})"
        )));
    }
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
    Ok(version)
}

/// Create the schema in a fresh database, or migrate an older one step by step to
/// [`SCHEMA_VERSION`]. The check is repeated inside the write transaction so two processes
/// opening a file at once cannot both create or migrate it.
pub(super) fn create_schema(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        let found = check_header(conn)?;
        let mut version = found;
        if version == 0 {
            conn.execute_batch(SCHEMA)?;
            conn.pragma_update(None, "application_id", APPLICATION_ID)?;
            version = 1;
        }
        if version == 1 {
            conn.execute_batch(SENDER_USAGE)?;
            version = 2;
        }
        if version == 2 {
            conn.execute_batch(PQ_PREKEYS)?;
            version = 3;
        }
        if version == 3 {
            conn.execute_batch(GROUPS)?;
            version = 4;
        }
        if version != SCHEMA_VERSION {
            return Err(StoreError(format!(
                "no migration from schema version {version} to {SCHEMA_VERSION}"
            )));
        }
        if found != SCHEMA_VERSION {
            conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        }
        Ok::<(), StoreError>(())
    })();
    match result {
        Ok(()) => conn.execute_batch("COMMIT")?,
        Err(err) => {
            // The original error matters more than a failed rollback.
            let _ = conn.execute_batch("ROLLBACK");
            return Err(err);
        }
    }
    Ok(())
}
