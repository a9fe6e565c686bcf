//! The two ML-KEM-768 backends measured in `benches/kem.rs`, RustCrypto `ml-kem` (hush-v2's
//! backend) and aws-lc-rs's `kem`, compute the same FIPS 203 function: keys made by one work
//! with the other in both directions, both reject altered ciphertexts *implicitly* (a different
//! 32-byte secret, not an error, so a tampered initial message fails later at the AEAD) and give
//! the same rejection secret for the same key and altered ciphertext, and both refuse
//! malformed encapsulation keys.
//!
//! aws-lc-rs cannot make a key from a 64-byte seed `d ‖ z`, so a seed-made `ml-kem` key reaches
//! aws-lc-rs in FIPS 203's 2400-byte expanded form (`dk_PKE ‖ ek ‖ H(ek) ‖ z`, the only private
//! key form aws-lc-rs imports), and an aws-lc-rs key reaches `ml-kem` the same way. That also
//! checks `ml-kem`'s seed layout against an independent implementation: `z` must be the last
//! half of the seed for the rejection secrets to agree.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use aws_lc_rs::kem::{
    Ciphertext as AwsCiphertext, DecapsulationKey as AwsDecapsulationKey,
    EncapsulationKey as AwsEncapsulationKey, ML_KEM_768,
};
use ml_kem::ml_kem_768::{Ciphertext, DecapsulationKey, EncapsulationKey};
#[allow(deprecated)] // the expanded form is used only to carry keys across backends
use ml_kem::ExpandedKeyEncoding;
use ml_kem::{Decapsulate, Key, KeyExport, Seed, B32};
use proptest::prelude::*;

/// FIPS 203 ML-KEM-768 sizes, as docs/PROTOCOL.md and the hush-v2 spec state them.
const EK_LEN: usize = 1184;
const CT_LEN: usize = 1088;
const SS_LEN: usize = 32;
const SEED_LEN: usize = 64;
const EXPANDED_DK_LEN: usize = 2400;

/// Parses an encapsulation key with `ml-kem` (type check on length, then FIPS 203 §7.2 modulus
/// check); `None` if either fails.
fn ml_kem_ek(bytes: &[u8]) -> Option<EncapsulationKey> {
    let key = Key::<EncapsulationKey>::try_from(bytes).ok()?;
    EncapsulationKey::new(&key).ok()
}

fn ml_kem_ct(bytes: &[u8]) -> Ciphertext {
    Ciphertext::try_from(bytes).unwrap()
}

/// Carries an `ml-kem` key to aws-lc-rs through the expanded form.
#[allow(deprecated)]
fn to_aws(dk: &DecapsulationKey) -> AwsDecapsulationKey {
    let expanded = dk.to_expanded_bytes();
    assert_eq!(expanded.len(), EXPANDED_DK_LEN);
    AwsDecapsulationKey::new(&ML_KEM_768, expanded.as_slice()).unwrap()
}

/// Carries an aws-lc-rs key to `ml-kem` through the expanded form (`ml-kem` checks that the
/// embedded `H(ek)` matches the embedded `ek`).
#[allow(deprecated)]
fn from_aws(dk: &AwsDecapsulationKey) -> DecapsulationKey {
    let bytes = dk.key_bytes().unwrap();
    assert_eq!(bytes.as_ref().len(), EXPANDED_DK_LEN);
    let expanded =
        ml_kem::ExpandedDecapsulationKey::<ml_kem::MlKem768>::try_from(bytes.as_ref()).unwrap();
    DecapsulationKey::from_expanded_bytes(&expanded).unwrap()
}

fn aws_decapsulate(dk: &AwsDecapsulationKey, ct: &[u8]) -> Vec<u8> {
    dk.decapsulate(AwsCiphertext::from(ct))
        .expect("a ciphertext of the right length decapsulates (implicit rejection, no error)")
        .as_ref()
        .to_vec()
}

