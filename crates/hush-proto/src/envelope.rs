//! The versioned wire format of session messages: a prekey envelope (first messages of a
//! session, carrying the X3DH header) or an ordinary ratchet message.

use crate::codec::Reader;
use crate::keys::{IdentityPublicKey, X25519PublicKey};
use crate::message::MAX_PLAINTEXT_LEN;
use crate::pq::KEM_CIPHERTEXT_LEN;
use crate::primitives::{NONCE_LEN, TAG_LEN};
use crate::ratchet::{Header, RatchetMessage};
use crate::x3dh::{PqHeader, X3dhHeader};
use crate::DecodeError;

/// Envelope version of ordinary messages (both profiles: the ratchet is the same) and of
/// `hush-v1` prekey envelopes.
pub const ENVELOPE_VERSION: u8 = 1;
/// Envelope version of a `hush-v2` prekey envelope, whose X3DH header also carries the PQ
/// prekey id and the ML-KEM-768 ciphertext. Only prekey envelopes use it: the version names
/// the layout, and later messages of a `hush-v2` session are laid out (and sized) exactly as
/// `hush-v1` ones.
pub const ENVELOPE_VERSION_PQ: u8 = 2;
/// Envelope kind byte: a prekey envelope.
pub const KIND_PREKEY: u8 = 1;
/// Envelope kind byte: an ordinary ratchet message.
pub const KIND_MESSAGE: u8 = 2;
/// Smallest ciphertext: nonce and tag around an empty plaintext.
pub const MIN_CIPHERTEXT_LEN: usize = NONCE_LEN + TAG_LEN;
/// Largest ciphertext: nonce and tag around the largest padded plaintext.
pub const MAX_CIPHERTEXT_LEN: usize = NONCE_LEN + MAX_PLAINTEXT_LEN + TAG_LEN;
/// Largest encoded envelope (a prekey envelope with a one-time prekey and a maximal
/// ciphertext); transports size their frames from this.
pub const MAX_ENVELOPE_LEN: usize = 2 + PREKEY_HEADER_MAX_LEN + 40 + MAX_CIPHERTEXT_LEN;
const PREKEY_HEADER_MAX_LEN: usize = 32 + 32 + 4 + 1 + 4 + PQ_HEADER_LEN;
/// The PQ part of a version-2 prekey header: `pq_id u32be ‖ kem_ct(1088)`.
pub const PQ_HEADER_LEN: usize = 4 + KEM_CIPHERTEXT_LEN;

/// The first messages of a session: the X3DH header and a ratchet message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrekeyMessage {
    /// What the responder needs to repeat X3DH.
    pub x3dh: X3dhHeader,
    /// The ratchet message it carries.
    pub message: RatchetMessage,
}

/// One session message as it crosses the relay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Envelope {
    /// Sent by the initiator until it has received a reply.
    Prekey(PrekeyMessage),
    /// Every other message.
    Message(RatchetMessage),
}

impl Envelope {
    /// The ratchet message inside.
    pub fn ratchet_message(&self) -> &RatchetMessage {
        match self {
            Envelope::Prekey(p) => &p.message,
            Envelope::Message(m) => m,
        }
    }

    /// The version byte this envelope is encoded with.
    pub fn version(&self) -> u8 {
        match self {
            Envelope::Prekey(p) if p.x3dh.pq.is_some() => ENVELOPE_VERSION_PQ,
            _ => ENVELOPE_VERSION,
        }
    }

