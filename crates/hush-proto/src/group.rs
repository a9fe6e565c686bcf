//! The group envelope: how MLS messages (RFC 9420) cross the relay. MLS itself (openmls) runs
//! in the client; this module only frames its bytes so a receiver can tell a group message from
//! a 1:1 session envelope by the first two bytes (docs/PROTOCOL.md §13).
//!
//! `version(1) = 1 ‖ kind(1) ‖ MLSMessage`, where kind 3 is a group message (an application
//! message or a proposal, as an MLS PrivateMessage), kind 4 a commit, kind 5 a Welcome. The
//! MLSMessage bytes are the TLS presentation of RFC 9420 §6; they are not parsed here.

use crate::codec::Reader;
use crate::envelope::{ENVELOPE_VERSION, MAX_ENVELOPE_LEN};
use crate::DecodeError;

/// Envelope kind byte: an MLS application message or proposal.
pub const KIND_GROUP_MESSAGE: u8 = 3;
/// Envelope kind byte: an MLS commit.
pub const KIND_GROUP_COMMIT: u8 = 4;
/// Envelope kind byte: an MLS Welcome (its GroupInfo carries the ratchet tree).
pub const KIND_GROUP_WELCOME: u8 = 5;
/// The MLS ciphersuite of every hush group: MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519
/// (RFC 9420 §17.1), the same primitives as hush's 1:1 sessions.
pub const CIPHERSUITE: u16 = 0x0003;
/// Largest group envelope (the same limit as a 1:1 envelope: one Noise message).
pub const MAX_GROUP_ENVELOPE_LEN: usize = MAX_ENVELOPE_LEN;

/// One group envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum GroupEnvelope {
    /// An application message or proposal (MLSMessage).
    Message(Vec<u8>),
    /// A commit (MLSMessage).
    Commit(Vec<u8>),
    /// A Welcome (MLSMessage).
    Welcome(Vec<u8>),
}

impl GroupEnvelope {
    /// Whether `bytes` is framed as a group envelope (the receive path's first branch).
    pub fn is_group(bytes: &[u8]) -> bool {
        matches!(
            bytes,
            [
                ENVELOPE_VERSION,
                KIND_GROUP_MESSAGE | KIND_GROUP_COMMIT | KIND_GROUP_WELCOME,
                ..
            ]
        )
    }

    /// The MLSMessage inside.
    pub fn mls_bytes(&self) -> &[u8] {
        match self {
            GroupEnvelope::Message(b) | GroupEnvelope::Commit(b) | GroupEnvelope::Welcome(b) => b,
        }
    }

    fn kind(&self) -> u8 {
        match self {
            GroupEnvelope::Message(_) => KIND_GROUP_MESSAGE,
            GroupEnvelope::Commit(_) => KIND_GROUP_COMMIT,
            GroupEnvelope::Welcome(_) => KIND_GROUP_WELCOME,
        }
    }

    /// Encode as `1 ‖ kind ‖ MLSMessage`.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mls = self.mls_bytes();
        let mut out = Vec::with_capacity(2 + mls.len());
        out.push(ENVELOPE_VERSION);
        out.push(self.kind());
        out.extend_from_slice(mls);
        out
    }

    /// Decode, checking version, kind and length (the MLSMessage is parsed by MLS).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_GROUP_ENVELOPE_LEN {
            return Err(DecodeError::TooLong {
                what: "group envelope",
                len: bytes.len(),
                max: MAX_GROUP_ENVELOPE_LEN,
            });
        }
        let mut r = Reader::new(bytes, "group envelope");
        let version = r.u8()?;
        if version != ENVELOPE_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                what: "group envelope",
                got: version,
                supported: ENVELOPE_VERSION,
            });
        }
        let kind = r.u8()?;
        let mls = r.rest().to_vec();
        if mls.is_empty() {
            return Err(DecodeError::Truncated {
                what: "group envelope",
            });
        }
        Ok(match kind {
            KIND_GROUP_MESSAGE => GroupEnvelope::Message(mls),
            KIND_GROUP_COMMIT => GroupEnvelope::Commit(mls),
            KIND_GROUP_WELCOME => GroupEnvelope::Welcome(mls),
            other => {
                return Err(DecodeError::InvalidField {
                    what: "group envelope kind",
                    value: u64::from(other),
                })
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Envelope;

    #[test]
    fn group_envelopes_round_trip_and_are_told_apart_from_session_envelopes() {
        for env in [
            GroupEnvelope::Message(vec![1, 2, 3]),
            GroupEnvelope::Commit(vec![4]),
            GroupEnvelope::Welcome(vec![5; 100]),
        ] {
            let bytes = env.to_bytes();
            assert!(GroupEnvelope::is_group(&bytes));
            assert_eq!(GroupEnvelope::from_bytes(&bytes), Ok(env));
            // A 1:1 decoder refuses it (never mistaken for a session message).
            assert!(Envelope::from_bytes(&bytes).is_err());
        }
        assert!(!GroupEnvelope::is_group(&[1, 2, 0, 0]));
        assert!(!GroupEnvelope::is_group(&[2, 3, 0]));
        assert!(GroupEnvelope::from_bytes(&[1, 3]).is_err());
        assert!(GroupEnvelope::from_bytes(&[1, 9, 1]).is_err());
        assert!(GroupEnvelope::from_bytes(&[2, 3, 1]).is_err());
        assert!(GroupEnvelope::from_bytes(&vec![0; MAX_GROUP_ENVELOPE_LEN + 1]).is_err());
    }
}
