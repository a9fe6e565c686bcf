//! MLS groups (RFC 9420) with openmls 0.9 in process: the issue-10 speed and size goals for a
//! 1,000-member group. docs/BENCHMARKS.md ("Groups (MLS)") gives the figures, goals and anchors.
//!
//! Configuration as the client's: ciphersuite 0x0003
//! (MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519) on `OpenMlsRustCrypto`, BasicCredential
//! named after the member, the leaf signature key an Ed25519 identity key signing through
//! `ed25519-dalek` (as the client signs with its identity key), ratchet tree in the Welcome,
//! `max_past_epochs` 5, `PURE_CIPHERTEXT` (handshake messages too are PrivateMessages).
//!
//! Two tree shapes, each built once per process (a few seconds for `fresh`, longer for
//! `updated`; states are copied between iterations by cloning the provider's memory storage):
//!
//! * `fresh`: the creator adds every other member in one commit, as `hush group create NAME
//!   MEMBER...` does. Only the creator's direct path is set; every other parent node is blank,
//!   so the creator's update path encrypts to about one HPKE ciphertext per member.
//! * `updated`: members were added one at a time and each committed once after joining (an
//!   update, as a client does when it joins), so every parent node is set and a path encrypts to
//!   about log2(n) nodes: the tree of a group that has been in use.
//!
//! Functions, named `mls_<n>/<what>/<shape>`; the creator ("alice", leaf 0) commits, "bob" is
//! an existing member, "carol" the member being added:
//!
//! * `add_commit`: alice's `add_members` for carol's KeyPackage, commit and Welcome encoded to
//!   bytes (pending commit cleared after each iteration so every one starts at the same epoch).
//! * `add_process`: bob decodes that commit, `process_message` + `merge_staged_commit` (bob's
//!   state restored before each iteration, outside the measured code).
//! * `add_join`: carol decodes the Welcome and joins (`StagedWelcome::new_from_welcome` +
//!   `into_group`), tree from the Welcome's extension, all of its leaf signatures checked.
//! * `message`: alice's `create_message` of 256 bytes encoded, bob's decode +
//!   `process_message`: encrypt + decrypt.
//!
//! State writes go to openmls's `MemoryStorage` (serde_json values) and are measured: the client
//! stores the same values, sealed, in its profile.
//!
//! Before the criterion groups run, one line per shape prints the wire sizes (add commit,
//! Welcome, removal commit, 256-byte application message), and one line what alice stores
//! (openmls rewrites its largest value, the message secrets, on every encrypt and decrypt). `cargo bench -p hush-bench -- --test`
//! (CI) uses a 16-member group so it stays fast; `HUSH_BENCH_GROUP_SIZE` overrides the size.

// Benches are not library code: a failed setup step should abort the run loudly, and the
// workspace's deny of unwrap/expect/panic (relaxed only in `#[test]` code) does not fit here.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::HashMap;
use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_main, BatchSize, Criterion, SamplingMode};
use ed25519_dalek::{Signer as _, SigningKey};
use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::*;
use openmls_rust_crypto::OpenMlsRustCrypto;
use openmls_traits::signatures::{Signer, SignerError};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};

/// The group size the goals name.
const GROUP_SIZE: usize = 1_000;
/// The group size in criterion's `--test` mode (CI runs every benchmark once).
const TEST_GROUP_SIZE: usize = 16;
/// Application payload size of the message goals.
const MESSAGE_LEN: usize = 256;
const CIPHERSUITE: Ciphersuite = Ciphersuite::MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519;

/// An identity key as the client's MLS signer: the leaf signature key is its public key.
struct Identity(SigningKey);

impl Signer for Identity {
    fn sign(&self, payload: &[u8]) -> Result<Vec<u8>, SignerError> {
        Ok(self.0.sign(payload).to_bytes().to_vec())
    }

    fn signature_scheme(&self) -> SignatureScheme {
        SignatureScheme::ED25519
    }
}

/// One member: its identity, credential, and provider (whose storage holds its MLS state).
struct Member {
    identity: Identity,
    credential: CredentialWithKey,
    provider: OpenMlsRustCrypto,
}

fn member(rng: &mut ChaCha20Rng, name: &str) -> Member {
    let mut seed = [0u8; 32];
    rng.fill_bytes(&mut seed);
    let identity = Identity(SigningKey::from_bytes(&seed));
    let credential = CredentialWithKey {
        credential: BasicCredential::new(name.as_bytes().to_vec()).into(),
        signature_key: identity.0.verifying_key().to_bytes().to_vec().into(),
    };
    Member {
        identity,
        credential,
        provider: OpenMlsRustCrypto::default(),
    }
}

