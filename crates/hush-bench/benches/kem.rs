//! ML-KEM-768 (FIPS 203) backends for `hush-v2`, side by side in one criterion run: RustCrypto
//! [`ml-kem`](https://crates.io/crates/ml-kem) (pure Rust) and aws-lc-rs's `kem` module (AWS-LC,
//! C and assembly). docs/BENCHMARKS.md ("ML-KEM-768 backends") gives the figures and why hush
//! uses `ml-kem`.
//!
//! Functions, all in group `kem`, named `kem/<backend>/<operation>`:
//!
//! * `keygen`: a new key pair. `ml-kem`: `DecapsulationKey::from_seed` on a fixed 64-byte seed
//!   `d ‖ z` (FIPS 203 `ML-KEM.KeyGen_internal`; drawing the 64 random bytes is not included).
//!   aws-lc-rs: `DecapsulationKey::generate`, which draws its own randomness (it has no
//!   seed-based key generation).
//! * `encapsulate`: to an already parsed encapsulation key. `ml-kem`:
//!   `encapsulate_deterministic` with a fixed `m` (the FIPS 203 `Encaps_internal` that `hush-v2`
//!   vectors need; drawing the 32 random bytes is not included). aws-lc-rs: `encapsulate`, which
//!   draws `m` itself.
//! * `decapsulate`: a valid ciphertext with an already expanded decapsulation key.
//! * `decapsulate_from_storage`: what a `hush-v2` responder does per session setup, since the key
//!   is stored, not kept in memory: `ml-kem` expands the stored 64-byte seed (`from_seed`) and
//!   decapsulates; aws-lc-rs loads the stored 2400-byte expanded key
//!   (`DecapsulationKey::new`) and decapsulates.
//! * `ek_parse`: an initiator's parse and validation of the 1184-byte encapsulation key from a
//!   bundle (FIPS 203 §7.2 type and modulus checks in `ml-kem`'s `EncapsulationKey::new`;
//!   aws-lc-rs's `EncapsulationKey::new(&ML_KEM_768, bytes)`), including the slice-to-array
//!   conversion `ml-kem` needs.
//!
//! The interop test `crates/hush-bench/tests/kem_interop.rs` checks that both backends compute
//! the same shared secrets, so these figures compare the same function.

// Benches are not library code: a failed setup step should abort the run loudly, and the
// workspace's deny of unwrap/expect/panic (relaxed only in `#[test]` code) does not fit here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::Duration;

use aws_lc_rs::kem::{
    Ciphertext as AwsCiphertext, DecapsulationKey as AwsDecapsulationKey,
    EncapsulationKey as AwsEncapsulationKey, ML_KEM_768,
};
use criterion::{criterion_main, Criterion};
use ml_kem::ml_kem_768::{DecapsulationKey, EncapsulationKey};
use ml_kem::{Decapsulate, Key, KeyExport, Seed, B32};

/// A fixed key-generation seed `d ‖ z`; any value works, the cost does not depend on it.
fn seed() -> Seed {
    Seed::from([0x5a; 64])
}

/// A fixed encapsulation randomness `m`.
fn encaps_randomness() -> B32 {
    B32::from([0xa5; 32])
}

/// Both backends' keys, ciphertexts and stored forms, made once outside the measured code.
struct Fixture {
    seed: Seed,
    m: B32,
    dk: DecapsulationKey,
    ek: EncapsulationKey,
    ek_bytes: Vec<u8>,
    ct: ml_kem::ml_kem_768::Ciphertext,
    aws_dk: AwsDecapsulationKey,
    aws_ek: AwsEncapsulationKey,
    aws_ek_bytes: Vec<u8>,
    aws_stored_dk: Vec<u8>,
    aws_ct: Vec<u8>,
}

