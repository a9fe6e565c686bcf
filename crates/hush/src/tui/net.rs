//! The network task of `hush chat`: owns the [`Client`], takes [`NetCommand`]s from the UI and
//! reports [`NetEvent`]s back. It never cancels `Client::pump` (which is not cancel-safe once it
//! is processing a delivery): it alternates between draining commands and short pumps, and
//! while the relay is unreachable it waits out a back-off listening only to commands.

use std::collections::BTreeSet;
use std::time::Duration;

use hush_client::{Client, ClientError, Contact, DeliveryState, Event, GroupInfo, HistoryEntry};
use tokio::sync::mpsc::error::TryRecvError;
use tokio::sync::mpsc::{UnboundedReceiver, UnboundedSender};
use tokio::time::Instant;

/// How long one pump waits for a delivery before commands are looked at again.
pub const POLL: Duration = Duration::from_millis(150);
/// First reconnect delay after a failure.
pub const BACKOFF_MIN: Duration = Duration::from_secs(1);
/// Longest reconnect delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// What the UI asks of the network task.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetCommand {
    /// Encrypt, commit and (when connected) hand a text to the relay.
    Send {
        /// Contact.
        contact: String,
        /// Text.
        text: String,
    },
    /// Fetch a contact's keys and start a session.
    Add {
        /// Name on the relay.
        name: String,
    },
    /// Compute the safety number with a contact.
    SafetyNumber {
        /// Contact.
        name: String,
    },
    /// Mark a contact verified.
    ConfirmVerified {
        /// Contact.
        name: String,
    },
    /// Accept a contact's changed key.
    Trust {
        /// Contact.
        name: String,
    },
    /// Clear a contact's unread count.
    MarkRead {
        /// Contact.
        name: String,
    },
    /// Send a conversation (and keep sending it when it changes).
    LoadHistory {
        /// Contact, or `#` and a group name.
        name: String,
    },
    /// Report a group's members (for the members popup).
    GroupMembers {
        /// Group name (without `#`).
        name: String,
    },
}

/// What the network task reports.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum NetEvent {
    /// Whether a relay connection is open.
    Connection(bool),
    /// The whole contact list.
    Contacts(Vec<Contact>),
    /// Every group (sent right after the contacts).
    Groups(Vec<GroupInfo>),
    /// One group with its members, asked for by `GroupMembers`.
    GroupMembers(GroupInfo),
    /// One whole conversation, oldest first.
    History {
        /// Contact.
        contact: String,
        /// Messages.
        entries: Vec<HistoryEntry>,
    },
    /// A `Send` was handled (the history was sent just before); `error` if it failed.
    SendDone {
        /// Contact.
        contact: String,
        /// Why it failed.
        error: Option<String>,
    },
    /// A contact was added.
    Added(String),
    /// A safety number to show.
    SafetyNumber {
        /// Contact.
        contact: String,
        /// The 60 digits in three lines.
        grouped: String,
        /// Whether it is the number for a changed, not yet accepted key.
        key_changed: bool,
    },
    /// Something received (key changes and rejections are shown as notices).
    Received(Event),
    /// Informational notice.
    Info(String),
    /// Something failed.
    Error(String),
}

/// The network task's state around the client.
struct Net {
    client: Client,
    events: UnboundedSender<NetEvent>,
    connected: bool,
    /// Conversations the UI has loaded: re-sent when they may have changed.
    watched: BTreeSet<String>,
    /// Whether the outbox may hold messages whose state will change once flushed.
    maybe_queued: bool,
    last_error: Option<String>,
    /// Set when a command (re)connected while the loop was backing off.
    reconnected: bool,
}

