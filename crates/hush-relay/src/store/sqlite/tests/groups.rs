//! The relay as MLS delivery service: compare-and-set on the epoch, fan-out stored once,
//! per-member acks, TTL, the commit log, and the migration from schema 3.

use super::prekeys::rows;
use super::*;
use crate::store::{FanOut, GroupQuota, SyncResult};
use hush_proto::relay::{GroupCommit, GroupId};

const GID: [u8; 16] = [7; 16];

/// Group blobs' reference counts match the mailbox rows pointing at them (none dangling, none
/// unreferenced), and the trigger-kept group totals match the rows.
pub(super) fn check_group_counters(raw: &Connection) {
    // Every blob's reference count is the number of mailbox rows pointing at it, never 0.
    let bad_refs: i64 = raw
        .query_row(
            "SELECT count(*) FROM group_blobs AS b
             WHERE b.refs != (SELECT count(*) FROM messages WHERE blob = b.id) OR b.refs = 0",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(bad_refs, 0);
    let dangling: i64 = raw
        .query_row(
            "SELECT count(*) FROM messages
             WHERE blob IS NOT NULL AND blob NOT IN (SELECT id FROM group_blobs)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(dangling, 0);
    let group_totals: (i64, i64) = raw
        .query_row("SELECT groups, members FROM group_totals", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    let group_rows: (i64, i64) = raw
        .query_row(
            "SELECT (SELECT count(*) FROM groups), (SELECT count(*) FROM group_members)",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(group_totals, group_rows);
}

fn gid() -> GroupId {
    GroupId::new(GID.to_vec()).unwrap()
}

fn quota() -> GroupQuota {
    GroupQuota {
        max_messages: MAX_MESSAGES,
        max_bytes: MAX_BYTES,
        max_total_bytes: MAX_TOTAL_BYTES,
        max_sender_bytes: MAX_TOTAL_BYTES,
    }
}

fn commit_op(
    sender: IdentityBytes,
    epoch: u64,
    added: &[IdentityBytes],
    removed: &[IdentityBytes],
    tag: u8,
) -> WriteOp {
    WriteOp::GroupCommit {
        commit: GroupCommit {
            group_id: gid(),
            epoch,
            added: added.to_vec(),
            removed: removed.to_vec(),
            commit: vec![1, 4, tag, tag],
            welcome: (!added.is_empty()).then(|| vec![1, 5, tag, tag, tag]),
        },
        sender,
        received_at_ms: 1_000 + epoch,
        quota: quota(),
        max_members: 1000,
        max_log: 256,
    }
}

fn send_op(sender: IdentityBytes, envelope: &[u8], at: u64) -> WriteOp {
    WriteOp::GroupSend {
        group_id: gid(),
        sender,
        envelope: envelope.to_vec(),
        received_at_ms: at,
        quota: quota(),
    }
}

fn accepted(result: WriteResult) -> (u64, FanOut, FanOut) {
    match result {
        WriteResult::CommitAccepted {
            epoch,
            commit,
            welcome,
        } => (epoch, commit, welcome),
        other => panic!("expected CommitAccepted, got {other:?}"),
    }
}

fn group_stored(result: WriteResult) -> (u64, FanOut) {
    match result {
        WriteResult::GroupStored { id, fan_out } => (id, fan_out),
        other => panic!("expected GroupStored, got {other:?}"),
    }
}

fn recipients(fan_out: &FanOut) -> Vec<IdentityBytes> {
    let mut r: Vec<_> = fan_out.delivered.iter().map(|(who, _)| *who).collect();
    r.sort();
    r
}

fn sorted(mut ids: Vec<IdentityBytes>) -> Vec<IdentityBytes> {
    ids.sort();
    ids
}

fn envelopes(store: &SqliteStore, who: IdentityBytes) -> Vec<Vec<u8>> {
    store
        .pending(&who, 0, 100, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|m| m.envelope)
        .collect()
}

fn ack_all(store: &SqliteStore, who: IdentityBytes) -> u32 {
    let ids = store
        .pending(&who, 0, 100, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|m| m.id)
        .collect();
    match one(
        store,
        WriteOp::Ack {
            recipient: who,
            ids,
        },
    ) {
        WriteResult::Acked(n) => n,
        other => panic!("expected Acked, got {other:?}"),
    }
}

/// alice (1), bob (2), carol (3) registered; dave (4) registered but not in the group; alice
/// creates the group at epoch 0 adding bob and carol.
fn group_of_three() -> (TempDir, SqliteStore) {
    let (dir, store) = open();
    for (name, n) in [("alice", 1), ("bob", 2), ("carol", 3), ("dave", 4)] {
        one(&store, register(name, ident(n)));
    }
    let (epoch, commit, welcome) = accepted(one(
        &store,
        commit_op(ident(1), 0, &[ident(2), ident(3)], &[], 0),
    ));
    assert_eq!(epoch, 1);
    assert!(commit.delivered.is_empty());
    assert_eq!(recipients(&welcome), sorted(vec![ident(2), ident(3)]));
    (dir, store)
}

#[test]
fn creating_a_group_welcomes_the_added_members_once_stored() {
    let (dir, store) = group_of_three();
    assert_eq!(envelopes(&store, ident(2)), vec![vec![1, 5, 0, 0, 0]]);
    assert_eq!(envelopes(&store, ident(3)), vec![vec![1, 5, 0, 0, 0]]);
    assert!(envelopes(&store, ident(1)).is_empty());
    // One Welcome blob referenced by two mailbox rows; one logged commit; three members.
    assert_eq!(rows(&dir, "group_blobs"), 1);
    assert_eq!(rows(&dir, "messages"), 2);
    assert_eq!(rows(&dir, "group_commits"), 1);
    assert_eq!(rows(&dir, "group_members"), 3);
    assert_eq!(
        store.group_stats().unwrap(),
        GroupStats {
            groups: 1,
            members: 3
        }
    );
    // A new group starts at epoch 0 only.
    let other = WriteOp::GroupCommit {
        commit: GroupCommit {
            group_id: GroupId::new(vec![8; 16]).unwrap(),
            epoch: 3,
            added: vec![],
            removed: vec![],
            commit: vec![1, 4, 1],
            welcome: None,
        },
        sender: ident(1),
        received_at_ms: 1,
        quota: quota(),
        max_members: 10,
        max_log: 10,
    };
    assert_eq!(one(&store, other), WriteResult::UnknownGroup);
    check_counters(&dir);
}

/// Two commits for the same epoch: exactly one wins, in one batch or in two.
#[test]
fn two_commits_for_one_epoch_exactly_one_wins() {
    let (dir, store) = group_of_three();
    let results = store
        .apply(&[
            commit_op(ident(2), 1, &[], &[], 0xB),
            commit_op(ident(3), 1, &[], &[], 0xC),
        ])
        .unwrap();
    let (epoch, fan_out, _) = accepted(results[0].clone());
    assert_eq!(epoch, 2);
    assert_eq!(recipients(&fan_out), sorted(vec![ident(1), ident(3)]));
    assert_eq!(results[1], WriteResult::StaleEpoch { current: 2 });
    // The loser, retrying with the same stale epoch in a later batch, still loses.
    assert_eq!(
        one(&store, commit_op(ident(3), 1, &[], &[], 0xC)),
        WriteResult::StaleEpoch { current: 2 }
    );
    // Only the winner's commit was logged and delivered.
    assert_eq!(rows(&dir, "group_commits"), 2);
    assert!(envelopes(&store, ident(1)).contains(&vec![1, 4, 0xB, 0xB]));
    assert!(!envelopes(&store, ident(2))
        .iter()
        .any(|e| e.starts_with(&[1, 4])));
    // After syncing, the loser retries at the new epoch and wins.
    assert_eq!(
        accepted(one(&store, commit_op(ident(3), 2, &[], &[], 0xC))).0,
        3
    );
    check_counters(&dir);
}

#[test]
fn non_members_are_refused_everything() {
    let (dir, store) = group_of_three();
    let dave = ident(4);
    assert_eq!(
        one(&store, commit_op(dave, 1, &[dave], &[], 1)),
        WriteResult::NotGroupMember
    );
    assert_eq!(
        one(&store, send_op(dave, &[1, 3, 9], 5)),
        WriteResult::NotGroupMember
    );
    assert_eq!(
        store.group_sync(&gid(), &dave, 0, 64, 65_000).unwrap(),
        SyncResult::NotGroupMember
    );
    let unknown = GroupId::new(vec![9; 16]).unwrap();
    assert_eq!(
        store.group_sync(&unknown, &dave, 0, 64, 65_000).unwrap(),
        SyncResult::UnknownGroup
    );
    let mut op = send_op(ident(1), &[1, 3, 9], 5);
    if let WriteOp::GroupSend { group_id, .. } = &mut op {
        *group_id = unknown;
    }
    assert_eq!(one(&store, op), WriteResult::UnknownGroup);
    assert_eq!(rows(&dir, "group_members"), 3);
    check_counters(&dir);
}

/// A group message is stored once, referenced from each other member's mailbox, and deleted
/// only when the last of them acks it.
#[test]
fn group_message_stored_once_deleted_at_the_last_ack() {
    let (dir, store) = group_of_three();
    ack_all(&store, ident(2));
    ack_all(&store, ident(3));
    assert_eq!(rows(&dir, "group_blobs"), 0);
    let message = vec![1, 3, 42, 42, 42, 42];
    let (id, fan_out) = group_stored(one(&store, send_op(ident(1), &message, 2_000)));
    assert_ne!(id, 0);
    assert_eq!(recipients(&fan_out), sorted(vec![ident(2), ident(3)]));
    assert_eq!(rows(&dir, "group_blobs"), 1);
    assert_eq!(rows(&dir, "messages"), 2);
    // The bytes are in the blob only: the mailbox rows hold none.
    let raw = Connection::open(dir.path().join("relay.db")).unwrap();
    let row_bytes: i64 = raw
        .query_row("SELECT sum(length(envelope)) FROM messages", [], |r| {
            r.get(0)
        })
        .unwrap();
    assert_eq!(row_bytes, 0);
    assert_eq!(envelopes(&store, ident(2)), vec![message.clone()]);
    let pending = store.pending(&ident(3), 0, 10, usize::MAX).unwrap();
    assert_eq!(pending[0].sender, ident(1));
    assert_eq!(pending[0].received_at_ms, 2_000);
    // Counted once in the totals, in full in each mailbox (the totals also hold the 4 bytes
    // of the creating commit in the group's log).
    assert_eq!(
        store.totals().unwrap(),
        StoreTotals {
            messages: 2,
            bytes: 6 + 4
        }
    );
    check_counters(&dir);
    assert_eq!(ack_all(&store, ident(2)), 1);
    assert_eq!(rows(&dir, "group_blobs"), 1);
    assert_eq!(envelopes(&store, ident(3)), vec![message]);
    check_counters(&dir);
    assert_eq!(ack_all(&store, ident(3)), 1);
    assert_eq!(rows(&dir, "group_blobs"), 0);
    // Only the group's log is left (the creating commit, until the TTL).
    assert_eq!(
        store.totals().unwrap(),
        StoreTotals {
            messages: 0,
            bytes: 4
        }
    );
    check_counters(&dir);
}

/// A removed member receives the commit that removes it, then nothing more from the group.
#[test]
fn removed_member_gets_the_commit_then_nothing() {
    let (dir, store) = group_of_three();
    ack_all(&store, ident(3));
    let (epoch, fan_out, welcome) =
        accepted(one(&store, commit_op(ident(1), 1, &[], &[ident(3)], 0xD)));
    assert_eq!(epoch, 2);
    assert!(welcome.delivered.is_empty());
    assert_eq!(recipients(&fan_out), sorted(vec![ident(2), ident(3)]));
    assert_eq!(envelopes(&store, ident(3)), vec![vec![1, 4, 0xD, 0xD]]);
    let (_, fan_out) = group_stored(one(&store, send_op(ident(1), &[1, 3, 5], 3_000)));
    assert_eq!(recipients(&fan_out), vec![ident(2)]);
    assert_eq!(envelopes(&store, ident(3)).len(), 1);
    assert_eq!(
        one(&store, send_op(ident(3), &[1, 3, 6], 3_001)),
        WriteResult::NotGroupMember
    );
    assert_eq!(
        one(&store, commit_op(ident(3), 2, &[], &[], 1)),
        WriteResult::NotGroupMember
    );
    check_counters(&dir);
}

/// A full mailbox skips that member only; the others get the message.
#[test]
fn a_full_mailbox_skips_only_that_member() {
    let (dir, store) = group_of_three();
    // carol's mailbox (holding the Welcome) is full at one message.
    let mut op = send_op(ident(1), &[1, 3, 7, 7], 4_000);
    if let WriteOp::GroupSend { quota, .. } = &mut op {
        quota.max_messages = 1;
    }
    ack_all(&store, ident(2));
    let (id, fan_out) = group_stored(one(&store, op));
    assert_ne!(id, 0);
    assert_eq!(recipients(&fan_out), vec![ident(2)]);
    assert_eq!(fan_out.skipped_full, 1);
    assert_eq!(envelopes(&store, ident(3)).len(), 1);
    check_counters(&dir);
    // Everyone full: nothing stored, no blob left behind.
    let mut op = send_op(ident(1), &[1, 3, 8], 4_001);
    if let WriteOp::GroupSend { quota, .. } = &mut op {
        quota.max_messages = 1;
    }
    let (id, fan_out) = group_stored(one(&store, op));
    assert_eq!((id, fan_out.skipped_full), (0, 2));
    assert_eq!(rows(&dir, "group_blobs"), 2);
    check_counters(&dir);
}

/// The storage quotas count a group message once; a refusal stores nothing.
#[test]
fn storage_quota_counts_a_group_message_once() {
    let (dir, store) = group_of_three();
    let stored_bytes = store.totals().unwrap().bytes;
    let message = vec![1, 3, 0, 0, 0, 0, 0, 0, 0, 0];
    let mut op = send_op(ident(1), &message, 5_000);
    if let WriteOp::GroupSend { quota, .. } = &mut op {
        // Room for the message once, not for one copy per recipient.
        quota.max_total_bytes = stored_bytes + 10;
    }
    group_stored(one(&store, op.clone()));
    assert_eq!(one(&store, op), WriteResult::StorageFull);
    let mut op = send_op(ident(1), &message, 5_001);
    if let WriteOp::GroupSend { quota, .. } = &mut op {
        quota.max_sender_bytes = 5;
    }
    assert_eq!(one(&store, op), WriteResult::SenderQuota);
    assert_eq!(rows(&dir, "group_blobs"), 2);
    check_counters(&dir);
}

/// Mail, blobs and logged commits expire with the TTL; the group and its members stay.
#[test]
fn group_mail_and_log_expire() {
    let (dir, store) = group_of_three();
    group_stored(one(&store, send_op(ident(1), &[1, 3, 1], 1_500)));
    ack_all(&store, ident(2));
    accepted(one(&store, commit_op(ident(2), 1, &[], &[], 2)));
    group_stored(one(&store, send_op(ident(3), &[1, 3, 2], 9_000)));
    one(&store, WriteOp::Expire { before_ms: 5_000 });
    assert_eq!(rows(&dir, "group_commits"), 0);
    assert_eq!(rows(&dir, "group_blobs"), 1);
    assert_eq!(envelopes(&store, ident(1)), vec![vec![1, 3, 2]]);
    assert_eq!(envelopes(&store, ident(3)), Vec::<Vec<u8>>::new());
    assert_eq!(rows(&dir, "group_members"), 3);
    check_counters(&dir);
    one(&store, WriteOp::Expire { before_ms: 10_000 });
    assert_eq!(rows(&dir, "group_blobs"), 0);
    assert_eq!(store.totals().unwrap(), StoreTotals::default());
    check_counters(&dir);
}

fn synced(result: SyncResult) -> (u64, Vec<u64>) {
    match result {
        SyncResult::Commits(c) => (c.current_epoch, c.commits.iter().map(|l| l.epoch).collect()),
        other => panic!("expected commits, got {other:?}"),
    }
}

/// Sync returns logged commits from an epoch on, oldest first, within the count and byte
/// bounds; the log keeps at most `max_log` commits per group.
#[test]
fn sync_returns_logged_commits_within_bounds() {
    let (_dir, store) = group_of_three();
    let alice = ident(1);
    for epoch in 1..6 {
        let mut op = commit_op(alice, epoch, &[], &[], epoch as u8);
        if let WriteOp::GroupCommit {
            commit, max_log, ..
        } = &mut op
        {
            commit.commit = [1, 4, epoch as u8].repeat(10_000);
            *max_log = 4;
        }
        assert_eq!(accepted(one(&store, op)).0, epoch + 1);
    }
    // Epochs 2..=5 remain (the log keeps 4).
    assert_eq!(
        synced(store.group_sync(&gid(), &alice, 0, 64, 1 << 20).unwrap()),
        (6, vec![2, 3, 4, 5])
    );
    assert_eq!(
        synced(store.group_sync(&gid(), &ident(2), 4, 64, 1 << 20).unwrap()),
        (6, vec![4, 5])
    );
    assert_eq!(
        synced(store.group_sync(&gid(), &alice, 0, 3, 1 << 20).unwrap()),
        (6, vec![2, 3, 4])
    );
    // 30 000-byte commits: two fit 65 000 bytes, and the first is always returned.
    assert_eq!(
        synced(store.group_sync(&gid(), &alice, 0, 64, 65_000).unwrap()),
        (6, vec![2, 3])
    );
    assert_eq!(
        synced(store.group_sync(&gid(), &alice, 0, 64, 10).unwrap()),
        (6, vec![2])
    );
    assert_eq!(
        synced(store.group_sync(&gid(), &alice, 6, 64, 65_000).unwrap()),
        (6, vec![])
    );
    assert_eq!(
        synced(
            store
                .group_sync(&gid(), &alice, u64::MAX, 64, 65_000)
                .unwrap()
        ),
        (6, vec![])
    );
}

#[test]
fn leaving_stops_mail_and_the_last_leave_deletes_the_group() {
    let (dir, store) = group_of_three();
    assert_eq!(
        one(
            &store,
            WriteOp::GroupLeave {
                group_id: gid(),
                identity: ident(2)
            }
        ),
        WriteResult::LeftGroup
    );
    let (_, fan_out) = group_stored(one(&store, send_op(ident(1), &[1, 3, 3], 6_000)));
    assert_eq!(recipients(&fan_out), vec![ident(3)]);
    assert_eq!(
        store.group_sync(&gid(), &ident(2), 0, 64, 65_000).unwrap(),
        SyncResult::NotGroupMember
    );
    for n in [1, 3] {
        one(
            &store,
            WriteOp::GroupLeave {
                group_id: gid(),
                identity: ident(n),
            },
        );
    }
    assert_eq!(rows(&dir, "groups"), 0);
    assert_eq!(rows(&dir, "group_commits"), 0);
    assert_eq!(
        one(
            &store,
            WriteOp::GroupLeave {
                group_id: gid(),
                identity: ident(1)
            }
        ),
        WriteResult::UnknownGroup
    );
    // Mail already stored stays deliverable.
    assert!(!envelopes(&store, ident(3)).is_empty());
    check_counters(&dir);
}

#[test]
fn member_limit_and_unregistered_members_are_refused() {
    let (dir, store) = group_of_three();
    let mut op = commit_op(ident(1), 1, &[ident(4)], &[], 1);
    if let WriteOp::GroupCommit { max_members, .. } = &mut op {
        *max_members = 3;
    }
    assert_eq!(one(&store, op), WriteResult::GroupFull);
    // Removing one makes room for another.
    let mut op = commit_op(ident(1), 1, &[ident(4)], &[ident(2)], 1);
    if let WriteOp::GroupCommit { max_members, .. } = &mut op {
        *max_members = 3;
    }
    accepted(one(&store, op));
    assert_eq!(
        one(&store, commit_op(ident(1), 2, &[ident(50)], &[], 2)),
        WriteResult::UnknownUser
    );
    assert_eq!(rows(&dir, "group_members"), 3);
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

/// Rough store-level cost of a fan-out (not a benchmark: run by hand on a quiet machine,
/// `cargo test -p hush-relay --lib fan_out_cost -- --ignored --nocapture`): one 256-byte
/// message to a 100-member group, in batches as the group-commit writer makes them.
#[test]
#[ignore = "timing; run by hand"]
fn fan_out_cost() {
    let (_dir, store) = open();
    let members: Vec<IdentityBytes> = (0..100u8)
        .map(|n| {
            let id = ident(n.wrapping_add(10));
            one(&store, register(&format!("m{n}"), id));
            id
        })
        .collect();
    let creator = members[0];
    let mut op = commit_op(creator, 0, &members[1..], &[], 0);
    if let WriteOp::GroupCommit { quota, .. } = &mut op {
        quota.max_messages = u32::MAX;
    }
    accepted(one(&store, op));
    let mut message = vec![1, 3];
    message.resize(256, 0x5a);
    for batch in [1usize, 16] {
        let rounds = 400 / batch;
        let started = std::time::Instant::now();
        for _ in 0..rounds {
            let ops: Vec<WriteOp> = (0..batch)
                .map(|_| {
                    let mut op = send_op(creator, &message, 7_000);
                    if let WriteOp::GroupSend { quota, .. } = &mut op {
                        quota.max_messages = u32::MAX;
                    }
                    op
                })
                .collect();
            store.apply(&ops).unwrap();
        }
        let elapsed = started.elapsed();
        let sends = (rounds * batch) as f64;
        println!(
            "batch {batch}: {:.0} group sends/s, {:.0} member deliveries/s ({:.2} ms per send)",
            sends / elapsed.as_secs_f64(),
            sends * 99.0 / elapsed.as_secs_f64(),
            elapsed.as_secs_f64() * 1000.0 / sends
        );
    }
}

/// A member that puts dave on the relay's list with no MLS add (a lying `added`) cannot stop
/// the Welcome of dave's real addition from reaching him.
#[test]
fn a_welcome_reaches_an_added_member_already_on_the_list() {
    let (dir, store) = group_of_three();
    let mut lying = commit_op(ident(2), 1, &[ident(4)], &[], 1);
    if let WriteOp::GroupCommit { commit, .. } = &mut lying {
        commit.welcome = None;
    }
    accepted(one(&store, lying));
    ack_all(&store, ident(4));
    let (_, _, welcome) = accepted(one(&store, commit_op(ident(1), 2, &[ident(4)], &[], 2)));
    assert_eq!(recipients(&welcome), vec![ident(4)]);
    // (He also gets the commit: the relay's list had him already.)
    assert!(envelopes(&store, ident(4)).contains(&vec![1, 5, 2, 2, 2]));
    check_counters(&dir);
}

/// The commit log counts toward the relay's storage quota: a stream of fresh groups with large
/// commits (nobody to fan out to, so nothing in any mailbox) ends in `StorageFull`, and the
/// counters match the rows all along.
#[test]
fn logged_commits_count_toward_the_storage_quota() {
    let (dir, store) = open();
    one(&store, register("mallory", ident(9)));
    let mut refused = None;
    for n in 0..20u8 {
        let op = WriteOp::GroupCommit {
            commit: GroupCommit {
                group_id: GroupId::new(vec![n; 16]).unwrap(),
                epoch: 0,
                added: vec![],
                removed: vec![],
                commit: [vec![1, 4], vec![n; 998]].concat(),
                welcome: None,
            },
            sender: ident(9),
            received_at_ms: 1_000,
            quota: GroupQuota {
                max_total_bytes: 10_000,
                ..quota()
            },
            max_members: 1000,
            max_log: 256,
        };
        match one(&store, op) {
            WriteResult::CommitAccepted { .. } => {}
            WriteResult::StorageFull => {
                refused = Some(n);
                break;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(refused, Some(9), "the log's bytes were not counted");
    assert_eq!(store.totals().unwrap().bytes, 9_000);
    check_counters(&dir);
    // The last leave deletes the group and its log, and its bytes with it.
    let leave = WriteOp::GroupLeave {
        group_id: GroupId::new(vec![0; 16]).unwrap(),
        identity: ident(9),
    };
    assert_eq!(one(&store, leave), WriteResult::LeftGroup);
    assert_eq!(store.totals().unwrap().bytes, 8_000);
    check_counters(&dir);
}
