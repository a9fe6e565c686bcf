//! Tests of the SQLite store against real database files; prekey and schema tests are in
//! [`prekeys`].

use super::*;
use hush_proto::IdentityKeyPair;
use hush_proto::{OneTimePrekey, PrekeyBundle, SignedPrekey, X25519PublicKey};
use std::sync::Arc;
use tempfile::TempDir;

mod groups;
mod keypackages;
mod prekeys;

const MAX_MESSAGES: u32 = 100;
const MAX_BYTES: u64 = 1 << 20;
const MAX_TOTAL_BYTES: u64 = 1 << 30;

fn open() -> (TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("relay.db")).unwrap();
    (dir, store)
}

fn reopen(dir: &TempDir) -> SqliteStore {
    SqliteStore::open(&dir.path().join("relay.db")).unwrap()
}

/// A valid Ed25519 identity key derived from a one-byte seed.
fn ident(n: u8) -> IdentityBytes {
    *IdentityKeyPair::from_seed(&[n; 32]).public_key().as_bytes()
}

fn spk(id: u32) -> SignedPrekey {
    SignedPrekey {
        id,
        created_at: 1_700_000_000 + u64::from(id),
        public_key: X25519PublicKey::from_bytes([id as u8; 32]),
        signature: [0xA5; 64],
    }
}

fn otp(id: u32) -> OneTimePrekey {
    OneTimePrekey {
        id,
        public_key: X25519PublicKey::from_bytes([(id as u8).wrapping_add(100); 32]),
    }
}

fn register(name: &str, identity: IdentityBytes) -> WriteOp {
    WriteOp::Register {
        name: name.to_owned(),
        identity,
        signature: vec![1; 64],
    }
}

fn publish(identity: IdentityBytes, spk_id: u32, ids: &[u32], max_stock: u32) -> WriteOp {
    WriteOp::PublishPrekeys {
        identity,
        signed_prekey: spk(spk_id),
        one_time: ids.iter().map(|&id| otp(id)).collect(),
        max_stock,
    }
}

fn fetch(name: &str) -> WriteOp {
    WriteOp::FetchBundle {
        name: name.to_owned(),
        pop_one_time: true,
    }
}

fn enqueue_op(recipient: IdentityBytes, envelope: &[u8], at: u64) -> WriteOp {
    WriteOp::Enqueue {
        recipient,
        sender: ident(99),
        envelope: envelope.to_vec(),
        received_at_ms: at,
        max_messages: MAX_MESSAGES,
        max_bytes: MAX_BYTES,
        max_total_bytes: MAX_TOTAL_BYTES,
        max_sender_bytes: MAX_TOTAL_BYTES,
    }
}

