//! The task that owns the [`Client`] for `hush web` and multiplexes the sockets over it.
//!
//! Like `hush rpc`'s loop it alternates between answering queued requests and one pump step,
//! because [`Client::pump`] is not cancel-safe and so is never raced against a request. Here
//! the pump waits only [`PUMP_WAIT`], so a click in the page is answered within about that.
//! A relay failure backs off (as stdio does) without stopping the answers: sends then queue.
//!
//! Responses go to the socket that asked; notifications to every socket that called
//! `subscribe`. Messages that arrive while no socket is subscribed are held and released to
//! the next subscriber. A message is marked emitted only once a socket reports that it wrote
//! the frame ([`Inbound::Written`]); if every socket it went to closes first, it is held again
//! (and, if the process stops before that, the next run offers it again). The owner never
//! waits on a socket: one whose queue is full (a stuck tab) is closed.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::json;
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::{TryRecvError, TrySendError};
use tokio::time::Instant;

use super::LABEL;
use crate::rpc::backoff::Backoff;
use crate::rpc::dispatch::{Caller, Dispatcher, Held};
use crate::rpc::protocol::{too_long, INVALID_REQUEST};
use crate::rpc::MAX_LINE;

/// How long one pump step waits for a delivery: the latency a request may see.
const PUMP_WAIT: Duration = Duration::from_millis(25);
/// Inbox items handled per round, so a flood of requests cannot starve the relay.
const PER_ROUND: usize = 64;
/// How often an idle pump step re-reads the outbox length for `status` (reading it opens a
/// transaction and decrypts every queued row: not 40 times a second). A step that received
/// something, or whose connection came or went, checks at once.
const STATUS_EVERY: Duration = Duration::from_millis(250);

/// What a socket's frame was.
#[derive(Debug)]
pub(crate) enum Frame {
    /// A text frame within [`MAX_LINE`].
    Text(String),
    /// A text frame over [`MAX_LINE`] (its length), discarded.
    TooLong(usize),
    /// A binary frame: not part of the protocol.
    Binary,
}

/// A frame for a socket to write.
#[derive(Debug)]
pub(crate) struct Outbound {
    pub(crate) text: String,
    /// For a message notification: report [`Inbound::Written`] with this once written.
    pub(crate) seq: Option<u64>,
}

/// What reaches the owner: from the sockets, and the shutdown signal.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A socket opened; its responses and notifications go to `tx`.
    Open { id: u64, tx: mpsc::Sender<Outbound> },
    /// A frame from socket `id`.
    Request { id: u64, frame: Frame },
    /// Socket `id` wrote the message notification `seq`.
    Written { id: u64, seq: u64 },
    /// Socket `id` closed.
    Closed { id: u64 },
    /// Ctrl-C or SIGTERM.
    Shutdown,
}

/// One open socket.
struct Socket {
    tx: mpsc::Sender<Outbound>,
    caller: Caller,
}

/// A message notification queued to sockets, not yet written by any of them.
struct InFlight {
    held: Held,
    /// The sockets it is queued to.
    sockets: BTreeSet<u64>,
}

/// Wait for Ctrl-C or SIGTERM, then tell the owner to stop (after the request it is on).
pub(crate) async fn forward_shutdown(inbox: mpsc::Sender<Inbound>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
    let _ = inbox.send(Inbound::Shutdown).await;
}

/// Serve the sockets until shutdown (or until no sender of the inbox is left).
pub(crate) async fn serve(core: &mut Dispatcher<'_>, mut inbox: mpsc::Receiver<Inbound>) {
    let mut owner = Owner {
        connected: core.client.is_connected(),
        core,
        sockets: BTreeMap::new(),
        in_flight: BTreeMap::new(),
        next_seq: 0,
        status_at: Instant::now(),
    };
    let mut backoff = Backoff::new(LABEL);
    loop {
        for _ in 0..PER_ROUND {
            match inbox.try_recv() {
                Ok(Inbound::Shutdown) | Err(TryRecvError::Disconnected) => return,
                Ok(inbound) => owner.inbound(inbound).await,
                Err(TryRecvError::Empty) => break,
            }
        }
        if backoff.due() {
            let received = match owner.core.client.pump(PUMP_WAIT).await {
                Ok(events) => {
                    backoff.succeeded();
                    for event in &events {
                        owner.notify(Held::event(event));
                    }
                    // Messages given back by a socket that failed on the way.
                    owner.release_held();
                    !events.is_empty()
                }
                Err(e) => {
                    backoff.failed(&e);
                    false
                }
            };
            owner.status_after_pump(received);
        } else {
            // The relay is backing off: wait for a request or the next attempt (both
            // cancel-safe).
            tokio::select! {
                inbound = inbox.recv() => match inbound {
                    Some(Inbound::Shutdown) | None => return,
                    Some(inbound) => owner.inbound(inbound).await,
                },
                () = tokio::time::sleep_until(backoff.next_at) => {}
            }
        }
    }
}

struct Owner<'c, 'a> {
    core: &'c mut Dispatcher<'a>,
    sockets: BTreeMap<u64, Socket>,
    /// Message notifications queued to sockets and not yet written, by sequence number.
    in_flight: BTreeMap<u64, InFlight>,
    next_seq: u64,
    /// When the relay state was last checked, and whether the client was connected then.
    status_at: Instant,
    connected: bool,
}

