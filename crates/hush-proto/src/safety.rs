//! Safety numbers: a 60-digit number both users compute for their pair of identities and
//! compare aloud, and a compact payload for QR codes that encodes the same check.
//!
//! Construction (as Signal's `NumericFingerprintGenerator`, version 2 of its scheme):
//! for each identity key `K` (32-byte Ed25519), `h = SHA-512(0x0000 ‖ K ‖ "hush-safety-v1")`,
//! then 5200 times `h = SHA-512(h ‖ K)`. The first 30 bytes give six 5-digit groups (each
//! 5-byte big-endian chunk mod 100000). The 60 digits are the two 30-digit halves, smaller
//! first, so both sides print the same number.

use sha2::{Digest, Sha512};
use subtle::ConstantTimeEq;

use crate::keys::IdentityPublicKey;

/// SHA-512 iterations per fingerprint; ~2^12.3 work per guess against second-preimage search.
pub const SAFETY_NUMBER_ITERATIONS: u32 = 5200;
/// Version prefix hashed first.
pub const SAFETY_NUMBER_VERSION: [u8; 2] = [0, 0];
/// Domain separation appended to the key in the first hash.
pub const SAFETY_NUMBER_DOMAIN: &[u8] = b"hush-safety-v1";
/// Version byte of the QR payload.
pub const QR_VERSION: u8 = 1;
/// Length of the QR payload: version ‖ sender's fingerprint (32) ‖ recipient's fingerprint (32).
pub const QR_PAYLOAD_LEN: usize = 1 + 32 + 32;

/// The safety number of (local, remote).
#[derive(Clone, PartialEq, Eq)]
pub struct SafetyNumber {
    local: [u8; 32],
    remote: [u8; 32],
    digits: String,
}

impl std::fmt::Debug for SafetyNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SafetyNumber").field(&self.digits).finish()
    }
}

/// Why a scanned QR payload did not confirm the contact.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QrError {
    /// The payload is not 65 bytes.
    #[error("QR payload has the wrong length")]
    Malformed,
    /// The payload was made by another version of the scheme.
    #[error("QR payload version {got} is not supported (this build speaks version {supported})")]
    UnsupportedVersion {
        /// The version byte received.
        got: u8,
        /// The version this build speaks.
        supported: u8,
    },
    /// The fingerprints differ: the keys are not the ones the other person holds.
    #[error("safety numbers do not match: identity keys differ")]
    Mismatch,
}

impl SafetyNumber {
    /// Compute the safety number between our identity and a peer's.
    pub fn new(local: &IdentityPublicKey, remote: &IdentityPublicKey) -> Self {
        let local = fingerprint(local);
        let remote = fingerprint(remote);
        let (a, b) = (digits30(&local), digits30(&remote));
        let digits = if a <= b { a + &b } else { b + &a };
        let mut l = [0u8; 32];
        l.copy_from_slice(local.get(..32).unwrap_or(&[0u8; 32]));
        let mut r = [0u8; 32];
        r.copy_from_slice(remote.get(..32).unwrap_or(&[0u8; 32]));
        Self {
            local: l,
            remote: r,
            digits,
        }
    }

    /// The 60 digits.
    pub fn digits(&self) -> &str {
        &self.digits
    }

