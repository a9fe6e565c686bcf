//! Forward secrecy and post-compromise security of hush-v1 sessions, seen from the attacker.
//!
//! The attacker records every envelope that crosses the relay, then steals Bob's live session
//! state: a `SessionPickle` copy, exactly what an unlocked, compromised device holds (root key,
//! ratchet secret, chain keys, skipped message keys). Each test asserts both sides of a
//! boundary:
//!
//! * **Forward secrecy**: nothing recorded before the theft decrypts with the stolen state, not
//!   even after the attacker edits the state to forget which messages it has seen. The honest
//!   limit is what the state holds at the moment of the theft: the current receiving chain
//!   (Alice's messages until she has seen Bob's next ratchet key), the current sending chain
//!   (Bob's messages until his next DH step), and the skipped keys of messages still in flight.
//! * **Post-compromise security**: after one DH round trip (Bob replies under a fresh ratchet
//!   key, Alice replies after reading it) the stolen state, advanced or not, decrypts nothing
//!   new.
//! * **Injection**: forgeries built from the stolen state are accepted by Bob inside that same
//!   window only, and rejected with Bob's state unchanged after the round trip, except in the
//!   slots of old-chain messages that never reached Bob (shown explicitly).
//!
//! Only the public API is used: `Session`, `SessionPickle` (read and edited through serde, as an
//! attacker who copied the bytes would), `Envelope`, and the public primitives to apply the
//! PROTOCOL.md §5 key derivations to stolen chain keys.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use hush_proto::primitives::{aead_open, aead_seal, hkdf_sha256, hmac_sha256, NONCE_LEN};
use hush_proto::ratchet::MESSAGE_KDF_INFO;
use hush_proto::{
    DecryptError, Envelope, Header, IdentityKeyPair, LocalPrekeys, PrekeyBundle, RatchetMessage,
    Session, SessionPickle, X25519PublicKey, X25519Secret,
};
use rand_chacha::rand_core::{RngCore, SeedableRng};
use rand_chacha::ChaCha20Rng;
use serde_json::Value;

// ---- the honest parties -----------------------------------------------------------------------

/// One envelope as the attacker recorded it, with the plaintext for the assertions.
#[derive(Clone)]
struct Recorded {
    from_alice: bool,
    wire: Vec<u8>,
    text: String,
}

impl Recorded {
    fn envelope(&self) -> Envelope {
        Envelope::from_bytes(&self.wire).unwrap()
    }

    fn ratchet_key(&self) -> X25519PublicKey {
        self.envelope().ratchet_message().header.ratchet_key
    }
}

/// Alice and Bob with established sessions, and the attacker's recording of the wire.
struct Conversation {
    rng: ChaCha20Rng,
    alice: Session,
    bob: Session,
    /// Every envelope that crossed the relay, in order.
    recorded: Vec<Recorded>,
}

