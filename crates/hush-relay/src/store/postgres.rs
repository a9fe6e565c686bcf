//! The shared relay store: [`PostgresStore`] keeps the same state as
//! [`SqliteStore`](super::sqlite::SqliteStore) (usernames, prekeys, KeyPackages, groups and
//! mailboxes, group mail stored once and referenced per mailbox) in a PostgreSQL database, so
//! several relay nodes can serve one user base. Semantics are exactly the SQLite store's: the
//! shared store test suite runs against both.
//!
//! - **Batches.** [`Store::apply`] runs a batch in one transaction: on `Ok` every op's effect is
//!   committed (durable as far as the server's `synchronous_commit` makes it; a session that
//!   finds it `off` turns it `on`), on [`ApplyError::NotApplied`] none is. Runs of
//!   consecutive `Enqueue` and `Ack` ops (mixed) take a fixed number of round trips however
//!   long they are: a batch of Enqueues is five (BEGIN with the lock, counters and totals read
//!   with one `= ANY` query, quotas decided in memory in op order, one `unnest` insert drawing
//!   the ids, one statement writing every counter, then the batch token and COMMIT); other
//!   ops go one at a time.
//! - **Lost COMMIT.** Each batch inserts a random 16-byte token into `hush_batches` in the
//!   same round trip as its COMMIT (tokens older than an hour are pruned by later batches, a
//!   few per batch). If the connection dies after COMMIT was sent, the store reconnects, waits
//!   for the write lock (so the old session's transaction has ended) and looks the token up:
//!   absent means [`ApplyError::NotApplied`] (safe to retry); present, or the lookup failing,
//!   means [`ApplyError::OutcomeUnknown`] (the results are lost; the caller must never apply
//!   the ops again, and the writer answers each op with an error). The token INSERT also
//!   catches a transaction aborted by an unnoticed failed statement: it fails, so COMMIT
//!   (which would answer ROLLBACK) is never reached.
//! - **Ordering across nodes.** The first statement of every batch (and of `free_name` and of
//!   the migrations) is `pg_advisory_xact_lock(WRITE_LOCK)`, so batches from all nodes run and
//!   commit one at a time, and message ids (the `messages_id_seq` sequence, drawn under the
//!   lock) become visible in increasing order. Delivery relies on this: a node reads a mailbox
//!   "after cursor", and an id committed after a higher one would be skipped for ever. Reads do
//!   not take the lock. The sequence must keep `CACHE 1` and
//!   `INCREMENT 1` (see the schema): `connect` refuses it otherwise. The cost is that
//!   writes do not scale with nodes (one writer at a time; each batch is a few milliseconds);
//!   reads and connections do.
//! - **Connections.** One writer connection and four reader connections, each opened on
//!   first use and dropped when found closed (server restart, network loss), so the next call
//!   reconnects and the store never needs a restart. A call that meets a dead connection is
//!   retried once on a fresh one when that is safe (reads always; a batch only if COMMIT was not
//!   sent yet), else fails with a [`StoreError`] (a batch: see "Lost COMMIT"). Connect timeout 5 s, TCP keepalive after 30 s
//!   idle, TCP user timeout 30 s (unless the URL sets them); the writer session also asks the
//!   server to end it after 30 s idle inside a transaction and (PostgreSQL 14+) to check every
//!   10 s that its client is still there during a query, so a vanished writer cannot hold the
//!   write lock for long. Write transactions pin READ COMMITTED and the writer session turns
//!   off statement and lock timeouts, whatever the database's or role's defaults. Prepared statements are cached per connection, rebuilt with it (and
//!   after any error).
//! - **Blocking.** The sync `postgres` client runs its own small runtime and panics if used
//!   from inside an async context: call [`PostgresStore::connect`] and every method from a plain
//!   thread or `spawn_blocking` (as the relay does for every store call). Dropping the store is
//!   safe anywhere (inside a runtime its connections are closed on a helper thread).
//! - **No TLS (limitation).** Connections use `NoTls`: the server must be on loopback or a
//!   private network the operator trusts, since the traffic (envelopes are ciphertext, but
//!   names, identity keys, metadata and the password exchange) is not encrypted. A URL asking
//!   for `sslmode=require` fails to connect rather than silently falling back.
//! - **Secrets.** The URL may hold a password: it is never logged, stored in an error, or shown
//!   by `Debug`. Errors carry PostgreSQL's severity, code, message and constraint name, never
//!   its DETAIL (which quotes row values, i.e. keys), nor any envelope bytes.
//!
//! Everything read back is checked (blob lengths, integer ranges, identity keys); a malformed
//! row is a [`StoreError`], never a panic. Requires PostgreSQL 11 or later.

