//! A fixed Alice/Bob session pair, established once from a seeded RNG, with skipped keys and a
//! previous chain on both sides so that forged messages can reach every decryption path.

use std::sync::OnceLock;

use hush_proto::envelope::MIN_CIPHERTEXT_LEN;
use hush_proto::{
    Envelope, IdentityKeyPair, LocalPrekeys, PqPrekey, PrekeyBundle, Profile, Session,
    SessionPickle, X25519PublicKey,
};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

/// Smallest ciphertext the ratchet looks at.
pub(crate) const MIN_CIPHERTEXT: usize = MIN_CIPHERTEXT_LEN;

/// The established pair and what a fuzzer needs to aim at it.
pub(crate) struct Fixture {
    /// `[alice, bob]`.
    pub(crate) sessions: [Session; 2],
    /// Their pickles, to check that a failed decryption changed nothing.
    pub(crate) pickles: [SessionPickle; 2],
    /// Ratchet keys the sessions know: Alice's first and second, Bob's first and second.
    pub(crate) keys: Vec<X25519PublicKey>,
    /// Envelopes both sessions have already processed (replays; safe to publish as seeds).
    pub(crate) delivered: Vec<Vec<u8>>,
    /// Identity and prekeys of Bob, for pickle and bundle seeds.
    pub(crate) bob_identity: IdentityKeyPair,
    pub(crate) bob_prekeys: LocalPrekeys,
    pub(crate) bob_bundle: PrekeyBundle,
    /// A `hush-v2` setup between the same two identities, for the PQ decoders' seeds.
    pub(crate) v2: V2Setup,
}

/// A `hush-v2` (PQXDH) setup: Bob's v2 bundles, first envelopes of both PQ prekey kinds, the
/// session pair after one reply, and Bob's prekeys holding one-time PQ prekeys.
pub(crate) struct V2Setup {
    /// With a one-time prekey and a one-time PQ prekey; then without a one-time prekey and with
    /// the last-resort PQ prekey.
    pub(crate) bundles: [PrekeyBundle; 2],
    /// The version-2 prekey envelopes made from `bundles` (each already read by Bob).
    pub(crate) first_envelopes: [Vec<u8>; 2],
    /// Bob's reply (an ordinary version-1 envelope of the v2 session).
    pub(crate) reply: Vec<u8>,
    /// `[alice, bob]` of the first setup, after the reply.
    pub(crate) pickles: [SessionPickle; 2],
    /// Bob's prekeys: last-resort and one-time PQ prekeys besides the classical ones.
    pub(crate) bob_prekeys: LocalPrekeys,
    /// The one-time PQ prekeys left after the setups (to publish).
    pub(crate) pq_one_time: Vec<PqPrekey>,
}

static FIXTURE: OnceLock<Fixture> = OnceLock::new();

/// The fixture, built on first use.
pub(crate) fn get() -> &'static Fixture {
    FIXTURE.get_or_init(build)
}

fn decrypt(rng: &mut ChaCha20Rng, session: &mut Session, env: &Envelope) {
    let bytes = env.to_bytes();
    let parsed = Envelope::from_bytes(&bytes).unwrap();
    session.decrypt(rng, &parsed).unwrap();
}

