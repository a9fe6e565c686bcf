//! Post-quantum prekeys of profile `hush-v2`: signed ML-KEM-768 keys (FIPS 203), one-time and
//! last-resort, and the two KEM operations PQXDH needs.
//!
//! Two FIPS 203 implementations, each where it is the right tool (measured in
//! docs/BENCHMARKS.md, "ML-KEM-768 backends"):
//! - RustCrypto's `ml-kem` does key generation and encapsulation. A decapsulation key is kept
//!   as its 64-byte seed `d ‖ z` (FIPS 203 `ML-KEM.KeyGen_internal(d, z)`), the form the spec
//!   stores and the smallest secret to seal at rest, and encapsulation takes its 32-byte `m`
//!   from the caller's RNG, so a seeded RNG replays a whole setup byte for byte (that is how
//!   the `hush-v2` vectors are made). aws-lc-rs can do neither: it has no seeded key generation
//!   and draws `m` itself.
//! - aws-lc-rs (already our X25519) does decapsulation, about six times faster than `ml-kem`
//!   here. It cannot import a seed, so each key is expanded once, when the pair is built, into
//!   FIPS 203's 2 400-byte decapsulation key and loaded into aws-lc; `ml-kem` stays as the
//!   fallback if that load ever fails. A property test shows the two agree on random inputs,
//!   including the implicit-rejection secret of altered ciphertexts.

use std::sync::Arc;

use aws_lc_rs::kem::{
    Ciphertext as AwsCiphertext, DecapsulationKey as AwsDecapsulationKey, ML_KEM_768,
};
use ml_kem::array::Array;
#[allow(deprecated)] // the expanded form is the only private-key form aws-lc-rs imports
use ml_kem::ExpandedKeyEncoding;
use ml_kem::{Decapsulate, DecapsulationKey768, EncapsulationKey768, KeyExport, B32};
use rand_core::CryptoRngCore;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::keys::{IdentityKeyPair, IdentityPublicKey, SIGNATURE_LEN};

/// ML-KEM-768 encapsulation key length.
pub const KEM_ENCAPSULATION_KEY_LEN: usize = 1184;
/// ML-KEM-768 ciphertext length.
pub const KEM_CIPHERTEXT_LEN: usize = 1088;
/// Length of a decapsulation key's seed `d ‖ z`.
pub const KEM_SEED_LEN: usize = 64;
/// Length of the KEM shared secret.
pub const KEM_SHARED_SECRET_LEN: usize = 32;
/// Length of the encapsulation randomness `m`.
pub const KEM_ENCAPS_RANDOMNESS_LEN: usize = 32;
/// Byte naming the KEM inside a PQ prekey signature: 0x01 = ML-KEM-768.
pub const KEM_ID_ML_KEM_768: u8 = 0x01;
/// Context string of a PQ prekey signature (ASCII, no terminator).
pub const PQ_PREKEY_SIG_CONTEXT: &[u8] = b"hush-v2-pq-prekey";
/// Ids with this bit set name last-resort PQ prekeys; one-time ids stay below it. One map
/// holds both kinds, and an id alone tells a reader (and a log) which kind a message used.
pub const LAST_RESORT_ID_BIT: u32 = 0x8000_0000;

/// An ML-KEM-768 encapsulation key (public).
pub type KemEncapsulationKey = [u8; KEM_ENCAPSULATION_KEY_LEN];
/// An ML-KEM-768 ciphertext.
pub type KemCiphertext = [u8; KEM_CIPHERTEXT_LEN];

/// The bytes a PQ prekey signature covers: `context ‖ u32be(id) ‖ 0x01 ‖ ek`.
pub fn pq_prekey_signed_bytes(id: u32, encapsulation_key: &KemEncapsulationKey) -> Vec<u8> {
    let mut out =
        Vec::with_capacity(PQ_PREKEY_SIG_CONTEXT.len() + 4 + 1 + KEM_ENCAPSULATION_KEY_LEN);
    out.extend_from_slice(PQ_PREKEY_SIG_CONTEXT);
    out.extend_from_slice(&id.to_be_bytes());
    out.push(KEM_ID_ML_KEM_768);
    out.extend_from_slice(encapsulation_key);
    out
}

