//! What is inside the ciphertext: a sender-chosen message id, the send time, a content type
//! and the body, padded so that lengths leak only a coarse bucket (Padmé).

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::codec::Reader;
use crate::DecodeError;

/// Version byte of the inner content encoding.
pub const CONTENT_VERSION: u8 = 1;
/// Bytes before the body: version(1) ‖ id(16) ‖ sent_at u64be(8) ‖ type(1) ‖ body_len u32be(4).
pub const CONTENT_HEADER_LEN: usize = 1 + 16 + 8 + 1 + 4;
/// Largest body accepted: 56 KiB, so that the padded plaintext stays within
/// [`MAX_PLAINTEXT_LEN`]. Larger payloads (attachments) belong in a separate, keyed blob.
pub const MAX_BODY_LEN: usize = 56 * 1024;
/// Largest padded plaintext a ratchet message may carry (60 KiB): bounds memory per message and
/// keeps a whole envelope, with its relay request around it, inside one 64 KiB Noise message.
pub const MAX_PLAINTEXT_LEN: usize = 60 * 1024;
/// Every plaintext is padded to at least this many bytes, so short messages all look alike.
pub const MIN_PADDED_LEN: usize = 128;

/// The kind of a message body. Unknown values are carried through so newer peers can add
/// kinds without older ones rejecting the message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Zeroize)]
pub struct ContentType(pub u8);

impl ContentType {
    /// UTF-8 text typed by the user.
    pub const TEXT: ContentType = ContentType(1);
    /// A delivery receipt; the body lists the 16-byte ids of messages received.
    pub const DELIVERY_RECEIPT: ContentType = ContentType(2);
}

/// One decrypted message. The body is zeroized when dropped.
#[derive(Clone, PartialEq, Eq, Zeroize, ZeroizeOnDrop)]
pub struct MessageContent {
    /// Sender-chosen random id; receivers de-duplicate on it.
    pub id: [u8; 16],
    /// The sender's clock at send time, milliseconds since the Unix epoch.
    pub sent_at_ms: u64,
    /// What the body is.
    pub content_type: ContentType,
    /// The body bytes.
    pub body: Vec<u8>,
}

impl std::fmt::Debug for MessageContent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MessageContent")
            .field("content_type", &self.content_type)
            .field("body_len", &self.body.len())
            .finish_non_exhaustive()
    }
}

impl MessageContent {
    /// Encode and pad to the Padmé bucket of its length (at least [`MIN_PADDED_LEN`]).
    pub fn to_padded_bytes(&self) -> Result<Zeroizing<Vec<u8>>, crate::EncryptError> {
        if self.body.len() > MAX_BODY_LEN {
            return Err(crate::EncryptError::PlaintextTooLarge {
                len: self.body.len(),
                max: MAX_BODY_LEN,
            });
        }
        let unpadded = CONTENT_HEADER_LEN + self.body.len();
        let padded = padded_len(unpadded);
        let mut out = Zeroizing::new(Vec::with_capacity(padded));
        out.push(CONTENT_VERSION);
        out.extend_from_slice(&self.id);
        out.extend_from_slice(&self.sent_at_ms.to_be_bytes());
        out.push(self.content_type.0);
        // MAX_BODY_LEN fits in u32.
        out.extend_from_slice(&(self.body.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.body);
        out.resize(padded, 0);
        Ok(out)
    }

    /// Decode a padded plaintext. The length must be exactly the Padmé bucket of header and
    /// body, and the padding all zero: there is exactly one valid encoding of each message.
    pub fn from_padded_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes, "message content");
        let version = r.u8()?;
        if version != CONTENT_VERSION {
            return Err(DecodeError::UnsupportedVersion {
                what: "message content",
                got: version,
                supported: CONTENT_VERSION,
            });
        }
        let id = r.array()?;
        let sent_at_ms = r.u64()?;
        let content_type = ContentType(r.u8()?);
        let body_len = r.u32()? as usize;
        if body_len > MAX_BODY_LEN {
            return Err(DecodeError::TooLong {
                what: "message body",
                len: body_len,
                max: MAX_BODY_LEN,
            });
        }
        let body = r.take(body_len)?.to_vec();
        // Exactly the Padmé length of what it carries: no more, no less. Otherwise one message
        // would have many valid encodings (and trailing zeros would hide nothing).
        if bytes.len() != padded_len(CONTENT_HEADER_LEN + body_len) {
            return Err(DecodeError::InvalidField {
                what: "message padded length",
                value: bytes.len() as u64,
            });
        }
        if r.rest().iter().any(|&b| b != 0) {
            return Err(DecodeError::InvalidField {
                what: "message padding (must be zero)",
                value: 0,
            });
        }
        Ok(Self {
            id,
            sent_at_ms,
            content_type,
            body,
        })
    }
}

