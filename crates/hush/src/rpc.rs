//! `hush rpc`: JSON-RPC 2.0 over stdin/stdout, one JSON object per line, for bots and other
//! programs. The reference for its users is docs/RPC.md (checked against this file by
//! tests/rpc_doc.rs). Messages reach the consumer at least once: one committed but not yet
//! written out when the process died is held again by the next run.
//!
//! One task owns the [`Client`]. A dedicated thread reads stdin (a blocking read that never
//! holds up runtime shutdown) and hands complete lines over a bounded channel. The owner
//! alternates: it answers every queued request, then calls [`Client::pump`] with a short wait.
//! `pump` is never cancelled (it is not cancel-safe once a delivery is being processed), so a
//! request waits at most one pump step.
//!
//! Requests (params by name): `send` {to, text}, `subscribe` (alias `receive`) {},
//! `contacts` {}, `history` {contact, mark_read?}, `verify` {contact, confirm?},
//! `trust` {contact}, `add` {contact}, `whoami` {}, and `group.*` (in [`groups`]); `send` and
//! `history` take `#NAME` for a group. Notifications after `subscribe`: `message`,
//! `delivered`, `key_changed`, `group`, `rejected`, and `failed` {contact, id, reason} (a
//! message we sent will never be delivered: the recipient is gone, or the relay refused it for
//! too long); those that happen earlier are held (up to [`MAX_PENDING`]) and sent right after
//! the `subscribe` response. A message's `state` is `queued`, `on relay`, `delivered`,
//! `received` or `failed`; `failure` says why a queued one was refused or a failed one failed.
//!
//! stdout carries only JSON lines, flushed one by one; diagnostics go to stderr. Nothing
//! secret is ever written. EOF on stdin: queued requests are answered, the outbox is flushed,
//! and the process exits 0.

use std::collections::VecDeque;
use std::io::BufRead;
use std::process::ExitCode;
use std::time::Duration;

use hush_client::{Client, ClientError, Contact, Event, HistoryEntry};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::AsyncWriteExt;
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::cli::entry_json;

mod groups;

/// Longest request line accepted (bytes); a longer one is discarded and answered with -32600.
pub const MAX_LINE: usize = 1 << 20;
/// Notifications held until the client subscribes; beyond this the oldest are dropped.
pub const MAX_PENDING: usize = 10_000;
/// How long one pump step waits for a delivery, which bounds the latency of a request.
const PUMP_WAIT: Duration = Duration::from_millis(200);
/// Lines read ahead of the owner task.
const INPUT_QUEUE: usize = 64;
/// First and longest delay before retrying the relay after a failure.
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

const PARSE_ERROR: i64 = -32700;
const INVALID_REQUEST: i64 = -32600;
const METHOD_NOT_FOUND: i64 = -32601;
const INVALID_PARAMS: i64 = -32602;
const APPLICATION_ERROR: i64 = -32000;

/// What the stdin thread hands over.
enum Input {
    /// One line, without its terminator.
    Line(Vec<u8>),
    /// A line longer than [`MAX_LINE`] (its length), already discarded.
    TooLong(usize),
    /// End of input.
    Eof,
    /// Reading failed.
    Failed(std::io::Error),
}

/// Serve JSON-RPC on stdin/stdout until EOF.
pub async fn run(client: &mut Client) -> Result<ExitCode, String> {
    let (tx, mut rx) = mpsc::channel(INPUT_QUEUE);
    std::thread::Builder::new()
        .name("hush-rpc-stdin".into())
        .spawn(move || read_stdin(&tx))
        .map_err(|e| format!("cannot start the stdin reader: {e}"))?;
    eprintln!(
        "hush rpc: serving JSON-RPC 2.0 on stdin/stdout as {}",
        crate::sanitize::line(client.name())
    );
    let mut rpc = Rpc {
        client,
        stdout: tokio::io::stdout(),
        subscribed: false,
        pending: VecDeque::new(),
        dropped: 0,
    };
    // Messages a killed earlier run committed but never wrote out: first in line.
    let backlog = rpc.client.unemitted_messages().map_err(|e| e.to_string())?;
    for message in backlog {
        rpc.hold(Held::message(message));
    }
    let outcome = rpc.serve(&mut rx).await;
    // Finish pending work: whatever is still queued (receipts, sends that met a relay
    // outage) gets one more chance. It stays committed in the profile either way.
    // Messages it gives up are announced even if it then stops on an error.
    let flushed = rpc.client.flush_outbox().await;
    for event in &flushed.events {
        if let Err(e) = rpc.emit(Held::event(event)).await {
            eprintln!("hush rpc: {}", crate::sanitize::line(&e));
            break;
        }
    }
    if let Some(e) = flushed.error {
        eprintln!(
            "hush rpc: could not flush the outbox ({}); it will be sent by the next command that connects",
            crate::sanitize::line(&e.to_string())
        );
    }
    outcome.map(|()| ExitCode::SUCCESS)
}

