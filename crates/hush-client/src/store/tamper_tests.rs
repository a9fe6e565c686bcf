//! Someone with write access to the profile file (but not the passphrase) edits rows:
//! every such edit must be refused as tampering, never silently accepted.

use std::time::{Duration, Instant};

use rusqlite::types::Value;

use super::*;

fn fast() -> KdfParams {
    KdfParams {
        m_cost: 256,
        t_cost: 1,
        p_cost: 1,
    }
}

fn raw(dir: &Path) -> rusqlite::Connection {
    rusqlite::Connection::open(dir.join(DATABASE_FILE)).unwrap()
}

/// Every column of the rows of `table` matching `filter` (an SQL condition on `?1`).
fn snapshot(dir: &Path, table: &str, filter: &str, arg: Value) -> Vec<Vec<Value>> {
    let conn = raw(dir);
    let mut stmt = conn
        .prepare(&format!("SELECT * FROM {table} WHERE {filter}"))
        .unwrap();
    let n = stmt.column_count();
    let rows = stmt
        .query_map([arg], |r| (0..n).map(|i| r.get::<_, Value>(i)).collect())
        .unwrap();
    rows.map(|r| r.unwrap()).collect()
}

/// Put these exact rows back (replacing whatever has the same primary key).
fn restore(dir: &Path, table: &str, rows: &[Vec<Value>]) {
    let conn = raw(dir);
    for row in rows {
        let marks = vec!["?"; row.len()].join(", ");
        conn.execute(
            &format!("INSERT OR REPLACE INTO {table} VALUES ({marks})"),
            rusqlite::params_from_iter(row.iter()),
        )
        .unwrap();
    }
}

fn lookup(dir: &Path, namespace: &str, key: &[u8]) -> Vec<u8> {
    let store = Store::open(dir, b"pw").unwrap();
    store.keys.lookup_key(namespace, key)
}

fn read_kv(dir: &Path, namespace: &str, key: &str) -> Result<Option<String>, StoreError> {
    let mut store = Store::open(dir, b"pw")?;
    let tx = store.tx()?;
    tx.get(namespace, key)
}

fn assert_tampered<T: std::fmt::Debug>(result: Result<T, StoreError>) {
    match result {
        Err(StoreError::Tampered { .. }) => {}
        other => panic!("expected StoreError::Tampered, got {other:?}"),
    }
}

fn rolled_back_row_is_refused(namespace: &str) {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = Store::create(dir.path(), b"pw", fast()).unwrap();
        let tx = store.tx().unwrap();
        tx.put(namespace, "bob", &"old: trusted, no key change")
            .unwrap();
        tx.put("config", "self", &"unrelated").unwrap();
        tx.commit().unwrap();
    }
    let k = lookup(dir.path(), namespace, b"bob");
    let old = snapshot(dir.path(), "kv", "k = ?1", Value::Blob(k));
    assert_eq!(old.len(), 1);
    {
        let mut store = Store::open(dir.path(), b"pw").unwrap();
        let tx = store.tx().unwrap();
        tx.put(namespace, "bob", &"new: KEY CHANGED").unwrap();
        tx.commit().unwrap();
    }
    restore(dir.path(), "kv", &old);
    assert_tampered(read_kv(dir.path(), namespace, "bob"));
}

#[test]
fn a_contact_rolled_back_to_an_older_sealed_value_is_tampered() {
    rolled_back_row_is_refused("contact");
}

#[test]
fn a_prekeys_row_rolled_back_to_an_older_sealed_value_is_tampered() {
    rolled_back_row_is_refused("prekeys");
}

#[test]
fn a_sessions_row_rolled_back_to_an_older_sealed_value_is_tampered() {
    rolled_back_row_is_refused("sessions");
}

#[test]
fn a_value_moved_to_another_key_is_tampered() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = Store::create(dir.path(), b"pw", fast()).unwrap();
        let tx = store.tx().unwrap();
        tx.put("contact", "bob", &"bob's record").unwrap();
        tx.put("contact", "carol", &"carol's record").unwrap();
        tx.commit().unwrap();
    }
    let bob = lookup(dir.path(), "contact", b"bob");
    let carol = lookup(dir.path(), "contact", b"carol");
    raw(dir.path())
        .execute("DELETE FROM kv WHERE k = ?1", params![carol])
        .unwrap();
    raw(dir.path())
        .execute("UPDATE kv SET k = ?1 WHERE k = ?2", params![carol, bob])
        .unwrap();
    assert_tampered(read_kv(dir.path(), "contact", "carol"));
}

#[test]
fn a_deleted_row_is_tampered() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = Store::create(dir.path(), b"pw", fast()).unwrap();
        let tx = store.tx().unwrap();
        tx.put("contact", "bob", &"bob's record").unwrap();
        tx.commit().unwrap();
    }
    let bob = lookup(dir.path(), "contact", b"bob");
    raw(dir.path())
        .execute("DELETE FROM kv WHERE k = ?1", params![bob])
        .unwrap();
    assert_tampered(read_kv(dir.path(), "contact", "bob"));
}