impl Conversation {
    /// Bob publishes a bundle, Alice initiates and sends "hello", Bob responds.
    fn new(seed: u64) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let alice_identity = IdentityKeyPair::generate(&mut rng);
        let bob_identity = IdentityKeyPair::generate(&mut rng);
        let mut bob_prekeys = LocalPrekeys::new(&mut rng, &bob_identity, 1_700_000_000);
        let one_time = bob_prekeys.generate_one_time(&mut rng, 1);
        let bundle = PrekeyBundle {
            identity_key: bob_identity.public_key(),
            signed_prekey: bob_prekeys.current_signed().unwrap(),
            one_time_prekey: one_time.first().copied(),
            pq_prekey: None,
        }
        .verify(hush_proto::Profile::V1)
        .unwrap();
        let mut alice = Session::initiate(&mut rng, &alice_identity, &bundle).unwrap();
        let first = alice.encrypt(&mut rng, b"hello").unwrap();
        let wire = first.to_bytes();
        let Envelope::Prekey(pre) = Envelope::from_bytes(&wire).unwrap() else {
            panic!("the first message must be a prekey envelope");
        };
        let inbound = Session::respond(
            &mut rng,
            &bob_identity,
            &alice_identity.public_key(),
            hush_proto::Profile::V1,
            &bob_prekeys,
            &pre,
        )
        .unwrap();
        assert_eq!(&inbound.plaintext[..], b"hello");
        Self {
            rng,
            alice,
            bob: inbound.session,
            recorded: vec![Recorded {
                from_alice: true,
                wire,
                text: "hello".into(),
            }],
        }
    }

    /// Encrypt and put on the wire (recorded), not yet delivered.
    fn send(&mut self, from_alice: bool, text: &str) -> Recorded {
        let sender = if from_alice {
            &mut self.alice
        } else {
            &mut self.bob
        };
        let envelope = sender.encrypt(&mut self.rng, text.as_bytes()).unwrap();
        let recorded = Recorded {
            from_alice,
            wire: envelope.to_bytes(),
            text: text.into(),
        };
        self.recorded.push(recorded.clone());
        recorded
    }

    /// The recipient decrypts what arrived and must read the original text.
    fn deliver(&mut self, r: &Recorded) {
        let recipient = if r.from_alice {
            &mut self.bob
        } else {
            &mut self.alice
        };
        let plaintext = recipient.decrypt(&mut self.rng, &r.envelope()).unwrap();
        assert_eq!(&plaintext[..], r.text.as_bytes());
    }

    fn alice_to_bob(&mut self, text: &str) -> Recorded {
        let r = self.send(true, text);
        self.deliver(&r);
        r
    }

    fn bob_to_alice(&mut self, text: &str) -> Recorded {
        let r = self.send(false, text);
        self.deliver(&r);
        r
    }

    /// Several DH round trips, two messages each way per round.
    fn chat(&mut self, rounds: u32) {
        for round in 0..rounds {
            self.alice_to_bob(&format!("alice round {round} message 0"));
            self.alice_to_bob(&format!("alice round {round} message 1"));
            self.bob_to_alice(&format!("bob round {round} message 0"));
            self.bob_to_alice(&format!("bob round {round} message 1"));
        }
    }
}

// ---- the attacker ----------------------------------------------------------------------------

/// Why the attacker could not open a message with a stolen chain key.
#[derive(Debug, PartialEq, Eq)]
enum AttackFailed {
    /// The stolen state has no sending chain (Bob's next send draws a fresh ratchet key).
    NoSendingChain,
    /// The message precedes the stolen chain position: its key was deleted before the theft.
    KeyAlreadyDeleted,
    /// The derived key does not open the message.
    Authentication,
}

/// A copy of Bob's session state taken at one instant.
struct Stolen {
    pickle: SessionPickle,
}

impl Stolen {
    fn of(session: &Session) -> Self {
        Self {
            pickle: session.pickle(),
        }
    }

    /// A fresh session restored from the copy.
    fn session(&self) -> Session {
        Session::from_pickle(&self.pickle).unwrap()
    }

    /// Decrypt a recorded envelope with a fresh restore of the stolen state.
    fn read(&self, r: &Recorded) -> Result<String, DecryptError> {
        let mut session = self.session();
        let mut rng = ChaCha20Rng::seed_from_u64(0);
        session
            .decrypt(&mut rng, &r.envelope())
            .map(|p| String::from_utf8(p.to_vec()).unwrap())
    }

    /// The raw pickle as an attacker reads the copied bytes.
    fn fields(&self) -> Value {
        serde_json::to_value(&self.pickle).unwrap()
    }

    /// X3DH associated data (IK_initiator ‖ IK_responder) of the stolen session.
    fn x3dh_ad(&self) -> Vec<u8> {
        let v = self.fields();
        let local = bytes32(&v["local_identity"]).unwrap();
        let remote = bytes32(&v["remote_identity"]).unwrap();
        if v["is_initiator"].as_bool().unwrap() {
            [local, remote].concat()
        } else {
            [remote, local].concat()
        }
    }

