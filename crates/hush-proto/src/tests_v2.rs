//! Session-level tests of profile `hush-v2` (PQXDH with ML-KEM-768): setup with one-time and
//! last-resort PQ prekeys, what a relay or network attacker can do to the PQ parts of bundles
//! and first messages, downgrade refusal, prekey lifecycle, pickles, sizes, and the random
//! interleavings of `tests.rs` over `hush-v2` sessions.

use proptest::prelude::*;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

use crate::envelope::{ENVELOPE_VERSION, ENVELOPE_VERSION_PQ, PQ_HEADER_LEN};
use crate::pq::{
    pq_prekey_signed_bytes, PqPrekeyPair, KEM_CIPHERTEXT_LEN, KEM_ENCAPSULATION_KEY_LEN,
};
use crate::prekeys::PQ_LAST_RESORT_KEPT;
use crate::tests::{bundle_of, party, roundtrip, Party};
use crate::tests_sim::{op, Op, Sim};
use crate::x3dh::PrekeyStore;
use crate::*;

const NOW: u64 = 1_700_000_000;

/// Which PQ prekey Bob's bundle carries.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Pq {
    OneTime,
    LastResort,
}

/// A party holding `one_time` classical and `pq_one_time` PQ one-time prekeys (and, as every
/// store made by `LocalPrekeys::new`, a last-resort PQ prekey).
fn v2_party(rng: &mut ChaCha20Rng, one_time: usize, pq_one_time: usize) -> Party {
    let mut p = party(rng, one_time);
    p.prekeys
        .generate_pq_one_time(rng, &p.identity, pq_one_time, NOW);
    p
}

/// Bob's `hush-v2` bundle as the relay would serve it.
fn v2_bundle(p: &Party, with_opk: bool, pq: Pq) -> PrekeyBundle {
    let mut bundle = bundle_of(p, with_opk);
    bundle.pq_prekey = match pq {
        Pq::OneTime => p
            .prekeys
            .pq_one_time
            .values()
            .next()
            .map(PqPrekeyPair::public),
        Pq::LastResort => p.prekeys.current_pq_last_resort(),
    };
    assert!(bundle.pq_prekey.is_some());
    bundle
}

/// Alice starts a session from `bundle` and writes `text`: her session and the first message.
fn first_message(
    rng: &mut ChaCha20Rng,
    alice: &Party,
    bundle: &PrekeyBundle,
    required: Profile,
    text: &[u8],
) -> (Session, PrekeyMessage) {
    let verified = bundle.clone().verify(required).unwrap();
    let mut session = Session::initiate(rng, &alice.identity, &verified).unwrap();
    let Envelope::Prekey(pre) = session.encrypt(rng, text).unwrap() else {
        panic!("a first message is a prekey envelope");
    };
    (session, pre)
}

fn respond(
    rng: &mut ChaCha20Rng,
    bob: &Party,
    alice: &Party,
    required: Profile,
    pre: &PrekeyMessage,
) -> Result<InboundSession, SessionError> {
    Session::respond(
        rng,
        &bob.identity,
        &alice.identity.public_key(),
        required,
        &bob.prekeys,
        pre,
    )
}

/// Respond and commit as a client does: store the session and delete the one-time keys used.
fn respond_and_commit(
    rng: &mut ChaCha20Rng,
    bob: &mut Party,
    alice: &Party,
    pre: &PrekeyMessage,
) -> Result<InboundSession, SessionError> {
    let inbound = respond(rng, bob, alice, Profile::V2, pre)?;
    if let Some(id) = inbound.used_one_time_prekey {
        bob.prekeys.remove_one_time(id);
    }
    if let Some(id) = inbound.used_one_time_pq_prekey {
        assert!(bob.prekeys.remove_pq_one_time(id));
    }
    Ok(inbound)
}

