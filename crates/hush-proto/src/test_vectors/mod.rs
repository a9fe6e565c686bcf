//! Test vectors in the `hush-test-vectors/1` format, profiles `hush-v1` and `hush-v2`:
//! generation from seeded RNGs, a check that regenerating reproduces the committed files byte
//! for byte, and a replay of every vector file (ours and the independent reference
//! implementation's) with keys, KEM seeds and randomness, and nonces injected.
//!
//! Regenerate with: `HUSH_WRITE_VECTORS=1 cargo test -p hush-proto --lib test_vectors`
//!
//! - [`format`]: the JSON shape;
//! - [`rng`]: the recording (generation) and scripted (replay) RNGs;
//! - [`generate`] and [`scenarios`]: the generator and the conversations it runs;
//! - [`replay`]: the replay, for files of either profile.

mod format;
mod generate;
mod replay;
mod rng;
mod scenarios;

use rand_chacha::rand_core::{CryptoRng, RngCore};

use crate::ratchet::{RatchetLimits, MAX_STORED_SKIPPED};
use crate::*;
use format::{params, vectors_dir, VectorFile};
use replay::replay;
use scenarios::vector_files;

/// Deliver an envelope; `Ok(plaintext)` or `Err(())`. Bob without a session treats it as the
/// initial message (requiring `profile`), and on success deletes the one-time prekeys it used,
/// as a client does in the same commit. On failure the party's state must be unchanged.
#[allow(clippy::too_many_arguments)]
fn deliver<R: RngCore + CryptoRng + Clone>(
    rng: &mut R,
    identity: &IdentityKeyPair,
    peer: &IdentityPublicKey,
    profile: Profile,
    prekeys: &mut LocalPrekeys,
    session: &mut Option<Session>,
    env: &Envelope,
    limits: RatchetLimits,
) -> Result<Vec<u8>, ()> {
    let saved_rng = rng.clone();
    let before = session.as_ref().map(Session::pickle);
    let prekeys_before = prekeys.pickle();
    let result = match (session.as_mut(), env) {
        (Some(s), env) => s.decrypt(rng, env).map(|p| p.to_vec()).map_err(|_| ()),
        (None, Envelope::Prekey(pre)) => {
            match Session::respond_with_limits(rng, identity, peer, profile, prekeys, pre, limits) {
                Ok(inbound) => {
                    *session = Some(inbound.session);
                    if let Some(id) = inbound.used_one_time_prekey {
                        prekeys.remove_one_time(id);
                    }
                    if let Some(id) = inbound.used_one_time_pq_prekey {
                        prekeys.remove_pq_one_time(id);
                    }
                    Ok(inbound.plaintext.to_vec())
                }
                Err(_) => Err(()),
            }
        }
        (None, Envelope::Message(_)) => Err(()),
    };
    if result.is_err() {
        *rng = saved_rng;
        assert!(
            session.as_ref().map(Session::pickle) == before,
            "rejected message changed state"
        );
        assert!(
            prekeys.pickle() == prekeys_before,
            "rejected message changed prekeys"
        );
    }
    result
}

fn with_message(env: &Envelope, message: RatchetMessage) -> Envelope {
    match env {
        Envelope::Prekey(p) => Envelope::Prekey(PrekeyMessage {
            x3dh: p.x3dh.clone(),
            message,
        }),
        Envelope::Message(_) => Envelope::Message(message),
    }
}

fn render(file: &VectorFile) -> String {
    let mut s = serde_json::to_string_pretty(file).unwrap();
    s.push('\n');
    s
}

fn load(path: std::path::PathBuf) -> VectorFile {
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn committed_vectors_regenerate_byte_for_byte() {
    let write = std::env::var_os("HUSH_WRITE_VECTORS").is_some();
    for (name, file) in vector_files() {
        let path = vectors_dir().join(name);
        let fresh = render(&file);
        if write {
            std::fs::write(&path, &fresh).unwrap();
        }
        let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; regenerate with HUSH_WRITE_VECTORS=1",
                path.display()
            )
        });
        assert!(committed == fresh, "{name} differs from a fresh generation");
    }
}

#[test]
fn reference_implementation_vectors_replay_identically() {
    replay(&load(vectors_dir().join("reference/hush-v1-example.json")));
}

#[test]
fn reference_implementation_hush_v2_vectors_replay_identically() {
    replay(&load(vectors_dir().join("reference/hush-v2-example.json")));
}

#[test]
fn our_committed_vectors_replay_from_injected_keys() {
    for (name, _) in vector_files() {
        replay(&load(vectors_dir().join(name)));
    }
}

#[test]
fn default_limits_in_vectors_match_the_ratchet() {
    assert_eq!(
        params(Profile::V1, RatchetLimits::default()).max_stored_skipped,
        MAX_STORED_SKIPPED
    );
}
