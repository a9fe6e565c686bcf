//! Long-term and medium-term keys: the Ed25519 identity (with its X25519 form), signed prekeys,
//! one-time prekeys, and the prekey bundle the relay serves to initiators.

use ed25519_dalek::Signer;
use rand_core::CryptoRngCore;
use sha2::Digest;
use zeroize::{Zeroize, Zeroizing};

use crate::codec::Reader;
use crate::pq::{PqPrekey, KEM_ENCAPSULATION_KEY_LEN};
pub use crate::primitives::SIGNATURE_LEN;
use crate::primitives::{self, KEY_LEN};
use crate::{DecodeError, Profile};

/// A public key that did not parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The bytes are not a valid compressed Edwards point.
    #[error("identity key is not a valid Ed25519 point")]
    InvalidIdentityKey,
    /// The Ed25519 key has small order: it would let anyone forge signatures for it.
    #[error("identity key has small order")]
    WeakIdentityKey,
    /// An X25519 key on the wire is not the canonical encoding of its u-coordinate (bit 255
    /// set, or a value of at least 2^255 - 19). X25519 would silently reduce it, so a relay
    /// could flip such bits and still have the message accepted; honest keys never have them.
    #[error("X25519 key is not canonically encoded")]
    NonCanonicalX25519Key,
}

/// A user's public identity: an Ed25519 key, and its X25519 (Montgomery) form used in X3DH.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct IdentityPublicKey {
    ed25519: [u8; KEY_LEN],
    x25519: [u8; KEY_LEN],
}

impl IdentityPublicKey {
    /// Parse a 32-byte Ed25519 public key, rejecting invalid and small-order points.
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> Result<Self, KeyError> {
        let key = ed25519_dalek::VerifyingKey::from_bytes(bytes)
            .map_err(|_| KeyError::InvalidIdentityKey)?;
        if key.is_weak() {
            return Err(KeyError::WeakIdentityKey);
        }
        Ok(Self {
            ed25519: *bytes,
            x25519: key.to_montgomery().to_bytes(),
        })
    }

    /// The raw Ed25519 public key, as it appears on the wire.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.ed25519
    }

    /// The X25519 form (Edwards → Montgomery), used as IK in X3DH.
    pub fn x25519(&self) -> X25519PublicKey {
        X25519PublicKey(self.x25519)
    }

    /// Verify a strict Ed25519 signature by this identity.
    pub fn verify(&self, message: &[u8], signature: &[u8; SIGNATURE_LEN]) -> bool {
        primitives::ed25519_verify(&self.ed25519, message, signature).is_ok()
    }

    /// A short hex fingerprint for display (SHA-256 of the key, first 16 bytes).
    pub fn fingerprint(&self) -> String {
        let digest = sha2::Sha256::digest(self.ed25519);
        digest.iter().take(16).map(|b| format!("{b:02x}")).collect()
    }
}

impl std::fmt::Debug for IdentityPublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "IdentityPublicKey({})", hex32(&self.ed25519))
    }
}

/// An X25519 public key (prekeys, ephemeral keys, ratchet keys).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct X25519PublicKey(pub(crate) [u8; KEY_LEN]);

impl X25519PublicKey {
    /// Wrap 32 raw bytes. Every 32-byte string is a valid u-coordinate; small-order keys are
    /// caught later, when a DH with them yields the all-zero value.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        Self(bytes)
    }

    /// Parse a key received from someone else, requiring the canonical encoding (u < 2^255 - 19,
    /// bit 255 clear). Every key X25519 produces is canonical; a non-canonical one can only be a
    /// modified copy of an honest key that computes the same DH, i.e. a malleated message.
    pub fn from_wire(bytes: [u8; KEY_LEN]) -> Result<Self, KeyError> {
        // p = 2^255 - 19, little-endian. Compare most significant byte first; keys are public,
        // so a variable-time comparison leaks nothing.
        let mut p = [0xFF_u8; KEY_LEN];
        p[0] = 0xED;
        p[KEY_LEN - 1] = 0x7F;
        if bytes.iter().rev().lt(p.iter().rev()) {
            Ok(Self(bytes))
        } else {
            Err(KeyError::NonCanonicalX25519Key)
        }
    }

    /// The raw 32 bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