/// The published half of a PQ prekey: what a `hush-v2` bundle carries.
#[derive(Clone, PartialEq, Eq)]
pub struct PqPrekey {
    /// Identifier chosen by the owner ([`LAST_RESORT_ID_BIT`] set for a last-resort key).
    pub id: u32,
    /// The ML-KEM-768 encapsulation key.
    pub encapsulation_key: Box<KemEncapsulationKey>,
    /// Ed25519 signature by the owner's identity over [`pq_prekey_signed_bytes`].
    pub signature: [u8; SIGNATURE_LEN],
}

impl std::fmt::Debug for PqPrekey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PqPrekey")
            .field("id", &self.id)
            .field("last_resort", &self.is_last_resort())
            .finish_non_exhaustive()
    }
}

impl PqPrekey {
    /// Whether the id names a last-resort key.
    pub fn is_last_resort(&self) -> bool {
        self.id & LAST_RESORT_ID_BIT != 0
    }

    /// Whether `identity` signed this key (over its id and encapsulation key) and the key is
    /// a well-formed ML-KEM-768 encapsulation key (FIPS 203 modulus check). Both must hold
    /// before anyone encapsulates to it.
    pub fn verify(&self, identity: &IdentityPublicKey) -> bool {
        identity.verify(
            &pq_prekey_signed_bytes(self.id, &self.encapsulation_key),
            &self.signature,
        ) && parse_encapsulation_key(&self.encapsulation_key).is_some()
    }
}

/// A PQ prekey with its secret seed, kept by its owner.
#[derive(Clone)]
pub struct PqPrekeyPair {
    /// Identifier ([`LAST_RESORT_ID_BIT`] set for a last-resort key).
    pub id: u32,
    /// Creation time (seconds since the Unix epoch), used to schedule rotation.
    pub created_at: u64,
    seed: Zeroizing<[u8; KEM_SEED_LEN]>,
    encapsulation_key: Box<KemEncapsulationKey>,
    signature: [u8; SIGNATURE_LEN],
    /// The key loaded into aws-lc-rs (its memory is freed and cleansed by AWS-LC on drop);
    /// `None` only if the load failed, and then `ml-kem` decapsulates from the seed.
    loaded: Option<Arc<AwsDecapsulationKey<aws_lc_rs::kem::AlgorithmId>>>,
}

impl std::fmt::Debug for PqPrekeyPair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PqPrekeyPair")
            .field("id", &self.id)
            .field("created_at", &self.created_at)
            .finish_non_exhaustive()
    }
}

impl PqPrekeyPair {
    /// Make and sign a new PQ prekey (draws 64 bytes: the seed `d ‖ z`).
    pub fn generate(
        rng: &mut impl CryptoRngCore,
        identity: &IdentityKeyPair,
        id: u32,
        created_at: u64,
    ) -> Self {
        let mut seed = Zeroizing::new([0u8; KEM_SEED_LEN]);
        rng.fill_bytes(&mut seed[..]);
        Self::from_seed(identity, id, created_at, seed)
    }

    /// Rebuild (and re-sign) the key pair from its seed. Ed25519 signatures are
    /// deterministic, so this reproduces the published signature exactly.
    pub fn from_seed(
        identity: &IdentityKeyPair,
        id: u32,
        created_at: u64,
        seed: Zeroizing<[u8; KEM_SEED_LEN]>,
    ) -> Self {
        let dk = decapsulation_key(&seed);
        let mut encapsulation_key = Box::new([0u8; KEM_ENCAPSULATION_KEY_LEN]);
        encapsulation_key.copy_from_slice(dk.encapsulation_key().to_bytes().as_slice());
        let signature = identity.sign(&pq_prekey_signed_bytes(id, &encapsulation_key));
        Self {
            id,
            created_at,
            seed,
            encapsulation_key,
            signature,
            loaded: load_into_aws_lc(&dk).map(Arc::new),
        }
    }

    /// Whether this is a last-resort key.
    pub fn is_last_resort(&self) -> bool {
        self.id & LAST_RESORT_ID_BIT != 0
    }

    /// The seed `d ‖ z` (the secret; for sealed storage only).
    pub fn seed(&self) -> &Zeroizing<[u8; KEM_SEED_LEN]> {
        &self.seed
    }

