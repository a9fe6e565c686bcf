//! Prekeys (classical and PQ) and schema migrations, against real database files.

use super::*;
use crate::store::PrekeyStock;
use hush_proto::pq::{PqPrekey, KEM_ENCAPSULATION_KEY_LEN, LAST_RESORT_ID_BIT};

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
    let (dir, store) = open();
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
    // Replacing a held id did not count it twice in the metrics.
    check_prekey_totals(&dir);
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
    // The ghost's cascaded one-time prekey left the metrics' total too.
    check_prekey_totals(&dir);
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

/// A PQ prekey as the store sees it (signatures are checked by the handler, not here).
fn pq(id: u32) -> PqPrekey {
    PqPrekey {
        id,
        encapsulation_key: Box::new([(id % 251) as u8; KEM_ENCAPSULATION_KEY_LEN]),
        signature: [(id % 13) as u8; 64],
    }
}

const LR: u32 = LAST_RESORT_ID_BIT;

fn publish_pq(identity: IdentityBytes, last_resort: Option<u32>, ids: &[u32], max: u32) -> WriteOp {
    WriteOp::PublishPqPrekeys {
        identity,
        last_resort: last_resort.map(pq),
        one_time: ids.iter().map(|&id| pq(id)).collect(),
        max_stock: max,
    }
}

fn pq_stored(n: u32) -> WriteResult {
    WriteResult::PqPrekeysStored {
        one_time_remaining: n,
    }
}

fn pq_id(result: WriteResult) -> Option<u32> {
    bundle(result).pq_prekey.map(|key| key.id)
}

/// The metrics' prekey totals (kept by triggers) agree with the rows they count.
pub(super) fn check_prekey_totals(dir: &TempDir) {
    let raw = Connection::open(dir.path().join("relay.db")).unwrap();
    let stock = prekey_stock(&raw).unwrap();
    let counted = PrekeyStock {
        one_time: rows(dir, "one_time_prekeys") as u64,
        pq_one_time: rows(dir, "pq_one_time_prekeys") as u64,
        pq_last_resort: rows(dir, "pq_last_resort_prekeys") as u64,
    };
    assert_eq!(stock, counted);
}

pub(super) fn rows(dir: &TempDir, table: &str) -> i64 {
    Connection::open(dir.path().join("relay.db"))
        .unwrap()
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .unwrap()
}

/// One-time PQ prekeys are popped once each, lowest id first, in the same fetch as the
/// classical one-time prekey; then the last-resort key is served again and again.
#[test]
fn pq_one_time_prekeys_pop_once_then_last_resort_repeats() {
    let (dir, store) = open();
    let alice = ident(1);
    one(&store, register("alice", alice));
    one(&store, publish(alice, 1, &[1, 2], 10));
    assert_eq!(
        one(&store, publish_pq(alice, Some(LR | 7), &[4, 3], 10)),
        pq_stored(2)
    );
    let first = bundle(one(&store, fetch("alice")));
    assert_eq!(first.one_time_prekey, Some(otp(1)));
    assert_eq!(first.pq_prekey, Some(pq(3)));
    assert_eq!(pq_id(one(&store, fetch("alice"))), Some(4));
    for _ in 0..3 {
        let b = bundle(one(&store, fetch("alice")));
        assert_eq!(b.pq_prekey, Some(pq(LR | 7)));
    }
    assert_eq!(rows(&dir, "pq_one_time_prekeys"), 0);
    assert_eq!(rows(&dir, "pq_last_resort_prekeys"), 1);
    // Two fetches in one batch get distinct one-time keys.
    one(&store, publish_pq(alice, None, &[8, 9], 10));
    let ids: Vec<_> = store
        .apply(&[fetch("alice"), fetch("alice")])
        .unwrap()
        .into_iter()
        .map(pq_id)
        .collect();
    assert_eq!(ids, vec![Some(8), Some(9)]);
    check_prekey_totals(&dir);
    assert_eq!(
        store.prekey_stock().unwrap(),
        PrekeyStock {
            one_time: 0,
            pq_one_time: 0,
            pq_last_resort: 1
        }
    );
}

/// An identity that never published PQ prekeys gets a version-1 bundle (no PQ prekey); one
/// with only one-time PQ keys gets none once they are used up.
#[test]
fn bundles_without_pq_prekeys_stay_version_1() {
    let (_dir, store) = open();
    let (alice, bob) = (ident(1), ident(2));
    one(&store, register("alice", alice));
    one(&store, publish(alice, 1, &[1], 10));
    assert_eq!(pq_id(one(&store, fetch("alice"))), None);
    one(&store, register("bob", bob));
    one(&store, publish(bob, 1, &[], 10));
    one(&store, publish_pq(bob, None, &[5], 10));
    assert_eq!(pq_id(one(&store, fetch("bob"))), Some(5));
    assert_eq!(pq_id(one(&store, fetch("bob"))), None);
}

