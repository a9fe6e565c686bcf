//! The JSON shape of `hush-test-vectors/1` (both profiles) and small helpers shared by
//! generation and replay. Fields that only `hush-v2` files have are optional and skipped when
//! absent, so the `hush-v1` files serialize exactly as before.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::ratchet::RatchetLimits;
use crate::Profile;

pub(super) const FORMAT: &str = "hush-test-vectors/1";

#[derive(Serialize, Deserialize, Clone)]
pub(super) struct VectorFile {
    pub(super) format: String,
    pub(super) generator: String,
    pub(super) params: Params,
    pub(super) x3dh: X3dhVectors,
    pub(super) ratchet: RatchetVectors,
}

#[derive(Serialize, Deserialize, Clone)]
pub(super) struct Params {
    pub(super) profile: String,
    pub(super) x3dh_hash: String,
    pub(super) x3dh_info: String,
    pub(super) rk_info: String,
    pub(super) msg_info: String,
    pub(super) identity_key_format: String,
    pub(super) pubkey_encoding: String,
    pub(super) ck_constants: String,
    pub(super) header_encoding: String,
    pub(super) ad_encoding: String,
    pub(super) aead: String,
    pub(super) bob_initial_ratchet_key: String,
    pub(super) max_skip: u32,
    pub(super) max_stored_skipped: usize,
    /// `hush-v2`: "ML-KEM-768".
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(super) kem: Option<String>,
    /// `hush-v2`: "hush-v2-pq-prekey".
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(super) pq_prekey_sig_context: Option<String>,
}

#[derive(Serialize, Deserialize, Clone)]
pub(super) struct AliceKeys {
    pub(super) identity_seed: String,
}

#[derive(Serialize, Deserialize, Clone)]
pub(super) struct BobKeys {
    pub(super) identity_seed: String,
    pub(super) spk_priv: String,
    #[serde(default)]
    pub(super) spk_timestamp: u64,
    pub(super) opk_privs: Vec<String>,
    /// `hush-v2`: every PQ prekey Bob holds (one-time ones left, and the last-resort one).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(super) pq_prekeys: Option<Vec<PqPrekeySecretVec>>,
}

#[derive(Serialize, Deserialize, Clone)]
pub(super) struct PqPrekeySecretVec {
    pub(super) id: u32,
    /// `d ‖ z`, 64 bytes.
    pub(super) seed: String,
    pub(super) last_resort: bool,
}

#[derive(Serialize, Deserialize, Clone)]
pub(super) struct PqPrekeyVec {
    pub(super) id: u32,
    pub(super) ek: String,
    pub(super) sig: String,
}

#[derive(Serialize, Deserialize, Clone)]
pub(super) struct BundleVec {
    pub(super) identity_key: String,
    pub(super) signed_pre_key: String,
    pub(super) signed_pre_key_sig: String,
    pub(super) pre_keys: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(super) pq_pre_key: Option<PqPrekeyVec>,
}

#[derive(Serialize, Deserialize, Clone)]
pub(super) struct X3dhHeaderVec {
    pub(super) identity_key: String,
    pub(super) ephemeral_key: String,
    pub(super) signed_pre_key: String,
    pub(super) pre_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(super) pq_pre_key_id: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(super) kem_ciphertext: Option<String>,
}

/// A reject case holds what the initiator was handed (`bundle`) or the initial message's X3DH
/// header as delivered to the responder (`header`).
#[derive(Serialize, Deserialize, Clone)]
pub(super) struct RejectCase {
    pub(super) name: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(super) bundle: Option<BundleVec>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(super) header: Option<X3dhHeaderVec>,
    pub(super) result: String,
}

#[derive(Serialize, Deserialize, Clone)]
pub(super) struct X3dhVectors {
    pub(super) alice: AliceKeys,
    pub(super) bob: BobKeys,
    pub(super) bundle: BundleVec,
    pub(super) alice_ephemeral_priv: String,
    pub(super) chosen_opk: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(super) kem_encaps_randomness: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(super) kem_ciphertext: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(super) kem_shared_secret: Option<String>,
    pub(super) header: X3dhHeaderVec,
    pub(super) shared_secret: String,
    pub(super) associated_data: String,
    pub(super) reject_cases: Vec<RejectCase>,
}

#[derive(Serialize, Deserialize, Clone, Default)]
pub(super) struct Event {
    pub(super) op: String,
    pub(super) party: String,
    pub(super) id: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(super) plaintext: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(super) header: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(super) ciphertext: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(super) mk: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(super) result: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub(super) note: Option<String>,
}

#[derive(Serialize, Deserialize, Clone)]
pub(super) struct RatchetVectors {
    pub(super) alice_ratchet_privs: Vec<String>,
    pub(super) bob_ratchet_privs: Vec<String>,
    pub(super) events: Vec<Event>,
}

/// The parameters block for `profile` with these limits.
pub(super) fn params(profile: Profile, limits: RatchetLimits) -> Params {
    let v2 = profile == Profile::V2;
    Params {
        profile: profile.name().into(),
        x3dh_hash: "SHA-256".into(),
        x3dh_info: if v2 { "hush-pqxdh-v2" } else { "hush-x3dh-v1" }.into(),
        rk_info: "hush-dr-root-v1".into(),
        msg_info: "hush-dr-msg-v1".into(),
        identity_key_format: "ED_25519".into(),
        pubkey_encoding: "raw32".into(),
        ck_constants: "0201".into(),
        header_encoding: "dh32|pn_u32be|n_u32be".into(),
        ad_encoding: "x3dh_ad|header".into(),
        aead: "xchacha20poly1305-ietf/hkdf-sha256-key32/random-nonce24-prefix".into(),
        bob_initial_ratchet_key: "spk".into(),
        max_skip: limits.max_skip,
        max_stored_skipped: limits.max_stored_skipped,
        kem: v2.then(|| "ML-KEM-768".into()),
        pq_prekey_sig_context: v2.then(|| "hush-v2-pq-prekey".into()),
    }
}

pub(super) fn h(bytes: &[u8]) -> String {
    hex::encode(bytes)
}

pub(super) fn unhex<const N: usize>(s: &str) -> [u8; N] {
    hex::decode(s).unwrap().try_into().unwrap()
}

pub(super) fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../test-vectors")
}
