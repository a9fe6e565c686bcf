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
            assert!(bytes.len() < 4096, "seed too large");
            std::fs::write(d.join(format!("sample-{i:02}.bin")), bytes).unwrap();
        }
    }
}