/// The O(1) counters agree with the messages they summarise, and empty mailboxes have no
/// usage row.
fn check_counters(dir: &TempDir) {
    prekeys::check_prekey_totals(dir);
    let raw = Connection::open(dir.path().join("relay.db")).unwrap();
    let mut usage: Vec<(Vec<u8>, i64, i64)> = raw
        .prepare("SELECT recipient, messages, bytes FROM mailbox_usage ORDER BY recipient")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    // A mailbox counts a group message's shared bytes in full.
    let actual: Vec<(Vec<u8>, i64, i64)> = raw
        .prepare(
            "SELECT m.recipient, count(*),
                    sum(length(m.envelope) + coalesce(length(b.envelope), 0))
             FROM messages AS m LEFT JOIN group_blobs AS b ON b.id = m.blob
             GROUP BY m.recipient ORDER BY m.recipient",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    usage.sort();
    assert_eq!(usage, actual);
    let totals: (i64, i64) = raw
        .query_row("SELECT messages, bytes FROM mailbox_totals", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    // The totals count bytes as stored: a group message once.
    let stored: (i64, i64) = raw
        .query_row(
            "SELECT (SELECT count(*) FROM messages),
                    (SELECT coalesce(sum(length(envelope)), 0) FROM messages)
                  + (SELECT coalesce(sum(length(envelope)), 0) FROM group_blobs)
                  + (SELECT coalesce(sum(length(envelope)), 0) FROM group_commits)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(totals, stored);
    groups::check_group_counters(&raw);
    let per_sender = |sql: &str| -> Vec<(Vec<u8>, i64)> {
        raw.prepare(sql)
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    assert_eq!(
        per_sender("SELECT sender, bytes FROM sender_usage ORDER BY sender"),
        per_sender(
            "SELECT sender, sum(len) FROM (
                 SELECT sender, length(envelope) AS len FROM messages WHERE blob IS NULL
                 UNION ALL SELECT sender, length(envelope) AS len FROM group_blobs
                 UNION ALL SELECT sender, length(envelope) AS len FROM group_commits)
             GROUP BY sender HAVING sum(len) > 0 ORDER BY sender"
        )
    );
}

fn one(store: &SqliteStore, op: WriteOp) -> WriteResult {
    let mut results = store.apply(&[op]).unwrap();
    assert_eq!(results.len(), 1);
    results.pop().unwrap()
}

fn stored(result: WriteResult) -> MessageId {
    match result {
        WriteResult::Stored(id) => id,
        other => panic!("expected Stored, got {other:?}"),
    }
}

fn bundle(result: WriteResult) -> PrekeyBundle {
    match result {
        WriteResult::Bundle(bundle) => bundle,
        other => panic!("expected Bundle, got {other:?}"),
    }
}

#[test]
fn register_is_first_come_first_served() {
    let (_dir, store) = open();
    let (alice, bob) = (ident(1), ident(2));
    assert_eq!(
        one(&store, register("alice", alice)),
        WriteResult::Registered
    );
    // Same identity, same name again: idempotent.
    assert_eq!(
        one(&store, register("alice", alice)),
        WriteResult::Registered
    );
    // Another identity wants the name.
    assert_eq!(one(&store, register("alice", bob)), WriteResult::NameTaken);
    // The identity wants a second name.
    assert_eq!(
        one(&store, register("alicia", alice)),
        WriteResult::AlreadyRegistered {
            name: "alice".to_owned()
        }
    );
    // Identity check comes first even if the other name is taken too.
    assert_eq!(one(&store, register("bob", bob)), WriteResult::Registered);
    assert_eq!(
        one(&store, register("bob", alice)),
        WriteResult::AlreadyRegistered {
            name: "alice".to_owned()
        }
    );
    assert_eq!(store.identity_of("alice").unwrap(), Some(alice));
    assert_eq!(store.identity_of("bob").unwrap(), Some(bob));
    assert_eq!(store.identity_of("alicia").unwrap(), None);
    assert_eq!(store.name_of(&alice).unwrap().as_deref(), Some("alice"));
    assert_eq!(store.name_of(&ident(3)).unwrap(), None);
}

#[test]
fn enqueue_pending_order_and_cursor() {
    let (dir, store) = open();
    let (alice, bob) = (ident(1), ident(2));
    let mut ids = Vec::new();
    for i in 0..5u8 {
        ids.push(stored(one(
            &store,
            enqueue_op(alice, &[i; 10], 1000 + u64::from(i)),
        )));
        one(&store, enqueue_op(bob, &[0xB0; 3], 1000));
    }
    assert!(ids.windows(2).all(|w| w[0] < w[1]));
    let all = store.pending(&alice, 0, 100, usize::MAX).unwrap();
    assert_eq!(all.iter().map(|m| m.id).collect::<Vec<_>>(), ids);
    assert_eq!(all[2].envelope, vec![2; 10]);
    assert_eq!(all[2].sender, ident(99));
    assert_eq!(all[2].received_at_ms, 1002);
    let page = store.pending(&alice, 0, 2, usize::MAX).unwrap();
    assert_eq!(page.iter().map(|m| m.id).collect::<Vec<_>>(), &ids[..2]);
    let rest = store.pending(&alice, page[1].id, 100, usize::MAX).unwrap();
    assert_eq!(rest.iter().map(|m| m.id).collect::<Vec<_>>(), &ids[2..]);
    assert!(store
        .pending(&alice, ids[4], 100, usize::MAX)
        .unwrap()
        .is_empty());
    assert!(store.pending(&alice, 0, 0, usize::MAX).unwrap().is_empty());
    assert!(store
        .pending(&alice, u64::MAX, 10, usize::MAX)
        .unwrap()
        .is_empty());
    assert!(store
        .pending(&ident(3), 0, 10, usize::MAX)
        .unwrap()
        .is_empty());
    assert_eq!(store.pending(&bob, 0, 100, usize::MAX).unwrap().len(), 5);
    // A page ends with the message that reaches the byte bound; one message always comes.
    let by_bytes = store.pending(&alice, 0, 100, 25).unwrap();
    assert_eq!(by_bytes.iter().map(|m| m.id).collect::<Vec<_>>(), &ids[..3]);
    assert_eq!(store.pending(&alice, 0, 100, 1).unwrap().len(), 1);
    check_counters(&dir);
}

#[test]
fn ack_deletes_only_own_messages() {
    let (dir, store) = open();
    let (alice, bob) = (ident(1), ident(2));
    let a1 = stored(one(&store, enqueue_op(alice, b"a1", 1)));
    let a2 = stored(one(&store, enqueue_op(alice, b"a2", 1)));
    let b1 = stored(one(&store, enqueue_op(bob, b"b1", 1)));
    // Bob acks his own, Alice's, a duplicate, and ids that do not exist.
    assert_eq!(
        one(
            &store,
            WriteOp::Ack {
                recipient: bob,
                ids: vec![a1, b1, b1, a2, 12345, u64::MAX],
            }
        ),
        WriteResult::Acked(1)
    );
    assert!(store.pending(&bob, 0, 10, usize::MAX).unwrap().is_empty());
    assert_eq!(store.pending(&alice, 0, 10, usize::MAX).unwrap().len(), 2);
    assert_eq!(
        one(
            &store,
            WriteOp::Ack {
                recipient: alice,
                ids: vec![a2],
            }
        ),
        WriteResult::Acked(1)
    );
    let left = store.pending(&alice, 0, 10, usize::MAX).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, a1);
    assert_eq!(
        store.totals().unwrap(),
        StoreTotals {
            messages: 1,
            bytes: 2
        }
    );
    check_counters(&dir);
}

#[test]
fn quota_by_messages() {
    let (dir, store) = open();
    let alice = ident(1);
    let op = |n: u8| WriteOp::Enqueue {
        recipient: alice,
        sender: ident(2),
        envelope: vec![n; 4],
        received_at_ms: 5,
        max_messages: 3,
        max_bytes: MAX_BYTES,
        max_total_bytes: MAX_TOTAL_BYTES,
        max_sender_bytes: MAX_TOTAL_BYTES,
    };
    let first = stored(one(&store, op(0)));
    stored(one(&store, op(1)));
    stored(one(&store, op(2)));
    assert_eq!(one(&store, op(3)), WriteResult::MailboxFull);
    assert_eq!(store.pending(&alice, 0, 10, usize::MAX).unwrap().len(), 3);
    // Other mailboxes are unaffected.
    stored(one(&store, enqueue_op(ident(3), b"x", 5)));
    // Acking frees room.
    one(
        &store,
        WriteOp::Ack {
            recipient: alice,
            ids: vec![first],
        },
    );
    stored(one(&store, op(4)));
    assert_eq!(one(&store, op(5)), WriteResult::MailboxFull);
    check_counters(&dir);
}

/// The global quota counts every mailbox, including writes earlier in the same batch, and
/// refuses with StorageFull (not MailboxFull) while each mailbox is far from its own quota.
#[test]
fn global_storage_quota_spans_mailboxes_and_batches() {
    let (dir, store) = open();
    let op = |to: u8, len: usize| WriteOp::Enqueue {
        recipient: ident(to),
        sender: ident(2),
        envelope: vec![7; len],
        received_at_ms: 5,
        max_messages: MAX_MESSAGES,
        max_bytes: MAX_BYTES,
        max_total_bytes: 100,
        max_sender_bytes: MAX_TOTAL_BYTES,
    };
    stored(one(&store, op(10, 60)));
    let results = store.apply(&[op(11, 30), op(12, 11), op(12, 10)]).unwrap();
    assert!(matches!(results[0], WriteResult::Stored(_)));
    assert_eq!(results[1], WriteResult::StorageFull);
    assert!(matches!(results[2], WriteResult::Stored(_)));
    assert_eq!(one(&store, op(13, 1)), WriteResult::StorageFull);
    assert_eq!(store.totals().unwrap().bytes, 100);
    check_counters(&dir);
}

/// One sender cannot take the whole storage quota: it is refused at its share while
/// another sender still stores; acks and expiry give the share back; and above 90 % of
/// the quota only senders below a quarter of their share are accepted.
#[test]
fn each_sender_has_a_share_of_the_storage_quota() {
    let (dir, store) = open();
    let op = |from: u8, to: u8, len: usize, at: u64| WriteOp::Enqueue {
        recipient: ident(to),
        sender: ident(from),
        envelope: vec![7; len],
        received_at_ms: at,
        max_messages: MAX_MESSAGES,
        max_bytes: MAX_BYTES,
        max_total_bytes: 1000,
        max_sender_bytes: 400,
    };
    // Sender 1 fills its share across mailboxes and batches.
    let results = store
        .apply(&[op(1, 10, 200, 5), op(1, 11, 150, 5), op(1, 12, 51, 5)])
        .unwrap();
    let first = stored(results[0].clone());
    assert!(matches!(results[1], WriteResult::Stored(_)));
    assert_eq!(results[2], WriteResult::SenderQuota);
    assert_eq!(
        one(&store, op(1, 12, 50, 5)),
        WriteResult::Stored(first + 2)
    );
    assert_eq!(one(&store, op(1, 13, 1, 5)), WriteResult::SenderQuota);
    // Another sender is not affected.
    stored(one(&store, op(2, 10, 400, 9)));
    check_counters(&dir);
    // An ack gives the sender its bytes back (the recipient acks, not the sender).
    assert_eq!(
        one(
            &store,
            WriteOp::Ack {
                recipient: ident(10),
                ids: vec![first]
            }
        ),
        WriteResult::Acked(1)
    );
    stored(one(&store, op(1, 13, 150, 9)));
    check_counters(&dir);
    // Sender 4 brings the relay to 900 of 1000 bytes. Beyond 90 %, only senders below a
    // quarter of their share (100) are accepted: not sender 1 (at 350), nor sender 4 (at
    // 150, below its share), but sender 3, with nothing stored.
    stored(one(&store, op(4, 16, 150, 9)));
    assert_eq!(one(&store, op(1, 14, 1, 9)), WriteResult::SenderQuota);
    assert_eq!(one(&store, op(4, 14, 1, 9)), WriteResult::SenderQuota);
    stored(one(&store, op(3, 14, 40, 9)));
    // Expiry gives shares back too: sender 1's two messages from t=5 (200 bytes) go.
    assert_eq!(
        one(&store, WriteOp::Expire { before_ms: 6 }),
        WriteResult::Expired(2)
    );
    stored(one(&store, op(1, 15, 10, 9)));
    check_counters(&dir);
    // The shares survive a restart: sender 2 is still at its full share.
    drop(store);
    let store = reopen(&dir);
    assert_eq!(one(&store, op(2, 15, 1, 9)), WriteResult::SenderQuota);
    stored(one(&store, op(5, 15, 1, 9)));
    check_counters(&dir);
}

#[test]
fn quota_by_bytes() {
    let (dir, store) = open();
    let alice = ident(1);
    let op = |len: usize| WriteOp::Enqueue {
        recipient: alice,
        sender: ident(2),
        envelope: vec![7; len],
        received_at_ms: 5,
        max_messages: MAX_MESSAGES,
        max_bytes: 100,
        max_total_bytes: MAX_TOTAL_BYTES,
        max_sender_bytes: MAX_TOTAL_BYTES,
    };
    stored(one(&store, op(60)));
    assert_eq!(one(&store, op(41)), WriteResult::MailboxFull);
    // Exactly reaching the limit is allowed.
    stored(one(&store, op(40)));
    assert_eq!(one(&store, op(1)), WriteResult::MailboxFull);
    assert_eq!(
        store.totals().unwrap(),
        StoreTotals {
            messages: 2,
            bytes: 100
        }
    );
    // A single envelope larger than the whole quota, into an empty mailbox.
    let big = WriteOp::Enqueue {
        recipient: ident(3),
        sender: ident(2),
        envelope: vec![0; 101],
        received_at_ms: 5,
        max_messages: MAX_MESSAGES,
        max_bytes: 100,
        max_total_bytes: MAX_TOTAL_BYTES,
        max_sender_bytes: MAX_TOTAL_BYTES,
    };
    assert_eq!(one(&store, big), WriteResult::MailboxFull);
    check_counters(&dir);
}

#[test]
fn expire_deletes_old_messages_and_updates_usage() {
    let (dir, store) = open();
    let (alice, bob) = (ident(1), ident(2));
    stored(one(&store, enqueue_op(alice, &[1; 10], 100)));
    stored(one(&store, enqueue_op(bob, &[2; 20], 150)));
    let kept = stored(one(&store, enqueue_op(alice, &[3; 30], 200)));
    stored(one(&store, enqueue_op(bob, &[4; 40], 200)));
    assert_eq!(
        one(&store, WriteOp::Expire { before_ms: 200 }),
        WriteResult::Expired(2)
    );
    assert_eq!(
        store.totals().unwrap(),
        StoreTotals {
            messages: 2,
            bytes: 70
        }
    );
    let left = store.pending(&alice, 0, 10, usize::MAX).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].id, kept);
    assert_eq!(
        one(&store, WriteOp::Expire { before_ms: 200 }),
        WriteResult::Expired(0)
    );
    assert_eq!(
        one(
            &store,
            WriteOp::Expire {
                before_ms: u64::MAX
            }
        ),
        WriteResult::Expired(2)
    );
    assert_eq!(store.totals().unwrap(), StoreTotals::default());
    // Per-mailbox counters went back to zero: a full quota is available again.
    let op = WriteOp::Enqueue {
        recipient: alice,
        sender: bob,
        envelope: vec![0; 50],
        received_at_ms: 300,
        max_messages: 1,
        max_bytes: 50,
        max_total_bytes: MAX_TOTAL_BYTES,
        max_sender_bytes: MAX_TOTAL_BYTES,
    };
    stored(one(&store, op));
    check_counters(&dir);
}

