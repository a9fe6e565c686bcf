//! The relay as MLS delivery service (RFC 9750), in the batch transaction: commits ordered per
//! group by compare-and-set on the epoch, group mail stored once and referenced from each
//! recipient's mailbox, a per-group commit log for `GroupSync`. Everything here is opaque bytes;
//! the member list is what members told the relay, used only to route mail (MLS, checked by
//! every member, decides who can read it).

use std::collections::BTreeSet;

use hush_proto::relay::{GroupCommit, GroupCommits, GroupId, LoggedCommit};
use rusqlite::{params, Connection, OptionalExtension};

use super::{blob_array, non_negative, saturating_i64, too_large, Quota, UsageDeltas};
use crate::store::{
    FanOut, GroupQuota, GroupStats, IdentityBytes, StoreError, SyncResult, WriteResult,
};

/// Bytes a logged commit adds to a sync reply besides its envelope: epoch, sender, length.
pub const SYNC_COMMIT_OVERHEAD: usize = 8 + 32 + 4;

/// The group's epoch, if the group exists.
fn group_epoch(conn: &Connection, group_id: &[u8]) -> Result<Option<u64>, StoreError> {
    let epoch: Option<i64> = conn
        .prepare_cached("SELECT epoch FROM groups WHERE group_id = ?1")?
        .query_row(params![group_id], |row| row.get(0))
        .optional()?;
    epoch.map(|e| non_negative(e, "group epoch")).transpose()
}

fn is_member(conn: &Connection, group_id: &[u8], identity: &[u8]) -> Result<bool, StoreError> {
    Ok(conn
        .prepare_cached("SELECT 1 FROM group_members WHERE group_id = ?1 AND identity = ?2")?
        .exists(params![group_id, identity])?)
}

fn members(conn: &Connection, group_id: &[u8]) -> Result<Vec<IdentityBytes>, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT identity FROM group_members WHERE group_id = ?1")?;
    let rows = stmt.query_map(params![group_id], |row| row.get::<_, Vec<u8>>(0))?;
    let mut out = Vec::new();
    for row in rows {
        out.push(blob_array(&row?, "group member")?);
    }
    Ok(out)
}