    /// The part published to the relay.
    pub fn public(&self) -> PqPrekey {
        PqPrekey {
            id: self.id,
            encapsulation_key: self.encapsulation_key.clone(),
            signature: self.signature,
        }
    }

    /// The encapsulation key (public).
    pub fn encapsulation_key(&self) -> &KemEncapsulationKey {
        &self.encapsulation_key
    }

    /// `ML-KEM.Decaps(dk, ct)`. Implicit rejection: an altered ciphertext yields an unrelated
    /// secret (and the first message then fails to open), never an error that would tell an
    /// attacker which bytes mattered.
    pub fn decapsulate(
        &self,
        ciphertext: &KemCiphertext,
    ) -> Zeroizing<[u8; KEM_SHARED_SECRET_LEN]> {
        if let Some(dk) = &self.loaded {
            if let Ok(shared) = dk.decapsulate(AwsCiphertext::from(&ciphertext[..])) {
                if shared.as_ref().len() == KEM_SHARED_SECRET_LEN {
                    let mut out = Zeroizing::new([0u8; KEM_SHARED_SECRET_LEN]);
                    out.copy_from_slice(shared.as_ref());
                    return out;
                }
            }
        }
        self.decapsulate_with_ml_kem(ciphertext)
    }

    /// `ML-KEM.Decaps` by `ml-kem` from the seed: the fallback, and the reference the
    /// aws-lc-rs path is tested against.
    pub(crate) fn decapsulate_with_ml_kem(
        &self,
        ciphertext: &KemCiphertext,
    ) -> Zeroizing<[u8; KEM_SHARED_SECRET_LEN]> {
        let dk = decapsulation_key(&self.seed);
        let ct = ml_kem::Ciphertext::<ml_kem::MlKem768>::from(*ciphertext);
        let shared = Zeroizing::new(dk.decapsulate(&ct));
        let mut out = Zeroizing::new([0u8; KEM_SHARED_SECRET_LEN]);
        out.copy_from_slice(shared.as_slice());
        out
    }

    /// Whether `other` is the same public key (constant time over the encapsulation key).
    pub fn same_public(&self, other: &PqPrekey) -> bool {
        self.id == other.id
            && bool::from(self.encapsulation_key[..].ct_eq(&other.encapsulation_key[..]))
    }
}

fn decapsulation_key(seed: &[u8; KEM_SEED_LEN]) -> DecapsulationKey768 {
    // The copy handed to ml-kem is ours to wipe once the key is built (`Seed` is `Copy`).
    let copy = Zeroizing::new(Array::from(*seed));
    DecapsulationKey768::from_seed(*copy)
}

/// Expand the key to FIPS 203's 2 400-byte form and load it into aws-lc-rs.
#[allow(deprecated)] // ExpandedKeyEncoding: see the module doc
fn load_into_aws_lc(
    dk: &DecapsulationKey768,
) -> Option<AwsDecapsulationKey<aws_lc_rs::kem::AlgorithmId>> {
    let expanded = Zeroizing::new(dk.to_expanded_bytes());
    AwsDecapsulationKey::new(&ML_KEM_768, expanded.as_slice()).ok()
}

/// Parse an encapsulation key, running FIPS 203's input check (every coefficient below q).
fn parse_encapsulation_key(bytes: &KemEncapsulationKey) -> Option<EncapsulationKey768> {
    EncapsulationKey768::new(&Array::from(*bytes)).ok()
}

