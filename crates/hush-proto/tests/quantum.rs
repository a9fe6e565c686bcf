//! "Record now, decrypt later": the quantum adversary of issue 9, seen from the attacker.
//!
//! Real session setups are recorded as they cross the relay (the encoded bundle the relay
//! serves, the encoded first envelope the initiator sends). The attacker is then handed what
//! breaking X25519 gives: every X25519 private key of the setup (both identity keys in X25519
//! form, the signed prekey, the one-time prekey, the initiator's ephemeral key as its RNG drew
//! it). It is `hush_adversary::quantum`, written from docs/PROTOCOL.md on the primitive crates
//! and parsing the recorded bytes itself, so nothing in hush-proto can help or hinder it.
//!
//! * `hush-v1`: the attacker derives SK and reads the first message (and the rest of the
//!   initiator's first chain).
//! * `hush-v2`: the same attacker, doing everything but the ML-KEM-768 decapsulation, cannot;
//!   handed the KEM shared secret as well (what breaking ML-KEM would give) it can, so the
//!   one thing that stops it is the KEM.
//! * The limit: the ratchet's DH steps are X25519 only, so after a state compromise the same
//!   attacker follows every later step (no post-compromise healing against it).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use hush_adversary::quantum::{
    read_first_message, BrokenKeys, QuantumAttackError, Recording, RecordingRng,
};
use hush_proto::message::ContentType;
use hush_proto::{
    Envelope, IdentityKeyPair, LocalPrekeys, MessageContent, PrekeyBundle, PrekeyStore, Profile,
    Session,
};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use zeroize::Zeroizing;

const NOW: u64 = 1_767_225_600;
const SECRET: &[u8] = b"The launch code is 0000. Burn after reading.";
const SECOND: &[u8] = b"And the backup code is 1234.";

/// How the responder's bundle was made up.
#[derive(Clone, Copy, Debug)]
struct Shape {
    profile: Profile,
    one_time_prekey: bool,
    /// `hush-v2`: the last-resort PQ prekey instead of a one-time one.
    pq_last_resort: bool,
}

/// One recorded setup, what the attacker is handed, and the KEM secret it is not.
struct Recorded {
    recording: Recording,
    /// The initiator's second prekey envelope (same chain, counter 1).
    second_envelope: Vec<u8>,
    keys: BrokenKeys,
    kem_shared_secret: Option<Zeroizing<[u8; 32]>>,
}

fn padded(body: &[u8]) -> Zeroizing<Vec<u8>> {
    MessageContent {
        id: [9; 16],
        sent_at_ms: 1_767_225_600_000,
        content_type: ContentType::TEXT,
        body: body.to_vec(),
    }
    .to_padded_bytes()
    .unwrap()
}

fn body_of(plaintext: &[u8]) -> Vec<u8> {
    MessageContent::from_padded_bytes(plaintext)
        .unwrap()
        .body
        .clone()
}