    /// Open one of Bob's outgoing messages with the stolen *sending* chain key, deriving the
    /// message key at the message's counter (PROTOCOL.md §5).
    fn read_bobs_outgoing(&self, r: &Recorded) -> Result<String, AttackFailed> {
        let v = self.fields();
        let chain = bytes32(&v["sending_chain_key"]).ok_or(AttackFailed::NoSendingChain)?;
        let position = counter(&v["send_counter"]);
        let envelope = r.envelope();
        let message = envelope.ratchet_message();
        if message.header.counter < position {
            return Err(AttackFailed::KeyAlreadyDeleted);
        }
        let key = message_key_at(chain, position, message.header.counter);
        let ad = [self.x3dh_ad(), message.header.to_bytes().to_vec()].concat();
        open(&key, &message.ciphertext, &ad)
            .map(|p| String::from_utf8(p).unwrap())
            .ok_or(AttackFailed::Authentication)
    }

    /// Forge a message "from Alice" in Alice's current chain as the stolen state knows it, at
    /// `ahead` positions past the next counter Bob expects.
    fn forge_in_alices_current_chain(&self, ahead: u32, text: &str) -> Envelope {
        let v = self.fields();
        let chain = bytes32(&v["receiving_chain_key"]).unwrap();
        let position = counter(&v["receive_counter"]);
        let header = Header {
            ratchet_key: X25519PublicKey::from_bytes(bytes32(&v["remote_ratchet_key"]).unwrap()),
            previous_chain_length: 0,
            counter: position + ahead,
        };
        let key = message_key_at(chain, position, header.counter);
        let ad = [self.x3dh_ad(), header.to_bytes().to_vec()].concat();
        Envelope::Message(RatchetMessage {
            header,
            ciphertext: seal(&key, text.as_bytes(), &ad),
        })
    }

    /// Forge a message "from Alice" that starts a new chain under an attacker-chosen ratchet
    /// key: the stolen root key and Bob's stolen ratchet secret give the same DH output Bob
    /// will compute. Built as a mirror session (Alice's role, Bob's root key, Bob's ratchet
    /// public key as the peer's), so `Session::encrypt` does the DH step and the sealing.
    fn forge_with_fresh_ratchet_key(&self, text: &str) -> Envelope {
        let mut v = self.fields();
        let bob_ratchet =
            X25519Secret::from_bytes(bytes32(&v["self_ratchet_secret"]).unwrap()).public_key();
        let local = v["local_identity"].clone();
        let remote = v["remote_identity"].clone();
        let initiator = v["is_initiator"].as_bool().unwrap();
        v["local_identity"] = remote;
        v["remote_identity"] = local;
        v["is_initiator"] = Value::Bool(!initiator);
        v["pending_prekey"] = Value::Bool(false);
        v["remote_ratchet_key"] = serde_json::to_value(bob_ratchet.as_bytes()).unwrap();
        v["sending_chain_key"] = Value::Null;
        v["receiving_chain_key"] = Value::Null;
        v["send_counter"] = 0.into();
        v["receive_counter"] = 0.into();
        v["previous_send_count"] = 0.into();
        v["skipped"] = Value::Array(Vec::new());
        v["previous_remote_keys"] = Value::Array(Vec::new());
        let pickle: SessionPickle = serde_json::from_value(v).unwrap();
        let mut mirror = Session::from_pickle(&pickle).unwrap();
        let mut rng = ChaCha20Rng::seed_from_u64(0xbad);
        mirror.encrypt(&mut rng, text.as_bytes()).unwrap()
    }
}

fn bytes32(v: &Value) -> Option<[u8; 32]> {
    if v.is_null() {
        return None;
    }
    Some(serde_json::from_value(v.clone()).unwrap())
}

