//! The JSON-RPC methods and notifications of hush, independent of the transport: stdio
//! (`hush rpc`, one line per object) and the WebSocket of `hush web` (one text frame per
//! object) both hand frames to a [`Dispatcher`] and write out what it returns, so the two speak
//! exactly the same API (docs/RPC.md, whose method and notification headings tests/rpc_doc.rs
//! checks against the match arms of `call` and the names in `event_notification` and
//! `status_notification` here).
//!
//! The dispatcher owns nothing of the transport: who asked is a [`Caller`] (one for stdio, one
//! per socket), and notifications wait in its queue until the transport hands them to a
//! subscriber, then tells [`Dispatcher::emitted`] so a message is not sent again by the next run.

use std::collections::VecDeque;

use hush_client::{Client, ClientError, Contact, Event, HistoryEntry};
use serde::Deserialize;
use serde_json::{json, Value};

use super::protocol::{
    params, parse_frame, response, RpcError, APPLICATION_ERROR, INVALID_PARAMS, METHOD_NOT_FOUND,
};
use super::{MAX_PENDING, MAX_PENDING_BYTES};
use crate::cli::entry_json;

/// What the dispatcher knows about whoever sent a request: the stdio consumer, or one socket.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Caller {
    /// Called `subscribe`: notifications go to it.
    pub(crate) subscribed: bool,
    /// The relay state this caller last got (from the `status` method or notification);
    /// `None` until it calls `status`. It gets a `status` notification (when also subscribed)
    /// whenever the state differs from this one, so never the same state twice and no change
    /// missed because another caller asked. Opt-in, so consumers written before `status`
    /// existed see no new lines.
    status: Option<Status>,
}

impl Caller {
    /// Whether `status` notifications go to this caller.
    pub(crate) fn gets_status(self) -> bool {
        self.subscribed && self.status.is_some()
    }
}

