//! Groups on MLS (RFC 9420) through openmls: the pure engine ([`engine`]), the identity binding
//! ([`credential`]), the fixed group configuration ([`config`]), and openmls's state kept inside
//! the encrypted profile ([`storage`], [`provider`]). Nothing here talks to the relay; the
//! client's group code (`client/groups.rs`) does, and commits the profile transaction these
//! functions write into before it acts (docs/PROTOCOL.md §13).

pub mod config;
pub mod credential;
pub mod engine;
mod error;
mod process;
pub mod provider;
pub mod storage;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_attacks;
#[cfg(test)]
mod tests_profile;

pub use credential::{IdentitySigner, MemberId};
pub use engine::{CommitOut, Incoming, Joined};
pub use error::GroupError;
pub use provider::HushProvider;