#[test]
fn v2_sessions_set_up_with_and_without_opk_over_one_time_and_last_resort_pq_prekeys() {
    let mut rng = ChaCha20Rng::seed_from_u64(200);
    for with_opk in [true, false] {
        for pq in [Pq::OneTime, Pq::LastResort] {
            let alice = v2_party(&mut rng, 0, 0);
            let mut bob = v2_party(&mut rng, 2, 2);
            let bundle = v2_bundle(&bob, with_opk, pq);
            let pq_id = bundle.pq_prekey.as_ref().unwrap().id;
            assert_eq!(bundle.profile(), Profile::V2);
            let (mut a, pre) = first_message(&mut rng, &alice, &bundle, Profile::V2, b"hi");
            assert_eq!(a.profile(), Profile::V2);
            assert_eq!(pre.x3dh.pq.as_ref().map(|p| p.prekey_id), Some(pq_id));
            let inbound = respond_and_commit(&mut rng, &mut bob, &alice, &pre).unwrap();
            assert_eq!(&inbound.plaintext[..], b"hi");
            assert_eq!(inbound.used_one_time_prekey.is_some(), with_opk);
            assert_eq!(
                inbound.used_one_time_pq_prekey,
                (pq == Pq::OneTime).then_some(pq_id),
                "{pq:?}: only a one-time PQ prekey is reported for deletion"
            );
            // A one-time PQ prekey is gone after the commit; the last-resort one stays.
            assert_eq!(bob.prekeys.pq_prekey(pq_id).is_some(), pq == Pq::LastResort);
            let mut b = inbound.session;
            assert_eq!(b.profile(), Profile::V2);
            for round in 0..4 {
                roundtrip(&mut rng, &mut b, &mut a, format!("b{round}").as_bytes());
                roundtrip(&mut rng, &mut a, &mut b, format!("a{round}").as_bytes());
            }
        }
    }
}

#[test]
fn kem_ciphertext_bit_flips_refuse_the_first_message_change_nothing_and_the_genuine_opens() {
    let mut rng = ChaCha20Rng::seed_from_u64(201);
    let alice = v2_party(&mut rng, 0, 0);
    let mut bob = v2_party(&mut rng, 1, 1);
    let bundle = v2_bundle(&bob, true, Pq::OneTime);
    let (_, pre) = first_message(&mut rng, &alice, &bundle, Profile::V2, b"genuine");
    let wire = Envelope::Prekey(pre.clone()).to_bytes();
    let ct_offset = 2 + 32 + 32 + 4 + 1 + 4 + 4;
    assert_eq!(
        &wire[ct_offset..ct_offset + KEM_CIPHERTEXT_LEN],
        &pre.x3dh.pq.as_ref().unwrap().ciphertext[..]
    );
    let prekeys_before = bob.prekeys.pickle();
    for byte in [0, KEM_CIPHERTEXT_LEN / 2, KEM_CIPHERTEXT_LEN - 1] {
        for bit in [0, 7] {
            // As a network attacker does it: on the wire bytes.
            let mut bad = wire.clone();
            bad[ct_offset + byte] ^= 1 << bit;
            let Ok(Envelope::Prekey(bad)) = Envelope::from_bytes(&bad) else {
                panic!("a flipped KEM ciphertext still decodes");
            };
            // Implicit rejection: an unrelated KEM secret, so the first message does not open.
            match respond_and_commit(&mut rng, &mut bob, &alice, &bad) {
                Err(SessionError::InitialMessage(_)) => {}
                other => panic!("byte {byte} bit {bit}: {other:?}"),
            }
            assert!(
                bob.prekeys.pickle() == prekeys_before,
                "byte {byte} bit {bit}: a refused first message changed the prekeys"
            );
        }
    }
    let inbound = respond_and_commit(&mut rng, &mut bob, &alice, &pre).unwrap();
    assert_eq!(&inbound.plaintext[..], b"genuine");
}