fn build() -> Fixture {
    let mut rng = ChaCha20Rng::seed_from_u64(0x6875_7368_6675_7a7a);
    let alice_identity = IdentityKeyPair::generate(&mut rng);
    let bob_identity = IdentityKeyPair::generate(&mut rng);
    let mut bob_prekeys = LocalPrekeys::new(&mut rng, &bob_identity, 1_700_000_000);
    let opk = bob_prekeys.generate_one_time(&mut rng, 2);
    let bob_bundle = PrekeyBundle {
        identity_key: bob_identity.public_key(),
        signed_prekey: bob_prekeys.current_signed().unwrap(),
        one_time_prekey: opk.first().copied(),
        pq_prekey: None,
    };
    let verified = bob_bundle.clone().verify(hush_proto::Profile::V1).unwrap();

    // Alice → Bob: the prekey message (Alice's ratchet key A1).
    let mut alice = Session::initiate(&mut rng, &alice_identity, &verified).unwrap();
    let e0 = alice.encrypt(&mut rng, b"hello").unwrap();
    let Envelope::Prekey(pre) = &e0 else {
        panic!("first message must be a prekey envelope")
    };
    let mut bob = Session::respond(
        &mut rng,
        &bob_identity,
        &alice_identity.public_key(),
        hush_proto::Profile::V1,
        &bob_prekeys,
        pre,
    )
    .unwrap()
    .session;
    // Bob → Alice under B1.
    let r1 = bob.encrypt(&mut rng, b"r1").unwrap();
    decrypt(&mut rng, &mut alice, &r1);
    // Alice → Bob under A2: three messages, Bob receives only the third (two skipped keys).
    let mut a2 = Vec::new();
    for text in [&b"m1"[..], b"m2", b"m3"] {
        a2.push(alice.encrypt(&mut rng, text).unwrap());
    }
    decrypt(&mut rng, &mut bob, &a2[2]);
    // Bob → Alice under B2: two messages, Alice receives only the second (one skipped key).
    let r2 = bob.encrypt(&mut rng, b"r2").unwrap();
    let r3 = bob.encrypt(&mut rng, b"r3").unwrap();
    decrypt(&mut rng, &mut alice, &r3);
    drop(r2);

    let keys = vec![
        e0.ratchet_message().header.ratchet_key,
        a2[2].ratchet_message().header.ratchet_key,
        r1.ratchet_message().header.ratchet_key,
        r3.ratchet_message().header.ratchet_key,
    ];
    assert_eq!(alice.skipped_keys(), 1);
    assert_eq!(bob.skipped_keys(), 2);
    let delivered = vec![
        e0.to_bytes(),
        r1.to_bytes(),
        a2[2].to_bytes(),
        r3.to_bytes(),
    ];
    let pickles = [alice.pickle(), bob.pickle()];
    let v2 = build_v2(&alice_identity, &bob_identity);
    Fixture {
        sessions: [alice, bob],
        pickles,
        keys,
        delivered,
        bob_identity,
        bob_prekeys,
        bob_bundle,
        v2,
    }
}

/// The `hush-v2` part, from its own seeded RNG so the `hush-v1` fixture (and its published
/// seeds) stays byte-identical.
fn build_v2(alice_identity: &IdentityKeyPair, bob_identity: &IdentityKeyPair) -> V2Setup {
    let mut rng = ChaCha20Rng::seed_from_u64(0x6875_7368_7632);
    let mut bob_prekeys = LocalPrekeys::new(&mut rng, bob_identity, 1_700_000_000);
    let opk = bob_prekeys.generate_one_time(&mut rng, 1);
    let mut pq_one_time =
        bob_prekeys.generate_pq_one_time(&mut rng, bob_identity, 3, 1_700_000_000);
    let first_pq = pq_one_time.remove(0);
    let signed_prekey = bob_prekeys.current_signed().unwrap();
    let bundles = [
        PrekeyBundle {
            identity_key: bob_identity.public_key(),
            signed_prekey,
            one_time_prekey: opk.first().copied(),
            pq_prekey: Some(first_pq),
        },
        PrekeyBundle {
            identity_key: bob_identity.public_key(),
            signed_prekey,
            one_time_prekey: None,
            pq_prekey: bob_prekeys.current_pq_last_resort(),
        },
    ];
    let mut sessions = Vec::new();
    let mut first_envelopes = Vec::new();
    for bundle in &bundles {
        let verified = bundle.clone().verify(Profile::V2).unwrap();
        let mut alice = Session::initiate(&mut rng, alice_identity, &verified).unwrap();
        let first = alice.encrypt(&mut rng, b"hello, post-quantum").unwrap();
        let Envelope::Prekey(pre) = &first else {
            panic!("first message must be a prekey envelope")
        };
        let bob = Session::respond(
            &mut rng,
            bob_identity,
            &alice_identity.public_key(),
            Profile::V2,
            &bob_prekeys,
            pre,
        )
        .unwrap()
        .session;
        first_envelopes.push(first.to_bytes());
        sessions.push((alice, bob));
    }
    let (mut alice, mut bob) = sessions.swap_remove(0);
    let reply = bob.encrypt(&mut rng, b"r1").unwrap();
    decrypt(&mut rng, &mut alice, &reply);
    V2Setup {
        bundles,
        first_envelopes: first_envelopes.try_into().unwrap(),
        reply: reply.to_bytes(),
        pickles: [alice.pickle(), bob.pickle()],
        bob_prekeys,
        pq_one_time,
    }
}

impl Fixture {
    /// Decrypt `env` with a clone of party `party`'s session: it must fail and leave the
    /// session unchanged.
    pub(crate) fn assert_rejected(&self, party: usize, env: &Envelope) {
        let mut session = self.sessions[party].clone();
        let mut rng = ChaCha20Rng::seed_from_u64(1);
        let result = session.decrypt(&mut rng, env);
        assert!(
            result.is_err(),
            "arbitrary bytes authenticated for party {party}"
        );
        assert!(
            session.pickle() == self.pickles[party],
            "a failed decryption changed party {party}'s session"
        );
    }
}
