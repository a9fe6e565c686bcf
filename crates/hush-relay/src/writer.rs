//! Group commit: one thread owns all writes. It takes every write queued while the previous
//! transaction was committing, applies them in one transaction, and only then answers each
//! writer and wakes recipients, so an ack always means "durable" and a whole batch costs one
//! fsync.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};

use crate::doorbell::Ringer;
use crate::metrics::Metrics;
use crate::presence::Presence;
use crate::store::{
    ApplyError, FanOut, IdentityBytes, Store, StoreError, StoredMessage, WriteOp, WriteResult,
};

/// Capacity of the write queue; handlers wait (backpressure) when it is full.
pub const WRITE_QUEUE: usize = 65_536;

struct Pending {
    op: WriteOp,
    reply: oneshot::Sender<Result<WriteResult, String>>,
}

/// A handle for queueing writes; cheap to clone.
#[derive(Clone)]
pub struct Writer {
    tx: mpsc::Sender<Pending>,
}

impl Writer {
    /// Start the writer thread. It exits after the last handle is dropped and the queue is
    /// drained, so in-flight commits finish on shutdown.
    pub fn start(
        store: Arc<dyn Store>,
        presence: Arc<Presence>,
        metrics: Arc<Metrics>,
        max_batch: usize,
        doorbell: Option<Ringer>,
    ) -> std::io::Result<(Self, std::thread::JoinHandle<()>)> {
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let handle = std::thread::Builder::new()
            .name("hush-group-commit".into())
            .spawn(move || {
                let woken = Woken {
                    presence: &presence,
                    metrics: &metrics,
                    doorbell: doorbell.as_ref(),
                    recipients: Vec::new(),
                };
                run(rx, store.as_ref(), woken, max_batch.max(1));
            })?;
        Ok((Self { tx }, handle))
    }

    /// Queue a write and wait until it is committed.
    pub async fn write(&self, op: WriteOp) -> Result<WriteResult, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Pending { op, reply })
            .await
            .map_err(|_| StoreError("writer stopped".into()))?;
        rx.await
            .map_err(|_| StoreError("writer stopped".into()))?
            .map_err(StoreError)
    }
}

/// Where the writer announces committed mail: local subscribers, and other nodes through the
/// doorbell (the recipients of one batch are collected and rung once, after the batch).
struct Woken<'a> {
    presence: &'a Presence,
    metrics: &'a Metrics,
    doorbell: Option<&'a Ringer>,
    recipients: Vec<IdentityBytes>,
}

impl Woken<'_> {
    /// `recipient` got mail: wake it here, and remember it for the doorbell.
    fn notify_with(&mut self, recipient: &IdentityBytes, make: impl FnOnce() -> StoredMessage) {
        self.presence.notify_with(recipient, make);
        if self.doorbell.is_some() {
            self.recipients.push(*recipient);
        }
    }

    /// A batch whose outcome is unknown may have stored mail: make its direct recipients
    /// re-read their mailboxes (here and, through the doorbell, on other nodes). Harmless if
    /// it did not commit. (Group fan-out recipients are not known without the results; the
    /// periodic mailbox re-check of a shared store covers them.)
    fn maybe_stored(&mut self, ops: &[WriteOp]) {
        for op in ops {
            if let WriteOp::Enqueue { recipient, .. } = op {
                self.presence.wake(recipient);
                if self.doorbell.is_some() {
                    self.recipients.push(*recipient);
                }
            }
        }
        self.ring();
    }

    /// Ring the doorbell once for everything collected since the last ring.
    fn ring(&mut self) {
        if let Some(doorbell) = self.doorbell {
            if !self.recipients.is_empty() {
                let mut recipients = std::mem::take(&mut self.recipients);
                recipients.sort_unstable();
                recipients.dedup();
                doorbell.ring(recipients);
            }
        }
    }
}

