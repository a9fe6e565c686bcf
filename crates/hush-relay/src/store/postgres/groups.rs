//! The relay as MLS delivery service (RFC 9750), in the batch transaction: commits ordered per
//! group by compare-and-set on the epoch, group mail stored once and referenced from each
//! recipient's mailbox, a per-group commit log for `GroupSync`. Everything here is opaque bytes;
//! the member list is what members told the relay, used only to route mail (MLS, checked by
//! every member, decides who can read it).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use hush_proto::relay::{GroupCommit, GroupCommits, GroupId, LoggedCommit};
use postgres::types::ToSql;
use postgres::GenericClient;

use super::mailbox::{insert_messages, NewMessage};
use super::prekeys::is_registered;
use super::{blob_array, non_negative, saturating_i64, too_large, Db, Quota, UsageDeltas};
use crate::store::{
    FanOut, GroupQuota, GroupStats, IdentityBytes, StoreError, SyncResult, WriteResult,
};

/// Bytes a logged commit adds to a sync reply besides its envelope: epoch, sender, length.
pub const SYNC_COMMIT_OVERHEAD: usize = 8 + 32 + 4;

/// The group's epoch, if the group exists.
fn group_epoch<C: GenericClient>(
    db: &mut Db<'_, C>,
    group_id: &[u8],
) -> Result<Option<u64>, StoreError> {
    db.query_opt("SELECT epoch FROM groups WHERE group_id = $1", &[&group_id])?
        .map(|row| non_negative(row.try_get(0)?, "group epoch"))
        .transpose()
}

fn is_member<C: GenericClient>(
    db: &mut Db<'_, C>,
    group_id: &[u8],
    identity: &[u8],
) -> Result<bool, StoreError> {
    db.exists(
        "SELECT 1 FROM group_members WHERE group_id = $1 AND identity = $2",
        &[&group_id, &identity],
    )
}

fn members<C: GenericClient>(
    db: &mut Db<'_, C>,
    group_id: &[u8],
) -> Result<Vec<IdentityBytes>, StoreError> {
    db.query(
        "SELECT identity FROM group_members WHERE group_id = $1",
        &[&group_id],
    )?
    .iter()
    .map(|row| blob_array(&row.try_get::<_, Vec<u8>>(0)?, "group member"))
    .collect()
}

/// Whether `bytes` more may be stored from `sender` (global quota and the sender's share); the
/// refusal if not. A group message counts once, however many mailboxes reference it.
fn check_storage<C: GenericClient>(
    db: &mut Db<'_, C>,
    usage: &mut UsageDeltas,
    sender: &IdentityBytes,
    bytes: u64,
    quota: &Quota,
) -> Result<Option<WriteResult>, StoreError> {
    let all_bytes = non_negative(usage.total_bytes(db)?, "total byte count")?;
    if all_bytes
        .checked_add(bytes)
        .is_none_or(|total| total > quota.max_total_bytes)
    {
        return Ok(Some(WriteResult::StorageFull));
    }
    let sender_bytes = non_negative(usage.sender_bytes(db, sender)?, "sender byte count")?;
    let limit = quota.sender_limit(all_bytes.saturating_add(bytes));
    if sender_bytes
        .checked_add(bytes)
        .is_none_or(|total| total > limit)
    {
        return Ok(Some(WriteResult::SenderQuota));
    }
    Ok(None)
}