/// Alice fetches Bob's bundle and sends two messages; Bob reads the first (the setup is real
/// and complete). Everything crosses as bytes.
fn record(shape: Shape, seed: u64) -> Recorded {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let alice = IdentityKeyPair::generate(&mut rng);
    let bob = IdentityKeyPair::generate(&mut rng);
    let mut prekeys = LocalPrekeys::new(&mut rng, &bob, NOW);
    let one_time_prekey = if shape.one_time_prekey {
        prekeys.generate_one_time(&mut rng, 1).first().copied()
    } else {
        None
    };
    let pq_prekey = match (shape.profile, shape.pq_last_resort) {
        (Profile::V1, _) => None,
        (Profile::V2, true) => prekeys.current_pq_last_resort(),
        (Profile::V2, false) => prekeys
            .generate_pq_one_time(&mut rng, &bob, 1, NOW)
            .into_iter()
            .next(),
    };
    assert_eq!(pq_prekey.is_some(), shape.profile == Profile::V2);
    let bundle_bytes = PrekeyBundle {
        identity_key: bob.public_key(),
        signed_prekey: prekeys.current_signed().unwrap(),
        one_time_prekey,
        pq_prekey,
    }
    .to_bytes();

    // Alice's side, with a recording RNG: her first 32-byte draw is the ephemeral key.
    let verified = PrekeyBundle::from_bytes(&bundle_bytes)
        .unwrap()
        .verify(shape.profile)
        .unwrap();
    let mut alice_rng = RecordingRng::new(ChaCha20Rng::seed_from_u64(seed ^ 0xA11CE));
    let mut session = Session::initiate(&mut alice_rng, &alice, &verified).unwrap();
    assert_eq!(session.profile(), shape.profile);
    let ephemeral = alice_rng.key(0).unwrap();
    let first = session.encrypt(&mut alice_rng, &padded(SECRET)).unwrap();
    let second = session.encrypt(&mut alice_rng, &padded(SECOND)).unwrap();
    let first_bytes = first.to_bytes();
    assert_eq!(
        first_bytes[0],
        if shape.profile == Profile::V2 { 2 } else { 1 }
    );

    // Bob's side: the first message opens for him.
    let Envelope::Prekey(pre) = Envelope::from_bytes(&first_bytes).unwrap() else {
        panic!("a first message is a prekey envelope");
    };
    let inbound = Session::respond(
        &mut rng,
        &bob,
        &alice.public_key(),
        shape.profile,
        &prekeys,
        &pre,
    )
    .unwrap();
    assert_eq!(body_of(&inbound.plaintext), SECRET);

    // What breaking X25519 yields: every X25519 private key of the setup.
    let keys = BrokenKeys {
        initiator_identity: alice.x25519_secret_bytes(),
        responder_identity: bob.x25519_secret_bytes(),
        signed_prekey: prekeys
            .signed_prekey(pre.x3dh.signed_prekey_id)
            .unwrap()
            .secret
            .to_bytes(),
        one_time_prekey: pre
            .x3dh
            .one_time_prekey_id
            .map(|id| prekeys.one_time_prekey(id).unwrap().secret.to_bytes()),
        ephemeral,
        kem_shared_secret: None,
    };
    // What it does not: the KEM secret, which only Bob's ML-KEM decapsulation key gives.
    let kem_shared_secret = pre.x3dh.pq.as_ref().map(|pq| {
        prekeys
            .pq_prekey(pq.prekey_id)
            .unwrap()
            .decapsulate(&pq.ciphertext)
    });
    Recorded {
        recording: Recording {
            bundle: bundle_bytes,
            first_envelope: first_bytes,
        },
        second_envelope: second.to_bytes(),
        keys,
        kem_shared_secret,
    }
}

const V1_SHAPES: [Shape; 2] = [
    Shape {
        profile: Profile::V1,
        one_time_prekey: true,
        pq_last_resort: false,
    },
    Shape {
        profile: Profile::V1,
        one_time_prekey: false,
        pq_last_resort: false,
    },
];

const V2_SHAPES: [Shape; 3] = [
    Shape {
        profile: Profile::V2,
        one_time_prekey: true,
        pq_last_resort: false,
    },
    Shape {
        profile: Profile::V2,
        one_time_prekey: false,
        pq_last_resort: false,
    },
    Shape {
        profile: Profile::V2,
        one_time_prekey: true,
        pq_last_resort: true,
    },
];

#[test]
fn an_attacker_who_breaks_x25519_reads_a_recorded_hush_v1_setup() {
    for (i, shape) in V1_SHAPES.into_iter().enumerate() {
        let rec = record(shape, 100 + i as u64);
        let read = read_first_message(&rec.recording, &rec.keys)
            .unwrap_or_else(|e| panic!("{shape:?}: {e}"));
        assert_eq!(read.version, 1);
        assert_eq!(read.derivation, "hush-v1 X3DH");
        assert_eq!(body_of(&read.plaintext), SECRET, "{shape:?}");
        // And the rest of the initiator's first chain (until a DH step it cannot follow
        // without the next ratchet secrets, which breaking X25519 would also give).
        let later = Recording {
            bundle: rec.recording.bundle.clone(),
            first_envelope: rec.second_envelope.clone(),
        };
        let read = read_first_message(&later, &rec.keys).unwrap();
        assert_eq!(body_of(&read.plaintext), SECOND, "{shape:?}");
    }
}