/// A new last-resort key replaces the old one; the stock cap counts only new one-time ids and
/// a refused publish changes nothing (not even the last-resort key).
#[test]
fn pq_last_resort_replaced_and_stock_capped() {
    let (dir, store) = open();
    let alice = ident(1);
    one(&store, register("alice", alice));
    one(&store, publish(alice, 1, &[], 10));
    assert_eq!(
        one(&store, publish_pq(alice, Some(LR | 1), &[1, 2, 3], 4)),
        pq_stored(3)
    );
    assert_eq!(
        one(&store, publish_pq(alice, Some(LR | 2), &[4, 5], 4)),
        WriteResult::TooManyPrekeys
    );
    // Re-sending held ids does not count; exactly filling the stock is fine.
    assert_eq!(
        one(&store, publish_pq(alice, None, &[3, 4], 4)),
        pq_stored(4)
    );
    check_prekey_totals(&dir);
    // A last-resort rotation alone is never refused for the stock.
    assert_eq!(
        one(&store, publish_pq(alice, Some(LR | 2), &[], 1)),
        pq_stored(4)
    );
    for id in 1..=4 {
        assert_eq!(pq_id(one(&store, fetch("alice"))), Some(id));
    }
    assert_eq!(pq_id(one(&store, fetch("alice"))), Some(LR | 2));
    assert_eq!(
        one(&store, publish_pq(ident(9), Some(LR), &[1], 4)),
        WriteResult::NotRegistered
    );
}

/// With the fetched user's budget spent, the last-resort key is served and the one-time stock
/// is left alone; without a last-resort key a one-time key is still served, so the bundle does
/// not look like a downgrade.
#[test]
fn budget_spent_serves_last_resort() {
    let (dir, store) = open();
    let (alice, bob) = (ident(1), ident(2));
    for (name, who) in [("alice", alice), ("bob", bob)] {
        one(&store, register(name, who));
        one(&store, publish(who, 1, &[1], 10));
    }
    one(&store, publish_pq(alice, Some(LR), &[1], 10));
    one(&store, publish_pq(bob, None, &[1], 10));
    let unpopped = |name: &str| WriteOp::FetchBundle {
        name: name.to_owned(),
        pop_one_time: false,
    };
    let b = bundle(one(&store, unpopped("alice")));
    assert_eq!(
        (b.one_time_prekey, b.pq_prekey.map(|k| k.id)),
        (None, Some(LR))
    );
    assert_eq!(pq_id(one(&store, unpopped("bob"))), Some(1));
    assert_eq!(rows(&dir, "pq_one_time_prekeys"), 1);
    assert_eq!(rows(&dir, "one_time_prekeys"), 2);
    check_prekey_totals(&dir);
}

/// Freeing a name deletes the identity's PQ prekeys with its classical ones, and the expiry
/// sweep deletes PQ prekeys of identities without a name.
#[test]
fn pq_prekeys_go_with_the_name() {
    let (dir, store) = open();
    let (alice, ghost) = (ident(1), ident(2));
    one(&store, register("alice", alice));
    one(&store, publish(alice, 1, &[1], 10));
    one(&store, publish_pq(alice, Some(LR), &[1, 2], 10));
    let raw = Connection::open(dir.path().join("relay.db")).unwrap();
    raw.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
    raw.execute(
        "INSERT INTO pq_one_time_prekeys (identity, id, encapsulation_key, signature)
         VALUES (?1, 1, zeroblob(1184), zeroblob(64))",
        params![ghost.as_slice()],
    )
    .unwrap();
    raw.execute(
        "INSERT INTO pq_last_resort_prekeys (identity, id, encapsulation_key, signature)
         VALUES (?1, 2147483648, zeroblob(1184), zeroblob(64))",
        params![ghost.as_slice()],
    )
    .unwrap();
    drop(raw);
    one(&store, WriteOp::Expire { before_ms: 0 });
    assert_eq!(rows(&dir, "pq_one_time_prekeys"), 2);
    assert_eq!(rows(&dir, "pq_last_resort_prekeys"), 1);
    assert_eq!(store.free_name("alice").unwrap(), Some(alice));
    assert_eq!(rows(&dir, "pq_one_time_prekeys"), 0);
    assert_eq!(rows(&dir, "pq_last_resort_prekeys"), 0);
    assert_eq!(rows(&dir, "one_time_prekeys"), 0);
    check_prekey_totals(&dir);
}

/// A malformed PQ prekey row is an error naming the row, never a panic.
#[test]
fn malformed_pq_rows_are_errors() {
    let (dir, store) = open();
    one(&store, register("alice", ident(1)));
    one(&store, publish(ident(1), 1, &[], 10));
    one(&store, publish_pq(ident(1), Some(LR), &[], 10));
    let raw = Connection::open(dir.path().join("relay.db")).unwrap();
    raw.execute_batch(
        "PRAGMA ignore_check_constraints = ON;
         UPDATE pq_last_resort_prekeys SET encapsulation_key = x'0102';",
    )
    .unwrap();
    drop(raw);
    let err = store.apply(&[fetch("alice")]).unwrap_err();
    assert!(err.0.contains("last-resort PQ prekey"), "{err}");
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