#[test]
fn batch_results_in_order_and_all_visible() {
    let (dir, store) = open();
    let (alice, bob) = (ident(1), ident(2));
    let results = store
        .apply(&[
            register("alice", alice),
            publish(alice, 1, &[1, 2], 10),
            register("alice", bob),
            fetch("alice"),
            enqueue_op(bob, b"hello", 10),
            enqueue_op(bob, b"again", 11),
            WriteOp::Ack {
                recipient: bob,
                ids: vec![1],
            },
        ])
        .unwrap();
    assert_eq!(results.len(), 7);
    assert_eq!(results[0], WriteResult::Registered);
    assert_eq!(
        results[1],
        WriteResult::PrekeysStored {
            one_time_remaining: 2
        }
    );
    assert_eq!(results[2], WriteResult::NameTaken);
    assert_eq!(bundle(results[3].clone()).one_time_prekey, Some(otp(1)));
    assert_eq!(results[4], WriteResult::Stored(1));
    assert_eq!(results[5], WriteResult::Stored(2));
    assert_eq!(results[6], WriteResult::Acked(1));
    assert_eq!(store.identity_of("alice").unwrap(), Some(alice));
    let left = store.pending(&bob, 0, 10, usize::MAX).unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].envelope, b"again");
    assert!(store.apply(&[]).unwrap().is_empty());
    check_counters(&dir);
}