/// The stdin thread: complete lines, bounded in length, until EOF or the owner goes away.
fn read_stdin(tx: &mpsc::Sender<Input>) {
    let stdin = std::io::stdin();
    let mut reader = stdin.lock();
    loop {
        let input = match read_line(&mut reader, MAX_LINE) {
            Ok(None) => Input::Eof,
            Ok(Some(Ok(line))) => Input::Line(line),
            Ok(Some(Err(len))) => Input::TooLong(len),
            Err(e) => Input::Failed(e),
        };
        let last = matches!(input, Input::Eof | Input::Failed(_));
        if tx.blocking_send(input).is_err() || last {
            return;
        }
    }
}

/// One line without its `\n`: `Ok(None)` at EOF, `Err(len)` for a line over `max` bytes
/// (consumed and discarded). A final line without a terminator counts.
fn read_line(
    reader: &mut impl BufRead,
    max: usize,
) -> std::io::Result<Option<Result<Vec<u8>, usize>>> {
    let mut line = Vec::new();
    let mut len = 0usize;
    let mut seen_any = false;
    loop {
        let buf = match reader.fill_buf() {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if buf.is_empty() {
            if !seen_any {
                return Ok(None);
            }
            break;
        }
        seen_any = true;
        let newline = buf.iter().position(|&b| b == b'\n');
        let chunk = match newline {
            Some(i) => buf.get(..i).unwrap_or_default(),
            None => buf,
        };
        len = len.saturating_add(chunk.len());
        if len <= max {
            line.extend_from_slice(chunk);
        } else {
            line = Vec::new();
        }
        let used = newline.map_or(buf.len(), |i| i + 1);
        reader.consume(used);
        if newline.is_some() {
            break;
        }
    }
    if len > max {
        return Ok(Some(Err(len)));
    }
    if line.last() == Some(&b'\r') {
        line.pop();
    }
    Ok(Some(Ok(line)))
}

/// A JSON-RPC error object.
#[derive(Debug)]
struct RpcError {
    code: i64,
    message: String,
    data: Option<Value>,
}

impl RpcError {
    fn new(code: i64, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            data: None,
        }
    }
}

impl From<ClientError> for RpcError {
    fn from(e: ClientError) -> Self {
        let kind = match &e {
            ClientError::Store(_) => "store",
            ClientError::Network(_) => "network",
            ClientError::RelayKeyChanged => "relay_key_changed",
            ClientError::Relay(_) => "relay",
            ClientError::UnknownUser(_) => "unknown_user",
            ClientError::KeyChanged(_) => "key_changed",
            ClientError::Downgrade { .. } => "downgrade",
            ClientError::NoSuchContact(_) => "no_such_contact",
            ClientError::Session { .. } => "session",
            ClientError::Encrypt(_) => "encrypt",
            ClientError::Invalid(_) => "invalid",
            ClientError::Group(_) => "group",
            _ => "other",
        };
        Self {
            code: APPLICATION_ERROR,
            message: e.to_string(),
            data: Some(json!({ "kind": kind })),
        }
    }
}

/// A well-formed request.
struct Request {
    /// `None` for a notification (no response).
    id: Option<Value>,
    method: String,
    params: Option<Value>,
}

