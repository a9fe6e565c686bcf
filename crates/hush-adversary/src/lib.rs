//! # hush-adversary
//!
//! Adversary models used by the test suite (and usable by the demo). Nothing here is linked
//! into the relay or the client: an attacker only exists when a test starts one.
//!
//! - [`NetworkAttacker`]: a loopback TCP proxy between clients and a relay that understands
//!   the framing (`u32be length ‖ payload`) and can flip bits, truncate, replay, drop, delay or
//!   reorder frames after the Noise handshake, per direction, while recording every byte.
//! - [`MaliciousRelay`]: direct SQL on a relay's database, as a malicious operator would do it:
//!   tamper with, replace, replay, drop or reorder stored envelopes or relabel their sender
//!   (keeping the mailbox counters consistent), free a user's name, withhold one-time
//!   prekeys, or forge a signed prekey; strip, withhold or re-serve `hush-v2` PQ prekeys.
//! - [`quantum::read_first_message`]: "record now, decrypt later", an attacker who recorded a
//!   session setup and later breaks X25519 (handed every X25519 private key of it); it reads a
//!   `hush-v1` first message and cannot read a `hush-v2` one.

mod network;
pub mod quantum;
mod relay;

pub use network::{Action, Count, Direction, NetworkAttacker, Transcript};
pub use relay::{AdversaryError, MaliciousRelay, StoredEnvelope};
