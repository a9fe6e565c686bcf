//! Quota counters of one batch: per mailbox, per sender and in total, read once and written
//! once per batch (as in the SQLite store), with bulk reads (`= ANY`) and bulk writes
//! (`unnest`) so a batch costs a fixed number of round trips however many mailboxes it touches.

use std::collections::HashMap;

use postgres::GenericClient;

use super::Db;
use crate::store::StoreError;

/// Mailbox counters as changed by the ops of one batch: read once per mailbox, kept in memory,
/// written once by [`UsageDeltas::flush`] before the batch commits. The batch holds the write
/// lock, so nothing else changes them meanwhile.
///
/// Mailbox counters (`mailbox_usage`) count every row in full, a group message's shared bytes
/// included (what the recipient must download); the totals (`mailbox_totals.bytes`) and the
/// per-sender counters count bytes as stored, so a group message once.
#[derive(Default)]
pub(super) struct UsageDeltas {
    /// recipient -> counters as stored before the batch, and the change so far.
    mailboxes: HashMap<Vec<u8>, (Counters, Counters)>,
    /// Total bytes in all mailboxes before the batch (read on first use).
    stored_total_bytes: Option<i64>,
    /// Change of the total bytes so far in this batch.
    total_bytes_delta: i64,
    /// Change of the total message (mailbox row) count so far in this batch.
    total_messages_delta: i64,
    /// sender -> envelope bytes stored before the batch, and the change so far.
    senders: HashMap<Vec<u8>, (i64, i64)>,
}

/// (messages, bytes).
type Counters = (i64, i64);

impl UsageDeltas {
    /// Read the stored counters of every mailbox and sender given that is not read yet, in
    /// (at most) two queries.
    pub(super) fn prefetch<C: GenericClient>(
        &mut self,
        db: &mut Db<'_, C>,
        recipients: &[&[u8]],
        senders: &[&[u8]],
    ) -> Result<(), StoreError> {
        let mut missing: Vec<&[u8]> = recipients
            .iter()
            .copied()
            .filter(|r| !self.mailboxes.contains_key(*r))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if !missing.is_empty() {
            for row in db.query(
                "SELECT recipient, messages, bytes FROM mailbox_usage WHERE recipient = ANY($1)",
                &[&missing],
            )? {
                let recipient: Vec<u8> = row.try_get(0)?;
                let counters = (row.try_get(1)?, row.try_get(2)?);
                self.mailboxes.insert(recipient, (counters, (0, 0)));
            }
            for recipient in missing {
                self.mailboxes
                    .entry(recipient.to_vec())
                    .or_insert(((0, 0), (0, 0)));
            }
        }
        let mut missing: Vec<&[u8]> = senders
            .iter()
            .copied()
            .filter(|s| !self.senders.contains_key(*s))
            .collect();
        missing.sort_unstable();
        missing.dedup();
        if !missing.is_empty() {
            for row in db.query(
                "SELECT sender, bytes FROM sender_usage WHERE sender = ANY($1)",
                &[&missing],
            )? {
                let sender: Vec<u8> = row.try_get(0)?;
                self.senders.insert(sender, (row.try_get(1)?, 0));
            }
            for sender in missing {
                self.senders.entry(sender.to_vec()).or_insert((0, 0));
            }
        }
        Ok(())
    }

    fn entry<C: GenericClient>(
        &mut self,
        db: &mut Db<'_, C>,
        recipient: &[u8],
    ) -> Result<&mut (Counters, Counters), StoreError> {
        if !self.mailboxes.contains_key(recipient) {
            self.prefetch(db, &[recipient], &[])?;
        }
        self.mailboxes
            .get_mut(recipient)
            .ok_or_else(|| StoreError("mailbox usage cache".to_owned()))
    }

    /// The mailbox's counters including this batch's changes so far.
    pub(super) fn current<C: GenericClient>(
        &mut self,
        db: &mut Db<'_, C>,
        recipient: &[u8],
    ) -> Result<(i64, i64), StoreError> {
        let ((m, b), (dm, db_)) = *self.entry(db, recipient)?;
        Ok((m.saturating_add(dm), b.saturating_add(db_)))
    }

    /// Messages stored in (or deleted from) `recipient`'s mailbox with their own bytes.
    pub(super) fn add<C: GenericClient>(
        &mut self,
        db: &mut Db<'_, C>,
        recipient: &[u8],
        messages: i64,
        bytes: i64,
    ) -> Result<(), StoreError> {
        self.add_mailbox(db, recipient, messages, bytes)?;
        self.add_stored_bytes(bytes);
        Ok(())
    }

    /// Mailbox rows referencing a shared group blob: the mailbox counts `bytes`, the totals
    /// only the row (the blob's bytes are counted once by [`Self::add_stored_bytes`]).
    pub(super) fn add_mailbox<C: GenericClient>(
        &mut self,
        db: &mut Db<'_, C>,
        recipient: &[u8],
        messages: i64,
        bytes: i64,
    ) -> Result<(), StoreError> {
        let (_, delta) = self.entry(db, recipient)?;
        delta.0 = delta.0.saturating_add(messages);
        delta.1 = delta.1.saturating_add(bytes);
        self.total_messages_delta = self.total_messages_delta.saturating_add(messages);
        Ok(())
    }