use std::fmt;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::Duration;

use postgres::{Client, Config, GenericClient, IsolationLevel};
use rand_core::{OsRng, RngCore};

use hush_proto::relay::GroupId;

use super::{
    ApplyError, GroupStats, IdentityBytes, MessageId, PrekeyStock, Store, StoreError, StoreTotals,
    StoredMessage, SyncResult, WriteOp, WriteResult,
};

mod conn;
mod groups;
mod keypackages;
mod mailbox;
mod prekeys;
mod schema;
mod usage;

use super::values::{
    blob_array, i64_bits_to_u64, non_negative, saturating_i64, too_large, u32_column,
    u64_bits_to_i64, unix_now_ms, Quota,
};
#[cfg(test)]
use conn::BEGIN_LOCKED;
use conn::{run_on, Conn, Db};
use keypackages::{fetch_key_package, publish_key_packages};
use prekeys::{delete_prekeys_of, fetch_bundle, prekey_stock, publish_pq_prekeys, publish_prekeys};
pub use schema::SCHEMA_VERSION;
use usage::UsageDeltas;

/// The advisory lock every write transaction takes first ("hushwrit"): one batch at a time
/// over all nodes, so message ids commit in increasing order.
const WRITE_LOCK: i64 = 0x6875_7368_7772_6974;

/// Reader connections in the pool.
const READERS: usize = 4;

/// Connect timeout, unless the URL sets one.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Idle time before TCP keepalive probes start, unless the URL sets it.
const KEEPALIVE_IDLE: Duration = Duration::from_secs(30);

/// tokio-postgres's default keepalive idle time (how we tell the URL did not set one).
const DEFAULT_KEEPALIVE_IDLE: Duration = Duration::from_secs(2 * 60 * 60);

/// How long sent data may stay unacknowledged before the connection is declared dead.
const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);

/// The relay store in a PostgreSQL database, shareable by several relay nodes.
pub struct PostgresStore {
    /// Connection parameters (may hold a password: never printed).
    config: Config,
    /// The connection that writes; held for the whole of a batch. `None` until (re)connected.
    writer: Mutex<Option<Conn>>,
    /// Connections for reads, so lookups and mailbox reads proceed while a batch commits.
    readers: Vec<Mutex<Option<Conn>>>,
    /// Round-robin start for blocking on a reader when all are busy.
    next_reader: AtomicUsize,
}

impl fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the config: it may hold the password.
        f.debug_struct("PostgresStore").finish_non_exhaustive()
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // A `postgres::Client` closes itself by blocking on its runtime, which panics inside an
        // async context: there, close the connections on a short-lived plain thread instead.
        if tokio::runtime::Handle::try_current().is_err() {
            return;
        }
        let mut conns: Vec<Conn> = Vec::new();
        let slots = std::iter::once(&mut self.writer).chain(self.readers.iter_mut());
        for slot in slots {
            if let Some(conn) = slot
                .get_mut()
                .unwrap_or_else(PoisonError::into_inner)
                .take()
            {
                conns.push(conn);
            }
        }
        if !conns.is_empty() {
            // If the thread cannot start, the closure is dropped here: leaking the connections
            // (the server ends their sessions when the process exits) beats panicking.
            let conns = std::mem::ManuallyDrop::new(conns);
            if let Err(err) = std::thread::Builder::new()
                .name("hush-pg-close".to_owned())
                .spawn(move || drop(std::mem::ManuallyDrop::into_inner(conns)))
            {
                tracing::warn!("cannot close PostgreSQL connections: {err}");
            }
        }
    }
}

