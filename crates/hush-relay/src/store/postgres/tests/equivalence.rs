//! The PostgreSQL store gives the same results as the SQLite store for the same batches.

use super::*;
use crate::store::sqlite::SqliteStore;

/// Map ids that legitimately differ between backends (a group blob id is consumed by SQLite
/// even when nobody got the message) to whether they are non-zero.
fn normalise(results: Vec<WriteResult>) -> Vec<WriteResult> {
    results
        .into_iter()
        .map(|r| match r {
            WriteResult::GroupStored { id, fan_out } => WriteResult::GroupStored {
                id: u64::from(id != 0),
                fan_out,
            },
            other => other,
        })
        .collect()
}

fn send_op(sender: IdentityBytes, envelope: &[u8], at: u64, quota: GroupQuota) -> WriteOp {
    WriteOp::GroupSend {
        group_id: GroupId::new(vec![7; 16]).unwrap(),
        sender,
        envelope: envelope.to_vec(),
        received_at_ms: at,
        quota,
    }
}

/// The same batches give the same results on both backends (ids included: both allocate them
/// one by one from 1), and leave the same mailboxes, totals and counters.
#[test]
fn same_results_as_sqlite() {
    let db = test_db!();
    let pg = db.store();
    let dir = tempfile::tempdir().unwrap();
    let lite = SqliteStore::open(&dir.path().join("relay.db")).unwrap();
    let (alice, bob, carol, dave, eve) = (ident(1), ident(2), ident(3), ident(4), ident(5));
    let people = [alice, bob, carol, dave, eve];
    let q = GroupQuota {
        max_messages: 6,
        max_bytes: 64,
        max_total_bytes: 400,
        max_sender_bytes: 160,
    };
    let e = |to, from, env: &[u8], at| {
        enqueue(
            to,
            from,
            env,
            at,
            q.max_messages,
            q.max_bytes,
            q.max_total_bytes,
            q.max_sender_bytes,
        )
    };
    let mut batches: Vec<Vec<WriteOp>> = vec![
        vec![
            register("alice", alice),
            register("bob", bob),
            register("carol", carol),
            register("alice", dave),
            register("dave", dave),
            register("dave2", dave),
            publish(eve, 1, &[1], 10),
            publish(alice, 1, &[5, 3, 4, 3], 10),
            publish(bob, 2, &[1, 2, 3], 2),
            publish(bob, 2, &[], 2),
            fetch("alice", true),
            fetch("alice", false),
            fetch("nobody", true),
        ],
        // Mailbox quota by messages and bytes, in one batch and across batches.
        (0..9u8)
            .map(|i| e(bob, alice, &[i; 9], 10 + u64::from(i)))
            .chain([e(bob, carol, &[1; 40], 20), e(carol, alice, &[2; 60], 21)])
            .collect(),
        vec![
            e(bob, alice, &[3; 5], 22),
            WriteOp::Ack {
                recipient: bob,
                ids: vec![1, 2, 2, 3, 9999, u64::MAX],
            },
            // Acks of another mailbox's messages are ignored; the enqueue after sees the room.
            WriteOp::Ack {
                recipient: carol,
                ids: vec![4, 5],
            },
            WriteOp::Ack {
                recipient: bob,
                ids: vec![3, 4],
            },
            e(bob, alice, &[4; 5], 23),
        ],
        // Global storage and the sender share (with the 90 % headroom rule).
        (0..12u8)
            .map(|i| {
                e(
                    people[usize::from(i % 5)],
                    people[usize::from(i % 3)],
                    &[i; 30],
                    30,
                )
            })
            .collect(),
        vec![
            commit_op(alice, 0, &[bob, carol], &[], q),
            commit_op(alice, 0, &[bob], &[], q),
            commit_op(bob, 1, &[dave], &[carol], q),
            commit_op(eve, 2, &[], &[], q),
            commit_op(bob, 2, &[eve], &[], q),
            send_op(alice, b"hello group", 40, q),
            send_op(carol, b"not a member", 41, q),
            commit_op(dave, 2, &[eve, carol, ident(6)], &[], q),
        ],
        vec![
            WriteOp::Ack {
                recipient: dave,
                ids: (1..80).collect(),
            },
            WriteOp::Ack {
                recipient: bob,
                ids: (1..80).collect(),
            },
            WriteOp::GroupLeave {
                group_id: GroupId::new(vec![7; 16]).unwrap(),
                identity: bob,
            },
            send_op(alice, b"after leave", 42, q),
            WriteOp::PublishKeyPackages {
                identity: alice,
                last_resort: Some(vec![7; 100]),
                one_time: vec![vec![1; 10], vec![2; 10]],
                max_stock: 2,
            },
            WriteOp::PublishKeyPackages {
                identity: alice,
                last_resort: None,
                one_time: vec![vec![3; 10]],
                max_stock: 2,
            },
            WriteOp::FetchKeyPackage {
                name: "alice".to_owned(),
                pop_one_time: true,
            },
            WriteOp::FetchKeyPackage {
                name: "alice".to_owned(),
                pop_one_time: false,
            },
            WriteOp::PublishKeyPackages {
                identity: eve,
                last_resort: None,
                one_time: vec![vec![3; 10]],
                max_stock: 2,
            },
        ],
        vec![WriteOp::Expire { before_ms: 21 }, e(eve, eve, b"late", 50)],
        vec![
            WriteOp::Expire { before_ms: 41 },
            WriteOp::GroupLeave {
                group_id: GroupId::new(vec![7; 16]).unwrap(),
                identity: alice,
            },
        ],
    ];
    for members in [alice, carol, dave, eve, ident(6)] {
        batches.push(vec![WriteOp::GroupLeave {
            group_id: GroupId::new(vec![7; 16]).unwrap(),
            identity: members,
        }]);
    }
    batches.push(vec![WriteOp::Expire {
        before_ms: 1_000_000,
    }]);
    for (i, batch) in batches.iter().enumerate() {
        let want = normalise(lite.apply(batch).unwrap());
        let got = normalise(pg.apply(batch).unwrap());
        assert_eq!(got, want, "batch {i}");
        for who in &people {
            assert_eq!(
                pg.pending(who, 0, 100, usize::MAX).unwrap(),
                lite.pending(who, 0, 100, usize::MAX).unwrap(),
                "batch {i}"
            );
        }
        assert_eq!(pg.totals().unwrap(), lite.totals().unwrap(), "batch {i}");
        assert_eq!(pg.prekey_stock().unwrap(), lite.prekey_stock().unwrap());
        assert_eq!(pg.group_stats().unwrap(), lite.group_stats().unwrap());
        check_counters(&db);
    }
    assert_eq!(pg.name_of(&dave).unwrap(), lite.name_of(&dave).unwrap());
    assert_eq!(pg.identity_of("bob").unwrap(), Some(bob));
    assert_eq!(pg.free_name("alice").unwrap(), Some(alice));
    assert_eq!(pg.free_name("alice").unwrap(), None);
    assert_eq!(lite.free_name("alice").unwrap(), Some(alice));
    assert_eq!(pg.prekey_stock().unwrap(), lite.prekey_stock().unwrap());
    check_counters(&db);
}

