//! Quota counters of one batch: per mailbox, per sender and in total, read once and written
//! once per batch.

use rusqlite::{params, Connection, OptionalExtension};

use crate::store::StoreError;

/// Mailbox counters as changed by the ops of one batch: read once per mailbox, kept in memory,
/// written once by [`UsageDeltas::flush`] before the batch commits.
///
/// Mailbox counters (`mailbox_usage`) count every row in full, a group message's shared bytes
/// included (what the recipient must download); the totals (`mailbox_totals.bytes`) and the
/// per-sender counters count bytes as stored, so a group message once.
#[derive(Default)]
pub(super) struct UsageDeltas {
    /// recipient -> counters as stored before the batch, and the change so far.
    mailboxes: std::collections::HashMap<Vec<u8>, (Counters, Counters)>,
    /// Total bytes in all mailboxes before the batch (read on first use).
    stored_total_bytes: Option<i64>,
    /// Change of the total bytes so far in this batch.
    total_bytes_delta: i64,
    /// Change of the total message (mailbox row) count so far in this batch.
    total_messages_delta: i64,
    /// sender -> envelope bytes stored before the batch, and the change so far.
    senders: std::collections::HashMap<Vec<u8>, (i64, i64)>,
}

/// (messages, bytes).
type Counters = (i64, i64);

impl UsageDeltas {
    fn entry(
        &mut self,
        conn: &Connection,
        recipient: &[u8],
    ) -> Result<&mut (Counters, Counters), StoreError> {
        if !self.mailboxes.contains_key(recipient) {
            let stored: Option<(i64, i64)> = conn
                .prepare_cached("SELECT messages, bytes FROM mailbox_usage WHERE recipient = ?1")?
                .query_row(params![recipient], |row| Ok((row.get(0)?, row.get(1)?)))
                .optional()?;
            self.mailboxes
                .insert(recipient.to_vec(), (stored.unwrap_or((0, 0)), (0, 0)));
        }
        self.mailboxes
            .get_mut(recipient)
            .ok_or_else(|| StoreError("mailbox usage cache".to_owned()))
    }

    /// The mailbox's counters including this batch's changes so far.
    pub(super) fn current(
        &mut self,
        conn: &Connection,
        recipient: &[u8],
    ) -> Result<(i64, i64), StoreError> {
        let ((m, b), (dm, db)) = *self.entry(conn, recipient)?;
        Ok((m.saturating_add(dm), b.saturating_add(db)))
    }

    /// Messages stored in (or deleted from) `recipient`'s mailbox with their own bytes.
    pub(super) fn add(
        &mut self,
        conn: &Connection,
        recipient: &[u8],
        messages: i64,
        bytes: i64,
    ) -> Result<(), StoreError> {
        self.add_mailbox(conn, recipient, messages, bytes)?;
        self.add_stored_bytes(bytes);
        Ok(())
    }

    /// Mailbox rows referencing a shared group blob: the mailbox counts `bytes`, the totals
    /// only the row (the blob's bytes are counted once by [`Self::add_stored_bytes`]).
    pub(super) fn add_mailbox(
        &mut self,
        conn: &Connection,
        recipient: &[u8],
        messages: i64,
        bytes: i64,
    ) -> Result<(), StoreError> {
        let (_, delta) = self.entry(conn, recipient)?;
        delta.0 = delta.0.saturating_add(messages);
        delta.1 = delta.1.saturating_add(bytes);
        self.total_messages_delta = self.total_messages_delta.saturating_add(messages);
        Ok(())
    }

    /// Bytes stored (or deleted) on disk, counted toward the global total.
    pub(super) fn add_stored_bytes(&mut self, bytes: i64) {
        self.total_bytes_delta = self.total_bytes_delta.saturating_add(bytes);
    }