fn counter(v: &Value) -> u32 {
    u32::try_from(v.as_u64().unwrap()).unwrap()
}

/// KDF_CK from `position` to `target`: the message key at `target`.
fn message_key_at(mut chain: [u8; 32], position: u32, target: u32) -> [u8; 32] {
    assert!(target >= position);
    for _ in position..target {
        chain = *hmac_sha256(&chain, &[0x02]);
    }
    *hmac_sha256(&chain, &[0x01])
}

fn aead_key(message_key: &[u8; 32]) -> [u8; 32] {
    let mut key = [0u8; 32];
    hkdf_sha256(&[0u8; 32], message_key, MESSAGE_KDF_INFO, &mut key).unwrap();
    key
}

fn seal(message_key: &[u8; 32], plaintext: &[u8], ad: &[u8]) -> Vec<u8> {
    let mut nonce = [0u8; NONCE_LEN];
    ChaCha20Rng::seed_from_u64(0xf00).fill_bytes(&mut nonce);
    let sealed = aead_seal(&aead_key(message_key), &nonce, plaintext, ad).unwrap();
    [nonce.to_vec(), sealed].concat()
}

fn open(message_key: &[u8; 32], ciphertext: &[u8], ad: &[u8]) -> Option<Vec<u8>> {
    let (nonce, sealed) = ciphertext.split_at(NONCE_LEN);
    let nonce: [u8; NONCE_LEN] = nonce.try_into().unwrap();
    aead_open(&aead_key(message_key), &nonce, sealed, ad)
        .ok()
        .map(|p| p.to_vec())
}

fn read_with(session: &mut Session, r: &Recorded) -> Result<String, DecryptError> {
    let mut rng = ChaCha20Rng::seed_from_u64(0);
    session
        .decrypt(&mut rng, &r.envelope())
        .map(|p| String::from_utf8(p.to_vec()).unwrap())
}

fn bob_reads(bob: &Session, envelope: &Envelope) -> Result<String, DecryptError> {
    let mut bob = bob.clone();
    let mut rng = ChaCha20Rng::seed_from_u64(0);
    bob.decrypt(&mut rng, envelope)
        .map(|p| String::from_utf8(p.to_vec()).unwrap())
}

// ---- forward secrecy -------------------------------------------------------------------------

#[test]
fn a_state_stolen_now_cannot_decrypt_messages_captured_earlier() {
    let mut c = Conversation::new(1);
    c.chat(4);
    c.alice_to_bob("last message before the theft");
    let earlier = c.recorded.clone();
    assert_eq!(earlier.len(), 1 + 4 * 4 + 1);

    let stolen = Stolen::of(&c.bob);
    assert_eq!(
        stolen.session().skipped_keys(),
        0,
        "nothing was in flight, so no skipped keys were stolen"
    );
    for r in &earlier {
        let result = stolen.read(r);
        if r.from_alice {
            // The key for that position was used and deleted; the state knows only that it
            // has been there (a replay), not the key.
            assert!(
                matches!(result, Err(DecryptError::Duplicate { .. })),
                "{:?}: {result:?}",
                r.text
            );
        } else {
            assert_eq!(result, Err(DecryptError::Authentication), "{:?}", r.text);
            // Bob's own earlier messages: their sending chain was replaced long ago.
            assert_eq!(
                stolen.read_bobs_outgoing(r),
                Err(AttackFailed::NoSendingChain),
                "{:?}",
                r.text
            );
        }
    }

    // The honest limit: Alice's messages sent after the theft, until the next DH round trip,
    // decrypt with the stolen state.
    let mut attacker = stolen.session();
    for i in 0..3 {
        let r = c.alice_to_bob(&format!("after the theft {i}"));
        assert_eq!(read_with(&mut attacker, &r), Ok(r.text.clone()));
        assert_eq!(stolen.read(&r), Ok(r.text.clone()));
    }
    // Still none of the earlier ones, with the advanced copy either.
    for r in earlier.iter().filter(|r| r.from_alice) {
        assert!(read_with(&mut attacker, r).is_err(), "{:?}", r.text);
    }
    // One round trip later it is over.
    c.bob_to_alice("bob replies under a fresh ratchet key");
    let r = c.alice_to_bob("alice replies after reading it");
    assert_eq!(
        read_with(&mut attacker, &r),
        Err(DecryptError::Authentication)
    );
    assert_eq!(stolen.read(&r), Err(DecryptError::Authentication));
}