/// Large mixed batches of Enqueue and Ack runs (the bulk paths), with quotas that bite, give
/// the same results as SQLite applying the ops one by one.
#[test]
fn bulk_runs_match_sqlite() {
    let db = test_db!();
    let pg = db.store();
    let dir = tempfile::tempdir().unwrap();
    let lite = SqliteStore::open(&dir.path().join("relay.db")).unwrap();
    let mut seed = 0x2545_f491_4f6c_dd1d_u64;
    let mut next = move |n: u64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % n
    };
    let people: Vec<IdentityBytes> = (1..=30).map(ident).collect();
    let q = GroupQuota {
        max_messages: 20,
        max_bytes: 2_000,
        max_total_bytes: 60_000,
        max_sender_bytes: 12_000,
    };
    // A group of the first four, so that acks also release shared group rows.
    let setup: Vec<WriteOp> = (0..5)
        .map(|i| register(&format!("p{i}"), people[i]))
        .chain([commit_op(people[0], 0, &people[1..4], &[], q)])
        .collect();
    assert_eq!(pg.apply(&setup).unwrap(), lite.apply(&setup).unwrap());
    let mut issued: Vec<(IdentityBytes, MessageId)> = Vec::new();
    let (mut acked, mut group_rows, mut refused) = (0, 0, 0);
    for batch in 0..8 {
        let mut ops = Vec::new();
        while ops.len() < 500 {
            let roll = next(100);
            if roll < 2 {
                let from = people[next(4) as usize];
                ops.push(send_op(
                    from,
                    &vec![9; 1 + next(300) as usize],
                    1 + batch,
                    q,
                ));
            } else if roll < 30 && !issued.is_empty() {
                let (owner, first) = issued[next(issued.len() as u64) as usize];
                let to = if next(10) == 0 {
                    people[next(30) as usize]
                } else {
                    owner
                };
                let ids = std::iter::once(first)
                    .chain((0..next(4)).map(|_| issued[next(issued.len() as u64) as usize].1))
                    .collect();
                ops.push(WriteOp::Ack { recipient: to, ids });
            } else {
                let to = people[next(30) as usize];
                let from = people[next(5) as usize];
                let len = 1 + next(200) as usize;
                ops.push(enqueue(
                    to,
                    from,
                    &vec![7; len],
                    1 + batch,
                    q.max_messages,
                    q.max_bytes,
                    q.max_total_bytes,
                    q.max_sender_bytes,
                ));
            }
        }
        let want = normalise(lite.apply(&ops).unwrap());
        let got = normalise(pg.apply(&ops).unwrap());
        assert_eq!(got, want, "batch {batch}");
        for (op, result) in ops.iter().zip(&got) {
            match (op, result) {
                (WriteOp::Enqueue { recipient, .. }, WriteResult::Stored(id)) => {
                    issued.push((*recipient, *id));
                }
                (_, WriteResult::GroupStored { fan_out, .. }) => {
                    group_rows += fan_out.delivered.len();
                    issued.extend(fan_out.delivered.iter().copied());
                }
                (_, WriteResult::Acked(n)) => acked += n,
                (_, WriteResult::MailboxFull | WriteResult::SenderQuota) => refused += 1,
                _ => {}
            }
        }
        assert_eq!(pg.totals().unwrap(), lite.totals().unwrap());
    }
    for who in &people {
        assert_eq!(
            pg.pending(who, 0, 1000, usize::MAX).unwrap(),
            lite.pending(who, 0, 1000, usize::MAX).unwrap()
        );
    }
    // The mix exercised what it is meant to.
    assert!(
        acked > 300 && group_rows > 50 && refused > 50,
        "{acked} {group_rows} {refused}"
    );
    check_counters(&db);
}