/// The relay state a `status` reports: changes of it are notified.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Status {
    connected: bool,
    queued: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct NoParams {}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendParams {
    to: String,
    text: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ContactParams {
    contact: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct HistoryParams {
    contact: String,
    #[serde(default)]
    mark_read: bool,
    /// Only the newest this many entries: a page showing a preview or the end of a chat
    /// does not make the owner build (and the socket carry) a whole long history.
    #[serde(default)]
    limit: Option<u64>,
}

/// The largest `limit` of `history`.
const MAX_HISTORY_LIMIT: u64 = 10_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyParams {
    contact: String,
    #[serde(default)]
    confirm: bool,
    /// The number the user compared (spaces ignored): with `confirm`, the contact is marked
    /// verified only if it is still the current number, so a key accepted elsewhere (another
    /// tab, a bot) after the number was shown is not confirmed by mistake.
    #[serde(default)]
    safety_number: Option<String>,
}

/// The JSON shape of a contact (as `hush contacts --json`): `session` is the profile of the
/// session the next message goes on (`null` without one), `required` the weakest profile
/// accepted from the contact.
pub(crate) fn contact_json(c: &Contact, session: Option<hush_proto::Profile>) -> Value {
    json!({
        "name": c.name,
        "identity_key": c.identity_key,
        "verified": c.verified,
        "key_changed": c.changed_key.is_some(),
        "unread": c.unread,
        "session": session.map(hush_proto::Profile::name),
        "required": c.required.name(),
    })
}

/// The safety number's QR code as rows of `'1'` (dark) and `'0'`, without a quiet zone, so a
/// page draws it on a canvas without a QR encoder of its own.
fn qr_json(payload: &[u8]) -> Result<Value, RpcError> {
    let code = qrcode::QrCode::new(payload)
        .map_err(|e| ClientError::Invalid(format!("cannot make the QR code: {e}")))?;
    let size = code.width();
    let colors = code.to_colors();
    let rows: Vec<String> = colors
        .chunks(size.max(1))
        .map(|row| {
            row.iter()
                .map(|c| match c {
                    qrcode::Color::Dark => '1',
                    qrcode::Color::Light => '0',
                })
                .collect()
        })
        .collect();
    Ok(json!({ "size": size, "rows": rows }))
}

/// A notification on its way out, with the message it carries (marked emitted once a
/// transport has handed it over).
pub(crate) struct Held {
    pub(crate) notification: Value,
    pub(crate) message: Option<HistoryEntry>,
    /// What holding it costs, about: its JSON's length plus the message's text (also kept).
    bytes: usize,
}

impl Held {
    pub(crate) fn event(event: &Event) -> Self {
        let notification = event_notification(event);
        let message = match event {
            Event::Message(m) => Some(m.clone()),
            _ => None,
        };
        let bytes = notification
            .to_string()
            .len()
            .saturating_add(message.as_ref().map_or(0, |m| m.text.len()));
        Self {
            notification,
            message,
            bytes,
        }
    }

    fn message(message: HistoryEntry) -> Self {
        Self::event(&Event::Message(message))
    }
}

/// The notification for an event.
fn event_notification(event: &Event) -> Value {
    let (method, params) = match event {
        Event::Message(m) => ("message", entry_json(m)),
        Event::Delivered { contact, ids } => {
            ("delivered", json!({ "contact": contact, "ids": ids }))
        }
        Event::KeyChanged { contact } => ("key_changed", json!({ "contact": contact })),
        Event::Group { group, change } => ("group", crate::cli_group::change_json(group, change)),
        Event::Rejected { contact, reason } => {
            ("rejected", json!({ "contact": contact, "reason": reason }))
        }
        Event::Failed {
            contact,
            id,
            reason,
        } => (
            "failed",
            json!({ "contact": contact, "id": id, "reason": reason }),
        ),
    };
    json!({ "jsonrpc": "2.0", "method": method, "params": params })
}

/// The notification for a changed relay state (same params as the `status` result).
fn status_notification(status: Value) -> Value {
    let (method, params) = ("status", status);
    json!({ "jsonrpc": "2.0", "method": method, "params": params })
}

/// The first frame `hush web` sends on every socket, before any response: which run
/// (`instance`, random per process) of which profile this is. A page pins the instance it met
/// first and refuses a reconnect to a server that presents another one or none, so a tab left
/// open after `hush web` stopped does not talk to whatever process binds the port next.
pub(crate) fn hello_notification(instance: &str, name: &str) -> Value {
    let (method, params) = ("hello", json!({ "instance": instance, "name": name }));
    json!({ "jsonrpc": "2.0", "method": method, "params": params })
}

/// Notifications waiting for a subscriber, bounded by count ([`MAX_PENDING`]) and by size
/// ([`MAX_PENDING_BYTES`]): a peer sending many big messages while no page is open must not
/// grow a long-running `hush web` without bound. Beyond either, the oldest are dropped (their
/// messages stay in history and unemitted, so the next run offers them again).
struct HeldQueue {
    items: VecDeque<Held>,
    /// The sum of the items' [`Held::bytes`].
    bytes: usize,
    /// How many were dropped.
    dropped: u64,
    max_items: usize,
    max_bytes: usize,
}

impl HeldQueue {
    fn new(max_items: usize, max_bytes: usize) -> Self {
        Self {
            items: VecDeque::new(),
            bytes: 0,
            dropped: 0,
            max_items,
            max_bytes,
        }
    }

    /// Add at the end; how many of the oldest were dropped to make room.
    fn push_back(&mut self, held: Held) -> u64 {
        self.bytes = self.bytes.saturating_add(held.bytes);
        self.items.push_back(held);
        let mut dropped = 0;
        while self.items.len() > self.max_items || self.bytes > self.max_bytes {
            let Some(oldest) = self.items.pop_front() else {
                break;
            };
            self.bytes = self.bytes.saturating_sub(oldest.bytes);
            dropped += 1;
        }
        self.dropped = self.dropped.saturating_add(dropped);
        dropped
    }

    /// Put back first in line (it was in the queue, or in flight, a moment ago: not bounded
    /// again, so it is never dropped in favour of what came after it).
    fn push_front(&mut self, held: Held) {
        self.bytes = self.bytes.saturating_add(held.bytes);
        self.items.push_front(held);
    }

    fn pop_front(&mut self) -> Option<Held> {
        let held = self.items.pop_front()?;
        self.bytes = self.bytes.saturating_sub(held.bytes);
        Some(held)
    }
}

/// The methods over one [`Client`], with the notifications waiting for a subscriber.
pub(crate) struct Dispatcher<'a> {
    pub(crate) client: &'a mut Client,
    /// Notifications not yet handed to a subscriber: held before any `subscribe` (up to
    /// [`MAX_PENDING`] and [`MAX_PENDING_BYTES`]), or queued behind the response being
    /// prepared.
    pending: HeldQueue,
    /// Prefix of diagnostics on stderr (`hush rpc`, `hush web`).
    label: &'static str,
}

impl<'a> Dispatcher<'a> {
    /// A dispatcher holding, first in line, the messages an earlier run committed but never
    /// handed out (killed between the two).
    pub(crate) fn new(client: &'a mut Client, label: &'static str) -> Result<Self, String> {
        let backlog = client.unemitted_messages().map_err(|e| e.to_string())?;
        let mut dispatcher = Self {
            client,
            pending: HeldQueue::new(MAX_PENDING, MAX_PENDING_BYTES),
            label,
        };
        for message in backlog {
            dispatcher.hold(Held::message(message));
        }
        Ok(dispatcher)
    }

    /// One request frame from `caller`: the response to send back to it, if any (none for a
    /// blank frame or a JSON-RPC notification). Notifications the request caused wait in the
    /// queue ([`Self::next_held`]), to go out after the response.
    pub(crate) async fn handle(&mut self, caller: &mut Caller, frame: &[u8]) -> Option<Value> {
        let request = match parse_frame(frame) {
            Ok(Some(request)) => request,
            Ok(None) => return None,
            Err(error) => return Some(error),
        };
        let result = self.call(caller, &request.method, request.params).await;
        request.id.map(|id| response(id, result))
    }

    async fn call(
        &mut self,
        caller: &mut Caller,
        method: &str,
        raw: Option<Value>,
    ) -> Result<Value, RpcError> {
        match method {
            "send" => {
                let p: SendParams = params(raw)?;
                let sent = self.client.send_text_reporting(&p.to, &p.text).await?;
                // Other queued messages this send found undeliverable (and this one, if so).
                for event in &sent.events {
                    self.hold(Held::event(event));
                }
                let mut reply = entry_json(&sent.entry);
                // Committed and queued whatever the flush met; say what stopped it.
                if let (Some(e), Some(fields)) = (&sent.error, reply.as_object_mut()) {
                    fields.insert("error".into(), Value::String(e.to_string()));
                }
                Ok(reply)
            }
            "subscribe" | "receive" => {
                let NoParams {} = params(raw)?;
                caller.subscribed = true;
                Ok(json!({ "subscribed": true, "dropped": self.pending.dropped }))
            }
            "status" => {
                let NoParams {} = params(raw)?;
                let status = self.read_status()?;
                caller.status = Some(status);
                Ok(self.status_json(status))
            }
            "contacts" => {
                let NoParams {} = params(raw)?;
                let contacts = self.client.contacts()?;
                let mut out = Vec::with_capacity(contacts.len());
                for c in &contacts {
                    out.push(self.contact_value(c)?);
                }
                Ok(Value::Array(out))
            }
            "history" => {
                let p: HistoryParams = params(raw)?;
                let limit = match p.limit {
                    None => None,
                    Some(n @ 1..=MAX_HISTORY_LIMIT) => Some(n),
                    Some(n) => {
                        return Err(RpcError::new(
                            INVALID_PARAMS,
                            format!(
                                "invalid params: limit must be 1 to {MAX_HISTORY_LIMIT}, not {n}"
                            ),
                        ))
                    }
                };
                if !p.contact.starts_with('#') {
                    self.known_contact(&p.contact)?;
                }
                let history = self.client.history(&p.contact)?;
                if p.mark_read {
                    self.client.mark_read(&p.contact)?;
                }
                // The newest `limit`, still oldest first.
                let skip = limit
                    .and_then(|n| usize::try_from(n).ok())
                    .map_or(0, |n| history.len().saturating_sub(n));
                Ok(Value::Array(
                    history.iter().skip(skip).map(entry_json).collect(),
                ))
            }
            "verify" => {
                let p: VerifyParams = params(raw)?;
                let number = self.client.safety_number(&p.contact)?;
                if let (true, Some(shown)) = (p.confirm, &p.safety_number) {
                    let shown: String = shown.chars().filter(|c| !c.is_whitespace()).collect();
                    if shown != number.digits() {
                        return Err(RpcError {
                            code: APPLICATION_ERROR,
                            message: "the safety number changed since it was shown (the contact's key changed): nothing was confirmed; compare the new number".into(),
                            data: Some(json!({ "kind": "safety_number_changed" })),
                        });
                    }
                }
                if p.confirm {
                    self.client.confirm_verified(&p.contact)?;
                }
                let contact = self.known_contact(&p.contact)?;
                Ok(json!({
                    "contact": contact.name,
                    "safety_number": number.digits(),
                    "grouped": number.grouped(),
                    "qr_payload_hex": hex::encode(number.qr_payload()),
                    "qr": qr_json(&number.qr_payload())?,
                    "verified": contact.verified,
                    // When true, the number is for the new, not yet trusted key.
                    "key_changed": contact.changed_key.is_some(),
                    "session": self.client.session_profile(&contact.name)?.map(hush_proto::Profile::name),
                }))
            }
            "trust" => {
                let p: ContactParams = params(raw)?;
                self.client.trust(&p.contact)?;
                let contact = self.known_contact(&p.contact)?;
                self.contact_value(&contact)
            }
            "add" => {
                let p: ContactParams = params(raw)?;
                let contact = self.client.add_contact(&p.contact).await?;
                self.contact_value(&contact)
            }
            "group.create" | "group.add" | "group.remove" => self.group_call(method, raw).await,
            "group.leave" | "group.list" | "group.members" => self.group_call(method, raw).await,
            "whoami" => {
                let NoParams {} = params(raw)?;
                Ok(json!({
                    "name": self.client.name(),
                    "relay": self.client.relay(),
                    // Every address of the relay (failover), in the user's order; `relay`
                    // is the one in use or tried first.
                    "relays": self.client.relays(),
                    "fingerprint": self.client.identity_key().fingerprint(),
                }))
            }
            _ => Err(RpcError::new(
                METHOD_NOT_FOUND,
                format!("method not found: {method:?}"),
            )),
        }
    }

    /// A contact as JSON, with the profile of its current session.
    fn contact_value(&mut self, c: &Contact) -> Result<Value, RpcError> {
        let session = self.client.session_profile(&c.name)?;
        Ok(contact_json(c, session))
    }

    fn known_contact(&mut self, name: &str) -> Result<Contact, RpcError> {
        Ok(self
            .client
            .contact(name)?
            .ok_or_else(|| ClientError::NoSuchContact(name.to_owned()))?)
    }

    fn read_status(&mut self) -> Result<Status, ClientError> {
        Ok(Status {
            connected: self.client.is_connected(),
            queued: self.client.outbox_len()?,
        })
    }

    /// The relay state now (`None`, said on stderr, if the profile cannot be read).
    pub(crate) fn status_now(&mut self) -> Option<Status> {
        match self.read_status() {
            Ok(status) => Some(status),
            Err(e) => {
                eprintln!(
                    "{}: cannot read the outbox: {}",
                    self.label,
                    crate::sanitize::line(&e.to_string())
                );
                None
            }
        }
    }

    fn status_json(&self, status: Status) -> Value {
        json!({
            "connected": status.connected,
            "queued": status.queued,
            "name": self.client.name(),
        })
    }

    /// The `status` notification for `caller` if it listens and last got another state than
    /// `now` (the transports check after every request and pump step).
    pub(crate) fn status_update(&self, caller: &mut Caller, now: Status) -> Option<Value> {
        if !caller.gets_status() || caller.status == Some(now) {
            return None;
        }
        caller.status = Some(now);
        Some(status_notification(self.status_json(now)))
    }

    /// Queue a notification behind the response being prepared (handed out after it when
    /// someone is subscribed, or held until a `subscribe`).
    pub(crate) fn hold(&mut self, notification: Held) {
        let first = self.pending.dropped == 0;
        if self.pending.push_back(notification) > 0 && first {
            eprintln!(
                "{}: more than {MAX_PENDING} notifications or {} MiB of them before subscribe; dropping the oldest (messages stay in history, and unemitted ones are sent again by the next run)",
                self.label,
                MAX_PENDING_BYTES >> 20
            );
        }
    }

    /// The oldest notification waiting for a subscriber.
    pub(crate) fn next_held(&mut self) -> Option<Held> {
        self.pending.pop_front()
    }

    /// Put back a notification no subscriber could take, first in line.
    pub(crate) fn unhand(&mut self, held: Held) {
        self.pending.push_front(held);
    }

    /// A transport handed `held` to a subscriber: its message is not sent again by the next
    /// run.
    pub(crate) fn emitted(&mut self, held: &Held) {
        if let Some(message) = &held.message {
            if let Err(e) = self.client.mark_emitted(message) {
                // It is sent again by the next run: a duplicate, never a loss.
                eprintln!(
                    "{}: cannot record a message as emitted: {}",
                    self.label,
                    crate::sanitize::line(&e.to_string())
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_are_named_and_strict() {
        use super::super::protocol::INVALID_PARAMS;
        assert!(params::<NoParams>(None).is_ok());
        assert!(params::<NoParams>(Some(json!({}))).is_ok());
        let err = params::<SendParams>(Some(json!(["bob", "hi"]))).unwrap_err();
        assert_eq!(err.code, INVALID_PARAMS);
        let err = params::<SendParams>(Some(json!({"to": "bob"}))).unwrap_err();
        assert_eq!(err.code, INVALID_PARAMS);
        let err = params::<SendParams>(Some(json!({"to": "bob", "txt": "x"}))).unwrap_err();
        assert_eq!(err.code, INVALID_PARAMS);
        let p = params::<VerifyParams>(Some(json!({"contact": "bob"}))).unwrap();
        assert!(!p.confirm);
    }

    /// A held notification of a message of `text_len` control characters (6 bytes each in
    /// JSON, the worst case).
    fn big(text_len: usize, n: usize) -> Held {
        let notification = json!({
            "jsonrpc": "2.0",
            "method": "message",
            "params": { "n": n, "text": "\u{1}".repeat(text_len) },
        });
        let bytes = notification.to_string().len() + text_len;
        Held {
            notification,
            message: None,
            bytes,
        }
    }

    #[test]
    fn held_notifications_are_capped_by_bytes_oldest_dropped() {
        let mut queue = HeldQueue::new(MAX_PENDING, MAX_PENDING_BYTES);
        // 100 maximal messages (56 KiB, ~340 KiB of JSON each): far over 16 MiB.
        for n in 0..100 {
            queue.push_back(big(56 * 1024, n));
        }
        assert!(queue.bytes <= MAX_PENDING_BYTES, "{}", queue.bytes);
        let sum: usize = queue.items.iter().map(|h| h.bytes).sum();
        assert_eq!(sum, queue.bytes);
        assert!(queue.dropped > 0);
        assert_eq!(queue.dropped as usize + queue.items.len(), 100);
        // The newest are kept, in order.
        let kept: Vec<u64> = queue
            .items
            .iter()
            .map(|h| h.notification["params"]["n"].as_u64().unwrap())
            .collect();
        let first = 100 - kept.len() as u64;
        assert_eq!(kept, (first..100).collect::<Vec<_>>());
        // Taking one out frees its bytes; putting it back counts them again.
        let held = queue.pop_front().unwrap();
        let after = queue.bytes;
        queue.push_front(held);
        assert!(queue.bytes > after);
        assert_eq!(queue.items.len(), kept.len());
    }

    #[test]
    fn held_notifications_are_capped_by_count() {
        let mut queue = HeldQueue::new(3, MAX_PENDING_BYTES);
        let dropped: u64 = (0..5).map(|n| queue.push_back(big(1, n))).sum();
        assert_eq!(dropped, 2);
        assert_eq!(queue.dropped, 2);
        assert_eq!(queue.items.len(), 3);
    }

    #[test]
    fn qr_rows_are_a_square_of_bits() {
        let qr = qr_json(&[7u8; 80]).unwrap();
        let size = qr["size"].as_u64().unwrap() as usize;
        let rows = qr["rows"].as_array().unwrap();
        assert!(size >= 21, "{size}");
        assert_eq!(rows.len(), size);
        for row in rows {
            let row = row.as_str().unwrap();
            assert_eq!(row.len(), size);
            assert!(row.chars().all(|c| c == '0' || c == '1'));
        }
        // The finder pattern's top row: seven dark modules in the corner.
        assert!(rows[0].as_str().unwrap().starts_with("1111111"));
    }
}