    /// Encode:
    /// `version(1) ‖ kind(1) ‖ [X3DH header, prekey only] ‖ ratchet header(40) ‖ ciphertext`,
    /// where the X3DH header is `identity(32) ‖ ephemeral(32) ‖ spk_id u32be ‖ has_opk u8 ‖
    /// [opk_id u32be]`, followed in version 2 by `pq_id u32be ‖ kem_ct(1088)`, and the
    /// ciphertext (`nonce ‖ ct ‖ tag`) runs to the end.
    pub fn to_bytes(&self) -> Vec<u8> {
        let message = self.ratchet_message();
        let mut out = Vec::with_capacity(2 + PREKEY_HEADER_MAX_LEN + 40 + message.ciphertext.len());
        out.push(self.version());
        match self {
            Envelope::Prekey(p) => {
                out.push(KIND_PREKEY);
                out.extend_from_slice(p.x3dh.identity_key.as_bytes());
                out.extend_from_slice(p.x3dh.ephemeral_key.as_bytes());
                out.extend_from_slice(&p.x3dh.signed_prekey_id.to_be_bytes());
                match p.x3dh.one_time_prekey_id {
                    Some(id) => {
                        out.push(1);
                        out.extend_from_slice(&id.to_be_bytes());
                    }
                    None => out.push(0),
                }
                if let Some(pq) = &p.x3dh.pq {
                    out.extend_from_slice(&pq.prekey_id.to_be_bytes());
                    out.extend_from_slice(&pq.ciphertext[..]);
                }
            }
            Envelope::Message(_) => out.push(KIND_MESSAGE),
        }
        out.extend_from_slice(&message.header.to_bytes());
        out.extend_from_slice(&message.ciphertext);
        out
    }

