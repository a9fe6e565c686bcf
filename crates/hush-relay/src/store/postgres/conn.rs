//! Connections of the PostgreSQL store: opening one (with the writer's session settings),
//! write transactions that take the write lock in their first round trip, the per-connection
//! prepared statement cache, reconnecting after a lost connection, and errors that never quote
//! data.

use std::collections::HashMap;

use postgres::types::ToSql;
use postgres::{Client, Config, GenericClient, IsolationLevel, NoTls, Row, Statement};

use crate::store::StoreError;

/// Prepared statements of one connection, by their SQL text.
pub(super) type Statements = HashMap<&'static str, Statement>;

/// One open connection and its prepared statements (valid only on this connection).
pub(super) struct Conn {
    pub(super) client: Client,
    pub(super) statements: Statements,
    /// A write transaction was begun and not yet ended (a panic inside one leaves this set,
    /// and the next use rolls it back).
    in_transaction: bool,
    /// The last write transaction sent its COMMIT and got no answer (the connection died): it
    /// may have committed, so it must not be retried; its batch token tells.
    pub(super) commit_lost: bool,
}

/// Settings of the writer session: the server ends a session left idle inside a transaction
/// (its client gone) after 30 s, releasing the write lock, and probes an idle connection after
/// 30 s (TCP keepalive; ignored on Unix sockets). Every statement of a batch runs back to back,
/// so a live writer is never idle in a transaction for long. No statement or lock timeout, even
/// if the database or role sets one: a large Expire must not be aborted, and a batch waits for
/// the write lock as long as the batch holding it runs.
const WRITER_SESSION: &str = "SET idle_in_transaction_session_timeout = '30s';
     SET tcp_keepalives_idle = 30; SET tcp_keepalives_interval = 10; SET tcp_keepalives_count = 3;
     SET statement_timeout = 0; SET lock_timeout = 0";

/// On PostgreSQL 14+, the server checks every 10 s that the client of a running query is still
/// there, so a writer whose node vanished mid-statement releases the write lock soon.
const CONNECTION_CHECK: &str = "SET client_connection_check_interval = '10s'";

/// Begins a write transaction and takes the write lock, in one round trip. READ COMMITTED is
/// pinned (whatever the database's default): each statement must see the batches committed
/// while this one waited for the lock. The literal is [`super::WRITE_LOCK`] (checked by a test).
pub(super) const BEGIN_LOCKED: &str = "BEGIN ISOLATION LEVEL READ COMMITTED, READ WRITE; \
     SELECT pg_advisory_xact_lock(7527049244737431924)";

/// How long batch tokens are kept (a lost COMMIT is looked up at once, on reconnect).
const TOKEN_KEEP_MS: i64 = 60 * 60 * 1000;

/// Tokens older than [`TOKEN_KEEP_MS`] deleted per batch at most (a batch adds one, so the
/// table stays bounded and pruning stays cheap).
const TOKENS_PRUNED_PER_BATCH: i64 = 16;

/// The server's clock in Unix milliseconds.
const NOW_MS: &str = "(extract(epoch FROM clock_timestamp()) * 1000)::bigint";

/// The end of a write transaction, in one round trip: record the batch token, prune old
/// tokens, COMMIT. If the transaction is aborted (a failed statement went unnoticed), the
/// INSERT fails and COMMIT is never reached (a COMMIT there would silently roll back).
fn commit_sql(token: &[u8; 16]) -> String {
    format!(
        "INSERT INTO hush_batches (token, committed_at_ms) VALUES (decode('{}', 'hex'), {NOW_MS});
         DELETE FROM hush_batches WHERE token IN (
             SELECT token FROM hush_batches WHERE committed_at_ms < {NOW_MS} - {TOKEN_KEEP_MS}
             ORDER BY committed_at_ms LIMIT {TOKENS_PRUNED_PER_BATCH});
         COMMIT",
        hex::encode(token)
    )
}

impl Conn {
    pub(super) fn open(config: &Config, writer: bool) -> Result<Self, StoreError> {
        let mut client = config.connect(NoTls)?;
        if writer {
            // An acknowledged batch must survive a server crash: commits must wait for the
            // WAL flush, whatever the server's default (stronger settings are kept).
            let row = client.query_one(
                "SELECT current_setting('synchronous_commit'),
                        current_setting('server_version_num')::integer",
                &[],
            )?;
            let setting: String = row.try_get(0)?;
            let version: i32 = row.try_get(1)?;
            if setting == "off" {
                client.batch_execute("SET synchronous_commit = on")?;
            }
            // A writer whose client vanished (network loss, process killed mid-batch) holds
            // the write lock until the server ends its session: bound that for every node.
            client.batch_execute(WRITER_SESSION)?;
            if version >= 140_000 {
                // Best effort (a server may refuse it, e.g. where it is unsupported).
                let _ = client.batch_execute(CONNECTION_CHECK);
            }
        }
        Ok(Self {
            client,
            statements: Statements::new(),
            in_transaction: false,
            commit_lost: false,
        })
    }