fn flip(ct: &[u8], bit: usize) -> Vec<u8> {
    let mut flipped = ct.to_vec();
    flipped[bit / 8] ^= 1 << (bit % 8);
    flipped
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// A key pair made by `ml-kem` from a seed (as hush-v2 stores it): aws-lc-rs parses its
    /// encapsulation key and encapsulates, `ml-kem` decapsulates to the same secret.
    #[test]
    fn ml_kem_key_aws_lc_encapsulates_ml_kem_decapsulates(seed in any::<[u8; SEED_LEN]>()) {
        let dk = DecapsulationKey::from_seed(Seed::from(seed));
        let ek_bytes = dk.encapsulation_key().to_bytes();
        prop_assert_eq!(ek_bytes.len(), EK_LEN);

        let aws_ek = AwsEncapsulationKey::new(&ML_KEM_768, ek_bytes.as_slice()).unwrap();
        let (ct, ss) = aws_ek.encapsulate().unwrap();
        prop_assert_eq!(ct.as_ref().len(), CT_LEN);
        prop_assert_eq!(ss.as_ref().len(), SS_LEN);

        let ours = dk.decapsulate(&ml_kem_ct(ct.as_ref()));
        prop_assert_eq!(ours.to_vec(), ss.as_ref().to_vec());
    }

    /// A key pair made by aws-lc-rs: `ml-kem` parses its encapsulation key (and serializes it
    /// back byte for byte) and encapsulates deterministically, aws-lc-rs decapsulates to the
    /// same secret.
    #[test]
    fn aws_lc_key_ml_kem_encapsulates_aws_lc_decapsulates(m in any::<[u8; 32]>()) {
        let aws_dk = AwsDecapsulationKey::generate(&ML_KEM_768).unwrap();
        let aws_ek_bytes = aws_dk.encapsulation_key().unwrap().key_bytes().unwrap();
        prop_assert_eq!(aws_ek_bytes.as_ref().len(), EK_LEN);

        let ek = ml_kem_ek(aws_ek_bytes.as_ref()).expect("ml-kem accepts aws-lc's ek");
        prop_assert_eq!(ek.to_bytes().to_vec(), aws_ek_bytes.as_ref().to_vec());
        let (ct, ss) = ek.encapsulate_deterministic(&B32::from(m));
        prop_assert_eq!(ct.len(), CT_LEN);

        prop_assert_eq!(aws_decapsulate(&aws_dk, ct.as_slice()), ss.to_vec());
    }

    /// Seed-made `ml-kem` key, `ml-kem` deterministic encapsulation (the hush-v2 vector path),
    /// decapsulated by both backends. With one bit of the ciphertext flipped, both return a
    /// secret (no error), it differs from the real one, and it is the same in both: FIPS 203's
    /// rejection secret J(z ‖ c), which needs `z` where FIPS 203 puts it.
    #[test]
    fn ml_kem_seed_key_implicit_rejection_matches_aws_lc(
        seed in any::<[u8; SEED_LEN]>(),
        m in any::<[u8; 32]>(),
        bit in 0..CT_LEN * 8,
    ) {
        let dk = DecapsulationKey::from_seed(Seed::from(seed));
        let aws_dk = to_aws(&dk);
        #[allow(deprecated)]
        let expanded = dk.to_expanded_bytes();
        // Expanded layout dk_PKE (1152) ‖ ek (1184) ‖ H(ek) (32) ‖ z (32): z is the seed's tail.
        prop_assert_eq!(&expanded[EXPANDED_DK_LEN - 32..], &seed[32..]);
        let ek_bytes = dk.encapsulation_key().to_bytes();
        prop_assert_eq!(&expanded[1152..1152 + EK_LEN], ek_bytes.as_slice());

        let (ct, ss) = dk.encapsulation_key().encapsulate_deterministic(&B32::from(m));
        prop_assert_eq!(dk.decapsulate(&ct), ss);
        prop_assert_eq!(aws_decapsulate(&aws_dk, ct.as_slice()), ss.to_vec());

        let flipped = flip(ct.as_slice(), bit);
        let ours = dk.decapsulate(&ml_kem_ct(&flipped));
        let theirs = aws_decapsulate(&aws_dk, &flipped);
        prop_assert_ne!(ours, ss);
        prop_assert_ne!(theirs.as_slice(), ss.as_slice());
        prop_assert_eq!(ours.as_slice(), theirs.as_slice());
    }

    /// The reverse: aws-lc-rs key and encapsulation, decapsulated by both backends, with and
    /// without a flipped bit.
    #[test]
    fn aws_lc_key_implicit_rejection_matches_ml_kem(bit in 0..CT_LEN * 8) {
        let aws_dk = AwsDecapsulationKey::generate(&ML_KEM_768).unwrap();
        let dk = from_aws(&aws_dk);
        let aws_ek = aws_dk.encapsulation_key().unwrap();
        prop_assert_eq!(
            dk.encapsulation_key().to_bytes().to_vec(),
            aws_ek.key_bytes().unwrap().as_ref().to_vec()
        );

        let (ct, ss) = aws_ek.encapsulate().unwrap();
        prop_assert_eq!(dk.decapsulate(&ml_kem_ct(ct.as_ref())).to_vec(), ss.as_ref().to_vec());

        let flipped = flip(ct.as_ref(), bit);
        let theirs = aws_decapsulate(&aws_dk, &flipped);
        let ours = dk.decapsulate(&ml_kem_ct(&flipped));
        prop_assert_ne!(theirs.clone(), ss.as_ref().to_vec());
        prop_assert_eq!(ours.to_vec(), theirs);
    }

    /// An encapsulation key with a coefficient ≥ q = 3329 (FIPS 203 §7.2 modulus check) is
    /// refused by both backends before a ciphertext exists: a relay or a forged bundle cannot
    /// make the initiator encapsulate to a malformed key. `ml-kem` refuses it when parsing
    /// (`EncapsulationKey::new`), so hush-v2 can reject the bundle up front; aws-lc-rs only
    /// when encapsulating.
    #[test]
    fn both_refuse_ek_with_out_of_range_coefficient(
        seed in any::<[u8; SEED_LEN]>(),
        coefficient in 0usize..768,
        value in 3329u16..4096,
    ) {
        let dk = DecapsulationKey::from_seed(Seed::from(seed));
        let mut ek = dk.encapsulation_key().to_bytes().to_vec();
        // ByteEncode_12: coefficients 2i and 2i+1 share 3 bytes, little-endian.
        let at = coefficient / 2 * 3;
        if coefficient % 2 == 0 {
            ek[at] = (value & 0xff) as u8;
            ek[at + 1] = (ek[at + 1] & 0xf0) | (value >> 8) as u8;
        } else {
            ek[at + 1] = (ek[at + 1] & 0x0f) | ((value & 0x0f) << 4) as u8;
            ek[at + 2] = (value >> 4) as u8;
        }
        prop_assert!(ml_kem_ek(&ek).is_none());
        // aws-lc-rs 1.19 parses it (`new` checks only the length) and refuses at `encapsulate`.
        match AwsEncapsulationKey::new(&ML_KEM_768, &ek) {
            Err(_) => {}
            Ok(parsed) => prop_assert!(parsed.encapsulate().is_err()),
        }
    }
}