impl Owner<'_, '_> {
    async fn inbound(&mut self, inbound: Inbound) {
        match inbound {
            Inbound::Open { id, tx } => {
                self.sockets.insert(
                    id,
                    Socket {
                        tx,
                        caller: Caller::default(),
                    },
                );
            }
            Inbound::Closed { id } => {
                self.forget(id);
                self.release_held();
            }
            Inbound::Written { id, seq } => {
                // The first socket that wrote it; later reports of the same are ignored.
                let queued_to_it = self
                    .in_flight
                    .get(&seq)
                    .is_some_and(|flight| flight.sockets.contains(&id));
                if let Some(done) = queued_to_it.then(|| self.in_flight.remove(&seq)).flatten() {
                    self.core.emitted(&done.held);
                }
            }
            Inbound::Request { id, frame } => self.request(id, frame).await,
            // Handled by the loop.
            Inbound::Shutdown => {}
        }
    }

    /// Answer one frame to its socket, then hand out what it caused.
    async fn request(&mut self, id: u64, frame: Frame) {
        let Some(mut caller) = self.sockets.get(&id).map(|s| s.caller) else {
            // Closed (by us, its queue was full) before its frames were read.
            return;
        };
        let response = match frame {
            Frame::Text(text) => self.core.handle(&mut caller, text.as_bytes()).await,
            Frame::TooLong(len) => Some(too_long(len, MAX_LINE)),
            Frame::Binary => Some(json!({
                "jsonrpc": "2.0",
                "id": null,
                "error": {
                    "code": INVALID_REQUEST,
                    "message": "binary frames are not supported; send one JSON-RPC request per text frame",
                },
            })),
        };
        if let Some(socket) = self.sockets.get_mut(&id) {
            socket.caller = caller;
        }
        if let Some(response) = response {
            self.send(id, response.to_string());
        }
        self.release_held();
        self.status();
    }

    /// Queue a frame for one socket; a socket that cannot take it is closed.
    fn send(&mut self, id: u64, text: String) -> bool {
        self.send_frame(id, Outbound { text, seq: None })
    }

    fn send_frame(&mut self, id: u64, frame: Outbound) -> bool {
        let Some(socket) = self.sockets.get(&id) else {
            return false;
        };
        match socket.tx.try_send(frame) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                eprintln!("{LABEL}: a page is not reading its socket; closed it (it reconnects by itself)");
                self.forget(id);
                false
            }
            Err(TrySendError::Closed(_)) => {
                self.forget(id);
                false
            }
        }
    }

    /// Drop socket `id` (closed, or closed by us): a message queued to it and to no other
    /// socket still open was not written, and is held again, first in line and in order.
    fn forget(&mut self, id: u64) {
        self.sockets.remove(&id);
        let mut orphans = Vec::new();
        for (seq, flight) in &mut self.in_flight {
            if flight.sockets.remove(&id) && flight.sockets.is_empty() {
                orphans.push(*seq);
            }
        }
        // Newest first, each put in front: the oldest ends up first.
        for seq in orphans.into_iter().rev() {
            if let Some(flight) = self.in_flight.remove(&seq) {
                self.core.unhand(flight.held);
            }
        }
    }

    fn subscribers(&self, wants: impl Fn(Caller) -> bool) -> Vec<u64> {
        self.sockets
            .iter()
            .filter(|(_, s)| wants(s.caller))
            .map(|(id, _)| *id)
            .collect()
    }

    /// Hand a notification to every subscriber now, or hold it until one subscribes.
    fn notify(&mut self, held: Held) {
        if self.subscribers(|c| c.subscribed).is_empty() {
            self.core.hold(held);
        } else {
            self.emit(held);
        }
    }

    /// Hand out what the dispatcher holds, in order, while anyone is subscribed.
    fn release_held(&mut self) {
        while !self.subscribers(|c| c.subscribed).is_empty() {
            let Some(held) = self.core.next_held() else {
                return;
            };
            self.emit(held);
        }
    }

    /// Send to every subscriber; held again if none took it. A message is marked emitted
    /// when the first socket reports it written ([`Inbound::Written`]), not here.
    fn emit(&mut self, held: Held) {
        let text = held.notification.to_string();
        let seq = held.message.is_some().then(|| {
            self.next_seq = self.next_seq.wrapping_add(1);
            self.next_seq
        });
        let mut took = BTreeSet::new();
        for id in self.subscribers(|c| c.subscribed) {
            let frame = Outbound {
                text: text.clone(),
                seq,
            };
            if self.send_frame(id, frame) {
                took.insert(id);
            }
        }
        // A socket that took it may have been closed by a later send in this loop.
        took.retain(|id| self.sockets.contains_key(id));
        match seq {
            _ if took.is_empty() => self.core.unhand(held),
            Some(seq) => {
                self.in_flight.insert(
                    seq,
                    InFlight {
                        held,
                        sockets: took,
                    },
                );
            }
            None => {}
        }
    }

    /// [`Self::status`] after a pump step: at once if it received something or the
    /// connection came or went, else at most every [`STATUS_EVERY`].
    fn status_after_pump(&mut self, received: bool) {
        if received
            || self.core.client.is_connected() != self.connected
            || self.status_at.elapsed() >= STATUS_EVERY
        {
            self.status();
        }
    }

    /// A `status` notification to each socket that asked for them and has not seen the
    /// relay state as it is now.
    fn status(&mut self) {
        self.status_at = Instant::now();
        self.connected = self.core.client.is_connected();
        let listeners = self.subscribers(Caller::gets_status);
        if listeners.is_empty() {
            return;
        }
        let Some(now) = self.core.status_now() else {
            return;
        };
        for id in listeners {
            let Some(socket) = self.sockets.get_mut(&id) else {
                continue;
            };
            if let Some(notification) = self.core.status_update(&mut socket.caller, now) {
                self.send(id, notification.to_string());
            }
        }
    }
}
