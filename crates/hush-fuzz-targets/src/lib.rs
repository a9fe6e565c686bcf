//! Fuzz entry points for hush: one function per decoder of untrusted bytes, and one for Double
//! Ratchet decryption of arbitrary bytes against a fixed, deterministically established session.
//!
//! Every function takes `&[u8]`, returns nothing, and never panics on valid behaviour: a panic
//! is a bug found. The same functions are driven by cargo-fuzz (`fuzz/`, nightly, libFuzzer)
//! and by the stable smoke test in `tests/smoke.rs` (seeds, regressions, and a bounded number
//! of deterministic pseudo-random and mutated inputs), which runs in `cargo test --workspace`.

// Fuzz targets report a broken invariant by panicking (that is how libFuzzer and the smoke
// test notice a finding), so the workspace's no-unwrap/no-panic/no-indexing lints, which exist
// to keep *library* code panic-free, do not apply to this crate.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod fixture;
mod frames;
mod group;
pub mod samples;

use hush_proto::ratchet::HEADER_LEN;
use hush_proto::relay::{Request, ServerMessage, RELAY_PROTOCOL_VERSION};
use hush_proto::{
    Envelope, Header, IdentityKeyPair, IdentityPickle, LocalPrekeys, MessageContent, PrekeyBundle,
    PrekeysPickle, Profile, RatchetMessage, Session, SessionPickle, X25519PublicKey,
};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

pub use frames::frame_reader;
pub use group::group_message;

/// A fuzz target: consumes one input, panics on a finding.
pub type Target = fn(&[u8]);

/// Every target by name, in the order the smoke test and the docs list them.
pub const TARGETS: &[(&str, Target)] = &[
    ("envelope", envelope),
    ("bundle", bundle),
    ("relay_request", relay_request),
    ("server_message", server_message),
    ("message_content", message_content),
    ("ratchet_header", ratchet_header),
    ("session_pickle", session_pickle),
    ("frame_reader", frame_reader),
    ("ratchet_decrypt", ratchet_decrypt),
    ("group_message", group_message),
];

/// `Envelope::from_bytes`; a decoded envelope re-encodes to the same bytes and decodes again
/// to the same value (the encoding is canonical).
pub fn envelope(data: &[u8]) {
    if let Ok(env) = Envelope::from_bytes(data) {
        let bytes = env.to_bytes();
        assert_eq!(bytes, data, "envelope encoding is not canonical");
        let again = Envelope::from_bytes(&bytes).expect("re-encoded envelope must decode");
        assert_eq!(again, env, "envelope does not round-trip");
    }
}

/// `PrekeyBundle::from_bytes` (round-trip, both versions), then verification under both
/// profiles (must not panic): the signed prekey's signature, a `hush-v2` bundle's PQ prekey
/// signature and FIPS 203 key check, and the downgrade refusal of a `hush-v1` bundle where
/// `hush-v2` is required. A bundle that verifies as `hush-v2` verifies as `hush-v1` too.
pub fn bundle(data: &[u8]) {
    if let Ok(b) = PrekeyBundle::from_bytes(data) {
        let bytes = b.to_bytes();
        assert_eq!(bytes, data, "bundle encoding is not canonical");
        let again = PrekeyBundle::from_bytes(&bytes).expect("re-encoded bundle must decode");
        assert_eq!(again, b, "bundle does not round-trip");
        let as_v1 = b.clone().verify(Profile::V1);
        let as_v2 = b.verify(Profile::V2);
        assert!(
            as_v2.is_err() || as_v1.is_ok(),
            "a bundle verified as hush-v2 but not as hush-v1"
        );
    }
}

/// `Request::decode`; a decoded request re-encodes to the same bytes; an error carries the
/// request id exactly when the id field was readable.
pub fn relay_request(data: &[u8]) {
    match Request::decode(data) {
        Ok((id, req)) => {
            let bytes = req.encode(id);
            assert_eq!(bytes, data, "request encoding is not canonical");
            let again = Request::decode(&bytes).expect("re-encoded request must decode");
            assert_eq!(again, (id, req), "request does not round-trip");
        }
        Err((Some(id), _)) => {
            assert_eq!(data[0], RELAY_PROTOCOL_VERSION);
            let field: [u8; 8] = data[1..9].try_into().unwrap();
            assert_eq!(
                id,
                u64::from_be_bytes(field),
                "error names the wrong request id"
            );
        }
        Err((None, _)) => {
            assert!(
                data.len() < 9 || data[0] != RELAY_PROTOCOL_VERSION,
                "a readable request id was not reported"
            );
        }
    }
}

/// `ServerMessage::decode`; re-encoding is a fixed point after one pass, and exact unless an
/// error text held invalid UTF-8 (decoded lossily, by design).
pub fn server_message(data: &[u8]) {
    if let Ok(msg) = ServerMessage::decode(data) {
        let bytes = msg.encode();
        let again = ServerMessage::decode(&bytes).expect("re-encoded relay message must decode");
        assert_eq!(
            again.encode(),
            bytes,
            "relay message encoding is not stable"
        );
        if bytes == data {
            assert_eq!(again, msg, "relay message does not round-trip");
        } else {
            let lossy = matches!(
                &msg,
                ServerMessage::Response { result: Err(e), .. } if e.message.contains('\u{FFFD}')
            );
            assert!(lossy, "relay message encoding is not canonical");
        }
    }
}

