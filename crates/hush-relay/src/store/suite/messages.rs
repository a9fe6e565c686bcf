//! Mailboxes, quotas, expiry, batches, names, persistence and concurrency.

use super::*;
use crate::store::StoreTotals;

pub(super) fn register_is_first_come_first_served(b: &mut dyn Backend) {
    let store = b.store();
    let (alice, bob) = (ident(1), ident(2));
    assert_eq!(
        one(store, register("alice", alice)),
        WriteResult::Registered
    );
    // Same identity, same name again: idempotent.
    assert_eq!(
        one(store, register("alice", alice)),
        WriteResult::Registered
    );
    // Another identity wants the name.
    assert_eq!(one(store, register("alice", bob)), WriteResult::NameTaken);
    // The identity wants a second name.
    assert_eq!(
        one(store, register("alicia", alice)),
        WriteResult::AlreadyRegistered {
            name: "alice".to_owned()
        }
    );
    // Identity check comes first even if the other name is taken too.
    assert_eq!(one(store, register("bob", bob)), WriteResult::Registered);
    assert_eq!(
        one(store, register("bob", alice)),
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

pub(super) fn enqueue_pending_order_and_cursor(b: &mut dyn Backend) {
    let store = b.store();
    let (alice, bob) = (ident(1), ident(2));
    let mut ids = Vec::new();
    for i in 0..5u8 {
        ids.push(stored(one(
            store,
            enqueue_op(alice, &[i; 10], 1000 + u64::from(i)),
        )));
        one(store, enqueue_op(bob, &[0xB0; 3], 1000));
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
    b.check_counters();
}

pub(super) fn ack_deletes_only_own_messages(b: &mut dyn Backend) {
    let store = b.store();
    let (alice, bob) = (ident(1), ident(2));
    let a1 = stored(one(store, enqueue_op(alice, b"a1", 1)));
    let a2 = stored(one(store, enqueue_op(alice, b"a2", 1)));
    let b1 = stored(one(store, enqueue_op(bob, b"b1", 1)));
    // Bob acks his own, Alice's, a duplicate, and ids that do not exist.
    assert_eq!(
        one(
            store,
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
            store,
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
    b.check_counters();
}

pub(super) fn quota_by_messages(b: &mut dyn Backend) {
    let store = b.store();
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
    let first = stored(one(store, op(0)));
    stored(one(store, op(1)));
    stored(one(store, op(2)));
    assert_eq!(one(store, op(3)), WriteResult::MailboxFull);
    assert_eq!(store.pending(&alice, 0, 10, usize::MAX).unwrap().len(), 3);
    // Other mailboxes are unaffected.
    stored(one(store, enqueue_op(ident(3), b"x", 5)));
    // Acking frees room.
    one(
        store,
        WriteOp::Ack {
            recipient: alice,
            ids: vec![first],
        },
    );
    stored(one(store, op(4)));
    assert_eq!(one(store, op(5)), WriteResult::MailboxFull);
    b.check_counters();
}

/// The global quota counts every mailbox, including writes earlier in the same batch, and
/// refuses with StorageFull (not MailboxFull) while each mailbox is far from its own quota.
pub(super) fn global_storage_quota_spans_mailboxes_and_batches(b: &mut dyn Backend) {
    let store = b.store();
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
    stored(one(store, op(10, 60)));
    let results = store.apply(&[op(11, 30), op(12, 11), op(12, 10)]).unwrap();
    assert!(matches!(results[0], WriteResult::Stored(_)));
    assert_eq!(results[1], WriteResult::StorageFull);
    assert!(matches!(results[2], WriteResult::Stored(_)));
    assert_eq!(one(store, op(13, 1)), WriteResult::StorageFull);
    assert_eq!(store.totals().unwrap().bytes, 100);
    b.check_counters();
}

/// One sender cannot take the whole storage quota: it is refused at its share while
/// another sender still stores; acks and expiry give the share back; and above 90 % of
/// the quota only senders below a quarter of their share are accepted.
pub(super) fn each_sender_has_a_share_of_the_storage_quota(b: &mut dyn Backend) {
    let store = b.store();
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
    assert_eq!(one(store, op(1, 12, 50, 5)), WriteResult::Stored(first + 2));
    assert_eq!(one(store, op(1, 13, 1, 5)), WriteResult::SenderQuota);
    // Another sender is not affected.
    stored(one(store, op(2, 10, 400, 9)));
    b.check_counters();
    // An ack gives the sender its bytes back (the recipient acks, not the sender).
    assert_eq!(
        one(
            store,
            WriteOp::Ack {
                recipient: ident(10),
                ids: vec![first]
            }
        ),
        WriteResult::Acked(1)
    );
    stored(one(store, op(1, 13, 150, 9)));
    b.check_counters();
    // Sender 4 brings the relay to 900 of 1000 bytes. Beyond 90 %, only senders below a
    // quarter of their share (100) are accepted: not sender 1 (at 350), nor sender 4 (at
    // 150, below its share), but sender 3, with nothing stored.
    stored(one(store, op(4, 16, 150, 9)));
    assert_eq!(one(store, op(1, 14, 1, 9)), WriteResult::SenderQuota);
    assert_eq!(one(store, op(4, 14, 1, 9)), WriteResult::SenderQuota);
    stored(one(store, op(3, 14, 40, 9)));
    // Expiry gives shares back too: sender 1's two messages from t=5 (200 bytes) go.
    assert_eq!(
        one(store, WriteOp::Expire { before_ms: 6 }),
        WriteResult::Expired(2)
    );
    stored(one(store, op(1, 15, 10, 9)));
    b.check_counters();
    // The shares survive a restart: sender 2 is still at its full share.
    b.reopen();
    let store = b.store();
    assert_eq!(one(store, op(2, 15, 1, 9)), WriteResult::SenderQuota);
    stored(one(store, op(5, 15, 1, 9)));
    b.check_counters();
}

pub(super) fn quota_by_bytes(b: &mut dyn Backend) {
    let store = b.store();
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
    stored(one(store, op(60)));
    assert_eq!(one(store, op(41)), WriteResult::MailboxFull);
    // Exactly reaching the limit is allowed.
    stored(one(store, op(40)));
    assert_eq!(one(store, op(1)), WriteResult::MailboxFull);
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
    assert_eq!(one(store, big), WriteResult::MailboxFull);
    b.check_counters();
}

pub(super) fn expire_deletes_old_messages_and_updates_usage(b: &mut dyn Backend) {
    let store = b.store();
    let (alice, bob) = (ident(1), ident(2));
    stored(one(store, enqueue_op(alice, &[1; 10], 100)));
    stored(one(store, enqueue_op(bob, &[2; 20], 150)));
    let kept = stored(one(store, enqueue_op(alice, &[3; 30], 200)));
    stored(one(store, enqueue_op(bob, &[4; 40], 200)));
    assert_eq!(
        one(store, WriteOp::Expire { before_ms: 200 }),
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
        one(store, WriteOp::Expire { before_ms: 200 }),
        WriteResult::Expired(0)
    );
    assert_eq!(
        one(
            store,
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
    stored(one(store, op));
    b.check_counters();
}

pub(super) fn batch_results_in_order_and_all_visible(b: &mut dyn Backend) {
    let store = b.store();
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
    b.check_counters();
}

pub(super) fn failing_batch_changes_nothing(b: &mut dyn Backend) {
    let store = b.store();
    let alice = ident(1);
    one(store, register("alice", alice));
    one(store, publish(alice, 1, &[1], 10));
    // Corrupt alice's identity so FetchBundle fails mid-batch (a low-order point).
    let bad = b.blob(&[0u8; 32]);
    b.tamper(&format!(
        "UPDATE users SET identity = {bad} WHERE name = 'alice';
         UPDATE signed_prekeys SET identity = {bad};
         UPDATE one_time_prekeys SET identity = {bad};"
    ));
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
    let n = b.rows("one_time_prekeys");
    assert_eq!(n, 1);
    // The store still works afterwards.
    assert_eq!(
        one(store, register("bob", ident(2))),
        WriteResult::Registered
    );
    b.check_counters();
}

pub(super) fn malformed_rows_are_errors_not_panics(b: &mut dyn Backend) {
    let store = b.store();
    let alice = ident(1);
    one(store, register("alice", alice));
    one(store, publish(alice, 1, &[1], 10));
    stored(one(store, enqueue_op(alice, b"x", 1)));
    b.tamper(&format!(
        "UPDATE signed_prekeys SET public = {};
         UPDATE messages SET sender = {};",
        b.blob(&[1, 2]),
        b.blob(&[3])
    ));
    let err = store.apply(&[fetch("alice")]).unwrap_err();
    assert!(err.0.contains("signed prekey"), "{err}");
    let err = store.pending(&alice, 0, 10, usize::MAX).unwrap_err();
    assert!(err.0.contains("message sender"), "{err}");
}

pub(super) fn data_survives_reopen_and_ids_are_never_reused(b: &mut dyn Backend) {
    let store = b.store();
    let (alice, bob) = (ident(1), ident(2));
    one(store, register("alice", alice));
    one(store, publish(alice, 4, &[10, 11], 10));
    let first = stored(one(store, enqueue_op(bob, b"one", 1)));
    let second = stored(one(store, enqueue_op(bob, b"two", 2)));
    one(
        store,
        WriteOp::Ack {
            recipient: bob,
            ids: vec![second],
        },
    );
    b.reopen();
    let store = b.store();
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
    let fetched = bundle(one(store, fetch("alice")));
    assert_eq!(fetched.signed_prekey, spk(4));
    assert_eq!(fetched.one_time_prekey, Some(otp(10)));
    // The acked (deleted) highest id is not handed out again.
    let third = stored(one(store, enqueue_op(bob, b"three", 3)));
    assert!(third > second);
    // (That a clean close checkpoints SQLite's WAL is a SQLite test.)
    b.reopen();
    let store = b.store();
    assert_eq!(
        bundle(one(store, fetch("alice"))).one_time_prekey,
        Some(otp(11))
    );
    assert_eq!(
        store.pending(&bob, first, 10, usize::MAX).unwrap()[0].id,
        third
    );
    b.check_counters();
}

pub(super) fn totals_track_enqueue_ack_expire(b: &mut dyn Backend) {
    let store = b.store();
    assert_eq!(store.totals().unwrap(), StoreTotals::default());
    let a = stored(one(store, enqueue_op(ident(1), &[0; 100], 10)));
    stored(one(store, enqueue_op(ident(2), &[0; 50], 20)));
    stored(one(store, enqueue_op(ident(2), &[0; 25], 30)));
    assert_eq!(
        store.totals().unwrap(),
        StoreTotals {
            messages: 3,
            bytes: 175
        }
    );
    one(
        store,
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
    one(store, WriteOp::Expire { before_ms: 25 });
    assert_eq!(
        store.totals().unwrap(),
        StoreTotals {
            messages: 1,
            bytes: 25
        }
    );
    b.check_counters();
}

pub(super) fn reads_do_not_wait_for_a_writer(b: &mut dyn Backend) {
    let store = b.store();
    one(store, register("alice", ident(1)));
    // Another connection holds the write lock with uncommitted changes.
    let (writer, bound) = b.hold_write_lock();
    let started = std::time::Instant::now();
    assert_eq!(store.identity_of("alice").unwrap(), Some(ident(1)));
    assert!(store
        .pending(&ident(1), 0, 10, usize::MAX)
        .unwrap()
        .is_empty());
    assert!(started.elapsed() < bound);
    drop(writer);
}

pub(super) fn concurrent_batches_get_unique_ids(b: &mut dyn Backend) {
    let store = b.store();
    let mut all: Vec<MessageId> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..4u8)
            .map(|t| {
                scope.spawn(move || {
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
        threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect()
    });
    all.sort_unstable();
    all.dedup();
    assert_eq!(all.len(), 80);
    assert_eq!(store.totals().unwrap().messages, 80);
    b.check_counters();
}
