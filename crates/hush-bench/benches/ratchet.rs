//! Protocol-core benchmarks: hush-proto (X3DH + Double Ratchet, `hush-v1`) next to vodozemac
//! (Olm, `SessionConfig::version_1()`), one `cargo bench -p hush-bench` run for both.
//!
//! Groups, each with a `hush` and a `vodozemac` function (so names read `symmetric_step/hush`):
//!
//! * `symmetric_step`: one 256-byte message, encrypt + decrypt, on an established session where
//!   the same side keeps sending: only the symmetric-key chain advances, no DH ratchet step.
//! * `dh_step`: one 256-byte message, encrypt + decrypt, in a strict ping-pong (A→B, B→A, ...),
//!   so every message starts a new chain and costs a DH ratchet step. Where that step happens
//!   is the same in both now: the receiver's *decrypt* does the receiving-chain DH, and the new
//!   ratchet key and the sending-chain DH happen lazily on the next *encrypt* (hush computes
//!   the same keys as Signal's eager step, see docs/PROTOCOL.md §5). Measuring one message's
//!   encrypt + decrypt in a ping-pong therefore covers one full DH ratchet step on both sides:
//!   2 X25519 DH + 1 key generation, plus (in both) the ratchet public key put in the header.
//! * `x3dh`: full session setup up to the responder holding the first plaintext. hush:
//!   `Session::initiate` + the first `encrypt` (there is no prekey message without one) +
//!   `Session::respond` (which decrypts it) + deleting the used one-time prekey. vodozemac:
//!   `create_outbound_session` + the first `encrypt` + `create_inbound_session` (which decrypts
//!   it and deletes the one-time key). Neither side verifies a signature inside the measured
//!   code: hush's bundle signature is checked once by `PrekeyBundle::verify` before `initiate`
//!   (see `x3dh_bundle_verify` for its cost), and Olm's one-time-key signatures are checked by
//!   the Matrix client outside vodozemac. `x3dh/hush_no_opk` is hush without a one-time prekey
//!   (three DHs in X3DH, like Olm's triple DH), for reference. `x3dh/hush_v2` is the same
//!   setup in profile `hush-v2` (PQXDH): the bundle also carries a one-time ML-KEM-768 prekey,
//!   so the initiator encapsulates to it (after parsing the 1 184-byte key), the responder
//!   rebuilds the decapsulation key from its 64-byte seed and decapsulates, and both hash `ek`
//!   and the ciphertext into SK; the used one-time PQ prekey is deleted too. Same run, same
//!   machine, side by side with `x3dh/hush` (its `hush-v1` twin) for the issue-9 goals.
//! * `primitives`: the X25519 operations that dominate the above, to show where time goes, and
//!   the signature checks an initiator runs once per fetched bundle: `x3dh_bundle_verify`
//!   (`hush-v1`: the signed prekey's signature), `x3dh_bundle_verify_v2` (`hush-v2`: that plus
//!   the PQ prekey's signature over 1 205 bytes and the FIPS 203 key check), and
//!   `pq_prekey_verify` (`PqPrekey::verify` alone); and `pq_decapsulate`, the responder's KEM
//!   cost inside `x3dh/hush_v2` (`PqPrekeyPair::decapsulate`: key rebuilt from the seed, then
//!   decapsulation).
//!
//! Before the groups run, `sizes` prints the encoded first-message and later-message sizes of
//! both profiles and asserts the issue-9 size goals (first message at most `hush-v1` + 1 100
//! bytes; later messages byte-identical in size), so `cargo bench -p hush-bench -- --test`
//! checks them too.
//!
//! hush draws randomness from a seeded `ChaCha20Rng` (a user-space CSPRNG, as a client would
//! use); vodozemac draws from `rand`'s thread RNG internally. Plaintexts are passed as-is (256
//! bytes; hush's `MessageContent` padding is not exercised, and 256 is already a Padmé bucket).
//! Messages are passed as in-memory values, not encoded to bytes, on both sides.

// Benches are not library code: a failed setup step should abort the run loudly, and the
// workspace's deny of unwrap/expect/panic (relaxed only in `#[test]` code) does not fit here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_main, BatchSize, Criterion};
use hush_proto::primitives;
use hush_proto::{
    Envelope, IdentityKeyPair, InboundSession, LocalPrekeys, PrekeyBundle, PrekeyMessage,
    PrekeyStore, Profile, Session, VerifiedBundle, X25519Secret,
};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use vodozemac::olm::{Account, InboundCreationResult, OlmMessage, SessionConfig};

