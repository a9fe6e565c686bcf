//! Connections of the PostgreSQL store: opening one (with the writer's session settings),
//! write transactions that take the write lock in their first round trip, the per-connection
//! prepared statement cache, reconnecting after a lost connection, and errors that never quote
//! data.

use std::collections::HashMap;

use postgres::types::ToSql;
use postgres::{Client, Config, GenericClient, NoTls, Row, Statement};

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
    /// The last write transaction got as far as sending COMMIT (so if it failed, whether it
    /// committed is unknown and it must not be retried).
    pub(super) commit_sent: bool,
}

/// Settings of the writer session: the server ends a session left idle inside a transaction
/// (its client gone) after 30 s, releasing the write lock, and probes an idle connection after
/// 30 s (TCP keepalive; ignored on Unix sockets). Every statement of a batch runs back to back,
/// so a live writer is never idle in a transaction for long.
const WRITER_SESSION: &str = "SET idle_in_transaction_session_timeout = '30s';
     SET tcp_keepalives_idle = 30; SET tcp_keepalives_interval = 10; SET tcp_keepalives_count = 3";

/// Begins a write transaction and takes the write lock, in one round trip. The literal is
/// [`super::WRITE_LOCK`] (checked by a test).
pub(super) const BEGIN_LOCKED: &str = "BEGIN; SELECT pg_advisory_xact_lock(7527049244737431924)";

impl Conn {
    pub(super) fn open(config: &Config, writer: bool) -> Result<Self, StoreError> {
        let mut client = config.connect(NoTls)?;
        if writer {
            // An acknowledged batch must survive a server crash: commits must wait for the
            // WAL flush, whatever the server's default (stronger settings are kept).
            let setting: String = client
                .query_one("SELECT current_setting('synchronous_commit')", &[])?
                .try_get(0)?;
            if setting == "off" {
                client.batch_execute("SET synchronous_commit = on")?;
            }
            // A writer whose client vanished (network loss, process killed mid-batch) holds
            // the write lock until the server ends its session: bound that for every node.
            client.batch_execute(WRITER_SESSION)?;
        }
        Ok(Self {
            client,
            statements: Statements::new(),
            in_transaction: false,
            commit_sent: false,
        })
    }

    /// Run `f` in a transaction holding the write lock (its first statement): commit if `f`
    /// returns `Ok`, else roll back. `f` must return every database error it meets (a failed
    /// statement aborts the transaction; committing it would silently roll back).
    pub(super) fn write_transaction<T>(
        &mut self,
        f: impl FnOnce(&mut Db<'_, Client>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        if self.in_transaction {
            self.client.batch_execute("ROLLBACK")?;
            self.in_transaction = false;
        }
        self.in_transaction = true;
        self.commit_sent = false;
        self.client.batch_execute(BEGIN_LOCKED)?;
        let result = f(&mut Db {
            client: &mut self.client,
            statements: &mut self.statements,
        });
        match result {
            Ok(value) => {
                self.commit_sent = true;
                self.client.batch_execute("COMMIT")?;
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