impl std::fmt::Debug for X25519PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "X25519PublicKey({})", hex32(&self.0))
    }
}

fn hex32(bytes: &[u8; 32]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// An X25519 secret key with its public key (computed once: a fixed-base multiplication costs
/// as much as the rest of a symmetric ratchet step), loaded once into aws-lc for the DHs.
/// Zeroized on drop; its `Debug` never shows the bytes.
#[derive(Clone)]
pub struct X25519Secret {
    secret: Box<x25519_dalek::StaticSecret>,
    public: X25519PublicKey,
    /// `None` only if aws-lc refused the key (out of memory); DH then runs on x25519-dalek.
    loaded: Option<primitives::LoadedX25519Key>,
}

impl X25519Secret {
    fn from_dalek(secret: x25519_dalek::StaticSecret) -> Self {
        match primitives::x25519_load(secret.as_bytes()) {
            Some((loaded, public)) => Self {
                secret: Box::new(secret),
                public: X25519PublicKey(public),
                loaded: Some(loaded),
            },
            None => Self::dalek_only(secret),
        }
    }

    /// A secret that does its DHs on x25519-dalek (the fallback path; tests use it to show both
    /// paths derive the same keys).
    fn dalek_only(secret: x25519_dalek::StaticSecret) -> Self {
        let public = X25519PublicKey(x25519_dalek::PublicKey::from(&secret).to_bytes());
        Self {
            secret: Box::new(secret),
            public,
            loaded: None,
        }
    }

    /// A fresh secret from the caller's CSPRNG (draws exactly 32 bytes).
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        Self::from_dalek(x25519_dalek::StaticSecret::random_from_rng(rng))
    }

    /// Rebuild from stored bytes (a pickle or a test vector).
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        let mut bytes = bytes;
        let secret = x25519_dalek::StaticSecret::from(bytes);
        bytes.zeroize();
        Self::from_dalek(secret)
    }

    /// The raw secret, for pickling only.
    pub fn to_bytes(&self) -> Zeroizing<[u8; KEY_LEN]> {
        Zeroizing::new(self.secret.to_bytes())
    }

    /// The matching public key.
    pub fn public_key(&self) -> X25519PublicKey {
        self.public
    }

    /// Contributory X25519 with a peer's public key.
    pub(crate) fn diffie_hellman(
        &self,
        public: &X25519PublicKey,
    ) -> Result<Zeroizing<[u8; KEY_LEN]>, primitives::NonContributory> {
        match &self.loaded {
            Some(loaded) => primitives::x25519(loaded, &public.0),
            None => primitives::x25519_on_dalek(&self.secret, &public.0),
        }
    }
}

impl std::fmt::Debug for X25519Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("X25519Secret").finish_non_exhaustive()
    }
}

/// A user's long-term identity: an Ed25519 signing key and its X25519 form.
///
/// The X25519 secret is `clamp(SHA-512(seed)[0..32])`, the same scalar Ed25519 signs with, as
/// libsodium's `crypto_sign_ed25519_sk_to_curve25519` does.
pub struct IdentityKeyPair {
    signing: Box<ed25519_dalek::SigningKey>,
    x25519: X25519Secret,
    public: IdentityPublicKey,
}

impl IdentityKeyPair {
    /// A fresh identity from the caller's CSPRNG (draws exactly 32 bytes).
    pub fn generate(rng: &mut impl CryptoRngCore) -> Self {
        let mut seed = Zeroizing::new([0u8; KEY_LEN]);
        rng.fill_bytes(&mut seed[..]);
        Self::from_seed(&seed)
    }