/// Check the envelope of a request; on failure, the id to answer with and why.
fn parse_request(value: Value) -> Result<Request, (Value, String)> {
    let mut obj = match value {
        Value::Object(obj) => obj,
        Value::Array(_) => {
            return Err((
                Value::Null,
                "batch requests are not supported; send one object per line".into(),
            ))
        }
        _ => return Err((Value::Null, "a request must be a JSON object".into())),
    };
    let id = obj.remove("id");
    if !matches!(
        id,
        None | Some(Value::Null | Value::String(_) | Value::Number(_))
    ) {
        return Err((Value::Null, "id must be a string, a number or null".into()));
    }
    let reply_id = id.clone().unwrap_or(Value::Null);
    if obj.get("jsonrpc").and_then(Value::as_str) != Some("2.0") {
        return Err((reply_id, "jsonrpc must be \"2.0\"".into()));
    }
    let method = match obj.remove("method") {
        Some(Value::String(m)) => m,
        Some(_) => return Err((reply_id, "method must be a string".into())),
        None => return Err((reply_id, "missing method".into())),
    };
    let params = match obj.remove("params") {
        None | Some(Value::Null) => None,
        Some(p @ (Value::Object(_) | Value::Array(_))) => Some(p),
        Some(_) => return Err((reply_id, "params must be an object".into())),
    };
    Ok(Request { id, method, params })
}