/// Size of every benchmarked plaintext.
const MESSAGE_LEN: usize = 256;
/// Signed-prekey creation time; any value works, nothing here reads a clock.
const NOW: u64 = 1_700_000_000;

fn rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

fn plaintext() -> [u8; MESSAGE_LEN] {
    [0x42; MESSAGE_LEN]
}

// ---------------------------------------------------------------------------------------------
// hush-proto setup

/// Bob's side of hush session setup: identity, prekey store and his verified bundle.
struct HushResponder {
    identity: IdentityKeyPair,
    prekeys: LocalPrekeys,
    bundle: VerifiedBundle,
}

fn hush_responder(rng: &mut ChaCha20Rng, with_one_time_prekey: bool) -> HushResponder {
    hush_responder_with(rng, with_one_time_prekey, Profile::V1)
}

/// Bob for `profile`: a `hush-v2` bundle also carries a one-time PQ prekey.
fn hush_responder_with(
    rng: &mut ChaCha20Rng,
    with_one_time_prekey: bool,
    profile: Profile,
) -> HushResponder {
    let identity = IdentityKeyPair::generate(rng);
    let mut prekeys = LocalPrekeys::new(rng, &identity, NOW);
    let one_time_prekey = if with_one_time_prekey {
        prekeys.generate_one_time(rng, 1).into_iter().next()
    } else {
        None
    };
    let pq_prekey = match profile {
        Profile::V1 => None,
        Profile::V2 => prekeys
            .generate_pq_one_time(rng, &identity, 1, NOW)
            .into_iter()
            .next(),
    };
    let bundle = PrekeyBundle {
        identity_key: identity.public_key(),
        signed_prekey: prekeys.current_signed().expect("a signed prekey"),
        one_time_prekey,
        pq_prekey,
    }
    .verify(profile)
    .expect("bundle verifies");
    HushResponder {
        identity,
        prekeys,
        bundle,
    }
}

fn into_prekey_message(envelope: Envelope) -> PrekeyMessage {
    match envelope {
        Envelope::Prekey(message) => message,
        Envelope::Message(_) => panic!("first message of a session is not a prekey message"),
    }
}

/// An established hush session pair: Alice initiated, Bob responded and replied, Alice read
/// the reply, so both sides have sent and received and no X3DH header is attached any more.
fn hush_pair(rng: &mut ChaCha20Rng) -> (Session, Session) {
    let msg = plaintext();
    let alice_identity = IdentityKeyPair::generate(rng);
    let bob = hush_responder(rng, true);
    let mut alice = Session::initiate(rng, &alice_identity, &bob.bundle).unwrap();
    let first = into_prekey_message(alice.encrypt(rng, &msg).unwrap());
    let InboundSession {
        session: mut bob_session,
        ..
    } = Session::respond(
        rng,
        &bob.identity,
        &alice_identity.public_key(),
        Profile::V1,
        &bob.prekeys,
        &first,
    )
    .unwrap();
    let reply = bob_session.encrypt(rng, &msg).unwrap();
    alice.decrypt(rng, &reply).unwrap();
    assert!(alice.has_received());
    (alice, bob_session)
}

// ---------------------------------------------------------------------------------------------
// vodozemac setup

/// A fresh Olm account holding exactly one published, unused one-time key.
fn olm_responder() -> (Account, vodozemac::Curve25519PublicKey) {
    let mut account = Account::new();
    let one_time_key = account
        .generate_one_time_keys(1)
        .created
        .into_iter()
        .next()
        .expect("one one-time key");
    account.mark_keys_as_published();
    (account, one_time_key)
}

fn into_olm_prekey_message(message: OlmMessage) -> vodozemac::olm::PreKeyMessage {
    match message {
        OlmMessage::PreKey(message) => message,
        OlmMessage::Normal(_) => panic!("first Olm message is not a pre-key message"),
    }
}

/// An established Olm session pair, set up exactly like [`hush_pair`].
fn olm_pair() -> (vodozemac::olm::Session, vodozemac::olm::Session) {
    let msg = plaintext();
    let alice_account = Account::new();
    let (mut bob_account, one_time_key) = olm_responder();
    let mut alice = alice_account
        .create_outbound_session(
            SessionConfig::version_1(),
            bob_account.curve25519_key(),
            one_time_key,
        )
        .unwrap();
    let first = into_olm_prekey_message(alice.encrypt(msg).unwrap());
    let InboundCreationResult {
        session: mut bob, ..
    } = bob_account
        .create_inbound_session(
            SessionConfig::version_1(),
            alice_account.curve25519_key(),
            &first,
        )
        .unwrap();
    let reply = bob.encrypt(msg).unwrap();
    alice.decrypt(&reply).unwrap();
    assert!(alice.has_received_message());
    (alice, bob)
}