impl PostgresStore {
    /// Connect to the database at `url` (`postgres://user[:password]@host[:port]/dbname`, or
    /// the `key=value` form) and bring its schema to [`SCHEMA_VERSION`], creating it in an empty
    /// database. Refuses a database written by a newer relay, or holding other tables but no
    /// hush schema. Errors never contain the URL.
    pub fn connect(url: &str) -> Result<Self, StoreError> {
        // Not the parser's message: it can quote the URL, password included.
        let mut config = Config::from_str(url).map_err(|_| {
            StoreError(
                "invalid PostgreSQL URL (expected postgres://user[:password]@host[:port]/dbname \
                 or key=value pairs; the URL is not shown, it may hold a password)"
                    .to_owned(),
            )
        })?;
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        if config.get_keepalives_idle() == DEFAULT_KEEPALIVE_IDLE {
            config.keepalives_idle(KEEPALIVE_IDLE);
        }
        if config.get_tcp_user_timeout().is_none() {
            config.tcp_user_timeout(TCP_USER_TIMEOUT);
        }
        config.keepalives(true);
        if config.get_application_name().is_none() {
            config.application_name("hush-relay");
        }
        let mut writer = Conn::open(&config, true)?;
        // READ COMMITTED whatever the database's default, so that the migration sees what
        // a node migrating at the same time committed while this one waited for the lock.
        let mut tx = writer
            .client
            .build_transaction()
            .isolation_level(IsolationLevel::ReadCommitted)
            .start()?;
        schema::migrate(&mut tx)?;
        schema::check_sequence(&mut tx)?;
        tx.commit()?;
        Ok(Self {
            config,
            writer: Mutex::new(Some(writer)),
            readers: (0..READERS).map(|_| Mutex::new(None)).collect(),
            next_reader: AtomicUsize::new(0),
        })
    }