/// `MessageContent::from_padded_bytes`; whatever decodes re-encodes to exactly the same bytes
/// (one valid encoding per message) and decodes again to the same value.
pub fn message_content(data: &[u8]) {
    if let Ok(content) = MessageContent::from_padded_bytes(data) {
        let padded = content
            .to_padded_bytes()
            .expect("decoded content must re-encode");
        assert_eq!(
            padded.as_slice(),
            data,
            "message content has more than one valid encoding"
        );
        let again = MessageContent::from_padded_bytes(&padded).expect("re-encoded content decodes");
        assert_eq!(again, content, "content does not round-trip");
    }
}

/// `Header::from_bytes`: exactly the 40-byte strings whose ratchet key is canonically encoded
/// decode, and they re-encode to themselves.
pub fn ratchet_header(data: &[u8]) {
    match Header::from_bytes(data) {
        Ok(header) => assert_eq!(header.to_bytes()[..], data[..]),
        Err(_) => {
            let canonical_key = data
                .get(..32)
                .and_then(|k| <[u8; 32]>::try_from(k).ok())
                .is_some_and(|k| X25519PublicKey::from_wire(k).is_ok());
            assert!(
                data.len() != HEADER_LEN || !canonical_key,
                "a 40-byte header with a canonical key was refused"
            );
        }
    }
}

/// The input as JSON for a `SessionPickle`, an `IdentityPickle` and a `PrekeysPickle`:
/// `from_pickle` must not panic; whatever it accepts pickles back to the same snapshot, and a
/// restored session survives an encrypt and the decryption of known envelopes without
/// panicking (state on disk is input too).
pub fn session_pickle(data: &[u8]) {
    if let Ok(pickle) = serde_json::from_slice::<SessionPickle>(data) {
        if let Ok(session) = Session::from_pickle(&pickle) {
            assert!(
                session.pickle() == pickle,
                "session pickle does not round-trip"
            );
            let mut rng = ChaCha20Rng::seed_from_u64(7);
            for env in &fixture::get().delivered {
                let mut s = session.clone();
                let env = Envelope::from_bytes(env).unwrap();
                if s.decrypt(&mut rng, &env).is_err() {
                    assert!(s.pickle() == pickle, "failed decrypt changed the session");
                }
            }
            let mut s = session;
            let _ = s.encrypt(&mut rng, b"fuzz");
        }
    }
    if let Ok(pickle) = serde_json::from_slice::<IdentityPickle>(data) {
        if let Ok(identity) = IdentityKeyPair::from_pickle(&pickle) {
            assert!(
                identity.pickle() == pickle,
                "identity pickle does not round-trip"
            );
        }
    }
    if let Ok(pickle) = serde_json::from_slice::<PrekeysPickle>(data) {
        // PQ prekeys are re-signed by the owner's identity on load; any identity will do here.
        let owner = IdentityKeyPair::from_seed(&[7; 32]);
        if let Ok(prekeys) = LocalPrekeys::from_pickle(&owner, &pickle) {
            // Duplicate one-time ids collapse, so compare after one normalising pass.
            let once = prekeys.pickle();
            let twice = LocalPrekeys::from_pickle(&owner, &once)
                .expect("re-pickled prekeys must restore")
                .pickle();
            assert!(once == twice, "prekeys pickle is not stable");
        }
    }
}

/// Ratchet decryption of arbitrary bytes with clones of a fixed Alice/Bob session pair: the
/// input as an envelope, and separately as `selector ‖ PN ‖ N ‖ [key] ‖ ciphertext` composed
/// into a message under a ratchet key the session knows (current, previous, skipped), so the
/// decryption path reaches the AEAD. Every attempt must fail (random bytes never
/// authenticate) and leave the session's pickle unchanged.
pub fn ratchet_decrypt(data: &[u8]) {
    let fx = fixture::get();
    if let Ok(env) = Envelope::from_bytes(data) {
        for party in 0..fx.sessions.len() {
            fx.assert_rejected(party, &env);
        }
    }
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    if rest.len() < 8 {
        return;
    }
    let (fields, mut rest) = rest.split_at(8);
    let mut pn = u32::from_be_bytes(fields[..4].try_into().unwrap());
    let mut counter = u32::from_be_bytes(fields[4..].try_into().unwrap());
    if selector & 0x80 == 0 {
        // Stay near the chains the session holds; the other half explores large values.
        pn %= 8;
        counter %= 8;
    }
    let party = usize::from(selector & 1);
    let key_choice = usize::from((selector >> 1) & 0x7);
    let ratchet_key = if key_choice < fx.keys.len() {
        fx.keys[key_choice]
    } else if rest.len() >= 32 {
        let (key, tail) = rest.split_at(32);
        rest = tail;
        X25519PublicKey::from_bytes(key.try_into().unwrap())
    } else {
        X25519PublicKey::from_bytes([0; 32])
    };
    let mut ciphertext = rest.to_vec();
    if ciphertext.len() < fixture::MIN_CIPHERTEXT {
        ciphertext.resize(fixture::MIN_CIPHERTEXT, 0);
    }
    let env = Envelope::Message(RatchetMessage {
        header: Header {
            ratchet_key,
            previous_chain_length: pn,
            counter,
        },
        ciphertext,
    });
    fx.assert_rejected(party, &env);
}