    /// Bytes stored (or deleted) on disk, counted toward the global total.
    pub(super) fn add_stored_bytes(&mut self, bytes: i64) {
        self.total_bytes_delta = self.total_bytes_delta.saturating_add(bytes);
    }

    fn sender_entry<C: GenericClient>(
        &mut self,
        db: &mut Db<'_, C>,
        sender: &[u8],
    ) -> Result<&mut (i64, i64), StoreError> {
        if !self.senders.contains_key(sender) {
            self.prefetch(db, &[], &[sender])?;
        }
        self.senders
            .get_mut(sender)
            .ok_or_else(|| StoreError("sender usage cache".to_owned()))
    }

    /// Envelope bytes `sender` has stored, including this batch's changes so far.
    pub(super) fn sender_bytes<C: GenericClient>(
        &mut self,
        db: &mut Db<'_, C>,
        sender: &[u8],
    ) -> Result<i64, StoreError> {
        let (stored, delta) = *self.sender_entry(db, sender)?;
        Ok(stored.saturating_add(delta))
    }

    pub(super) fn add_sender<C: GenericClient>(
        &mut self,
        db: &mut Db<'_, C>,
        sender: &[u8],
        bytes: i64,
    ) -> Result<(), StoreError> {
        let (_, delta) = self.sender_entry(db, sender)?;
        *delta = delta.saturating_add(bytes);
        Ok(())
    }

    /// Bytes in all mailboxes including this batch's changes so far.
    pub(super) fn total_bytes<C: GenericClient>(
        &mut self,
        db: &mut Db<'_, C>,
    ) -> Result<i64, StoreError> {
        let stored = match self.stored_total_bytes {
            Some(bytes) => bytes,
            None => {
                let bytes: i64 = db
                    .query_one("SELECT bytes FROM mailbox_totals WHERE singleton = 0", &[])?
                    .try_get(0)?;
                self.stored_total_bytes = Some(bytes);
                bytes
            }
        };
        Ok(stored.saturating_add(self.total_bytes_delta))
    }

    /// Write every changed mailbox's and sender's counters (one statement per kind of change)
    /// and the totals. A counter driven below zero violates a CHECK constraint, failing the
    /// batch instead of hiding the inconsistency.
    pub(super) fn flush<C: GenericClient>(self, db: &mut Db<'_, C>) -> Result<(), StoreError> {
        let mut gone: Vec<Vec<u8>> = Vec::new();
        let (mut keys, mut values): (Vec<Vec<u8>>, Vec<i64>) = (Vec::new(), Vec::new());
        for (sender, (stored, delta)) in self.senders {
            if delta == 0 {
                continue;
            }
            let bytes = stored.saturating_add(delta);
            if bytes == 0 {
                gone.push(sender);
            } else {
                keys.push(sender);
                values.push(bytes);
            }
        }
        if !gone.is_empty() {
            db.execute("DELETE FROM sender_usage WHERE sender = ANY($1)", &[&gone])?;
        }
        if !keys.is_empty() {
            db.execute(
                "INSERT INTO sender_usage (sender, bytes)
                 SELECT * FROM unnest($1::bytea[], $2::bigint[])
                 ON CONFLICT (sender) DO UPDATE SET bytes = excluded.bytes",
                &[&keys, &values],
            )?;
        }

        let mut gone: Vec<Vec<u8>> = Vec::new();
        let mut keys: Vec<Vec<u8>> = Vec::new();
        let (mut message_counts, mut byte_counts): (Vec<i64>, Vec<i64>) = (Vec::new(), Vec::new());
        for (recipient, ((m, b), (dm, db_))) in self.mailboxes {
            if dm == 0 && db_ == 0 {
                continue;
            }
            let (messages, bytes) = (m.saturating_add(dm), b.saturating_add(db_));
            if messages == 0 && bytes == 0 {
                // Empty mailboxes need no row.
                gone.push(recipient);
            } else {
                keys.push(recipient);
                message_counts.push(messages);
                byte_counts.push(bytes);
            }
        }
        if !gone.is_empty() {
            db.execute(
                "DELETE FROM mailbox_usage WHERE recipient = ANY($1)",
                &[&gone],
            )?;
        }
        if !keys.is_empty() {
            db.execute(
                "INSERT INTO mailbox_usage (recipient, messages, bytes)
                 SELECT * FROM unnest($1::bytea[], $2::bigint[], $3::bigint[])
                 ON CONFLICT (recipient) DO UPDATE SET
                     messages = excluded.messages, bytes = excluded.bytes",
                &[&keys, &message_counts, &byte_counts],
            )?;
        }

        let (total_messages, total_bytes) = (self.total_messages_delta, self.total_bytes_delta);
        if total_messages == 0 && total_bytes == 0 {
            return Ok(());
        }
        let updated = db.execute(
            "UPDATE mailbox_totals SET messages = messages + $1, bytes = bytes + $2
             WHERE singleton = 0",
            &[&total_messages, &total_bytes],
        )?;
        if updated != 1 {
            return Err(StoreError("mailbox_totals row is missing".to_owned()));
        }
        Ok(())
    }
}