    /// Rebuild from the 32-byte Ed25519 seed.
    pub fn from_seed(seed: &[u8; KEY_LEN]) -> Self {
        let signing = ed25519_dalek::SigningKey::from_bytes(seed);
        // SHA-512(seed)[0..32], the unclamped Ed25519 signing scalar. x25519-dalek clamps on
        // use; clamping here too keeps the stored bytes canonical.
        let mut scalar = Zeroizing::new(signing.to_scalar_bytes());
        let bytes: &mut [u8; KEY_LEN] = &mut scalar;
        bytes[0] &= 248;
        bytes[31] &= 127;
        bytes[31] |= 64;
        let x25519 = X25519Secret::from_bytes(*scalar);
        let ed_public = signing.verifying_key();
        let public = IdentityPublicKey {
            ed25519: ed_public.to_bytes(),
            x25519: ed_public.to_montgomery().to_bytes(),
        };
        Self {
            signing: Box::new(signing),
            x25519,
            public,
        }
    }

    /// The seed, for pickling only.
    pub fn seed(&self) -> Zeroizing<[u8; KEY_LEN]> {
        Zeroizing::new(self.signing.to_bytes())
    }

    /// The public identity.
    pub fn public_key(&self) -> IdentityPublicKey {
        self.public
    }

    /// Sign `message` with the identity key.
    pub fn sign(&self, message: &[u8]) -> [u8; SIGNATURE_LEN] {
        self.signing.sign(message).to_bytes()
    }

    /// The X25519 form of the identity secret, used as the client's Noise static key so the
    /// relay can tie the transport to this identity. Never store or log it.
    pub fn x25519_secret_bytes(&self) -> Zeroizing<[u8; KEY_LEN]> {
        self.x25519.to_bytes()
    }

    pub(crate) fn x25519_secret(&self) -> &X25519Secret {
        &self.x25519
    }
}

impl std::fmt::Debug for IdentityKeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityKeyPair")
            .field("public", &self.public)
            .finish_non_exhaustive()
    }
}

/// A signed prekey with its secret, kept by its owner.
#[derive(Clone, Debug)]
pub struct SignedPrekeyPair {
    /// Identifier the initiator echoes back in its X3DH header.
    pub id: u32,
    /// Creation time (seconds since the Unix epoch), used to schedule rotation.
    pub created_at: u64,
    /// The X25519 secret.
    pub secret: X25519Secret,
    /// Ed25519 signature by the identity key over the raw 32-byte public key.
    pub signature: [u8; SIGNATURE_LEN],
}

impl SignedPrekeyPair {
    /// Make and sign a new prekey (draws 32 bytes).
    pub fn generate(
        rng: &mut impl CryptoRngCore,
        identity: &IdentityKeyPair,
        id: u32,
        created_at: u64,
    ) -> Self {
        Self::from_secret(identity, id, created_at, X25519Secret::generate(rng))
    }

    /// Sign an existing secret as prekey `id`.
    pub fn from_secret(
        identity: &IdentityKeyPair,
        id: u32,
        created_at: u64,
        secret: X25519Secret,
    ) -> Self {
        let signature = identity.sign(secret.public_key().as_bytes());
        Self {
            id,
            created_at,
            secret,
            signature,
        }
    }

    /// The part published to the relay.
    pub fn public(&self) -> SignedPrekey {
        SignedPrekey {
            id: self.id,
            created_at: self.created_at,
            public_key: self.secret.public_key(),
            signature: self.signature,
        }
    }
}

/// The published half of a signed prekey.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SignedPrekey {
    /// Identifier chosen by the owner.
    pub id: u32,
    /// Creation time in seconds since the Unix epoch (not covered by the signature).
    pub created_at: u64,
    /// The X25519 public key.
    pub public_key: X25519PublicKey,
    /// Ed25519 signature by the owner's identity over `public_key`'s 32 raw bytes.
    pub signature: [u8; SIGNATURE_LEN],
}

