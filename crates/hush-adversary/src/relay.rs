//! A malicious relay operator: direct SQL on the relay's SQLite database while it runs. Every
//! change to stored envelopes keeps `mailbox_usage`, `mailbox_totals` and `sender_usage` equal
//! to what the `messages` table holds, so the relay itself notices nothing.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hush_proto::{IdentityKeyPair, X25519Secret};
use rand_core::OsRng;
use rusqlite::{params, Connection, OptionalExtension};

mod pq;

/// (recipient, sender, envelope) of one stored row.
type RowParts = (Vec<u8>, Vec<u8>, Vec<u8>);

/// What went wrong while attacking the database.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdversaryError {
    /// SQLite failed.
    #[error("sqlite: {0}")]
    Sql(#[from] rusqlite::Error),
    /// No stored envelope with this id.
    #[error("no stored envelope {0}")]
    NoSuchEnvelope(i64),
    /// The operation needs something the database does not hold (or holds twice).
    #[error("{0}")]
    Invalid(String),
}

/// One envelope as the relay stores it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredEnvelope {
    /// Row id (the relay's message id).
    pub id: i64,
    /// Recipient identity key.
    pub recipient: Vec<u8>,
    /// Sender identity key.
    pub sender: Vec<u8>,
    /// When the relay stored it (ms since the Unix epoch).
    pub received_at_ms: i64,
    /// The end-to-end encrypted envelope.
    pub envelope: Vec<u8>,
}

/// Direct access to a relay's database, as its operator has it.
pub struct MaliciousRelay {
    path: PathBuf,
    observed: Vec<StoredEnvelope>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn len_i64(bytes: &[u8]) -> i64 {
    i64::try_from(bytes.len()).unwrap_or(i64::MAX)
}

/// Run `f` in an IMMEDIATE transaction (the relay's writer waits for us, or we for it).
fn in_tx<T>(
    db: &Connection,
    f: impl FnOnce(&Connection) -> Result<T, AdversaryError>,
) -> Result<T, AdversaryError> {
    db.execute_batch("BEGIN IMMEDIATE")?;
    // Senders change with rows (rewrite_sender, swap), so their counters are recomputed.
    match f(db).and_then(|v| resync_senders(db).map(|()| v)) {
        Ok(v) => {
            db.execute_batch("COMMIT")?;
            Ok(v)
        }
        Err(e) => {
            let _ = db.execute_batch("ROLLBACK");
            Err(e)
        }
    }
}

/// Recompute the relay's per-sender byte counters from the stored messages.
fn resync_senders(db: &Connection) -> Result<(), AdversaryError> {
    db.execute_batch(
        "DELETE FROM sender_usage;
         INSERT INTO sender_usage (sender, bytes)
             SELECT sender, sum(length(envelope)) FROM messages GROUP BY sender
             HAVING sum(length(envelope)) > 0;",
    )?;
    Ok(())
}

/// Add to one mailbox's counters and the totals (negative to remove).
fn adjust(
    db: &Connection,
    recipient: &[u8],
    messages: i64,
    bytes: i64,
) -> Result<(), AdversaryError> {
    db.execute(
        "INSERT INTO mailbox_usage (recipient, messages, bytes) VALUES (?1, 0, 0)
         ON CONFLICT (recipient) DO NOTHING",
        params![recipient],
    )?;
    db.execute(
        "UPDATE mailbox_usage SET messages = messages + ?2, bytes = bytes + ?3
         WHERE recipient = ?1",
        params![recipient, messages, bytes],
    )?;
    db.execute(
        "DELETE FROM mailbox_usage WHERE recipient = ?1 AND messages = 0 AND bytes = 0",
        params![recipient],
    )?;
    db.execute(
        "UPDATE mailbox_totals SET messages = messages + ?1, bytes = bytes + ?2
         WHERE singleton = 0",
        params![messages, bytes],
    )?;
    Ok(())
}

impl MaliciousRelay {
    /// Attack the relay whose data directory is `data_dir`.
    pub fn open(data_dir: &Path) -> Self {
        Self {
            path: data_dir.join(hush_relay::server::DATABASE_FILE),
            observed: Vec::new(),
        }
    }

