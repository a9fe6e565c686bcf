//! The suite against [`SqliteStore`]: a fresh file in a temp dir per test.

use std::any::Any;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rusqlite::Connection;
use tempfile::TempDir;

use super::{all_store_tests, store_suite, Backend};
use crate::store::sqlite::{SqliteStore, BUSY_TIMEOUT};
use crate::store::{IdentityBytes, Store, StoreError};

/// A [`SqliteStore`] on `relay.db` in a temp dir of its own (or on a file a test made).
pub(crate) struct SqliteBackend {
    store: Option<SqliteStore>,
    path: PathBuf,
    _dir: Option<TempDir>,
}

impl SqliteBackend {
    /// A fresh store; always `Some` (SQLite needs no service).
    pub(crate) fn new() -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let mut backend = Self::open_at(&dir.path().join("relay.db"));
        backend._dir = Some(dir);
        Some(backend)
    }

    /// Opens the store on an existing (or new) file; the caller keeps the file.
    pub(crate) fn open_at(path: &Path) -> Self {
        SqliteBackend {
            store: Some(SqliteStore::open(path).unwrap()),
            path: path.to_owned(),
            _dir: None,
        }
    }

    pub(crate) fn sqlite(&self) -> &SqliteStore {
        self.store.as_ref().unwrap()
    }

    fn raw(&self) -> Connection {
        Connection::open(&self.path).unwrap()
    }
}

/// An open `BEGIN IMMEDIATE` transaction on a connection of its own, rolled back on drop.
struct HeldWriteLock(Connection);

impl Drop for HeldWriteLock {
    fn drop(&mut self) {
        self.0.execute_batch("ROLLBACK").unwrap();
    }
}

impl Backend for SqliteBackend {
    fn store(&self) -> &dyn Store {
        self.sqlite()
    }

    fn reopen(&mut self) {
        drop(self.store.take());
        self.store = Some(SqliteStore::open(&self.path).unwrap());
    }

    fn free_name(&self, name: &str) -> Result<Option<IdentityBytes>, StoreError> {
        self.sqlite().free_name(name)
    }

    fn blob(&self, bytes: &[u8]) -> String {
        format!("x'{}'", hex::encode(bytes))
    }

    fn exec(&self, sql: &str) {
        let raw = self.raw();
        raw.execute_batch("PRAGMA foreign_keys = ON").unwrap();
        raw.execute_batch(sql).unwrap();
    }

    fn tamper(&self, sql: &str) {
        let raw = self.raw();
        raw.execute_batch("PRAGMA foreign_keys = OFF; PRAGMA ignore_check_constraints = ON")
            .unwrap();
        raw.execute_batch(sql).unwrap();
    }

    fn query_ints(&self, sql: &str) -> Vec<i64> {
        let raw = self.raw();
        let mut stmt = raw.prepare(sql).unwrap();
        let columns = stmt.column_count();
        stmt.query_row([], |r| (0..columns).map(|i| r.get(i)).collect())
            .unwrap()
    }

    fn query_keyed(&self, sql: &str) -> Vec<(Vec<u8>, Vec<i64>)> {
        let raw = self.raw();
        let mut stmt = raw.prepare(sql).unwrap();
        let columns = stmt.column_count();
        stmt.query_map([], |r| {
            Ok((
                r.get(0)?,
                (1..columns).map(|i| r.get(i)).collect::<Result<_, _>>()?,
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
    }

    fn hold_write_lock(&self) -> (Box<dyn Any>, Duration) {
        let raw = self.raw();
        raw.execute_batch(
            "BEGIN IMMEDIATE; UPDATE users SET name = 'mallory' WHERE name = 'alice';",
        )
        .unwrap();
        (Box::new(HeldWriteLock(raw)), BUSY_TIMEOUT / 2)
    }
}

all_store_tests!(SqliteBackend::new());