#[test]
fn substituted_pq_prekeys_in_a_bundle_are_refused() {
    let mut rng = ChaCha20Rng::seed_from_u64(202);
    let alice = v2_party(&mut rng, 0, 0);
    let bob = v2_party(&mut rng, 1, 1);
    let mallory = IdentityKeyPair::generate(&mut rng);
    let genuine = v2_bundle(&bob, true, Pq::OneTime);
    let pq = genuine.pq_prekey.clone().unwrap();
    let refused = |bundle: PrekeyBundle, what: &str| {
        assert!(
            matches!(
                bundle.verify(Profile::V2),
                Err(SessionError::BadPqPrekeySignature)
            ),
            "{what}"
        );
    };

    // A valid PQ prekey with the same id, made and signed by another identity.
    let mut other = genuine.clone();
    other.pq_prekey = Some(PqPrekeyPair::generate(&mut rng, &mallory, pq.id, NOW).public());
    refused(other, "signed by another identity");
    // Another identity's signature over Bob's own key.
    let mut resigned = genuine.clone();
    let sig = mallory.sign(&pq_prekey_signed_bytes(pq.id, &pq.encapsulation_key));
    resigned.pq_prekey.as_mut().unwrap().signature = sig;
    refused(resigned, "Bob's key under another identity's signature");
    // A flipped signature bit, a flipped key bit, a relabelled id.
    let mut bad_sig = genuine.clone();
    bad_sig.pq_prekey.as_mut().unwrap().signature[63] ^= 0x01;
    refused(bad_sig, "bad signature");
    let mut bad_key = genuine.clone();
    bad_key.pq_prekey.as_mut().unwrap().encapsulation_key[600] ^= 0x10;
    refused(bad_key, "key bit flipped");
    let mut relabelled = genuine.clone();
    relabelled.pq_prekey.as_mut().unwrap().id = pq.id ^ crate::pq::LAST_RESORT_ID_BIT;
    refused(relabelled, "one-time id relabelled as last-resort");
    // Signed by Bob but not a valid ML-KEM-768 key (coefficients ≥ q): FIPS 203's check.
    let mut invalid = genuine.clone();
    let ek = Box::new([0xFF; KEM_ENCAPSULATION_KEY_LEN]);
    invalid.pq_prekey = Some(PqPrekey {
        id: pq.id,
        signature: bob.identity.sign(&pq_prekey_signed_bytes(pq.id, &ek)),
        encapsulation_key: ek,
    });
    refused(invalid, "invalid-modulus encapsulation key");

    // Wrong lengths never decode: the PQ part is fixed-size at the end of a version-2 bundle.
    let bytes = genuine.to_bytes();
    assert_eq!(bytes[0], crate::keys::BUNDLE_VERSION_PQ);
    assert_eq!(PrekeyBundle::from_bytes(&bytes).unwrap(), genuine);
    for len in [bytes.len() - 1, bytes.len() - 64, bytes.len() - 1184] {
        assert!(
            PrekeyBundle::from_bytes(&bytes[..len]).is_err(),
            "len {len}"
        );
    }
    let mut longer = bytes.clone();
    longer.push(0);
    assert!(PrekeyBundle::from_bytes(&longer).is_err());

    // A correctly signed PQ prekey the responder does not hold (never made, or dropped).
    let mut unknown = genuine.clone();
    let stray = PqPrekeyPair::generate(&mut rng, &bob.identity, 4242, NOW).public();
    unknown.pq_prekey = Some(stray);
    let (_, pre) = first_message(&mut rng, &alice, &unknown, Profile::V2, b"x");
    assert!(matches!(
        respond(&mut rng, &bob, &alice, Profile::V2, &pre),
        Err(SessionError::UnknownPqPrekey(4242))
    ));
}

#[test]
fn a_one_time_pq_prekey_is_refused_after_its_deletion() {
    let mut rng = ChaCha20Rng::seed_from_u64(203);
    let alice = v2_party(&mut rng, 0, 0);
    let carol = v2_party(&mut rng, 0, 0);
    let mut bob = v2_party(&mut rng, 0, 2);
    // A relay serves the same one-time PQ prekey twice (or replays the first message).
    let bundle = v2_bundle(&bob, false, Pq::OneTime);
    let id = bundle.pq_prekey.as_ref().unwrap().id;
    let (_, first) = first_message(&mut rng, &alice, &bundle, Profile::V2, b"first");
    let (_, second) = first_message(&mut rng, &carol, &bundle, Profile::V2, b"second");
    respond_and_commit(&mut rng, &mut bob, &alice, &first).unwrap();
    for (sender, pre) in [(&carol, &second), (&alice, &first)] {
        assert!(matches!(
            respond(&mut rng, &bob, sender, Profile::V2, pre),
            Err(SessionError::UnknownPqPrekey(got)) if got == id
        ));
    }
}