#[test]
fn the_same_attacker_cannot_read_a_recorded_hush_v2_setup() {
    for (i, shape) in V2_SHAPES.into_iter().enumerate() {
        let rec = record(shape, 200 + i as u64);
        // Every X25519 key is handed over and matches the recording (else WrongKey); the
        // attacker derives everything but the KEM secret, tries its best guesses, and fails.
        match read_first_message(&rec.recording, &rec.keys) {
            Err(QuantumAttackError::CannotOpen { version: 2, tried }) => assert_eq!(
                tried,
                [
                    "hush-v2 PQXDH without the KEM secret",
                    "hush-v2 PQXDH with an all-zero KEM secret",
                    "hush-v1 X3DH over the same DHs",
                ],
                "{shape:?}"
            ),
            Err(e) => panic!("{shape:?}: failed for another reason: {e}"),
            Ok(read) => panic!(
                "{shape:?}: a hush-v2 setup was read with X25519 keys only ({})",
                read.derivation
            ),
        }
        let later = Recording {
            bundle: rec.recording.bundle.clone(),
            first_envelope: rec.second_envelope.clone(),
        };
        assert!(
            matches!(
                read_first_message(&later, &rec.keys),
                Err(QuantumAttackError::CannotOpen { .. })
            ),
            "{shape:?}: the second message of the first chain was read"
        );
    }
}

#[test]
fn only_the_kem_secret_stands_between_that_attacker_and_a_hush_v2_setup() {
    for (i, shape) in V2_SHAPES.into_iter().enumerate() {
        let mut rec = record(shape, 300 + i as u64);
        rec.keys.kem_shared_secret = rec.kem_shared_secret.take();
        let read = read_first_message(&rec.recording, &rec.keys)
            .unwrap_or_else(|e| panic!("{shape:?}: {e}"));
        assert_eq!(read.version, 2);
        assert_eq!(read.derivation, "hush-v2 PQXDH with the KEM secret");
        assert_eq!(body_of(&read.plaintext), SECRET);
        // The KEM secret alone is not enough either: PQXDH is hybrid.
        rec.keys.signed_prekey = Zeroizing::new([0x42; 32]);
        assert_eq!(
            read_first_message(&rec.recording, &rec.keys).unwrap_err(),
            QuantumAttackError::WrongKey("signed prekey")
        );
    }
}

#[test]
fn keys_that_do_not_belong_to_the_recording_are_refused_rather_than_counted_as_a_failed_attack() {
    let rec = record(V1_SHAPES[0], 400);
    let other = record(V1_SHAPES[0], 401);
    let mut keys = BrokenKeys {
        ephemeral: other.keys.ephemeral.clone(),
        ..rec.keys
    };
    assert_eq!(
        read_first_message(&rec.recording, &keys).unwrap_err(),
        QuantumAttackError::WrongKey("ephemeral key")
    );
    keys.ephemeral = Zeroizing::new([0; 32]);
    keys.one_time_prekey = other.keys.one_time_prekey;
    assert!(matches!(
        read_first_message(&rec.recording, &keys),
        Err(QuantumAttackError::WrongKey(_))
    ));
    // A wrong identity key is not checkable against the wire (only its Ed25519 form is
    // there), so it shows as a failed derivation.
    let rec = record(V1_SHAPES[0], 402);
    let keys = BrokenKeys {
        initiator_identity: other.keys.initiator_identity.clone(),
        ..rec.keys
    };
    assert!(matches!(
        read_first_message(&rec.recording, &keys),
        Err(QuantumAttackError::CannotOpen { version: 1, .. })
    ));
}

/// Hands out one fixed 32-byte ratchet secret, then zero nonces: how an attacker who breaks
/// X25519 replays a party's DH ratchet step (the secret recovered from the public ratchet key
/// in that party's next header; the nonce does not affect the state).
struct RecoveredRatchetKey(Option<[u8; 32]>);

