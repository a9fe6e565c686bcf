//! # hush-relay
//!
//! The untrusted relay: it authenticates which identity is connected (Noise XK plus a signed
//! Hello), serves prekey bundles, and keeps every accepted envelope in a durable mailbox until
//! its recipient acknowledges it. It never sees plaintext: envelopes are opaque to it.
//!
//! Layers, one per module: [`config`] (settings and limits), [`keyfile`] (static key),
//! [`server`] (accept loop, shutdown), [`handler`] (one connection), [`delivery`] (pushing mail to a subscriber), [`writer`] (group
//! commit), [`doorbell`] (waking subscribers on other nodes sharing a PostgreSQL store), [`presence`] (live delivery queues), [`outbound`] (byte-bounded socket queues),
//! [`store`] (durable state), [`limits`] (token buckets, connection caps), [`metrics`]
//! (Prometheus text).

pub mod config;
pub mod delivery;
pub mod doorbell;
pub mod handler;
pub mod keyfile;
pub mod limits;
pub mod metrics;
pub mod outbound;
pub mod presence;
pub mod server;
pub mod store;
pub mod writer;

pub use config::Config;
pub use server::{start, RunningRelay};