#[test]
fn the_last_resort_pq_prekey_serves_several_initiators() {
    let mut rng = ChaCha20Rng::seed_from_u64(204);
    let mut bob = v2_party(&mut rng, 0, 0);
    let bundle = v2_bundle(&bob, false, Pq::LastResort);
    let id = bundle.pq_prekey.as_ref().unwrap().id;
    assert!(bundle.pq_prekey.as_ref().unwrap().is_last_resort());
    let mut sessions = Vec::new();
    for i in 0..4u8 {
        let sender = v2_party(&mut rng, 0, 0);
        let (a, pre) = first_message(&mut rng, &sender, &bundle, Profile::V2, &[i]);
        let inbound = respond_and_commit(&mut rng, &mut bob, &sender, &pre).unwrap();
        assert_eq!(&inbound.plaintext[..], &[i]);
        assert_eq!(inbound.used_one_time_pq_prekey, None);
        assert!(bob.prekeys.pq_prekey(id).is_some());
        sessions.push((a, inbound.session));
    }
    // Independent sessions: a message of one does not open in another.
    let (first, rest) = sessions.split_at_mut(1);
    let env = first[0].0.encrypt(&mut rng, b"only for session 0").unwrap();
    for (_, b) in rest.iter_mut() {
        assert!(b.decrypt(&mut rng, &env).is_err());
    }
    assert_eq!(
        &first[0].1.decrypt(&mut rng, &env).unwrap()[..],
        b"only for session 0"
    );
}

#[test]
fn a_late_first_message_to_a_rotated_last_resort_key_opens_within_the_grace_only() {
    // Bob rotates only the PQ last-resort key, so its grace is what is measured.
    for rotations in 0..=PQ_LAST_RESORT_KEPT + 1 {
        let mut rng = ChaCha20Rng::seed_from_u64(205);
        let alice = v2_party(&mut rng, 0, 0);
        let mut bob = v2_party(&mut rng, 0, 0);
        let bundle = v2_bundle(&bob, false, Pq::LastResort);
        let id = bundle.pq_prekey.as_ref().unwrap().id;
        let (_, pre) = first_message(&mut rng, &alice, &bundle, Profile::V2, b"late");
        for _ in 0..rotations {
            bob.prekeys
                .rotate_pq_last_resort(&mut rng, &bob.identity, NOW + 1);
        }
        let result = respond(&mut rng, &bob, &alice, Profile::V2, &pre);
        if rotations <= PQ_LAST_RESORT_KEPT {
            assert_eq!(&result.unwrap().plaintext[..], b"late", "{rotations}");
        } else {
            assert!(
                matches!(result, Err(SessionError::UnknownPqPrekey(got)) if got == id),
                "{rotations} rotations"
            );
        }
    }
    // As a client rotates: the signed prekey and the last-resort key together.
    let mut rng = ChaCha20Rng::seed_from_u64(206);
    let alice = v2_party(&mut rng, 0, 0);
    let mut bob = v2_party(&mut rng, 0, 0);
    let bundle = v2_bundle(&bob, false, Pq::LastResort);
    let (_, pre) = first_message(&mut rng, &alice, &bundle, Profile::V2, b"late");
    for _ in 0..PQ_LAST_RESORT_KEPT {
        bob.prekeys.rotate_signed(&mut rng, &bob.identity, NOW + 1);
        bob.prekeys
            .rotate_pq_last_resort(&mut rng, &bob.identity, NOW + 1);
    }
    assert_ne!(bob.prekeys.current_pq_last_resort(), bundle.pq_prekey);
    assert!(respond(&mut rng, &bob, &alice, Profile::V2, &pre).is_ok());
}

/// A prekey store that fails the test if anything is looked up in it.
struct NoLookups;

impl PrekeyStore for NoLookups {
    fn signed_prekey(&self, id: u32) -> Option<&crate::keys::SignedPrekeyPair> {
        panic!("signed prekey {id} looked up")
    }
    fn one_time_prekey(&self, id: u32) -> Option<&OneTimePrekeyPair> {
        panic!("one-time prekey {id} looked up")
    }
    fn pq_prekey(&self, id: u32) -> Option<&PqPrekeyPair> {
        panic!("PQ prekey {id} looked up")
    }
}

