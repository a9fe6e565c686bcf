//! Who is subscribed, and a small in-memory queue per subscription for fast live delivery,
//! bounded in messages and in bytes. When a queue is full, the message is not dropped: it is
//! already durable in the mailbox, and the connection re-reads the mailbox once it catches up.
//!
//! With a store shared by several relay nodes (PostgreSQL), a queue carries no messages, only
//! the signal "re-read the mailbox from your cursor": message ids are committed in increasing
//! order across all nodes, but a message committed here may wake its recipient before the
//! doorbell of a lower id committed elsewhere arrives; pushing it would move the cursor past
//! that lower id for good. A re-read after a wake-up sees every id committed before it.
//!
//! An identity has at most one live subscription: a new Subscribe (on another connection)
//! ends the previous one, whose connection the relay then closes, so many connections of one
//! identity cannot each pin a catch-up page and a queue.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::{watch, Notify};

use crate::metrics::Metrics;
use crate::store::{IdentityBytes, StoredMessage};

/// How big a live queue may grow.
#[derive(Debug, Clone, Copy)]
pub struct QueueBounds {
    /// Most messages held.
    pub messages: usize,
    /// Most envelope bytes held.
    pub bytes: usize,
}

struct Queued {
    messages: VecDeque<Arc<StoredMessage>>,
    bytes: usize,
}

/// A subscribed connection's live queue.
pub struct LiveQueue {
    queue: Mutex<Queued>,
    overflowed: AtomicBool,
    /// Signalled on every push or overflow (a permit is kept if nobody waits).
    pub notify: Notify,
    bounds: QueueBounds,
    ended: watch::Sender<bool>,
    metrics: Arc<Metrics>,
}

impl LiveQueue {
    fn new(bounds: QueueBounds, metrics: Arc<Metrics>) -> Self {
        Self {
            queue: Mutex::new(Queued {
                messages: VecDeque::with_capacity(bounds.messages.min(1024)),
                bytes: 0,
            }),
            overflowed: AtomicBool::new(false),
            notify: Notify::new(),
            bounds,
            ended: watch::channel(false).0,
            metrics,
        }
    }

    fn push(&self, message: Arc<StoredMessage>) {
        if let Ok(mut queue) = self.queue.lock() {
            let len = message.envelope.len();
            let fits = queue.messages.len() < self.bounds.messages
                && queue
                    .bytes
                    .checked_add(len)
                    .is_some_and(|total| total <= self.bounds.bytes);
            if fits {
                queue.messages.push_back(message);
                queue.bytes += len;
                self.metrics
                    .queued_bytes
                    .fetch_add(len as u64, Ordering::Relaxed);
            } else {
                self.overflowed.store(true, Ordering::Release);
            }
        }
        self.notify.notify_one();
    }

    /// Empty the queue, keeping the gauge in step.
    fn take_all(&self) -> Vec<Arc<StoredMessage>> {
        let Ok(mut queue) = self.queue.lock() else {
            return Vec::new();
        };
        self.metrics
            .queued_bytes
            .fetch_sub(queue.bytes as u64, Ordering::Relaxed);
        queue.bytes = 0;
        queue.messages.drain(..).collect()
    }

    /// Make the delivery task re-read the mailbox from its cursor (a doorbell from another
    /// node, or a local commit when the store is shared): the same path as an overflow.
    pub fn mark_stale(&self) {
        self.overflowed.store(true, Ordering::Release);
        self.notify.notify_one();
    }

    /// Whether a message was left out since the last call; clears the queue if so, since the
    /// caller will re-read the mailbox anyway.
    pub fn take_overflow(&self) -> bool {
        if self.overflowed.swap(false, Ordering::AcqRel) {
            self.take_all();
            true
        } else {
            false
        }
    }

    /// Everything queued, oldest first.
    pub fn drain(&self) -> Vec<Arc<StoredMessage>> {
        self.take_all()
    }

