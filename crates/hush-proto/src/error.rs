//! Typed errors, one enum per operation, each variant saying whose fault it is.

use crate::keys::KeyError;

/// Bytes from the network or disk that are not a valid hush-v1 structure. Always the sender's
/// (or storage's) fault; nothing was changed by the failed parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Input ended before the structure did.
    #[error("{what} is truncated")]
    Truncated {
        /// Which structure.
        what: &'static str,
    },
    /// Input continued after the structure ended.
    #[error("{what} has {extra} trailing bytes")]
    TrailingBytes {
        /// Which structure.
        what: &'static str,
        /// How many bytes were left over.
        extra: usize,
    },
    /// The version byte names a version this build does not speak.
    #[error("{what} version {got} is not supported (this build speaks version {supported})")]
    UnsupportedVersion {
        /// Which structure.
        what: &'static str,
        /// The version byte received.
        got: u8,
        /// The version this build speaks.
        supported: u8,
    },
    /// A type or flag field holds a value with no meaning.
    #[error("{what} has invalid value {value}")]
    InvalidField {
        /// Which field.
        what: &'static str,
        /// The value received.
        value: u64,
    },
    /// A length exceeds its documented limit.
    #[error("{what} is {len} bytes, over the limit of {max}")]
    TooLong {
        /// Which field.
        what: &'static str,
        /// The length received.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// A public key inside the structure is invalid.
    #[error("invalid key: {0}")]
    Key(#[from] KeyError),
    /// A name that no one could have registered (see `relay::is_valid_name`): a relay that
    /// sends one is lying, and the name could carry terminal control characters.
    #[error("{what} is not a valid username")]
    InvalidName {
        /// Which field.
        what: &'static str,
    },
}

/// Why a session could not be created (X3DH, either side).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SessionError {
    /// The signed prekey's signature does not verify under the bundle's identity key: the relay
    /// or the network substituted it.
    #[error("signed prekey signature is invalid")]
    BadPrekeySignature,
    /// The PQ prekey's signature does not verify under the bundle's identity key, or its
    /// encapsulation key is malformed: the relay substituted or corrupted it.
    #[error("PQ prekey signature is invalid")]
    BadPqPrekeySignature,
    /// The bundle or first message uses a weaker profile than this peer is known to support
    /// (a relay stripped the PQ prekey, or someone sent a `hush-v1` first message in the name
    /// of a `hush-v2` contact). Treated like a key change: refused loudly, nothing changed.
    #[error("downgrade refused: {offered} offered where {required} is required")]
    Downgrade {
        /// What the peer is known to support.
        required: crate::Profile,
        /// What the bundle or message offered.
        offered: crate::Profile,
    },
    /// The message names a PQ prekey we do not hold (a used one-time key, or never ours).
    #[error("unknown PQ prekey id {0}")]
    UnknownPqPrekey(u32),
    /// The bundle or message carries our own identity key; talking to ourselves through X3DH
    /// would let a relay reflect our messages back.
    #[error("peer identity is our own identity")]
    OwnIdentity,
    /// A Diffie-Hellman step produced the all-zero value (a small-order key was supplied).
    #[error("a key agreement step was non-contributory")]
    NonContributory,
    /// The prekey message's X3DH identity key is not the identity the caller expected (the
    /// sender the relay named): a relay or network attacker set up a session under one identity
    /// and labelled it as another. Checked before any key agreement; nothing was changed.
    #[error("the prekey message's identity key is not the expected sender's")]
    MismatchedIdentityKey,
    /// The message names a signed prekey we do not hold (expired, or never ours).
    #[error("unknown signed prekey id {0}")]
    UnknownSignedPrekey(u32),
    /// The message names a one-time prekey we do not hold (already used, or never ours).
    #[error("unknown one-time prekey id {0}")]
    UnknownOneTimePrekey(u32),
    /// The first message did not decrypt, so no session was created and no prekey used up.
    #[error("initial message rejected: {0}")]
    InitialMessage(DecryptError),
}

/// Why a message could not be encrypted. The session is unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum EncryptError {
    /// 2^32 - 1 messages were sent on this chain without a reply; the counter would wrap.
    #[error("sending chain exhausted; a reply is needed before sending more")]
    ChainExhausted,
    /// The plaintext exceeds [`crate::MAX_PLAINTEXT_LEN`].
    #[error("plaintext of {len} bytes exceeds the limit of {max}")]
    PlaintextTooLarge {
        /// Plaintext length.
        len: usize,
        /// The limit.
        max: usize,
    },
    /// This side has no session to send on yet (a responder before the first message).
    #[error("no sending chain yet")]
    NoSession,
    /// The peer's ratchet key yields an all-zero DH value.
    #[error("peer ratchet key is non-contributory")]
    NonContributory,
    /// The AEAD refused to seal (cannot happen for in-limit inputs; kept typed, not panicked).
    #[error("AEAD seal failed")]
    Aead,
}

/// Why a message was rejected. In every case the session is byte-for-byte unchanged.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecryptError {
    /// The envelope did not parse.
    #[error("malformed message: {0}")]
    Malformed(#[from] DecodeError),
    /// The AEAD tag did not verify: the message was forged, corrupted, or is not for this session.
    #[error("message authentication failed")]
    Authentication,
    /// The message key for this position was already used (or was dropped): a replay.
    #[error("duplicate message (counter {counter}); already decrypted or expired")]
    Duplicate {
        /// The header counter of the rejected message.
        counter: u32,
    },
    /// Accepting would require skipping more message keys than the limit allows in one chain.
    #[error("message would skip {requested} keys, over the limit of {limit}")]
    TooManySkipped {
        /// Keys that would have to be skipped.
        requested: u64,
        /// The per-chain limit.
        limit: u32,
    },
    /// The header's ratchet key yields an all-zero DH value.
    #[error("ratchet key is non-contributory")]
    NonContributory,
    /// The message belongs to another session (a different X3DH base key).
    #[error("message is for a different session")]
    SessionMismatch,
}