#[test]
fn downgrades_to_hush_v1_are_refused_when_hush_v2_is_required() {
    let mut rng = ChaCha20Rng::seed_from_u64(207);
    let alice = v2_party(&mut rng, 0, 0);
    let bob = v2_party(&mut rng, 1, 1);
    let downgrade = |r: &Result<_, SessionError>| {
        matches!(
            r,
            Err(SessionError::Downgrade {
                required: Profile::V2,
                offered: Profile::V1
            })
        )
    };
    // A relay strips the PQ prekey from the bundle of a hush-v2 contact.
    let mut stripped = v2_bundle(&bob, true, Pq::OneTime);
    stripped.pq_prekey = None;
    assert!(downgrade(&stripped.clone().verify(Profile::V2).map(|_| ())));
    // So does the encoding: a version-1 bundle is what the relay would send.
    assert_eq!(stripped.to_bytes()[0], crate::keys::BUNDLE_VERSION);
    // A hush-v1 first message is refused before any prekey is looked up.
    let (_, v1_pre) = first_message(&mut rng, &alice, &stripped, Profile::V1, b"v1");
    let refused = Session::respond(
        &mut rng,
        &bob.identity,
        &alice.identity.public_key(),
        Profile::V2,
        &NoLookups,
        &v1_pre,
    );
    assert!(downgrade(&refused.map(|_| ())));
    // Without the requirement it is still a valid hush-v1 session (existing contacts).
    let inbound = respond(&mut rng, &bob, &alice, Profile::V1, &v1_pre).unwrap();
    assert_eq!(inbound.session.profile(), Profile::V1);
}

#[test]
fn a_v2_prekey_envelope_relabelled_to_version_1_or_stripped_of_its_pq_header_is_refused() {
    let mut rng = ChaCha20Rng::seed_from_u64(208);
    let alice = v2_party(&mut rng, 0, 0);
    let mut bob = v2_party(&mut rng, 1, 2);
    for with_opk in [true, false] {
        let bundle = v2_bundle(&bob, with_opk, Pq::OneTime);
        let (_, pre) = first_message(&mut rng, &alice, &bundle, Profile::V2, b"pq");
        let wire = Envelope::Prekey(pre.clone()).to_bytes();
        assert_eq!(wire[0], ENVELOPE_VERSION_PQ);
        let pq_offset = 2 + 32 + 32 + 4 + 1 + if with_opk { 4 } else { 0 };
        let mut relabelled = wire.clone();
        relabelled[0] = ENVELOPE_VERSION;
        let mut stripped = wire.clone();
        stripped[0] = ENVELOPE_VERSION;
        stripped.drain(pq_offset..pq_offset + PQ_HEADER_LEN);
        for (what, bytes) in [("relabelled", relabelled), ("stripped", stripped)] {
            let Ok(Envelope::Prekey(forged)) = Envelope::from_bytes(&bytes) else {
                // Not even a prekey envelope: refused at decoding. The stripped one is a
                // well-formed version-1 envelope, so it always gets to the responder.
                assert_eq!(what, "relabelled");
                continue;
            };
            assert_eq!(forged.x3dh.profile(), Profile::V1, "{what}");
            for required in [Profile::V2, Profile::V1] {
                assert!(
                    respond(&mut rng, &bob, &alice, required, &forged).is_err(),
                    "{what} accepted with {required} required"
                );
            }
        }
        let inbound = respond_and_commit(&mut rng, &mut bob, &alice, &pre).unwrap();
        assert_eq!(&inbound.plaintext[..], b"pq");
    }
}

#[test]
fn a_v2_first_message_is_exactly_the_kem_part_longer_and_later_messages_are_the_same_size() {
    let mut sizes = Vec::new();
    for profile in [Profile::V1, Profile::V2] {
        let mut rng = ChaCha20Rng::seed_from_u64(209);
        let alice = v2_party(&mut rng, 0, 0);
        let bob = v2_party(&mut rng, 1, 1);
        let mut bundle = v2_bundle(&bob, true, Pq::OneTime);
        if profile == Profile::V1 {
            bundle.pq_prekey = None;
        }
        let text = MessageContent {
            id: [7; 16],
            sent_at_ms: 1,
            content_type: ContentType::TEXT,
            body: b"same plaintext".to_vec(),
        }
        .to_padded_bytes()
        .unwrap();
        let (mut a, pre) = first_message(&mut rng, &alice, &bundle, profile, &text);
        let first = Envelope::Prekey(pre.clone()).to_bytes();
        let mut b = respond(&mut rng, &bob, &alice, profile, &pre)
            .unwrap()
            .session;
        let reply = b.encrypt(&mut rng, &text).unwrap().to_bytes();
        a.decrypt(&mut rng, &Envelope::from_bytes(&reply).unwrap())
            .unwrap();
        let later = a.encrypt(&mut rng, &text).unwrap().to_bytes();
        assert_eq!(
            reply[0], ENVELOPE_VERSION,
            "{profile}: ordinary messages stay version 1"
        );
        assert_eq!(later[0], ENVELOPE_VERSION);
        sizes.push((first.len(), reply.len(), later.len()));
    }
    let (v1, v2) = (sizes[0], sizes[1]);
    assert_eq!(v2.0, v1.0 + 4 + KEM_CIPHERTEXT_LEN, "first message");
    assert_eq!(v2.0 - v1.0, 1092);
    assert_eq!((v2.1, v2.2), (v1.1, v1.2), "later messages");
}