/// Named params into `T`; absent params are an empty object.
fn params<T: DeserializeOwned>(params: Option<Value>) -> Result<T, RpcError> {
    let value = match params {
        None => Value::Object(serde_json::Map::new()),
        Some(Value::Array(_)) => {
            return Err(RpcError::new(
                INVALID_PARAMS,
                "params must be an object (by name), not an array",
            ))
        }
        Some(v) => v,
    };
    serde_json::from_value(value)
        .map_err(|e| RpcError::new(INVALID_PARAMS, format!("invalid params: {e}")))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NoParams {}

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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyParams {
    contact: String,
    #[serde(default)]
    confirm: bool,
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

/// A notification on its way out, with the message it carries (marked emitted once the line
/// is flushed).
struct Held {
    notification: Value,
    message: Option<HistoryEntry>,
}

impl Held {
    fn event(event: &Event) -> Self {
        Self {
            notification: event_notification(event),
            message: match event {
                Event::Message(m) => Some(m.clone()),
                _ => None,
            },
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

fn response(id: Value, result: Result<Value, RpcError>) -> Value {
    match result {
        Ok(result) => json!({ "jsonrpc": "2.0", "id": id, "result": result }),
        Err(e) => {
            let mut error = json!({ "code": e.code, "message": e.message });
            if let (Some(data), Some(obj)) = (e.data, error.as_object_mut()) {
                obj.insert("data".into(), data);
            }
            json!({ "jsonrpc": "2.0", "id": id, "error": error })
        }
    }
}

/// Whether to keep serving.
#[derive(PartialEq, Eq)]
enum Flow {
    Continue,
    Stop,
}

/// Retry pacing for the relay after failures.
struct Backoff {
    next_at: Instant,
    delay: Duration,
    last_error: Option<String>,
}

impl Backoff {
    fn succeeded(&mut self) {
        if self.last_error.take().is_some() {
            eprintln!("hush rpc: relay connection restored");
        }
        self.delay = RETRY_MIN;
    }

    fn failed(&mut self, error: &ClientError) {
        // Shown on stderr, and relay error texts are the relay's words: sanitised.
        let text = crate::sanitize::line(&error.to_string());
        if self.last_error.is_none() {
            // The first failure after working is usually a dropped connection (relay idle
            // timeout or restart): reconnect at once.
            eprintln!("hush rpc: relay: {text}; reconnecting");
            self.next_at = Instant::now();
            self.delay = RETRY_MIN;
        } else {
            if self.last_error.as_deref() != Some(text.as_str()) {
                eprintln!(
                    "hush rpc: relay: {text}; retrying in {} s",
                    self.delay.as_secs()
                );
            }
            self.next_at = Instant::now() + self.delay;
            self.delay = (self.delay * 2).min(RETRY_MAX);
        }
        self.last_error = Some(text);
    }
}

struct Rpc<'a> {
    client: &'a mut Client,
    stdout: tokio::io::Stdout,
    /// Whether notifications go out (after `subscribe`) or are held in `pending`.
    subscribed: bool,
    pending: VecDeque<Held>,
    /// Notifications dropped because `pending` was full.
    dropped: u64,
}

impl Rpc<'_> {
    /// Alternate between answering queued requests and one pump step, until EOF.
    async fn serve(&mut self, rx: &mut mpsc::Receiver<Input>) -> Result<(), String> {
        let mut backoff = Backoff {
            next_at: Instant::now(),
            delay: RETRY_MIN,
            last_error: None,
        };
        loop {
            // At most one queue's worth per round, so a flood of requests cannot starve the
            // relay.
            for _ in 0..INPUT_QUEUE {
                match rx.try_recv() {
                    Ok(input) => {
                        if self.input(input).await? == Flow::Stop {
                            return Ok(());
                        }
                    }
                    Err(mpsc::error::TryRecvError::Empty) => break,
                    Err(mpsc::error::TryRecvError::Disconnected) => return Ok(()),
                }
            }
            if Instant::now() >= backoff.next_at {
                match self.client.pump(PUMP_WAIT).await {
                    Ok(events) => {
                        backoff.succeeded();
                        for event in &events {
                            self.notify(Held::event(event)).await?;
                        }
                    }
                    Err(e) => backoff.failed(&e),
                }
            } else {
                // Relay is backing off: wait for a request or the next attempt. Both are
                // cancel-safe.
                tokio::select! {
                    input = rx.recv() => match input {
                        Some(input) => {
                            if self.input(input).await? == Flow::Stop {
                                return Ok(());
                            }
                        }
                        None => return Ok(()),
                    },
                    () = tokio::time::sleep_until(backoff.next_at) => {}
                }
            }
        }
    }

    async fn input(&mut self, input: Input) -> Result<Flow, String> {
        match input {
            Input::Line(line) => {
                self.line(&line).await?;
                Ok(Flow::Continue)
            }
            Input::TooLong(len) => {
                let error = RpcError::new(
                    INVALID_REQUEST,
                    format!("request of {len} bytes exceeds the limit of {MAX_LINE}"),
                );
                self.write(&response(Value::Null, Err(error))).await?;
                Ok(Flow::Continue)
            }
            Input::Eof => Ok(Flow::Stop),
            Input::Failed(e) => {
                eprintln!("hush rpc: cannot read stdin: {e}");
                Ok(Flow::Stop)
            }
        }
    }

    /// One request line: answer it (unless it is a notification), then release held
    /// notifications if it subscribed.
    async fn line(&mut self, line: &[u8]) -> Result<(), String> {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Ok(());
        }
        let value: Value = match serde_json::from_slice(line) {
            Ok(v) => v,
            Err(e) => {
                let error = RpcError::new(PARSE_ERROR, format!("parse error: {e}"));
                return self.write(&response(Value::Null, Err(error))).await;
            }
        };
        let request = match parse_request(value) {
            Ok(r) => r,
            Err((id, message)) => {
                let error = RpcError::new(INVALID_REQUEST, message);
                return self.write(&response(id, Err(error))).await;
            }
        };
        let result = self.call(&request.method, request.params).await;
        if let Some(id) = request.id {
            self.write(&response(id, result)).await?;
        }
        if self.subscribed {
            while let Some(held) = self.pending.pop_front() {
                self.emit(held).await?;
            }
        }
        Ok(())
    }

    async fn call(&mut self, method: &str, raw: Option<Value>) -> Result<Value, RpcError> {
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
                self.subscribed = true;
                Ok(json!({ "subscribed": true, "dropped": self.dropped }))
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
                if !p.contact.starts_with('#') {
                    self.known_contact(&p.contact)?;
                }
                let history = self.client.history(&p.contact)?;
                if p.mark_read {
                    self.client.mark_read(&p.contact)?;
                }
                Ok(Value::Array(history.iter().map(entry_json).collect()))
            }
            "verify" => {
                let p: VerifyParams = params(raw)?;
                let number = self.client.safety_number(&p.contact)?;
                if p.confirm {
                    self.client.confirm_verified(&p.contact)?;
                }
                let contact = self.known_contact(&p.contact)?;
                Ok(json!({
                    "contact": contact.name,
                    "safety_number": number.digits(),
                    "grouped": number.grouped(),
                    "qr_payload_hex": hex::encode(number.qr_payload()),
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

    /// Send a notification now, or hold it until `subscribe`.
    async fn notify(&mut self, held: Held) -> Result<(), String> {
        if self.subscribed {
            return self.emit(held).await;
        }
        self.hold(held);
        Ok(())
    }

    /// Write a notification; a message in it counts as emitted once the line is flushed.
    async fn emit(&mut self, held: Held) -> Result<(), String> {
        self.write(&held.notification).await?;
        if let Some(message) = &held.message {
            if let Err(e) = self.client.mark_emitted(message) {
                // It is sent again by the next run: a duplicate, never a loss.
                eprintln!(
                    "hush rpc: cannot record a message as emitted: {}",
                    crate::sanitize::line(&e.to_string())
                );
            }
        }
        Ok(())
    }

    /// Queue a notification behind the response being prepared (written after it when
    /// subscribed, or held until `subscribe`).
    fn hold(&mut self, notification: Held) {
        if self.pending.len() >= MAX_PENDING {
            self.pending.pop_front();
            if self.dropped == 0 {
                eprintln!(
                    "hush rpc: more than {MAX_PENDING} notifications before subscribe; dropping the oldest (messages stay in history, and unemitted ones are sent again by the next run)"
                );
            }
            self.dropped = self.dropped.saturating_add(1);
        }
        self.pending.push_back(notification);
    }

    /// One JSON line on stdout, flushed.
    async fn write(&mut self, value: &Value) -> Result<(), String> {
        let mut line = value.to_string().into_bytes();
        line.push(b'\n');
        let written = async {
            self.stdout.write_all(&line).await?;
            self.stdout.flush().await
        }
        .await;
        written.map_err(|e| {
            if e.kind() == std::io::ErrorKind::BrokenPipe {
                // The consumer went away: end quietly, as the other commands do.
                crate::output::note_closed();
                "stdout was closed".to_owned()
            } else {
                format!("cannot write to stdout: {e}")
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(input: &[u8], max: usize) -> Vec<Result<Vec<u8>, usize>> {
        let mut reader = std::io::BufReader::with_capacity(4, input);
        let mut out = Vec::new();
        while let Some(line) = read_line(&mut reader, max).unwrap() {
            out.push(line);
        }
        out
    }

    #[test]
    fn lines_are_split_bounded_and_cr_trimmed() {
        let got = lines(b"ab\r\n\nlonger than eight\nlast", 8);
        assert_eq!(
            got,
            vec![
                Ok(b"ab".to_vec()),
                Ok(Vec::new()),
                Err(17),
                Ok(b"last".to_vec())
            ]
        );
        assert!(lines(b"", 8).is_empty());
    }

    #[test]
    fn request_envelope_is_checked() {
        let ok = parse_request(json!({"jsonrpc": "2.0", "id": 7, "method": "whoami"})).unwrap();
        assert_eq!(ok.id, Some(json!(7)));
        let note = parse_request(json!({"jsonrpc": "2.0", "method": "whoami"})).unwrap();
        assert!(note.id.is_none());
        for bad in [
            json!([]),
            json!(3),
            json!({"jsonrpc": "1.0", "id": 1, "method": "x"}),
            json!({"jsonrpc": "2.0", "id": 1}),
            json!({"jsonrpc": "2.0", "id": 1, "method": 5}),
            json!({"jsonrpc": "2.0", "id": {}, "method": "x"}),
            json!({"jsonrpc": "2.0", "id": 1, "method": "x", "params": 3}),
        ] {
            assert!(parse_request(bad.clone()).is_err(), "{bad}");
        }
        let (id, _) = parse_request(json!({"jsonrpc": "1.0", "id": "a", "method": "x"}))
            .err()
            .unwrap();
        assert_eq!(id, json!("a"));
    }

    #[test]
    fn params_are_named_and_strict() {
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
}