fn key_package(m: &Member) -> KeyPackage {
    KeyPackage::builder()
        .build(CIPHERSUITE, &m.provider, &m.identity, m.credential.clone())
        .unwrap()
        .key_package()
        .clone()
}

/// The client's group configuration.
fn create_config() -> MlsGroupCreateConfig {
    MlsGroupCreateConfig::builder()
        .ciphersuite(CIPHERSUITE)
        .use_ratchet_tree_extension(true)
        .max_past_epochs(5)
        .wire_format_policy(PURE_CIPHERTEXT_WIRE_FORMAT_POLICY)
        .build()
}

fn encode(message: &MlsMessageOut) -> Vec<u8> {
    message.tls_serialize_detached().unwrap()
}

fn decode(bytes: &[u8]) -> MlsMessageBodyIn {
    MlsMessageIn::tls_deserialize_exact(bytes)
        .unwrap()
        .extract()
}

fn protocol_message(bytes: &[u8]) -> ProtocolMessage {
    MlsMessageIn::tls_deserialize_exact(bytes)
        .unwrap()
        .try_into_protocol_message()
        .unwrap()
}

fn join(provider: &OpenMlsRustCrypto, welcome: &[u8]) -> MlsGroup {
    let MlsMessageBodyIn::Welcome(welcome) = decode(welcome) else {
        panic!("not a Welcome");
    };
    StagedWelcome::new_from_welcome(provider, create_config().join_config(), welcome, None)
        .unwrap()
        .into_group(provider)
        .unwrap()
}

/// Process and merge a commit.
fn process_commit(group: &mut MlsGroup, provider: &OpenMlsRustCrypto, commit: &[u8]) {
    let processed = group
        .process_message(provider, protocol_message(commit))
        .unwrap();
    let ProcessedMessageContent::StagedCommitMessage(staged) = processed.into_content() else {
        panic!("not a commit");
    };
    group.merge_staged_commit(provider, *staged).unwrap();
}

/// A member's whole MLS state: a copy of its provider's storage.
type Snapshot = HashMap<Vec<u8>, Vec<u8>>;

fn snapshot(provider: &OpenMlsRustCrypto) -> Snapshot {
    provider.storage().values.read().unwrap().clone()
}

/// A fresh provider holding `snapshot`, and the group loaded from it (if it has one).
fn restore(snapshot: &Snapshot, group_id: &GroupId) -> (OpenMlsRustCrypto, Option<MlsGroup>) {
    let provider = OpenMlsRustCrypto::default();
    *provider.storage().values.write().unwrap() = snapshot.clone();
    let group = MlsGroup::load(provider.storage(), group_id).unwrap();
    (provider, group)
}

/// The two tree shapes (module doc).
#[derive(Clone, Copy, Debug)]
enum Shape {
    Fresh,
    Updated,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Shape::Fresh => "fresh",
            Shape::Updated => "updated",
        }
    }
}

/// An n-member group at rest: alice (leaf 0) and bob in the same epoch, carol holding an unused
/// KeyPackage; every other member's state was dropped after building.
struct Fixture {
    n: usize,
    shape: Shape,
    group_id: GroupId,
    alice: Identity,
    alice_state: Snapshot,
    bob_state: Snapshot,
    carol: KeyPackage,
    carol_state: Snapshot,
    /// alice's commit adding carol, and its Welcome (made once, for `add_process`/`add_join`).
    add_commit: Vec<u8>,
    welcome: Vec<u8>,
    built_in: Duration,
}

