//! Counters and gauges, served in the Prometheus text format on `--metrics ADDR`, with
//! `GET /healthz` (liveness) and `GET /readyz` (the store answers; not shutting down). The endpoint
//! is bounded like the client port: a cap on concurrent connections (taken before accept), a
//! deadline for each, and a growing pause after accept errors (EMFILE) instead of a spin.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;

use crate::store::Store;

/// The relay's counters. Cheap to bump from any task.
#[derive(Default)]
pub struct Metrics {
    /// Connections open now.
    pub connections_open: AtomicU64,
    /// Connections accepted since start.
    pub connections_total: AtomicU64,
    /// Connections that completed the handshake and Hello.
    pub authenticated_total: AtomicU64,
    /// Envelopes durably stored.
    pub envelopes_stored: AtomicU64,
    /// Envelopes written to a recipient's connection.
    pub envelopes_delivered: AtomicU64,
    /// Envelopes deleted by their recipient's ack.
    pub envelopes_acked: AtomicU64,
    /// Envelopes deleted by TTL expiry.
    pub envelopes_expired: AtomicU64,
    /// Group-commit transactions.
    pub commit_batches: AtomicU64,
    /// Writes committed in those transactions.
    pub commit_ops: AtomicU64,
    /// Bytes held now in connections' outbound and live queues.
    pub queued_bytes: AtomicU64,
    /// Bundles served without a one-time prekey because that user's fetch budget was spent.
    pub bundles_without_one_time: AtomicU64,
    /// Group messages (application messages and proposals) stored once for fan-out.
    pub group_messages_stored: AtomicU64,
    /// Mailbox rows made by group fan-out (messages, commits, Welcomes): one per recipient.
    pub group_fan_out: AtomicU64,
    /// Group recipients skipped because their mailbox was full (the others still got it).
    pub group_skipped_full: AtomicU64,
    /// The configured global storage quota (for alerting on `hush_mailbox_bytes` against it).
    pub storage_max_bytes: AtomicU64,
    /// Doorbell messages published on NATS (one per committed batch with mail, or per part).
    pub doorbells_published: AtomicU64,
    /// Doorbells not published: NATS down or slow, or the publish failed.
    pub doorbell_publish_errors: AtomicU64,
    /// Doorbells dropped before publishing because the doorbell queue was full.
    pub doorbells_dropped: AtomicU64,
    /// Doorbells received from other nodes (well-formed).
    pub doorbells_received: AtomicU64,
    /// Malformed doorbell payloads ignored.
    pub doorbells_malformed: AtomicU64,
    /// Local subscriptions woken by a doorbell.
    pub doorbell_wakeups: AtomicU64,
    /// Periodic mailbox re-reads (`mailbox_recheck_ms`).
    pub mailbox_rechecks: AtomicU64,
    /// 1 while connected to NATS, else 0.
    pub nats_connected: AtomicU64,
    /// Failed store operations (writes and mailbox reads).
    pub store_errors: AtomicU64,
    rejects: Mutex<BTreeMap<&'static str, u64>>,
}

impl Metrics {
    /// Count a rejected request or closed connection under `reason`.
    pub fn reject(&self, reason: &'static str) {
        if let Ok(mut rejects) = self.rejects.lock() {
            *rejects.entry(reason).or_insert(0) += 1;
        }
    }

    /// Rejects counted under `reason` so far.
    pub fn rejects(&self, reason: &str) -> u64 {
        self.rejects
            .lock()
            .map(|r| r.get(reason).copied().unwrap_or(0))
            .unwrap_or(0)
    }

