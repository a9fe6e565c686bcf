//! Files written by older relays (their exact schemas, real rows) open as the current
//! version with their data kept.

use super::*;
use crate::store::suite::groups::{accepted, ack_all, commit_op, envelopes, recipients};
use crate::store::suite::prekeys::{pq_id, pq_stored, publish_pq, LR};
use crate::store::suite::spk;
use crate::store::GroupStats;

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
    // What a version-1 relay wrote: no sender counters, no PQ prekey tables.
    raw.execute_batch(
        "DROP TABLE sender_usage; DROP TABLE pq_one_time_prekeys;
         DROP TABLE pq_last_resort_prekeys; DROP TABLE prekey_totals;
         DROP TRIGGER one_time_prekey_added; DROP TRIGGER one_time_prekey_removed;
         DROP TABLE key_packages_last_resort; DROP TABLE key_packages_one_time;
         DROP TABLE group_members; DROP TABLE group_commits; DROP TABLE groups;
         DROP TABLE group_blobs; DROP TABLE group_totals;
         ALTER TABLE messages DROP COLUMN blob;
         PRAGMA user_version = 1;",
    )
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
    // ... and on to version 3: the PQ prekey tables exist, empty.
    let pq: i64 = raw
        .query_row("SELECT count(*) FROM pq_one_time_prekeys", [], |r| r.get(0))
        .unwrap();
    assert_eq!(pq, 0);
    check_counters(&dir);
}

/// A database file written by a version-2 relay (its exact schema, real rows) opens as version
/// 3: users, prekeys, mail and counters are kept, and PQ prekeys can be stored at once.
#[test]
fn version_2_database_migrates_to_3_keeping_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.db");
    let alice = ident(1);
    let raw = Connection::open(&path).unwrap();
    raw.execute_batch("PRAGMA journal_mode = WAL").unwrap();
    raw.execute_batch(schema::SCHEMA).unwrap();
    raw.execute_batch(schema::SENDER_USAGE).unwrap();
    raw.pragma_update(None, "application_id", schema::APPLICATION_ID)
        .unwrap();
    raw.pragma_update(None, "user_version", 2).unwrap();
    raw.execute(
        "INSERT INTO users (identity, name, signature, registered_at_ms)
         VALUES (?1, 'alice', zeroblob(64), 5)",
        params![alice.as_slice()],
    )
    .unwrap();
    let s = spk(4);
    raw.execute(
        "INSERT INTO signed_prekeys (identity, id, created_at, public, signature)
         VALUES (?1, 4, ?2, ?3, ?4)",
        params![
            alice.as_slice(),
            s.created_at as i64,
            s.public_key.as_bytes().as_slice(),
            s.signature.as_slice()
        ],
    )
    .unwrap();
    raw.execute(
        "INSERT INTO one_time_prekeys (identity, id, public) VALUES (?1, 10, ?2)",
        params![alice.as_slice(), otp(10).public_key.as_bytes().as_slice()],
    )
    .unwrap();
    raw.execute(
        "INSERT INTO messages (recipient, sender, received_at_ms, envelope)
         VALUES (?1, ?2, 7, x'010203')",
        params![alice.as_slice(), ident(2).as_slice()],
    )
    .unwrap();
    raw.execute(
        "INSERT INTO mailbox_usage (recipient, messages, bytes) VALUES (?1, 1, 3)",
        params![alice.as_slice()],
    )
    .unwrap();
    raw.execute(
        "INSERT INTO sender_usage (sender, bytes) VALUES (?1, 3)",
        params![ident(2).as_slice()],
    )
    .unwrap();
    raw.execute_batch("UPDATE mailbox_totals SET messages = 1, bytes = 3")
        .unwrap();
    drop(raw);

    let store = SqliteStore::open(&path).unwrap();
    let version: i64 = store
        .writer()
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, SCHEMA_VERSION);
    // The metrics' totals start from the prekeys already stored.
    assert_eq!(store.prekey_stock().unwrap().one_time, 1);
    assert_eq!(store.identity_of("alice").unwrap(), Some(alice));
    let pending = store.pending(&alice, 0, 10, usize::MAX).unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].envelope, vec![1, 2, 3]);
    assert_eq!(pending[0].sender, ident(2));
    assert_eq!(
        store.totals().unwrap(),
        StoreTotals {
            messages: 1,
            bytes: 3
        }
    );
    // The classical bundle is served as before: version 1, no PQ prekey yet.
    let b = bundle(one(&store, fetch("alice")));
    assert_eq!(b.signed_prekey, s);
    assert_eq!(b.one_time_prekey, Some(otp(10)));
    assert_eq!(b.pq_prekey, None);
    assert_eq!(
        one(&store, publish_pq(alice, Some(LR), &[1], 10)),
        pq_stored(1)
    );
    assert_eq!(pq_id(one(&store, fetch("alice"))), Some(1));
    drop(store);
    // Reopening a version-3 file changes nothing and keeps the PQ key.
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(pq_id(one(&store, fetch("alice"))), Some(LR));
    check_counters(&dir);
}