    /// Twelve groups of five digits, in three lines of four groups, for reading aloud.
    pub fn grouped(&self) -> String {
        let groups: Vec<&str> = (0..12)
            .filter_map(|i| self.digits.get(i * 5..i * 5 + 5))
            .collect();
        groups
            .chunks(4)
            .map(|line| line.join(" "))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The payload to show as a QR code: `version ‖ our fingerprint ‖ their fingerprint`.
    pub fn qr_payload(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(QR_PAYLOAD_LEN);
        out.push(QR_VERSION);
        out.extend_from_slice(&self.local);
        out.extend_from_slice(&self.remote);
        out
    }

    /// Check a payload scanned from the peer's screen: it must name their key as its sender
    /// and ours as its recipient. Constant-time comparison.
    pub fn verify_qr(&self, scanned: &[u8]) -> Result<(), QrError> {
        if scanned.len() != QR_PAYLOAD_LEN {
            return Err(QrError::Malformed);
        }
        let (version, rest) = scanned.split_first().ok_or(QrError::Malformed)?;
        if *version != QR_VERSION {
            return Err(QrError::UnsupportedVersion {
                got: *version,
                supported: QR_VERSION,
            });
        }
        let (their_local, their_remote) = rest.split_at(32);
        let ok = their_local.ct_eq(&self.remote) & their_remote.ct_eq(&self.local);
        if bool::from(ok) {
            Ok(())
        } else {
            Err(QrError::Mismatch)
        }
    }
}

fn fingerprint(key: &IdentityPublicKey) -> [u8; 64] {
    let mut hasher = Sha512::new();
    hasher.update(SAFETY_NUMBER_VERSION);
    hasher.update(key.as_bytes());
    hasher.update(SAFETY_NUMBER_DOMAIN);
    let mut hash = hasher.finalize();
    for _ in 0..SAFETY_NUMBER_ITERATIONS {
        let mut hasher = Sha512::new();
        hasher.update(hash);
        hasher.update(key.as_bytes());
        hash = hasher.finalize();
    }
    hash.into()
}

fn digits30(hash: &[u8; 64]) -> String {
    let mut out = String::with_capacity(30);
    for chunk in hash.chunks_exact(5).take(6) {
        let value = chunk.iter().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        out.push_str(&format!("{:05}", value % 100_000));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::IdentityKeyPair;

    #[test]
    fn both_sides_compute_the_same_sixty_digits() {
        let a = IdentityKeyPair::from_seed(&[1; 32]).public_key();
        let b = IdentityKeyPair::from_seed(&[2; 32]).public_key();
        let ab = SafetyNumber::new(&a, &b);
        let ba = SafetyNumber::new(&b, &a);
        assert_eq!(ab.digits(), ba.digits());
        assert_eq!(ab.digits().len(), 60);
        assert!(ab.digits().bytes().all(|c| c.is_ascii_digit()));
        assert_eq!(ab.grouped().lines().count(), 3);
        assert_eq!(ab.grouped().split_whitespace().count(), 12);
    }

    #[test]
    fn a_substituted_key_changes_the_number_and_fails_the_qr_check() {
        let a = IdentityKeyPair::from_seed(&[1; 32]).public_key();
        let b = IdentityKeyPair::from_seed(&[2; 32]).public_key();
        let mallory = IdentityKeyPair::from_seed(&[3; 32]).public_key();
        let alice_view = SafetyNumber::new(&a, &mallory);
        let bob_view = SafetyNumber::new(&b, &a);
        assert_ne!(alice_view.digits(), bob_view.digits());
        assert_eq!(
            alice_view.verify_qr(&bob_view.qr_payload()),
            Err(QrError::Mismatch)
        );
        let honest_alice = SafetyNumber::new(&a, &b);
        assert_eq!(honest_alice.verify_qr(&bob_view.qr_payload()), Ok(()));
        assert_eq!(bob_view.verify_qr(&honest_alice.qr_payload()), Ok(()));
        // Our own payload read back (a reflection) is not a match.
        assert_eq!(
            honest_alice.verify_qr(&honest_alice.qr_payload()),
            Err(QrError::Mismatch)
        );
    }

    #[test]
    fn malformed_qr_payloads_are_rejected() {
        let a = IdentityKeyPair::from_seed(&[1; 32]).public_key();
        let b = IdentityKeyPair::from_seed(&[2; 32]).public_key();
        let n = SafetyNumber::new(&a, &b);
        assert_eq!(n.verify_qr(&[]), Err(QrError::Malformed));
        let mut p = SafetyNumber::new(&b, &a).qr_payload();
        p[0] = 9;
        assert_eq!(
            n.verify_qr(&p),
            Err(QrError::UnsupportedVersion {
                got: 9,
                supported: 1
            })
        );
    }
}