/// Store `envelope` once and reference it from the mailbox of each recipient with room for
/// it; a full mailbox skips that recipient only. Storage quotas are checked by the caller.
/// Returns the blob id (0 if nobody got it) and the rows made.
fn fan_out<C: GenericClient>(
    db: &mut Db<'_, C>,
    usage: &mut UsageDeltas,
    recipients: &[IdentityBytes],
    sender: &IdentityBytes,
    envelope: &[u8],
    received_at_ms: u64,
    quota: &Quota,
) -> Result<(u64, FanOut), StoreError> {
    let mut out = FanOut::default();
    if recipients.is_empty() {
        return Ok((0, out));
    }
    let len_u64 = u64::try_from(envelope.len()).map_err(|_| too_large())?;
    let len = i64::try_from(envelope.len()).map_err(|_| too_large())?;
    let at = saturating_i64(received_at_ms);
    let slices: Vec<&[u8]> = recipients.iter().map(|r| r.as_slice()).collect();
    usage.prefetch(db, &slices, &[])?;
    let mut getting = Vec::with_capacity(recipients.len());
    for recipient in recipients {
        let (messages, bytes) = usage.current(db, recipient)?;
        let messages = non_negative(messages, "mailbox message count")?;
        let bytes = non_negative(bytes, "mailbox byte count")?;
        if messages >= u64::from(quota.max_messages)
            || bytes
                .checked_add(len_u64)
                .is_none_or(|total| total > quota.max_bytes)
        {
            out.skipped_full = out.skipped_full.saturating_add(1);
            continue;
        }
        usage.add_mailbox(db, recipient, 1, len)?;
        getting.push(recipient);
    }
    if getting.is_empty() {
        return Ok((0, out));
    }
    let refs = i64::try_from(getting.len()).map_err(|_| too_large())?;
    let blob: i64 = db
        .query_one(
            "INSERT INTO group_blobs (sender, received_at_ms, refs, envelope)
             VALUES ($1, $2, $3, $4) RETURNING id",
            &[&sender.as_slice(), &at, &refs, &envelope],
        )?
        .try_get(0)?;
    let rows: Vec<NewMessage<'_>> = getting
        .iter()
        .map(|recipient| NewMessage {
            recipient: recipient.as_slice(),
            sender: sender.as_slice(),
            received_at_ms: at,
            envelope: &[],
            blob: Some(blob),
        })
        .collect();
    let ids = insert_messages(db, &rows)?;
    out.delivered = getting.into_iter().copied().zip(ids).collect();
    usage.add_stored_bytes(len);
    usage.add_sender(db, sender, len)?;
    Ok((non_negative(blob, "group blob id")?, out))
}

