//! Stable CI smoke run of every fuzz target: all seed and regression files, the generated
//! valid samples, and a bounded, deterministic set of pseudo-random and mutated inputs. The
//! deep runs are `cargo +nightly fuzz run <target>` (see docs/THREAT_MODEL.md, "Fuzzing").

// A smoke test asserts by panicking, like the targets it drives.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};

use hush_fuzz_targets::{samples, TARGETS};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;

/// Pseudo-random inputs per target (half fresh bytes, half mutated valid inputs).
const RANDOM_INPUTS: usize = 2_000;

fn dir(kind: &str, target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(kind)
        .join(target)
}

fn files(kind: &str, target: &str) -> Vec<(String, Vec<u8>)> {
    let Ok(entries) = std::fs::read_dir(dir(kind, target)) else {
        return Vec::new();
    };
    let mut out: Vec<(String, Vec<u8>)> = entries
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .map(|p| (p.display().to_string(), std::fs::read(&p).unwrap()))
        .collect();
    out.sort();
    out
}

fn mutate(rng: &mut ChaCha20Rng, input: &mut Vec<u8>) {
    let edits = 1 + rng.next_u32() % 4;
    for _ in 0..edits {
        let pos = |rng: &mut ChaCha20Rng, len: usize| (rng.next_u32() as usize) % (len + 1);
        match rng.next_u32() % 6 {
            0 if !input.is_empty() => {
                let i = pos(rng, input.len() - 1);
                input[i] ^= 1 << (rng.next_u32() % 8);
            }
            1 if !input.is_empty() => {
                let i = pos(rng, input.len() - 1);
                input[i] = rng.next_u32() as u8;
            }
            2 => {
                let i = pos(rng, input.len());
                input.insert(i, rng.next_u32() as u8);
            }
            3 if !input.is_empty() => {
                let i = pos(rng, input.len() - 1);
                input.remove(i);
            }
            4 => {
                let len = pos(rng, input.len());
                input.truncate(len);
            }
            _ => {
                // Interesting integers at a random position (lengths, counters, flags).
                let value: u32 =
                    [0, 1, 0x7f, 0x80, 0xff, 0xffff, u32::MAX][rng.next_u32() as usize % 7];
                let bytes = value.to_be_bytes();
                let i = pos(rng, input.len().saturating_sub(4));
                for (j, b) in bytes.iter().enumerate() {
                    if let Some(slot) = input.get_mut(i + j) {
                        *slot = *b;
                    }
                }
            }
        }
    }
}

fn run(target: &str, f: fn(&[u8]), label: &str, input: &[u8]) {
    let result = std::panic::catch_unwind(|| f(input));
    if result.is_err() {
        panic!(
            "target {target} panicked on {label} ({} bytes): {}",
            input.len(),
            input.iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
    }
}

fn smoke(target: &str) {
    let f = TARGETS
        .iter()
        .find(|(name, _)| *name == target)
        .map(|(_, f)| *f)
        .unwrap();
    let mut valid: Vec<Vec<u8>> = samples::for_target(target);
    assert!(!valid.is_empty(), "no samples for {target}");
    for (path, bytes) in files("seeds", target) {
        run(target, f, &path, &bytes);
        valid.push(bytes);
    }
    for (path, bytes) in files("regressions", target) {
        run(target, f, &path, &bytes);
    }
    for (i, bytes) in valid.iter().enumerate() {
        run(target, f, &format!("sample {i}"), bytes);
    }
    let seed = target
        .bytes()
        .fold(0u64, |h, b| h.wrapping_mul(31) ^ u64::from(b));
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    for i in 0..RANDOM_INPUTS {
        let input = if i % 2 == 0 {
            let mut bytes = vec![0u8; (rng.next_u32() % 512) as usize];
            rng.fill_bytes(&mut bytes);
            bytes
        } else {
            let mut bytes = valid[rng.next_u32() as usize % valid.len()].clone();
            mutate(&mut rng, &mut bytes);
            bytes
        };
        run(target, f, &format!("random input {i}"), &input);
    }
}

macro_rules! smoke_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[test]
            fn $name() {
                smoke(stringify!($name));
            }
        )*

        #[test]
        fn every_target_has_a_smoke_test() {
            let tested = [$(stringify!($name)),*];
            for (name, _) in TARGETS {
                assert!(tested.contains(name), "{name} has no smoke test");
            }
        }
    };
}

smoke_tests!(
    envelope,
    bundle,
    relay_request,
    server_message,
    message_content,
    ratchet_header,
    session_pickle,
    frame_reader,
    ratchet_decrypt,
    group_message,
);

/// Write the generated samples to `seeds/<target>/` (run with `--ignored` after a format
/// change; the files seed the cargo-fuzz corpus and this smoke test).
#[test]
#[ignore = "writes files; run by hand to refresh seeds"]
fn write_seeds() {
    for (target, _) in TARGETS {
        let d = dir("seeds", target);
        std::fs::create_dir_all(&d).unwrap();
        for (i, bytes) in samples::for_target(target).iter().enumerate() {
            // A hush-v2 session pickle holds the 1 088-byte KEM ciphertext as a JSON array
            // (~4.3 KB); libFuzzer raises its default -max_len (4096) to the largest seed.
            assert!(bytes.len() < 8192, "seed too large");
            std::fs::write(d.join(format!("sample-{i:02}.bin")), bytes).unwrap();
        }
    }
}