fn run(mut rx: mpsc::Receiver<Pending>, store: &dyn Store, mut woken: Woken<'_>, max_batch: usize) {
    let metrics = woken.metrics;
    while let Some(first) = rx.blocking_recv() {
        let mut batch = vec![first];
        while batch.len() < max_batch {
            match rx.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (ops, replies): (Vec<WriteOp>, Vec<_>) =
            batch.into_iter().map(|p| (p.op, p.reply)).unzip();
        match store.apply(&ops) {
            Ok(results) => {
                metrics.commit_batches.fetch_add(1, Ordering::Relaxed);
                metrics
                    .commit_ops
                    .fetch_add(ops.len() as u64, Ordering::Relaxed);
                for ((op, reply), result) in ops.into_iter().zip(replies).zip(results) {
                    after_commit(op, &result, &mut woken);
                    let _ = reply.send(Ok(result));
                }
                woken.ring();
            }
            Err(ApplyError::NotApplied(e)) if ops.len() > 1 => {
                // One bad op rolls back the whole batch; retry each alone so that only it
                // fails and every other writer still gets its commit. Safe: nothing of the
                // batch was applied.
                metrics.store_errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(error = %e, ops = ops.len(), "batch failed; retrying ops one by one");
                // After two failures in a row, ask the store whether it answers at all: if it
                // does not (PostgreSQL down), the rest fail at once instead of each waiting out
                // a connection attempt (their clients get `Internal` and retry). If it does,
                // the failures were the ops' own, and the others still get their commit: two
                // bad ops side by side must not fail everyone else's.
                let mut failed_in_a_row = 0u32;
                let mut store_down = false;
                for (op, reply) in ops.into_iter().zip(replies) {
                    if failed_in_a_row >= 2 && !store_down {
                        store_down = store.totals().is_err();
                        failed_in_a_row = 0;
                    }
                    if store_down {
                        let _ = reply.send(Err("store unavailable".into()));
                        continue;
                    }
                    let single = std::slice::from_ref(&op);
                    match store.apply(single).map(|mut r| r.pop()) {
                        Ok(Some(result)) => {
                            failed_in_a_row = 0;
                            metrics.commit_batches.fetch_add(1, Ordering::Relaxed);
                            metrics.commit_ops.fetch_add(1, Ordering::Relaxed);
                            after_commit(op, &result, &mut woken);
                            let _ = reply.send(Ok(result));
                        }
                        Ok(None) => {
                            let _ = reply.send(Err("store returned no result".into()));
                        }
                        Err(e) => {
                            // Never retried again, whichever the case.
                            failed_in_a_row += 1;
                            metrics.store_errors.fetch_add(1, Ordering::Relaxed);
                            tracing::error!(error = %e, "write failed");
                            if matches!(e, ApplyError::OutcomeUnknown(_)) {
                                woken.maybe_stored(single);
                            }
                            let _ = reply.send(Err(e.into_error().0));
                        }
                    }
                }
                woken.ring();
            }
            Err(e) => {
                // A single op that failed, or a batch whose outcome is unknown (it may have
                // committed: applying its ops again would enqueue twice, pop a one-time key
                // twice, ...). Every writer gets an error, as after a reply lost on the network.
                metrics.store_errors.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, ops = ops.len(), "write failed");
                if matches!(e, ApplyError::OutcomeUnknown(_)) {
                    woken.maybe_stored(&ops);
                }
                let e = e.into_error();
                for reply in replies {
                    let _ = reply.send(Err(e.0.clone()));
                }
            }
        }
    }
}

fn after_commit(op: WriteOp, result: &WriteResult, woken: &mut Woken<'_>) {
    let metrics = woken.metrics;
    match (op, result) {
        (
            WriteOp::Enqueue {
                recipient,
                sender,
                envelope,
                received_at_ms,
                ..
            },
            WriteResult::Stored(id),
        ) => {
            metrics.envelopes_stored.fetch_add(1, Ordering::Relaxed);
            woken.notify_with(&recipient, || StoredMessage {
                id: *id,
                sender,
                received_at_ms,
                envelope,
            });
        }
        (
            WriteOp::GroupSend {
                sender,
                envelope,
                received_at_ms,
                ..
            },
            WriteResult::GroupStored { fan_out, .. },
        ) => {
            if !fan_out.delivered.is_empty() {
                metrics
                    .group_messages_stored
                    .fetch_add(1, Ordering::Relaxed);
            }
            wake_fan_out(fan_out, sender, received_at_ms, &envelope, woken);
        }
        (
            WriteOp::GroupCommit {
                commit,
                sender,
                received_at_ms,
                ..
            },
            WriteResult::CommitAccepted {
                commit: to_members,
                welcome: to_added,
                ..
            },
        ) => {
            wake_fan_out(to_members, sender, received_at_ms, &commit.commit, woken);
            if let Some(welcome) = &commit.welcome {
                wake_fan_out(to_added, sender, received_at_ms, welcome, woken);
            }
        }
        (_, WriteResult::Acked(n)) => {
            metrics
                .envelopes_acked
                .fetch_add(u64::from(*n), Ordering::Relaxed);
        }
        (_, WriteResult::Expired(n)) => {
            metrics.envelopes_expired.fetch_add(*n, Ordering::Relaxed);
        }
        _ => {}
    }
}