#[test]
fn erasing_the_stolen_states_replay_memory_does_not_bring_old_keys_back() {
    let mut c = Conversation::new(2);
    c.chat(3);
    c.alice_to_bob("current chain 0");
    c.alice_to_bob("current chain 1");
    let earlier = c.recorded.clone();

    // The attacker rewinds the counters and forgets every remembered ratchet key, so the
    // session tries to derive keys instead of answering "duplicate".
    let mut v = Stolen::of(&c.bob).fields();
    v["receive_counter"] = 0.into();
    v["previous_remote_keys"] = Value::Array(Vec::new());
    v["skipped"] = Value::Array(Vec::new());
    let edited = Stolen {
        pickle: serde_json::from_value(v).unwrap(),
    };
    let mut tried = 0;
    for r in earlier.iter().filter(|r| r.from_alice) {
        // The chain and root keys only move forward: what they derive now is not an old key.
        assert_eq!(
            edited.read(r),
            Err(DecryptError::Authentication),
            "{:?}",
            r.text
        );
        tried += 1;
    }
    assert_eq!(tried, 1 + 3 * 2 + 2);
}

#[test]
fn a_state_stolen_while_messages_are_in_flight_holds_their_skipped_keys_until_they_arrive() {
    let mut c = Conversation::new(3);
    c.chat(2);
    let late0 = c.send(true, "delayed 0");
    let late1 = c.send(true, "delayed 1");
    c.alice_to_bob("overtakes them");
    assert_eq!(c.bob.skipped_keys(), 2);

    // Stolen now: the keys Bob keeps for the two missing messages are in the copy.
    let stolen_now = Stolen::of(&c.bob);
    assert_eq!(stolen_now.read(&late0), Ok(late0.text.clone()));
    assert_eq!(stolen_now.read(&late1), Ok(late1.text.clone()));

    // Once they arrive the keys are deleted: a copy stolen afterwards has none of them.
    c.deliver(&late1);
    c.deliver(&late0);
    assert_eq!(c.bob.skipped_keys(), 0);
    let stolen_later = Stolen::of(&c.bob);
    assert!(matches!(
        stolen_later.read(&late0),
        Err(DecryptError::Duplicate { .. })
    ));
    assert!(matches!(
        stolen_later.read(&late1),
        Err(DecryptError::Duplicate { .. })
    ));
}

// ---- post-compromise security ------------------------------------------------------------------

