//! Who is connected and subscribed, and a small bounded in-memory queue per subscription for
//! fast live delivery. When a queue is full, the message is not dropped: it is already durable
//! in the mailbox, and the connection re-reads the mailbox once it catches up.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::store::{IdentityBytes, StoredMessage};

/// A subscribed connection's live queue.
pub struct LiveQueue {
    queue: Mutex<VecDeque<Arc<StoredMessage>>>,
    overflowed: AtomicBool,
    /// Signalled on every push or overflow (a permit is kept if nobody waits).
    pub notify: Notify,
    capacity: usize,
}

impl LiveQueue {
    fn new(capacity: usize) -> Self {
        Self {
            queue: Mutex::new(VecDeque::with_capacity(capacity.min(1024))),
            overflowed: AtomicBool::new(false),
            notify: Notify::new(),
            capacity,
        }
    }

    fn push(&self, message: Arc<StoredMessage>) {
        if let Ok(mut queue) = self.queue.lock() {
            if queue.len() < self.capacity {
                queue.push_back(message);
            } else {
                self.overflowed.store(true, Ordering::Release);
            }
        }
        self.notify.notify_one();
    }

    /// Whether a message was left out since the last call; clears the queue if so, since the
    /// caller will re-read the mailbox anyway.
    pub fn take_overflow(&self) -> bool {
        if self.overflowed.swap(false, Ordering::AcqRel) {
            if let Ok(mut queue) = self.queue.lock() {
                queue.clear();
            }
            true
        } else {
            false
        }
    }

    /// Everything queued, oldest first.
    pub fn drain(&self) -> Vec<Arc<StoredMessage>> {
        self.queue
            .lock()
            .map(|mut q| q.drain(..).collect())
            .unwrap_or_default()
    }
}

/// The subscriptions of all connected identities.
#[derive(Default)]
pub struct Presence {
    subscribers: Mutex<HashMap<IdentityBytes, Vec<Arc<LiveQueue>>>>,
}

impl Presence {
    /// Subscribe a connection of `identity`.
    pub fn subscribe(&self, identity: IdentityBytes, capacity: usize) -> Arc<LiveQueue> {
        let queue = Arc::new(LiveQueue::new(capacity));
        if let Ok(mut subs) = self.subscribers.lock() {
            subs.entry(identity).or_default().push(Arc::clone(&queue));
        }
        queue
    }

    /// Remove a subscription (connection closed).
    pub fn unsubscribe(&self, identity: &IdentityBytes, queue: &Arc<LiveQueue>) {
        if let Ok(mut subs) = self.subscribers.lock() {
            if let Some(list) = subs.get_mut(identity) {
                list.retain(|q| !Arc::ptr_eq(q, queue));
                if list.is_empty() {
                    subs.remove(identity);
                }
            }
        }
    }

    /// A message was committed for `recipient`: wake its subscriptions. Called by the single
    /// group-commit writer in commit order, so each queue sees ids in increasing order.
    pub fn notify(&self, recipient: &IdentityBytes, message: Arc<StoredMessage>) {
        let queues: Vec<Arc<LiveQueue>> = match self.subscribers.lock() {
            Ok(subs) => subs.get(recipient).cloned().unwrap_or_default(),
            Err(_) => return,
        };
        for queue in queues {
            queue.push(Arc::clone(&message));
        }
    }
}