fn build(n: usize, shape: Shape) -> Fixture {
    let started = Instant::now();
    let mut rng = ChaCha20Rng::from_seed([7; 32]);
    let config = create_config();
    let mut group_id = [0u8; 16];
    rng.fill_bytes(&mut group_id);
    let group_id = GroupId::from_slice(&group_id);
    let alice = member(&mut rng, "alice");
    let mut alice_group = MlsGroup::new_with_group_id(
        &alice.provider,
        &alice.identity,
        &config,
        group_id.clone(),
        alice.credential.clone(),
    )
    .unwrap();
    let bob = member(&mut rng, "bob");

    let bob_group = match shape {
        Shape::Fresh => {
            // Everyone else's KeyPackages come from one throwaway provider.
            let mut kps = vec![key_package(&bob)];
            for i in 2..n {
                let m = member(&mut rng, &format!("member-{i}"));
                kps.push(key_package(&m));
            }
            let (_, welcome, _) = alice_group
                .add_members(&alice.provider, &alice.identity, &kps)
                .unwrap();
            alice_group.merge_pending_commit(&alice.provider).unwrap();
            join(&bob.provider, &encode(&welcome))
        }
        Shape::Updated => {
            // One at a time: alice adds, the new member joins and commits an update, alice
            // processes it. bob is added last, so only alice's state is kept throughout.
            for i in 1..n {
                let m = if i == n - 1 {
                    None
                } else {
                    Some(member(&mut rng, &format!("member-{i}")))
                };
                let m = m.as_ref().unwrap_or(&bob);
                let (_, welcome, _) = alice_group
                    .add_members(&alice.provider, &alice.identity, &[key_package(m)])
                    .unwrap();
                alice_group.merge_pending_commit(&alice.provider).unwrap();
                let mut group = join(&m.provider, &encode(&welcome));
                let update = group
                    .self_update(&m.provider, &m.identity, LeafNodeParameters::default())
                    .unwrap()
                    .into_commit();
                group.merge_pending_commit(&m.provider).unwrap();
                process_commit(&mut alice_group, &alice.provider, &encode(&update));
                if i == n - 1 {
                    break;
                }
            }
            MlsGroup::load(bob.provider.storage(), &group_id)
                .unwrap()
                .unwrap()
        }
    };
    assert_eq!(alice_group.members().count(), n);
    assert_eq!(
        alice_group.epoch_authenticator().as_slice(),
        bob_group.epoch_authenticator().as_slice()
    );
    let alice_state = snapshot(&alice.provider);
    let bob_state = snapshot(&bob.provider);

    let carol = member(&mut rng, "carol");
    let carol_kp = key_package(&carol);
    let carol_state = snapshot(&carol.provider);

    // The commit and Welcome the process/join benchmarks replay, checked once end to end.
    let (commit, welcome, _) = alice_group
        .add_members(
            &alice.provider,
            &alice.identity,
            std::slice::from_ref(&carol_kp),
        )
        .unwrap();
    let (add_commit, welcome) = (encode(&commit), encode(&welcome));
    alice_group.merge_pending_commit(&alice.provider).unwrap();
    let (bob_provider, bob_group) = restore(&bob_state, &group_id);
    let mut bob_group = bob_group.unwrap();
    process_commit(&mut bob_group, &bob_provider, &add_commit);
    let (carol_provider, _) = restore(&carol_state, &group_id);
    let carol_group = join(&carol_provider, &welcome);
    for other in [&bob_group, &carol_group] {
        assert_eq!(
            alice_group.epoch_authenticator().as_slice(),
            other.epoch_authenticator().as_slice()
        );
    }

    Fixture {
        n,
        shape,
        group_id,
        alice: alice.identity,
        alice_state,
        bob_state,
        carol: carol_kp,
        carol_state,
        add_commit,
        welcome,
        built_in: started.elapsed(),
    }
}

/// Wire sizes: one clear line per shape, and the removal checked to work.
fn print_sizes(f: &Fixture) {
    let (alice_provider, alice_group) = restore(&f.alice_state, &f.group_id);
    let mut alice_group = alice_group.unwrap();
    // A member in the middle of the tree (its direct path is blanked by the removal).
    let removed = LeafNodeIndex::new(u32::try_from(f.n / 2).unwrap());
    let (remove_commit, _, _) = alice_group
        .remove_members(&alice_provider, &f.alice, &[removed])
        .unwrap();
    let remove_commit = encode(&remove_commit);
    alice_group
        .clear_pending_commit(alice_provider.storage())
        .unwrap();
    let message = encode(
        &alice_group
            .create_message(&alice_provider, &f.alice, &[0x42; MESSAGE_LEN])
            .unwrap(),
    );
    println!(
        "mls sizes, {} members, {} tree (built in {:.1} s): add commit {} B, Welcome {} B, \
         remove commit {} B, application message {} B for {} B payload (+{} B), uploaded once",
        f.n,
        f.shape.name(),
        f.built_in.as_secs_f64(),
        f.add_commit.len(),
        f.welcome.len(),
        remove_commit.len(),
        message.len(),
        MESSAGE_LEN,
        message.len() - MESSAGE_LEN,
    );
    // What a member stores (openmls's MemoryStorage encoding): every message rewrites the
    // largest value, the group's message secrets (this epoch's and up to 5 past epochs').
    let stored: usize = f.alice_state.values().map(Vec::len).sum();
    let largest = f.alice_state.values().map(Vec::len).max().unwrap_or(0);
    println!(
        "mls state, {} members, {} tree: alice stores {} B in {} values, the largest {} B",
        f.n,
        f.shape.name(),
        stored,
        f.alice_state.len(),
        largest,
    );
}

