//! A connection's outbound queue, bounded in frames *and* bytes: a frame takes its length from
//! a byte budget before it is queued and gives it back only once the socket has taken it, so a
//! reader that stops reading pins at most `outbound_queue_bytes` (not 128 frames of 64 KiB).

use std::sync::atomic::Ordering;
use std::sync::Arc;

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use crate::metrics::Metrics;

/// A frame on its way to the socket, holding its share of the byte budget.
pub struct QueuedFrame {
    /// The plaintext frame.
    pub bytes: Vec<u8>,
    /// Released (and the gauge lowered) when dropped, after the frame was written.
    pub budget: Budget,
}

/// Bytes of one queued frame, counted in the budget and in `hush_queued_bytes`.
pub struct Budget {
    _permit: OwnedSemaphorePermit,
    bytes: u64,
    metrics: Arc<Metrics>,
}

impl Drop for Budget {
    fn drop(&mut self) {
        self.metrics
            .queued_bytes
            .fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// The sending side of a connection's outbound queue; cheap to clone.
#[derive(Clone)]
pub struct Outbound {
    tx: mpsc::Sender<QueuedFrame>,
    budget: Arc<Semaphore>,
    max_bytes: u32,
    metrics: Arc<Metrics>,
}

/// The queue is gone (the connection's writer ended).
#[derive(Debug)]
pub struct Closed;

impl Outbound {
    /// A queue of at most `frames` frames and `bytes` bytes (at least one frame of any size
    /// always fits, so a frame larger than the budget still goes, alone).
    pub fn channel(
        frames: usize,
        bytes: usize,
        metrics: Arc<Metrics>,
    ) -> (Self, mpsc::Receiver<QueuedFrame>) {
        let (tx, rx) = mpsc::channel(frames.max(1));
        let max_bytes = u32::try_from(bytes.clamp(1, Semaphore::MAX_PERMITS)).unwrap_or(u32::MAX);
        let budget = Arc::new(Semaphore::new(max_bytes as usize));
        (
            Self {
                tx,
                budget,
                max_bytes,
                metrics,
            },
            rx,
        )
    }

    /// Queue a frame, waiting for room. Cancel-safe: a cancelled send queues nothing and
    /// holds no budget.
    pub async fn send(&self, bytes: Vec<u8>) -> Result<(), Closed> {
        let cost = u32::try_from(bytes.len())
            .unwrap_or(u32::MAX)
            .clamp(1, self.max_bytes);
        let permit = Arc::clone(&self.budget)
            .acquire_many_owned(cost)
            .await
            .map_err(|_| Closed)?;
        let counted = u64::from(cost);
        self.metrics
            .queued_bytes
            .fetch_add(counted, Ordering::Relaxed);
        let budget = Budget {
            _permit: permit,
            bytes: counted,
            metrics: Arc::clone(&self.metrics),
        };
        self.tx
            .send(QueuedFrame { bytes, budget })
            .await
            .map_err(|_| Closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn bytes_bound_the_queue_before_frames_do() {
        let metrics = Arc::new(Metrics::default());
        let (out, mut rx) = Outbound::channel(100, 1000, Arc::clone(&metrics));
        out.send(vec![0; 600]).await.unwrap();
        out.send(vec![0; 400]).await.unwrap();
        assert_eq!(metrics.queued_bytes.load(Ordering::Relaxed), 1000);
        // A third frame waits for bytes although 98 frame slots are free.
        let third = tokio::time::timeout(Duration::from_millis(100), out.send(vec![0; 1])).await;
        assert!(third.is_err(), "a frame was queued beyond the byte budget");
        let first = rx.recv().await.unwrap();
        assert_eq!(first.bytes.len(), 600);
        drop(first);
        assert_eq!(metrics.queued_bytes.load(Ordering::Relaxed), 400);
        out.send(vec![0; 1]).await.unwrap();
        // A frame larger than the whole budget still goes, alone.
        drop(rx.recv().await.unwrap());
        drop(rx.recv().await.unwrap());
        out.send(vec![0; 5000]).await.unwrap();
        assert_eq!(metrics.queued_bytes.load(Ordering::Relaxed), 1000);
    }
}
