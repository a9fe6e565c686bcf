//! Counters and gauges, served in the Prometheus text format on `--metrics ADDR`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

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
        let counters: [(&str, &str, &AtomicU64, &str); 9] = [
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
        let _ = writeln!(out, "# HELP hush_rejects_total Requests refused or connections closed, by reason.\n# TYPE hush_rejects_total counter");
        if let Ok(rejects) = self.rejects.lock() {
            for (reason, count) in rejects.iter() {
                let _ = writeln!(out, "hush_rejects_total{{reason=\"{reason}\"}} {count}");
            }
        }
        out
    }
}

/// Serve `GET /metrics` (any path) on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, metrics: Arc<Metrics>, store: Arc<dyn Store>) {
    loop {
        let Ok((mut socket, _)) = listener.accept().await else {
            continue;
        };
        let metrics = Arc::clone(&metrics);
        let store = Arc::clone(&store);
        tokio::spawn(async move {
            let mut request = Vec::with_capacity(1024);
            let read = tokio::time::timeout(Duration::from_secs(5), async {
                let mut chunk = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 8192 {
                    match socket.read(&mut chunk).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(chunk.get(..n).unwrap_or_default()),
                    }
                }
            })
            .await;
            if read.is_err() {
                return;
            }
            let body = tokio::task::spawn_blocking(move || metrics.render(store.as_ref()))
                .await
                .unwrap_or_default();
            let response = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = socket.write_all(response.as_bytes()).await;
            let _ = socket.shutdown().await;
        });
    }
}

/// Bind the metrics endpoint.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}