/// A one-time prekey with its secret, kept by its owner until the first message using it
/// decrypts.
#[derive(Clone, Debug)]
pub struct OneTimePrekeyPair {
    /// Identifier the initiator echoes back.
    pub id: u32,
    /// The X25519 secret.
    pub secret: X25519Secret,
}

impl OneTimePrekeyPair {
    /// Make a new one-time prekey (draws 32 bytes).
    pub fn generate(rng: &mut impl CryptoRngCore, id: u32) -> Self {
        Self {
            id,
            secret: X25519Secret::generate(rng),
        }
    }

    /// The part published to the relay.
    pub fn public(&self) -> OneTimePrekey {
        OneTimePrekey {
            id: self.id,
            public_key: self.secret.public_key(),
        }
    }
}

/// The published half of a one-time prekey.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OneTimePrekey {
    /// Identifier chosen by the owner.
    pub id: u32,
    /// The X25519 public key.
    pub public_key: X25519PublicKey,
}

/// Version byte of a `hush-v1` prekey bundle (no PQ prekey).
pub const BUNDLE_VERSION: u8 = 1;
/// Version byte of a `hush-v2` prekey bundle: the `hush-v1` fields, then one PQ prekey.
pub const BUNDLE_VERSION_PQ: u8 = 2;

/// What the relay serves for a user: identity, signed prekey, at most one one-time prekey
/// (popped from the relay's stock; absent when the stock is empty) and, for a `hush-v2` user,
/// one PQ prekey (a one-time one if any is left, else the last-resort one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PrekeyBundle {
    /// The owner's identity key.
    pub identity_key: IdentityPublicKey,
    /// The owner's current signed prekey.
    pub signed_prekey: SignedPrekey,
    /// One one-time prekey, if the relay had any left.
    pub one_time_prekey: Option<OneTimePrekey>,
    /// One signed ML-KEM-768 prekey (`hush-v2`); `None` in a `hush-v1` bundle.
    pub pq_prekey: Option<PqPrekey>,
}

/// Encoded length of a `hush-v1` bundle with a one-time prekey.
pub const BUNDLE_LEN_WITH_OPK: usize = 1 + 32 + 4 + 8 + 32 + 64 + 1 + 4 + 32;
/// Encoded length of a PQ prekey inside a bundle: `id u32be ‖ ek ‖ sig`.
pub const PQ_PREKEY_WIRE_LEN: usize = 4 + KEM_ENCAPSULATION_KEY_LEN + SIGNATURE_LEN;
/// Largest encoded bundle (`hush-v2`, with a one-time prekey).
pub const MAX_BUNDLE_LEN: usize = BUNDLE_LEN_WITH_OPK + PQ_PREKEY_WIRE_LEN;

impl PrekeyBundle {
    /// The profile a session started from this bundle gets.
    pub fn profile(&self) -> Profile {
        if self.pq_prekey.is_some() {
            Profile::V2
        } else {
            Profile::V1
        }
    }

    /// Check every signature (the signed prekey's and the PQ prekey's, both by the bundle's
    /// identity key), that the PQ prekey is a well-formed ML-KEM-768 key, and that the bundle
    /// meets `required`: a bundle without a PQ prekey is refused with
    /// [`crate::SessionError::Downgrade`] when `hush-v2` is required. Only a verified bundle
    /// can start a session, so no caller can skip either check.
    pub fn verify(self, required: Profile) -> Result<VerifiedBundle, crate::SessionError> {
        if !self.identity_key.verify(
            self.signed_prekey.public_key.as_bytes(),
            &self.signed_prekey.signature,
        ) {
            return Err(crate::SessionError::BadPrekeySignature);
        }
        if let Some(pq) = &self.pq_prekey {
            if !pq.verify(&self.identity_key) {
                return Err(crate::SessionError::BadPqPrekeySignature);
            }
        }
        let offered = self.profile();
        if offered < required {
            return Err(crate::SessionError::Downgrade { required, offered });
        }
        Ok(VerifiedBundle(self))
    }