    fn db(&self) -> Result<Connection, AdversaryError> {
        let db = Connection::open(&self.path)?;
        db.busy_timeout(Duration::from_secs(10))?;
        Ok(db)
    }

    /// The envelopes waiting for `recipient`, oldest first. A copy of each is kept (see
    /// [`observed`](Self::observed)) so it can be replayed after the relay deleted it.
    pub fn mailbox(&mut self, recipient: &[u8; 32]) -> Result<Vec<StoredEnvelope>, AdversaryError> {
        let db = self.db()?;
        let mut stmt = db.prepare(
            "SELECT id, recipient, sender, received_at_ms, envelope FROM messages
             WHERE recipient = ?1 ORDER BY id",
        )?;
        let rows = stmt
            .query_map(params![recipient.as_slice()], |r| {
                Ok(StoredEnvelope {
                    id: r.get(0)?,
                    recipient: r.get(1)?,
                    sender: r.get(2)?,
                    received_at_ms: r.get(3)?,
                    envelope: r.get(4)?,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        for row in &rows {
            if !self.observed.iter().any(|o| o.id == row.id) {
                self.observed.push(row.clone());
            }
        }
        Ok(rows)
    }

    /// Every envelope seen by [`mailbox`](Self::mailbox) so far, including deleted ones.
    pub fn observed(&self) -> &[StoredEnvelope] {
        &self.observed
    }

    /// Flip bit `bit` (modulo its bit length) of stored envelope `id`. The length does not
    /// change, so the counters stay right.
    pub fn tamper(&self, id: i64, bit: usize) -> Result<(), AdversaryError> {
        let db = self.db()?;
        in_tx(&db, |db| {
            let mut envelope: Vec<u8> = db
                .query_row(
                    "SELECT envelope FROM messages WHERE id = ?1",
                    params![id],
                    |r| r.get(0),
                )
                .optional()?
                .ok_or(AdversaryError::NoSuchEnvelope(id))?;
            let bits = envelope.len() * 8;
            if bits == 0 {
                return Err(AdversaryError::Invalid("empty envelope".into()));
            }
            let bit = bit % bits;
            if let Some(byte) = envelope.get_mut(bit / 8) {
                *byte ^= 1 << (bit % 8);
            }
            db.execute(
                "UPDATE messages SET envelope = ?1 WHERE id = ?2",
                params![envelope, id],
            )?;
            Ok(())
        })
    }

    /// Insert a copy of `envelope` (typically one already delivered and deleted) into its
    /// recipient's mailbox as a new row; returns the new id.
    pub fn replay(&self, envelope: &StoredEnvelope) -> Result<i64, AdversaryError> {
        let db = self.db()?;
        in_tx(&db, |db| {
            db.execute(
                "INSERT INTO messages (recipient, sender, received_at_ms, envelope)
                 VALUES (?1, ?2, ?3, ?4)",
                params![
                    envelope.recipient,
                    envelope.sender,
                    now_ms(),
                    envelope.envelope
                ],
            )?;
            let id = db.last_insert_rowid();
            adjust(db, &envelope.recipient, 1, len_i64(&envelope.envelope))?;
            Ok(id)
        })
    }

    /// Relabel stored envelope `id` as sent by `new_sender` (the relay's claim of who sent it,
    /// which the recipient's client gets alongside the envelope). Lengths do not change, so the
    /// counters stay right.
    pub fn rewrite_sender(&self, id: i64, new_sender: &[u8; 32]) -> Result<(), AdversaryError> {
        let db = self.db()?;
        in_tx(&db, |db| {
            let updated = db.execute(
                "UPDATE messages SET sender = ?1 WHERE id = ?2",
                params![new_sender.as_slice(), id],
            )?;
            if updated != 1 {
                return Err(AdversaryError::NoSuchEnvelope(id));
            }
            Ok(())
        })
    }

    /// Replace the bytes of stored envelope `id` (e.g. a re-encoded copy with an altered
    /// header), adjusting the mailbox counters by the change in length.
    pub fn replace_envelope(&self, id: i64, envelope: &[u8]) -> Result<(), AdversaryError> {
        let db = self.db()?;
        in_tx(&db, |db| {
            let (recipient, old): (Vec<u8>, Vec<u8>) = db
                .query_row(
                    "SELECT recipient, envelope FROM messages WHERE id = ?1",
                    params![id],
                    |r| Ok((r.get(0)?, r.get(1)?)),
                )
                .optional()?
                .ok_or(AdversaryError::NoSuchEnvelope(id))?;
            db.execute(
                "UPDATE messages SET envelope = ?1 WHERE id = ?2",
                params![envelope, id],
            )?;
            adjust(db, &recipient, 0, len_i64(envelope) - len_i64(&old))
        })
    }

    /// Delete every one-time prekey the relay holds for `identity`, so bundles are served
    /// with the signed prekey only (first messages can then be replayed for as long as that
    /// signed prekey lives). Returns how many were withheld.
    pub fn withhold_one_time_prekeys(&self, identity: &[u8; 32]) -> Result<usize, AdversaryError> {
        let db = self.db()?;
        Ok(db.execute(
            "DELETE FROM one_time_prekeys WHERE identity = ?1",
            params![identity.as_slice()],
        )?)
    }

    /// Delete stored envelope `id` (the recipient never sees it). Returns the deleted row.
    pub fn drop_envelope(&mut self, id: i64) -> Result<StoredEnvelope, AdversaryError> {
        let db = self.db()?;
        let row = in_tx(&db, |db| {
            let row = db
                .query_row(
                    "DELETE FROM messages WHERE id = ?1
                     RETURNING id, recipient, sender, received_at_ms, envelope",
                    params![id],
                    |r| {
                        Ok(StoredEnvelope {
                            id: r.get(0)?,
                            recipient: r.get(1)?,
                            sender: r.get(2)?,
                            received_at_ms: r.get(3)?,
                            envelope: r.get(4)?,
                        })
                    },
                )
                .optional()?
                .ok_or(AdversaryError::NoSuchEnvelope(id))?;
            adjust(db, &row.recipient, -1, -len_i64(&row.envelope))?;
            Ok(row)
        })?;
        if !self.observed.iter().any(|o| o.id == row.id) {
            self.observed.push(row.clone());
        }
        Ok(row)
    }

    /// Swap the contents (sender and envelope) of two stored rows of the same mailbox, so they
    /// are delivered in the other order.
    pub fn swap(&self, a: i64, b: i64) -> Result<(), AdversaryError> {
        let db = self.db()?;
        in_tx(&db, |db| {
            let get = |id: i64| -> Result<RowParts, AdversaryError> {
                db.query_row(
                    "SELECT recipient, sender, envelope FROM messages WHERE id = ?1",
                    params![id],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .optional()?
                .ok_or(AdversaryError::NoSuchEnvelope(id))
            };
            let (ra, sa, ea) = get(a)?;
            let (rb, sb, eb) = get(b)?;
            if ra != rb {
                return Err(AdversaryError::Invalid(
                    "can only swap rows of the same mailbox".into(),
                ));
            }
            db.execute(
                "UPDATE messages SET sender = ?1, envelope = ?2 WHERE id = ?3",
                params![sb, eb, a],
            )?;
            db.execute(
                "UPDATE messages SET sender = ?1, envelope = ?2 WHERE id = ?3",
                params![sa, ea, b],
            )?;
            Ok(())
        })
    }

    /// Free a registered name so another identity can register it: the relay's way of
    /// substituting a user's bundle. The same operation as the operator's
    /// `hush-relay free-name` (clients cannot tell the two apart). Returns the freed identity
    /// key, if the name was registered.
    pub fn free_name(&self, name: &str) -> Result<Option<Vec<u8>>, AdversaryError> {
        let store = hush_relay::store::sqlite::SqliteStore::open(&self.path)
            .map_err(|e| AdversaryError::Invalid(e.to_string()))?;
        let freed = store
            .free_name(name)
            .map_err(|e| AdversaryError::Invalid(e.to_string()))?;
        Ok(freed.map(|identity| identity.to_vec()))
    }

    /// Change the name registered for `name`'s identity to `new_name`, bypassing every check
    /// the relay makes at registration (so `new_name` may hold escape sequences or newlines):
    /// what `WhoIs` then answers for that identity.
    pub fn rename(&self, name: &str, new_name: &str) -> Result<bool, AdversaryError> {
        let changed = self.db()?.execute(
            "UPDATE users SET name = ?2 WHERE name = ?1",
            params![name, new_name],
        )?;
        Ok(changed == 1)
    }

    /// The identity key registered under `name`.
    pub fn identity_of(&self, name: &str) -> Result<Option<[u8; 32]>, AdversaryError> {
        let db = self.db()?;
        let bytes: Option<Vec<u8>> = db
            .query_row(
                "SELECT identity FROM users WHERE name = ?1",
                params![name],
                |r| r.get(0),
            )
            .optional()?;
        bytes
            .map(|b| {
                <[u8; 32]>::try_from(b.as_slice())
                    .map_err(|_| AdversaryError::Invalid("malformed identity".into()))
            })
            .transpose()
    }

    /// Overwrite `identity`'s signed prekey with a fresh one signed by `forger` (not by the
    /// owner). Returns the substituted public key.
    pub fn forge_signed_prekey(
        &self,
        identity: &[u8; 32],
        forger: &IdentityKeyPair,
    ) -> Result<[u8; 32], AdversaryError> {
        let public = *X25519Secret::generate(&mut OsRng).public_key().as_bytes();
        let signature = forger.sign(&public);
        let db = self.db()?;
        let updated = db.execute(
            "UPDATE signed_prekeys SET public = ?1, signature = ?2 WHERE identity = ?3",
            params![public.as_slice(), signature.as_slice(), identity.as_slice()],
        )?;
        if updated != 1 {
            return Err(AdversaryError::Invalid(
                "no signed prekey for that identity".into(),
            ));
        }
        Ok(public)
    }

    /// Check that the mailbox and sender counters agree with the stored envelopes (what every
    /// change here must preserve).
    pub fn counters_consistent(&self) -> Result<bool, AdversaryError> {
        let db = self.db()?;
        let collect = |sql: &str| -> Result<Vec<(Vec<u8>, i64, i64)>, AdversaryError> {
            let mut stmt = db.prepare(sql)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        };
        let usage =
            collect("SELECT recipient, messages, bytes FROM mailbox_usage ORDER BY recipient")?;
        let actual = collect(
            "SELECT recipient, count(*), sum(length(envelope)) FROM messages
             GROUP BY recipient ORDER BY recipient",
        )?;
        let totals: (i64, i64) = db.query_row(
            "SELECT messages, bytes FROM mailbox_totals WHERE singleton = 0",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let sums = actual
            .iter()
            .fold((0, 0), |(m, b), (_, dm, db)| (m + dm, b + db));
        let senders = |sql: &str| -> Result<Vec<(Vec<u8>, i64)>, AdversaryError> {
            let mut stmt = db.prepare(sql)?;
            let rows = stmt
                .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        };
        let sender_usage = senders("SELECT sender, bytes FROM sender_usage ORDER BY sender")?;
        let sender_actual = senders(
            "SELECT sender, sum(length(envelope)) FROM messages GROUP BY sender
             HAVING sum(length(envelope)) > 0 ORDER BY sender",
        )?;
        Ok(usage == actual && totals == sums && sender_usage == sender_actual)
    }
}
