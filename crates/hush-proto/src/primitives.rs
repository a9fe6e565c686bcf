//! Thin wrappers over the RustCrypto and dalek primitives that profile `hush-v1` uses, so that
//! every call site gets the same checks (contributory DH, strict signatures, fixed lengths).
//!
//! Nothing here is a primitive of our own: these functions only fix parameters and turn the
//! crates' results into our typed errors. The Wycheproof tests run through these wrappers.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use sha2::Sha256;
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

/// X25519 with the contributory check: `secret * public`, refusing an all-zero output.
pub fn x25519(
    secret: &x25519_dalek::StaticSecret,
    public: &x25519_dalek::PublicKey,
) -> Result<Zeroizing<[u8; KEY_LEN]>, NonContributory> {
    let shared = secret.diffie_hellman(public);
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
    fn x25519_rejects_small_order_point() {
        let secret = x25519_dalek::StaticSecret::from([7u8; 32]);
        let zero = x25519_dalek::PublicKey::from([0u8; 32]);
        assert_eq!(x25519(&secret, &zero), Err(NonContributory));
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