/// Run until the UI drops its command sender.
pub async fn run(
    client: Client,
    mut commands: UnboundedReceiver<NetCommand>,
    events: UnboundedSender<NetEvent>,
) {
    let mut net = Net {
        client,
        events,
        connected: false,
        watched: BTreeSet::new(),
        maybe_queued: true,
        last_error: None,
        reconnected: false,
    };
    net.emit(NetEvent::Connection(false));
    net.send_contacts();
    let mut backoff = BACKOFF_MIN;
    let mut retry_at: Option<Instant> = None;
    loop {
        // Commands first: they are what the user is waiting for.
        loop {
            match commands.try_recv() {
                Ok(command) => net.handle(command).await,
                Err(TryRecvError::Empty) => break,
                Err(TryRecvError::Disconnected) => return,
            }
        }
        if std::mem::take(&mut net.reconnected) {
            // A command reconnected (e.g. /add): no need to wait any more.
            retry_at = None;
            backoff = BACKOFF_MIN;
        }
        if let Some(at) = retry_at {
            // Disconnected: wait for the retry time, still serving commands. Both branches are
            // cancel-safe.
            tokio::select! {
                command = commands.recv() => match command {
                    Some(command) => net.handle(command).await,
                    None => return,
                },
                () = tokio::time::sleep_until(at) => retry_at = None,
            }
            continue;
        }
        match net.pump(POLL).await {
            Ok(()) => backoff = BACKOFF_MIN,
            Err(()) => {
                retry_at = Some(Instant::now() + backoff);
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
        }
    }
}

impl Net {
    fn emit(&self, event: NetEvent) {
        // The UI is gone only when it is quitting; nothing to do then.
        let _ = self.events.send(event);
    }

    fn set_connected(&mut self, connected: bool) {
        if connected != self.connected {
            self.connected = connected;
            self.emit(NetEvent::Connection(connected));
        }
        if connected {
            self.last_error = None;
        }
    }

    /// Report an error once (repeated identical failures while retrying stay quiet).
    fn report(&mut self, error: &ClientError) {
        let text = error.to_string();
        if self.last_error.as_deref() != Some(text.as_str()) {
            self.last_error = Some(text.clone());
            self.emit(NetEvent::Error(text));
        }
    }

    fn send_contacts(&mut self) {
        match self.client.contacts() {
            Ok(list) => self.emit(NetEvent::Contacts(list)),
            Err(e) => self.emit(NetEvent::Error(e.to_string())),
        }
        match self.client.groups() {
            Ok(list) => self.emit(NetEvent::Groups(list)),
            Err(e) => self.emit(NetEvent::Error(e.to_string())),
        }
    }

    fn send_history(&mut self, name: &str) {
        match self.client.history(name) {
            Ok(entries) => self.emit(NetEvent::History {
                contact: name.to_owned(),
                entries,
            }),
            Err(e) => self.emit(NetEvent::Error(e.to_string())),
        }
    }

    fn send_watched(&mut self) {
        for name in self.watched.clone() {
            self.send_history(&name);
        }
    }

    /// One pump; events are forwarded and the affected views re-sent. `Err` means "back off".
    async fn pump(&mut self, wait: Duration) -> Result<(), ()> {
        match self.client.pump(wait).await {
            Ok(events) => {
                let reconnected = !self.connected;
                self.set_connected(self.client.is_connected());
                let received = !events.is_empty();
                // Shown in the UI: not re-emitted to a later `recv` or `rpc`.
                for event in &events {
                    if let Event::Message(message) = event {
                        if let Err(e) = self.client.mark_emitted(message) {
                            self.report(&e);
                        }
                    }
                }
                self.after_events(events);
                // Connecting, and receiving, flush the outbox: queued messages may now be on
                // the relay.
                if reconnected || (received && self.maybe_queued) {
                    self.maybe_queued = self.client.outbox_len().map_or(true, |n| n > 0);
                    self.send_watched();
                }
                Ok(())
            }
            Err(e) => {
                self.set_connected(self.client.is_connected());
                self.report(&e);
                Err(())
            }
        }
    }

    fn after_events(&mut self, events: Vec<Event>) {
        if events.is_empty() {
            return;
        }
        let mut changed = BTreeSet::new();
        for event in events {
            match &event {
                Event::Message(m) => {
                    // A group's conversation is `#NAME` (`contact` is then the sender).
                    match &m.group {
                        Some(group) => changed.insert(format!("#{group}")),
                        None => changed.insert(m.contact.clone()),
                    };
                }
                Event::Delivered { contact, .. }
                | Event::KeyChanged { contact }
                | Event::Failed { contact, .. } => {
                    changed.insert(contact.clone());
                }
                Event::Rejected { .. } | Event::Group { .. } => {}
            }
            self.emit(NetEvent::Received(event));
        }
        self.send_contacts();
        for name in changed {
            if self.watched.contains(&name) {
                self.send_history(&name);
            }
        }
    }

    /// Connect (and subscribe) through `pump` when not connected, so that a later request
    /// never opens an unsubscribed connection.
    async fn ensure_connected(&mut self) -> bool {
        if !self.client.is_connected() && self.pump(Duration::ZERO).await.is_ok() {
            self.reconnected = true;
        }
        self.client.is_connected()
    }

    async fn handle(&mut self, command: NetCommand) {
        match command {
            NetCommand::Send { contact, text } => self.send(contact, &text).await,
            NetCommand::Add { name } => {
                if !self.ensure_connected().await {
                    self.emit(NetEvent::Error(super::keys::add_offline(&name)));
                    return;
                }
                let result = self.client.add_contact(&name).await;
                self.set_connected(self.client.is_connected());
                match result {
                    Ok(contact) => {
                        self.send_contacts();
                        self.emit(NetEvent::Added(contact.name));
                    }
                    Err(e) => {
                        // A key change is recorded even though adding failed.
                        self.send_contacts();
                        self.emit(NetEvent::Error(e.to_string()));
                    }
                }
            }
            NetCommand::SafetyNumber { name } => {
                let number = self.client.safety_number(&name);
                let contact = self.client.contact(&name);
                match (number, contact) {
                    (Ok(number), Ok(contact)) => self.emit(NetEvent::SafetyNumber {
                        contact: name,
                        grouped: number.grouped(),
                        key_changed: contact.is_some_and(|c| c.changed_key.is_some()),
                    }),
                    (Err(e), _) | (_, Err(e)) => self.emit(NetEvent::Error(e.to_string())),
                }
            }
            NetCommand::ConfirmVerified { name } => match self.client.confirm_verified(&name) {
                Ok(()) => {
                    self.send_contacts();
                    self.emit(NetEvent::Info(super::keys::verified(&name)));
                }
                Err(e) => self.emit(NetEvent::Error(e.to_string())),
            },
            NetCommand::Trust { name } => match self.client.trust(&name) {
                Ok(()) => {
                    self.send_contacts();
                    self.emit(NetEvent::Info(super::keys::trusted(&name)));
                }
                Err(e) => self.emit(NetEvent::Error(e.to_string())),
            },
            NetCommand::MarkRead { name } => match self.client.mark_read(&name) {
                Ok(()) => self.send_contacts(),
                Err(e) => self.emit(NetEvent::Error(e.to_string())),
            },
            NetCommand::LoadHistory { name } => {
                self.watched.insert(name.clone());
                self.send_history(&name);
            }
            NetCommand::GroupMembers { name } => match self.client.group_info(&name) {
                Ok(info) => self.emit(NetEvent::GroupMembers(info)),
                Err(e) => self.emit(NetEvent::Error(e.to_string())),
            },
        }
    }

    /// Commit locally first (works offline), then hand the outbox over if connected.
    async fn send(&mut self, contact: String, text: &str) {
        if contact.starts_with('#') {
            return self.send_group(contact, text).await;
        }
        if self.client.is_connected() {
            // The same session check and hush-v2 upgrade as `hush send`; an unreachable relay
            // only postpones it (the text is queued on the session we have).
            match self.client.prepare_to_send(&contact).await {
                Ok(()) | Err(ClientError::Network(_) | ClientError::Relay(_)) => {}
                Err(e) => {
                    self.emit(NetEvent::SendDone {
                        contact,
                        error: Some(e.to_string()),
                    });
                    return;
                }
            }
        }
        match self.client.queue_text(&contact, text) {
            Ok(entry) => self.maybe_queued |= entry.state == DeliveryState::Queued,
            Err(e) => {
                self.emit(NetEvent::SendDone {
                    contact,
                    error: Some(e.to_string()),
                });
                return;
            }
        }
        self.watched.insert(contact.clone());
        if self.client.is_connected() {
            // Only an open connection is used: a reconnect belongs to `pump`, which subscribes.
            let flushed = self.client.flush_outbox().await;
            self.after_events(flushed.events);
            if let Some(e) = flushed.error {
                self.report(&e);
            }
            self.set_connected(self.client.is_connected());
        }
        self.send_history(&contact);
        self.emit(NetEvent::SendDone {
            contact,
            error: None,
        });
    }
}

impl Net {
    /// To a group (`#NAME`): the client settles the group's commits first, then commits and
    /// queues the message (offline, in the epoch we know) and flushes.
    async fn send_group(&mut self, group: String, text: &str) {
        let error = match self.client.send_text_reporting(&group, text).await {
            Ok(sent) => {
                self.maybe_queued |= sent.entry.state == DeliveryState::Queued;
                self.after_events(sent.events);
                if let Some(e) = sent.error {
                    self.report(&e);
                }
                None
            }
            Err(e) => Some(e.to_string()),
        };
        self.set_connected(self.client.is_connected());
        self.watched.insert(group.clone());
        self.send_history(&group);
        self.emit(NetEvent::SendDone {
            contact: group,
            error,
        });
    }
}
