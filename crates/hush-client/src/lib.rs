//! # hush-client
//!
//! The client library behind the `hush` binary: an encrypted, locked profile
//! ([`store`]), and the messaging logic ([`client`]) that commits state before it acts.

pub mod store;
