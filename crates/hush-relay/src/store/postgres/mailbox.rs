//! Mailboxes in the batch transaction: enqueue, ack and TTL expiry. A run of consecutive
//! `Enqueue` and `Ack` ops (the bulk of a busy relay's writes) costs a fixed number of round
//! trips: the counters of every mailbox and sender in the run are read with one query, quotas
//! are decided in memory in op order (exactly as applying the ops one by one would), acked rows
//! go out with one `unnest` delete and new rows in with one `unnest` insert drawing their ids.

use std::collections::{BTreeMap, HashSet};

use postgres::GenericClient;

use super::groups::{self, Released};
use super::prekeys::delete_nameless_prekeys;
use super::{non_negative, saturating_i64, too_large, Db, Quota, UsageDeltas};
use crate::store::{IdentityBytes, StoreError, WriteOp, WriteResult};

/// One mailbox row to insert.
pub(super) struct NewMessage<'a> {
    pub(super) recipient: &'a [u8],
    pub(super) sender: &'a [u8],
    pub(super) received_at_ms: i64,
    /// The envelope, or empty for a row referencing a group blob.
    pub(super) envelope: &'a [u8],
    pub(super) blob: Option<i64>,
}

/// Insert mailbox rows in one statement; their ids (drawn from `messages_id_seq` in the order
/// given, so increasing in that order) are returned. The batch holds the write lock, so these
/// ids are above every id committed before and below every id committed after.
pub(super) fn insert_messages<C: GenericClient>(
    db: &mut Db<'_, C>,
    rows: &[NewMessage<'_>],
) -> Result<Vec<u64>, StoreError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let recipients: Vec<&[u8]> = rows.iter().map(|row| row.recipient).collect();
    let senders: Vec<&[u8]> = rows.iter().map(|row| row.sender).collect();
    let times: Vec<i64> = rows.iter().map(|row| row.received_at_ms).collect();
    let envelopes: Vec<&[u8]> = rows.iter().map(|row| row.envelope).collect();
    let blobs: Vec<Option<i64>> = rows.iter().map(|row| row.blob).collect();
    // `new` is materialised once (it calls a volatile function), so each row draws one id;
    // the sorted subquery makes the draws follow the given order (checked below).
    let returned = db.query(
        "WITH new AS (
             SELECT nextval('messages_id_seq') AS id, n, recipient, sender, received_at_ms,
                    envelope, blob
             FROM (SELECT * FROM unnest($1::bytea[], $2::bytea[], $3::bigint[], $4::bytea[],
                                        $5::bigint[])
                       WITH ORDINALITY AS u(recipient, sender, received_at_ms, envelope, blob, n)
                   ORDER BY n) AS ordered
         ), inserted AS (
             INSERT INTO messages (id, recipient, sender, received_at_ms, envelope, blob)
             SELECT id, recipient, sender, received_at_ms, envelope, blob FROM new
         )
         SELECT n, id FROM new ORDER BY n",
        &[&recipients, &senders, &times, &envelopes, &blobs],
    )?;
    let mut ids = Vec::with_capacity(rows.len());
    let mut previous = 0u64;
    for (expected, row) in (1i64..).zip(&returned) {
        let n: i64 = row.try_get(0)?;
        let id = non_negative(row.try_get(1)?, "message id")?;
        if n != expected || id <= previous {
            return Err(StoreError(
                "message ids were not drawn in insertion order".to_owned(),
            ));
        }
        previous = id;
        ids.push(id);
    }
    if ids.len() != rows.len() {
        return Err(StoreError(format!(
            "inserted {} messages, got {} ids",
            rows.len(),
            ids.len()
        )));
    }
    Ok(ids)
}

