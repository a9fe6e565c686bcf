//! The embedded relay store: [`SqliteStore`] keeps usernames, prekeys, KeyPackages, groups and
//! mailboxes (group mail stored once, referenced per mailbox) in one SQLite
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

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::Duration;

use rusqlite::{params, Connection, OpenFlags, OptionalExtension, TransactionBehavior};

use hush_proto::relay::GroupId;

use super::{
    ApplyError, GroupStats, IdentityBytes, MessageId, PrekeyStock, Store, StoreError, StoreTotals,
    StoredMessage, SyncResult, WriteOp, WriteResult,
};

mod groups;
mod keypackages;
mod prekeys;
mod schema;
mod usage;

use super::values::{
    blob_array, i64_bits_to_u64, non_negative, saturating_i64, too_large, u32_column,
    u64_bits_to_i64, unix_now_ms, Quota,
};
use keypackages::{fetch_key_package, publish_key_packages};
use prekeys::{
    delete_nameless_prekeys, delete_prekeys_of, fetch_bundle, prekey_stock, publish_pq_prekeys,
    publish_prekeys,
};
pub use schema::SCHEMA_VERSION;
use schema::{check_header, create_schema};
use usage::UsageDeltas;

/// Page cache of the writer connection, in KiB (SQLite's negative `cache_size` unit).
const WRITER_CACHE_KIB: i64 = 64 * 1024;
/// Page cache of each reader connection, in KiB.
const READER_CACHE_KIB: i64 = 16 * 1024;

/// How long a connection waits for a lock held by another connection before failing.
pub(crate) const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// Read-only connections in the pool.
const READERS: usize = 4;

/// Prepared statements cached per connection (the store uses fewer than this).
const STATEMENT_CACHE: usize = 32;

/// Bytes of WAL kept after a checkpoint; larger files are truncated back to this.
const JOURNAL_SIZE_LIMIT: i64 = 64 * 1024 * 1024;

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
        delete_prekeys_of(&tx, &identity)?;
        tx.commit()?;
        blob_array(&identity, "user identity").map(Some)
    }
}

