//! The relay as MLS delivery service: compare-and-set on the epoch, fan-out stored once,
//! per-member acks, TTL and the commit log.

use super::*;
use crate::store::{FanOut, GroupQuota, GroupStats, StoreTotals, SyncResult};
use hush_proto::relay::{GroupCommit, GroupId};

const GID: [u8; 16] = [7; 16];

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

pub(crate) fn commit_op(
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

pub(crate) fn accepted(result: WriteResult) -> (u64, FanOut, FanOut) {
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

pub(crate) fn recipients(fan_out: &FanOut) -> Vec<IdentityBytes> {
    let mut r: Vec<_> = fan_out.delivered.iter().map(|(who, _)| *who).collect();
    r.sort();
    r
}

pub(crate) fn sorted(mut ids: Vec<IdentityBytes>) -> Vec<IdentityBytes> {
    ids.sort();
    ids
}

pub(crate) fn envelopes(store: &dyn Store, who: IdentityBytes) -> Vec<Vec<u8>> {
    store
        .pending(&who, 0, 100, usize::MAX)
        .unwrap()
        .into_iter()
        .map(|m| m.envelope)
        .collect()
}

pub(crate) fn ack_all(store: &dyn Store, who: IdentityBytes) -> u32 {
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
pub(crate) fn group_of_three(store: &dyn Store) {
    for (name, n) in [("alice", 1), ("bob", 2), ("carol", 3), ("dave", 4)] {
        one(store, register(name, ident(n)));
    }
    let (epoch, commit, welcome) = accepted(one(
        store,
        commit_op(ident(1), 0, &[ident(2), ident(3)], &[], 0),
    ));
    assert_eq!(epoch, 1);
    assert!(commit.delivered.is_empty());
    assert_eq!(recipients(&welcome), sorted(vec![ident(2), ident(3)]));
}

pub(super) fn creating_a_group_welcomes_the_added_members_once_stored(b: &mut dyn Backend) {
    group_of_three(b.store());
    let store = b.store();
    assert_eq!(envelopes(store, ident(2)), vec![vec![1, 5, 0, 0, 0]]);
    assert_eq!(envelopes(store, ident(3)), vec![vec![1, 5, 0, 0, 0]]);
    assert!(envelopes(store, ident(1)).is_empty());
    // One Welcome blob referenced by two mailbox rows; one logged commit; three members.
    assert_eq!(b.rows("group_blobs"), 1);
    assert_eq!(b.rows("messages"), 2);
    assert_eq!(b.rows("group_commits"), 1);
    assert_eq!(b.rows("group_members"), 3);
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
    assert_eq!(one(store, other), WriteResult::UnknownGroup);
    b.check_counters();
}

/// Two commits for the same epoch: exactly one wins, in one batch or in two.
pub(super) fn two_commits_for_one_epoch_exactly_one_wins(b: &mut dyn Backend) {
    group_of_three(b.store());
    let store = b.store();
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
        one(store, commit_op(ident(3), 1, &[], &[], 0xC)),
        WriteResult::StaleEpoch { current: 2 }
    );
    // Only the winner's commit was logged and delivered.
    assert_eq!(b.rows("group_commits"), 2);
    assert!(envelopes(store, ident(1)).contains(&vec![1, 4, 0xB, 0xB]));
    assert!(!envelopes(store, ident(2))
        .iter()
        .any(|e| e.starts_with(&[1, 4])));
    // After syncing, the loser retries at the new epoch and wins.
    assert_eq!(
        accepted(one(store, commit_op(ident(3), 2, &[], &[], 0xC))).0,
        3
    );
    b.check_counters();
}

pub(super) fn non_members_are_refused_everything(b: &mut dyn Backend) {
    group_of_three(b.store());
    let store = b.store();
    let dave = ident(4);
    assert_eq!(
        one(store, commit_op(dave, 1, &[dave], &[], 1)),
        WriteResult::NotGroupMember
    );
    assert_eq!(
        one(store, send_op(dave, &[1, 3, 9], 5)),
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
    assert_eq!(one(store, op), WriteResult::UnknownGroup);
    assert_eq!(b.rows("group_members"), 3);
    b.check_counters();
}

/// A group message is stored once, referenced from each other member's mailbox, and deleted
/// only when the last of them acks it.
pub(super) fn group_message_stored_once_deleted_at_the_last_ack(b: &mut dyn Backend) {
    group_of_three(b.store());
    let store = b.store();
    ack_all(store, ident(2));
    ack_all(store, ident(3));
    assert_eq!(b.rows("group_blobs"), 0);
    let message = vec![1, 3, 42, 42, 42, 42];
    let (id, fan_out) = group_stored(one(store, send_op(ident(1), &message, 2_000)));
    assert_ne!(id, 0);
    assert_eq!(recipients(&fan_out), sorted(vec![ident(2), ident(3)]));
    assert_eq!(b.rows("group_blobs"), 1);
    assert_eq!(b.rows("messages"), 2);
    // The bytes are in the blob only: the mailbox rows hold none.
    let row_bytes = b.query_ints("SELECT CAST(sum(length(envelope)) AS BIGINT) FROM messages")[0];
    assert_eq!(row_bytes, 0);
    assert_eq!(envelopes(store, ident(2)), vec![message.clone()]);
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
    b.check_counters();
    assert_eq!(ack_all(store, ident(2)), 1);
    assert_eq!(b.rows("group_blobs"), 1);
    assert_eq!(envelopes(store, ident(3)), vec![message]);
    b.check_counters();
    assert_eq!(ack_all(store, ident(3)), 1);
    assert_eq!(b.rows("group_blobs"), 0);
    // Only the group's log is left (the creating commit, until the TTL).
    assert_eq!(
        store.totals().unwrap(),
        StoreTotals {
            messages: 0,
            bytes: 4
        }
    );
    b.check_counters();
}

/// A removed member receives the commit that removes it, then nothing more from the group.
pub(super) fn removed_member_gets_the_commit_then_nothing(b: &mut dyn Backend) {
    group_of_three(b.store());
    let store = b.store();
    ack_all(store, ident(3));
    let (epoch, fan_out, welcome) =
        accepted(one(store, commit_op(ident(1), 1, &[], &[ident(3)], 0xD)));
    assert_eq!(epoch, 2);
    assert!(welcome.delivered.is_empty());
    assert_eq!(recipients(&fan_out), sorted(vec![ident(2), ident(3)]));
    assert_eq!(envelopes(store, ident(3)), vec![vec![1, 4, 0xD, 0xD]]);
    let (_, fan_out) = group_stored(one(store, send_op(ident(1), &[1, 3, 5], 3_000)));
    assert_eq!(recipients(&fan_out), vec![ident(2)]);
    assert_eq!(envelopes(store, ident(3)).len(), 1);
    assert_eq!(
        one(store, send_op(ident(3), &[1, 3, 6], 3_001)),
        WriteResult::NotGroupMember
    );
    assert_eq!(
        one(store, commit_op(ident(3), 2, &[], &[], 1)),
        WriteResult::NotGroupMember
    );
    b.check_counters();
}

/// A full mailbox skips that member only; the others get the message.
pub(super) fn a_full_mailbox_skips_only_that_member(b: &mut dyn Backend) {
    group_of_three(b.store());
    let store = b.store();
    // carol's mailbox (holding the Welcome) is full at one message.
    let mut op = send_op(ident(1), &[1, 3, 7, 7], 4_000);
    if let WriteOp::GroupSend { quota, .. } = &mut op {
        quota.max_messages = 1;
    }
    ack_all(store, ident(2));
    let (id, fan_out) = group_stored(one(store, op));
    assert_ne!(id, 0);
    assert_eq!(recipients(&fan_out), vec![ident(2)]);
    assert_eq!(fan_out.skipped_full, 1);
    assert_eq!(envelopes(store, ident(3)).len(), 1);
    b.check_counters();
    // Everyone full: nothing stored, no blob left behind.
    let mut op = send_op(ident(1), &[1, 3, 8], 4_001);
    if let WriteOp::GroupSend { quota, .. } = &mut op {
        quota.max_messages = 1;
    }
    let (id, fan_out) = group_stored(one(store, op));
    assert_eq!((id, fan_out.skipped_full), (0, 2));
    assert_eq!(b.rows("group_blobs"), 2);
    b.check_counters();
}

/// The storage quotas count a group message once; a refusal stores nothing.
pub(super) fn storage_quota_counts_a_group_message_once(b: &mut dyn Backend) {
    group_of_three(b.store());
    let store = b.store();
    let stored_bytes = store.totals().unwrap().bytes;
    let message = vec![1, 3, 0, 0, 0, 0, 0, 0, 0, 0];
    let mut op = send_op(ident(1), &message, 5_000);
    if let WriteOp::GroupSend { quota, .. } = &mut op {
        // Room for the message once, not for one copy per recipient.
        quota.max_total_bytes = stored_bytes + 10;
    }
    group_stored(one(store, op.clone()));
    assert_eq!(one(store, op), WriteResult::StorageFull);
    let mut op = send_op(ident(1), &message, 5_001);
    if let WriteOp::GroupSend { quota, .. } = &mut op {
        quota.max_sender_bytes = 5;
    }
    assert_eq!(one(store, op), WriteResult::SenderQuota);
    assert_eq!(b.rows("group_blobs"), 2);
    b.check_counters();
}

/// Mail, blobs and logged commits expire with the TTL; the group and its members stay.
pub(super) fn group_mail_and_log_expire(b: &mut dyn Backend) {
    group_of_three(b.store());
    let store = b.store();
    group_stored(one(store, send_op(ident(1), &[1, 3, 1], 1_500)));
    ack_all(store, ident(2));
    accepted(one(store, commit_op(ident(2), 1, &[], &[], 2)));
    group_stored(one(store, send_op(ident(3), &[1, 3, 2], 9_000)));
    one(store, WriteOp::Expire { before_ms: 5_000 });
    assert_eq!(b.rows("group_commits"), 0);
    assert_eq!(b.rows("group_blobs"), 1);
    assert_eq!(envelopes(store, ident(1)), vec![vec![1, 3, 2]]);
    assert_eq!(envelopes(store, ident(3)), Vec::<Vec<u8>>::new());
    assert_eq!(b.rows("group_members"), 3);
    b.check_counters();
    one(store, WriteOp::Expire { before_ms: 10_000 });
    assert_eq!(b.rows("group_blobs"), 0);
    assert_eq!(store.totals().unwrap(), StoreTotals::default());
    b.check_counters();
}

fn synced(result: SyncResult) -> (u64, Vec<u64>) {
    match result {
        SyncResult::Commits(c) => (c.current_epoch, c.commits.iter().map(|l| l.epoch).collect()),
        other => panic!("expected commits, got {other:?}"),
    }
}

/// Sync returns logged commits from an epoch on, oldest first, within the count and byte
/// bounds; the log keeps at most `max_log` commits per group.
pub(super) fn sync_returns_logged_commits_within_bounds(b: &mut dyn Backend) {
    group_of_three(b.store());
    let store = b.store();
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
        assert_eq!(accepted(one(store, op)).0, epoch + 1);
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

pub(super) fn leaving_stops_mail_and_the_last_leave_deletes_the_group(b: &mut dyn Backend) {
    group_of_three(b.store());
    let store = b.store();
    assert_eq!(
        one(
            store,
            WriteOp::GroupLeave {
                group_id: gid(),
                identity: ident(2)
            }
        ),
        WriteResult::LeftGroup
    );
    let (_, fan_out) = group_stored(one(store, send_op(ident(1), &[1, 3, 3], 6_000)));
    assert_eq!(recipients(&fan_out), vec![ident(3)]);
    assert_eq!(
        store.group_sync(&gid(), &ident(2), 0, 64, 65_000).unwrap(),
        SyncResult::NotGroupMember
    );
    for n in [1, 3] {
        one(
            store,
            WriteOp::GroupLeave {
                group_id: gid(),
                identity: ident(n),
            },
        );
    }
    assert_eq!(b.rows("groups"), 0);
    assert_eq!(b.rows("group_commits"), 0);
    assert_eq!(
        one(
            store,
            WriteOp::GroupLeave {
                group_id: gid(),
                identity: ident(1)
            }
        ),
        WriteResult::UnknownGroup
    );
    // Mail already stored stays deliverable.
    assert!(!envelopes(store, ident(3)).is_empty());
    b.check_counters();
}

pub(super) fn member_limit_and_unregistered_members_are_refused(b: &mut dyn Backend) {
    group_of_three(b.store());
    let store = b.store();
    let mut op = commit_op(ident(1), 1, &[ident(4)], &[], 1);
    if let WriteOp::GroupCommit { max_members, .. } = &mut op {
        *max_members = 3;
    }
    assert_eq!(one(store, op), WriteResult::GroupFull);
    // Removing one makes room for another.
    let mut op = commit_op(ident(1), 1, &[ident(4)], &[ident(2)], 1);
    if let WriteOp::GroupCommit { max_members, .. } = &mut op {
        *max_members = 3;
    }
    accepted(one(store, op));
    assert_eq!(
        one(store, commit_op(ident(1), 2, &[ident(50)], &[], 2)),
        WriteResult::UnknownUser
    );
    assert_eq!(b.rows("group_members"), 3);
    b.check_counters();
}

/// Rough store-level cost of a fan-out (not a benchmark: run by hand on a quiet machine,
/// `cargo test -p hush-relay --lib fan_out_cost -- --ignored --nocapture`): one 256-byte
/// message to a 100-member group, in batches as the group-commit writer makes them.
pub(super) fn fan_out_cost(b: &mut dyn Backend) {
    let store = b.store();
    let members: Vec<IdentityBytes> = (0..100u8)
        .map(|n| {
            let id = ident(n.wrapping_add(10));
            one(store, register(&format!("m{n}"), id));
            id
        })
        .collect();
    let creator = members[0];
    let mut op = commit_op(creator, 0, &members[1..], &[], 0);
    if let WriteOp::GroupCommit { quota, .. } = &mut op {
        quota.max_messages = u32::MAX;
    }
    accepted(one(store, op));
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
pub(super) fn a_welcome_reaches_an_added_member_already_on_the_list(b: &mut dyn Backend) {
    group_of_three(b.store());
    let store = b.store();
    let mut lying = commit_op(ident(2), 1, &[ident(4)], &[], 1);
    if let WriteOp::GroupCommit { commit, .. } = &mut lying {
        commit.welcome = None;
    }
    accepted(one(store, lying));
    ack_all(store, ident(4));
    let (_, _, welcome) = accepted(one(store, commit_op(ident(1), 2, &[ident(4)], &[], 2)));
    assert_eq!(recipients(&welcome), vec![ident(4)]);
    // (He also gets the commit: the relay's list had him already.)
    assert!(envelopes(store, ident(4)).contains(&vec![1, 5, 2, 2, 2]));
    b.check_counters();
}

/// The commit log counts toward the relay's storage quota: a stream of fresh groups with large
/// commits (nobody to fan out to, so nothing in any mailbox) ends in `StorageFull`, and the
/// counters match the rows all along.
pub(super) fn logged_commits_count_toward_the_storage_quota(b: &mut dyn Backend) {
    let store = b.store();
    one(store, register("mallory", ident(9)));
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
        match one(store, op) {
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
    b.check_counters();
    // The last leave deletes the group and its log, and its bytes with it.
    let leave = WriteOp::GroupLeave {
        group_id: GroupId::new(vec![0; 16]).unwrap(),
        identity: ident(9),
    };
    assert_eq!(one(store, leave), WriteResult::LeftGroup);
    assert_eq!(store.totals().unwrap().bytes, 8_000);
    b.check_counters();
}