/// Apply a run of consecutive `Enqueue` and `Ack` ops exactly as applying them one by one
/// would, in a fixed number of round trips, pushing one result per op:
///
/// - an `Enqueue` stores its envelope if the mailbox has room for one more message and its
///   bytes, all mailboxes together have room for its bytes, and the sender is within its
///   share; else it is refused and changes nothing;
/// - an `Ack` deletes the listed messages from its recipient's own mailbox only (ids elsewhere
///   are ignored) and counts them; an id listed twice counts for the first op listing it.
///
/// The acks' rows are deleted first, with one statement (they all existed before the run, see
/// below), each op's effect on the counters kept aside; then the ops are walked in order, the
/// counters updated as each one would, so every enqueue sees exactly the room the ops before it
/// left; then the accepted envelopes are inserted with one statement. If an ack after an
/// enqueue names an id not allocated yet (it could only guess one of this run's new ids), the
/// run is split into runs of one kind, applied one after the other.
pub(super) fn mailbox_run<C: GenericClient>(
    db: &mut Db<'_, C>,
    usage: &mut UsageDeltas,
    ops: &[WriteOp],
    results: &mut Vec<WriteResult>,
) -> Result<(), StoreError> {
    let is_enqueue = |op: &WriteOp| matches!(op, WriteOp::Enqueue { .. });
    if let Some(first) = ops.iter().position(is_enqueue) {
        let after = ops.get(first..).unwrap_or_default();
        if after.iter().any(|op| matches!(op, WriteOp::Ack { .. })) && may_ack_new_ids(db, after)? {
            let mut rest = ops;
            while let Some(op) = rest.first() {
                let kind = is_enqueue(op);
                let count = rest.iter().take_while(|op| is_enqueue(op) == kind).count();
                let (run, tail) = rest.split_at_checked(count).unwrap_or((rest, &[]));
                mailbox_run(db, usage, run, results)?;
                rest = tail;
            }
            return Ok(());
        }
    }

    let mut recipients = Vec::with_capacity(ops.len());
    let mut senders = Vec::with_capacity(ops.len());
    for op in ops {
        match op {
            WriteOp::Enqueue {
                recipient, sender, ..
            } => {
                recipients.push(recipient.as_slice());
                senders.push(sender.as_slice());
            }
            WriteOp::Ack { recipient, .. } => recipients.push(recipient.as_slice()),
            _ => return Err(StoreError("a mailbox run holds another op".to_owned())),
        }
    }
    usage.prefetch(db, &recipients, &senders)?;
    let effects = delete_acked(db, usage, ops)?;

    let mut rows = Vec::with_capacity(ops.len());
    let mut slots = Vec::with_capacity(ops.len());
    for (op, effects) in ops.iter().zip(effects) {
        match op {
            WriteOp::Enqueue {
                recipient,
                sender,
                envelope,
                received_at_ms,
                max_messages,
                max_bytes,
                max_total_bytes,
                max_sender_bytes,
            } => {
                let quota = Quota {
                    max_messages: *max_messages,
                    max_bytes: *max_bytes,
                    max_total_bytes: *max_total_bytes,
                    max_sender_bytes: *max_sender_bytes,
                };
                if let Some(refused) = admit(db, usage, recipient, sender, envelope.len(), &quota)?
                {
                    results.push(refused);
                    continue;
                }
                slots.push(results.len());
                // Replaced by the id below.
                results.push(WriteResult::Stored(0));
                rows.push(NewMessage {
                    recipient,
                    sender,
                    received_at_ms: saturating_i64(*received_at_ms),
                    envelope,
                    blob: None,
                });
            }
            WriteOp::Ack { recipient, .. } => {
                let acked = apply_ack_effects(db, usage, recipient, effects)?;
                results.push(WriteResult::Acked(acked));
            }
            _ => return Err(StoreError("a mailbox run holds another op".to_owned())),
        }
    }
    let ids = insert_messages(db, &rows)?;
    for (slot, id) in slots.into_iter().zip(ids) {
        let result = results
            .get_mut(slot)
            .ok_or_else(|| StoreError("enqueue result slot".to_owned()))?;
        *result = WriteResult::Stored(id);
    }
    Ok(())
}

/// Whether an ack among `ops` names an id the sequence has not handed out yet.
fn may_ack_new_ids<C: GenericClient>(
    db: &mut Db<'_, C>,
    ops: &[WriteOp],
) -> Result<bool, StoreError> {
    let next: i64 = db
        .query_one(
            "SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END
             FROM messages_id_seq",
            &[],
        )?
        .try_get(0)?;
    let next = u64::try_from(next).unwrap_or(0);
    Ok(ops.iter().any(|op| match op {
        WriteOp::Ack { ids, .. } => ids.iter().any(|&id| id >= next),
        _ => false,
    }))
}

/// What deleting one acked row does to the counters (applied when its op's turn comes).
enum AckEffect {
    /// A row with its own envelope of `len` bytes from `sender`.
    Own { sender: Vec<u8>, len: i64 },
    /// A row referencing a group blob of `len` bytes (the mailbox counted them in full).
    Shared { len: i64 },
    /// The last reference to a group blob went: its `len` bytes leave the totals and the
    /// share of `sender`.
    BlobGone { sender: Vec<u8>, len: i64 },
}