#[test]
fn a_history_row_moved_to_another_contact_is_tampered() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = Store::create(dir.path(), b"pw", fast()).unwrap();
        let tx = store.tx().unwrap();
        tx.add_message("alice", b"m1", &"said to alice").unwrap();
        tx.add_message("bob", b"m2", &"said to bob").unwrap();
        tx.commit().unwrap();
    }
    let alice = lookup(dir.path(), "contact", b"alice");
    let bob = lookup(dir.path(), "contact", b"bob");
    raw(dir.path())
        .execute(
            "UPDATE messages SET contact = ?1 WHERE contact = ?2",
            params![bob, alice],
        )
        .unwrap();
    let read = || -> Result<Vec<Row<String>>, StoreError> {
        let mut store = Store::open(dir.path(), b"pw")?;
        let tx = store.tx()?;
        tx.messages("bob")
    };
    assert_tampered(read());
}

#[test]
fn swapped_outbox_rows_are_tampered() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = Store::create(dir.path(), b"pw", fast()).unwrap();
        let tx = store.tx().unwrap();
        tx.push_outbox(&"first").unwrap();
        tx.push_outbox(&"second").unwrap();
        tx.commit().unwrap();
    }
    let rows = snapshot(dir.path(), "outbox", "1 = ?1", Value::Integer(1));
    assert_eq!(rows.len(), 2);
    let mut swapped = rows.clone();
    // Exchange everything but the sequence number (column 0).
    let (a, b) = swapped.split_at_mut(1);
    for (x, y) in a[0].iter_mut().zip(b[0].iter_mut()).skip(1) {
        std::mem::swap(x, y);
    }
    restore(dir.path(), "outbox", &swapped);
    let read = || -> Result<Vec<Row<String>>, StoreError> {
        let mut store = Store::open(dir.path(), b"pw")?;
        let tx = store.tx()?;
        tx.outbox()
    };
    assert_tampered(read());
}

fn set_kdf(dir: &Path, json: &str) {
    raw(dir)
        .execute(
            "UPDATE meta SET v = ?1 WHERE k = 'kdf'",
            params![json.as_bytes()],
        )
        .unwrap();
}

/// Run `open` on a thread and give up after a few seconds, so a hang fails the test.
fn open_within(dir: &Path, limit: Duration) -> Result<(), String> {
    let dir = dir.to_owned();
    let (send, recv) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let r = Store::open(&dir, b"pw")
            .map(|_| ())
            .map_err(|e| e.to_string());
        let _ = send.send(r);
    });
    recv.recv_timeout(limit)
        .unwrap_or_else(|_| panic!("open did not return within {limit:?}"))
}

#[test]
fn huge_kdf_time_cost_is_refused_quickly_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::create(dir.path(), b"pw", fast()).unwrap());
    set_kdf(
        dir.path(),
        r#"{"m_cost":256,"t_cost":4294967295,"p_cost":1}"#,
    );
    let start = Instant::now();
    let err = open_within(dir.path(), Duration::from_secs(5)).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(err.contains("key-derivation parameters"), "{err}");
}

#[test]
fn huge_kdf_memory_cost_is_refused_quickly_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::create(dir.path(), b"pw", fast()).unwrap());
    set_kdf(dir.path(), r#"{"m_cost":1073741824,"t_cost":1,"p_cost":1}"#);
    let start = Instant::now();
    let err = open_within(dir.path(), Duration::from_secs(5)).unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(2));
    assert!(err.contains("key-derivation parameters"), "{err}");
}

#[test]
fn weakened_kdf_parameters_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::create(dir.path(), b"pw", fast()).unwrap());
    set_kdf(dir.path(), r#"{"m_cost":8,"t_cost":1,"p_cost":1}"#);
    assert!(Store::open(dir.path(), b"pw").is_err());
}

#[test]
fn an_old_format_profile_gives_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    drop(Store::create(dir.path(), b"pw", fast()).unwrap());
    raw(dir.path())
        .pragma_update(None, "user_version", 1)
        .unwrap();
    match Store::open(dir.path(), b"pw") {
        Err(StoreError::UnsupportedFormat { found: 1, .. }) => {}
        Err(e) => panic!("unexpected error {e}"),
        Ok(_) => panic!("an old-format profile was opened"),
    }
}