#[test]
fn pickles_of_v2_sessions_and_pq_prekey_stores_round_trip() {
    let mut rng = ChaCha20Rng::seed_from_u64(210);
    let alice = v2_party(&mut rng, 0, 0);
    let mut bob = v2_party(&mut rng, 3, 3);
    bob.prekeys
        .rotate_pq_last_resort(&mut rng, &bob.identity, NOW + 5);
    let bundle = v2_bundle(&bob, true, Pq::OneTime);

    // The prekey store: seeds come back, and the published keys and signatures with them.
    let json = serde_json::to_string(&bob.prekeys.pickle()).unwrap();
    let back: PrekeysPickle = serde_json::from_str(&json).unwrap();
    let restored = LocalPrekeys::from_pickle(&bob.identity, &back).unwrap();
    assert!(restored.pickle() == bob.prekeys.pickle());
    assert_eq!(restored.pq_one_time_count(), 3);
    assert_eq!(
        restored.current_pq_last_resort(),
        bob.prekeys.current_pq_last_resort()
    );
    for pair in bob
        .prekeys
        .pq_one_time
        .values()
        .chain(&bob.prekeys.pq_last_resort)
    {
        let again = restored.pq_prekey(pair.id).unwrap();
        assert_eq!(again.public(), pair.public());
    }
    // Under another identity the re-signed keys would not match what was published.
    let other = IdentityKeyPair::generate(&mut rng);
    let wrong = LocalPrekeys::from_pickle(&other, &back).unwrap();
    assert!(!wrong
        .current_pq_last_resort()
        .unwrap()
        .verify(&bob.identity.public_key()));

    // An initiator's pending session keeps sending the very same v2 header after a restore.
    let (mut a, pre) = first_message(&mut rng, &alice, &bundle, Profile::V2, b"one");
    let json = serde_json::to_string(&a.pickle()).unwrap();
    let mut a2 = Session::from_pickle(&serde_json::from_str(&json).unwrap()).unwrap();
    assert!(a2.pickle() == a.pickle());
    assert_eq!(a2.profile(), Profile::V2);
    let mut rng2 = rng.clone();
    let x = a.encrypt(&mut rng, b"two").unwrap();
    let y = a2.encrypt(&mut rng2, b"two").unwrap();
    assert_eq!(x, y);
    let Envelope::Prekey(second) = &y else {
        panic!("still a prekey envelope");
    };
    assert_eq!(second.x3dh, pre.x3dh);

    // The responder, restored from its pickle, accepts the later copy.
    bob.prekeys = restored;
    let inbound = respond_and_commit(&mut rng, &mut bob, &alice, &pre).unwrap();
    let mut b = Session::from_pickle(&inbound.session.pickle()).unwrap();
    assert_eq!(b.profile(), Profile::V2);
    assert_eq!(&b.decrypt(&mut rng, &y).unwrap()[..], b"two");

    // A half-present PQ header in a session pickle is refused.
    let mut value = serde_json::to_value(a.pickle()).unwrap();
    value["x3dh_header"]["kem_ciphertext"] = serde_json::Value::Null;
    let p: SessionPickle = serde_json::from_value(value).unwrap();
    assert!(matches!(
        Session::from_pickle(&p),
        Err(PickleError::InvalidField(_))
    ));
}