    /// After a write transaction whose COMMIT got no answer: whether the batch with `token`
    /// committed. Waits for the write lock first, so the old session's transaction has ended
    /// (committed, or rolled back when the server noticed its client was gone).
    pub(super) fn batch_committed(&mut self, token: &[u8; 16]) -> Result<bool, StoreError> {
        if self.in_transaction {
            self.client.batch_execute("ROLLBACK")?;
            self.in_transaction = false;
        }
        let mut tx = self
            .client
            .build_transaction()
            .isolation_level(IsolationLevel::ReadCommitted)
            .read_only(true)
            .start()?;
        tx.execute("SELECT pg_advisory_xact_lock($1)", &[&super::WRITE_LOCK])?;
        let found = tx
            .query_opt(
                "SELECT 1 FROM hush_batches WHERE token = $1",
                &[&token.as_slice()],
            )?
            .is_some();
        tx.commit()?;
        Ok(found)
    }

    /// Run `f` in a transaction holding the write lock (its first statement): commit if `f`
    /// returns `Ok`, else roll back. `f` must return every database error it meets (a failed
    /// statement aborts the transaction; committing it would silently roll back).
    /// The transaction records `token` in `hush_batches` just before COMMIT; if the answer to
    /// COMMIT is lost, `commit_lost` is set and [`Conn::batch_committed`] (on a new
    /// connection) tells whether it committed.
    pub(super) fn write_transaction<T>(
        &mut self,
        token: &[u8; 16],
        f: impl FnOnce(&mut Db<'_, Client>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if self.in_transaction {
            self.client.batch_execute("ROLLBACK")?;
            self.in_transaction = false;
        }
        self.in_transaction = true;
        self.commit_lost = false;
        self.client.batch_execute(BEGIN_LOCKED)?;
        let result = f(&mut Db {
            client: &mut self.client,
            statements: &mut self.statements,
        });
        match result {
            Ok(value) => {
                if let Err(err) = self.client.batch_execute(&commit_sql(token)) {
                    // An answer from the server (an error) means it did not commit, and the
                    // transaction is left for the next use to roll back. No answer: unknown.
                    self.commit_lost = err.as_db_error().is_none();
                    return Err(err.into());
                }
                self.in_transaction = false;
                Ok(value)
            }
            Err(err) => {
                // The original error matters more than a failed rollback (the connection is
                // then dropped, which ends the transaction on the server).
                if self.client.batch_execute("ROLLBACK").is_ok() {
                    self.in_transaction = false;
                }
                Err(err)
            }
        }
    }
}

/// A session on one connection (the bare client or a transaction) with that connection's
/// statement cache; every query goes through a cached prepared statement.
pub(super) struct Db<'a, C> {
    pub(super) client: &'a mut C,
    pub(super) statements: &'a mut Statements,
}

impl<C: GenericClient> Db<'_, C> {
    fn prepared(&mut self, sql: &'static str) -> Result<Statement, StoreError> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        self.statements.insert(sql, statement.clone());
        Ok(statement)
    }

    pub(super) fn query(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, StoreError> {
        let statement = self.prepared(sql)?;
        Ok(self.client.query(&statement, params)?)
    }

    /// At most one row (more is an error).
    pub(super) fn query_opt(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, StoreError> {
        let statement = self.prepared(sql)?;
        Ok(self.client.query_opt(&statement, params)?)
    }

    /// Exactly one row (none or more is an error).
    pub(super) fn query_one(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Row, StoreError> {
        let statement = self.prepared(sql)?;
        Ok(self.client.query_one(&statement, params)?)
    }

    /// Rows affected.
    pub(super) fn execute(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, StoreError> {
        let statement = self.prepared(sql)?;
        Ok(self.client.execute(&statement, params)?)
    }

    pub(super) fn exists(
        &mut self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<bool, StoreError> {
        Ok(!self.query(sql, params)?.is_empty())
    }
}

impl From<postgres::Error> for StoreError {
    fn from(err: postgres::Error) -> Self {
        StoreError(describe(&err))
    }
}

/// A PostgreSQL error without anything that could quote data: for a server error its severity,
/// SQLSTATE, message and constraint (not DETAIL, which shows row values, nor the query).
pub(super) fn describe(err: &postgres::Error) -> String {
    if let Some(db) = err.as_db_error() {
        let mut text = format!(
            "postgres: {} {}: {}",
            db.severity(),
            db.code().code(),
            db.message()
        );
        if let Some(constraint) = db.constraint() {
            text.push_str(&format!(" (constraint {constraint})"));
        }
        return text;
    }
    match std::error::Error::source(err) {
        Some(source) => format!("postgres: {err}: {source}"),
        None => format!("postgres: {err}"),
    }
}

/// Run `f` on the connection in `slot`, connecting first if there is none (or it is closed),
/// and dropping it after an error that closed it, so that the next call reconnects.
pub(super) fn run_on<T>(
    config: &Config,
    slot: &mut Option<Conn>,
    writer: bool,
    f: impl FnOnce(&mut Conn) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    if slot.as_ref().is_some_and(|conn| conn.client.is_closed()) {
        *slot = None;
    }
    let conn = match slot {
        Some(conn) => conn,
        None => slot.insert(Conn::open(config, writer)?),
    };
    let result = f(conn);
    if result.is_err() {
        match slot {
            Some(conn) if conn.client.is_closed() => *slot = None,
            // Prepared again on next use: a statement can fail for good after a schema
            // change by a newer node ("cached plan must not change result type").
            Some(conn) => conn.statements.clear(),
            None => {}
        }
    }
    result
}
