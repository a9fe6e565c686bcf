//! The suite against [`PostgresStore`]: a fresh database per test from
//! `hush_testsvc::postgres()` (`HUSH_TEST_POSTGRES`); without a server each test prints one
//! `skipped:` line and passes, unless `HUSH_REQUIRE_SERVICES=1`.

use std::any::Any;
use std::sync::Mutex;
use std::time::Duration;

use postgres::{Client, NoTls, Row};

use super::{all_store_tests, store_suite, Backend};
use crate::store::postgres::PostgresStore;
use crate::store::{IdentityBytes, Store, StoreError};

/// The store's write lock (`pg_advisory_xact_lock` key, "hushwrit"), as in the store module.
const WRITE_LOCK: i64 = 0x6875_7368_7772_6974;

/// A [`PostgresStore`] on a database of its own, dropped with the backend.
pub(crate) struct PgBackend {
    // Fields drop in order: the store and the raw connection before the database.
    store: Option<PostgresStore>,
    raw: Mutex<Client>,
    db: hush_testsvc::PgTestDb,
}

impl PgBackend {
    /// A fresh store, or `None` (after the one-line skip message) without a server.
    pub(crate) fn new() -> Option<Self> {
        let db = hush_testsvc::postgres()?;
        let store = PostgresStore::connect(db.url()).unwrap();
        let raw = Client::connect(db.url(), NoTls).unwrap();
        Some(PgBackend {
            store: Some(store),
            raw: Mutex::new(raw),
            db,
        })
    }

    pub(crate) fn postgres(&self) -> &PostgresStore {
        self.store.as_ref().unwrap()
    }

    fn raw(&self) -> std::sync::MutexGuard<'_, Client> {
        self.raw.lock().unwrap()
    }
}

/// An integer column of any width.
fn int(row: &Row, i: usize) -> i64 {
    if let Ok(v) = row.try_get::<_, i64>(i) {
        return v;
    }
    if let Ok(v) = row.try_get::<_, i32>(i) {
        return i64::from(v);
    }
    panic!("column {i} is not an integer: {:?}", row.columns().get(i));
}

/// An open transaction holding the store's write lock, rolled back on drop.
struct HeldWriteLock(Client);

impl Drop for HeldWriteLock {
    fn drop(&mut self) {
        self.0.batch_execute("ROLLBACK").unwrap();
    }
}

impl Backend for PgBackend {
    fn store(&self) -> &dyn Store {
        self.postgres()
    }

    fn reopen(&mut self) {
        drop(self.store.take());
        self.store = Some(PostgresStore::connect(self.db.url()).unwrap());
    }

    fn free_name(&self, name: &str) -> Result<Option<IdentityBytes>, StoreError> {
        self.postgres().free_name(name)
    }

    fn blob(&self, bytes: &[u8]) -> String {
        format!("'\\x{}'::bytea", hex::encode(bytes))
    }

    fn exec(&self, sql: &str) {
        self.raw().batch_execute(sql).unwrap();
    }

