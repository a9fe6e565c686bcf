//! Delivery to one subscribed connection: first everything pending in the mailbox (read in
//! pages), then live messages as they are committed, never faster than the connection's socket
//! drains. What is held in memory for it (the current catch-up page, the live queue, the
//! outbound queue) is bounded in bytes and counted in `hush_queued_bytes`.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use hush_proto::relay::{Delivery, ServerMessage};

use crate::metrics::Metrics;
use crate::outbound::Outbound;
use crate::presence::LiveQueue;
use crate::store::{IdentityBytes, Store, StoredMessage};

/// Most messages read from a mailbox per page when catching up.
const PAGE: usize = 256;
/// First pause after a failed mailbox read; doubled per further failure up to
/// [`READ_RETRY_MAX`]. The task keeps retrying while its connection is open, so a subscriber
/// gets its mail once the store is back, without reconnecting.
const READ_RETRY_MIN: Duration = Duration::from_millis(100);
/// Longest pause between mailbox read attempts.
const READ_RETRY_MAX: Duration = Duration::from_secs(2);

/// Why a catch-up stopped.
enum Stop {
    /// The connection is gone (or this subscription was replaced): the task ends.
    Closed,
    /// The mailbox could not be read: try again later.
    Store(String),
}

/// Push pending then live messages to one subscribed connection, never faster than its socket
/// drains (the outbound queue is bounded); what does not fit waits in the mailbox. With
/// `recheck`, the mailbox is also re-read that long after the last wake-up, so mail stored by
/// another node whose doorbell was lost arrives at most that late.
pub async fn deliver(
    identity: IdentityBytes,
    page_bytes: usize,
    recheck: Option<Duration>,
    live: Arc<LiveQueue>,
    store: Arc<dyn Store>,
    outbound: Outbound,
    metrics: Arc<Metrics>,
) {
    let mut cursor = 0u64;
    let mut stale = true;
    loop {
        if stale {
            let mut pause = READ_RETRY_MIN;
            loop {
                match catch_up(
                    &identity,
                    page_bytes,
                    &store,
                    &outbound,
                    &metrics,
                    &mut cursor,
                )
                .await
                {
                    Ok(()) => break,
                    Err(Stop::Closed) => return,
                    Err(Stop::Store(e)) => {
                        metrics.store_errors.fetch_add(1, Ordering::Relaxed);
                        // Once per outage per subscriber, not per attempt.
                        if pause == READ_RETRY_MIN {
                            tracing::warn!(error = %e, "mailbox read failed; retrying");
                        }
                        if live.is_ended() {
                            return;
                        }
                        tokio::time::sleep(pause).await;
                        pause = (pause * 2).min(READ_RETRY_MAX);
                    }
                }
            }
            stale = false;
        }
        let woken = match recheck {
            Some(every) => tokio::time::timeout(every, live.notify.notified())
                .await
                .is_ok(),
            None => {
                live.notify.notified().await;
                true
            }
        };
        if live.is_ended() {
            return;
        }
        if !woken {
            metrics.mailbox_rechecks.fetch_add(1, Ordering::Relaxed);
            stale = true;
            continue;
        }
        if live.take_overflow() {
            stale = true;
            continue;
        }
        for message in live.drain() {
            if message.id > cursor {
                if push(&message, &outbound, &metrics).await.is_err() {
                    return;
                }
                cursor = message.id;
            }
        }
    }
}

async fn catch_up(
    identity: &IdentityBytes,
    page_bytes: usize,
    store: &Arc<dyn Store>,
    outbound: &Outbound,
    metrics: &Metrics,
    cursor: &mut u64,
) -> Result<(), Stop> {
    loop {
        let store = Arc::clone(store);
        let (who, after) = (*identity, *cursor);
        let page =
            match tokio::task::spawn_blocking(move || store.pending(&who, after, PAGE, page_bytes))
                .await
            {
                Ok(Ok(page)) => page,
                Ok(Err(e)) => return Err(Stop::Store(e.to_string())),
                Err(e) => return Err(Stop::Store(e.to_string())),
            };
        let bytes: usize = page.iter().map(|m| m.envelope.len()).sum();
        // A page cut short by either bound may have more behind it.
        let last = page.len() < PAGE && bytes < page_bytes;
        let mut held = Held::new(metrics, bytes as u64);
        for message in page {
            push(&message, outbound, metrics)
                .await
                .map_err(|()| Stop::Closed)?;
            held.release(message.envelope.len() as u64);
            *cursor = message.id;
        }
        if last {
            return Ok(());
        }
    }
}

/// Envelope bytes of a catch-up page still held in memory, counted in `hush_queued_bytes`
/// until pushed (or dropped, if the connection goes away mid-page).
struct Held<'a> {
    metrics: &'a Metrics,
    bytes: u64,
}

impl<'a> Held<'a> {
    fn new(metrics: &'a Metrics, bytes: u64) -> Self {
        metrics.queued_bytes.fetch_add(bytes, Ordering::Relaxed);
        Self { metrics, bytes }
    }

    fn release(&mut self, bytes: u64) {
        let bytes = bytes.min(self.bytes);
        self.bytes -= bytes;
        self.metrics
            .queued_bytes
            .fetch_sub(bytes, Ordering::Relaxed);
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.release(self.bytes);
    }
}

async fn push(message: &StoredMessage, outbound: &Outbound, metrics: &Metrics) -> Result<(), ()> {
    let frame = ServerMessage::Deliver(Delivery {
        id: message.id,
        sender: message.sender,
        received_at_ms: message.received_at_ms,
        envelope: message.envelope.clone(),
    })
    .encode();
    outbound.send(frame).await.map_err(|_| ())?;
    metrics.envelopes_delivered.fetch_add(1, Ordering::Relaxed);
    Ok(())
}