/// Padmé (Nikitin et al., PETS 2019): round `len` up so that only O(log log len) bits of the
/// length leak, with at most ~12% overhead; never below [`MIN_PADDED_LEN`].
pub fn padded_len(len: usize) -> usize {
    let len = len.max(MIN_PADDED_LEN);
    // len >= 128, so e >= 7 and s >= 3.
    let e = usize::BITS - 1 - len.leading_zeros();
    let s = u32::BITS - e.leading_zeros();
    let last_bits = e - s;
    let mask = (1usize << last_bits) - 1;
    (len + mask) & !mask
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn padme_buckets() {
        assert_eq!(padded_len(0), 128);
        assert_eq!(padded_len(128), 128);
        assert_eq!(padded_len(129), 144);
        assert_eq!(padded_len(1000), 1024);
        assert_eq!(padded_len(MAX_BODY_LEN + CONTENT_HEADER_LEN), 59392);
        assert!(padded_len(MAX_BODY_LEN + CONTENT_HEADER_LEN) <= MAX_PLAINTEXT_LEN);
    }

    #[test]
    fn short_messages_share_a_length() {
        let a = MessageContent {
            id: [1; 16],
            sent_at_ms: 5,
            content_type: ContentType::TEXT,
            body: b"hi".to_vec(),
        };
        let b = MessageContent {
            body: vec![b'x'; 90],
            ..a.clone()
        };
        assert_eq!(
            a.to_padded_bytes().unwrap().len(),
            b.to_padded_bytes().unwrap().len()
        );
    }

    #[test]
    fn only_the_exact_padded_length_decodes() {
        let content = MessageContent {
            id: [7; 16],
            sent_at_ms: 1,
            content_type: ContentType::TEXT,
            body: b"hello".to_vec(),
        };
        let padded = content.to_padded_bytes().unwrap();
        assert_eq!(padded.len(), MIN_PADDED_LEN);
        assert_eq!(MessageContent::from_padded_bytes(&padded).unwrap(), content);
        let unpadded = CONTENT_HEADER_LEN + content.body.len();
        // Cut to the unpadded bytes, short by one zero, one zero too many, 1000 zeros more.
        let mut variants = vec![
            padded[..unpadded].to_vec(),
            padded[..padded.len() - 1].to_vec(),
        ];
        for extra in [1, 1000] {
            let mut longer = padded.to_vec();
            longer.resize(padded.len() + extra, 0);
            variants.push(longer);
        }
        for bytes in variants {
            assert!(
                matches!(
                    MessageContent::from_padded_bytes(&bytes),
                    Err(DecodeError::InvalidField {
                        what: "message padded length",
                        ..
                    })
                ),
                "{} bytes decoded",
                bytes.len()
            );
        }
    }

    #[test]
    fn nonzero_padding_and_bad_lengths_are_rejected() {
        let m = MessageContent {
            id: [1; 16],
            sent_at_ms: 5,
            content_type: ContentType::TEXT,
            body: b"hi".to_vec(),
        };
        let mut bytes = m.to_padded_bytes().unwrap().to_vec();
        *bytes.last_mut().unwrap() = 1;
        assert!(MessageContent::from_padded_bytes(&bytes).is_err());
        let mut bytes = m.to_padded_bytes().unwrap().to_vec();
        bytes[26..30].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(MessageContent::from_padded_bytes(&bytes).is_err());
        let too_big = MessageContent {
            body: vec![0; MAX_BODY_LEN + 1],
            ..m
        };
        assert!(too_big.to_padded_bytes().is_err());
    }

    proptest! {
        #[test]
        fn content_round_trips(id in any::<[u8; 16]>(), t in any::<u64>(), ty in any::<u8>(),
                               body in proptest::collection::vec(any::<u8>(), 0..3000)) {
            let m = MessageContent { id, sent_at_ms: t, content_type: ContentType(ty), body };
            let bytes = m.to_padded_bytes().unwrap();
            prop_assert_eq!(bytes.len(), padded_len(CONTENT_HEADER_LEN + m.body.len()));
            prop_assert_eq!(MessageContent::from_padded_bytes(&bytes).unwrap(), m);
        }

        #[test]
        fn content_decoder_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..400)) {
            let _ = MessageContent::from_padded_bytes(&bytes);
        }

        #[test]
        fn padme_is_monotone_and_bounded(len in 0usize..1_000_000) {
            let p = padded_len(len);
            prop_assert!(p >= len && p >= MIN_PADDED_LEN);
            prop_assert!(p <= padded_len(len + 1));
            prop_assert!(p as f64 <= (len.max(MIN_PADDED_LEN) as f64) * 1.12 + 1.0);
        }
    }
}