    /// Drops every CHECK constraint and disables the foreign-key triggers, runs `sql`, then
    /// re-enables the triggers and re-adds the constraints `NOT VALID` (checked for new rows,
    /// not for the tampered ones), all in one transaction.
    fn tamper(&self, sql: &str) {
        let mut raw = self.raw();
        let mut tx = raw.transaction().unwrap();
        let checks: Vec<(String, String, String)> = tx
            .query(
                "SELECT c.conrelid::regclass::text, c.conname, pg_get_constraintdef(c.oid)
                 FROM pg_constraint AS c JOIN pg_namespace AS n ON n.oid = c.connamespace
                 WHERE c.contype = 'c' AND n.nspname = current_schema()",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect();
        let triggers: Vec<(String, String)> = tx
            .query(
                "SELECT t.tgrelid::regclass::text, t.tgname
                 FROM pg_trigger AS t JOIN pg_class AS c ON c.oid = t.tgrelid
                 JOIN pg_namespace AS n ON n.oid = c.relnamespace
                 WHERE t.tgisinternal AND t.tgname LIKE 'RI\\_ConstraintTrigger\\_%'
                   AND n.nspname = current_schema()",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect();
        for (table, name, _) in &checks {
            tx.batch_execute(&format!("ALTER TABLE {table} DROP CONSTRAINT \"{name}\""))
                .unwrap();
        }
        for (table, name) in &triggers {
            tx.batch_execute(&format!("ALTER TABLE {table} DISABLE TRIGGER \"{name}\""))
                .unwrap();
        }
        tx.batch_execute(sql).unwrap();
        for (table, name) in &triggers {
            tx.batch_execute(&format!("ALTER TABLE {table} ENABLE TRIGGER \"{name}\""))
                .unwrap();
        }
        for (table, name, def) in &checks {
            tx.batch_execute(&format!(
                "ALTER TABLE {table} ADD CONSTRAINT \"{name}\" {def} NOT VALID"
            ))
            .unwrap();
        }
        tx.commit().unwrap();
    }

    fn query_ints(&self, sql: &str) -> Vec<i64> {
        let row = self.raw().query_one(sql, &[]).unwrap();
        (0..row.len()).map(|i| int(&row, i)).collect()
    }

    fn query_keyed(&self, sql: &str) -> Vec<(Vec<u8>, Vec<i64>)> {
        self.raw()
            .query(sql, &[])
            .unwrap()
            .iter()
            .map(|row| (row.get(0), (1..row.len()).map(|i| int(row, i)).collect()))
            .collect()
    }

    fn hold_write_lock(&self) -> (Box<dyn Any>, Duration) {
        let mut raw = Client::connect(self.db.url(), NoTls).unwrap();
        raw.batch_execute(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK});
             UPDATE users SET name = 'mallory' WHERE name = 'alice';"
        ))
        .unwrap();
        // As for SQLite (half its busy timeout): reads must not queue behind the batch.
        (Box::new(HeldWriteLock(raw)), Duration::from_millis(2_500))
    }
}

all_store_tests!(PgBackend::new());

/// A real server restart (a private cluster, `pg_ctl stop -m fast` then start): while it is
/// down every call is an error (never a panic, never a hang), and afterwards the same store
/// works again without being reopened, with everything acknowledged before the restart kept.
#[test]
fn store_recovers_after_the_server_restarts() {
    use super::{enqueue_op, ident, one, register, stored};
    use crate::store::WriteResult;

    let Some(mut server) = hush_testsvc::PrivatePostgres::start() else {
        return;
    };
    let db = server.create_db();
    let store = PostgresStore::connect(db.url()).unwrap();
    let (alice, bob) = (ident(1), ident(2));
    assert_eq!(
        one(&store, register("alice", alice)),
        WriteResult::Registered
    );
    let first = stored(one(&store, enqueue_op(bob, b"before", 1)));
    // Open the readers too, so that they also have to notice the restart.
    assert_eq!(store.pending(&bob, 0, 10, usize::MAX).unwrap().len(), 1);

    server.stop();
    assert!(store.apply(&[enqueue_op(bob, b"lost", 2)]).is_err());
    assert!(store.pending(&bob, 0, 10, usize::MAX).is_err());
    assert!(store.identity_of("alice").is_err());

    server.restart();
    // The calls during the outage dropped the dead connections: the first call after the
    // restart connects afresh and succeeds.
    let second = stored(one(&store, enqueue_op(bob, b"after", 3)));
    assert!(second > first);
    assert_eq!(store.identity_of("alice").unwrap(), Some(alice));
    let envelopes: Vec<Vec<u8>> = store
        .pending(&bob, 0, 10, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|m| m.envelope)
        .collect();
    assert_eq!(envelopes, vec![b"before".to_vec(), b"after".to_vec()]);
    drop(store);
    drop(db);
}
