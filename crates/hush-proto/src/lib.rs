//! # hush-proto
//!
//! The protocol core of hush, profile `hush-v1`: identity and prekeys, X3DH session setup, the
//! Double Ratchet, the session envelope wire format, padded message content, safety numbers,
//! and versioned pickles of all long-lived state.
//!
//! What this crate is *not*: it does no networking, reads no files and no clock, and owns no
//! randomness. Time comes in as an argument and randomness as `&mut impl CryptoRngCore`, so a
//! whole conversation can be replayed deterministically from a seeded RNG (that is how the
//! test vectors in `test-vectors/` are made). The async shells (relay, client) sit around it.
//!
//! Every input from the network or disk is parsed into a typed structure or rejected with a
//! typed error; nothing here panics on malformed input, and a failed decryption leaves the
//! session byte-for-byte unchanged. See `docs/PROTOCOL.md` for the byte-exact specification.

mod codec;
pub mod envelope;
mod error;
pub mod keys;
pub mod message;
pub mod pickle;
pub mod prekeys;
pub mod primitives;
pub mod ratchet;
pub mod relay;
pub mod safety;
pub mod session;
pub mod x3dh;

#[cfg(test)]
mod test_vectors;
#[cfg(test)]
mod tests;

pub use envelope::{Envelope, PrekeyMessage};
pub use error::{DecodeError, DecryptError, EncryptError, SessionError};
pub use keys::{
    IdentityKeyPair, IdentityPublicKey, KeyError, OneTimePrekey, OneTimePrekeyPair, PrekeyBundle,
    SignedPrekey, SignedPrekeyPair, VerifiedBundle, X25519PublicKey, X25519Secret,
};
pub use message::{ContentType, MessageContent, MAX_BODY_LEN, MAX_PLAINTEXT_LEN};
pub use pickle::{IdentityPickle, PickleError, PrekeysPickle, SessionPickle};
pub use prekeys::LocalPrekeys;
pub use ratchet::{Header, RatchetLimits, RatchetMessage};
pub use safety::{QrError, SafetyNumber};
pub use session::{InboundSession, Session};
pub use x3dh::{PrekeyStore, X3dhHeader};

/// The protocol profile this crate implements.
pub const PROFILE: &str = "hush-v1";