    /// Wire encoding: `version(1) | identity(32) | spk_id u32be | spk_created_at u64be | spk(32) |
    /// spk_sig(64) | has_opk u8 (0/1) | [opk_id u32be | opk(32)]`, and for version 2 then
    /// `pq_id u32be | pq_ek(1184) | pq_sig(64)`. Version 1 exactly when there is no PQ prekey.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAX_BUNDLE_LEN);
        out.push(match self.pq_prekey {
            Some(_) => BUNDLE_VERSION_PQ,
            None => BUNDLE_VERSION,
        });
        out.extend_from_slice(self.identity_key.as_bytes());
        out.extend_from_slice(&self.signed_prekey.id.to_be_bytes());
        out.extend_from_slice(&self.signed_prekey.created_at.to_be_bytes());
        out.extend_from_slice(self.signed_prekey.public_key.as_bytes());
        out.extend_from_slice(&self.signed_prekey.signature);
        match &self.one_time_prekey {
            Some(opk) => {
                out.push(1);
                out.extend_from_slice(&opk.id.to_be_bytes());
                out.extend_from_slice(opk.public_key.as_bytes());
            }
            None => out.push(0),
        }
        if let Some(pq) = &self.pq_prekey {
            put_pq_prekey(&mut out, pq);
        }
        out
    }

    /// Parse the wire encoding; signatures are not checked here (see [`PrekeyBundle::verify`]).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes, "prekey bundle");
        let version = r.u8()?;
        if version != BUNDLE_VERSION && version != BUNDLE_VERSION_PQ {
            return Err(DecodeError::UnsupportedVersion {
                what: "prekey bundle",
                got: version,
                supported: BUNDLE_VERSION_PQ,
            });
        }
        let identity_key = IdentityPublicKey::from_bytes(&r.array()?)?;
        let signed_prekey = SignedPrekey {
            id: r.u32()?,
            created_at: r.u64()?,
            public_key: X25519PublicKey::from_wire(r.array()?)?,
            signature: r.array()?,
        };
        let one_time_prekey = match r.u8()? {
            0 => None,
            1 => Some(OneTimePrekey {
                id: r.u32()?,
                public_key: X25519PublicKey::from_wire(r.array()?)?,
            }),
            other => {
                return Err(DecodeError::InvalidField {
                    what: "prekey bundle one-time-prekey flag",
                    value: u64::from(other),
                })
            }
        };
        let pq_prekey = if version == BUNDLE_VERSION_PQ {
            Some(read_pq_prekey(&mut r)?)
        } else {
            None
        };
        r.finish()?;
        Ok(Self {
            identity_key,
            signed_prekey,
            one_time_prekey,
            pq_prekey,
        })
    }
}

/// Append `id u32be ‖ ek(1184) ‖ sig(64)`.
pub(crate) fn put_pq_prekey(out: &mut Vec<u8>, pq: &PqPrekey) {
    out.extend_from_slice(&pq.id.to_be_bytes());
    out.extend_from_slice(&pq.encapsulation_key[..]);
    out.extend_from_slice(&pq.signature);
}

/// Read `id u32be ‖ ek(1184) ‖ sig(64)` (no signature check).
pub(crate) fn read_pq_prekey(r: &mut Reader<'_>) -> Result<PqPrekey, DecodeError> {
    let id = r.u32()?;
    let encapsulation_key = Box::new(r.array::<KEM_ENCAPSULATION_KEY_LEN>()?);
    Ok(PqPrekey {
        id,
        encapsulation_key,
        signature: r.array()?,
    })
}