// ---------------------------------------------------------------------------------------------
// 1. symmetric step

fn symmetric_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("symmetric_step");
    let msg = plaintext();

    // hush: Alice sends, Bob receives, same chain every time. The first message after the
    // reply opens Alice's new chain (a DH step at Bob); send it before measuring.
    group.bench_function("hush", |b| {
        let mut rng = rng(1);
        let (mut alice, mut bob) = hush_pair(&mut rng);
        let primer = alice.encrypt(&mut rng, &msg).unwrap();
        bob.decrypt(&mut rng, &primer).unwrap();
        b.iter(|| {
            let envelope = alice.encrypt(&mut rng, black_box(&msg)).unwrap();
            black_box(bob.decrypt(&mut rng, black_box(&envelope)).unwrap())
        });
    });

    // vodozemac: the same; the primer activates Alice's new sending ratchet (Olm's DH step).
    group.bench_function("vodozemac", |b| {
        let (mut alice, mut bob) = olm_pair();
        let primer = alice.encrypt(msg).unwrap();
        bob.decrypt(&primer).unwrap();
        b.iter(|| {
            let message = alice.encrypt(black_box(msg)).unwrap();
            black_box(bob.decrypt(black_box(&message)).unwrap())
        });
    });
    group.finish();
}

// ---------------------------------------------------------------------------------------------
// 2. DH step

fn dh_step(c: &mut Criterion) {
    let mut group = c.benchmark_group("dh_step");
    let msg = plaintext();

    // hush: strict ping-pong, one message per iteration. Each message is the first of its
    // sender's chain, so each decrypt performs a full DH ratchet step (DH for the receiving
    // chain, new ratchet key, DH for the next sending chain); each encrypt puts the ratchet
    // public key in the header.
    group.bench_function("hush", |b| {
        let mut rng = rng(2);
        let (mut alice, mut bob) = hush_pair(&mut rng);
        let mut alice_sends = true;
        b.iter(|| {
            let (sender, receiver) = if alice_sends {
                (&mut alice, &mut bob)
            } else {
                (&mut bob, &mut alice)
            };
            alice_sends = !alice_sends;
            let envelope = sender.encrypt(&mut rng, black_box(&msg)).unwrap();
            black_box(receiver.decrypt(&mut rng, black_box(&envelope)).unwrap())
        });
    });

    // vodozemac: the same ping-pong. Olm's sender, replying, generates a new ratchet key and
    // does the sending-chain DH inside `encrypt`; the receiver does one DH inside `decrypt`.
    group.bench_function("vodozemac", |b| {
        let (mut alice, mut bob) = olm_pair();
        let mut alice_sends = true;
        b.iter(|| {
            let (sender, receiver) = if alice_sends {
                (&mut alice, &mut bob)
            } else {
                (&mut bob, &mut alice)
            };
            alice_sends = !alice_sends;
            let message = sender.encrypt(black_box(msg)).unwrap();
            black_box(receiver.decrypt(black_box(&message)).unwrap())
        });
    });
    group.finish();
}

// ---------------------------------------------------------------------------------------------
// 3. X3DH

/// hush: initiate + first encrypt + respond (X3DH again, then the first decrypt, which is a DH
/// ratchet step) + deleting the used one-time prekey. The prekey store is cloned per iteration
/// in unmeasured setup so each iteration consumes a one-time prekey, as vodozemac's does.
fn bench_hush_x3dh(b: &mut criterion::Bencher<'_>, with_one_time_prekey: bool, profile: Profile) {
    let mut rng = rng(3);
    let msg = plaintext();
    let alice_identity = IdentityKeyPair::generate(&mut rng);
    let bob = hush_responder_with(&mut rng, with_one_time_prekey, profile);
    b.iter_batched_ref(
        || bob.prekeys.clone(),
        |prekeys| {
            let mut alice =
                Session::initiate(&mut rng, &alice_identity, black_box(&bob.bundle)).unwrap();
            let first = into_prekey_message(alice.encrypt(&mut rng, black_box(&msg)).unwrap());
            let inbound = Session::respond(
                &mut rng,
                &bob.identity,
                &alice_identity.public_key(),
                profile,
                &*prekeys,
                black_box(&first),
            )
            .unwrap();
            if let Some(id) = inbound.used_one_time_prekey {
                prekeys.remove_one_time(id);
            }
            if let Some(id) = inbound.used_one_time_pq_prekey {
                prekeys.remove_pq_one_time(id);
            }
            (alice, inbound)
        },
        BatchSize::SmallInput,
    );
}

