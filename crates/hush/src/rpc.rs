//! hush's JSON-RPC 2.0 API, for bots and other programs (`hush rpc`, over stdin/stdout) and for
//! the local web UI (`hush web`, over WebSocket frames). The reference for its users is
//! docs/RPC.md (checked against [`dispatch`] by tests/rpc_doc.rs). Messages reach the consumer
//! at least once: one committed but not yet handed out when the process died is held again by
//! the next run.
//!
//! Split by concern: [`protocol`] is the envelope (parsing, params, errors, responses),
//! [`dispatch`] the methods and notifications over one `Client` (with [`groups`]), and each
//! transport owns the client's task and its own framing: [`stdio`] here, `crate::web` for the
//! sockets. Both pump the relay between requests with the same [`backoff`].
//!
//! Requests (params by name): `send` {to, text}, `subscribe` (alias `receive`) {},
//! `status` {}, `contacts` {}, `history` {contact, mark_read?, limit?}, `verify` {contact,
//! confirm?, safety_number?}, `trust` {contact}, `add` {contact}, `whoami` {}, and `group.*`
//! (in [`groups`]); `send` and `history` take `#NAME` for a group. Notifications after
//! `subscribe`: `message`, `delivered`, `key_changed`, `group`, `rejected`, and `failed`
//! {contact, id, reason} (a
//! message we sent will never be delivered: the recipient is gone, or the relay refused it for
//! too long); those that happen earlier are held (up to [`MAX_PENDING`] and
//! [`MAX_PENDING_BYTES`]) and sent right after
//! the `subscribe` response. `status` notifications (relay connection, outbox length) go to a
//! subscriber that has called `status` once. A message's `state` is `queued`, `on relay`,
//! `delivered`, `received` or `failed`; `failure` says why a queued one was refused or a
//! failed one failed.
//!
//! stdout carries only JSON lines, flushed one by one; diagnostics go to stderr. Nothing
//! secret is ever written. EOF on stdin: queued requests are answered, the outbox is flushed,
//! and the process exits 0.

pub(crate) mod backoff;
pub(crate) mod dispatch;
mod groups;
pub(crate) mod protocol;
mod stdio;

pub(crate) use dispatch::contact_json;
pub use stdio::run;

/// Longest request accepted (bytes), a stdio line or a WebSocket frame; a longer one is
/// discarded and answered with -32600.
pub const MAX_LINE: usize = 1 << 20;
/// Notifications held until the client subscribes; beyond this the oldest are dropped.
pub const MAX_PENDING: usize = 10_000;
/// Bytes of notifications (their JSON) held until the client subscribes; beyond this the
/// oldest are dropped too. 10,000 maximal messages would be gigabytes: a peer could send them
/// to a `hush web` that runs for days with no page open.
pub const MAX_PENDING_BYTES: usize = 16 << 20;