    fn sender_entry(
        &mut self,
        conn: &Connection,
        sender: &[u8],
    ) -> Result<&mut (i64, i64), StoreError> {
        if !self.senders.contains_key(sender) {
            let stored: Option<i64> = conn
                .prepare_cached("SELECT bytes FROM sender_usage WHERE sender = ?1")?
                .query_row(params![sender], |row| row.get(0))
                .optional()?;
            self.senders
                .insert(sender.to_vec(), (stored.unwrap_or(0), 0));
        }
        self.senders
            .get_mut(sender)
            .ok_or_else(|| StoreError("sender usage cache".to_owned()))
    }

    /// Envelope bytes `sender` has stored, including this batch's changes so far.
    pub(super) fn sender_bytes(
        &mut self,
        conn: &Connection,
        sender: &[u8],
    ) -> Result<i64, StoreError> {
        let (stored, delta) = *self.sender_entry(conn, sender)?;
        Ok(stored.saturating_add(delta))
    }

    pub(super) fn add_sender(
        &mut self,
        conn: &Connection,
        sender: &[u8],
        bytes: i64,
    ) -> Result<(), StoreError> {
        let (_, delta) = self.sender_entry(conn, sender)?;
        *delta = delta.saturating_add(bytes);
        Ok(())
    }

    /// Bytes in all mailboxes including this batch's changes so far.
    pub(super) fn total_bytes(&mut self, conn: &Connection) -> Result<i64, StoreError> {
        let stored = match self.stored_total_bytes {
            Some(bytes) => bytes,
            None => {
                let bytes: i64 = conn
                    .prepare_cached("SELECT bytes FROM mailbox_totals WHERE singleton = 0")?
                    .query_row([], |row| row.get(0))?;
                self.stored_total_bytes = Some(bytes);
                bytes
            }
        };
        Ok(stored.saturating_add(self.total_bytes_delta))
    }

    /// Write every changed mailbox's counters and the totals. A counter driven below zero
    /// violates a CHECK constraint, failing the batch instead of hiding the inconsistency.
    pub(super) fn flush(self, conn: &Connection) -> Result<(), StoreError> {
        for (sender, (stored, delta)) in self.senders {
            if delta == 0 {
                continue;
            }
            let bytes = stored.saturating_add(delta);
            if bytes == 0 {
                conn.prepare_cached("DELETE FROM sender_usage WHERE sender = ?1")?
                    .execute(params![sender])?;
            } else {
                conn.prepare_cached(
                    "INSERT INTO sender_usage (sender, bytes) VALUES (?1, ?2)
                     ON CONFLICT (sender) DO UPDATE SET bytes = excluded.bytes",
                )?
                .execute(params![sender, bytes])?;
            }
        }
        let (total_messages, total_bytes) = (self.total_messages_delta, self.total_bytes_delta);
        for (recipient, ((m, b), (dm, db))) in self.mailboxes {
            if dm == 0 && db == 0 {
                continue;
            }
            let (messages, bytes) = (m.saturating_add(dm), b.saturating_add(db));
            if messages == 0 && bytes == 0 {
                // Empty mailboxes need no row.
                conn.prepare_cached("DELETE FROM mailbox_usage WHERE recipient = ?1")?
                    .execute(params![recipient])?;
            } else {
                conn.prepare_cached(
                    "INSERT INTO mailbox_usage (recipient, messages, bytes) VALUES (?1, ?2, ?3)
                     ON CONFLICT (recipient) DO UPDATE SET
                         messages = excluded.messages, bytes = excluded.bytes",
                )?
                .execute(params![recipient, messages, bytes])?;
            }
        }
        if total_messages == 0 && total_bytes == 0 {
            return Ok(());
        }
        let updated = conn
            .prepare_cached(
                "UPDATE mailbox_totals SET messages = messages + ?1, bytes = bytes + ?2
                 WHERE singleton = 0",
            )?
            .execute(params![total_messages, total_bytes])?;
        if updated != 1 {
            return Err(StoreError("mailbox_totals row is missing".to_owned()));
        }
        Ok(())
    }
}