/// Whether `bytes` more may be stored from `sender` (global quota and the sender's share); the
/// refusal if not. A group message counts once, however many mailboxes reference it.
fn check_storage(
    conn: &Connection,
    usage: &mut UsageDeltas,
    sender: &IdentityBytes,
    bytes: u64,
    quota: &Quota,
) -> Result<Option<WriteResult>, StoreError> {
    let all_bytes = non_negative(usage.total_bytes(conn)?, "total byte count")?;
    if all_bytes
        .checked_add(bytes)
        .is_none_or(|total| total > quota.max_total_bytes)
    {
        return Ok(Some(WriteResult::StorageFull));
    }
    let sender_bytes = non_negative(usage.sender_bytes(conn, sender)?, "sender byte count")?;
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
fn fan_out(
    conn: &Connection,
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
    conn.prepare_cached(
        "INSERT INTO group_blobs (sender, received_at_ms, refs, envelope) VALUES (?1, ?2, 0, ?3)",
    )?
    .execute(params![sender.as_slice(), at, envelope])?;
    let blob = conn.last_insert_rowid();
    let mut insert = conn.prepare_cached(
        "INSERT INTO messages (recipient, sender, received_at_ms, envelope, blob)
         VALUES (?1, ?2, ?3, x'', ?4)",
    )?;
    for recipient in recipients {
        let (messages, bytes) = usage.current(conn, recipient)?;
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
        insert.execute(params![recipient.as_slice(), sender.as_slice(), at, blob])?;
        let id = non_negative(conn.last_insert_rowid(), "message id")?;
        usage.add_mailbox(conn, recipient, 1, len)?;
        out.delivered.push((*recipient, id));
    }
    if out.delivered.is_empty() {
        conn.prepare_cached("DELETE FROM group_blobs WHERE id = ?1")?
            .execute(params![blob])?;
        return Ok((0, out));
    }
    let refs = i64::try_from(out.delivered.len()).map_err(|_| too_large())?;
    conn.prepare_cached("UPDATE group_blobs SET refs = ?2 WHERE id = ?1")?
        .execute(params![blob, refs])?;
    usage.add_stored_bytes(len);
    usage.add_sender(conn, sender, len)?;
    Ok((non_negative(blob, "group blob id")?, out))
}

/// Apply `commit` if the group is at its epoch (the first valid commit for an epoch wins), or
/// create the group if it is new and the commit is for epoch 0. Every refusal changes nothing.
#[allow(clippy::too_many_arguments)]
pub(super) fn group_commit(
    conn: &Connection,
    usage: &mut UsageDeltas,
    commit: &GroupCommit,
    sender: &IdentityBytes,
    received_at_ms: u64,
    quota: &GroupQuota,
    max_members: u32,
    max_log: u32,
) -> Result<WriteResult, StoreError> {
    let gid = commit.group_id.as_bytes();
    let (created, before): (bool, Vec<IdentityBytes>) = match group_epoch(conn, gid)? {
        None if commit.epoch != 0 => return Ok(WriteResult::UnknownGroup),
        None => (true, Vec::new()),
        Some(current) => {
            // Non-members learn nothing about the group, not even its epoch.
            if !is_member(conn, gid, sender)? {
                return Ok(WriteResult::NotGroupMember);
            }
            if current != commit.epoch {
                return Ok(WriteResult::StaleEpoch { current });
            }
            (false, members(conn, gid)?)
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
    let mut registered = conn.prepare_cached("SELECT 1 FROM users WHERE identity = ?1")?;
    for added in &joining {
        if !registered.exists(params![added.as_slice()])? {
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
    if let Some(refused) = check_storage(conn, usage, sender, bytes, &quota)? {
        return Ok(refused);
    }

    let epoch = i64::try_from(commit.epoch).map_err(|_| too_large())?;
    let new_epoch = commit.epoch.checked_add(1).ok_or_else(too_large)?;
    let at = saturating_i64(received_at_ms);
    if created {
        conn.prepare_cached(
            "INSERT INTO groups (group_id, epoch, created_at_ms) VALUES (?1, 1, ?2)",
        )?
        .execute(params![gid, at])?;
    } else {
        let updated = conn
            .prepare_cached(
                "UPDATE groups SET epoch = epoch + 1 WHERE group_id = ?1 AND epoch = ?2",
            )?
            .execute(params![gid, epoch])?;
        if updated != 1 {
            return Err(StoreError(
                "group epoch changed inside a transaction".to_owned(),
            ));
        }
    }
    conn.prepare_cached(
        "INSERT INTO group_commits (group_id, epoch, sender, envelope, received_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![gid, epoch, sender.as_slice(), commit.commit, at])?;
    // The log's copy counts toward the relay's total and the committer's share like any stored
    // byte: a stream of fresh groups with large commits would otherwise fill the disk unseen.
    let log_len = i64::try_from(commit.commit.len()).map_err(|_| too_large())?;
    usage.add_stored_bytes(log_len);
    usage.add_sender(conn, sender, log_len)?;
    // Epochs are consecutive, so the newest `max_log` commits are the epochs above this cut.
    if let Some(cut) = epoch.checked_sub(i64::from(max_log)) {
        delete_logged(
            conn,
            usage,
            "DELETE FROM group_commits WHERE group_id = ?1 AND epoch <= ?2
             RETURNING sender, length(envelope)",
            params![gid, cut],
        )?;
    }

    // Removed members get the commit too, so they learn they were removed.
    let old: Vec<IdentityBytes> = before.into_iter().filter(|m| m != sender).collect();
    let (_, commit_rows) = fan_out(
        conn,
        usage,
        &old,
        sender,
        &commit.commit,
        received_at_ms,
        &quota,
    )?;
    let welcome_rows = match &commit.welcome {
        Some(welcome) => {
            fan_out(
                conn,
                usage,
                &joining,
                sender,
                welcome,
                received_at_ms,
                &quota,
            )?
            .1
        }
        None => FanOut::default(),
    };

    let mut remove =
        conn.prepare_cached("DELETE FROM group_members WHERE group_id = ?1 AND identity = ?2")?;
    for member in before_set.difference(&after) {
        remove.execute(params![gid, member.as_slice()])?;
    }
    let mut add = conn.prepare_cached(
        "INSERT INTO group_members (group_id, identity) VALUES (?1, ?2)
         ON CONFLICT (group_id, identity) DO NOTHING",
    )?;
    for member in after.difference(&before_set) {
        add.execute(params![gid, member.as_slice()])?;
    }
    Ok(WriteResult::CommitAccepted {
        epoch: new_epoch,
        commit: commit_rows,
        welcome: welcome_rows,
    })
}

/// Store a group message once for every member but the sender, who must be a member.
pub(super) fn group_send(
    conn: &Connection,
    usage: &mut UsageDeltas,
    group_id: &GroupId,
    sender: &IdentityBytes,
    envelope: &[u8],
    received_at_ms: u64,
    quota: &GroupQuota,
) -> Result<WriteResult, StoreError> {
    let gid = group_id.as_bytes();
    if group_epoch(conn, gid)?.is_none() {
        return Ok(WriteResult::UnknownGroup);
    }
    if !is_member(conn, gid, sender)? {
        return Ok(WriteResult::NotGroupMember);
    }
    let recipients: Vec<IdentityBytes> = members(conn, gid)?
        .into_iter()
        .filter(|m| m != sender)
        .collect();
    let quota = Quota::from(quota);
    if !recipients.is_empty() {
        let len = u64::try_from(envelope.len()).map_err(|_| too_large())?;
        if let Some(refused) = check_storage(conn, usage, sender, len, &quota)? {
            return Ok(refused);
        }
    }
    let (id, fan_out) = fan_out(
        conn,
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
pub(super) fn group_leave(
    conn: &Connection,
    usage: &mut UsageDeltas,
    group_id: &GroupId,
    identity: &IdentityBytes,
) -> Result<WriteResult, StoreError> {
    let gid = group_id.as_bytes();
    if group_epoch(conn, gid)?.is_none() {
        return Ok(WriteResult::UnknownGroup);
    }
    conn.prepare_cached("DELETE FROM group_members WHERE group_id = ?1 AND identity = ?2")?
        .execute(params![gid, identity.as_slice()])?;
    // The log goes with the group (the cascade would drop it without its byte counts).
    delete_logged(
        conn,
        usage,
        "DELETE FROM group_commits WHERE group_id = ?1
         AND NOT EXISTS (SELECT 1 FROM group_members WHERE group_id = ?1)
         RETURNING sender, length(envelope)",
        params![gid],
    )?;
    conn.prepare_cached(
        "DELETE FROM groups WHERE group_id = ?1
         AND NOT EXISTS (SELECT 1 FROM group_members WHERE group_id = ?1)",
    )?
    .execute(params![gid])?;
    Ok(WriteResult::LeftGroup)
}

/// A mailbox row referencing `blob` was deleted (ack): drop one reference, and the blob with
/// its last one. Returns the blob's length (what the mailbox counted for the row).
pub(super) fn release_blob(
    conn: &Connection,
    usage: &mut UsageDeltas,
    blob: i64,
) -> Result<i64, StoreError> {
    let row: Option<(i64, i64, Vec<u8>)> = conn
        .prepare_cached(
            "UPDATE group_blobs SET refs = refs - 1 WHERE id = ?1
             RETURNING refs, length(envelope), sender",
        )?
        .query_row(params![blob], |row| {
            Ok((row.get(0)?, row.get(1)?, row.get(2)?))
        })
        .optional()?;
    let Some((refs, len, sender)) = row else {
        return Err(StoreError(
            "a mailbox row references a missing group blob".to_owned(),
        ));
    };
    if refs == 0 {
        conn.prepare_cached("DELETE FROM group_blobs WHERE id = ?1")?
            .execute(params![blob])?;
        usage.add_stored_bytes(-len);
        usage.add_sender(conn, &sender, -len)?;
    }
    Ok(len)
}

/// Delete logged commits with `sql` (which returns each one's sender and length) and take
/// their bytes off the totals and their committers' shares.
fn delete_logged(
    conn: &Connection,
    usage: &mut UsageDeltas,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params, |row| {
        Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, i64>(1)?))
    })?;
    let deleted: Vec<(Vec<u8>, i64)> = rows.collect::<Result<_, _>>()?;
    for (sender, len) in deleted {
        usage.add_stored_bytes(-len);
        usage.add_sender(conn, &sender, -len)?;
    }
    Ok(())
}

/// Expiry of group state before the mailbox rows go: commits logged before `before`, groups
/// nobody is a member of.
pub(super) fn expire_group_log(
    conn: &Connection,
    usage: &mut UsageDeltas,
    before: i64,
) -> Result<(), StoreError> {
    delete_logged(
        conn,
        usage,
        "DELETE FROM group_commits WHERE received_at_ms < ?1 RETURNING sender, length(envelope)",
        params![before],
    )?;
    delete_logged(
        conn,
        usage,
        "DELETE FROM group_commits
         WHERE NOT EXISTS (SELECT 1 FROM group_members AS m WHERE m.group_id = group_commits.group_id)
         RETURNING sender, length(envelope)",
        params![],
    )?;
    conn.prepare_cached(
        "DELETE FROM groups
         WHERE NOT EXISTS (SELECT 1 FROM group_members AS m WHERE m.group_id = groups.group_id)",
    )?
    .execute([])?;
    Ok(())
}

/// Expiry of group blobs after their mailbox rows (all received at the blob's time) went.
pub(super) fn expire_blobs(
    conn: &Connection,
    usage: &mut UsageDeltas,
    before: i64,
) -> Result<(), StoreError> {
    let mut stmt = conn.prepare_cached(
        "DELETE FROM group_blobs WHERE received_at_ms < ?1 RETURNING sender, length(envelope)",
    )?;
    let rows = stmt.query_map(params![before], |row| {
        Ok((row.get::<_, Vec<u8>>(0)?, row.get::<_, i64>(1)?))
    })?;
    let mut gone = Vec::new();
    for row in rows {
        gone.push(row?);
    }
    for (sender, len) in gone {
        usage.add_stored_bytes(-len);
        usage.add_sender(conn, &sender, -len)?;
    }
    Ok(())
}

/// Logged commits for a member, in one read transaction (a consistent snapshot).
pub(super) fn group_sync(
    conn: &mut Connection,
    group_id: &GroupId,
    member: &IdentityBytes,
    after_epoch: u64,
    max_commits: usize,
    max_bytes: usize,
) -> Result<SyncResult, StoreError> {
    let tx = conn.transaction()?;
    let gid = group_id.as_bytes();
    let Some(current_epoch) = group_epoch(&tx, gid)? else {
        return Ok(SyncResult::UnknownGroup);
    };
    if !is_member(&tx, gid, member)? {
        return Ok(SyncResult::NotGroupMember);
    }
    let mut commits = Vec::new();
    if let Ok(after) = i64::try_from(after_epoch) {
        let limit = i64::try_from(max_commits).unwrap_or(i64::MAX);
        let mut stmt = tx.prepare_cached(
            "SELECT epoch, sender, envelope FROM group_commits
             WHERE group_id = ?1 AND epoch >= ?2 ORDER BY epoch LIMIT ?3",
        )?;
        let rows = stmt.query_map(params![gid, after, limit], |row| {
            Ok((
                row.get::<_, i64>(0)?,
                row.get::<_, Vec<u8>>(1)?,
                row.get::<_, Vec<u8>>(2)?,
            ))
        })?;
        let mut bytes = 0usize;
        for row in rows {
            let (epoch, sender, commit) = row?;
            let size = commit.len().saturating_add(SYNC_COMMIT_OVERHEAD);
            if !commits.is_empty() && bytes.saturating_add(size) > max_bytes {
                break;
            }
            bytes = bytes.saturating_add(size);
            commits.push(LoggedCommit {
                epoch: non_negative(epoch, "logged commit epoch")?,
                sender: blob_array(&sender, "logged commit sender")?,
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
pub(super) fn group_stats(conn: &Connection) -> Result<GroupStats, StoreError> {
    let (groups, members): (i64, i64) = conn
        .prepare_cached("SELECT groups, members FROM group_totals WHERE singleton = 0")?
        .query_row([], |row| Ok((row.get(0)?, row.get(1)?)))?;
    Ok(GroupStats {
        groups: non_negative(groups, "group total")?,
        members: non_negative(members, "group member total")?,
    })
}