/// Apply `commit` if the group is at its epoch (the first valid commit for an epoch wins), or
/// create the group if it is new and the commit is for epoch 0. Every refusal changes nothing.
#[allow(clippy::too_many_arguments)]
pub(super) fn group_commit<C: GenericClient>(
    db: &mut Db<'_, C>,
    usage: &mut UsageDeltas,
    commit: &GroupCommit,
    sender: &IdentityBytes,
    received_at_ms: u64,
    quota: &GroupQuota,
    max_members: u32,
    max_log: u32,
) -> Result<WriteResult, StoreError> {
    let gid = commit.group_id.as_bytes();
    let (created, before): (bool, Vec<IdentityBytes>) = match group_epoch(db, gid)? {
        None if commit.epoch != 0 => return Ok(WriteResult::UnknownGroup),
        None => (true, Vec::new()),
        Some(current) => {
            // Non-members learn nothing about the group, not even its epoch.
            if !is_member(db, gid, sender)? {
                return Ok(WriteResult::NotGroupMember);
            }
            if current != commit.epoch {
                return Ok(WriteResult::StaleEpoch { current });
            }
            (false, members(db, gid)?)
        }
    };
    let before_set: BTreeSet<IdentityBytes> = before.iter().copied().collect();
    let mut after = before_set.clone();
    if created {
        after.insert(*sender);
    }
    for removed in &commit.removed {
        after.remove(removed);
    }
    // The Welcome goes to every identity the commit adds (but the committer), even one already
    // on the list: a member could otherwise put bob on the list first, with no MLS add, so
    // that bob never receives the Welcome of his real addition.
    let mut joining = Vec::new();
    for added in &commit.added {
        after.insert(*added);
        if added != sender && !joining.contains(added) {
            joining.push(*added);
        }
    }
    if u64::try_from(after.len()).unwrap_or(u64::MAX) > u64::from(max_members) {
        return Ok(WriteResult::GroupFull);
    }
    // Mail goes only to registered identities, as 1:1 mail does.
    for added in &joining {
        if !is_registered(db, added)? {
            return Ok(WriteResult::UnknownUser);
        }
    }
    let quota = Quota::from(quota);
    let welcome_len = commit.welcome.as_ref().map_or(0, Vec::len);
    // The commit is stored twice (its fan-out blob and the log), the Welcome once.
    let bytes = u64::try_from(
        commit
            .commit
            .len()
            .saturating_mul(2)
            .saturating_add(welcome_len),
    )
    .unwrap_or(u64::MAX);
    if let Some(refused) = check_storage(db, usage, sender, bytes, &quota)? {
        return Ok(refused);
    }

    let epoch = i64::try_from(commit.epoch).map_err(|_| too_large())?;
    let new_epoch = commit.epoch.checked_add(1).ok_or_else(too_large)?;
    let at = saturating_i64(received_at_ms);
    if created {
        db.execute(
            "INSERT INTO groups (group_id, epoch, created_at_ms) VALUES ($1, 1, $2)",
            &[&gid, &at],
        )?;
    } else {
        let updated = db.execute(
            "UPDATE groups SET epoch = epoch + 1 WHERE group_id = $1 AND epoch = $2",
            &[&gid, &epoch],
        )?;
        if updated != 1 {
            return Err(StoreError(
                "group epoch changed inside a transaction".to_owned(),
            ));
        }
    }
    db.execute(
        "INSERT INTO group_commits (group_id, epoch, sender, envelope, received_at_ms)
         VALUES ($1, $2, $3, $4, $5)",
        &[&gid, &epoch, &sender.as_slice(), &commit.commit, &at],
    )?;
    // The log's copy counts toward the relay's total and the committer's share like any stored
    // byte: a stream of fresh groups with large commits would otherwise fill the disk unseen.
    let log_len = i64::try_from(commit.commit.len()).map_err(|_| too_large())?;
    usage.add_stored_bytes(log_len);
    usage.add_sender(db, sender, log_len)?;
    // Epochs are consecutive, so the newest `max_log` commits are the epochs above this cut.
    if let Some(cut) = epoch.checked_sub(i64::from(max_log)) {
        delete_logged(
            db,
            usage,
            "DELETE FROM group_commits WHERE group_id = $1 AND epoch <= $2
             RETURNING sender, octet_length(envelope)::bigint",
            &[&gid, &cut],
        )?;
    }

    // Removed members get the commit too, so they learn they were removed.
    let old: Vec<IdentityBytes> = before.into_iter().filter(|m| m != sender).collect();
    let (_, commit_rows) = fan_out(
        db,
        usage,
        &old,
        sender,
        &commit.commit,
        received_at_ms,
        &quota,
    )?;
    let welcome_rows = match &commit.welcome {
        Some(welcome) => fan_out(db, usage, &joining, sender, welcome, received_at_ms, &quota)?.1,
        None => FanOut::default(),
    };

    let gone: Vec<&[u8]> = before_set
        .difference(&after)
        .map(|m| m.as_slice())
        .collect();
    if !gone.is_empty() {
        db.execute(
            "DELETE FROM group_members WHERE group_id = $1 AND identity = ANY($2)",
            &[&gid, &gone],
        )?;
    }
    let new: Vec<&[u8]> = after
        .difference(&before_set)
        .map(|m| m.as_slice())
        .collect();
    if !new.is_empty() {
        db.execute(
            "INSERT INTO group_members (group_id, identity)
             SELECT $1, identity FROM unnest($2::bytea[]) AS t(identity)
             ON CONFLICT (group_id, identity) DO NOTHING",
            &[&gid, &new],
        )?;
    }
    Ok(WriteResult::CommitAccepted {
        epoch: new_epoch,
        commit: commit_rows,
        welcome: welcome_rows,
    })
}

/// Store a group message once for every member but the sender, who must be a member.
pub(super) fn group_send<C: GenericClient>(
    db: &mut Db<'_, C>,
    usage: &mut UsageDeltas,
    group_id: &GroupId,
    sender: &IdentityBytes,
    envelope: &[u8],
    received_at_ms: u64,
    quota: &GroupQuota,
) -> Result<WriteResult, StoreError> {
    let gid = group_id.as_bytes();
    if group_epoch(db, gid)?.is_none() {
        return Ok(WriteResult::UnknownGroup);
    }
    if !is_member(db, gid, sender)? {
        return Ok(WriteResult::NotGroupMember);
    }
    let recipients: Vec<IdentityBytes> = members(db, gid)?
        .into_iter()
        .filter(|m| m != sender)
        .collect();
    let quota = Quota::from(quota);
    if !recipients.is_empty() {
        let len = u64::try_from(envelope.len()).map_err(|_| too_large())?;
        if let Some(refused) = check_storage(db, usage, sender, len, &quota)? {
            return Ok(refused);
        }
    }
    let (id, fan_out) = fan_out(
        db,
        usage,
        &recipients,
        sender,
        envelope,
        received_at_ms,
        &quota,
    )?;
    Ok(WriteResult::GroupStored { id, fan_out })
}