impl rand_chacha::rand_core::RngCore for RecoveredRatchetKey {
    fn next_u32(&mut self) -> u32 {
        0
    }
    fn next_u64(&mut self) -> u64 {
        0
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        match (dest.len(), self.0.take()) {
            (32, Some(key)) => dest.copy_from_slice(&key),
            (24, _) => dest.fill(0),
            (n, key) => panic!("unexpected draw of {n} bytes (key left: {})", key.is_some()),
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_chacha::rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
impl rand_chacha::rand_core::CryptoRng for RecoveredRatchetKey {}

/// The documented limit of `hush-v2` (docs/THREAT_MODEL.md): the Double Ratchet's DH steps are
/// X25519 only, so post-compromise healing holds against a classical attacker and not against
/// one who also breaks X25519. Bob's live `hush-v2` state is stolen; two full DH round trips
/// later the stolen copy reads nothing new (classical PCS), but an attacker who recovers Bob's
/// fresh ratchet secrets from their public keys replays Bob's steps and reads Alice again.
#[test]
fn post_compromise_healing_does_not_hold_against_an_attacker_who_breaks_x25519() {
    let mut rng = ChaCha20Rng::seed_from_u64(500);
    let alice_id = IdentityKeyPair::generate(&mut rng);
    let bob_id = IdentityKeyPair::generate(&mut rng);
    let mut prekeys = LocalPrekeys::new(&mut rng, &bob_id, NOW);
    let bundle = PrekeyBundle {
        identity_key: bob_id.public_key(),
        signed_prekey: prekeys.current_signed().unwrap(),
        one_time_prekey: prekeys.generate_one_time(&mut rng, 1).first().copied(),
        pq_prekey: prekeys
            .generate_pq_one_time(&mut rng, &bob_id, 1, NOW)
            .into_iter()
            .next(),
    }
    .verify(Profile::V2)
    .unwrap();
    let mut alice = Session::initiate(&mut rng, &alice_id, &bundle).unwrap();
    let Envelope::Prekey(first) = alice.encrypt(&mut rng, &padded(SECRET)).unwrap() else {
        panic!("a first message is a prekey envelope");
    };
    let mut bob = Session::respond(
        &mut rng,
        &bob_id,
        &alice_id.public_key(),
        Profile::V2,
        &prekeys,
        &first,
    )
    .unwrap()
    .session;
    assert_eq!(bob.profile(), Profile::V2);

    // The theft: Bob's live state, then two DH round trips, each with a fresh Bob ratchet key.
    let stolen = bob.pickle();
    let mut bob_ratchet_secrets = Vec::new();
    let mut alice_latest = Vec::new();
    for round in 0..2u8 {
        let mut bob_rng = RecordingRng::new(ChaCha20Rng::seed_from_u64(600 + u64::from(round)));
        let reply = bob.encrypt(&mut bob_rng, &padded(b"reply")).unwrap();
        // Bob's first draw is the new ratchet secret; its public key is in the header.
        bob_ratchet_secrets.push(*bob_rng.key(0).unwrap());
        alice.decrypt(&mut rng, &reply).unwrap();
        let text = format!("after round trip {}", round + 1);
        let message = alice.encrypt(&mut rng, &padded(text.as_bytes())).unwrap();
        assert_eq!(
            body_of(&bob.decrypt(&mut rng, &message).unwrap()),
            text.as_bytes()
        );
        alice_latest.push((message, text));
    }
    let (last, last_text) = alice_latest.last().unwrap();

    // Classical attacker: the stolen copy reads nothing after the round trips.
    let mut classical = Session::from_pickle(&stolen).unwrap();
    assert!(classical.decrypt(&mut rng, last).is_err());

    // Quantum attacker: replays Bob's two sending steps with the recovered secrets, reading
    // Alice's message after each.
    let mut quantum = Session::from_pickle(&stolen).unwrap();
    for (secret, (message, text)) in bob_ratchet_secrets.iter().zip(&alice_latest) {
        quantum
            .encrypt(&mut RecoveredRatchetKey(Some(*secret)), b"replayed step")
            .unwrap();
        let read = quantum.decrypt(&mut rng, message).unwrap();
        assert_eq!(body_of(&read), text.as_bytes());
    }
    assert_eq!(last_text, "after round trip 2");
}