#[test]
fn short_history_texts_of_different_lengths_seal_to_equal_sizes() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::create(dir.path(), b"pw", fast()).unwrap();
    let tx = store.tx().unwrap();
    tx.add_message("bob", b"m1", &"ok").unwrap();
    tx.add_message(
        "bob",
        b"m2",
        &"see you at the station at seven, bring the maps",
    )
    .unwrap();
    tx.commit().unwrap();
    drop(store);
    let sizes: Vec<i64> = raw(dir.path())
        .prepare("SELECT length(v) FROM messages ORDER BY seq")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(|r| r.unwrap())
        .collect();
    assert_eq!(sizes.len(), 2);
    assert_eq!(sizes[0], sizes[1]);
}

#[test]
fn a_row_rolled_back_while_the_profile_is_open_is_refused_on_the_next_read() {
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::create(dir.path(), b"pw", fast()).unwrap();
    let k = store.keys.lookup_key("contact", b"bob");
    let tx = store.tx().unwrap();
    tx.put("contact", "bob", &"old").unwrap();
    tx.commit().unwrap();
    let old = snapshot(dir.path(), "kv", "k = ?1", Value::Blob(k));
    let tx = store.tx().unwrap();
    tx.put("contact", "bob", &"new").unwrap();
    tx.commit().unwrap();
    restore(dir.path(), "kv", &old);
    let tx = store.tx().unwrap();
    assert_tampered(tx.get::<String>("contact", "bob"));
}

#[test]
fn honest_writes_deletes_and_abandoned_transactions_reopen_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = Store::create(dir.path(), b"pw", fast()).unwrap();
        for round in 0..3 {
            let tx = store.tx().unwrap();
            tx.put("contact", "bob", &format!("v{round}")).unwrap();
            tx.put("contact", "bob", &format!("w{round}")).unwrap();
            tx.put("contact", "carol", &"c").unwrap();
            tx.add_message("bob", format!("m{round}").as_bytes(), &"hi")
                .unwrap();
            tx.update_message(format!("m{round}").as_bytes(), &"hi, delivered")
                .unwrap();
            let seq = tx.push_outbox(&"out").unwrap();
            tx.push_outbox(&"kept").unwrap();
            tx.remove_outbox(seq).unwrap();
            tx.delete("contact", "carol").unwrap();
            tx.commit().unwrap();
        }
        // A transaction dropped without commit changes nothing, on disk or in memory.
        let tx = store.tx().unwrap();
        tx.put("contact", "bob", &"never committed").unwrap();
        tx.push_outbox(&"never queued").unwrap();
        drop(tx);
        let tx = store.tx().unwrap();
        assert_eq!(tx.get::<String>("contact", "bob").unwrap().unwrap(), "w2");
    }
    let mut store = Store::open(dir.path(), b"pw").unwrap();
    let tx = store.tx().unwrap();
    assert_eq!(tx.get::<String>("contact", "bob").unwrap().unwrap(), "w2");
    assert_eq!(tx.get::<String>("contact", "carol").unwrap(), None);
    let history = tx.messages::<String>("bob").unwrap();
    assert_eq!(history.len(), 3);
    assert!(history.iter().all(|r| r.value == "hi, delivered"));
    let outbox = tx.outbox::<String>().unwrap();
    assert_eq!(outbox.len(), 3);
    assert!(outbox.iter().all(|r| r.value == "kept"));
}

#[test]
fn an_empty_passphrase_is_refused_unless_explicitly_allowed() {
    let dir = tempfile::tempdir().unwrap();
    assert!(matches!(
        Store::create(&dir.path().join("a"), b"", fast()),
        Err(StoreError::EmptyPassphrase)
    ));
    assert!(!dir.path().join("a").join(DATABASE_FILE).exists());
    drop(Store::create(&dir.path().join("b"), Passphrase::allow_empty(b""), fast()).unwrap());
    assert!(Store::open(&dir.path().join("b"), b"").is_ok());
}

#[test]
fn a_value_sealed_by_an_abandoned_transaction_cannot_replace_the_committed_one() {
    // An abandoned transaction's pages can reach the WAL file (cache spill) without being
    // committed; the next transaction reuses its generation. Its sealed value must still not
    // pass for the committed one.
    let dir = tempfile::tempdir().unwrap();
    let mut store = Store::create(dir.path(), b"pw", fast()).unwrap();
    let k = store.keys.lookup_key("contact", b"bob");
    let tx = store.tx().unwrap();
    tx.put("contact", "bob", &"abandoned: trusted").unwrap();
    let abandoned: Vec<Value> = tx
        .tx
        .query_row("SELECT k, gen, v FROM kv WHERE k = ?1", params![k], |r| {
            Ok(vec![r.get(0)?, r.get(1)?, r.get(2)?])
        })
        .unwrap();
    drop(tx);
    let tx = store.tx().unwrap();
    tx.put("contact", "bob", &"committed: KEY CHANGED").unwrap();
    tx.commit().unwrap();
    drop(store);
    restore(dir.path(), "kv", &[abandoned]);
    assert_tampered(read_kv(dir.path(), "contact", "bob"));
}