fn x3dh(c: &mut Criterion) {
    let mut group = c.benchmark_group("x3dh");

    // hush with a one-time prekey: four DHs per side in X3DH.
    group.bench_function("hush", |b| bench_hush_x3dh(b, true, Profile::V1));

    // hush-v2 (PQXDH) with a one-time prekey and a one-time PQ prekey: the same four DHs plus
    // ML-KEM-768 encapsulation (initiator) and key generation from the seed + decapsulation
    // (responder).
    group.bench_function("hush_v2", |b| bench_hush_x3dh(b, true, Profile::V2));

    // vodozemac: create_outbound_session (triple DH) + first encrypt + create_inbound_session
    // (triple DH, decrypt, one-time key removed). Each iteration gets a fresh responder account
    // with one unused one-time key, made in unmeasured setup.
    group.bench_function("vodozemac", |b| {
        let msg = plaintext();
        let alice = Account::new();
        b.iter_batched_ref(
            olm_responder,
            |(bob, one_time_key)| {
                let mut session = alice
                    .create_outbound_session(
                        SessionConfig::version_1(),
                        bob.curve25519_key(),
                        *one_time_key,
                    )
                    .unwrap();
                let first = into_olm_prekey_message(session.encrypt(black_box(msg)).unwrap());
                let inbound = bob
                    .create_inbound_session(
                        SessionConfig::version_1(),
                        alice.curve25519_key(),
                        black_box(&first),
                    )
                    .unwrap();
                (session, inbound)
            },
            BatchSize::SmallInput,
        );
    });

    // hush without a one-time prekey: three DHs per side in X3DH, as in Olm's triple DH.
    group.bench_function("hush_no_opk", |b| bench_hush_x3dh(b, false, Profile::V1));
    group.finish();
}

// ---------------------------------------------------------------------------------------------
// Where the time goes

fn primitives(c: &mut Criterion) {
    let mut group = c.benchmark_group("primitives");
    let mut rng = rng(4);

    // A new X25519 key pair through hush's API: load the secret into aws-lc and compute the
    // public key (a fixed-base scalar multiplication). Every DH ratchet step makes one.
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    group.bench_function("x25519_keygen", |b| {
        b.iter(|| black_box(X25519Secret::from_bytes(black_box(seed)).public_key()));
    });

    // One X25519 Diffie-Hellman (variable-base): hush's backend (aws-lc), and x25519-dalek's
    // Montgomery ladder (hush's fallback, and what vodozemac uses).
    let mut theirs = [0u8; 32];
    rng.fill_bytes(&mut theirs);
    let theirs = *X25519Secret::from_bytes(theirs).public_key().as_bytes();
    let (loaded, _) = primitives::x25519_load(&seed).unwrap();
    group.bench_function("x25519_dh/aws-lc", |b| {
        b.iter(|| black_box(primitives::x25519(black_box(&loaded), black_box(&theirs))));
    });
    let dalek = x25519_dalek::StaticSecret::from(seed);
    group.bench_function("x25519_dh/x25519-dalek", |b| {
        b.iter(|| {
            black_box(primitives::x25519_on_dalek(
                black_box(&dalek),
                black_box(&theirs),
            ))
        });
    });

    // The check an initiator runs once per fetched bundle before `Session::initiate`.
    let bob = hush_responder(&mut rng, true);
    let bundle = bob.bundle.bundle().clone();
    group.bench_function("x3dh_bundle_verify", |b| {
        b.iter(|| black_box(black_box(bundle.clone()).verify(Profile::V1).unwrap()));
    });

    // The same check for a hush-v2 bundle: the signed prekey's signature, the PQ prekey's
    // signature (over context ‖ id ‖ 0x01 ‖ ek, 1 205 bytes) and the FIPS 203 check of `ek`.
    let bob_v2 = hush_responder_with(&mut rng, true, Profile::V2);
    let bundle_v2 = bob_v2.bundle.bundle().clone();
    group.bench_function("x3dh_bundle_verify_v2", |b| {
        b.iter(|| black_box(black_box(bundle_v2.clone()).verify(Profile::V2).unwrap()));
    });

    // `PqPrekey::verify` alone (what the relay also runs on every published PQ prekey).
    let pq_prekey = bundle_v2.pq_prekey.clone().expect("a PQ prekey");
    let owner = bundle_v2.identity_key;
    group.bench_function("pq_prekey_verify", |b| {
        b.iter(|| assert!(black_box(&pq_prekey).verify(black_box(&owner))));
    });

    // What the responder pays for the KEM in `Session::respond`: `PqPrekeyPair::decapsulate`
    // rebuilds the decapsulation key from its 64-byte seed (a full ML-KEM key generation), then
    // decapsulates. The ciphertext is a real one from a `hush-v2` first message.
    let mut alice_rng = ChaCha20Rng::seed_from_u64(6);
    let alice_identity = IdentityKeyPair::generate(&mut alice_rng);
    let mut alice = Session::initiate(&mut alice_rng, &alice_identity, &bob_v2.bundle).unwrap();
    let first = into_prekey_message(alice.encrypt(&mut alice_rng, &plaintext()).unwrap());
    let pq_header = first.x3dh.pq.expect("a hush-v2 first message");
    let pq_pair = bob_v2
        .prekeys
        .pq_prekey(pq_header.prekey_id)
        .expect("the PQ prekey is held");
    group.bench_function("pq_decapsulate", |b| {
        b.iter(|| black_box(pq_pair.decapsulate(black_box(&pq_header.ciphertext))));
    });
    group.finish();
}

