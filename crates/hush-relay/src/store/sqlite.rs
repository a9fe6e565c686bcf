//! The embedded relay store: [`SqliteStore`] keeps usernames, prekeys and mailboxes in one SQLite
//! file in WAL mode with `synchronous=FULL`, so a batch that [`Store::apply`] reports as
//! committed survives SIGKILL and power loss.
//!
//! One writer connection (behind a mutex) applies each batch in a single `BEGIN IMMEDIATE`
//! transaction; a small pool of read-only connections serves [`Store::pending`] and the lookups,
//! so readers never wait for a batch to commit (WAL gives them a consistent snapshot).
//! Per-mailbox and global message/byte counters are kept in the same transactions as the
//! messages themselves, so quota checks and [`Store::totals`] are single-row reads.
//!
//! Everything read back from disk is checked (blob lengths, integer ranges, identity keys); a
//! malformed row is a [`StoreError`], never a panic. Errors never contain envelope bytes or keys.

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hush_proto::{IdentityPublicKey, OneTimePrekey, PrekeyBundle, SignedPrekey, X25519PublicKey};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use super::{
    IdentityBytes, MessageId, Store, StoreError, StoreTotals, StoredMessage, WriteOp, WriteResult,
};

/// The schema version this code reads and writes (`PRAGMA user_version`). A database with a
/// newer version is refused rather than misread.
pub const SCHEMA_VERSION: i64 = 2;

/// `PRAGMA application_id` of a hush relay database ("hush" in ASCII), so the relay refuses to
/// adopt some other application's SQLite file.
/// Page cache of the writer connection, in KiB (SQLite's negative `cache_size` unit).
const WRITER_CACHE_KIB: i64 = 64 * 1024;
/// Page cache of each reader connection, in KiB.
const READER_CACHE_KIB: i64 = 16 * 1024;
const APPLICATION_ID: i64 = 0x6875_7368;

/// How long a connection waits for a lock held by another connection before failing.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Read-only connections in the pool.
const READERS: usize = 4;

/// Prepared statements cached per connection (the store uses fewer than this).
const STATEMENT_CACHE: usize = 32;

/// Bytes of WAL kept after a checkpoint; larger files are truncated back to this.
const JOURNAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

const SCHEMA: &str = "
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
const SENDER_USAGE: &str = "
CREATE TABLE sender_usage (
    sender BLOB    NOT NULL PRIMARY KEY,
    bytes  INTEGER NOT NULL CHECK (bytes >= 0)
) WITHOUT ROWID;
INSERT INTO sender_usage (sender, bytes)
    SELECT sender, sum(length(envelope)) FROM messages GROUP BY sender
    HAVING sum(length(envelope)) > 0;
";

/// The default [`Store`]: one SQLite database file, durable on every committed batch.
#[derive(Debug)]
pub struct SqliteStore {
    /// Read-only connections, so lookups and mailbox reads proceed while a batch commits.
    /// (Declared before `writer` so they close first and the writer, closing last,
    /// checkpoints and removes the WAL file.)
    readers: Vec<Mutex<Connection>>,
    /// The only connection that writes; held for the whole of a batch.
    writer: Mutex<Connection>,
    /// Round-robin start for blocking on a reader when all are busy.
    next_reader: AtomicUsize,
}

impl From<rusqlite::Error> for StoreError {
    fn from(err: rusqlite::Error) -> Self {
        // rusqlite's messages name the failing SQL or constraint, never bound parameter values.
        StoreError(format!("sqlite: {err}"))
    }
}

impl SqliteStore {
    /// Open (creating if missing) the relay database at `path`: WAL, `synchronous=FULL`,
    /// foreign keys on, schema created on first use. Refuses a file written by a newer relay
    /// or by another application.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let writer = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        writer.busy_timeout(BUSY_TIMEOUT)?;
        // Refuse foreign or newer files before changing anything in them (journal mode).
        check_header(&writer)?;

        let mode: String =
            writer.pragma_update_and_check(None, "journal_mode", "WAL", |row| row.get(0))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError(format!(
                "cannot put the database in WAL mode (journal_mode is {mode})"
            )));
        }
        writer.pragma_update(None, "synchronous", "FULL")?;
        let synchronous: i64 = writer.pragma_query_value(None, "synchronous", |row| row.get(0))?;
        if synchronous < 2 {
            return Err(StoreError(format!(
                "cannot set synchronous=FULL (it is {synchronous})"
            )));
        }
        writer.pragma_update(None, "foreign_keys", true)?;
        writer.pragma_update(None, "journal_size_limit", JOURNAL_SIZE_LIMIT)?;
        // A page cache large enough for the hot B-tree pages of busy mailboxes: with SQLite's
        // 2 MiB default the commit thread re-read pages from the OS for every batch.
        writer.pragma_update(None, "cache_size", -WRITER_CACHE_KIB)?;
        writer.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        create_schema(&writer)?;

        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            readers.push(Mutex::new(open_reader(path)?));
        }
        Ok(Self {
            readers,
            writer: Mutex::new(writer),
            next_reader: AtomicUsize::new(0),
        })
    }

    /// The writer connection, outside any transaction.
    fn writer(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        // A panic while holding the lock cannot leave a half-applied batch behind (an
        // unfinished transaction rolls back when dropped), so a poisoned lock is still usable;
        // roll back anyway if the connection is somehow still inside a transaction.
        let conn = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        if !conn.is_autocommit() {
            conn.execute_batch("ROLLBACK")?;
        }
        Ok(conn)
    }

    /// A free reader if there is one, else wait for one in round-robin order.
    fn reader(&self) -> Result<MutexGuard<'_, Connection>, StoreError> {
        for reader in &self.readers {
            match reader.try_lock() {
                Ok(conn) => return Ok(conn),
                Err(TryLockError::Poisoned(poisoned)) => return Ok(poisoned.into_inner()),
                Err(TryLockError::WouldBlock) => {}
            }
        }
        let count = self.readers.len().max(1);
        let start = self.next_reader.fetch_add(1, Ordering::Relaxed) % count;
        let reader = self
            .readers
            .get(start)
            .ok_or_else(|| StoreError("no reader connections".to_owned()))?;
        Ok(reader.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl SqliteStore {
    /// Operator action: free `name` so that a new identity can register it (a user who lost
    /// their keys and reinstalled). Deletes the registration and the old identity's prekeys, so
    /// no session can start to the old key any more; its mailbox is left to expire with the
    /// TTL. Existing contacts will see a key change when the new identity writes to them.
    /// Returns the identity that held the name, or `None` if the name was not registered.
    /// Safe while a relay runs on the same file (one immediate transaction); the running
    /// relay still accepts envelopes addressed to the old identity until it restarts.
    pub fn free_name(&self, name: &str) -> Result<Option<IdentityBytes>, StoreError> {
        let mut conn = self.writer()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let identity: Option<Vec<u8>> = tx
            .query_row(
                "DELETE FROM users WHERE name = ?1 RETURNING identity",
                params![name],
                |row| row.get(0),
            )
            .optional()?;
        let Some(identity) = identity else {
            return Ok(None);
        };
        // One-time prekeys go with their signed prekey (ON DELETE CASCADE).
        tx.execute(
            "DELETE FROM signed_prekeys WHERE identity = ?1",
            params![identity.as_slice()],
        )?;
        tx.commit()?;
        blob_array(&identity, "user identity").map(Some)
    }
}

impl Store for SqliteStore {
    fn apply(&self, ops: &[WriteOp]) -> Result<Vec<WriteResult>, StoreError> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        let now_ms = unix_now_ms();
        let mut conn = self.writer()?;
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut results = Vec::with_capacity(ops.len());
        let mut usage = UsageDeltas::default();
        for op in ops {
            // Any error drops `tx`, which rolls the whole batch back.
            results.push(apply_op(&tx, op, now_ms, &mut usage)?);
        }
        // Mailbox counters are written once per mailbox per batch, not once per message.
        usage.flush(&tx)?;
        tx.commit()?;
        Ok(results)
    }

    fn pending(
        &self,
        recipient: &IdentityBytes,
        after: MessageId,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredMessage>, StoreError> {
        // Ids are positive i64s, so nothing can come after an id beyond i64::MAX.
        let Ok(after) = i64::try_from(after) else {
            return Ok(Vec::new());
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let conn = self.reader()?;
        let mut stmt = conn.prepare_cached(
            "SELECT id, sender, received_at_ms, envelope FROM messages
             WHERE recipient = ?1 AND id > ?2 ORDER BY id LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![recipient.as_slice(), after, limit], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, Vec<u8>>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, Vec<u8>>(3)?,
            ))
        })?;
        let mut messages = Vec::new();
        let mut bytes = 0usize;
        // Rows are read one at a time: those after the byte bound are never loaded.
        for row in rows {
            let (id, sender, received_at_ms, envelope) = row?;
            bytes = bytes.saturating_add(envelope.len());
            messages.push(StoredMessage {
                id: non_negative(id, "message id")?,
                sender: blob_array(&sender, "message sender")?,
                received_at_ms: non_negative(received_at_ms, "message time")?,
                envelope,
            });
            if bytes >= max_bytes {
                break;
            }
        }
        Ok(messages)
    }

    fn identity_of(&self, name: &str) -> Result<Option<IdentityBytes>, StoreError> {
        let conn = self.reader()?;
        let identity: Option<Vec<u8>> = conn
            .prepare_cached("SELECT identity FROM users WHERE name = ?1")?
            .query_row(params![name], |row| row.get(0))
            .optional()?;
        identity
            .map(|bytes| blob_array(&bytes, "user identity"))
            .transpose()
    }

    fn name_of(&self, identity: &IdentityBytes) -> Result<Option<String>, StoreError> {
        let conn = self.reader()?;
        let name = conn
            .prepare_cached("SELECT name FROM users WHERE identity = ?1")?
            .query_row(params![identity.as_slice()], |row| row.get(0))
            .optional()?;
        Ok(name)
    }

    fn totals(&self) -> Result<StoreTotals, StoreError> {
        let conn = self.reader()?;
        let (messages, bytes): (i64, i64) = conn
            .prepare_cached("SELECT messages, bytes FROM mailbox_totals WHERE singleton = 0")?
            .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))?;
        Ok(StoreTotals {
            messages: non_negative(messages, "total message count")?,
            bytes: non_negative(bytes, "total byte count")?,
        })
    }
}