#[test]
fn pickles_written_before_hush_v2_still_load() {
    let mut rng = ChaCha20Rng::seed_from_u64(211);
    let alice = v2_party(&mut rng, 0, 0);
    let bob = v2_party(&mut rng, 2, 2);
    let mut bundle = v2_bundle(&bob, true, Pq::OneTime);
    bundle.pq_prekey = None;
    let (a, _) = first_message(&mut rng, &alice, &bundle, Profile::V1, b"old");
    // What a pre-hush-v2 build wrote: the same JSON without the fields hush-v2 added.
    let mut session = serde_json::to_value(a.pickle()).unwrap();
    let header = session["x3dh_header"].as_object_mut().unwrap();
    assert!(header.remove("pq_prekey_id").is_some());
    assert!(header.remove("kem_ciphertext").is_some());
    let old: SessionPickle = serde_json::from_value(session).unwrap();
    let restored = Session::from_pickle(&old).unwrap();
    assert_eq!(restored.profile(), Profile::V1);
    assert!(restored.pickle() == a.pickle());

    let mut prekeys = serde_json::to_value(bob.prekeys.pickle()).unwrap();
    let fields = prekeys.as_object_mut().unwrap();
    for field in [
        "pq_one_time",
        "pq_last_resort",
        "next_pq_one_time_id",
        "next_pq_last_resort_id",
    ] {
        assert!(fields.remove(field).is_some(), "{field}");
    }
    let old: PrekeysPickle = serde_json::from_value(prekeys).unwrap();
    let mut restored = LocalPrekeys::from_pickle(&bob.identity, &old).unwrap();
    assert_eq!(restored.current_pq_last_resort(), None);
    assert_eq!(restored.pq_one_time_count(), 0);
    assert_eq!(restored.one_time_count(), 2);
    // Such a store gets PQ prekeys with fresh ids that never collide with the kinds' ranges.
    let lr = restored.rotate_pq_last_resort(&mut rng, &bob.identity, NOW);
    assert!(lr.is_last_resort() && lr.verify(&bob.identity.public_key()));
    let made = restored.generate_pq_one_time(&mut rng, &bob.identity, 2, NOW);
    assert!(made.iter().all(|k| !k.is_last_resort() && k.id != 0));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn random_interleavings_over_v2_sessions_deliver_every_genuine_message_exactly_once(
        seed in any::<u64>(),
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        let mut sim = Sim::with_profile(seed, Profile::V2);
        for op in ops {
            sim.apply(op);
        }
        sim.drain();
    }
}

/// The interleavings above with a first message that carries a KEM ciphertext: a flip of a
/// byte anywhere in it, delivered first, is refused and the genuine message opens after.
#[test]
fn v2_interleaving_sim_refuses_a_flipped_kem_ciphertext_then_opens_the_genuine() {
    for seed in [3_u64, 4] {
        let mut sim = Sim::with_profile(seed, Profile::V2);
        sim.apply(Op::Send { from_alice: true });
        let wire = sim.to_bob[0].wire.clone();
        assert_eq!(wire[0], ENVELOPE_VERSION_PQ);
        let pq_offset = wire.len() - 40 - 24 - 16 - 9 - PQ_HEADER_LEN;
        for i in [0, PQ_HEADER_LEN / 2, PQ_HEADER_LEN - 1] {
            let mut bad = wire.clone();
            bad[pq_offset + i] ^= 0x40;
            assert_eq!(sim.receive(true, &bad), None, "seed {seed} byte {i}");
        }
        assert_eq!(sim.receive(true, &wire).as_deref(), Some(&b"message 1"[..]));
    }
}

#[test]
fn a_prekeys_pickle_whose_next_one_time_pq_id_is_in_the_last_resort_range_is_refused() {
    // Such a store would make "one-time" keys with bit 31 set (a last-resort id): they would
    // be published, but every first message to one refused (the lookup by id searches the
    // last-resort keys), and a relay would count them as last-resort keys.
    let mut rng = ChaCha20Rng::seed_from_u64(212);
    let bob = v2_party(&mut rng, 0, 1);
    let mut value = serde_json::to_value(bob.prekeys.pickle()).unwrap();
    value["next_pq_one_time_id"] = (crate::pq::LAST_RESORT_ID_BIT | 7).into();
    let p: PrekeysPickle = serde_json::from_value(value.clone()).unwrap();
    assert!(matches!(
        LocalPrekeys::from_pickle(&bob.identity, &p),
        Err(PickleError::InvalidField(_))
    ));
    value["next_pq_one_time_id"] = 2.into();
    let p: PrekeysPickle = serde_json::from_value(value).unwrap();
    assert!(LocalPrekeys::from_pickle(&bob.identity, &p).is_ok());
}