/// Delete the rows every `Ack` of `ops` names (in its recipient's mailbox only), with one
/// statement, and release the group blobs they referenced. Returns each op's effects on the
/// counters, not applied yet.
fn delete_acked<C: GenericClient>(
    db: &mut Db<'_, C>,
    usage: &mut UsageDeltas,
    ops: &[WriteOp],
) -> Result<Vec<Vec<AckEffect>>, StoreError> {
    let mut effects: Vec<Vec<AckEffect>> = ops.iter().map(|_| Vec::new()).collect();
    let mut seen: HashSet<(&[u8], i64)> = HashSet::new();
    let (mut recipients, mut ids, mut slots): (Vec<&[u8]>, Vec<i64>, Vec<i64>) =
        (Vec::new(), Vec::new(), Vec::new());
    for (slot, op) in ops.iter().enumerate() {
        let WriteOp::Ack {
            recipient,
            ids: acked,
        } = op
        else {
            continue;
        };
        let slot = i64::try_from(slot).map_err(|_| too_large())?;
        for &id in acked {
            // No stored id exceeds i64::MAX, so such an id is simply not in this mailbox.
            let Ok(id) = i64::try_from(id) else {
                continue;
            };
            if seen.insert((recipient.as_slice(), id)) {
                recipients.push(recipient.as_slice());
                ids.push(id);
                slots.push(slot);
            }
        }
    }
    if ids.is_empty() {
        return Ok(effects);
    }
    let rows = db.query(
        "DELETE FROM messages AS m
         USING unnest($1::bytea[], $2::bigint[], $3::bigint[]) AS a(recipient, id, slot)
         WHERE m.recipient = a.recipient AND m.id = a.id
         RETURNING a.slot, octet_length(m.envelope)::bigint, m.sender, m.blob",
        &[&recipients, &ids, &slots],
    )?;
    // (slot, own length, sender, blob)
    let mut deleted: Vec<(usize, i64, Vec<u8>, Option<i64>)> = Vec::with_capacity(rows.len());
    // blob -> (references dropped, last slot dropping one)
    let mut blobs: BTreeMap<i64, (i64, usize)> = BTreeMap::new();
    for row in rows {
        let slot = usize::try_from(row.try_get::<_, i64>(0)?)
            .map_err(|_| StoreError("ack slot out of range".to_owned()))?;
        let blob: Option<i64> = row.try_get(3)?;
        if let Some(blob) = blob {
            let entry = blobs.entry(blob).or_insert((0, slot));
            entry.0 = entry.0.saturating_add(1);
            entry.1 = entry.1.max(slot);
        }
        deleted.push((slot, row.try_get(1)?, row.try_get(2)?, blob));
    }
    // A group message: the mailbox counted the shared bytes; the blob goes with its last
    // reference, which in op order is dropped by the last op naming one.
    let refs: BTreeMap<i64, i64> = blobs.iter().map(|(id, (n, _))| (*id, *n)).collect();
    let released = groups::release_blobs(db, &refs)?;
    for (slot, len, sender, blob) in deleted {
        let effect = match blob {
            None => AckEffect::Own { sender, len },
            Some(blob) => {
                let len = released.get(&blob).map(|r| r.len).ok_or_else(|| {
                    StoreError("a mailbox row references a missing group blob".to_owned())
                })?;
                AckEffect::Shared { len }
            }
        };
        effects
            .get_mut(slot)
            .ok_or_else(|| StoreError("ack slot out of range".to_owned()))?
            .push(effect);
    }
    for (blob, (_, last_slot)) in blobs {
        if let Some(Released {
            len,
            gone_from: Some(sender),
        }) = released.get(&blob)
        {
            effects
                .get_mut(last_slot)
                .ok_or_else(|| StoreError("ack slot out of range".to_owned()))?
                .push(AckEffect::BlobGone {
                    sender: sender.clone(),
                    len: *len,
                });
        }
    }
    // Read the counters of every sender concerned in one query before the walk.
    let senders: Vec<&[u8]> = effects
        .iter()
        .flatten()
        .filter_map(|effect| match effect {
            AckEffect::Own { sender, .. } | AckEffect::BlobGone { sender, .. } => {
                Some(sender.as_slice())
            }
            AckEffect::Shared { .. } => None,
        })
        .collect();
    usage.prefetch(db, &[], &senders)?;
    Ok(effects)
}

/// Count one `Ack` op's deleted rows in the counters; returns how many rows it deleted.
fn apply_ack_effects<C: GenericClient>(
    db: &mut Db<'_, C>,
    usage: &mut UsageDeltas,
    recipient: &IdentityBytes,
    effects: Vec<AckEffect>,
) -> Result<u32, StoreError> {
    let (mut own, mut own_bytes, mut shared): (i64, i64, u32) = (0, 0, 0);
    for effect in effects {
        match effect {
            AckEffect::Own { sender, len } => {
                own = own.saturating_add(1);
                own_bytes = own_bytes.saturating_add(len);
                usage.add_sender(db, &sender, -len)?;
            }
            AckEffect::Shared { len } => {
                usage.add_mailbox(db, recipient, -1, -len)?;
                shared = shared.saturating_add(1);
            }
            AckEffect::BlobGone { sender, len } => {
                usage.add_stored_bytes(-len);
                usage.add_sender(db, &sender, -len)?;
            }
        }
    }
    if own > 0 {
        usage.add(db, recipient, -own, -own_bytes)?;
    }
    Ok(u32::try_from(own)
        .unwrap_or(u32::MAX)
        .saturating_add(shared))
}