fn fixture() -> Fixture {
    let seed = seed();
    let m = encaps_randomness();
    let dk = DecapsulationKey::from_seed(seed);
    let ek = dk.encapsulation_key().clone();
    let ek_bytes = ek.to_bytes().to_vec();
    let (ct, _) = ek.encapsulate_deterministic(&m);

    let aws_dk = AwsDecapsulationKey::generate(&ML_KEM_768).unwrap();
    let aws_ek = aws_dk.encapsulation_key().unwrap();
    let aws_ek_bytes = aws_ek.key_bytes().unwrap().as_ref().to_vec();
    let aws_stored_dk = aws_dk.key_bytes().unwrap().as_ref().to_vec();
    let (aws_ct, _) = aws_ek.encapsulate().unwrap();
    let aws_ct = aws_ct.as_ref().to_vec();
    Fixture {
        seed,
        m,
        dk,
        ek,
        ek_bytes,
        ct,
        aws_dk,
        aws_ek,
        aws_ek_bytes,
        aws_stored_dk,
        aws_ct,
    }
}

/// Each operation for `ml-kem`, then at once for aws-lc-rs, so that both figures of a pair are
/// taken close together on this noisy shared VM.
fn kem(c: &mut Criterion) {
    let f = fixture();
    let mut group = c.benchmark_group("kem");

    group.bench_function("ml-kem/keygen", |b| {
        b.iter(|| black_box(DecapsulationKey::from_seed(black_box(f.seed))));
    });
    group.bench_function("aws-lc-rs/keygen", |b| {
        b.iter(|| black_box(AwsDecapsulationKey::generate(black_box(&ML_KEM_768)).unwrap()));
    });

    group.bench_function("ml-kem/encapsulate", |b| {
        b.iter(|| black_box(black_box(&f.ek).encapsulate_deterministic(black_box(&f.m))));
    });
    group.bench_function("aws-lc-rs/encapsulate", |b| {
        b.iter(|| black_box(black_box(&f.aws_ek).encapsulate().unwrap()));
    });

    group.bench_function("ml-kem/decapsulate", |b| {
        b.iter(|| black_box(black_box(&f.dk).decapsulate(black_box(&f.ct))));
    });
    group.bench_function("aws-lc-rs/decapsulate", |b| {
        b.iter(|| {
            let ct = AwsCiphertext::from(black_box(f.aws_ct.as_slice()));
            black_box(black_box(&f.aws_dk).decapsulate(ct).unwrap())
        });
    });

    group.bench_function("ml-kem/decapsulate_from_storage", |b| {
        b.iter(|| {
            let dk = DecapsulationKey::from_seed(black_box(f.seed));
            black_box(dk.decapsulate(black_box(&f.ct)))
        });
    });
    group.bench_function("aws-lc-rs/decapsulate_from_storage", |b| {
        b.iter(|| {
            let stored = black_box(f.aws_stored_dk.as_slice());
            let dk = AwsDecapsulationKey::new(&ML_KEM_768, stored).unwrap();
            let ct = AwsCiphertext::from(black_box(f.aws_ct.as_slice()));
            black_box(dk.decapsulate(ct).unwrap())
        });
    });

    group.bench_function("ml-kem/ek_parse", |b| {
        b.iter(|| {
            let key = Key::<EncapsulationKey>::try_from(black_box(f.ek_bytes.as_slice())).unwrap();
            black_box(EncapsulationKey::new(&key).unwrap())
        });
    });
    group.bench_function("aws-lc-rs/ek_parse", |b| {
        b.iter(|| {
            let bytes = black_box(f.aws_ek_bytes.as_slice());
            black_box(AwsEncapsulationKey::new(&ML_KEM_768, bytes).unwrap())
        });
    });
    group.finish();
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
}

/// Both backends under one configuration (what `criterion_group!` would generate, written out so
/// that the function carries a doc comment for the workspace's `missing_docs` lint).
pub fn benches() {
    let mut criterion = config().configure_from_args();
    kem(&mut criterion);
}

criterion_main!(benches);