#[test]
fn debug_output_never_contains_pq_secrets() {
    let mut rng = ChaCha20Rng::seed_from_u64(213);
    let bob = v2_party(&mut rng, 1, 1);
    let pair = bob.prekeys.pq_one_time.values().next().unwrap();
    let seed = hex::encode(&pair.seed()[..]);
    for shown in [
        format!("{:?}", bob.prekeys),
        format!("{pair:?}"),
        format!("{:?}", pair.public()),
    ] {
        assert!(!shown.contains(&seed[..16]), "{shown}");
        assert!(
            !shown.contains(&format!("{:?}", &pair.seed()[..8])),
            "{shown}"
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// The `hush-v2` decoders see inputs far longer than the generic decoder property test
    /// reaches (a bundle is 1.4 KB, a first message 1.2 KB+): arbitrary edits and truncations
    /// of genuine ones never panic, an altered first message never opens (whatever profile is
    /// required), and a bundle that still verifies carries Bob's genuine signed keys.
    #[test]
    fn edited_v2_bundles_and_first_messages_never_panic_open_or_verify_with_other_keys(
        seed in 0u64..4,
        edits in proptest::collection::vec((any::<usize>(), any::<u8>()), 1..4),
        cut in proptest::option::of(any::<usize>()),
        on_bundle in any::<bool>(),
    ) {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let alice = v2_party(&mut rng, 0, 0);
        let bob = v2_party(&mut rng, 1, 1);
        let pq = if seed % 2 == 0 { Pq::OneTime } else { Pq::LastResort };
        let bundle = v2_bundle(&bob, seed < 2, pq);
        let genuine = if on_bundle {
            bundle.to_bytes()
        } else {
            let (_, pre) = first_message(&mut rng, &alice, &bundle, Profile::V2, b"x");
            Envelope::Prekey(pre).to_bytes()
        };
        let mut bytes = genuine.clone();
        for (at, value) in edits {
            let len = bytes.len();
            bytes[at % len] = value;
        }
        if let Some(cut) = cut {
            bytes.truncate(cut % genuine.len());
        }
        prop_assume!(bytes != genuine);
        if on_bundle {
            if let Ok(decoded) = PrekeyBundle::from_bytes(&bytes) {
                if let Ok(verified) = decoded.verify(Profile::V2) {
                    let got = verified.bundle();
                    prop_assert_eq!(got.identity_key, bundle.identity_key);
                    prop_assert_eq!(got.signed_prekey.public_key, bundle.signed_prekey.public_key);
                    prop_assert_eq!(&got.pq_prekey, &bundle.pq_prekey);
                }
            }
        } else if let Ok(Envelope::Prekey(pre)) = Envelope::from_bytes(&bytes) {
            for required in [Profile::V1, Profile::V2] {
                prop_assert!(respond(&mut rng, &bob, &alice, required, &pre).is_err());
            }
        }
    }
}

/// An `InboundSession` is what a caller most likely logs while debugging a first message: its
/// `Debug` must not print the decrypted plaintext. Guard (a review suspected a leak; `Zeroizing`
/// already prints `Zeroizing { .. }`), kept so a derive change cannot bring it in.
#[test]
fn debug_of_an_inbound_session_does_not_print_the_plaintext() {
    let mut rng = ChaCha20Rng::seed_from_u64(71);
    let alice = party(&mut rng, 0);
    let bob = v2_party(&mut rng, 1, 1);
    let bundle = v2_bundle(&bob, true, Pq::OneTime);
    let secret = b"meet at the north gate";
    let (_, pre) = first_message(&mut rng, &alice, &bundle, Profile::V2, secret);
    let inbound = respond(&mut rng, &bob, &alice, Profile::V2, &pre).unwrap();
    let shown = format!("{inbound:?}");
    let as_list = format!("{:?}", secret.to_vec());
    let inner = as_list.trim_start_matches('[').trim_end_matches(']');
    assert!(!shown.contains(inner), "plaintext bytes in Debug: {shown}");
    assert!(!shown.contains("meet at"), "{shown}");
}