fn bench_shape(c: &mut Criterion, f: &Fixture) {
    let mut group = c.benchmark_group(format!("mls_{}", f.n));
    // Milliseconds per iteration: the same iteration count in every sample.
    group.sampling_mode(SamplingMode::Flat);
    let shape = f.shape.name();

    group.bench_function(format!("add_commit/{shape}"), |b| {
        let (provider, alice_group) = restore(&f.alice_state, &f.group_id);
        let mut alice_group = alice_group.unwrap();
        let carol = [f.carol.clone()];
        b.iter(|| {
            let (commit, welcome, _) = alice_group
                .add_members(&provider, &f.alice, &carol)
                .unwrap();
            let bytes = (encode(&commit), encode(&welcome));
            alice_group
                .clear_pending_commit(provider.storage())
                .unwrap();
            bytes
        });
    });

    group.bench_function(format!("add_process/{shape}"), |b| {
        b.iter_batched(
            || {
                let (provider, bob_group) = restore(&f.bob_state, &f.group_id);
                (provider, bob_group.unwrap())
            },
            |(provider, mut bob_group)| {
                process_commit(&mut bob_group, &provider, black_box(&f.add_commit));
                (provider, bob_group)
            },
            BatchSize::PerIteration,
        );
    });

    group.bench_function(format!("add_join/{shape}"), |b| {
        b.iter_batched(
            || restore(&f.carol_state, &f.group_id).0,
            |provider| {
                let group = join(&provider, black_box(&f.welcome));
                (provider, group)
            },
            BatchSize::PerIteration,
        );
    });

    group.sampling_mode(SamplingMode::Auto).sample_size(50);
    group.bench_function(format!("message/{shape}"), |b| {
        let (alice_provider, alice_group) = restore(&f.alice_state, &f.group_id);
        let (bob_provider, bob_group) = restore(&f.bob_state, &f.group_id);
        let (mut alice_group, mut bob_group) = (alice_group.unwrap(), bob_group.unwrap());
        let payload = [0x42; MESSAGE_LEN];
        b.iter(|| {
            let bytes = encode(
                &alice_group
                    .create_message(&alice_provider, &f.alice, black_box(&payload))
                    .unwrap(),
            );
            let processed = bob_group
                .process_message(&bob_provider, protocol_message(&bytes))
                .unwrap();
            let ProcessedMessageContent::ApplicationMessage(m) = processed.into_content() else {
                panic!("not an application message");
            };
            m.into_bytes()
        });
    });
    group.finish();
}

fn group_size() -> usize {
    if let Ok(n) = std::env::var("HUSH_BENCH_GROUP_SIZE") {
        return n.parse().expect("HUSH_BENCH_GROUP_SIZE: a number");
    }
    if std::env::args().any(|a| a == "--test") {
        TEST_GROUP_SIZE
    } else {
        GROUP_SIZE
    }
}

/// Both tree shapes under one configuration (what `criterion_group!` would generate, written
/// out so that the function carries a doc comment for the workspace's `missing_docs` lint).
pub fn benches() {
    let n = group_size();
    assert!(n >= 3, "a group of alice, bob and at least one more");
    // Defaults; the command line (`--measurement-time`, `--sample-size`) overrides them.
    let mut criterion = Criterion::default()
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .configure_from_args();
    // A filter naming one shape (`-- updated`, `-- add_join/fresh`) skips building the other.
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let named = |shape: Shape| filter.iter().any(|f| f.contains(shape.name()));
    for shape in [Shape::Fresh, Shape::Updated] {
        if (named(Shape::Fresh) || named(Shape::Updated)) && !named(shape) {
            continue;
        }
        let fixture = build(n, shape);
        print_sizes(&fixture);
        bench_shape(&mut criterion, &fixture);
    }
}

criterion_main!(benches);
