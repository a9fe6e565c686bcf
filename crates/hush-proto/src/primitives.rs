//! Thin wrappers over the RustCrypto, dalek and aws-lc primitives that profile `hush-v1` uses, so
//! that every call site gets the same checks (contributory DH, strict signatures, fixed lengths).
//!
//! X25519 runs on aws-lc (`aws-lc-rs`), whose x86-64 and aarch64 X25519 is s2n-bignum's formally
//! verified assembly: about twice as fast as x25519-dalek's portable ladder on our machine
//! (docs/BENCHMARKS.md), which decides whether session setup fits its budget. x25519-dalek stays
//! as the fallback should aws-lc refuse a key (it only does when out of memory), and the tests
//! check both give the same bytes.
//!
//! Nothing here is a primitive of our own: these functions only fix parameters and turn the
//! crates' results into our typed errors. The Wycheproof tests run through these wrappers.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

/// Length of every X25519 / Ed25519 public key, X25519 secret, and symmetric key in hush-v1.
pub const KEY_LEN: usize = 32;
/// Length of the random XChaCha20 nonce prefixed to every ciphertext.
pub const NONCE_LEN: usize = 24;
/// Length of the Poly1305 tag appended by the AEAD.
pub const TAG_LEN: usize = 16;
/// Length of an Ed25519 signature.
pub const SIGNATURE_LEN: usize = 64;

/// The X25519 result was the all-zero value: the peer's key has small order, so the output
/// carries no secret from us. hush rejects such keys instead of deriving keys from a constant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("X25519 produced a non-contributory (all-zero) shared secret")]
pub struct NonContributory;

/// The AEAD tag did not verify: the ciphertext, nonce, key or associated data is not the one
/// that was sealed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("AEAD authentication failed")]
pub struct AeadFailure;

/// An Ed25519 signature did not verify under strict rules (canonical S, no small-order keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("Ed25519 signature is invalid")]
pub struct BadSignature;

/// An X25519 private key loaded into aws-lc, shared by clones of the same secret (aws-lc clears
/// the key's memory when the last reference is freed).
#[derive(Clone)]
pub struct LoadedX25519Key(std::sync::Arc<aws_lc_rs::agreement::PrivateKey>);

/// Load a 32-byte X25519 secret into aws-lc and compute its public key (a fixed-base
/// multiplication). `None` if aws-lc refused, which only happens when it cannot allocate.
pub fn x25519_load(secret: &[u8; KEY_LEN]) -> Option<(LoadedX25519Key, [u8; KEY_LEN])> {
    use aws_lc_rs::agreement::{PrivateKey, X25519};
    let key = PrivateKey::from_private_key(&X25519, secret).ok()?;
    let public = key.compute_public_key().ok()?;
    let public: [u8; KEY_LEN] = public.as_ref().try_into().ok()?;
    Some((LoadedX25519Key(std::sync::Arc::new(key)), public))
}

/// X25519 with the contributory check: `secret * public`, refusing an all-zero output.
pub fn x25519(
    secret: &LoadedX25519Key,
    public: &[u8; KEY_LEN],
) -> Result<Zeroizing<[u8; KEY_LEN]>, NonContributory> {
    use aws_lc_rs::agreement::{agree, UnparsedPublicKey, X25519};
    // aws-lc refuses an all-zero result itself (X25519 returns failure); the explicit check
    // below keeps the rule independent of the backend.
    let shared = agree(
        &secret.0,
        UnparsedPublicKey::new(&X25519, public),
        NonContributory,
        |bytes| {
            <[u8; KEY_LEN]>::try_from(bytes)
                .map(Zeroizing::new)
                .map_err(|_| NonContributory)
        },
    )?;
    if bool::from(shared.ct_eq(&[0u8; KEY_LEN])) {
        return Err(NonContributory);
    }
    Ok(shared)
}

/// The same X25519 on x25519-dalek: the fallback for a secret aws-lc refused.
pub fn x25519_on_dalek(
    secret: &x25519_dalek::StaticSecret,
    public: &[u8; KEY_LEN],
) -> Result<Zeroizing<[u8; KEY_LEN]>, NonContributory> {
    let shared = secret.diffie_hellman(&x25519_dalek::PublicKey::from(*public));
    if !shared.was_contributory() {
        return Err(NonContributory);
    }
    Ok(Zeroizing::new(shared.to_bytes()))
}

/// HKDF-SHA-256 extract-and-expand into `out`.
///
/// Fails only when `out` is longer than 255 × 32 bytes, which no hush-v1 derivation asks for.
pub fn hkdf_sha256(
    salt: &[u8],
    ikm: &[u8],
    info: &[u8],
    out: &mut [u8],
) -> Result<(), HkdfTooLong> {
    Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand(info, out)
        .map_err(|_| HkdfTooLong)
}

