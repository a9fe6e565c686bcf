//! SQLite specifics, against real database files: pragmas, refusing foreign or newer files,
//! WAL checkpoints, and (in [`migrations`]) files written by older relays. What a [`Store`]
//! does is tested for every backend by the shared suite, `crate::store::suite`.

use super::*;
use crate::store::suite::sqlite::SqliteBackend;
use crate::store::suite::{
    bundle, enqueue_op, fetch, ident, one, otp, publish, register, stored, Backend,
};
use tempfile::TempDir;

mod migrations;

fn open() -> (TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("relay.db")).unwrap();
    (dir, store)
}

fn reopen(dir: &TempDir) -> SqliteStore {
    SqliteStore::open(&dir.path().join("relay.db")).unwrap()
}

/// The kept counters agree with the rows (the suite's check, on this file).
fn check_counters(dir: &TempDir) {
    SqliteBackend::open_at(&dir.path().join("relay.db")).check_counters();
}

/// A clean close checkpoints everything into the main file, and the data is there after it.
/// (The rest of what this checked before the suite, reopen and id reuse, is in the suite's
/// `data_survives_reopen_and_ids_are_never_reused`.)
#[test]
fn clean_close_checkpoints_the_wal() {
    let (dir, store) = open();
    let (alice, bob) = (ident(1), ident(2));
    one(&store, register("alice", alice));
    one(&store, publish(alice, 4, &[10, 11], 10));
    let first = stored(one(&store, enqueue_op(bob, b"one", 1)));
    drop(store);
    let store = reopen(&dir);
    assert_eq!(
        bundle(one(&store, fetch("alice"))).one_time_prekey,
        Some(otp(10))
    );
    let second = stored(one(&store, enqueue_op(bob, b"two", 2)));
    assert!(dir.path().join("relay.db-wal").exists());
    drop(store);
    assert!(!dir.path().join("relay.db-wal").exists());

    let store = reopen(&dir);
    assert_eq!(
        bundle(one(&store, fetch("alice"))).one_time_prekey,
        Some(otp(11))
    );
    let ids: Vec<MessageId> = store
        .pending(&bob, 0, 10, usize::MAX)
        .unwrap()
        .iter()
        .map(|m| m.id)
        .collect();
    assert_eq!(ids, vec![first, second]);
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
