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
    /// recipient -> counters as stored before the batch (`None`: no row), and the change so far.
    mailboxes: HashMap<Vec<u8>, (Option<Counters>, Counters)>,
    /// Total bytes in all mailboxes before the batch (read on first use).
    stored_total_bytes: Option<i64>,
    /// Change of the total bytes so far in this batch.
    total_bytes_delta: i64,
    /// Change of the total message (mailbox row) count so far in this batch.
    total_messages_delta: i64,
    /// sender -> envelope bytes stored before the batch (`None`: no row), and the change so far.
    senders: HashMap<Vec<u8>, (Option<i64>, i64)>,
}

/// (messages, bytes).
type Counters = (i64, i64);

impl UsageDeltas {
    /// Read the stored counters of every mailbox and sender given that is not read yet, and the
    /// totals if not read yet, in one query (none if everything is read already).
    pub(super) fn prefetch<C: GenericClient>(
        &mut self,
        db: &mut Db<'_, C>,
        recipients: &[&[u8]],
        senders: &[&[u8]],
    ) -> Result<(), StoreError> {
        let mut mailboxes: Vec<&[u8]> = recipients
            .iter()
            .copied()
            .filter(|r| !self.mailboxes.contains_key(*r))
            .collect();
        mailboxes.sort_unstable();
        mailboxes.dedup();
        let mut missing_senders: Vec<&[u8]> = senders
            .iter()
            .copied()
            .filter(|s| !self.senders.contains_key(*s))
            .collect();
        missing_senders.sort_unstable();
        missing_senders.dedup();
        let want_totals = self.stored_total_bytes.is_none();
        if mailboxes.is_empty() && missing_senders.is_empty() && !want_totals {
            return Ok(());
        }
        for row in db.query(
            "SELECT 0, recipient, messages, bytes FROM mailbox_usage WHERE recipient = ANY($1)
             UNION ALL
             SELECT 1, sender, 0, bytes FROM sender_usage WHERE sender = ANY($2)
             UNION ALL
             SELECT 2, NULL, messages, bytes FROM mailbox_totals WHERE singleton = 0 AND $3",
            &[&mailboxes, &missing_senders, &want_totals],
        )? {
            let kind: i32 = row.try_get(0)?;
            let key: Option<Vec<u8>> = row.try_get(1)?;
            let (messages, bytes): (i64, i64) = (row.try_get(2)?, row.try_get(3)?);
            match (kind, key) {
                (0, Some(recipient)) => {
                    self.mailboxes
                        .insert(recipient, (Some((messages, bytes)), (0, 0)));
                }
                (1, Some(sender)) => {
                    self.senders.insert(sender, (Some(bytes), 0));
                }
                (2, None) => self.stored_total_bytes = Some(bytes),
                _ => return Err(StoreError("unexpected usage row".to_owned())),
            }
        }
        for recipient in mailboxes {
            self.mailboxes
                .entry(recipient.to_vec())
                .or_insert((None, (0, 0)));
        }
        for sender in missing_senders {
            self.senders.entry(sender.to_vec()).or_insert((None, 0));
        }
        if self.stored_total_bytes.is_none() {
            return Err(StoreError("mailbox_totals row is missing".to_owned()));
        }
        Ok(())
    }

    fn entry<C: GenericClient>(
        &mut self,
        db: &mut Db<'_, C>,
        recipient: &[u8],
    ) -> Result<&mut (Option<Counters>, Counters), StoreError> {
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
        let (stored, (dm, db_)) = *self.entry(db, recipient)?;
        let (m, b) = stored.unwrap_or((0, 0));
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
    ) -> Result<&mut (Option<i64>, i64), StoreError> {
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
        Ok(stored.unwrap_or(0).saturating_add(delta))
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
        if self.stored_total_bytes.is_none() {
            self.prefetch(db, &[], &[])?;
        }
        let stored = self
            .stored_total_bytes
            .ok_or_else(|| StoreError("mailbox_totals row is missing".to_owned()))?;
        Ok(stored.saturating_add(self.total_bytes_delta))
    }