#[test]
fn after_one_dh_round_trip_a_stolen_state_decrypts_nothing_new() {
    let mut c = Conversation::new(4);
    c.chat(3);
    c.alice_to_bob("before the theft");
    // T: Bob's state is copied. The attacker keeps advancing its copy with what it can read.
    let stolen = Stolen::of(&c.bob);
    let mut attacker = stolen.session();

    // Side 1 of the boundary: Alice's current chain.
    let m1 = c.alice_to_bob("same chain, after the theft");
    assert_eq!(read_with(&mut attacker, &m1), Ok(m1.text.clone()));
    // Bob replies: his send draws a fresh ratchet key the stolen state does not contain.
    let reply = c.send(false, "bob's reply under a fresh ratchet key");
    assert_ne!(reply.ratchet_key(), m1.ratchet_key());
    assert_eq!(
        stolen.read_bobs_outgoing(&reply),
        Err(AttackFailed::NoSendingChain)
    );
    // Alice writes again before the reply reaches her: still her old chain, still readable.
    let m2 = c.send(true, "sent before alice has read bob's reply");
    c.deliver(&m2);
    assert_eq!(m2.ratchet_key(), m1.ratchet_key());
    assert_eq!(read_with(&mut attacker, &m2), Ok(m2.text.clone()));
    assert_eq!(stolen.read(&m2), Ok(m2.text.clone()));

    // Side 2: Alice reads Bob's reply, so her next message ratchets onto his fresh key.
    c.deliver(&reply);
    let m3 = c.alice_to_bob("first message after alice read bob's reply");
    assert_ne!(m3.ratchet_key(), m2.ratchet_key());
    assert_eq!(
        read_with(&mut attacker, &m3),
        Err(DecryptError::Authentication)
    );
    assert_eq!(stolen.read(&m3), Err(DecryptError::Authentication));

    // And nothing after that either, in either direction, over more round trips.
    let from = c.recorded.len();
    c.alice_to_bob("later 0");
    c.chat(3);
    for r in &c.recorded[from..] {
        if r.from_alice {
            assert_eq!(
                read_with(&mut attacker, r),
                Err(DecryptError::Authentication),
                "{:?}",
                r.text
            );
            assert_eq!(stolen.read(r), Err(DecryptError::Authentication));
        } else {
            assert_eq!(
                stolen.read_bobs_outgoing(r),
                Err(AttackFailed::NoSendingChain)
            );
        }
    }
}

#[test]
fn a_state_stolen_mid_sending_chain_reads_bobs_messages_only_until_his_next_dh_step() {
    let mut c = Conversation::new(5);
    c.chat(2);
    c.alice_to_bob("alice");
    let b0 = c.bob_to_alice("bob 0, before the theft");
    // T: Bob is in the middle of his sending chain.
    let stolen = Stolen::of(&c.bob);
    assert_eq!(
        stolen.read_bobs_outgoing(&b0),
        Err(AttackFailed::KeyAlreadyDeleted)
    );
    let b1 = c.bob_to_alice("bob 1, same chain after the theft");
    let b2 = c.bob_to_alice("bob 2, same chain after the theft");
    assert_eq!(stolen.read_bobs_outgoing(&b2), Ok(b2.text.clone()));
    assert_eq!(stolen.read_bobs_outgoing(&b1), Ok(b1.text.clone()));

    // Alice replies; Bob's next message starts a chain from a fresh ratchet key.
    c.alice_to_bob("alice replies");
    let new_chain: Vec<_> = (3..7)
        .map(|i| c.bob_to_alice(&format!("bob {i}, after his DH step")))
        .collect();
    for r in &new_chain {
        assert_ne!(r.ratchet_key(), b2.ratchet_key());
        let counter = r.envelope().ratchet_message().header.counter;
        let expected = if counter < 1 {
            // The stolen chain was already past position 0.
            AttackFailed::KeyAlreadyDeleted
        } else {
            AttackFailed::Authentication
        };
        assert_eq!(stolen.read_bobs_outgoing(r), Err(expected), "{:?}", r.text);
    }
}

// ---- injection -------------------------------------------------------------------------------