    /// Render the Prometheus text exposition.
    pub fn render(&self, store: &dyn Store) -> String {
        let mut out = String::new();
        let counters: [(&str, &str, &AtomicU64, &str); 24] = [
            (
                "hush_connections_open",
                "gauge",
                &self.connections_open,
                "Client connections open now.",
            ),
            (
                "hush_connections_total",
                "counter",
                &self.connections_total,
                "Client connections accepted.",
            ),
            (
                "hush_authenticated_total",
                "counter",
                &self.authenticated_total,
                "Connections authenticated.",
            ),
            (
                "hush_envelopes_stored_total",
                "counter",
                &self.envelopes_stored,
                "Envelopes durably stored.",
            ),
            (
                "hush_envelopes_delivered_total",
                "counter",
                &self.envelopes_delivered,
                "Envelopes pushed to recipients.",
            ),
            (
                "hush_envelopes_acked_total",
                "counter",
                &self.envelopes_acked,
                "Envelopes deleted on ack.",
            ),
            (
                "hush_envelopes_expired_total",
                "counter",
                &self.envelopes_expired,
                "Envelopes deleted by TTL.",
            ),
            (
                "hush_commit_batches_total",
                "counter",
                &self.commit_batches,
                "Group-commit transactions.",
            ),
            (
                "hush_commit_ops_total",
                "counter",
                &self.commit_ops,
                "Writes committed.",
            ),
            (
                "hush_queued_bytes",
                "gauge",
                &self.queued_bytes,
                "Bytes held in connections' outbound and live queues.",
            ),
            (
                "hush_bundles_without_one_time_prekey_total",
                "counter",
                &self.bundles_without_one_time,
                "Bundles served without a one-time prekey (that user's fetch budget was spent).",
            ),
            (
                "hush_group_messages_stored_total",
                "counter",
                &self.group_messages_stored,
                "Group messages stored once for fan-out.",
            ),
            (
                "hush_group_fan_out_total",
                "counter",
                &self.group_fan_out,
                "Mailbox rows made by group fan-out (messages, commits, Welcomes).",
            ),
            (
                "hush_group_skipped_full_total",
                "counter",
                &self.group_skipped_full,
                "Group recipients skipped because their mailbox was full.",
            ),
            (
                "hush_storage_max_bytes",
                "gauge",
                &self.storage_max_bytes,
                "Global storage quota for all mailboxes.",
            ),
            (
                "hush_doorbells_published_total",
                "counter",
                &self.doorbells_published,
                "Doorbell messages published on NATS for other relay nodes.",
            ),
            (
                "hush_doorbell_publish_errors_total",
                "counter",
                &self.doorbell_publish_errors,
                "Doorbells not published (NATS down, slow or refusing); mailbox re-checks cover them.",
            ),
            (
                "hush_doorbells_dropped_total",
                "counter",
                &self.doorbells_dropped,
                "Doorbells dropped because the doorbell queue was full.",
            ),
            (
                "hush_doorbells_received_total",
                "counter",
                &self.doorbells_received,
                "Doorbells received from other relay nodes.",
            ),
            (
                "hush_doorbells_malformed_total",
                "counter",
                &self.doorbells_malformed,
                "Malformed doorbell payloads ignored.",
            ),
            (
                "hush_doorbell_wakeups_total",
                "counter",
                &self.doorbell_wakeups,
                "Local subscribers woken by a doorbell to re-read their mailbox.",
            ),
            (
                "hush_mailbox_rechecks_total",
                "counter",
                &self.mailbox_rechecks,
                "Periodic mailbox re-reads of subscribers (mailbox_recheck_ms).",
            ),
            (
                "hush_nats_connected",
                "gauge",
                &self.nats_connected,
                "1 while connected to NATS, else 0 (also 0 without NATS).",
            ),
            (
                "hush_store_errors_total",
                "counter",
                &self.store_errors,
                "Failed store writes and mailbox reads (e.g. PostgreSQL unreachable).",
            ),
        ];
        for (name, kind, value, help) in counters {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            let _ = writeln!(out, "{name} {}", value.load(Ordering::Relaxed));
        }
        if let Ok(totals) = store.totals() {
            let _ = writeln!(out, "# HELP hush_mailbox_messages Messages waiting in mailboxes.\n# TYPE hush_mailbox_messages gauge");
            let _ = writeln!(out, "hush_mailbox_messages {}", totals.messages);
            let _ = writeln!(out, "# HELP hush_mailbox_bytes Envelope bytes waiting in mailboxes.\n# TYPE hush_mailbox_bytes gauge");
            let _ = writeln!(out, "hush_mailbox_bytes {}", totals.bytes);
        }
        if let Ok(stock) = store.prekey_stock() {
            let gauges = [
                (
                    "hush_one_time_prekeys",
                    "Classical one-time prekeys in stock, all identities together.",
                    stock.one_time,
                ),
                (
                    "hush_pq_one_time_prekeys",
                    "One-time PQ (ML-KEM-768) prekeys in stock, all identities together.",
                    stock.pq_one_time,
                ),
                (
                    "hush_pq_last_resort_prekeys",
                    "Identities with a last-resort PQ prekey.",
                    stock.pq_last_resort,
                ),
            ];
            for (name, help, value) in gauges {
                let _ = writeln!(
                    out,
                    "# HELP {name} {help}\n# TYPE {name} gauge\n{name} {value}"
                );
            }
        }
        if let Ok(groups) = store.group_stats() {
            let _ = writeln!(
                out,
                "# HELP hush_groups Groups on the relay.\n# TYPE hush_groups gauge\nhush_groups {}",
                groups.groups
            );
            let _ = writeln!(
                out,
                "# HELP hush_group_members Memberships over all groups.\n# TYPE hush_group_members gauge\nhush_group_members {}",
                groups.members
            );
        }
        let _ = writeln!(out, "# HELP hush_rejects_total Requests refused or connections closed, by reason.\n# TYPE hush_rejects_total counter");
        if let Ok(rejects) = self.rejects.lock() {
            for (reason, count) in rejects.iter() {
                let _ = writeln!(out, "hush_rejects_total{{reason=\"{reason}\"}} {count}");
            }
        }
        out
    }
}

