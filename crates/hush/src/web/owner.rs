//! The task that owns the [`Client`] for `hush web` and multiplexes the sockets over it.
//!
//! Like `hush rpc`'s loop it alternates between answering queued requests and one pump step,
//! because [`Client::pump`] is not cancel-safe and so is never raced against a request. Here
//! the pump waits only [`PUMP_WAIT`], so a click in the page is answered within about that.
//! A relay failure backs off (as stdio does) without stopping the answers: sends then queue.
//!
//! Responses go to the socket that asked; notifications to every socket that called
//! `subscribe`. Messages that arrive while no socket is subscribed are held and released to
//! the next subscriber, and marked emitted once handed to a socket. The owner never waits on
//! a socket: one whose queue is full (a stuck tab) is closed.

use std::collections::BTreeMap;
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

/// What reaches the owner: from the sockets, and the shutdown signal.
#[derive(Debug)]
pub(crate) enum Inbound {
    /// A socket opened; its responses and notifications go to `tx`.
    Open { id: u64, tx: mpsc::Sender<String> },
    /// A frame from socket `id`.
    Request { id: u64, frame: Frame },
    /// Socket `id` closed.
    Closed { id: u64 },
    /// Ctrl-C or SIGTERM.
    Shutdown,
}

/// One open socket.
struct Socket {
    tx: mpsc::Sender<String>,
    caller: Caller,
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
                self.sockets.remove(&id);
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
        let Some(socket) = self.sockets.get(&id) else {
            return false;
        };
        match socket.tx.try_send(text) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                eprintln!("{LABEL}: a page is not reading its socket; closed it (it reconnects by itself)");
                self.sockets.remove(&id);
                false
            }
            Err(TrySendError::Closed(_)) => {
                self.sockets.remove(&id);
                false
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

    /// Send to every subscriber; marked emitted if at least one took it, else held again.
    fn emit(&mut self, held: Held) {
        let text = held.notification.to_string();
        let mut taken = false;
        for id in self.subscribers(|c| c.subscribed) {
            taken |= self.send(id, text.clone());
        }
        if taken {
            self.core.emitted(&held);
        } else {
            self.core.unhand(held);
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

    /// A `status` notification to the sockets that asked for them, if the relay state
    /// changed.
    fn status(&mut self) {
        self.status_at = Instant::now();
        self.connected = self.core.client.is_connected();
        let listeners = self.subscribers(Caller::gets_status);
        if listeners.is_empty() {
            return;
        }
        let Some(notification) = self.core.status_change() else {
            return;
        };
        let text = notification.to_string();
        for id in listeners {
            self.send(id, text.clone());
        }
    }
}