/// The quota checks of one enqueue (in the SQLite store's order), counting it in `usage` if it
/// passes; the refusal if not.
fn admit<C: GenericClient>(
    db: &mut Db<'_, C>,
    usage: &mut UsageDeltas,
    recipient: &IdentityBytes,
    sender: &IdentityBytes,
    len: usize,
    quota: &Quota,
) -> Result<Option<WriteResult>, StoreError> {
    let (messages, bytes) = usage.current(db, recipient.as_slice())?;
    let messages = non_negative(messages, "mailbox message count")?;
    let bytes = non_negative(bytes, "mailbox byte count")?;
    let len_u64 = u64::try_from(len).map_err(|_| too_large())?;
    let len_i64 = i64::try_from(len).map_err(|_| too_large())?;
    if messages >= u64::from(quota.max_messages)
        || bytes
            .checked_add(len_u64)
            .is_none_or(|total| total > quota.max_bytes)
    {
        return Ok(Some(WriteResult::MailboxFull));
    }
    let all_bytes = non_negative(usage.total_bytes(db)?, "total byte count")?;
    if all_bytes
        .checked_add(len_u64)
        .is_none_or(|total| total > quota.max_total_bytes)
    {
        return Ok(Some(WriteResult::StorageFull));
    }
    let sender_bytes = non_negative(usage.sender_bytes(db, sender)?, "sender byte count")?;
    let limit = quota.sender_limit(all_bytes.saturating_add(len_u64));
    if sender_bytes
        .checked_add(len_u64)
        .is_none_or(|total| total > limit)
    {
        return Ok(Some(WriteResult::SenderQuota));
    }
    usage.add(db, recipient.as_slice(), 1, len_i64)?;
    usage.add_sender(db, sender, len_i64)?;
    Ok(None)
}

/// Delete every message received before `before_ms`, keeping the counters in step; and the
/// prekeys of identities that hold no name, and expired group state.
pub(super) fn expire<C: GenericClient>(
    db: &mut Db<'_, C>,
    usage: &mut UsageDeltas,
    before_ms: u64,
) -> Result<WriteResult, StoreError> {
    delete_nameless_prekeys(db)?;
    let before = saturating_i64(before_ms);
    groups::expire_group_log(db, usage, before)?;
    // (recipient, rows, own bytes, shared group-message bytes)
    let mut per_mailbox: Vec<(Vec<u8>, i64, i64, i64)> = Vec::new();
    for row in db.query(
        "SELECT m.recipient, count(*), sum(octet_length(m.envelope))::bigint,
                sum(coalesce(octet_length(b.envelope), 0))::bigint
         FROM messages AS m LEFT JOIN group_blobs AS b ON b.id = m.blob
         WHERE m.received_at_ms < $1 GROUP BY m.recipient",
        &[&before],
    )? {
        per_mailbox.push((
            row.try_get(0)?,
            row.try_get(1)?,
            row.try_get(2)?,
            row.try_get(3)?,
        ));
    }
    if per_mailbox.is_empty() {
        groups::expire_blobs(db, usage, before)?;
        return Ok(WriteResult::Expired(0));
    }
    let mut per_sender: Vec<(Vec<u8>, i64)> = Vec::new();
    for row in db.query(
        "SELECT sender, sum(octet_length(envelope))::bigint FROM messages
         WHERE received_at_ms < $1 AND blob IS NULL GROUP BY sender",
        &[&before],
    )? {
        per_sender.push((row.try_get(0)?, row.try_get(1)?));
    }
    let deleted = db.execute("DELETE FROM messages WHERE received_at_ms < $1", &[&before])?;
    let recipients: Vec<&[u8]> = per_mailbox.iter().map(|(r, ..)| r.as_slice()).collect();
    let senders: Vec<&[u8]> = per_sender.iter().map(|(s, _)| s.as_slice()).collect();
    usage.prefetch(db, &recipients, &senders)?;
    let mut counted: i64 = 0;
    for (recipient, messages, bytes, shared) in &per_mailbox {
        counted = counted.saturating_add(*messages);
        usage.add(db, recipient, -*messages, -*bytes)?;
        usage.add_mailbox(db, recipient, 0, -*shared)?;
    }
    for (sender, bytes) in &per_sender {
        usage.add_sender(db, sender, -*bytes)?;
    }
    groups::expire_blobs(db, usage, before)?;
    if u64::try_from(counted).ok() != Some(deleted) {
        return Err(StoreError(format!(
            "expiry deleted {deleted} messages but counted {counted}"
        )));
    }
    Ok(WriteResult::Expired(deleted))
}