/// First pause after a failed accept; doubled on each further failure up to
/// [`ACCEPT_BACKOFF_MAX`]. Without it, a full file table (EMFILE) made the loop spin a core.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
/// Longest pause after failed accepts.
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// Most request bytes read before answering (a scrape needs a few hundred).
const MAX_REQUEST: usize = 8192;

/// What `/readyz` looks at besides the store.
#[derive(Clone)]
pub struct Health {
    /// True once shutdown has begun: not ready any more.
    pub stopping: tokio::sync::watch::Receiver<bool>,
    /// Whether a NATS doorbell is configured (else `nats=off`).
    pub nats_configured: bool,
}

/// How long `/readyz` waits for the store's trivial read.
pub const READY_TIMEOUT: Duration = Duration::from_secs(1);

/// The request target of an HTTP request line (`GET /path?query HTTP/1.1`), without the query.
fn request_path(request: &[u8]) -> Option<&str> {
    let line = request.split(|&b| b == b'\r' || b == b'\n').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    let _method = parts.next()?;
    let target = parts.next()?;
    target.split('?').next()
}

/// `/readyz`: the status and a short body `store=up|down nats=up|down|off`.
async fn readiness(metrics: &Metrics, store: Arc<dyn Store>, health: &Health) -> (bool, String) {
    let read = tokio::time::timeout(
        READY_TIMEOUT,
        tokio::task::spawn_blocking(move || store.totals().is_ok()),
    )
    .await;
    let store_up = matches!(read, Ok(Ok(true)));
    let nats = if !health.nats_configured {
        "off"
    } else if metrics.nats_connected.load(Ordering::Relaxed) == 1 {
        "up"
    } else {
        "down"
    };
    let stopping = *health.stopping.borrow();
    let body = format!(
        "store={} nats={nats}{}\n",
        if store_up { "up" } else { "down" },
        if stopping { " stopping" } else { "" }
    );
    (store_up && !stopping, body)
}

/// Serve `GET /healthz` (200 `ok` while the process runs), `GET /readyz` (200 when the store
/// answers a trivial read within [`READY_TIMEOUT`] and the relay is not shutting down, else
/// 503) and the Prometheus text on any other path, on `listener` until the task is dropped: at
/// most `max_connections` at once (more wait in the kernel backlog), each closed after
/// `timeout`.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    store: Arc<dyn Store>,
    health: Health,
    max_connections: usize,
    timeout: Duration,
) {
    let slots = Arc::new(Semaphore::new(max_connections.max(1)));
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        let Ok(slot) = Arc::clone(&slots).acquire_owned().await else {
            return;
        };
        let mut socket = match listener.accept().await {
            Ok((socket, _)) => {
                backoff = ACCEPT_BACKOFF_MIN;
                socket
            }
            Err(e) => {
                tracing::warn!(error = %e, pause = ?backoff, "metrics accept failed");
                metrics.reject("metrics_accept_failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        let metrics = Arc::clone(&metrics);
        let store = Arc::clone(&store);
        let health = health.clone();
        tokio::spawn(async move {
            let served = tokio::time::timeout(timeout, async {
                let mut request = Vec::with_capacity(1024);
                let mut chunk = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < MAX_REQUEST
                {
                    match socket.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(chunk.get(..n).unwrap_or_default()),
                    }
                }
                let (status, content_type, body) = match request_path(&request) {
                    Some("/healthz") => ("200 OK", "text/plain", "ok\n".to_owned()),
                    Some("/readyz") => {
                        let (ready, body) = readiness(&metrics, store, &health).await;
                        let status = if ready {
                            "200 OK"
                        } else {
                            "503 Service Unavailable"
                        };
                        (status, "text/plain", body)
                    }
                    _ => {
                        let metrics = Arc::clone(&metrics);
                        let body =
                            tokio::task::spawn_blocking(move || metrics.render(store.as_ref()))
                                .await
                                .unwrap_or_default();
                        ("200 OK", "text/plain; version=0.0.4", body)
                    }
                };
                let response = format!(
                    "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = socket.write_all(response.as_bytes()).await;
                let _ = socket.shutdown().await;
            })
            .await;
            if served.is_err() {
                metrics.reject("metrics_timeout");
            }
            drop(slot);
        });
    }
}

/// Bind the metrics endpoint.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