    /// Whether a newer subscription of the same identity replaced this one.
    pub fn is_ended(&self) -> bool {
        *self.ended.borrow()
    }

    /// Resolves once a newer subscription replaced this one. Cancel-safe.
    pub async fn ended(&self) {
        let mut ended = self.ended.subscribe();
        let _ = ended.wait_for(|ended| *ended).await;
    }

    fn end(&self) {
        self.ended.send_replace(true);
        // Wake the delivery task so it sees the end.
        self.notify.notify_one();
    }
}

impl Drop for LiveQueue {
    fn drop(&mut self) {
        self.take_all();
    }
}

/// The live subscription of each connected identity.
pub struct Presence {
    subscribers: Mutex<HashMap<IdentityBytes, Arc<LiveQueue>>>,
    metrics: Arc<Metrics>,
    /// The store is shared with other nodes: wake-ups only, never queued messages.
    shared_store: bool,
}

impl Presence {
    /// No subscriptions yet; queued bytes are counted in `metrics`.
    pub fn new(metrics: Arc<Metrics>) -> Self {
        Self::with_shared_store(metrics, false)
    }

    /// Like [`Self::new`]; with `shared_store`, a commit only marks the recipient's queue
    /// stale (see the module doc) instead of queueing the message.
    pub fn with_shared_store(metrics: Arc<Metrics>, shared_store: bool) -> Self {
        Self {
            subscribers: Mutex::default(),
            metrics,
            shared_store,
        }
    }

    fn queue_of(&self, identity: &IdentityBytes) -> Option<Arc<LiveQueue>> {
        match self.subscribers.lock() {
            Ok(subs) => subs.get(identity).cloned(),
            Err(_) => None,
        }
    }

    /// Mail for `recipient` was committed elsewhere (a doorbell): if it is subscribed here,
    /// make its delivery task re-read the mailbox. Returns whether it was subscribed.
    pub fn wake(&self, recipient: &IdentityBytes) -> bool {
        match self.queue_of(recipient) {
            Some(queue) => {
                queue.mark_stale();
                true
            }
            None => false,
        }
    }

    /// Subscribe a connection of `identity`, ending the identity's previous subscription if
    /// there is one.
    pub fn subscribe(&self, identity: IdentityBytes, bounds: QueueBounds) -> Arc<LiveQueue> {
        let queue = Arc::new(LiveQueue::new(bounds, Arc::clone(&self.metrics)));
        let previous = match self.subscribers.lock() {
            Ok(mut subs) => subs.insert(identity, Arc::clone(&queue)),
            Err(_) => None,
        };
        if let Some(previous) = previous {
            previous.end();
        }
        queue
    }

    /// Remove a subscription (connection closed), unless a newer one already replaced it.
    pub fn unsubscribe(&self, identity: &IdentityBytes, queue: &Arc<LiveQueue>) {
        if let Ok(mut subs) = self.subscribers.lock() {
            if subs.get(identity).is_some_and(|q| Arc::ptr_eq(q, queue)) {
                subs.remove(identity);
            }
        }
    }

    /// Like [`Self::notify`], building the message only if `recipient` is subscribed: a group
    /// fan-out copies the envelope for online members only (offline ones read it from the
    /// stored blob when they connect).
    pub fn notify_with(&self, recipient: &IdentityBytes, make: impl FnOnce() -> StoredMessage) {
        if let Some(queue) = self.queue_of(recipient) {
            if self.shared_store {
                queue.mark_stale();
            } else {
                queue.push(Arc::new(make()));
            }
        }
    }

    /// A message was committed for `recipient`: wake its subscription. Called by the single
    /// group-commit writer in commit order, so each queue sees ids in increasing order.
    pub fn notify(&self, recipient: &IdentityBytes, message: Arc<StoredMessage>) {
        if let Some(queue) = self.queue_of(recipient) {
            if self.shared_store {
                queue.mark_stale();
            } else {
                queue.push(message);
            }
        }
    }
}