#[test]
fn failing_batch_changes_nothing() {
    let (dir, store) = open();
    let alice = ident(1);
    one(&store, register("alice", alice));
    one(&store, publish(alice, 1, &[1], 10));
    // Corrupt alice's identity so FetchBundle fails mid-batch (a low-order point).
    let raw = Connection::open(dir.path().join("relay.db")).unwrap();
    let bad = [0u8; 32];
    raw.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
    raw.execute(
        "UPDATE users SET identity = ?1 WHERE name = 'alice'",
        params![bad.as_slice()],
    )
    .unwrap();
    raw.execute(
        "UPDATE signed_prekeys SET identity = ?1",
        params![bad.as_slice()],
    )
    .unwrap();
    raw.execute(
        "UPDATE one_time_prekeys SET identity = ?1",
        params![bad.as_slice()],
    )
    .unwrap();
    drop(raw);
    let err = store
        .apply(&[
            enqueue_op(ident(2), b"lost", 1),
            register("bob", ident(2)),
            fetch("alice"),
        ])
        .unwrap_err();
    assert!(err.0.contains("identity key"), "{err}");
    assert!(store
        .pending(&ident(2), 0, 10, usize::MAX)
        .unwrap()
        .is_empty());
    assert_eq!(store.identity_of("bob").unwrap(), None);
    assert_eq!(store.totals().unwrap(), StoreTotals::default());
    // The one-time prekey was not popped.
    let raw = Connection::open(dir.path().join("relay.db")).unwrap();
    let n: i64 = raw
        .query_row("SELECT count(*) FROM one_time_prekeys", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
    // The store still works afterwards.
    assert_eq!(
        one(&store, register("bob", ident(2))),
        WriteResult::Registered
    );
    check_counters(&dir);
}

#[test]
fn malformed_rows_are_errors_not_panics() {
    let (dir, store) = open();
    let alice = ident(1);
    one(&store, register("alice", alice));
    one(&store, publish(alice, 1, &[1], 10));
    stored(one(&store, enqueue_op(alice, b"x", 1)));
    let raw = Connection::open(dir.path().join("relay.db")).unwrap();
    raw.execute_batch(
        "PRAGMA ignore_check_constraints = ON;
         UPDATE signed_prekeys SET public = x'0102';
         UPDATE messages SET sender = x'03';",
    )
    .unwrap();
    drop(raw);
    let err = store.apply(&[fetch("alice")]).unwrap_err();
    assert!(err.0.contains("signed prekey"), "{err}");
    let err = store.pending(&alice, 0, 10, usize::MAX).unwrap_err();
    assert!(err.0.contains("message sender"), "{err}");
}

#[test]
fn data_survives_reopen_and_ids_are_never_reused() {
    let (dir, store) = open();
    let (alice, bob) = (ident(1), ident(2));
    one(&store, register("alice", alice));
    one(&store, publish(alice, 4, &[10, 11], 10));
    let first = stored(one(&store, enqueue_op(bob, b"one", 1)));
    let second = stored(one(&store, enqueue_op(bob, b"two", 2)));
    one(
        &store,
        WriteOp::Ack {
            recipient: bob,
            ids: vec![second],
        },
    );
    drop(store);

    let store = reopen(&dir);
    assert_eq!(store.identity_of("alice").unwrap(), Some(alice));
    assert_eq!(store.name_of(&alice).unwrap().as_deref(), Some("alice"));
    let msgs = store.pending(&bob, 0, 10, usize::MAX).unwrap();
    assert_eq!(msgs.len(), 1);
    assert_eq!(msgs[0].id, first);
    assert_eq!(msgs[0].envelope, b"one");
    assert_eq!(
        store.totals().unwrap(),
        StoreTotals {
            messages: 1,
            bytes: 3
        }
    );
    let b = bundle(one(&store, fetch("alice")));
    assert_eq!(b.signed_prekey, spk(4));
    assert_eq!(b.one_time_prekey, Some(otp(10)));
    // The acked (deleted) highest id is not handed out again.
    let third = stored(one(&store, enqueue_op(bob, b"three", 3)));
    assert!(third > second);
    drop(store);
    // A clean close checkpoints everything into the main file.
    assert!(!dir.path().join("relay.db-wal").exists());

    let store = reopen(&dir);
    assert_eq!(
        bundle(one(&store, fetch("alice"))).one_time_prekey,
        Some(otp(11))
    );
    assert_eq!(
        store.pending(&bob, first, 10, usize::MAX).unwrap()[0].id,
        third
    );
    check_counters(&dir);
}

#[test]
fn totals_track_enqueue_ack_expire() {
    let (dir, store) = open();
    assert_eq!(store.totals().unwrap(), StoreTotals::default());
    let a = stored(one(&store, enqueue_op(ident(1), &[0; 100], 10)));
    stored(one(&store, enqueue_op(ident(2), &[0; 50], 20)));
    stored(one(&store, enqueue_op(ident(2), &[0; 25], 30)));
    assert_eq!(
        store.totals().unwrap(),
        StoreTotals {
            messages: 3,
            bytes: 175
        }
    );
    one(
        &store,
        WriteOp::Ack {
            recipient: ident(1),
            ids: vec![a],
        },
    );
    assert_eq!(
        store.totals().unwrap(),
        StoreTotals {
            messages: 2,
            bytes: 75
        }
    );
    one(&store, WriteOp::Expire { before_ms: 25 });
    assert_eq!(
        store.totals().unwrap(),
        StoreTotals {
            messages: 1,
            bytes: 25
        }
    );
    check_counters(&dir);
}

#[test]
fn reads_do_not_wait_for_a_writer() {
    let (dir, store) = open();
    one(&store, register("alice", ident(1)));
    // Another connection holds the write lock with uncommitted changes.
    let mut raw = Connection::open(dir.path().join("relay.db")).unwrap();
    let tx = raw
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .unwrap();
    tx.execute("UPDATE users SET name = 'mallory' WHERE name = 'alice'", [])
        .unwrap();
    let started = std::time::Instant::now();
    assert_eq!(store.identity_of("alice").unwrap(), Some(ident(1)));
    assert!(store
        .pending(&ident(1), 0, 10, usize::MAX)
        .unwrap()
        .is_empty());
    assert!(started.elapsed() < BUSY_TIMEOUT / 2);
    tx.rollback().unwrap();
}

#[test]
fn concurrent_batches_get_unique_ids() {
    let (dir, store) = open();
    let store = Arc::new(store);
    let threads: Vec<_> = (0..4u8)
        .map(|t| {
            let store = Arc::clone(&store);
            std::thread::spawn(move || {
                let mut ids = Vec::new();
                for i in 0..10u8 {
                    let results = store
                        .apply(&[
                            enqueue_op(ident(t + 1), &[i; 8], 1),
                            enqueue_op(ident(t + 1), &[i; 8], 1),
                        ])
                        .unwrap();
                    ids.extend(results.into_iter().map(stored));
                    store.pending(&ident(t + 1), 0, 100, usize::MAX).unwrap();
                }
                ids
            })
        })
        .collect();
    let mut all: Vec<MessageId> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 80);
    assert_eq!(store.totals().unwrap().messages, 80);
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
