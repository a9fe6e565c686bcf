//! Mailboxes in the batch transaction: enqueue, ack and TTL expiry. A run of consecutive
//! `Enqueue` ops (or of `Ack` ops) costs a fixed number of round trips: the counters of every
//! mailbox and sender in the run are read with one query each, quotas are decided in memory in
//! op order (exactly as applying the ops one by one would), ids come from one `nextval` query
//! and the rows go in with one `unnest` insert (or out with one `unnest` delete).

use std::collections::{BTreeMap, HashSet};

use postgres::GenericClient;

use super::prekeys::delete_nameless_prekeys;
use super::{groups, non_negative, saturating_i64, too_large, Db, Quota, UsageDeltas};
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

/// Insert mailbox rows with two queries; their ids increase in the order given. Returns them.
/// (The batch holds the write lock, so these ids are above every id committed before and below
/// every id committed after.)
pub(super) fn insert_messages<C: GenericClient>(
    db: &mut Db<'_, C>,
    rows: &[NewMessage<'_>],
) -> Result<Vec<u64>, StoreError> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let count = i64::try_from(rows.len()).map_err(|_| too_large())?;
    let mut ids = db
        .query(
            "SELECT nextval('messages_id_seq') FROM generate_series(1, $1::bigint)",
            &[&count],
        )?
        .iter()
        .map(|row| row.try_get::<_, i64>(0))
        .collect::<Result<Vec<i64>, _>>()?;
    ids.sort_unstable();
    if ids.len() != rows.len() {
        return Err(StoreError(format!(
            "asked for {} message ids, got {}",
            rows.len(),
            ids.len()
        )));
    }
    let recipients: Vec<&[u8]> = rows.iter().map(|row| row.recipient).collect();
    let senders: Vec<&[u8]> = rows.iter().map(|row| row.sender).collect();
    let times: Vec<i64> = rows.iter().map(|row| row.received_at_ms).collect();
    let envelopes: Vec<&[u8]> = rows.iter().map(|row| row.envelope).collect();
    let blobs: Vec<Option<i64>> = rows.iter().map(|row| row.blob).collect();
    db.execute(
        "INSERT INTO messages (id, recipient, sender, received_at_ms, envelope, blob)
         SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::bytea[], $4::bigint[],
                              $5::bytea[], $6::bigint[])",
        &[&ids, &recipients, &senders, &times, &envelopes, &blobs],
    )?;
    ids.into_iter()
        .map(|id| non_negative(id, "message id"))
        .collect()
}