    /// Write every changed mailbox's and sender's counters and the totals, in one statement
    /// (updates of existing rows, inserts of new ones, deletes of rows back to zero: empty
    /// mailboxes and senders with nothing stored need no row). A counter driven below zero
    /// violates a CHECK constraint, failing the batch instead of hiding the inconsistency.
    pub(super) fn flush<C: GenericClient>(self, db: &mut Db<'_, C>) -> Result<(), StoreError> {
        let mut senders = Changes::default();
        let mut sender_rows: Vec<_> = self.senders.into_iter().collect();
        sender_rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (sender, (stored, delta)) in sender_rows {
            if delta != 0 {
                let bytes = stored.unwrap_or(0).saturating_add(delta);
                senders.push(sender, stored.is_some(), (0, bytes));
            }
        }
        let mut mailboxes = Changes::default();
        let mut mailbox_rows: Vec<_> = self.mailboxes.into_iter().collect();
        mailbox_rows.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        for (recipient, (stored, (dm, db_))) in mailbox_rows {
            if dm != 0 || db_ != 0 {
                let (m, b) = stored.unwrap_or((0, 0));
                let counters = (m.saturating_add(dm), b.saturating_add(db_));
                mailboxes.push(recipient, stored.is_some(), counters);
            }
        }
        let (total_messages, total_bytes) = (self.total_messages_delta, self.total_bytes_delta);
        if senders.is_empty() && mailboxes.is_empty() && total_messages == 0 && total_bytes == 0 {
            return Ok(());
        }
        let updated = db.execute(
            "WITH sender_updated AS (
                 UPDATE sender_usage AS u SET bytes = d.bytes
                 FROM unnest($1::bytea[], $2::bigint[]) AS d(sender, bytes)
                 WHERE u.sender = d.sender
             ), sender_inserted AS (
                 INSERT INTO sender_usage (sender, bytes)
                 SELECT * FROM unnest($3::bytea[], $4::bigint[])
             ), sender_deleted AS (
                 DELETE FROM sender_usage WHERE sender = ANY($5::bytea[])
             ), mailbox_updated AS (
                 UPDATE mailbox_usage AS u SET messages = d.messages, bytes = d.bytes
                 FROM unnest($6::bytea[], $7::bigint[], $8::bigint[]) AS d(recipient, messages, bytes)
                 WHERE u.recipient = d.recipient
             ), mailbox_inserted AS (
                 INSERT INTO mailbox_usage (recipient, messages, bytes)
                 SELECT * FROM unnest($9::bytea[], $10::bigint[], $11::bigint[])
             ), mailbox_deleted AS (
                 DELETE FROM mailbox_usage WHERE recipient = ANY($12::bytea[])
             )
             UPDATE mailbox_totals SET messages = messages + $13, bytes = bytes + $14
             WHERE singleton = 0",
            &[
                &senders.update_keys,
                &senders.update_bytes,
                &senders.insert_keys,
                &senders.insert_bytes,
                &senders.delete_keys,
                &mailboxes.update_keys,
                &mailboxes.update_messages,
                &mailboxes.update_bytes,
                &mailboxes.insert_keys,
                &mailboxes.insert_messages,
                &mailboxes.insert_bytes,
                &mailboxes.delete_keys,
                &total_messages,
                &total_bytes,
            ],
        )?;
        if updated != 1 {
            return Err(StoreError("mailbox_totals row is missing".to_owned()));
        }
        Ok(())
    }
}

/// Counter rows to write, split by what the table needs: an update of an existing row, an
/// insert of a new one, or a delete of a row whose counters are back to zero.
#[derive(Default)]
struct Changes {
    update_keys: Vec<Vec<u8>>,
    update_messages: Vec<i64>,
    update_bytes: Vec<i64>,
    insert_keys: Vec<Vec<u8>>,
    insert_messages: Vec<i64>,
    insert_bytes: Vec<i64>,
    delete_keys: Vec<Vec<u8>>,
}

impl Changes {
    fn push(&mut self, key: Vec<u8>, exists: bool, (messages, bytes): Counters) {
        match (exists, messages == 0 && bytes == 0) {
            (true, true) => self.delete_keys.push(key),
            (false, true) => {}
            (true, false) => {
                self.update_keys.push(key);
                self.update_messages.push(messages);
                self.update_bytes.push(bytes);
            }
            (false, false) => {
                self.insert_keys.push(key);
                self.insert_messages.push(messages);
                self.insert_bytes.push(bytes);
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.update_keys.is_empty() && self.insert_keys.is_empty() && self.delete_keys.is_empty()
    }
}