/// Take `identity` off the group's member list (idempotent); a group left without members is
/// deleted with its log.
pub(super) fn group_leave<C: GenericClient>(
    db: &mut Db<'_, C>,
    usage: &mut UsageDeltas,
    group_id: &GroupId,
    identity: &IdentityBytes,
) -> Result<WriteResult, StoreError> {
    let gid = group_id.as_bytes();
    if group_epoch(db, gid)?.is_none() {
        return Ok(WriteResult::UnknownGroup);
    }
    db.execute(
        "DELETE FROM group_members WHERE group_id = $1 AND identity = $2",
        &[&gid, &identity.as_slice()],
    )?;
    // The log goes with the group (the cascade would drop it without its byte counts).
    delete_logged(
        db,
        usage,
        "DELETE FROM group_commits WHERE group_id = $1
         AND NOT EXISTS (SELECT 1 FROM group_members WHERE group_id = $1)
         RETURNING sender, octet_length(envelope)::bigint",
        &[&gid],
    )?;
    db.execute(
        "DELETE FROM groups WHERE group_id = $1
         AND NOT EXISTS (SELECT 1 FROM group_members WHERE group_id = $1)",
        &[&gid],
    )?;
    Ok(WriteResult::LeftGroup)
}

/// What releasing references did to one group blob.
pub(super) struct Released {
    /// The blob's length (what a mailbox counted for each row referencing it).
    pub(super) len: i64,
    /// The blob's sender, if its last reference went and the blob was deleted (its bytes then
    /// leave the totals and the sender's share; the caller counts that).
    pub(super) gone_from: Option<Vec<u8>>,
}

/// Mailbox rows referencing group blobs were deleted (ack): drop `refs[blob]` references from
/// each, and delete each blob whose last reference went. Two statements however many blobs;
/// the counters are left to the caller (who knows which op released the last reference).
pub(super) fn release_blobs<C: GenericClient>(
    db: &mut Db<'_, C>,
    refs: &BTreeMap<i64, i64>,
) -> Result<HashMap<i64, Released>, StoreError> {
    let mut released = HashMap::with_capacity(refs.len());
    if refs.is_empty() {
        return Ok(released);
    }
    let (ids, counts): (Vec<i64>, Vec<i64>) = refs.iter().map(|(id, n)| (*id, *n)).unzip();
    let rows = db.query(
        "UPDATE group_blobs AS g SET refs = g.refs - d.n
         FROM unnest($1::bigint[], $2::bigint[]) AS d(id, n)
         WHERE g.id = d.id
         RETURNING g.id, g.refs, octet_length(g.envelope)::bigint, g.sender",
        &[&ids, &counts],
    )?;
    if rows.len() != ids.len() {
        return Err(StoreError(
            "a mailbox row references a missing group blob".to_owned(),
        ));
    }
    let mut gone: Vec<i64> = Vec::new();
    for row in rows {
        let id: i64 = row.try_get(0)?;
        let left: i64 = row.try_get(1)?;
        let len: i64 = row.try_get(2)?;
        let gone_from = if left == 0 {
            gone.push(id);
            Some(row.try_get(3)?)
        } else {
            None
        };
        released.insert(id, Released { len, gone_from });
    }
    if !gone.is_empty() {
        db.execute("DELETE FROM group_blobs WHERE id = ANY($1)", &[&gone])?;
    }
    Ok(released)
}