/// Wrong lengths: both refuse an encapsulation key that is not 1184 bytes; a ciphertext that
/// is not 1088 bytes is an error in aws-lc-rs and cannot be built for `ml-kem` at all.
#[test]
fn both_refuse_wrong_lengths() {
    let dk = DecapsulationKey::from_seed(Seed::from([7u8; SEED_LEN]));
    let ek = dk.encapsulation_key().to_bytes().to_vec();
    for len in [0, EK_LEN - 1, EK_LEN + 1] {
        let mut bytes = ek.clone();
        bytes.resize(len, 0);
        assert!(ml_kem_ek(&bytes).is_none(), "ml-kem ek of {len} bytes");
        assert!(
            AwsEncapsulationKey::new(&ML_KEM_768, &bytes).is_err(),
            "aws-lc ek of {len} bytes"
        );
    }

    let aws_dk = to_aws(&dk);
    let (ct, _) = dk
        .encapsulation_key()
        .encapsulate_deterministic(&B32::from([1u8; 32]));
    for len in [0, CT_LEN - 1, CT_LEN + 1] {
        let mut bytes = ct.to_vec();
        bytes.resize(len, 0);
        assert!(Ciphertext::try_from(bytes.as_slice()).is_err());
        assert!(dk.decapsulate_slice(&bytes).is_err());
        assert!(aws_dk
            .decapsulate(AwsCiphertext::from(bytes.as_slice()))
            .is_err());
    }
}