    /// Decode, checking the version, kind, every length and every key.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        if bytes.len() > MAX_ENVELOPE_LEN {
            return Err(DecodeError::TooLong {
                what: "envelope",
                len: bytes.len(),
                max: MAX_ENVELOPE_LEN,
            });
        }
        let mut r = Reader::new(bytes, "envelope");
        let version = r.u8()?;
        if version != ENVELOPE_VERSION && version != ENVELOPE_VERSION_PQ {
            return Err(DecodeError::UnsupportedVersion {
                what: "envelope",
                got: version,
                supported: ENVELOPE_VERSION_PQ,
            });
        }
        let kind = r.u8()?;
        if version == ENVELOPE_VERSION_PQ && kind != KIND_PREKEY {
            return Err(DecodeError::InvalidField {
                what: "envelope kind of a version-2 envelope",
                value: u64::from(kind),
            });
        }
        let x3dh = match kind {
            KIND_PREKEY => Some(X3dhHeader {
                identity_key: IdentityPublicKey::from_bytes(&r.array()?)?,
                ephemeral_key: X25519PublicKey::from_wire(r.array()?)?,
                signed_prekey_id: r.u32()?,
                one_time_prekey_id: match r.u8()? {
                    0 => None,
                    1 => Some(r.u32()?),
                    other => {
                        return Err(DecodeError::InvalidField {
                            what: "envelope one-time-prekey flag",
                            value: u64::from(other),
                        })
                    }
                },
                pq: if version == ENVELOPE_VERSION_PQ {
                    Some(PqHeader {
                        prekey_id: r.u32()?,
                        ciphertext: Box::new(r.array::<KEM_CIPHERTEXT_LEN>()?),
                    })
                } else {
                    None
                },
            }),
            KIND_MESSAGE => None,
            other => {
                return Err(DecodeError::InvalidField {
                    what: "envelope kind",
                    value: u64::from(other),
                })
            }
        };
        let header = Header::read(&mut r)?;
        let ciphertext = r.rest();
        if ciphertext.len() < MIN_CIPHERTEXT_LEN {
            return Err(DecodeError::Truncated {
                what: "envelope ciphertext",
            });
        }
        if ciphertext.len() > MAX_CIPHERTEXT_LEN {
            return Err(DecodeError::TooLong {
                what: "envelope ciphertext",
                len: ciphertext.len(),
                max: MAX_CIPHERTEXT_LEN,
            });
        }
        let message = RatchetMessage {
            header,
            ciphertext: ciphertext.to_vec(),
        };
        Ok(match x3dh {
            Some(x3dh) => Envelope::Prekey(PrekeyMessage { x3dh, message }),
            None => Envelope::Message(message),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_pq(opk: Option<u32>) -> Envelope {
        let Envelope::Prekey(mut p) = sample(true, opk) else {
            unreachable!("sample(true, _) is a prekey envelope")
        };
        p.x3dh.pq = Some(PqHeader {
            prekey_id: 0x8000_0001,
            ciphertext: Box::new([0x5a; KEM_CIPHERTEXT_LEN]),
        });
        Envelope::Prekey(p)
    }

    fn sample(prekey: bool, opk: Option<u32>) -> Envelope {
        let message = RatchetMessage {
            header: Header {
                ratchet_key: X25519PublicKey::from_bytes([3; 32]),
                previous_chain_length: 5,
                counter: 9,
            },
            ciphertext: vec![0xaa; MIN_CIPHERTEXT_LEN + 3],
        };
        if !prekey {
            return Envelope::Message(message);
        }
        let identity = crate::IdentityKeyPair::from_seed(&[1; 32]).public_key();
        Envelope::Prekey(PrekeyMessage {
            x3dh: X3dhHeader {
                identity_key: identity,
                ephemeral_key: X25519PublicKey::from_bytes([4; 32]),
                signed_prekey_id: 77,
                one_time_prekey_id: opk,
                pq: None,
            },
            message,
        })
    }

    #[test]
    fn envelopes_round_trip_and_every_truncation_is_rejected() {
        for env in [
            sample(false, None),
            sample(true, None),
            sample(true, Some(12)),
            sample_pq(None),
            sample_pq(Some(12)),
        ] {
            let bytes = env.to_bytes();
            assert_eq!(Envelope::from_bytes(&bytes).unwrap(), env);
            // Truncations that cut into the fixed part or below the minimum ciphertext fail.
            let fixed = bytes.len() - 3;
            for cut in 0..fixed {
                assert!(Envelope::from_bytes(&bytes[..cut]).is_err(), "cut {cut}");
            }
        }
    }

    #[test]
    fn unknown_version_is_rejected_naming_both_versions() {
        let mut bytes = sample(false, None).to_bytes();
        bytes[0] = 3;
        let err = Envelope::from_bytes(&bytes).unwrap_err();
        assert_eq!(
            err,
            DecodeError::UnsupportedVersion {
                what: "envelope",
                got: 3,
                supported: 2
            }
        );
        let text = err.to_string();
        assert!(text.contains('3') && text.contains('2'), "{text}");
    }

    #[test]
    fn pq_prekey_envelopes_are_version_2_and_only_prekey_envelopes_may_be() {
        let bytes = sample_pq(Some(3)).to_bytes();
        assert_eq!(bytes[0], ENVELOPE_VERSION_PQ);
        // The same bytes read as version 1 (a relay rewriting the version) no longer parse as
        // the same header: the KEM ciphertext would be taken as the ratchet message.
        let mut as_v1 = bytes.clone();
        as_v1[0] = ENVELOPE_VERSION;
        assert_ne!(Envelope::from_bytes(&as_v1).ok(), Some(sample_pq(Some(3))));
        // A version-2 ordinary message does not exist.
        let mut message = sample(false, None).to_bytes();
        message[0] = ENVELOPE_VERSION_PQ;
        assert!(matches!(
            Envelope::from_bytes(&message),
            Err(DecodeError::InvalidField { .. })
        ));
        // Later messages are byte-identical in layout (and size) in both profiles.
        assert_eq!(sample(false, None).to_bytes()[0], ENVELOPE_VERSION);
    }

    #[test]
    fn unknown_kind_and_bad_flag_are_rejected() {
        let mut bytes = sample(false, None).to_bytes();
        bytes[1] = 9;
        assert!(matches!(
            Envelope::from_bytes(&bytes),
            Err(DecodeError::InvalidField { .. })
        ));
        let mut bytes = sample(true, Some(1)).to_bytes();
        bytes[2 + 32 + 32 + 4] = 2;
        assert!(matches!(
            Envelope::from_bytes(&bytes),
            Err(DecodeError::InvalidField { .. })
        ));
    }

    #[test]
    fn oversized_envelope_is_rejected_before_parsing() {
        let bytes = vec![1u8; MAX_ENVELOPE_LEN + 1];
        assert!(matches!(
            Envelope::from_bytes(&bytes),
            Err(DecodeError::TooLong { .. })
        ));
    }
}