/// Open one read-only connection to an existing relay database.
fn open_reader(path: &Path) -> Result<Connection, StoreError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )?;
    conn.busy_timeout(BUSY_TIMEOUT)?;
    conn.pragma_update(None, "query_only", true)?;
    conn.pragma_update(None, "cache_size", -READER_CACHE_KIB)?;
    conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
    Ok(conn)
}

/// Refuse a database from another application or from a newer relay. Returns the version.
fn check_header(conn: &Connection) -> Result<i64, StoreError> {
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
    if version != SCHEMA_VERSION && version != 1 {
        return Err(StoreError(format!(
            "unknown database schema version {version} (this relay supports {SCHEMA_VERSION})"
        )));
    }
    Ok(version)
}

/// Create the schema in a fresh database. The check is repeated inside the write transaction so
/// two processes opening a new file at once cannot both create it.
fn create_schema(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch("BEGIN IMMEDIATE")?;
    let result = (|| {
        match check_header(conn)? {
            0 => {
                conn.execute_batch(SCHEMA)?;
                conn.execute_batch(SENDER_USAGE)?;
                conn.pragma_update(None, "application_id", APPLICATION_ID)?;
                conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            }
            1 => {
                conn.execute_batch(SENDER_USAGE)?;
                conn.pragma_update(None, "user_version", SCHEMA_VERSION)?;
            }
            _ => {}
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

/// Apply one op inside the batch transaction. Refusals (`NameTaken`, `MailboxFull`, ...)
/// change nothing; an `Err` aborts the whole batch.
fn apply_op(
    conn: &Connection,
    op: &WriteOp,
    now_ms: u64,
    usage: &mut UsageDeltas,
) -> Result<WriteResult, StoreError> {
    match op {
        WriteOp::Register {
            name,
            identity,
            signature,
        } => register(conn, name, identity, signature, now_ms),
        WriteOp::PublishPrekeys {
            identity,
            signed_prekey,
            one_time,
            max_stock,
        } => publish_prekeys(conn, identity, signed_prekey, one_time, *max_stock),
        WriteOp::FetchBundle { name, pop_one_time } => fetch_bundle(conn, name, *pop_one_time),
        WriteOp::Enqueue {
            recipient,
            sender,
            envelope,
            received_at_ms,
            max_messages,
            max_bytes,
            max_total_bytes,
            max_sender_bytes,
        } => enqueue(
            conn,
            usage,
            recipient,
            sender,
            envelope,
            *received_at_ms,
            Quota {
                max_messages: *max_messages,
                max_bytes: *max_bytes,
                max_total_bytes: *max_total_bytes,
                max_sender_bytes: *max_sender_bytes,
            },
        ),
        WriteOp::Ack { recipient, ids } => ack(conn, usage, recipient, ids),
        WriteOp::Expire { before_ms } => expire(conn, usage, *before_ms),
    }
}

/// First come, first served; an identity keeps the one name it registered.
fn register(
    conn: &Connection,
    name: &str,
    identity: &IdentityBytes,
    signature: &[u8],
    now_ms: u64,
) -> Result<WriteResult, StoreError> {
    let current: Option<String> = conn
        .prepare_cached("SELECT name FROM users WHERE identity = ?1")?
        .query_row(params![identity.as_slice()], |row| row.get(0))
        .optional()?;
    if let Some(current) = current {
        return Ok(if current == name {
            WriteResult::Registered
        } else {
            WriteResult::AlreadyRegistered { name: current }
        });
    }
    if conn
        .prepare_cached("SELECT 1 FROM users WHERE name = ?1")?
        .exists(params![name])?
    {
        return Ok(WriteResult::NameTaken);
    }
    conn.prepare_cached(
        "INSERT INTO users (identity, name, signature, registered_at_ms) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        identity.as_slice(),
        name,
        signature,
        saturating_i64(now_ms)
    ])?;
    Ok(WriteResult::Registered)
}

/// Replace the signed prekey and add one-time prekeys, unless the identity holds no name or
/// that would grow the one-time stock past `max_stock`. A publish that adds no new one-time prekey id (a signed prekey
/// rotation, or re-sending ids already held) is never refused, even if the stock is already
/// above a since-lowered limit.
fn publish_prekeys(
    conn: &Connection,
    identity: &IdentityBytes,
    signed_prekey: &SignedPrekey,
    one_time: &[OneTimePrekey],
    max_stock: u32,
) -> Result<WriteResult, StoreError> {
    // Checked in the same transaction as the insert, so a name freed meanwhile cannot leave
    // fresh keys behind (and the expiry sweep removes any that an older relay stored).
    if !conn
        .prepare_cached("SELECT 1 FROM users WHERE identity = ?1")?
        .exists(params![identity.as_slice()])?
    {
        return Ok(WriteResult::NotRegistered);
    }
    let stock = one_time_stock(conn, identity)?;
    let mut held =
        conn.prepare_cached("SELECT 1 FROM one_time_prekeys WHERE identity = ?1 AND id = ?2")?;
    let mut added: u64 = 0;
    let ids: BTreeSet<u32> = one_time.iter().map(|key| key.id).collect();
    for id in ids {
        if !held.exists(params![identity.as_slice(), i64::from(id)])? {
            added = added.saturating_add(1);
        }
    }
    if added > 0 && stock.saturating_add(added) > u64::from(max_stock) {
        return Ok(WriteResult::TooManyPrekeys);
    }

    conn.prepare_cached(
        "INSERT INTO signed_prekeys (identity, id, created_at, public, signature)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (identity) DO UPDATE SET
             id = excluded.id, created_at = excluded.created_at,
             public = excluded.public, signature = excluded.signature",
    )?
    .execute(params![
        identity.as_slice(),
        i64::from(signed_prekey.id),
        u64_bits_to_i64(signed_prekey.created_at),
        signed_prekey.public_key.as_bytes().as_slice(),
        signed_prekey.signature.as_slice(),
    ])?;
    let mut insert = conn.prepare_cached(
        "INSERT OR REPLACE INTO one_time_prekeys (identity, id, public) VALUES (?1, ?2, ?3)",
    )?;
    for key in one_time {
        insert.execute(params![
            identity.as_slice(),
            i64::from(key.id),
            key.public_key.as_bytes().as_slice(),
        ])?;
    }
    let remaining = one_time_stock(conn, identity)?;
    Ok(WriteResult::PrekeysStored {
        one_time_remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
    })
}

/// One-time prekeys held for `identity`.
fn one_time_stock(conn: &Connection, identity: &IdentityBytes) -> Result<u64, StoreError> {
    let count: i64 = conn
        .prepare_cached("SELECT count(*) FROM one_time_prekeys WHERE identity = ?1")?
        .query_row(params![identity.as_slice()], |row| row.get(0))?;
    non_negative(count, "one-time prekey count")
}

/// The user's signed prekey plus (if `pop_one_time`) the lowest-id one-time prekey, which is
/// deleted here, in the batch transaction, so no two fetches ever receive the same one.
fn fetch_bundle(
    conn: &Connection,
    name: &str,
    pop_one_time: bool,
) -> Result<WriteResult, StoreError> {
    let row = conn
        .prepare_cached(
            "SELECT u.identity, s.id, s.created_at, s.public, s.signature
             FROM users AS u JOIN signed_prekeys AS s ON s.identity = u.identity
             WHERE u.name = ?1",
        )?
        .query_row(params![name], |row| {
            Ok((
                row.get::<_, Vec<u8>>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, Vec<u8>>(3)?,
                row.get::<_, Vec<u8>>(4)?,
            ))
        })
        .optional()?;
    let Some((identity, spk_id, spk_created_at, spk_public, spk_signature)) = row else {
        return Ok(WriteResult::UnknownUser);
    };
    let identity: IdentityBytes = blob_array(&identity, "user identity")?;
    let identity_key = IdentityPublicKey::from_bytes(&identity)
        .map_err(|err| StoreError(format!("stored identity key is invalid: {err}")))?;
    let signed_prekey = SignedPrekey {
        id: u32_column(spk_id, "signed prekey id")?,
        created_at: i64_bits_to_u64(spk_created_at),
        public_key: X25519PublicKey::from_bytes(blob_array(&spk_public, "signed prekey")?),
        signature: blob_array(&spk_signature, "signed prekey signature")?,
    };

    if !pop_one_time {
        return Ok(WriteResult::Bundle(PrekeyBundle {
            identity_key,
            signed_prekey,
            one_time_prekey: None,
            pq_prekey: None,
        }));
    }
    let popped = conn
        .prepare_cached(
            "DELETE FROM one_time_prekeys
             WHERE identity = ?1
               AND id = (SELECT min(id) FROM one_time_prekeys WHERE identity = ?1)
             RETURNING id, public",
        )?
        .query_row(params![identity.as_slice()], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
        })
        .optional()?;
    let one_time_prekey = match popped {
        Some((id, public)) => Some(OneTimePrekey {
            id: u32_column(id, "one-time prekey id")?,
            public_key: X25519PublicKey::from_bytes(blob_array(&public, "one-time prekey")?),
        }),
        None => None,
    };
    Ok(WriteResult::Bundle(PrekeyBundle {
        identity_key,
        signed_prekey,
        one_time_prekey,
        pq_prekey: None,
    }))
}

/// The limits an enqueue is checked against (the quota fields of `WriteOp::Enqueue`).
struct Quota {
    max_messages: u32,
    max_bytes: u64,
    max_total_bytes: u64,
    max_sender_bytes: u64,
}

/// Above this share of the storage quota (in tenths), only light senders may store more.
const HEADROOM_TENTHS: u64 = 9;

impl Quota {
    /// The most bytes `sender` may have stored once this envelope is in: its share, or a
    /// quarter of it once the relay is nearly full, so a sender with little stored can still
    /// send while heavy senders wait for their mail to be fetched.
    fn sender_limit(&self, total_after: u64) -> u64 {
        if total_after > self.max_total_bytes / 10 * HEADROOM_TENTHS {
            self.max_sender_bytes / 4
        } else {
            self.max_sender_bytes
        }
    }
}

/// Store an envelope if the mailbox has room for one more message and its bytes, all
/// mailboxes together have room for its bytes, and the sender is within its share.
fn enqueue(
    conn: &Connection,
    usage: &mut UsageDeltas,
    recipient: &IdentityBytes,
    sender: &IdentityBytes,
    envelope: &[u8],
    received_at_ms: u64,
    quota: Quota,
) -> Result<WriteResult, StoreError> {
    let (messages, bytes) = usage.current(conn, recipient.as_slice())?;
    let messages = non_negative(messages, "mailbox message count")?;
    let bytes = non_negative(bytes, "mailbox byte count")?;
    let len = envelope.len();
    let len_u64 = u64::try_from(len).map_err(|_| too_large())?;
    let len_i64 = i64::try_from(len).map_err(|_| too_large())?;
    if messages >= u64::from(quota.max_messages)
        || bytes
            .checked_add(len_u64)
            .is_none_or(|total| total > quota.max_bytes)
    {
        return Ok(WriteResult::MailboxFull);
    }
    let all_bytes = non_negative(usage.total_bytes(conn)?, "total byte count")?;
    if all_bytes
        .checked_add(len_u64)
        .is_none_or(|total| total > quota.max_total_bytes)
    {
        return Ok(WriteResult::StorageFull);
    }
    let sender_bytes = non_negative(usage.sender_bytes(conn, sender)?, "sender byte count")?;
    let limit = quota.sender_limit(all_bytes.saturating_add(len_u64));
    if sender_bytes
        .checked_add(len_u64)
        .is_none_or(|total| total > limit)
    {
        return Ok(WriteResult::SenderQuota);
    }

    conn.prepare_cached(
        "INSERT INTO messages (recipient, sender, received_at_ms, envelope)
         VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![
        recipient.as_slice(),
        sender.as_slice(),
        saturating_i64(received_at_ms),
        envelope,
    ])?;
    let id = non_negative(conn.last_insert_rowid(), "message id")?;
    usage.add(conn, recipient.as_slice(), 1, len_i64)?;
    usage.add_sender(conn, sender, len_i64)?;
    Ok(WriteResult::Stored(id))
}

/// Delete acknowledged messages from the recipient's own mailbox only.
fn ack(
    conn: &Connection,
    usage: &mut UsageDeltas,
    recipient: &IdentityBytes,
    ids: &[MessageId],
) -> Result<WriteResult, StoreError> {
    let mut delete = conn.prepare_cached(
        "DELETE FROM messages WHERE id = ?1 AND recipient = ?2
         RETURNING length(envelope), sender",
    )?;
    let mut deleted: i64 = 0;
    let mut bytes: i64 = 0;
    for &id in ids {
        // No stored id exceeds i64::MAX, so such an id is simply not in this mailbox.
        let Ok(id) = i64::try_from(id) else {
            continue;
        };
        let row: Option<(i64, Vec<u8>)> = delete
            .query_row(params![id, recipient.as_slice()], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .optional()?;
        if let Some((len, sender)) = row {
            deleted = deleted.saturating_add(1);
            bytes = bytes.saturating_add(len);
            usage.add_sender(conn, &sender, -len)?;
        }
    }
    if deleted > 0 {
        usage.add(conn, recipient.as_slice(), -deleted, -bytes)?;
    }
    Ok(WriteResult::Acked(
        u32::try_from(deleted).unwrap_or(u32::MAX),
    ))
}

/// Delete every message received before `before_ms`, keeping the counters in step.
fn expire(
    conn: &Connection,
    usage: &mut UsageDeltas,
    before_ms: u64,
) -> Result<WriteResult, StoreError> {
    // Keys of identities without a name: nobody can fetch them by name, and keeping them
    // would let anyone store keys for free. One-time prekeys go with them (ON DELETE CASCADE).
    conn.prepare_cached(
        "DELETE FROM signed_prekeys WHERE identity NOT IN (SELECT identity FROM users)",
    )?
    .execute([])?;
    let before = saturating_i64(before_ms);
    let mut per_mailbox = Vec::new();
    {
        let mut stmt = conn.prepare_cached(
            "SELECT recipient, count(*), sum(length(envelope)) FROM messages
             WHERE received_at_ms < ?1 GROUP BY recipient",
        )?;
        let rows = stmt.query_map(params![before], |row| {
            Ok((
                row.get::<_, Vec<u8>>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, i64>(2)?,
            ))
        })?;
        for row in rows {
            per_mailbox.push(row?);
        }
    }
    if per_mailbox.is_empty() {
        return Ok(WriteResult::Expired(0));
    }
    let mut per_sender = Vec::new();
    {
        let mut stmt = conn.prepare_cached(
            "SELECT sender, sum(length(envelope)) FROM messages
             WHERE received_at_ms < ?1 GROUP BY sender",
        )?;
        let rows = stmt.query_map(params![before], |row| {
            Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, i64>(1)?))
        })?;
        for row in rows {
            per_sender.push(row?);
        }
    }
    let deleted = conn
        .prepare_cached("DELETE FROM messages WHERE received_at_ms < ?1")?
        .execute(params![before])?;
    let mut counted: i64 = 0;
    for (recipient, messages, bytes) in &per_mailbox {
        counted = counted.saturating_add(*messages);
        usage.add(conn, recipient, -*messages, -*bytes)?;
    }
    for (sender, bytes) in &per_sender {
        usage.add_sender(conn, sender, -*bytes)?;
    }
    let deleted = u64::try_from(deleted).map_err(|_| too_large())?;
    if u64::try_from(counted).ok() != Some(deleted) {
        return Err(StoreError(format!(
            "expiry deleted {deleted} messages but counted {counted}"
        )));
    }
    Ok(WriteResult::Expired(deleted))
}

/// Mailbox counters as changed by the ops of one batch: read once per mailbox, kept in memory,
/// written once by [`UsageDeltas::flush`] before the batch commits.
#[derive(Default)]
struct UsageDeltas {
    /// recipient -> counters as stored before the batch, and the change so far.
    mailboxes: std::collections::HashMap<Vec<u8>, (Counters, Counters)>,
    /// Total bytes in all mailboxes before the batch (read on first use).
    stored_total_bytes: Option<i64>,
    /// Change of the total bytes so far in this batch.
    total_bytes_delta: i64,
    /// sender -> envelope bytes stored before the batch, and the change so far.
    senders: std::collections::HashMap<Vec<u8>, (i64, i64)>,
}

/// (messages, bytes).
type Counters = (i64, i64);

impl UsageDeltas {
    fn entry(
        &mut self,
        conn: &Connection,
        recipient: &[u8],
    ) -> Result<&mut (Counters, Counters), StoreError> {
        if !self.mailboxes.contains_key(recipient) {
            let stored: Option<(i64, i64)> = conn
                .prepare_cached("SELECT messages, bytes FROM mailbox_usage WHERE recipient = ?1")?
                .query_row(params![recipient], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()?;
            self.mailboxes
                .insert(recipient.to_vec(), (stored.unwrap_or((0, 0)), (0, 0)));
        }
        self.mailboxes
            .get_mut(recipient)
            .ok_or_else(|| StoreError("mailbox usage cache".to_owned()))
    }

    /// The mailbox's counters including this batch's changes so far.
    fn current(&mut self, conn: &Connection, recipient: &[u8]) -> Result<(i64, i64), StoreError> {
        let ((m, b), (dm, db)) = *self.entry(conn, recipient)?;
        Ok((m.saturating_add(dm), b.saturating_add(db)))
    }

    fn add(
        &mut self,
        conn: &Connection,
        recipient: &[u8],
        messages: i64,
        bytes: i64,
    ) -> Result<(), StoreError> {
        let (_, delta) = self.entry(conn, recipient)?;
        delta.0 = delta.0.saturating_add(messages);
        delta.1 = delta.1.saturating_add(bytes);
        self.total_bytes_delta = self.total_bytes_delta.saturating_add(bytes);
        Ok(())
    }

    fn sender_entry(
        &mut self,
        conn: &Connection,
        sender: &[u8],
    ) -> Result<&mut (i64, i64), StoreError> {
        if !self.senders.contains_key(sender) {
            let stored: Option<i64> = conn
                .prepare_cached("SELECT bytes FROM sender_usage WHERE sender = ?1")?
                .query_row(params![sender], |row| row.get(0))
                .optional()?;
            self.senders
                .insert(sender.to_vec(), (stored.unwrap_or(0), 0));
        }
        self.senders
            .get_mut(sender)
            .ok_or_else(|| StoreError("sender usage cache".to_owned()))
    }

    /// Envelope bytes `sender` has stored, including this batch's changes so far.
    fn sender_bytes(&mut self, conn: &Connection, sender: &[u8]) -> Result<i64, StoreError> {
        let (stored, delta) = *self.sender_entry(conn, sender)?;
        Ok(stored.saturating_add(delta))
    }

    fn add_sender(
        &mut self,
        conn: &Connection,
        sender: &[u8],
        bytes: i64,
    ) -> Result<(), StoreError> {
        let (_, delta) = self.sender_entry(conn, sender)?;
        *delta = delta.saturating_add(bytes);
        Ok(())
    }

    /// Bytes in all mailboxes including this batch's changes so far.
    fn total_bytes(&mut self, conn: &Connection) -> Result<i64, StoreError> {
        let stored = match self.stored_total_bytes {
            Some(bytes) => bytes,
            None => {
                let bytes: i64 = conn
                    .prepare_cached("SELECT bytes FROM mailbox_totals WHERE singleton = 0")?
                    .query_row([], |row| row.get(0))?;
                self.stored_total_bytes = Some(bytes);
                bytes
            }
        };
        Ok(stored.saturating_add(self.total_bytes_delta))
    }

    /// Write every changed mailbox's counters and the totals. A counter driven below zero
    /// violates a CHECK constraint, failing the batch instead of hiding the inconsistency.
    fn flush(self, conn: &Connection) -> Result<(), StoreError> {
        for (sender, (stored, delta)) in self.senders {
            if delta == 0 {
                continue;
            }
            let bytes = stored.saturating_add(delta);
            if bytes == 0 {
                conn.prepare_cached("DELETE FROM sender_usage WHERE sender = ?1")?
                    .execute(params![sender])?;
            } else {
                conn.prepare_cached(
                    "INSERT INTO sender_usage (sender, bytes) VALUES (?1, ?2)
                     ON CONFLICT (sender) DO UPDATE SET bytes = excluded.bytes",
                )?
                .execute(params![sender, bytes])?;
            }
        }
        let (mut total_messages, mut total_bytes) = (0i64, 0i64);
        for (recipient, ((m, b), (dm, db))) in self.mailboxes {
            if dm == 0 && db == 0 {
                continue;
            }
            total_messages = total_messages.saturating_add(dm);
            total_bytes = total_bytes.saturating_add(db);
            let (messages, bytes) = (m.saturating_add(dm), b.saturating_add(db));
            if messages == 0 && bytes == 0 {
                // Empty mailboxes need no row.
                conn.prepare_cached("DELETE FROM mailbox_usage WHERE recipient = ?1")?
                    .execute(params![recipient])?;
            } else {
                conn.prepare_cached(
                    "INSERT INTO mailbox_usage (recipient, messages, bytes) VALUES (?1, ?2, ?3)
                     ON CONFLICT (recipient) DO UPDATE SET
                         messages = excluded.messages, bytes = excluded.bytes",
                )?
                .execute(params![recipient, messages, bytes])?;
            }
        }
        if total_messages == 0 && total_bytes == 0 {
            return Ok(());
        }
        let updated = conn
            .prepare_cached(
                "UPDATE mailbox_totals SET messages = messages + ?1, bytes = bytes + ?2
                 WHERE singleton = 0",
            )?
            .execute(params![total_messages, total_bytes])?;
        if updated != 1 {
            return Err(StoreError("mailbox_totals row is missing".to_owned()));
        }
        Ok(())
    }
}

/// A fixed-size blob read from disk, or an error naming what was malformed (not its bytes).
fn blob_array<const N: usize>(bytes: &[u8], what: &str) -> Result<[u8; N], StoreError> {
    <[u8; N]>::try_from(bytes).map_err(|_| {
        StoreError(format!(
            "malformed {what} in the database: {} bytes, expected {N}",
            bytes.len()
        ))
    })
}

/// A stored integer that must not be negative.
fn non_negative(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value)
        .map_err(|_| StoreError(format!("malformed {what} in the database: {value}")))
}

/// A stored integer that must fit a `u32`.
fn u32_column(value: i64, what: &str) -> Result<u32, StoreError> {
    u32::try_from(value)
        .map_err(|_| StoreError(format!("malformed {what} in the database: {value}")))
}

/// Times and cut-offs beyond `i64::MAX` ms (292 million years) are clamped.
fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A `u64` that must round-trip exactly (a signed prekey's `created_at` is whatever the owner
/// chose), stored in SQLite's `i64` by reinterpreting its bits.
fn u64_bits_to_i64(value: u64) -> i64 {
    i64::from_ne_bytes(value.to_ne_bytes())
}

/// Inverse of [`u64_bits_to_i64`].
fn i64_bits_to_u64(value: i64) -> u64 {
    u64::from_ne_bytes(value.to_ne_bytes())
}

fn too_large() -> StoreError {
    StoreError("value too large for the database".to_owned())
}

/// Wall-clock time for `registered_at_ms` (0 if the clock is before 1970).
fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hush_proto::IdentityKeyPair;
    use std::sync::Arc;
    use tempfile::TempDir;

    const MAX_MESSAGES: u32 = 100;
    const MAX_BYTES: u64 = 1 << 20;
    const MAX_TOTAL_BYTES: u64 = 1 << 30;

    fn open() -> (TempDir, SqliteStore) {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("relay.db")).unwrap();
        (dir, store)
    }

    fn reopen(dir: &TempDir) -> SqliteStore {
        SqliteStore::open(&dir.path().join("relay.db")).unwrap()
    }

    /// A valid Ed25519 identity key derived from a one-byte seed.
    fn ident(n: u8) -> IdentityBytes {
        *IdentityKeyPair::from_seed(&[n; 32]).public_key().as_bytes()
    }

    fn spk(id: u32) -> SignedPrekey {
        SignedPrekey {
            id,
            created_at: 1_700_000_000 + u64::from(id),
            public_key: X25519PublicKey::from_bytes([id as u8; 32]),
            signature: [0xA5; 64],
        }
    }

    fn otp(id: u32) -> OneTimePrekey {
        OneTimePrekey {
            id,
            public_key: X25519PublicKey::from_bytes([(id as u8).wrapping_add(100); 32]),
        }
    }

    fn register(name: &str, identity: IdentityBytes) -> WriteOp {
        WriteOp::Register {
            name: name.to_owned(),
            identity,
            signature: vec![1; 64],
        }
    }

    fn publish(identity: IdentityBytes, spk_id: u32, ids: &[u32], max_stock: u32) -> WriteOp {
        WriteOp::PublishPrekeys {
            identity,
            signed_prekey: spk(spk_id),
            one_time: ids.iter().map(|&id| otp(id)).collect(),
            max_stock,
        }
    }

    fn fetch(name: &str) -> WriteOp {
        WriteOp::FetchBundle {
            name: name.to_owned(),
            pop_one_time: true,
        }
    }

    fn enqueue_op(recipient: IdentityBytes, envelope: &[u8], at: u64) -> WriteOp {
        WriteOp::Enqueue {
            recipient,
            sender: ident(99),
            envelope: envelope.to_vec(),
            received_at_ms: at,
            max_messages: MAX_MESSAGES,
            max_bytes: MAX_BYTES,
            max_total_bytes: MAX_TOTAL_BYTES,
            max_sender_bytes: MAX_TOTAL_BYTES,
        }
    }

    /// The O(1) counters agree with the messages they summarise, and empty mailboxes have no
    /// usage row.
    fn check_counters(dir: &TempDir) {
        let raw = Connection::open(dir.path().join("relay.db")).unwrap();
        let mut usage: Vec<(Vec<u8>, i64, i64)> = raw
            .prepare("SELECT recipient, messages, bytes FROM mailbox_usage ORDER BY recipient")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let actual: Vec<(Vec<u8>, i64, i64)> = raw
            .prepare(
                "SELECT recipient, count(*), sum(length(envelope)) FROM messages
                 GROUP BY recipient ORDER BY recipient",
            )
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        usage.sort();
        assert_eq!(usage, actual);
        let totals: (i64, i64) = raw
            .query_row("SELECT messages, bytes FROM mailbox_totals", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        let sums = actual
            .iter()
            .fold((0, 0), |(m, b), (_, dm, db)| (m + dm, b + db));
        assert_eq!(totals, sums);
        let per_sender = |sql: &str| -> Vec<(Vec<u8>, i64)> {
            raw.prepare(sql)
                .unwrap()
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        };
        assert_eq!(
            per_sender("SELECT sender, bytes FROM sender_usage ORDER BY sender"),
            per_sender(
                "SELECT sender, sum(length(envelope)) FROM messages
                 GROUP BY sender HAVING sum(length(envelope)) > 0 ORDER BY sender"
            )
        );
    }

    fn one(store: &SqliteStore, op: WriteOp) -> WriteResult {
        let mut results = store.apply(&[op]).unwrap();
        assert_eq!(results.len(), 1);
        results.pop().unwrap()
    }

    fn stored(result: WriteResult) -> MessageId {
        match result {
            WriteResult::Stored(id) => id,
            other => panic!("expected Stored, got {other:?}"),
        }
    }

    fn bundle(result: WriteResult) -> PrekeyBundle {
        match result {
            WriteResult::Bundle(bundle) => bundle,
            other => panic!("expected Bundle, got {other:?}"),
        }
    }

    #[test]
    fn register_is_first_come_first_served() {
        let (_dir, store) = open();
        let (alice, bob) = (ident(1), ident(2));
        assert_eq!(
            one(&store, register("alice", alice)),
            WriteResult::Registered
        );
        // Same identity, same name again: idempotent.
        assert_eq!(
            one(&store, register("alice", alice)),
            WriteResult::Registered
        );
        // Another identity wants the name.
        assert_eq!(one(&store, register("alice", bob)), WriteResult::NameTaken);
        // The identity wants a second name.
        assert_eq!(
            one(&store, register("alicia", alice)),
            WriteResult::AlreadyRegistered {
                name: "alice".to_owned()
            }
        );
        // Identity check comes first even if the other name is taken too.
        assert_eq!(one(&store, register("bob", bob)), WriteResult::Registered);
        assert_eq!(
            one(&store, register("bob", alice)),
            WriteResult::AlreadyRegistered {
                name: "alice".to_owned()
            }
        );
        assert_eq!(store.identity_of("alice").unwrap(), Some(alice));
        assert_eq!(store.identity_of("bob").unwrap(), Some(bob));
        assert_eq!(store.identity_of("alicia").unwrap(), None);
        assert_eq!(store.name_of(&alice).unwrap().as_deref(), Some("alice"));
        assert_eq!(store.name_of(&ident(3)).unwrap(), None);
    }

    #[test]
    fn fetch_pops_distinct_one_time_prekeys_then_none() {
        let (_dir, store) = open();
        let alice = ident(1);
        assert_eq!(
            one(&store, register("alice", alice)),
            WriteResult::Registered
        );
        assert_eq!(
            one(&store, publish(alice, 7, &[5, 3, 9], 100)),
            WriteResult::PrekeysStored {
                one_time_remaining: 3
            }
        );
        let mut seen = Vec::new();
        for _ in 0..3 {
            let b = bundle(one(&store, fetch("alice")));
            assert_eq!(b.identity_key.as_bytes(), &alice);
            assert_eq!(b.signed_prekey, spk(7));
            let opk = b.one_time_prekey.unwrap();
            assert_eq!(opk, otp(opk.id));
            seen.push(opk.id);
        }
        // Lowest id first, each handed out once.
        assert_eq!(seen, vec![3, 5, 9]);
        let b = bundle(one(&store, fetch("alice")));
        assert_eq!(b.one_time_prekey, None);
        assert_eq!(b.signed_prekey, spk(7));

        // Two fetches in one batch also get distinct keys.
        one(&store, publish(alice, 7, &[1, 2], 100));
        let results = store.apply(&[fetch("alice"), fetch("alice")]).unwrap();
        let ids: Vec<u32> = results
            .into_iter()
            .map(|r| bundle(r).one_time_prekey.unwrap().id)
            .collect();
        assert_eq!(ids, vec![1, 2]);
    }

    #[test]
    fn fetch_unknown_user_or_no_prekeys() {
        let (_dir, store) = open();
        assert_eq!(one(&store, fetch("nobody")), WriteResult::UnknownUser);
        one(&store, register("alice", ident(1)));
        assert_eq!(one(&store, fetch("alice")), WriteResult::UnknownUser);
        // An identity without a name cannot store prekeys at all.
        assert_eq!(
            one(&store, publish(ident(2), 1, &[1], 10)),
            WriteResult::NotRegistered
        );
        assert_eq!(one(&store, fetch("bob")), WriteResult::UnknownUser);
        one(&store, register("bob", ident(2)));
        assert_eq!(one(&store, fetch("bob")), WriteResult::UnknownUser);
        one(&store, publish(ident(2), 1, &[1], 10));
        assert_eq!(
            bundle(one(&store, fetch("bob"))).one_time_prekey,
            Some(otp(1))
        );
    }

    #[test]
    fn publish_replaces_signed_prekey_and_one_time_ids() {
        let (_dir, store) = open();
        let alice = ident(1);
        one(&store, register("alice", alice));
        one(&store, publish(alice, 1, &[1, 2], 10));
        // New signed prekey, id 2 replaced (not double-counted), id 3 added.
        let replacement = OneTimePrekey {
            id: 2,
            public_key: X25519PublicKey::from_bytes([0xEE; 32]),
        };
        let op = WriteOp::PublishPrekeys {
            identity: alice,
            signed_prekey: SignedPrekey {
                created_at: u64::MAX, // must round-trip exactly
                ..spk(2)
            },
            one_time: vec![replacement, otp(3)],
            max_stock: 10,
        };
        assert_eq!(
            one(&store, op),
            WriteResult::PrekeysStored {
                one_time_remaining: 3
            }
        );
        let b = bundle(one(&store, fetch("alice")));
        assert_eq!(b.signed_prekey.id, 2);
        assert_eq!(b.signed_prekey.created_at, u64::MAX);
        assert_eq!(b.one_time_prekey, Some(otp(1)));
        let b = bundle(one(&store, fetch("alice")));
        assert_eq!(b.one_time_prekey, Some(replacement));
    }

    #[test]
    fn too_many_prekeys_changes_nothing() {
        let (_dir, store) = open();
        let alice = ident(1);
        one(&store, register("alice", alice));
        assert_eq!(
            one(&store, publish(alice, 1, &[1, 2, 3], 4)),
            WriteResult::PrekeysStored {
                one_time_remaining: 3
            }
        );
        // 3 held + 2 new > 4: refused, signed prekey not replaced either.
        assert_eq!(
            one(&store, publish(alice, 2, &[4, 5], 4)),
            WriteResult::TooManyPrekeys
        );
        // Exactly filling the stock is fine; re-sending held ids does not count.
        assert_eq!(
            one(&store, publish(alice, 1, &[3, 4], 4)),
            WriteResult::PrekeysStored {
                one_time_remaining: 4
            }
        );
        // A rotation without new one-time prekeys is allowed even above a lowered limit.
        assert_eq!(
            one(&store, publish(alice, 3, &[], 2)),
            WriteResult::PrekeysStored {
                one_time_remaining: 4
            }
        );
        let b = bundle(one(&store, fetch("alice")));
        assert_eq!(b.signed_prekey, spk(3));
        assert_eq!(b.one_time_prekey, Some(otp(1)));
        // A single publish larger than the stock.
        one(&store, register("bob", ident(2)));
        assert_eq!(
            one(&store, publish(ident(2), 1, &[1, 2, 3], 2)),
            WriteResult::TooManyPrekeys
        );
    }

    #[test]
    fn enqueue_pending_order_and_cursor() {
        let (dir, store) = open();
        let (alice, bob) = (ident(1), ident(2));
        let mut ids = Vec::new();
        for i in 0..5u8 {
            ids.push(stored(one(
                &store,
                enqueue_op(alice, &[i; 10], 1000 + u64::from(i)),
            )));
            one(&store, enqueue_op(bob, &[0xB0; 3], 1000));
        }
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        let all = store.pending(&alice, 0, 100, usize::MAX).unwrap();
        assert_eq!(all.iter().map(|m| m.id).collect::<Vec<_>>(), ids);
        assert_eq!(all[2].envelope, vec![2; 10]);
        assert_eq!(all[2].sender, ident(99));
        assert_eq!(all[2].received_at_ms, 1002);
        let page = store.pending(&alice, 0, 2, usize::MAX).unwrap();
        assert_eq!(page.iter().map(|m| m.id).collect::<Vec<_>>(), &ids[..2]);
        let rest = store.pending(&alice, page[1].id, 100, usize::MAX).unwrap();
        assert_eq!(rest.iter().map(|m| m.id).collect::<Vec<_>>(), &ids[2..]);
        assert!(store
            .pending(&alice, ids[4], 100, usize::MAX)
            .unwrap()
            .is_empty());
        assert!(store.pending(&alice, 0, 0, usize::MAX).unwrap().is_empty());
        assert!(store
            .pending(&alice, u64::MAX, 10, usize::MAX)
            .unwrap()
            .is_empty());
        assert!(store
            .pending(&ident(3), 0, 10, usize::MAX)
            .unwrap()
            .is_empty());
        assert_eq!(store.pending(&bob, 0, 100, usize::MAX).unwrap().len(), 5);
        // A page ends with the message that reaches the byte bound; one message always comes.
        let by_bytes = store.pending(&alice, 0, 100, 25).unwrap();
        assert_eq!(by_bytes.iter().map(|m| m.id).collect::<Vec<_>>(), &ids[..3]);
        assert_eq!(store.pending(&alice, 0, 100, 1).unwrap().len(), 1);
        check_counters(&dir);
    }

    #[test]
    fn ack_deletes_only_own_messages() {
        let (dir, store) = open();
        let (alice, bob) = (ident(1), ident(2));
        let a1 = stored(one(&store, enqueue_op(alice, b"a1", 1)));
        let a2 = stored(one(&store, enqueue_op(alice, b"a2", 1)));
        let b1 = stored(one(&store, enqueue_op(bob, b"b1", 1)));
        // Bob acks his own, Alice's, a duplicate, and ids that do not exist.
        assert_eq!(
            one(
                &store,
                WriteOp::Ack {
                    recipient: bob,
                    ids: vec![a1, b1, b1, a2, 12345, u64::MAX],
                }
            ),
            WriteResult::Acked(1)
        );
        assert!(store.pending(&bob, 0, 10, usize::MAX).unwrap().is_empty());
        assert_eq!(store.pending(&alice, 0, 10, usize::MAX).unwrap().len(), 2);
        assert_eq!(
            one(
                &store,
                WriteOp::Ack {
                    recipient: alice,
                    ids: vec![a2],
                }
            ),
            WriteResult::Acked(1)
        );
        let left = store.pending(&alice, 0, 10, usize::MAX).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].id, a1);
        assert_eq!(
            store.totals().unwrap(),
            StoreTotals {
                messages: 1,
                bytes: 2
            }
        );
        check_counters(&dir);
    }

    #[test]
    fn quota_by_messages() {
        let (dir, store) = open();
        let alice = ident(1);
        let op = |n: u8| WriteOp::Enqueue {
            recipient: alice,
            sender: ident(2),
            envelope: vec![n; 4],
            received_at_ms: 5,
            max_messages: 3,
            max_bytes: MAX_BYTES,
            max_total_bytes: MAX_TOTAL_BYTES,
            max_sender_bytes: MAX_TOTAL_BYTES,
        };
        let first = stored(one(&store, op(0)));
        stored(one(&store, op(1)));
        stored(one(&store, op(2)));
        assert_eq!(one(&store, op(3)), WriteResult::MailboxFull);
        assert_eq!(store.pending(&alice, 0, 10, usize::MAX).unwrap().len(), 3);
        // Other mailboxes are unaffected.
        stored(one(&store, enqueue_op(ident(3), b"x", 5)));
        // Acking frees room.
        one(
            &store,
            WriteOp::Ack {
                recipient: alice,
                ids: vec![first],
            },
        );
        stored(one(&store, op(4)));
        assert_eq!(one(&store, op(5)), WriteResult::MailboxFull);
        check_counters(&dir);
    }

    /// The global quota counts every mailbox, including writes earlier in the same batch, and
    /// refuses with StorageFull (not MailboxFull) while each mailbox is far from its own quota.
    #[test]
    fn global_storage_quota_spans_mailboxes_and_batches() {
        let (dir, store) = open();
        let op = |to: u8, len: usize| WriteOp::Enqueue {
            recipient: ident(to),
            sender: ident(2),
            envelope: vec![7; len],
            received_at_ms: 5,
            max_messages: MAX_MESSAGES,
            max_bytes: MAX_BYTES,
            max_total_bytes: 100,
            max_sender_bytes: MAX_TOTAL_BYTES,
        };
        stored(one(&store, op(10, 60)));
        let results = store.apply(&[op(11, 30), op(12, 11), op(12, 10)]).unwrap();
        assert!(matches!(results[0], WriteResult::Stored(_)));
        assert_eq!(results[1], WriteResult::StorageFull);
        assert!(matches!(results[2], WriteResult::Stored(_)));
        assert_eq!(one(&store, op(13, 1)), WriteResult::StorageFull);
        assert_eq!(store.totals().unwrap().bytes, 100);
        check_counters(&dir);
    }

    /// One sender cannot take the whole storage quota: it is refused at its share while
    /// another sender still stores; acks and expiry give the share back; and above 90 % of
    /// the quota only senders below a quarter of their share are accepted.
    #[test]
    fn each_sender_has_a_share_of_the_storage_quota() {
        let (dir, store) = open();
        let op = |from: u8, to: u8, len: usize, at: u64| WriteOp::Enqueue {
            recipient: ident(to),
            sender: ident(from),
            envelope: vec![7; len],
            received_at_ms: at,
            max_messages: MAX_MESSAGES,
            max_bytes: MAX_BYTES,
            max_total_bytes: 1000,
            max_sender_bytes: 400,
        };
        // Sender 1 fills its share across mailboxes and batches.
        let results = store
            .apply(&[op(1, 10, 200, 5), op(1, 11, 150, 5), op(1, 12, 51, 5)])
            .unwrap();
        let first = stored(results[0].clone());
        assert!(matches!(results[1], WriteResult::Stored(_)));
        assert_eq!(results[2], WriteResult::SenderQuota);
        assert_eq!(
            one(&store, op(1, 12, 50, 5)),
            WriteResult::Stored(first + 2)
        );
        assert_eq!(one(&store, op(1, 13, 1, 5)), WriteResult::SenderQuota);
        // Another sender is not affected.
        stored(one(&store, op(2, 10, 400, 9)));
        check_counters(&dir);
        // An ack gives the sender its bytes back (the recipient acks, not the sender).
        assert_eq!(
            one(
                &store,
                WriteOp::Ack {
                    recipient: ident(10),
                    ids: vec![first]
                }
            ),
            WriteResult::Acked(1)
        );
        stored(one(&store, op(1, 13, 150, 9)));
        check_counters(&dir);
        // Sender 4 brings the relay to 900 of 1000 bytes. Beyond 90 %, only senders below a
        // quarter of their share (100) are accepted: not sender 1 (at 350), nor sender 4 (at
        // 150, below its share), but sender 3, with nothing stored.
        stored(one(&store, op(4, 16, 150, 9)));
        assert_eq!(one(&store, op(1, 14, 1, 9)), WriteResult::SenderQuota);
        assert_eq!(one(&store, op(4, 14, 1, 9)), WriteResult::SenderQuota);
        stored(one(&store, op(3, 14, 40, 9)));
        // Expiry gives shares back too: sender 1's two messages from t=5 (200 bytes) go.
        assert_eq!(
            one(&store, WriteOp::Expire { before_ms: 6 }),
            WriteResult::Expired(2)
        );
        stored(one(&store, op(1, 15, 10, 9)));
        check_counters(&dir);
        // The shares survive a restart: sender 2 is still at its full share.
        drop(store);
        let store = reopen(&dir);
        assert_eq!(one(&store, op(2, 15, 1, 9)), WriteResult::SenderQuota);
        stored(one(&store, op(5, 15, 1, 9)));
        check_counters(&dir);
    }

    /// A version-1 database (no per-sender counters) is migrated on open: the counters are
    /// filled from the messages it holds, so its heavy senders are not given a fresh share.
    #[test]
    fn version_1_databases_get_sender_counters_from_their_messages() {
        let (dir, store) = open();
        let op = |from: u8, len: usize| enqueue_op(ident(9), &vec![1; len], u64::from(from));
        for (from, len) in [(1, 30), (2, 5), (1, 20)] {
            let mut op = op(from, len);
            if let WriteOp::Enqueue { sender, .. } = &mut op {
                *sender = ident(from);
            }
            stored(one(&store, op));
        }
        drop(store);
        let raw = Connection::open(dir.path().join("relay.db")).unwrap();
        raw.execute_batch("DROP TABLE sender_usage; PRAGMA user_version = 1;")
            .unwrap();
        drop(raw);
        let store = reopen(&dir);
        drop(store);
        let raw = Connection::open(dir.path().join("relay.db")).unwrap();
        let version: i64 = raw
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
        let sender_1: i64 = raw
            .query_row(
                "SELECT bytes FROM sender_usage WHERE sender = ?1",
                params![ident(1).as_slice()],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(sender_1, 50);
        check_counters(&dir);
    }

    /// Prekeys are stored only for an identity that holds a name, and the expiry sweep removes
    /// those of identities without one (stored by an older relay, or a name freed later).
    #[test]
    fn prekeys_need_a_name_and_nameless_ones_expire() {
        let (dir, store) = open();
        let (alice, ghost) = (ident(1), ident(2));
        assert_eq!(
            one(&store, publish(ghost, 1, &[1, 2], 10)),
            WriteResult::NotRegistered
        );
        one(&store, register("alice", alice));
        one(&store, publish(alice, 1, &[1, 2], 10));
        // A row left by an older relay that accepted keys without a name.
        let raw = Connection::open(dir.path().join("relay.db")).unwrap();
        raw.execute_batch("PRAGMA foreign_keys = ON").unwrap();
        raw.execute(
            "INSERT INTO signed_prekeys (identity, id, created_at, public, signature)
             VALUES (?1, 1, 0, zeroblob(32), zeroblob(64))",
            params![ghost.as_slice()],
        )
        .unwrap();
        raw.execute(
            "INSERT INTO one_time_prekeys (identity, id, public) VALUES (?1, 1, zeroblob(32))",
            params![ghost.as_slice()],
        )
        .unwrap();
        one(&store, WriteOp::Expire { before_ms: 0 });
        let count = |table: &str, who: IdentityBytes| -> i64 {
            raw.query_row(
                &format!("SELECT count(*) FROM {table} WHERE identity = ?1"),
                params![who.as_slice()],
                |r| r.get(0),
            )
            .unwrap()
        };
        assert_eq!(count("signed_prekeys", ghost), 0);
        assert_eq!(count("one_time_prekeys", ghost), 0);
        assert_eq!(count("signed_prekeys", alice), 1);
        assert_eq!(count("one_time_prekeys", alice), 2);
    }

    #[test]
    fn quota_by_bytes() {
        let (dir, store) = open();
        let alice = ident(1);
        let op = |len: usize| WriteOp::Enqueue {
            recipient: alice,
            sender: ident(2),
            envelope: vec![7; len],
            received_at_ms: 5,
            max_messages: MAX_MESSAGES,
            max_bytes: 100,
            max_total_bytes: MAX_TOTAL_BYTES,
            max_sender_bytes: MAX_TOTAL_BYTES,
        };
        stored(one(&store, op(60)));
        assert_eq!(one(&store, op(41)), WriteResult::MailboxFull);
        // Exactly reaching the limit is allowed.
        stored(one(&store, op(40)));
        assert_eq!(one(&store, op(1)), WriteResult::MailboxFull);
        assert_eq!(
            store.totals().unwrap(),
            StoreTotals {
                messages: 2,
                bytes: 100
            }
        );
        // A single envelope larger than the whole quota, into an empty mailbox.
        let big = WriteOp::Enqueue {
            recipient: ident(3),
            sender: ident(2),
            envelope: vec![0; 101],
            received_at_ms: 5,
            max_messages: MAX_MESSAGES,
            max_bytes: 100,
            max_total_bytes: MAX_TOTAL_BYTES,
            max_sender_bytes: MAX_TOTAL_BYTES,
        };
        assert_eq!(one(&store, big), WriteResult::MailboxFull);
        check_counters(&dir);
    }

    #[test]
    fn expire_deletes_old_messages_and_updates_usage() {
        let (dir, store) = open();
        let (alice, bob) = (ident(1), ident(2));
        stored(one(&store, enqueue_op(alice, &[1; 10], 100)));
        stored(one(&store, enqueue_op(bob, &[2; 20], 150)));
        let kept = stored(one(&store, enqueue_op(alice, &[3; 30], 200)));
        stored(one(&store, enqueue_op(bob, &[4; 40], 200)));
        assert_eq!(
            one(&store, WriteOp::Expire { before_ms: 200 }),
            WriteResult::Expired(2)
        );
        assert_eq!(
            store.totals().unwrap(),
            StoreTotals {
                messages: 2,
                bytes: 70
            }
        );
        let left = store.pending(&alice, 0, 10, usize::MAX).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].id, kept);
        assert_eq!(
            one(&store, WriteOp::Expire { before_ms: 200 }),
            WriteResult::Expired(0)
        );
        assert_eq!(
            one(
                &store,
                WriteOp::Expire {
                    before_ms: u64::MAX
                }
            ),
            WriteResult::Expired(2)
        );
        assert_eq!(store.totals().unwrap(), StoreTotals::default());
        // Per-mailbox counters went back to zero: a full quota is available again.
        let op = WriteOp::Enqueue {
            recipient: alice,
            sender: bob,
            envelope: vec![0; 50],
            received_at_ms: 300,
            max_messages: 1,
            max_bytes: 50,
            max_total_bytes: MAX_TOTAL_BYTES,
            max_sender_bytes: MAX_TOTAL_BYTES,
        };
        stored(one(&store, op));
        check_counters(&dir);
    }

    #[test]
    fn batch_results_in_order_and_all_visible() {
        let (dir, store) = open();
        let (alice, bob) = (ident(1), ident(2));
        let results = store
            .apply(&[
                register("alice", alice),
                publish(alice, 1, &[1, 2], 10),
                register("alice", bob),
                fetch("alice"),
                enqueue_op(bob, b"hello", 10),
                enqueue_op(bob, b"again", 11),
                WriteOp::Ack {
                    recipient: bob,
                    ids: vec![1],
                },
            ])
            .unwrap();
        assert_eq!(results.len(), 7);
        assert_eq!(results[0], WriteResult::Registered);
        assert_eq!(
            results[1],
            WriteResult::PrekeysStored {
                one_time_remaining: 2
            }
        );
        assert_eq!(results[2], WriteResult::NameTaken);
        assert_eq!(bundle(results[3].clone()).one_time_prekey, Some(otp(1)));
        assert_eq!(results[4], WriteResult::Stored(1));
        assert_eq!(results[5], WriteResult::Stored(2));
        assert_eq!(results[6], WriteResult::Acked(1));
        assert_eq!(store.identity_of("alice").unwrap(), Some(alice));
        let left = store.pending(&bob, 0, 10, usize::MAX).unwrap();
        assert_eq!(left.len(), 1);
        assert_eq!(left[0].envelope, b"again");
        assert!(store.apply(&[]).unwrap().is_empty());
        check_counters(&dir);
    }

    #[test]
    fn failing_batch_changes_nothing() {
        let (dir, store) = open();
        let alice = ident(1);
        one(&store, register("alice", alice));
        one(&store, publish(alice, 1, &[1], 10));
        // Corrupt alice's identity so FetchBundle fails mid-batch (a low-order point).
        let raw = Connection::open(dir.path().join("relay.db")).unwrap();
        let bad = [0u8; 32];
        raw.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
        raw.execute(
            "UPDATE users SET identity = ?1 WHERE name = 'alice'",
            params![bad.as_slice()],
        )
        .unwrap();
        raw.execute(
            "UPDATE signed_prekeys SET identity = ?1",
            params![bad.as_slice()],
        )
        .unwrap();
        raw.execute(
            "UPDATE one_time_prekeys SET identity = ?1",
            params![bad.as_slice()],
        )
        .unwrap();
        drop(raw);
        let err = store
            .apply(&[
                enqueue_op(ident(2), b"lost", 1),
                register("bob", ident(2)),
                fetch("alice"),
            ])
            .unwrap_err();
        assert!(err.0.contains("identity key"), "{err}");
        assert!(store
            .pending(&ident(2), 0, 10, usize::MAX)
            .unwrap()
            .is_empty());
        assert_eq!(store.identity_of("bob").unwrap(), None);
        assert_eq!(store.totals().unwrap(), StoreTotals::default());
        // The one-time prekey was not popped.
        let raw = Connection::open(dir.path().join("relay.db")).unwrap();
        let n: i64 = raw
            .query_row("SELECT count(*) FROM one_time_prekeys", [], |r| r.get(0))
            .unwrap();
        assert_eq!(n, 1);
        // The store still works afterwards.
        assert_eq!(
            one(&store, register("bob", ident(2))),
            WriteResult::Registered
        );
        check_counters(&dir);
    }

    #[test]
    fn malformed_rows_are_errors_not_panics() {
        let (dir, store) = open();
        let alice = ident(1);
        one(&store, register("alice", alice));
        one(&store, publish(alice, 1, &[1], 10));
        stored(one(&store, enqueue_op(alice, b"x", 1)));
        let raw = Connection::open(dir.path().join("relay.db")).unwrap();
        raw.execute_batch(
            "PRAGMA ignore_check_constraints = ON;
             UPDATE signed_prekeys SET public = x'0102';
             UPDATE messages SET sender = x'03';",
        )
        .unwrap();
        drop(raw);
        let err = store.apply(&[fetch("alice")]).unwrap_err();
        assert!(err.0.contains("signed prekey"), "{err}");
        let err = store.pending(&alice, 0, 10, usize::MAX).unwrap_err();
        assert!(err.0.contains("message sender"), "{err}");
    }

    #[test]
    fn data_survives_reopen_and_ids_are_never_reused() {
        let (dir, store) = open();
        let (alice, bob) = (ident(1), ident(2));
        one(&store, register("alice", alice));
        one(&store, publish(alice, 4, &[10, 11], 10));
        let first = stored(one(&store, enqueue_op(bob, b"one", 1)));
        let second = stored(one(&store, enqueue_op(bob, b"two", 2)));
        one(
            &store,
            WriteOp::Ack {
                recipient: bob,
                ids: vec![second],
            },
        );
        drop(store);

        let store = reopen(&dir);
        assert_eq!(store.identity_of("alice").unwrap(), Some(alice));
        assert_eq!(store.name_of(&alice).unwrap().as_deref(), Some("alice"));
        let msgs = store.pending(&bob, 0, 10, usize::MAX).unwrap();
        assert_eq!(msgs.len(), 1);
        assert_eq!(msgs[0].id, first);
        assert_eq!(msgs[0].envelope, b"one");
        assert_eq!(
            store.totals().unwrap(),
            StoreTotals {
                messages: 1,
                bytes: 3
            }
        );
        let b = bundle(one(&store, fetch("alice")));
        assert_eq!(b.signed_prekey, spk(4));
        assert_eq!(b.one_time_prekey, Some(otp(10)));
        // The acked (deleted) highest id is not handed out again.
        let third = stored(one(&store, enqueue_op(bob, b"three", 3)));
        assert!(third > second);
        drop(store);
        // A clean close checkpoints everything into the main file.
        assert!(!dir.path().join("relay.db-wal").exists());

        let store = reopen(&dir);
        assert_eq!(
            bundle(one(&store, fetch("alice"))).one_time_prekey,
            Some(otp(11))
        );
        assert_eq!(
            store.pending(&bob, first, 10, usize::MAX).unwrap()[0].id,
            third
        );
        check_counters(&dir);
    }

    #[test]
    fn totals_track_enqueue_ack_expire() {
        let (dir, store) = open();
        assert_eq!(store.totals().unwrap(), StoreTotals::default());
        let a = stored(one(&store, enqueue_op(ident(1), &[0; 100], 10)));
        stored(one(&store, enqueue_op(ident(2), &[0; 50], 20)));
        stored(one(&store, enqueue_op(ident(2), &[0; 25], 30)));
        assert_eq!(
            store.totals().unwrap(),
            StoreTotals {
                messages: 3,
                bytes: 175
            }
        );
        one(
            &store,
            WriteOp::Ack {
                recipient: ident(1),
                ids: vec![a],
            },
        );
        assert_eq!(
            store.totals().unwrap(),
            StoreTotals {
                messages: 2,
                bytes: 75
            }
        );
        one(&store, WriteOp::Expire { before_ms: 25 });
        assert_eq!(
            store.totals().unwrap(),
            StoreTotals {
                messages: 1,
                bytes: 25
            }
        );
        check_counters(&dir);
    }

    #[test]
    fn reads_do_not_wait_for_a_writer() {
        let (dir, store) = open();
        one(&store, register("alice", ident(1)));
        // Another connection holds the write lock with uncommitted changes.
        let mut raw = Connection::open(dir.path().join("relay.db")).unwrap();
        let tx = raw
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .unwrap();
        tx.execute("UPDATE users SET name = 'mallory' WHERE name = 'alice'", [])
            .unwrap();
        let started = std::time::Instant::now();
        assert_eq!(store.identity_of("alice").unwrap(), Some(ident(1)));
        assert!(store
            .pending(&ident(1), 0, 10, usize::MAX)
            .unwrap()
            .is_empty());
        assert!(started.elapsed() < BUSY_TIMEOUT / 2);
        tx.rollback().unwrap();
    }

    #[test]
    fn concurrent_batches_get_unique_ids() {
        let (dir, store) = open();
        let store = Arc::new(store);
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                let store = Arc::clone(&store);
                std::thread::spawn(move || {
                    let mut ids = Vec::new();
                    for i in 0..10u8 {
                        let results = store
                            .apply(&[
                                enqueue_op(ident(t + 1), &[i; 8], 1),
                                enqueue_op(ident(t + 1), &[i; 8], 1),
                            ])
                            .unwrap();
                        ids.extend(results.into_iter().map(stored));
                        store.pending(&ident(t + 1), 0, 100, usize::MAX).unwrap();
                    }
                    ids
                })
            })
            .collect();
        let mut all: Vec<MessageId> = threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), 80);
        assert_eq!(store.totals().unwrap().messages, 80);
        check_counters(&dir);
    }

    #[test]
    fn refuses_newer_schema_and_foreign_files() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("relay.db");
        drop(SqliteStore::open(&path).unwrap());
        let raw = Connection::open(&path).unwrap();
        raw.pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .unwrap();
        drop(raw);
        let err = SqliteStore::open(&path).unwrap_err();
        assert!(err.0.contains("newer"), "{err}");

        let other = dir.path().join("other.db");
        let raw = Connection::open(&other).unwrap();
        raw.execute_batch("CREATE TABLE t (x INTEGER)").unwrap();
        drop(raw);
        let err = SqliteStore::open(&other).unwrap_err();
        assert!(err.0.contains("not a hush relay database"), "{err}");

        let garbage = dir.path().join("garbage.db");
        std::fs::write(&garbage, vec![0x42; 4096]).unwrap();
        assert!(SqliteStore::open(&garbage).is_err());
    }

    #[test]
    fn database_settings() {
        let (_dir, store) = open();
        let conn = store.writer().unwrap();
        let mode: String = conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2);
        let fk: i64 = conn
            .pragma_query_value(None, "foreign_keys", |r| r.get(0))
            .unwrap();
        assert_eq!(fk, 1);
        let version: i64 = conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }
}
