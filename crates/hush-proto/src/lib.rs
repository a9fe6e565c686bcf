//! # hush-proto
//!
//! The protocol core of hush, profiles `hush-v1` and `hush-v2`: identity and prekeys (with signed
//! ML-KEM-768 prekeys for `hush-v2`), X3DH / PQXDH session setup, the
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
pub mod group;
pub mod keys;
pub mod message;
pub mod pickle;
pub mod pq;
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
#[cfg(test)]
mod tests_sim;
#[cfg(test)]
mod tests_v2;

pub use envelope::{Envelope, PrekeyMessage};
pub use error::{DecodeError, DecryptError, EncryptError, SessionError};
pub use group::GroupEnvelope;
pub use keys::{
    IdentityKeyPair, IdentityPublicKey, KeyError, OneTimePrekey, OneTimePrekeyPair, PrekeyBundle,
    SignedPrekey, SignedPrekeyPair, VerifiedBundle, X25519PublicKey, X25519Secret,
};
pub use message::{ContentType, MessageContent, MAX_BODY_LEN, MAX_PLAINTEXT_LEN};
pub use pickle::{IdentityPickle, PickleError, PrekeysPickle, SessionPickle};
pub use pq::{PqPrekey, PqPrekeyPair};
pub use prekeys::LocalPrekeys;
pub use ratchet::{Header, RatchetLimits, RatchetMessage};
pub use safety::{QrError, SafetyNumber};
pub use session::{InboundSession, Session};
pub use x3dh::{PrekeyStore, X3dhHeader};

/// The profile every new session gets.
pub const PROFILE: &str = Profile::CURRENT.name();

/// A session-setup profile. The Double Ratchet is the same in both; they differ in how the
/// first shared secret is agreed. Ordered: a later profile is stronger, so "at least V2" is
/// `profile >= Profile::V2`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Profile {
    /// X3DH over X25519 only.
    V1,
    /// PQXDH: X3DH plus an ML-KEM-768 encapsulation to a signed PQ prekey.
    V2,
}

impl Profile {
    /// What new sessions use.
    pub const CURRENT: Profile = Profile::V2;

    /// The profile's name, as in the specification and the test vectors.
    pub const fn name(self) -> &'static str {
        match self {
            Profile::V1 => "hush-v1",
            Profile::V2 => "hush-v2",
        }
    }
}

impl std::fmt::Display for Profile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