impl SqliteStore {
    /// [`Store::apply`]: one IMMEDIATE transaction; on `Err` nothing was applied.
    fn apply_batch(&self, ops: &[WriteOp]) -> Result<Vec<WriteResult>, StoreError> {
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
}

impl Store for SqliteStore {
    /// A local commit either happens or not: every error is [`ApplyError::NotApplied`].
    fn apply(&self, ops: &[WriteOp]) -> Result<Vec<WriteResult>, ApplyError> {
        self.apply_batch(ops).map_err(ApplyError::NotApplied)
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
            // A group message's bytes live once in `group_blobs`; a missing blob reads as
            // NULL, which fails the row rather than delivering an empty envelope.
            "SELECT m.id, m.sender, m.received_at_ms,
                    CASE WHEN m.blob IS NULL THEN m.envelope ELSE b.envelope END
             FROM messages AS m LEFT JOIN group_blobs AS b ON b.id = m.blob
             WHERE m.recipient = ?1 AND m.id > ?2 ORDER BY m.id LIMIT ?3",
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

    fn prekey_stock(&self) -> Result<PrekeyStock, StoreError> {
        let conn = self.reader()?;
        prekey_stock(&conn)
    }

    fn group_stats(&self) -> Result<GroupStats, StoreError> {
        let conn = self.reader()?;
        groups::group_stats(&conn)
    }

    fn group_sync(
        &self,
        group_id: &GroupId,
        member: &IdentityBytes,
        after_epoch: u64,
        max_commits: usize,
        max_bytes: usize,
    ) -> Result<SyncResult, StoreError> {
        let mut conn = self.reader()?;
        groups::group_sync(
            &mut conn,
            group_id,
            member,
            after_epoch,
            max_commits,
            max_bytes,
        )
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
        WriteOp::PublishPqPrekeys {
            identity,
            last_resort,
            one_time,
            max_stock,
        } => publish_pq_prekeys(conn, identity, last_resort.as_ref(), one_time, *max_stock),
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
        WriteOp::PublishKeyPackages {
            identity,
            last_resort,
            one_time,
            max_stock,
        } => publish_key_packages(conn, identity, last_resort.as_deref(), one_time, *max_stock),
        WriteOp::FetchKeyPackage { name, pop_one_time } => {
            fetch_key_package(conn, name, *pop_one_time)
        }
        WriteOp::GroupCommit {
            commit,
            sender,
            received_at_ms,
            quota,
            max_members,
            max_log,
        } => groups::group_commit(
            conn,
            usage,
            commit,
            sender,
            *received_at_ms,
            quota,
            *max_members,
            *max_log,
        ),
        WriteOp::GroupSend {
            group_id,
            sender,
            envelope,
            received_at_ms,
            quota,
        } => groups::group_send(
            conn,
            usage,
            group_id,
            sender,
            envelope,
            *received_at_ms,
            quota,
        ),
        WriteOp::GroupLeave { group_id, identity } => {
            groups::group_leave(conn, usage, group_id, identity)
        }
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
         RETURNING length(envelope), sender, blob",
    )?;
    let mut deleted: i64 = 0;
    let mut bytes: i64 = 0;
    let mut shared: u32 = 0;
    for &id in ids {
        // No stored id exceeds i64::MAX, so such an id is simply not in this mailbox.
        let Ok(id) = i64::try_from(id) else {
            continue;
        };
        let row: Option<(i64, Vec<u8>, Option<i64>)> = delete
            .query_row(params![id, recipient.as_slice()], |row| {
                Ok((row.get(0)?, row.get(1)?, row.get(2)?))
            })
            .optional()?;
        if let Some((_, _, Some(blob))) = row {
            // A group message: this mailbox counted the shared bytes; the blob goes with its
            // last reference.
            let len = groups::release_blob(conn, usage, blob)?;
            usage.add_mailbox(conn, recipient.as_slice(), -1, -len)?;
            shared = shared.saturating_add(1);
        } else if let Some((len, sender, None)) = row {
            deleted = deleted.saturating_add(1);
            bytes = bytes.saturating_add(len);
            usage.add_sender(conn, &sender, -len)?;
        }
    }
    if deleted > 0 {
        usage.add(conn, recipient.as_slice(), -deleted, -bytes)?;
    }
    Ok(WriteResult::Acked(
        u32::try_from(deleted)
            .unwrap_or(u32::MAX)
            .saturating_add(shared),
    ))
}

/// Delete every message received before `before_ms`, keeping the counters in step.
fn expire(
    conn: &Connection,
    usage: &mut UsageDeltas,
    before_ms: u64,
) -> Result<WriteResult, StoreError> {
    delete_nameless_prekeys(conn)?;
    let before = saturating_i64(before_ms);
    groups::expire_group_log(conn, usage, before)?;
    let mut per_mailbox = Vec::new();
    {
        // (recipient, rows, own bytes, shared group-message bytes)
        let mut stmt = conn.prepare_cached(
            "SELECT m.recipient, count(*), sum(length(m.envelope)),
                    sum(coalesce(length(b.envelope), 0))
             FROM messages AS m LEFT JOIN group_blobs AS b ON b.id = m.blob
             WHERE m.received_at_ms < ?1 GROUP BY m.recipient",
        )?;
        let rows = stmt.query_map(params![before], |row| {
            Ok((
                row.get::<_, Vec<u8>>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, i64>(3)?,
            ))
        })?;
        for row in rows {
            per_mailbox.push(row?);
        }
    }
    if per_mailbox.is_empty() {
        groups::expire_blobs(conn, usage, before)?;
        return Ok(WriteResult::Expired(0));
    }
    let mut per_sender = Vec::new();
    {
        let mut stmt = conn.prepare_cached(
            "SELECT sender, sum(length(envelope)) FROM messages
             WHERE received_at_ms < ?1 AND blob IS NULL GROUP BY sender",
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
    for (recipient, messages, bytes, shared) in &per_mailbox {
        counted = counted.saturating_add(*messages);
        usage.add(conn, recipient, -*messages, -*bytes)?;
        usage.add_mailbox(conn, recipient, 0, -*shared)?;
    }
    for (sender, bytes) in &per_sender {
        usage.add_sender(conn, sender, -*bytes)?;
    }
    groups::expire_blobs(conn, usage, before)?;
    let deleted = u64::try_from(deleted).map_err(|_| too_large())?;
    if u64::try_from(counted).ok() != Some(deleted) {
        return Err(StoreError(format!(
            "expiry deleted {deleted} messages but counted {counted}"
        )));
    }
    Ok(WriteResult::Expired(deleted))
}

#[cfg(test)]
mod tests;
