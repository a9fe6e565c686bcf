//! The doorbell between relay nodes sharing one PostgreSQL store: after a batch commits, the
//! writer hands the recipients that got mail to [`Ringer::ring`] (never blocking: a full queue
//! drops the bell and counts it), and a task publishes one NATS message per batch on
//! `<prefix>.bell`: this node's random 16-byte id followed by the recipients' 32-byte
//! identities, split into parts of at most [`MAX_PAYLOAD`] bytes. Every node subscribes to the
//! subject, ignores its own bells and malformed payloads (NATS is not trusted: any payload is
//! checked before use), and marks the live queue of each recipient subscribed locally stale,
//! so its delivery task re-reads the mailbox from its cursor.
//!
//! A bell carries no message, only "look again": a lost bell (NATS down, queue full) delays
//! delivery until the subscriber's next mailbox re-check (`mailbox_recheck_ms`), never loses
//! or repeats a message. NATS unreachable at start does not stop the relay: the client keeps
//! connecting in the background and reconnects by itself after a disconnect.

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use rand_core::{OsRng, RngCore};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use crate::metrics::Metrics;
use crate::presence::Presence;
use crate::store::IdentityBytes;

/// Bytes of a node id, at the start of every bell.
pub const NODE_ID_LEN: usize = 16;
/// Largest bell payload; more recipients go in further parts.
pub const MAX_PAYLOAD: usize = 64 * 1024;
/// Recipients in one bell part.
pub const RECIPIENTS_PER_BELL: usize = (MAX_PAYLOAD - NODE_ID_LEN) / 32;
/// Batches waiting to be published; beyond it bells are dropped (and counted).
pub const BELL_QUEUE: usize = 4096;
/// Longest wait for one publish (the client's own queue is full while NATS is slow).
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(1);
/// Longest pause between reconnection attempts.
const RECONNECT_MAX: Duration = Duration::from_secs(2);

/// A node's identity on the bell subject: random per process.
pub type NodeId = [u8; NODE_ID_LEN];

/// A fresh random node id.
pub fn new_node_id() -> NodeId {
    let mut id = [0u8; NODE_ID_LEN];
    OsRng.fill_bytes(&mut id);
    id
}

/// The subject bells are published on.
pub fn subject(prefix: &str) -> String {
    format!("{prefix}.bell")
}

/// The payloads announcing `recipients`, each at most [`MAX_PAYLOAD`] bytes.
pub fn encode(node: &NodeId, recipients: &[IdentityBytes]) -> Vec<Vec<u8>> {
    recipients
        .chunks(RECIPIENTS_PER_BELL)
        .map(|part| {
            let mut payload = Vec::with_capacity(NODE_ID_LEN + 32 * part.len());
            payload.extend_from_slice(node);
            for recipient in part {
                payload.extend_from_slice(recipient);
            }
            payload
        })
        .collect()
}

/// The sender and recipients of a bell, or `None` if the payload is not `16 + 32k` bytes.
pub fn decode(payload: &[u8]) -> Option<(NodeId, Vec<IdentityBytes>)> {
    let (node, rest) = payload.split_first_chunk::<NODE_ID_LEN>()?;
    if rest.len() % 32 != 0 {
        return None;
    }
    let recipients = rest
        .chunks_exact(32)
        .filter_map(|chunk| <IdentityBytes>::try_from(chunk).ok())
        .collect();
    Some((*node, recipients))
}

/// The writer's side of the doorbell: hand over the recipients of a committed batch.
#[derive(Clone)]
pub struct Ringer {
    tx: mpsc::Sender<Vec<IdentityBytes>>,
    metrics: Arc<Metrics>,
}