/// Delete stored group state with `sql` (which returns each deleted row's sender and length)
/// and take their bytes off the totals and their senders' shares.
fn delete_logged<C: GenericClient>(
    db: &mut Db<'_, C>,
    usage: &mut UsageDeltas,
    sql: &'static str,
    params: &[&(dyn ToSql + Sync)],
) -> Result<(), StoreError> {
    let mut deleted: Vec<(Vec<u8>, i64)> = Vec::new();
    for row in db.query(sql, params)? {
        deleted.push((row.try_get(0)?, row.try_get(1)?));
    }
    let senders: Vec<&[u8]> = deleted.iter().map(|(s, _)| s.as_slice()).collect();
    usage.prefetch(db, &[], &senders)?;
    for (sender, len) in deleted {
        usage.add_stored_bytes(-len);
        usage.add_sender(db, &sender, -len)?;
    }
    Ok(())
}

/// Expiry of group state before the mailbox rows go: commits logged before `before`, groups
/// nobody is a member of.
pub(super) fn expire_group_log<C: GenericClient>(
    db: &mut Db<'_, C>,
    usage: &mut UsageDeltas,
    before: i64,
) -> Result<(), StoreError> {
    delete_logged(
        db,
        usage,
        "DELETE FROM group_commits WHERE received_at_ms < $1
         RETURNING sender, octet_length(envelope)::bigint",
        &[&before],
    )?;
    delete_logged(
        db,
        usage,
        "DELETE FROM group_commits AS c
         WHERE NOT EXISTS (SELECT 1 FROM group_members AS m WHERE m.group_id = c.group_id)
         RETURNING sender, octet_length(envelope)::bigint",
        &[],
    )?;
    db.execute(
        "DELETE FROM groups AS g
         WHERE NOT EXISTS (SELECT 1 FROM group_members AS m WHERE m.group_id = g.group_id)",
        &[],
    )?;
    Ok(())
}

/// Expiry of group blobs after their mailbox rows (all received at the blob's time) went.
pub(super) fn expire_blobs<C: GenericClient>(
    db: &mut Db<'_, C>,
    usage: &mut UsageDeltas,
    before: i64,
) -> Result<(), StoreError> {
    delete_logged(
        db,
        usage,
        "DELETE FROM group_blobs WHERE received_at_ms < $1
         RETURNING sender, octet_length(envelope)::bigint",
        &[&before],
    )
}

/// Logged commits for a member (the caller runs this in one read-only snapshot).
pub(super) fn group_sync<C: GenericClient>(
    db: &mut Db<'_, C>,
    group_id: &GroupId,
    member: &IdentityBytes,
    after_epoch: u64,
    max_commits: usize,
    max_bytes: usize,
) -> Result<SyncResult, StoreError> {
    let gid = group_id.as_bytes();
    let Some(current_epoch) = group_epoch(db, gid)? else {
        return Ok(SyncResult::UnknownGroup);
    };
    if !is_member(db, gid, member)? {
        return Ok(SyncResult::NotGroupMember);
    }
    let mut commits = Vec::new();
    if let Ok(after) = i64::try_from(after_epoch) {
        let limit = i64::try_from(max_commits).unwrap_or(i64::MAX);
        let rows = db.query(
            "SELECT epoch, sender, envelope FROM group_commits
             WHERE group_id = $1 AND epoch >= $2 ORDER BY epoch LIMIT $3",
            &[&gid, &after, &limit],
        )?;
        let mut bytes = 0usize;
        for row in rows {
            let commit: Vec<u8> = row.try_get(2)?;
            let size = commit.len().saturating_add(SYNC_COMMIT_OVERHEAD);
            if !commits.is_empty() && bytes.saturating_add(size) > max_bytes {
                break;
            }
            bytes = bytes.saturating_add(size);
            commits.push(LoggedCommit {
                epoch: non_negative(row.try_get(0)?, "logged commit epoch")?,
                sender: blob_array(&row.try_get::<_, Vec<u8>>(1)?, "logged commit sender")?,
                commit,
            });
        }
    }
    Ok(SyncResult::Commits(GroupCommits {
        current_epoch,
        commits,
    }))
}

/// Groups and memberships, from the trigger-kept totals row.
pub(super) fn group_stats<C: GenericClient>(db: &mut Db<'_, C>) -> Result<GroupStats, StoreError> {
    let row = db.query_one(
        "SELECT groups, members FROM group_totals WHERE singleton = 0",
        &[],
    )?;
    Ok(GroupStats {
        groups: non_negative(row.try_get(0)?, "group total")?,
        members: non_negative(row.try_get(1)?, "group member total")?,
    })
}
