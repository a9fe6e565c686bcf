//! # hush-client
//!
//! The client library behind the `hush` binary: an encrypted, locked profile
//! ([`store`]), and the messaging logic ([`client`]) that commits state before it acts.

pub mod client;
pub mod group;
pub mod store;

pub use client::{
    default_profile_dir, Client, ClientError, Contact, DeliveryState, EmitError, Event,
    GroupChange, GroupInfo, GroupMember, HistoryEntry, MemberState,
};
