//! The group target: arbitrary bytes as group mail, through every path untrusted group bytes
//! take in the client: the group envelope decoder, openmls's MLSMessage decoder (`group_id_of`),
//! processing as a message or commit by a member of a fixed two-member group, and joining as a
//! Welcome by someone holding a KeyPackage. Refusals are the expected outcome; a panic is a
//! finding. (Whether a refusal leaves state unchanged is tested on the profile provider in
//! hush-client, where a refused message's transaction is dropped.)

use std::sync::{Mutex, OnceLock};

use hush_client::group::{engine, IdentitySigner, MemberId};
use hush_proto::group::{KIND_GROUP_COMMIT, KIND_GROUP_MESSAGE, KIND_GROUP_WELCOME};
use hush_proto::{GroupEnvelope, IdentityKeyPair};
use openmls_rust_crypto::OpenMlsRustCrypto;

const GID: [u8; 16] = *b"fuzz-group-id-16";

/// bob's state in a group alice made, carol with a published KeyPackage, and valid group
/// envelopes (a message, a commit, a Welcome) as seeds.
pub(crate) struct GroupFixture {
    bob: OpenMlsRustCrypto,
    carol: OpenMlsRustCrypto,
    pub(crate) samples: Vec<Vec<u8>>,
}

fn member(name: &str, seed: u8) -> (IdentityKeyPair, MemberId) {
    let key = IdentityKeyPair::from_seed(&[seed; 32]);
    let id = MemberId::new(name, *key.public_key().as_bytes()).unwrap();
    (key, id)
}

fn build() -> GroupFixture {
    let (alice_key, alice) = member("alice", 1);
    let (bob_key, bob) = member("bob", 2);
    let (carol_key, carol) = member("carol", 3);
    let (dave_key, dave) = member("dave", 4);
    let (pa, pb, pc, pd) = (
        OpenMlsRustCrypto::default(),
        OpenMlsRustCrypto::default(),
        OpenMlsRustCrypto::default(),
        OpenMlsRustCrypto::default(),
    );
    let sa = IdentitySigner::new(&alice_key);
    engine::create_group(&pa, &sa, &alice, GID, "fuzz").unwrap();
    let kp_bob = engine::new_key_package(&pb, &IdentitySigner::new(&bob_key), &bob, false).unwrap();
    let add_bob = engine::add_members(&pa, &sa, &GID, &[(bob, kp_bob)]).unwrap();
    engine::merge_own_commit(&pa, &GID).unwrap();
    let welcome = add_bob.welcome.clone().unwrap();
    engine::join(&pb, &GroupEnvelope::from_bytes(&welcome).unwrap()).unwrap();
    // carol keeps a KeyPackage, so a Welcome-shaped input reaches decryption.
    engine::new_key_package(&pc, &IdentitySigner::new(&carol_key), &carol, true).unwrap();
    let message = engine::encrypt(&pa, &sa, &GID, b"hello fuzz").unwrap();
    // A commit bob has not seen (alice adds dave; not merged, so bob can process it).
    let kp_dave =
        engine::new_key_package(&pd, &IdentitySigner::new(&dave_key), &dave, false).unwrap();
    let add_dave = engine::add_members(&pa, &sa, &GID, &[(dave, kp_dave)]).unwrap();
    let mut samples = vec![message, add_dave.commit.clone(), welcome];
    samples.extend(add_dave.welcome);
    GroupFixture {
        bob: pb,
        carol: pc,
        samples,
    }
}

pub(crate) fn fixture() -> &'static Mutex<GroupFixture> {
    static FIXTURE: OnceLock<Mutex<GroupFixture>> = OnceLock::new();
    FIXTURE.get_or_init(|| Mutex::new(build()))
}

/// One input: decoded as a group envelope (canonical round trip), then each kind's path.
pub fn group_message(data: &[u8]) {
    if let Ok(env) = GroupEnvelope::from_bytes(data) {
        assert_eq!(
            env.to_bytes(),
            data,
            "group envelope encoding is not canonical"
        );
    }
    // The same bytes under each kind, as the relay could frame them.
    let fx = fixture().lock().unwrap_or_else(|e| e.into_inner());
    for kind in [KIND_GROUP_MESSAGE, KIND_GROUP_COMMIT, KIND_GROUP_WELCOME] {
        let framed = [&[1, kind][..], data].concat();
        let Ok(env) = GroupEnvelope::from_bytes(&framed) else {
            continue;
        };
        let _ = engine::group_id_of(&env);
        match env {
            GroupEnvelope::Welcome(_) => {
                let _ = engine::join(&fx.carol, &env);
            }
            _ => {
                let _ = engine::process(&fx.bob, &GID, &env);
            }
        }
    }
}
