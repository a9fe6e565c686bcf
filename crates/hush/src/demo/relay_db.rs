//! The malicious relay operator's access: the relay's SQLite database, read and edited
//! directly (mailbox contents, re-inserted envelopes).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rusqlite::{params, Connection};

use super::Demo;

/// A message row as the relay stores it.
pub(super) struct StoredRow {
    pub(super) id: i64,
    pub(super) sender: Vec<u8>,
    pub(super) envelope: Vec<u8>,
}

impl Demo {
    pub(super) fn relay_db(&self) -> Result<Connection, String> {
        let conn = Connection::open(self.relay_dir.join(hush_relay::server::DATABASE_FILE))
            .map_err(|e| format!("relay database: {e}"))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(|e| format!("relay database: {e}"))?;
        Ok(conn)
    }

    /// The envelopes waiting in a mailbox, oldest first.
    pub(super) fn mailbox(&self, recipient: &[u8; 32]) -> Result<Vec<StoredRow>, String> {
        let db = self.relay_db()?;
        let mut stmt = db
            .prepare("SELECT id, sender, envelope FROM messages WHERE recipient = ?1 ORDER BY id")
            .map_err(|e| e.to_string())?;
        let rows = stmt
            .query_map(params![recipient.as_slice()], |r| {
                Ok(StoredRow {
                    id: r.get(0)?,
                    sender: r.get(1)?,
                    envelope: r.get(2)?,
                })
            })
            .map_err(|e| e.to_string())?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())
    }
}

/// A group message, commit or Welcome waiting in a mailbox: the mailbox row references one
/// shared `group_blobs` row.
pub(super) struct GroupRow {
    pub(super) blob: i64,
    /// How many mailbox rows reference the blob.
    pub(super) refs: i64,
    pub(super) envelope: Vec<u8>,
}

impl Demo {
    /// The group items waiting in a mailbox, oldest first.
    pub(super) fn group_mailbox(&self, recipient: &[u8; 32]) -> Result<Vec<GroupRow>, String> {
        let db = self.relay_db()?;
        let mut stmt = db
            .prepare(
                "SELECT b.id, b.refs, b.envelope FROM messages AS m
                 JOIN group_blobs AS b ON b.id = m.blob
                 WHERE m.recipient = ?1 ORDER BY m.id",
            )
            .map_err(|e| e.to_string())?;
        let rows = stmt
            .query_map(params![recipient.as_slice()], |r| {
                Ok(GroupRow {
                    blob: r.get(0)?,
                    refs: r.get(1)?,
                    envelope: r.get(2)?,
                })
            })
            .map_err(|e| e.to_string())?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())
    }

    /// How many commits the relay holds for a group.
    pub(super) fn commit_count(&self, group_id: &[u8]) -> Result<i64, String> {
        self.relay_db()?
            .query_row(
                "SELECT count(*) FROM group_commits WHERE group_id = ?1",
                params![group_id],
                |r| r.get(0),
            )
            .map_err(|e| format!("group_commits: {e}"))
    }
}

/// Put a copy of an envelope back into a mailbox, keeping the relay's counters in step (as the
/// relay itself would when storing).
pub(super) fn reinsert(
    db: &Connection,
    recipient: &[u8; 32],
    sender: &[u8],
    envelope: &[u8],
) -> Result<i64, String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let len = i64::try_from(envelope.len()).unwrap_or(i64::MAX);
    let run = || -> rusqlite::Result<i64> {
        db.execute_batch("BEGIN IMMEDIATE")?;
        db.execute(
            "INSERT INTO messages (recipient, sender, received_at_ms, envelope)
             VALUES (?1, ?2, ?3, ?4)",
            params![recipient.as_slice(), sender, now, envelope],
        )?;
        let id = db.last_insert_rowid();
        db.execute(
            "INSERT INTO mailbox_usage (recipient, messages, bytes) VALUES (?1, 1, ?2)
             ON CONFLICT (recipient) DO UPDATE SET
                 messages = messages + 1, bytes = bytes + excluded.bytes",
            params![recipient.as_slice(), len],
        )?;
        db.execute(
            "UPDATE mailbox_totals SET messages = messages + 1, bytes = bytes + ?1
             WHERE singleton = 0",
            params![len],
        )?;
        db.execute(
            "INSERT INTO sender_usage (sender, bytes) VALUES (?1, ?2)
             ON CONFLICT (sender) DO UPDATE SET bytes = bytes + excluded.bytes",
            params![sender, len],
        )?;
        db.execute_batch("COMMIT")?;
        Ok(id)
    };
    run().map_err(|e| {
        let _ = db.execute_batch("ROLLBACK");
        format!("re-inserting: {e}")
    })
}