/// `ML-KEM.Encaps_internal(ek, m)` with `m` drawn from `rng` (32 bytes). `None` when the key
/// is malformed (a verified prekey never is).
pub(crate) fn encapsulate(
    rng: &mut impl CryptoRngCore,
    encapsulation_key: &KemEncapsulationKey,
) -> Option<(Box<KemCiphertext>, Zeroizing<[u8; KEM_SHARED_SECRET_LEN]>)> {
    let ek = parse_encapsulation_key(encapsulation_key)?;
    let mut m = Zeroizing::new([0u8; KEM_ENCAPS_RANDOMNESS_LEN]);
    rng.fill_bytes(&mut m[..]);
    let m = Zeroizing::new(B32::from(*m));
    let (ct, shared) = ek.encapsulate_deterministic(&m);
    let shared = Zeroizing::new(shared);
    let mut ciphertext = Box::new([0u8; KEM_CIPHERTEXT_LEN]);
    ciphertext.copy_from_slice(ct.as_slice());
    let mut secret = Zeroizing::new([0u8; KEM_SHARED_SECRET_LEN]);
    secret.copy_from_slice(shared.as_slice());
    Some((ciphertext, secret))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use rand_chacha::rand_core::{RngCore, SeedableRng};
    use rand_chacha::ChaCha20Rng;

    use super::*;

    #[test]
    fn encapsulation_to_a_prekey_decapsulates_to_the_same_secret_and_a_flip_does_not() {
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let identity = IdentityKeyPair::generate(&mut rng);
        let pair = PqPrekeyPair::generate(&mut rng, &identity, 7, 0);
        let public = pair.public();
        assert!(public.verify(&identity.public_key()));
        let (ct, ss) = encapsulate(&mut rng, &public.encapsulation_key).unwrap();
        assert_eq!(*pair.decapsulate(&ct), *ss);
        let mut flipped = *ct;
        flipped[100] ^= 1;
        assert_ne!(*pair.decapsulate(&flipped), *ss);
    }

    #[test]
    fn the_aws_lc_decapsulation_agrees_with_ml_kem_on_genuine_and_altered_ciphertexts() {
        let mut rng = ChaCha20Rng::seed_from_u64(5);
        let identity = IdentityKeyPair::generate(&mut rng);
        for round in 0..16u32 {
            let pair = PqPrekeyPair::generate(&mut rng, &identity, round + 1, 0);
            assert!(pair.loaded.is_some(), "aws-lc-rs loaded the expanded key");
            let (ct, ss) = encapsulate(&mut rng, pair.encapsulation_key()).unwrap();
            assert_eq!(*pair.decapsulate(&ct), *ss);
            assert_eq!(*pair.decapsulate_with_ml_kem(&ct), *ss);
            // Implicit rejection: both give the same unrelated secret for an altered ciphertext.
            let mut altered = *ct;
            let at = (rng.next_u32() as usize) % KEM_CIPHERTEXT_LEN;
            altered[at] ^= 1 << (round % 8);
            let rejected = pair.decapsulate(&altered);
            assert_ne!(*rejected, *ss);
            assert_eq!(*rejected, *pair.decapsulate_with_ml_kem(&altered));
        }
    }

    #[test]
    fn a_prekey_fails_verification_under_another_identity_another_id_or_a_flipped_key() {
        let mut rng = ChaCha20Rng::seed_from_u64(2);
        let identity = IdentityKeyPair::generate(&mut rng);
        let other = IdentityKeyPair::generate(&mut rng);
        let public = PqPrekeyPair::generate(&mut rng, &identity, 7, 0).public();
        assert!(!public.verify(&other.public_key()));
        let mut renamed = public.clone();
        renamed.id = 8;
        assert!(!renamed.verify(&identity.public_key()));
        let mut flipped = public.clone();
        flipped.encapsulation_key[5] ^= 1;
        assert!(!flipped.verify(&identity.public_key()));
    }

    #[test]
    fn a_signed_but_malformed_encapsulation_key_is_refused() {
        let mut rng = ChaCha20Rng::seed_from_u64(3);
        let identity = IdentityKeyPair::generate(&mut rng);
        // All 0xFF decodes to coefficients of 4095 ≥ q = 3329: FIPS 203's modulus check fails.
        let ek = Box::new([0xFF; KEM_ENCAPSULATION_KEY_LEN]);
        let signature = identity.sign(&pq_prekey_signed_bytes(3, &ek));
        let public = PqPrekey {
            id: 3,
            encapsulation_key: ek,
            signature,
        };
        assert!(!public.verify(&identity.public_key()));
        assert!(encapsulate(&mut rng, &public.encapsulation_key).is_none());
    }

    #[test]
    fn rebuilding_from_the_seed_reproduces_the_published_key_and_signature() {
        let mut rng = ChaCha20Rng::seed_from_u64(4);
        let identity = IdentityKeyPair::generate(&mut rng);
        let pair = PqPrekeyPair::generate(&mut rng, &identity, LAST_RESORT_ID_BIT | 1, 9);
        let again = PqPrekeyPair::from_seed(&identity, pair.id, 9, pair.seed().clone());
        assert_eq!(again.public(), pair.public());
        assert!(again.is_last_resort());
    }
}