/// Ops of one batch see the ops before them: an Ack deletes a message enqueued earlier in the
/// same batch (splitting the batch into runs keeps op order), on both backends alike.
#[test]
fn later_ops_of_a_batch_see_earlier_ones() {
    let db = test_db!();
    let pg = db.store();
    let dir = tempfile::tempdir().unwrap();
    let lite = SqliteStore::open(&dir.path().join("relay.db")).unwrap();
    let who = ident(1);
    let ops = [
        enqueue_op(who, b"first", 1),
        WriteOp::Ack {
            recipient: who,
            ids: vec![1],
        },
        enqueue_op(who, b"second", 1),
        WriteOp::Ack {
            recipient: who,
            ids: vec![1, 2, 3],
        },
        enqueue_op(who, b"third", 1),
    ];
    let want = vec![
        WriteResult::Stored(1),
        WriteResult::Acked(1),
        WriteResult::Stored(2),
        WriteResult::Acked(1),
        WriteResult::Stored(3),
    ];
    assert_eq!(lite.apply(&ops).unwrap(), want);
    assert_eq!(pg.apply(&ops).unwrap(), want);
    let left = pg.pending(&who, 0, 10, usize::MAX).unwrap();
    assert_eq!(left, lite.pending(&who, 0, 10, usize::MAX).unwrap());
    assert_eq!(left.len(), 1);
    assert_eq!(left[0].envelope, b"third");
    check_counters(&db);
}