    /// Run `f` in a write transaction on the writer connection. If the connection turns out
    /// to be dead (the server restarted since it was last used) before COMMIT was sent, once
    /// more on a fresh one: the server never commits a transaction whose COMMIT it did not
    /// receive, so nothing was applied. If the answer to COMMIT is lost, the batch's token is
    /// looked up on a fresh connection: not there means nothing was applied
    /// ([`ApplyError::NotApplied`]); there, or the lookup failing, means
    /// [`ApplyError::OutcomeUnknown`] (the results are lost; the batch must not be retried).
    fn write<T>(
        &self,
        mut f: impl FnMut(&mut Db<'_, Client>) -> Result<T, StoreError>,
    ) -> Result<T, ApplyError> {
        let mut token = [0u8; 16];
        OsRng.try_fill_bytes(&mut token).map_err(|err| {
            ApplyError::NotApplied(StoreError(format!("no random batch token: {err}")))
        })?;
        // A panic while holding the lock cannot leave a half-applied batch behind (the next
        // use rolls back a transaction left open), so a poisoned lock is still usable.
        let mut slot = self.writer.lock().unwrap_or_else(PoisonError::into_inner);
        let was_open = slot.is_some();
        let mut commit_lost = false;
        let mut attempt = |slot: &mut Option<Conn>, commit_lost: &mut bool| {
            run_on(&self.config, slot, true, |conn| {
                let result = conn.write_transaction(&token, &mut f);
                *commit_lost = conn.commit_lost;
                result
            })
        };
        let mut result = attempt(&mut slot, &mut commit_lost);
        if result.is_err() && !commit_lost && was_open && slot.is_none() {
            result = attempt(&mut slot, &mut commit_lost);
        }
        match result {
            Ok(value) => Ok(value),
            Err(err) if commit_lost => Err(self.after_lost_commit(&mut slot, &token, err)),
            Err(err) => Err(ApplyError::NotApplied(err)),
        }
    }

    /// The answer to the COMMIT of the batch with `token` was lost (`err`): look the token up
    /// on a new connection (`run_on` dropped the dead one).
    fn after_lost_commit(
        &self,
        slot: &mut Option<Conn>,
        token: &[u8; 16],
        err: StoreError,
    ) -> ApplyError {
        match run_on(&self.config, slot, true, |conn| conn.batch_committed(token)) {
            Ok(false) => ApplyError::NotApplied(err),
            Ok(true) => ApplyError::OutcomeUnknown(StoreError(format!(
                "{}: the batch committed but its results were lost",
                err.0
            ))),
            Err(lookup) => ApplyError::OutcomeUnknown(StoreError(format!(
                "{}: COMMIT sent, its answer lost, and the batch could not be looked up ({})",
                err.0, lookup.0
            ))),
        }
    }

    /// Run `f` on a reader connection; if its connection turns out to be dead (the server
    /// restarted since it was last used), once more on a fresh one: reads are idempotent.
    fn with_reader<T>(
        &self,
        mut f: impl FnMut(&mut Conn) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut slot = self.reader_slot()?;
        let was_open = slot.is_some();
        match run_on(&self.config, &mut slot, false, &mut f) {
            Err(_) if was_open && slot.is_none() => run_on(&self.config, &mut slot, false, f),
            other => other,
        }
    }

    /// A free reader if there is one, else wait for one in round-robin order.
    fn reader_slot(&self) -> Result<MutexGuard<'_, Option<Conn>>, StoreError> {
        for reader in &self.readers {
            match reader.try_lock() {
                Ok(slot) => return Ok(slot),
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

    /// Operator action: free `name` so that a new identity can register it (a user who lost
    /// their keys and reinstalled). Deletes the registration and the old identity's prekeys and
    /// KeyPackages, so no session can start to the old key any more; its mailbox is left to
    /// expire with the TTL. Returns the identity that held the name, or `None` if the name was
    /// not registered. Safe while relays run on the same database (it takes the write lock).
    pub fn free_name(&self, name: &str) -> Result<Option<IdentityBytes>, StoreError> {
        self.write(|db| {
            let Some(row) = db.query_opt(
                "DELETE FROM users WHERE name = $1 RETURNING identity",
                &[&name],
            )?
            else {
                return Ok(None);
            };
            let identity: Vec<u8> = row.try_get(0)?;
            delete_prekeys_of(db, &identity)?;
            Ok(Some(identity))
        })
        .map_err(ApplyError::into_error)?
        .map(|identity| blob_array(&identity, "user identity"))
        .transpose()
    }
}

impl Store for PostgresStore {
    fn apply(&self, ops: &[WriteOp]) -> Result<Vec<WriteResult>, ApplyError> {
        if ops.is_empty() {
            return Ok(Vec::new());
        }
        let now_ms = unix_now_ms();
        self.write(|db| {
            let mut results = Vec::with_capacity(ops.len());
            let mut usage = UsageDeltas::default();
            let mut rest = ops;
            while let Some(op) = rest.first() {
                let taken = match op {
                    WriteOp::Enqueue { .. } | WriteOp::Ack { .. } => {
                        let run = leading(rest, |op| {
                            matches!(op, WriteOp::Enqueue { .. } | WriteOp::Ack { .. })
                        });
                        mailbox::mailbox_run(db, &mut usage, run, &mut results)?;
                        run.len()
                    }
                    _ => {
                        results.push(apply_op(db, op, now_ms, &mut usage)?);
                        1
                    }
                };
                rest = rest.get(taken.max(1)..).unwrap_or_default();
            }
            // Counters are written once per mailbox and sender per batch, in one statement.
            usage.flush(db)?;
            if results.len() != ops.len() {
                return Err(StoreError(format!(
                    "batch of {} ops gave {} results",
                    ops.len(),
                    results.len()
                )));
            }
            Ok(results)
        })
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
        let max_bytes = i64::try_from(max_bytes).unwrap_or(i64::MAX);
        let rows = self.with_reader(|conn| {
            let mut db = Db {
                client: &mut conn.client,
                statements: &mut conn.statements,
            };
            // The byte bound is applied by the server (rows after the one that reaches it are
            // never sent): a row is returned if it is the first or the bytes before it are
            // under the bound. A group message's bytes live once in `group_blobs`; a missing
            // blob reads as NULL, which fails the row rather than delivering an empty envelope.
            db.query(
                "SELECT id, sender, received_at_ms, envelope FROM (
                     SELECT m.id, m.sender, m.received_at_ms,
                            CASE WHEN m.blob IS NULL THEN m.envelope ELSE b.envelope END
                                AS envelope,
                            row_number() OVER w AS n,
                            coalesce(sum(octet_length(
                                CASE WHEN m.blob IS NULL THEN m.envelope ELSE b.envelope END
                            )) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0)
                                AS before
                     FROM messages AS m LEFT JOIN group_blobs AS b ON b.id = m.blob
                     WHERE m.recipient = $1 AND m.id > $2
                     WINDOW w AS (ORDER BY m.id)
                     ORDER BY m.id LIMIT $3
                 ) AS page
                 WHERE n = 1 OR before < $4
                 ORDER BY id",
                &[&recipient.as_slice(), &after, &limit, &max_bytes],
            )
        })?;
        let mut messages = Vec::with_capacity(rows.len());
        for row in rows {
            let id: i64 = row.try_get(0)?;
            let sender: Vec<u8> = row.try_get(1)?;
            let received_at_ms: i64 = row.try_get(2)?;
            messages.push(StoredMessage {
                id: non_negative(id, "message id")?,
                sender: blob_array(&sender, "message sender")?,
                received_at_ms: non_negative(received_at_ms, "message time")?,
                envelope: row.try_get(3)?,
            });
        }
        Ok(messages)
    }

    fn identity_of(&self, name: &str) -> Result<Option<IdentityBytes>, StoreError> {
        let row = self.with_reader(|conn| {
            let mut db = Db {
                client: &mut conn.client,
                statements: &mut conn.statements,
            };
            db.query_opt("SELECT identity FROM users WHERE name = $1", &[&name])
        })?;
        row.map(|row| blob_array(&row.try_get::<_, Vec<u8>>(0)?, "user identity"))
            .transpose()
    }

    fn name_of(&self, identity: &IdentityBytes) -> Result<Option<String>, StoreError> {
        let row = self.with_reader(|conn| {
            let mut db = Db {
                client: &mut conn.client,
                statements: &mut conn.statements,
            };
            db.query_opt(
                "SELECT name FROM users WHERE identity = $1",
                &[&identity.as_slice()],
            )
        })?;
        Ok(row.map(|row| row.try_get(0)).transpose()?)
    }

    fn totals(&self) -> Result<StoreTotals, StoreError> {
        let row = self.with_reader(|conn| {
            let mut db = Db {
                client: &mut conn.client,
                statements: &mut conn.statements,
            };
            db.query_one(
                "SELECT messages, bytes FROM mailbox_totals WHERE singleton = 0",
                &[],
            )
        })?;
        Ok(StoreTotals {
            messages: non_negative(row.try_get(0)?, "total message count")?,
            bytes: non_negative(row.try_get(1)?, "total byte count")?,
        })
    }

    fn prekey_stock(&self) -> Result<PrekeyStock, StoreError> {
        self.with_reader(|conn| {
            prekey_stock(&mut Db {
                client: &mut conn.client,
                statements: &mut conn.statements,
            })
        })
    }

    fn group_stats(&self) -> Result<GroupStats, StoreError> {
        self.with_reader(|conn| {
            groups::group_stats(&mut Db {
                client: &mut conn.client,
                statements: &mut conn.statements,
            })
        })
    }

    fn group_sync(
        &self,
        group_id: &GroupId,
        member: &IdentityBytes,
        after_epoch: u64,
        max_commits: usize,
        max_bytes: usize,
    ) -> Result<SyncResult, StoreError> {
        self.with_reader(|conn| {
            let Conn {
                client, statements, ..
            } = conn;
            // One snapshot for the membership check and the log.
            let mut tx = client
                .build_transaction()
                .isolation_level(IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            let result = groups::group_sync(
                &mut Db {
                    client: &mut tx,
                    statements,
                },
                group_id,
                member,
                after_epoch,
                max_commits,
                max_bytes,
            )?;
            tx.commit()?;
            Ok(result)
        })
    }
}

/// The longest prefix of `ops` whose ops all satisfy `same`.
fn leading(ops: &[WriteOp], same: impl Fn(&WriteOp) -> bool) -> &[WriteOp] {
    let count = ops.iter().take_while(|op| same(op)).count();
    ops.get(..count).unwrap_or_default()
}

/// Apply one op inside the batch transaction (`apply` hands runs of `Enqueue` and `Ack` ops to
/// [`mailbox::mailbox_run`] instead).
/// Refusals (`NameTaken`, `MailboxFull`, ...) change nothing; an `Err` aborts the whole batch.
fn apply_op<C: GenericClient>(
    db: &mut Db<'_, C>,
    op: &WriteOp,
    now_ms: u64,
    usage: &mut UsageDeltas,
) -> Result<WriteResult, StoreError> {
    match op {
        WriteOp::Register {
            name,
            identity,
            signature,
        } => register(db, name, identity, signature, now_ms),
        WriteOp::PublishPrekeys {
            identity,
            signed_prekey,
            one_time,
            max_stock,
        } => publish_prekeys(db, identity, signed_prekey, one_time, *max_stock),
        WriteOp::PublishPqPrekeys {
            identity,
            last_resort,
            one_time,
            max_stock,
        } => publish_pq_prekeys(db, identity, last_resort.as_ref(), one_time, *max_stock),
        WriteOp::FetchBundle { name, pop_one_time } => fetch_bundle(db, name, *pop_one_time),
        WriteOp::Enqueue { .. } | WriteOp::Ack { .. } => {
            let mut results = Vec::with_capacity(1);
            mailbox::mailbox_run(db, usage, std::slice::from_ref(op), &mut results)?;
            results
                .pop()
                .ok_or_else(|| StoreError("an op gave no result".to_owned()))
        }
        WriteOp::PublishKeyPackages {
            identity,
            last_resort,
            one_time,
            max_stock,
        } => publish_key_packages(db, identity, last_resort.as_deref(), one_time, *max_stock),
        WriteOp::FetchKeyPackage { name, pop_one_time } => {
            fetch_key_package(db, name, *pop_one_time)
        }
        WriteOp::GroupCommit {
            commit,
            sender,
            received_at_ms,
            quota,
            max_members,
            max_log,
        } => groups::group_commit(
            db,
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
            db,
            usage,
            group_id,
            sender,
            envelope,
            *received_at_ms,
            quota,
        ),
        WriteOp::GroupLeave { group_id, identity } => {
            groups::group_leave(db, usage, group_id, identity)
        }
        WriteOp::Expire { before_ms } => mailbox::expire(db, usage, *before_ms),
    }
}

/// First come, first served; an identity keeps the one name it registered.
fn register<C: GenericClient>(
    db: &mut Db<'_, C>,
    name: &str,
    identity: &IdentityBytes,
    signature: &[u8],
    now_ms: u64,
) -> Result<WriteResult, StoreError> {
    let current = db.query_opt(
        "SELECT name FROM users WHERE identity = $1",
        &[&identity.as_slice()],
    )?;
    if let Some(row) = current {
        let current: String = row.try_get(0)?;
        return Ok(if current == name {
            WriteResult::Registered
        } else {
            WriteResult::AlreadyRegistered { name: current }
        });
    }
    if db.exists("SELECT 1 FROM users WHERE name = $1", &[&name])? {
        return Ok(WriteResult::NameTaken);
    }
    db.execute(
        "INSERT INTO users (identity, name, signature, registered_at_ms) VALUES ($1, $2, $3, $4)",
        &[
            &identity.as_slice(),
            &name,
            &signature,
            &saturating_i64(now_ms),
        ],
    )?;
    Ok(WriteResult::Registered)
}

#[cfg(test)]
mod tests;