// ---------------------------------------------------------------------------------------------
// Sizes (printed and checked before the timings)

/// Encoded sizes of a first (prekey) message and of a later message in each profile, for the
/// same plaintext; asserts the issue-9 goals.
fn sizes() {
    let msg = plaintext();
    let mut measured = Vec::new();
    for profile in [Profile::V1, Profile::V2] {
        let mut rng = rng(5);
        let alice_identity = IdentityKeyPair::generate(&mut rng);
        let bob = hush_responder_with(&mut rng, true, profile);
        let bundle_len = bob.bundle.bundle().to_bytes().len();
        let mut alice = Session::initiate(&mut rng, &alice_identity, &bob.bundle).unwrap();
        let first = alice.encrypt(&mut rng, &msg).unwrap();
        let first_len = first.to_bytes().len();
        let inbound = Session::respond(
            &mut rng,
            &bob.identity,
            &alice_identity.public_key(),
            profile,
            &bob.prekeys,
            &into_prekey_message(first),
        )
        .unwrap();
        let mut bob_session = inbound.session;
        let reply = bob_session.encrypt(&mut rng, &msg).unwrap();
        let reply_len = reply.to_bytes().len();
        alice.decrypt(&mut rng, &reply).unwrap();
        let later_len = alice.encrypt(&mut rng, &msg).unwrap().to_bytes().len();
        println!(
            "sizes/{profile}: bundle {bundle_len} B, first message {first_len} B, reply \
             {reply_len} B, later message {later_len} B ({MESSAGE_LEN}-byte plaintext)"
        );
        measured.push((first_len, reply_len, later_len));
    }
    let [(v1_first, v1_reply, v1_later), (v2_first, v2_reply, v2_later)] = measured[..] else {
        unreachable!("two profiles measured")
    };
    println!(
        "sizes: hush-v2 first message = hush-v1 + {} B (goal: at most + 1100 B); later \
         messages identical: {}",
        v2_first - v1_first,
        v1_reply == v2_reply && v1_later == v2_later
    );
    assert!(
        v2_first <= v1_first + 1100,
        "first-message size goal missed"
    );
    assert_eq!(
        (v1_reply, v1_later),
        (v2_reply, v2_later),
        "later sizes differ"
    );
}

fn config() -> Criterion {
    Criterion::default()
        .sample_size(50)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

/// Every group under one configuration (what `criterion_group!` would generate, written out so
/// that the function carries a doc comment for the workspace's `missing_docs` lint).
pub fn benches() {
    sizes();
    let mut criterion = config().configure_from_args();
    symmetric_step(&mut criterion);
    dh_step(&mut criterion);
    x3dh(&mut criterion);
    primitives(&mut criterion);
}

criterion_main!(benches);