#[test]
fn a_stolen_state_cannot_inject_messages_that_bob_accepts_after_the_round_trip() {
    let mut c = Conversation::new(6);
    c.chat(3);
    c.alice_to_bob("before the theft");
    let stolen = Stolen::of(&c.bob);
    // The attacker uses its copy to decrypt, then forges from the advanced copy.
    let mut attacker = stolen.session();
    let read = c.alice_to_bob("read by the attacker");
    assert_eq!(read_with(&mut attacker, &read), Ok(read.text.clone()));
    let advanced = Stolen::of(&attacker);

    // Inside the window (honest limit), both kinds of forgery are accepted (shown on copies of
    // Bob, so the real conversation is not disturbed).
    for state in [&stolen, &advanced] {
        let same_chain = state.forge_in_alices_current_chain(3, "forged in alice's chain");
        assert_eq!(
            bob_reads(&c.bob, &same_chain),
            Ok("forged in alice's chain".into())
        );
        let fresh = state.forge_with_fresh_ratchet_key("forged with a fresh ratchet key");
        assert_eq!(
            bob_reads(&c.bob, &fresh),
            Ok("forged with a fresh ratchet key".into())
        );
    }

    // Bob replies: his ratchet secret and root key move on, so a fresh-key forgery fails at
    // once; Alice's current chain stays open until her reply arrives.
    let reply = c.send(false, "bob replies");
    assert_eq!(
        bob_reads(&c.bob, &advanced.forge_with_fresh_ratchet_key("too late")),
        Err(DecryptError::Authentication)
    );
    assert_eq!(
        bob_reads(
            &c.bob,
            &advanced.forge_in_alices_current_chain(0, "still open")
        ),
        Ok("still open".into())
    );

    // Alice reads the reply and answers: the round trip is complete.
    c.deliver(&reply);
    c.alice_to_bob("alice answers under a fresh ratchet key");
    assert_eq!(c.bob.skipped_keys(), 0);
    let before = c.bob.pickle();
    for state in [&stolen, &advanced] {
        for ahead in 0..4 {
            let forged = state.forge_in_alices_current_chain(ahead, "forged after");
            assert!(
                matches!(
                    c.bob.decrypt(&mut c.rng, &forged),
                    Err(DecryptError::Duplicate { .. })
                ),
                "forgery {ahead} ahead in the old chain"
            );
        }
        let forged = state.forge_with_fresh_ratchet_key("forged after");
        assert_eq!(
            c.bob.decrypt(&mut c.rng, &forged),
            Err(DecryptError::Authentication)
        );
        // Nor does replaying what the attacker read work.
        assert!(matches!(
            c.bob.decrypt(&mut c.rng, &read.envelope()),
            Err(DecryptError::Duplicate { .. })
        ));
        assert!(c.bob.pickle() == before, "a rejection changed Bob's state");
    }
    // The genuine conversation goes on.
    c.alice_to_bob("genuine, after the attacks");
    c.bob_to_alice("genuine reply");
}

#[test]
fn a_forgery_can_take_the_slot_of_an_old_chain_message_that_never_reached_bob() {
    // The honest limit of the injection boundary: keys Bob stores for messages still missing
    // from the compromised chain were derivable from the stolen chain key.
    let mut c = Conversation::new(7);
    c.chat(2);
    c.alice_to_bob("before the theft");
    let stolen = Stolen::of(&c.bob);
    let withheld = c.send(true, "withheld by the relay");
    c.bob_to_alice("bob replies");
    c.alice_to_bob("alice answers; her header says one message of the old chain is missing");
    assert_eq!(c.bob.skipped_keys(), 1);

    let forged = stolen.forge_in_alices_current_chain(0, "substituted");
    assert_eq!(
        forged.ratchet_message().header.counter,
        withheld.envelope().ratchet_message().header.counter
    );
    assert_eq!(bob_reads(&c.bob, &forged), Ok("substituted".into()));
    // Every other slot of that chain is closed.
    for ahead in 1..4 {
        let forged = stolen.forge_in_alices_current_chain(ahead, "forged");
        assert!(matches!(
            bob_reads(&c.bob, &forged),
            Err(DecryptError::Duplicate { .. })
        ));
    }
    // Once the genuine message arrives, the slot is gone too.
    c.deliver(&withheld);
    assert!(matches!(
        bob_reads(&c.bob, &stolen.forge_in_alices_current_chain(0, "late")),
        Err(DecryptError::Duplicate { .. })
    ));
}