/// Requested HKDF output exceeds 255 hash lengths.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("HKDF output length too large")]
pub struct HkdfTooLong;

/// HMAC-SHA-256 of `data` under `key` (any key length, as RFC 2104 allows).
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> Zeroizing<[u8; 32]> {
    // new_from_slice accepts every key length for HMAC; the error arm is unreachable in practice
    // but handled without a panic.
    let mut out = Zeroizing::new([0u8; 32]);
    if let Ok(mut mac) = <Hmac<Sha256> as Mac>::new_from_slice(key) {
        mac.update(data);
        out.copy_from_slice(&mac.finalize().into_bytes());
    }
    out
}

/// XChaCha20-Poly1305 seal: returns `ciphertext || tag`.
pub fn aead_seal(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    plaintext: &[u8],
    associated_data: &[u8],
) -> Result<Vec<u8>, AeadFailure> {
    let cipher = XChaCha20Poly1305::new(key.into());
    cipher
        .encrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: plaintext,
                aad: associated_data,
            },
        )
        .map_err(|_| AeadFailure)
}

/// XChaCha20-Poly1305 open of `ciphertext || tag`; the plaintext is zeroized when dropped.
pub fn aead_open(
    key: &[u8; KEY_LEN],
    nonce: &[u8; NONCE_LEN],
    ciphertext_and_tag: &[u8],
    associated_data: &[u8],
) -> Result<Zeroizing<Vec<u8>>, AeadFailure> {
    let cipher = XChaCha20Poly1305::new(key.into());
    cipher
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: ciphertext_and_tag,
                aad: associated_data,
            },
        )
        .map(Zeroizing::new)
        .map_err(|_| AeadFailure)
}

/// Strict Ed25519 verification (RFC 8032 with canonical encodings, small-order keys rejected).
pub fn ed25519_verify(
    public_key: &[u8; KEY_LEN],
    message: &[u8],
    signature: &[u8; SIGNATURE_LEN],
) -> Result<(), BadSignature> {
    let key = ed25519_dalek::VerifyingKey::from_bytes(public_key).map_err(|_| BadSignature)?;
    if key.is_weak() {
        return Err(BadSignature);
    }
    let sig = ed25519_dalek::Signature::from_bytes(signature);
    key.verify_strict(message, &sig).map_err(|_| BadSignature)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn x25519_rejects_small_order_point_on_both_backends() {
        let (key, _) = x25519_load(&[7u8; 32]).unwrap();
        let dalek = x25519_dalek::StaticSecret::from([7u8; 32]);
        // 0 and 1 have small order; so does the order-8 point below (RFC 7748 test lists).
        let mut order8 = [0u8; 32];
        order8.copy_from_slice(
            &hex::decode("e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800")
                .unwrap(),
        );
        let mut one = [0u8; 32];
        one[0] = 1;
        for public in [[0u8; 32], one, order8] {
            assert_eq!(x25519(&key, &public), Err(NonContributory));
            assert_eq!(x25519_on_dalek(&dalek, &public), Err(NonContributory));
        }
    }

    #[test]
    fn both_x25519_backends_agree_on_keys_and_shared_secrets() {
        use rand_chacha::rand_core::{RngCore, SeedableRng};
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(25519);
        for _ in 0..200 {
            let mut a = [0u8; 32];
            let mut peer = [0u8; 32];
            rng.fill_bytes(&mut a);
            rng.fill_bytes(&mut peer);
            let (key, public) = x25519_load(&a).unwrap();
            let dalek = x25519_dalek::StaticSecret::from(a);
            assert_eq!(public, x25519_dalek::PublicKey::from(&dalek).to_bytes());
            // Arbitrary peer bytes, including non-canonical ones (bit 255 set half the time).
            assert_eq!(
                x25519(&key, &peer).map(|s| *s),
                x25519_on_dalek(&dalek, &peer).map(|s| *s)
            );
        }
    }

    #[test]
    fn aead_round_trip_and_tamper() {
        let key = [1u8; 32];
        let nonce = [2u8; 24];
        let ct = aead_seal(&key, &nonce, b"hello", b"ad").unwrap();
        assert_eq!(ct.len(), 5 + TAG_LEN);
        assert_eq!(&aead_open(&key, &nonce, &ct, b"ad").unwrap()[..], b"hello");
        assert_eq!(aead_open(&key, &nonce, &ct, b"AD"), Err(AeadFailure));
        let mut bad = ct.clone();
        bad[0] ^= 1;
        assert_eq!(aead_open(&key, &nonce, &bad, b"ad"), Err(AeadFailure));
    }
}