impl Ringer {
    /// Queue a bell for `recipients` without blocking; a full queue drops it (counted in
    /// `hush_doorbells_dropped_total`; the mailbox re-check covers it).
    pub fn ring(&self, recipients: Vec<IdentityBytes>) {
        if recipients.is_empty() {
            return;
        }
        if self.tx.try_send(recipients).is_err() {
            self.metrics
                .doorbells_dropped
                .fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// A running doorbell: its client and tasks.
pub struct Doorbell {
    client: async_nats::Client,
    tasks: Vec<JoinHandle<()>>,
}

impl Doorbell {
    /// Whether the NATS connection is up now.
    pub fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    /// Stop publishing and listening.
    pub fn stop(self) {
        for task in self.tasks {
            task.abort();
        }
    }
}

/// Connect to NATS at `url` (in the background if it is unreachable now), subscribe to the
/// bell subject and start publishing. Fails only on an unusable URL or option; the error never
/// contains the URL.
pub async fn start(
    url: &str,
    prefix: &str,
    presence: Arc<Presence>,
    metrics: Arc<Metrics>,
) -> Result<(Ringer, Doorbell), String> {
    let node = new_node_id();
    let client = async_nats::ConnectOptions::new()
        .name("hush-relay")
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2))
        .reconnect_delay_callback(|attempts| {
            let shift = u32::try_from(attempts.min(8)).unwrap_or(8);
            (Duration::from_millis(50) * 2u32.pow(shift)).min(RECONNECT_MAX)
        })
        .event_callback(|event| async move {
            match event {
                async_nats::Event::Connected => tracing::info!("doorbell: NATS connected"),
                async_nats::Event::Disconnected => {
                    tracing::warn!("doorbell: NATS disconnected; reconnecting in the background")
                }
                // Bells were dropped by the client (this node too slow to take them) or the
                // server complained: worth a line, the re-check covers the lost bells.
                async_nats::Event::SlowConsumer(_)
                | async_nats::Event::ServerError(_)
                | async_nats::Event::ClientError(_) => {
                    tracing::warn!(event = %event, "doorbell: NATS problem")
                }
                other => tracing::debug!(event = %other, "doorbell: NATS event"),
            }
        })
        .connect(url)
        .await
        .map_err(|e| format!("cannot use the NATS URL: {}", e.kind()))?;
    let subject = subject(prefix);
    let subscriber = client
        .subscribe(subject.clone())
        .await
        .map_err(|_| "cannot subscribe to the doorbell subject".to_owned())?;
    let (tx, rx) = mpsc::channel(BELL_QUEUE);
    let tasks = vec![
        tokio::spawn(listen(subscriber, node, presence, Arc::clone(&metrics))),
        tokio::spawn(publish(
            client.clone(),
            subject,
            node,
            rx,
            Arc::clone(&metrics),
        )),
        tokio::spawn(watch_connection(client.clone(), Arc::clone(&metrics))),
    ];
    Ok((Ringer { tx, metrics }, Doorbell { client, tasks }))
}

/// Keep `hush_nats_connected` in step with the connection.
async fn watch_connection(client: async_nats::Client, metrics: Arc<Metrics>) {
    let started = tokio::time::Instant::now();
    let mut warned = false;
    loop {
        let up = client.connection_state() == async_nats::connection::State::Connected;
        metrics
            .nats_connected
            .store(u64::from(up), Ordering::Relaxed);
        // The first connection gets a moment before it counts as missing.
        if !up && !warned && started.elapsed() >= Duration::from_secs(2) {
            tracing::warn!(
                "doorbell: NATS not connected; other nodes' mail arrives by mailbox re-check \
                 until it is"
            );
        }
        if up {
            warned = false;
        } else if started.elapsed() >= Duration::from_secs(2) {
            warned = true;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Publish the bells the writer queued, merging batches that queued up meanwhile.
async fn publish(
    client: async_nats::Client,
    subject: String,
    node: NodeId,
    mut rx: mpsc::Receiver<Vec<IdentityBytes>>,
    metrics: Arc<Metrics>,
) {
    while let Some(first) = rx.recv().await {
        let mut recipients = first;
        // Batches committed while the last bell was being published go in one bell.
        while recipients.len() < RECIPIENTS_PER_BELL {
            match rx.try_recv() {
                Ok(more) => recipients.extend(more),
                Err(_) => break,
            }
        }
        let mut seen = HashSet::with_capacity(recipients.len());
        recipients.retain(|r| seen.insert(*r));
        for payload in encode(&node, &recipients) {
            if client.connection_state() != async_nats::connection::State::Connected {
                metrics
                    .doorbell_publish_errors
                    .fetch_add(1, Ordering::Relaxed);
                continue;
            }
            let sent = tokio::time::timeout(
                PUBLISH_TIMEOUT,
                client.publish(subject.clone(), payload.into()),
            )
            .await;
            match sent {
                Ok(Ok(())) => {
                    metrics.doorbells_published.fetch_add(1, Ordering::Relaxed);
                }
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "doorbell publish failed");
                    metrics
                        .doorbell_publish_errors
                        .fetch_add(1, Ordering::Relaxed);
                }
                Err(_) => {
                    metrics
                        .doorbell_publish_errors
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }
}

/// Wake local subscribers named in other nodes' bells.
async fn listen(
    mut subscriber: async_nats::Subscriber,
    node: NodeId,
    presence: Arc<Presence>,
    metrics: Arc<Metrics>,
) {
    while let Some(message) = subscriber.next().await {
        match decode(&message.payload) {
            None => {
                metrics.doorbells_malformed.fetch_add(1, Ordering::Relaxed);
            }
            Some((from, _)) if from == node => {}
            Some((_, recipients)) => {
                metrics.doorbells_received.fetch_add(1, Ordering::Relaxed);
                let woken = recipients.iter().filter(|r| presence.wake(r)).count();
                metrics
                    .doorbell_wakeups
                    .fetch_add(woken as u64, Ordering::Relaxed);
            }
        }
    }
    tracing::warn!("doorbell: subscription ended");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bells_round_trip_and_split() {
        let node = [7u8; NODE_ID_LEN];
        let recipients: Vec<IdentityBytes> = (0..5000u32)
            .map(|i| {
                let mut r = [0u8; 32];
                r[..4].copy_from_slice(&i.to_be_bytes());
                r
            })
            .collect();
        let parts = encode(&node, &recipients);
        assert_eq!(parts.len(), 3);
        let mut back = Vec::new();
        for part in &parts {
            assert!(part.len() <= MAX_PAYLOAD);
            let (from, rs) = decode(part).unwrap();
            assert_eq!(from, node);
            back.extend(rs);
        }
        assert_eq!(back, recipients);
    }

    #[test]
    fn malformed_bells_are_refused() {
        assert!(decode(&[]).is_none());
        assert!(decode(&[1u8; 15]).is_none());
        assert!(decode(&[1u8; 17]).is_none());
        assert!(decode(&[1u8; 16 + 31]).is_none());
        assert!(decode(&[1u8; 16 + 33]).is_none());
        assert_eq!(decode(&[1u8; 16]).unwrap().1.len(), 0);
        assert_eq!(decode(&[1u8; 16 + 64]).unwrap().1.len(), 2);
    }
}