/// Count a committed group fan-out and wake every recipient that is online, each with its own
/// mailbox id; the envelope is copied only for those.
fn wake_fan_out(
    fan_out: &FanOut,
    sender: IdentityBytes,
    received_at_ms: u64,
    envelope: &[u8],
    woken: &mut Woken<'_>,
) {
    let metrics = woken.metrics;
    metrics
        .group_fan_out
        .fetch_add(fan_out.delivered.len() as u64, Ordering::Relaxed);
    metrics
        .group_skipped_full
        .fetch_add(u64::from(fan_out.skipped_full), Ordering::Relaxed);
    for (recipient, id) in &fan_out.delivered {
        woken.notify_with(recipient, || StoredMessage {
            id: *id,
            sender,
            received_at_ms,
            envelope: envelope.to_vec(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sqlite::SqliteStore;
    use crate::store::{
        GroupStats, IdentityBytes, MessageId, PrekeyStock, StoreTotals, SyncResult,
    };
    use hush_proto::relay::GroupId;

    /// A real SQLite store that fails, as a store error (not a refusal), any batch holding an
    /// envelope starting with `poison`: an op the store cannot apply.
    struct Poisoned(SqliteStore);

    impl Store for Poisoned {
        fn apply(&self, ops: &[WriteOp]) -> Result<Vec<WriteResult>, ApplyError> {
            let poisoned = ops.iter().any(|op| {
                matches!(op, WriteOp::Enqueue { envelope, .. } if envelope.starts_with(b"poison"))
            });
            if poisoned {
                return Err(ApplyError::NotApplied(StoreError("poisoned op".into())));
            }
            self.0.apply(ops)
        }
        fn pending(
            &self,
            recipient: &IdentityBytes,
            after: MessageId,
            limit: usize,
            max_bytes: usize,
        ) -> Result<Vec<StoredMessage>, StoreError> {
            self.0.pending(recipient, after, limit, max_bytes)
        }
        fn identity_of(&self, name: &str) -> Result<Option<IdentityBytes>, StoreError> {
            self.0.identity_of(name)
        }
        fn name_of(&self, identity: &IdentityBytes) -> Result<Option<String>, StoreError> {
            self.0.name_of(identity)
        }
        fn totals(&self) -> Result<StoreTotals, StoreError> {
            self.0.totals()
        }
        fn prekey_stock(&self) -> Result<PrekeyStock, StoreError> {
            self.0.prekey_stock()
        }
        fn group_stats(&self) -> Result<GroupStats, StoreError> {
            self.0.group_stats()
        }
        fn group_sync(
            &self,
            group_id: &GroupId,
            member: &IdentityBytes,
            after_epoch: u64,
            max_commits: usize,
            max_bytes: usize,
        ) -> Result<SyncResult, StoreError> {
            self.0
                .group_sync(group_id, member, after_epoch, max_commits, max_bytes)
        }
    }

    fn enqueue(envelope: &[u8]) -> WriteOp {
        WriteOp::Enqueue {
            recipient: [1; 32],
            sender: [2; 32],
            envelope: envelope.to_vec(),
            received_at_ms: 1,
            max_messages: 1000,
            max_bytes: 1 << 20,
            max_total_bytes: 1 << 30,
            max_sender_bytes: 1 << 30,
        }
    }

    #[test]
    fn two_bad_ops_side_by_side_do_not_fail_the_rest_of_their_batch() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("relay.sqlite3")).unwrap();
        let store: Arc<dyn Store> = Arc::new(Poisoned(store));
        let metrics = Arc::new(Metrics::default());
        let presence = Arc::new(Presence::new(Arc::clone(&metrics)));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        // Queue the whole batch before the writer starts, so it is taken as one batch.
        let (tx, rx) = mpsc::channel(WRITE_QUEUE);
        let writer = Writer { tx };
        let envelopes: Vec<&[u8]> = vec![b"poison 1", b"poison 2", b"good 1", b"good 2"];
        let results = runtime.block_on(async {
            let mut waits = Vec::new();
            for envelope in &envelopes {
                let (reply, rx) = oneshot::channel();
                writer
                    .tx
                    .send(Pending {
                        op: enqueue(envelope),
                        reply,
                    })
                    .await
                    .unwrap();
                waits.push(rx);
            }
            drop(writer);
            let (s, m, p) = (
                Arc::clone(&store),
                Arc::clone(&metrics),
                Arc::clone(&presence),
            );
            let thread = std::thread::spawn(move || {
                let woken = Woken {
                    presence: &p,
                    metrics: &m,
                    doorbell: None,
                    recipients: Vec::new(),
                };
                run(rx, s.as_ref(), woken, 64);
            });
            let mut results = Vec::new();
            for wait in waits {
                results.push(wait.await.unwrap());
            }
            thread.join().unwrap();
            results
        });
        assert!(results[0].is_err() && results[1].is_err(), "{results:?}");
        assert!(
            matches!(results[2], Ok(WriteResult::Stored(_)))
                && matches!(results[3], Ok(WriteResult::Stored(_))),
            "the good ops of the batch were failed with the bad ones: {results:?}"
        );
        assert_eq!(store.totals().unwrap().messages, 2);
    }
}