/// Apply a run of `Enqueue` ops: each stores its envelope if the mailbox has room for one more
/// message and its bytes, all mailboxes together have room for its bytes, and the sender is
/// within its share; else it is refused and changes nothing. Pushes one result per op.
pub(super) fn enqueue_run<C: GenericClient>(
    db: &mut Db<'_, C>,
    usage: &mut UsageDeltas,
    ops: &[WriteOp],
    results: &mut Vec<WriteResult>,
) -> Result<(), StoreError> {
    let mut recipients = Vec::with_capacity(ops.len());
    let mut senders = Vec::with_capacity(ops.len());
    for op in ops {
        if let WriteOp::Enqueue {
            recipient, sender, ..
        } = op
        {
            recipients.push(recipient.as_slice());
            senders.push(sender.as_slice());
        }
    }
    usage.prefetch(db, &recipients, &senders)?;
    usage.total_bytes(db)?;

    let mut rows = Vec::with_capacity(ops.len());
    let mut slots = Vec::with_capacity(ops.len());
    for op in ops {
        let WriteOp::Enqueue {
            recipient,
            sender,
            envelope,
            received_at_ms,
            max_messages,
            max_bytes,
            max_total_bytes,
            max_sender_bytes,
        } = op
        else {
            return Err(StoreError("an enqueue run holds another op".to_owned()));
        };
        let quota = Quota {
            max_messages: *max_messages,
            max_bytes: *max_bytes,
            max_total_bytes: *max_total_bytes,
            max_sender_bytes: *max_sender_bytes,
        };
        if let Some(refused) = admit(db, usage, recipient, sender, envelope.len(), &quota)? {
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
    let ids = insert_messages(db, &rows)?;
    for (slot, id) in slots.into_iter().zip(ids) {
        let result = results
            .get_mut(slot)
            .ok_or_else(|| StoreError("enqueue result slot".to_owned()))?;
        *result = WriteResult::Stored(id);
    }
    Ok(())
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

/// Apply a run of `Ack` ops: each deletes the listed messages from its recipient's own mailbox
/// only (ids elsewhere are ignored), and counts them. An id listed twice in the run counts for
/// the first op that lists it, as if the ops ran one by one. Pushes one result per op.
pub(super) fn ack_run<C: GenericClient>(
    db: &mut Db<'_, C>,
    usage: &mut UsageDeltas,
    ops: &[WriteOp],
    results: &mut Vec<WriteResult>,
) -> Result<(), StoreError> {
    let mut owners: Vec<&[u8]> = Vec::with_capacity(ops.len());
    let mut seen: HashSet<(&[u8], i64)> = HashSet::new();
    let (mut recipients, mut ids, mut slots): (Vec<&[u8]>, Vec<i64>, Vec<i64>) =
        (Vec::new(), Vec::new(), Vec::new());
    for (slot, op) in ops.iter().enumerate() {
        let WriteOp::Ack {
            recipient,
            ids: acked,
        } = op
        else {
            return Err(StoreError("an ack run holds another op".to_owned()));
        };
        owners.push(recipient.as_slice());
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
    // Per op: (own rows deleted, their bytes, group rows deleted).
    let mut counts: Vec<(i64, i64, u32)> = vec![(0, 0, 0); ops.len()];
    if !ids.is_empty() {
        let rows = db.query(
            "DELETE FROM messages AS m
             USING unnest($1::bytea[], $2::bigint[], $3::bigint[]) AS a(recipient, id, slot)
             WHERE m.id = a.id AND m.recipient = a.recipient
             RETURNING a.slot, octet_length(m.envelope)::bigint, m.sender, m.blob",
            &[&recipients, &ids, &slots],
        )?;
        let mut deleted = Vec::with_capacity(rows.len());
        let mut blob_refs: BTreeMap<i64, i64> = BTreeMap::new();
        for row in rows {
            let slot = usize::try_from(row.try_get::<_, i64>(0)?)
                .map_err(|_| StoreError("ack slot out of range".to_owned()))?;
            let len: i64 = row.try_get(1)?;
            let sender: Vec<u8> = row.try_get(2)?;
            let blob: Option<i64> = row.try_get(3)?;
            if let Some(blob) = blob {
                let refs = blob_refs.entry(blob).or_insert(0);
                *refs = refs.saturating_add(1);
            }
            deleted.push((slot, len, sender, blob));
        }
        let own_senders: Vec<&[u8]> = deleted
            .iter()
            .filter(|(_, _, _, blob)| blob.is_none())
            .map(|(_, _, sender, _)| sender.as_slice())
            .collect();
        usage.prefetch(db, &owners, &own_senders)?;
        // A group message: this mailbox counted the shared bytes; the blob goes with its last
        // reference.
        let blob_lens = groups::release_blobs(db, usage, &blob_refs)?;
        for (slot, len, sender, blob) in &deleted {
            let (recipient, count) = owners
                .get(*slot)
                .zip(counts.get_mut(*slot))
                .ok_or_else(|| StoreError("ack slot out of range".to_owned()))?;
            match blob {
                Some(blob) => {
                    let len = blob_lens.get(blob).copied().ok_or_else(|| {
                        StoreError("a mailbox row references a missing group blob".to_owned())
                    })?;
                    usage.add_mailbox(db, recipient, -1, -len)?;
                    count.2 = count.2.saturating_add(1);
                }
                None => {
                    count.0 = count.0.saturating_add(1);
                    count.1 = count.1.saturating_add(*len);
                    usage.add_sender(db, sender, -*len)?;
                }
            }
        }
        for (recipient, (own, bytes, _)) in owners.iter().zip(&counts) {
            if *own > 0 {
                usage.add(db, recipient, -*own, -*bytes)?;
            }
        }
    }
    for (own, _, shared) in counts {
        results.push(WriteResult::Acked(
            u32::try_from(own)
                .unwrap_or(u32::MAX)
                .saturating_add(shared),
        ));
    }
    Ok(())
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