/// A bundle whose signatures have been checked and whose profile meets the caller's
/// requirement: proof, in the type, that [`crate::Session::initiate`] never runs on an
/// unverified or downgraded bundle.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VerifiedBundle(PrekeyBundle);

impl VerifiedBundle {
    /// The bundle that was verified.
    pub fn bundle(&self) -> &PrekeyBundle {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    #[test]
    fn identity_x25519_form_matches_edwards_conversion() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let a = IdentityKeyPair::generate(&mut rng);
        let b = IdentityKeyPair::generate(&mut rng);
        // DH between the two identities' X25519 forms agrees in both directions.
        let ab = a
            .x25519_secret()
            .diffie_hellman(&b.public_key().x25519())
            .unwrap();
        let ba = b
            .x25519_secret()
            .diffie_hellman(&a.public_key().x25519())
            .unwrap();
        assert_eq!(*ab, *ba);
        assert_eq!(a.x25519_secret().public_key(), a.public_key().x25519());
    }

    #[test]
    fn bundle_round_trips_and_rejects_bad_bytes() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let id = IdentityKeyPair::generate(&mut rng);
        let spk = SignedPrekeyPair::generate(&mut rng, &id, 7, 1_700_000_000);
        let opk = OneTimePrekeyPair::generate(&mut rng, 9);
        for opk in [Some(opk.public()), None] {
            let bundle = PrekeyBundle {
                identity_key: id.public_key(),
                signed_prekey: spk.public(),
                one_time_prekey: opk,
                pq_prekey: None,
            };
            let bytes = bundle.to_bytes();
            assert_eq!(PrekeyBundle::from_bytes(&bytes).unwrap(), bundle);
            assert!(bundle.clone().verify(Profile::V1).is_ok());
            for cut in 0..bytes.len() {
                assert!(PrekeyBundle::from_bytes(&bytes[..cut]).is_err());
            }
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(PrekeyBundle::from_bytes(&longer).is_err());
            // A version-1 body labelled version 2 lacks its PQ prekey.
            let mut v2 = bytes.clone();
            v2[0] = BUNDLE_VERSION_PQ;
            assert!(PrekeyBundle::from_bytes(&v2).is_err());
            let mut v3 = bytes.clone();
            v3[0] = 3;
            assert!(matches!(
                PrekeyBundle::from_bytes(&v3),
                Err(DecodeError::UnsupportedVersion {
                    got: 3,
                    supported: 2,
                    ..
                })
            ));
        }
    }

    #[test]
    fn the_fallback_dh_path_derives_the_same_secrets() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        for _ in 0..20 {
            let ours = X25519Secret::generate(&mut rng);
            let theirs = X25519Secret::generate(&mut rng).public_key();
            assert!(ours.loaded.is_some(), "aws-lc loaded the key");
            let fallback =
                X25519Secret::dalek_only(x25519_dalek::StaticSecret::from(*ours.to_bytes()));
            assert_eq!(fallback.public_key(), ours.public_key());
            assert_eq!(
                *fallback.diffie_hellman(&theirs).unwrap(),
                *ours.diffie_hellman(&theirs).unwrap()
            );
        }
    }

    #[test]
    fn debug_never_shows_secret_bytes() {
        let secret = X25519Secret::from_bytes([0xab; 32]);
        let shown = format!("{secret:?}");
        assert!(!shown.contains("ab"), "{shown}");
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let id = IdentityKeyPair::generate(&mut rng);
        let seed_hex: String = id.seed().iter().map(|b| format!("{b:02x}")).collect();
        assert!(!format!("{id:?}").contains(&seed_hex));
    }

    #[test]
    fn weak_identity_keys_are_rejected() {
        // The identity point (0, 1) encodes as 0x01 followed by zeros: small order.
        let mut identity = [0u8; 32];
        identity[0] = 1;
        assert_eq!(
            IdentityPublicKey::from_bytes(&identity),
            Err(KeyError::WeakIdentityKey)
        );
    }
}