/// The samples (and so the seeds and the mutated smoke inputs) reach the `hush-v2` decoders:
/// a version-2 bundle that verifies as `hush-v2`, version-2 prekey envelopes with a KEM
/// ciphertext, a `PublishPqPrekeys` request, a `PqPrekeysStored` reply and a `hush-v2` session
/// pickle, all decoding. Without valid inputs a fuzzer rarely gets past the 1 184-byte key.
#[test]
fn the_samples_reach_every_hush_v2_decoder() {
    use hush_proto::relay::{Reply, Request, ServerMessage};
    use hush_proto::{Envelope, PrekeyBundle, Profile, Session, SessionPickle};

    let v2_bundles = samples::for_target("bundle")
        .iter()
        .filter_map(|b| PrekeyBundle::from_bytes(b).ok())
        .filter(|b| b.pq_prekey.is_some())
        .filter(|b| b.clone().verify(Profile::V2).is_ok())
        .count();
    assert!(v2_bundles >= 2, "{v2_bundles} hush-v2 bundles");
    let v2_envelopes = samples::for_target("envelope")
        .iter()
        .filter(|e| e.first() == Some(&2))
        .filter(
            |e| matches!(Envelope::from_bytes(e), Ok(Envelope::Prekey(p)) if p.x3dh.pq.is_some()),
        )
        .count();
    assert!(v2_envelopes >= 2, "{v2_envelopes} hush-v2 prekey envelopes");
    let publishes = samples::for_target("relay_request")
        .iter()
        .filter(|r| {
            matches!(
                Request::decode(r),
                Ok((_, Request::PublishPqPrekeys { .. }))
            )
        })
        .count();
    assert!(publishes >= 3, "{publishes} PublishPqPrekeys requests");
    let stored = samples::for_target("server_message")
        .iter()
        .filter(|m| {
            matches!(
                ServerMessage::decode(m),
                Ok(ServerMessage::Response {
                    result: Ok(Reply::PqPrekeysStored { .. }),
                    ..
                })
            )
        })
        .count();
    assert_eq!(stored, 1);
    let v2_sessions = samples::for_target("session_pickle")
        .iter()
        .filter_map(|p| serde_json::from_slice::<SessionPickle>(p).ok())
        .filter_map(|p| Session::from_pickle(&p).ok())
        .filter(|s| s.profile() == Profile::V2)
        .count();
    assert_eq!(v2_sessions, 2);
}

/// The samples (and so the seeds and the mutated smoke inputs) reach every group decoder:
/// requests 11-16 and replies 11-15 of the relay protocol, and the group error codes.
#[test]
fn the_samples_reach_every_group_decoder() {
    use hush_proto::relay::{ErrorCode, Reply, Request, ServerMessage};

    let requests: Vec<Request> = samples::for_target("relay_request")
        .iter()
        .filter_map(|r| Request::decode(r).ok().map(|(_, r)| r))
        .collect();
    let has = |f: fn(&Request) -> bool| requests.iter().any(f);
    assert!(has(|r| matches!(r, Request::PublishKeyPackages { .. })));
    assert!(has(|r| matches!(r, Request::FetchKeyPackage { .. })));
    assert!(has(
        |r| matches!(r, Request::GroupCommit(c) if c.welcome.is_some())
    ));
    assert!(has(
        |r| matches!(r, Request::GroupCommit(c) if c.welcome.is_none())
    ));
    assert!(has(|r| matches!(r, Request::GroupSend { .. })));
    assert!(has(|r| matches!(r, Request::GroupSync { .. })));
    assert!(has(|r| matches!(r, Request::GroupLeave { .. })));
    let results: Vec<_> = samples::for_target("server_message")
        .iter()
        .filter_map(|m| match ServerMessage::decode(m) {
            Ok(ServerMessage::Response { result, .. }) => Some(result),
            _ => None,
        })
        .collect();
    let reply = |f: fn(&Reply) -> bool| results.iter().any(|r| r.as_ref().is_ok_and(f));
    assert!(reply(|r| matches!(r, Reply::KeyPackagesStored { .. })));
    assert!(reply(|r| matches!(r, Reply::KeyPackage { .. })));
    assert!(reply(|r| matches!(r, Reply::CommitAccepted { .. })));
    assert!(reply(
        |r| matches!(r, Reply::GroupCommits(c) if c.commits.len() == 2)
    ));
    assert!(reply(|r| matches!(r, Reply::LeftGroup)));
    for code in [
        ErrorCode::StaleEpoch,
        ErrorCode::NotGroupMember,
        ErrorCode::UnknownGroup,
        ErrorCode::GroupFull,
    ] {
        assert!(
            results
                .iter()
                .any(|r| r.as_ref().is_err_and(|e| e.code == code)),
            "{code:?}"
        );
    }
}