/// A database file written by a version-3 relay (its exact schema, real rows) opens as
/// version 4: its data is kept, its mail still delivered and acked, and groups work at once.
#[test]
fn version_3_database_migrates_to_4_keeping_its_data() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("relay.db");
    let (alice, bob) = (ident(1), ident(2));
    let raw = Connection::open(&path).unwrap();
    raw.execute_batch("PRAGMA journal_mode = WAL").unwrap();
    raw.execute_batch(schema::SCHEMA).unwrap();
    raw.execute_batch(schema::SENDER_USAGE).unwrap();
    raw.execute_batch(schema::PQ_PREKEYS).unwrap();
    raw.pragma_update(None, "application_id", schema::APPLICATION_ID)
        .unwrap();
    raw.pragma_update(None, "user_version", 3).unwrap();
    for (identity, name) in [(alice, "alice"), (bob, "bob")] {
        raw.execute(
            "INSERT INTO users (identity, name, signature, registered_at_ms)
             VALUES (?1, ?2, zeroblob(64), 5)",
            params![identity.as_slice(), name],
        )
        .unwrap();
    }
    raw.execute(
        "INSERT INTO messages (recipient, sender, received_at_ms, envelope)
         VALUES (?1, ?2, 7, x'010203')",
        params![alice.as_slice(), bob.as_slice()],
    )
    .unwrap();
    raw.execute(
        "INSERT INTO mailbox_usage (recipient, messages, bytes) VALUES (?1, 1, 3)",
        params![alice.as_slice()],
    )
    .unwrap();
    raw.execute(
        "INSERT INTO sender_usage (sender, bytes) VALUES (?1, 3)",
        params![bob.as_slice()],
    )
    .unwrap();
    raw.execute_batch("UPDATE mailbox_totals SET messages = 1, bytes = 3")
        .unwrap();
    drop(raw);

    let store = SqliteStore::open(&path).unwrap();
    let version: i64 = store
        .writer()
        .unwrap()
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .unwrap();
    assert_eq!(version, 4);
    assert_eq!(store.identity_of("bob").unwrap(), Some(bob));
    assert_eq!(envelopes(&store, alice), vec![vec![1, 2, 3]]);
    assert_eq!(store.group_stats().unwrap(), GroupStats::default());
    // Groups and KeyPackages work on the migrated file.
    let (epoch, _, welcome) = accepted(one(&store, commit_op(alice, 0, &[bob], &[], 1)));
    assert_eq!((epoch, recipients(&welcome)), (1, vec![bob]));
    assert_eq!(
        one(
            &store,
            WriteOp::PublishKeyPackages {
                identity: bob,
                last_resort: Some(vec![1]),
                one_time: vec![],
                max_stock: 10
            }
        ),
        WriteResult::KeyPackagesStored {
            one_time_remaining: 0
        }
    );
    // The old message is acked as before.
    assert_eq!(ack_all(&store, alice), 1);
    drop(store);
    // Reopening a version-4 file changes nothing.
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(envelopes(&store, bob), vec![vec![1, 5, 1, 1, 1]]);
    drop(store);
    check_counters(&dir);
}
