//! Attacks on the engine (in-memory provider): replayed, reordered, tampered and garbled
//! messages, commits smuggled in the wrong envelope or forged by a non-member, KeyPackages
//! substituted by the relay, Welcomes breaking hush's rules, signature domain separation.

use hush_proto::GroupEnvelope;
use openmls::prelude::{Ciphersuite, KeyPackage, Lifetime, MlsMessageOut};
use rand_core::OsRng;

use super::config::{self, CIPHERSUITE};
use super::engine;
use super::tests::{assert_converged, group_of, User, GID};
use super::Incoming;
use super::{GroupError, MemberId};

#[test]
fn replayed_reordered_and_tampered_messages_are_refused_without_changing_state() {
    let (a, b) = (User::new("alice"), User::new("bob"));
    let gid = group_of(&a, &[&b]);
    let m: Vec<Vec<u8>> = (0..4).map(|i| a.send(&gid, &format!("m{i}"))).collect();
    // Reordered: within the out-of-order window, every message opens once.
    assert_eq!(b.read(&gid, &m[2]).1, "m2");
    assert_eq!(b.read(&gid, &m[0]).1, "m0");
    assert_eq!(b.read(&gid, &m[1]).1, "m1");
    // Replayed: refused, nothing changes.
    for r in [&m[0], &m[2]] {
        let before = b.snapshot();
        assert_eq!(b.recv(&gid, r).unwrap_err(), GroupError::Replay);
        assert_eq!(b.snapshot(), before);
    }
    // Every single-bit flip past the envelope header is refused and changes nothing.
    let before = b.snapshot();
    for i in (2..m[3].len()).step_by(7) {
        let mut t = m[3].clone();
        t[i] ^= 0x01;
        if let Ok(env) = GroupEnvelope::from_bytes(&t) {
            assert!(
                engine::process(&b.p, &gid, &env).is_err(),
                "flip at byte {i} accepted"
            );
        }
        assert_eq!(b.snapshot(), before, "flip at byte {i} changed state");
    }
    assert_eq!(b.read(&gid, &m[3]).1, "m3");
    // A tampered commit is refused too, and the real one still works.
    let h = User::new("helper");
    let out = engine::add_members(&a.p, &a.signer(), &gid, &[h.candidate()]).unwrap();
    engine::merge_own_commit(&a.p, &gid).unwrap();
    let mut t = out.commit.clone();
    let last = t.len() - 1;
    t[last] ^= 0x80;
    let before = b.snapshot();
    assert!(b.recv(&gid, &t).is_err());
    assert_eq!(b.snapshot(), before);
    b.recv(&gid, &out.commit).unwrap();
    // A replayed commit is stale.
    assert!(matches!(
        b.recv(&gid, &out.commit).unwrap_err(),
        GroupError::TooOld { .. }
    ));
    assert_converged(&gid, &[&a, &b]);
}

#[test]
fn envelope_kind_must_match_the_mls_content() {
    let (a, b, c) = (User::new("alice"), User::new("bob"), User::new("carol"));
    let gid = group_of(&a, &[&b]);
    let out = engine::add_members(&a.p, &a.signer(), &gid, &[c.candidate()]).unwrap();
    let commit = GroupEnvelope::from_bytes(&out.commit).unwrap();
    // A commit smuggled in a GroupSend envelope would bypass the relay's epoch ordering.
    let smuggled = GroupEnvelope::Message(commit.mls_bytes().to_vec());
    assert!(matches!(
        engine::process(&b.p, &gid, &smuggled).unwrap_err(),
        GroupError::Invalid(_)
    ));
    let msg = GroupEnvelope::from_bytes(&b.send(&gid, "x")).unwrap();
    let as_commit = GroupEnvelope::Commit(msg.mls_bytes().to_vec());
    assert!(matches!(
        engine::process(&a.p, &gid, &as_commit).unwrap_err(),
        GroupError::Invalid(_)
    ));
    assert_eq!(engine::group_id_of(&commit).unwrap(), gid);
    assert!(
        engine::group_id_of(&GroupEnvelope::from_bytes(&out.welcome.unwrap()).unwrap()).is_err()
    );
}

/// A KeyPackage built by hand (for substitution, expiry and ciphersuite tests).
fn custom_kp(signer_of: &User, name: &str, suite: Ciphersuite, lifetime: Lifetime) -> Vec<u8> {
    let id = MemberId {
        name: name.into(),
        identity: *signer_of.key.public_key().as_bytes(),
    };
    let bundle = KeyPackage::builder()
        .key_package_lifetime(lifetime)
        .leaf_node_capabilities(config::capabilities())
        .build(
            suite,
            &signer_of.p,
            &signer_of.signer(),
            id.credential_with_key(),
        )
        .unwrap();
    MlsMessageOut::from(bundle.key_package().clone())
        .to_bytes()
        .unwrap()
}

#[test]
fn add_members_refuses_a_key_package_substituted_by_the_relay() {
    let (a, carol, mallory) = (User::new("alice"), User::new("carol"), User::new("mallory"));
    let gid = group_of(&a, &[]);
    let fresh = Lifetime::new(config::KEY_PACKAGE_LIFETIME_SECS);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        // A valid KeyPackage of another identity under the victim's name.
        (
            "mallory's key, carol's name",
            custom_kp(&mallory, "carol", CIPHERSUITE, fresh),
        ),
        // The victim's key under another name.
        (
            "carol's key, another name",
            custom_kp(&carol, "mallory", CIPHERSUITE, fresh),
        ),
        // Expired.
        (
            "expired",
            custom_kp(&carol, "carol", CIPHERSUITE, Lifetime::init(1_000, 2_000)),
        ),
        // Another ciphersuite.
        (
            "other ciphersuite",
            custom_kp(
                &carol,
                "carol",
                Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519,
                fresh,
            ),
        ),
        // Badly signed.
        ("bad signature", {
            let mut kp = carol.kp();
            let last = kp.len() - 1;
            kp[last] ^= 0x01;
            kp
        }),
        ("garbage", vec![0, 1, 2, 3]),
    ];
    for (what, kp) in cases {
        let before = a.snapshot();
        let err = engine::add_members(&a.p, &a.signer(), &gid, &[(carol.id(), kp)]).unwrap_err();
        assert!(matches!(err, GroupError::KeyPackage(_)), "{what}: {err:?}");
        assert_eq!(a.snapshot(), before, "{what}");
        assert_eq!(a.epoch(&gid), 0);
    }
    // The genuine one is accepted.
    engine::add_members(&a.p, &a.signer(), &gid, &[carol.candidate()]).unwrap();
}

#[test]
fn adding_a_name_or_key_twice_is_refused() {
    let (a, b) = (User::new("alice"), User::new("bob"));
    let gid = group_of(&a, &[&b]);
    let err = engine::add_members(&a.p, &a.signer(), &gid, &[b.candidate()]).unwrap_err();
    assert!(matches!(err, GroupError::Invalid(_)), "{err:?}");
}

#[test]
fn a_commit_forged_by_a_non_member_is_refused() {
    let (a, b, m, x) = (
        User::new("alice"),
        User::new("bob"),
        User::new("mallory"),
        User::new("x"),
    );
    let gid = group_of(&a, &[&b]);
    // The relay (mallory) builds a group with the same id and epoch and commits an add there.
    engine::create_group(&m.p, &m.signer(), &m.id(), GID, "Book club").unwrap();
    let forged = engine::add_members(&m.p, &m.signer(), &gid, &[x.candidate()]).unwrap();
    engine::merge_own_commit(&m.p, &gid).unwrap();
    let fake = m.send(&gid, "I am alice");
    let forged2 =
        engine::add_members(&m.p, &m.signer(), &gid, &[User::new("y").candidate()]).unwrap();
    assert_eq!(forged2.epoch, b.epoch(&gid));
    let before = b.snapshot();
    for f in [&forged.commit, &forged2.commit] {
        assert!(b.recv(&gid, f).is_err());
        assert_eq!(b.snapshot(), before);
    }
    // Nor can a forged application message pass.
    assert!(b.recv(&gid, &fake).is_err());
    assert_eq!(b.snapshot(), before);
    assert_eq!(engine::members(&b.p, &gid).unwrap().len(), 2);
}

#[test]
fn mls_signatures_are_plain_identity_signatures_in_a_disjoint_domain() {
    use openmls_traits::signatures::Signer as _;
    // The signer is the identity key: what it signs verifies under the member's IK.
    let u = User::new("alice");
    let payload = b"\x13MLS 1.0 LeafNodeTBS\x05hello";
    let sig: [u8; 64] = u.signer().sign(payload).unwrap().try_into().unwrap();
    assert!(u.key.public_key().verify(payload, &sig));
    // Every other identity-key signature in hush starts with "hush-" (PROTOCOL §13.1)…
    for ctx in [
        hush_proto::relay::AUTH_CONTEXT,
        hush_proto::relay::REGISTER_CONTEXT,
        hush_proto::pq::PQ_PREKEY_SIG_CONTEXT,
    ] {
        assert!(ctx.starts_with(b"hush-"), "{ctx:?}");
    }
    // …while MLS SignContent starts with its label's length byte, then "MLS 1.0 ".
    for label in [
        "LeafNodeTBS",
        "GroupInfoTBS",
        "KeyPackageTBS",
        "FramedContentTBS",
    ] {
        let l = format!("MLS 1.0 {label}");
        assert!((0x13..=0x18).contains(&l.len()), "{l}");
    }
    // A KeyPackage's leaf carries exactly the identity key.
    let kp = engine::verify_key_package(&u.p, &u.id(), &u.kp()).unwrap();
    assert_eq!(
        kp.leaf_node().signature_key().as_slice(),
        u.key.public_key().as_bytes()
    );
}

#[test]
fn a_key_package_without_hush_capabilities_is_refused() {
    let (a, carol) = (User::new("alice"), User::new("carol"));
    let gid = group_of(&a, &[]);
    let bundle = KeyPackage::builder()
        .build(
            CIPHERSUITE,
            &carol.p,
            &carol.signer(),
            carol.id().credential_with_key(),
        )
        .unwrap();
    let kp = MlsMessageOut::from(bundle.key_package().clone())
        .to_bytes()
        .unwrap();
    let err = engine::add_members(&a.p, &a.signer(), &gid, &[(carol.id(), kp)]).unwrap_err();
    assert!(matches!(err, GroupError::KeyPackage(_)), "{err:?}");
}

#[test]
fn garbage_and_mutations_never_panic_and_never_change_state() {
    use rand_core::RngCore;
    let (a, b, c) = (User::new("alice"), User::new("bob"), User::new("carol"));
    let gid = group_of(&a, &[&b]);
    let hello = a.send(&gid, "hello");
    let commit = engine::add_members(&a.p, &a.signer(), &gid, &[c.candidate()]).unwrap();
    engine::discard_own_commit(&a.p, &gid).unwrap();
    let samples = [
        hello,
        engine::leave(&a.p, &a.signer(), &gid).unwrap(),
        commit.commit,
    ];
    let before = b.snapshot();
    let mut rng = OsRng;
    for round in 0..600 {
        let mut bytes = samples[round % samples.len()].clone();
        match round % 3 {
            0 => {
                let i = 2 + (rng.next_u32() as usize) % (bytes.len() - 2);
                bytes[i] ^= (rng.next_u32() as u8) | 1; // always a change
            }
            1 => bytes.truncate(2 + (rng.next_u32() as usize) % (bytes.len() - 2)),
            _ => {
                let mut tail = vec![0u8; (rng.next_u32() % 64) as usize];
                rng.fill_bytes(&mut tail);
                bytes.truncate(2);
                bytes.extend(tail);
            }
        }
        let Ok(env) = GroupEnvelope::from_bytes(&bytes) else {
            continue;
        };
        let _ = engine::group_id_of(&env);
        assert!(engine::process(&b.p, &gid, &env).is_err(), "round {round}");
        let _ = engine::join(&c.p, &GroupEnvelope::Welcome(env.mls_bytes().to_vec()));
        let _ = engine::verify_key_package(&b.p, &a.id(), env.mls_bytes());
        assert_eq!(b.snapshot(), before, "round {round}");
    }
}

#[test]
fn a_welcome_is_refused_if_a_member_or_the_group_breaks_hush_rules() {
    use openmls::prelude::{MlsGroup, MlsGroupCreateConfig};
    let bob = User::new("bob");
    // A creator whose credential is not a valid relay name.
    let bad = User::new("x");
    let bad_id = MemberId {
        name: "Not A Name!".into(),
        identity: bad.id().identity,
    };
    let mut g = MlsGroup::new(
        &bad.p,
        &bad.signer(),
        &config::create_config("Trap").unwrap(),
        bad_id.credential_with_key(),
    )
    .unwrap();
    let kp = engine::verify_key_package(&bad.p, &bob.id(), &bob.kp()).unwrap();
    let (_, welcome, _) = g.add_members(&bad.p, &bad.signer(), &[kp]).unwrap();
    let err =
        engine::join(&bob.p, &GroupEnvelope::Welcome(welcome.to_bytes().unwrap())).unwrap_err();
    assert!(
        matches!(&err, GroupError::Invalid(m) if m.contains("relay name")),
        "{err:?}"
    );
    assert_eq!(
        engine::epoch(&bob.p, g.group_id().as_slice()).unwrap_err(),
        GroupError::UnknownGroup
    );

    // A group made without hush's configuration (no name extension, plaintext handshakes).
    let bob = User::new("bob");
    let other = User::new("other");
    let cfg = MlsGroupCreateConfig::builder()
        .ciphersuite(CIPHERSUITE)
        .capabilities(config::capabilities())
        .use_ratchet_tree_extension(true)
        .build();
    let mut g = MlsGroup::new(
        &other.p,
        &other.signer(),
        &cfg,
        other.id().credential_with_key(),
    )
    .unwrap();
    let kp = engine::verify_key_package(&other.p, &bob.id(), &bob.kp()).unwrap();
    let (_, welcome, _) = g.add_members(&other.p, &other.signer(), &[kp]).unwrap();
    let bytes = GroupEnvelope::Welcome(welcome.to_bytes().unwrap());
    let err = engine::join(&bob.p, &bytes).unwrap_err();
    assert!(
        matches!(&err, GroupError::Invalid(m) if m.contains("name extension")),
        "{err:?}"
    );
}

#[test]
fn a_relay_made_group_is_only_exposed_by_its_keys() {
    // The relay holds bob's published KeyPackage and builds a group of its own, its creator
    // named "alice" under a key of the relay's choosing.
    let (alice, bob, relay) = (User::new("alice"), User::new("bob"), User::new("x"));
    let fake_alice = MemberId {
        name: "alice".into(),
        identity: relay.id().identity,
    };
    engine::create_group(&relay.p, &relay.signer(), &fake_alice, GID, "Family").unwrap();
    let out = engine::add_members(&relay.p, &relay.signer(), &GID, &[bob.candidate()]).unwrap();
    let joined = bob.join(&out.welcome.unwrap());
    // Every MLS check passes; the names look right; only the key differs from the contact's.
    assert_eq!(joined.inviter.name, "alice");
    assert_ne!(joined.inviter.identity, alice.id().identity);
    assert!(joined.members.iter().all(|m| m != &alice.id()));
}

#[test]
fn a_past_epoch_message_from_a_replaced_leaf_is_not_attributed_to_the_new_member() {
    use openmls::prelude::{GroupId, MlsGroup};
    use openmls_traits::OpenMlsProvider as _;
    // Review finding 5: mallory adds a fake "bob" (her own key), holds back a message it
    // signed, then replaces it by the real bob at the same leaf and releases the message.
    let (m, a, bob, fake) = (
        User::new("mallory"),
        User::new("alice"),
        User::new("bob"),
        User::new("bob"),
    );
    let gid = group_of(&m, &[&a]);
    let add_fake = engine::add_members(&m.p, &m.signer(), &gid, &[fake.candidate()]).unwrap();
    engine::merge_own_commit(&m.p, &gid).unwrap();
    a.recv(&gid, &add_fake.commit).unwrap();
    fake.join(&add_fake.welcome.unwrap());
    let leaf_of = |who: &MemberId| {
        let g = MlsGroup::load(a.p.storage(), &GroupId::from_slice(&gid))
            .unwrap()
            .unwrap();
        let index = g
            .members()
            .find(|x| x.signature_key.as_slice() == who.identity.as_slice())
            .map(|x| x.index);
        index.unwrap()
    };
    let fake_leaf = leaf_of(&fake.id());
    let held = fake.send(&gid, "bob: send the file to X");
    let rm = engine::remove_members(&m.p, &m.signer(), &gid, &[fake.id().identity]).unwrap();
    engine::merge_own_commit(&m.p, &gid).unwrap();
    a.recv(&gid, &rm.commit).unwrap();
    let add_bob = engine::add_members(&m.p, &m.signer(), &gid, &[bob.candidate()]).unwrap();
    engine::merge_own_commit(&m.p, &gid).unwrap();
    a.recv(&gid, &add_bob.commit).unwrap();
    assert_eq!(
        leaf_of(&bob.id()),
        fake_leaf,
        "the real bob took the fake's leaf"
    );
    // openmls opens it with the epoch's secrets and verifies it under the fake's key; the
    // sender must not come out as the real bob (the client drops its transaction on refusal).
    let got = a.recv(&gid, &held);
    assert!(
        matches!(got, Err(GroupError::Invalid(_))),
        "held message attributed as {got:?}"
    );
}

#[test]
fn a_credential_whose_key_is_not_the_leaf_key_is_refused() {
    use openmls::prelude::{BasicCredential, CredentialWithKey};
    let (a, carol, mallory) = (User::new("alice"), User::new("carol"), User::new("mallory"));
    // What mallory can sign: a leaf under her own key, whose credential names carol's key, or
    // only a name (the layout before the key was bound in).
    let as_mallory = MemberId {
        name: "carol".into(),
        identity: mallory.id().identity,
    };
    for identity in [carol.id().credential_identity(), b"carol".to_vec()] {
        let bundle = KeyPackage::builder()
            .key_package_lifetime(Lifetime::new(config::KEY_PACKAGE_LIFETIME_SECS))
            .leaf_node_capabilities(config::capabilities())
            .build(
                CIPHERSUITE,
                &mallory.p,
                &mallory.signer(),
                CredentialWithKey {
                    credential: BasicCredential::new(identity).into(),
                    signature_key: mallory.id().identity.to_vec().into(),
                },
            )
            .unwrap();
        let kp = MlsMessageOut::from(bundle.key_package().clone())
            .to_bytes()
            .unwrap();
        for expected in [&as_mallory, &carol.id()] {
            let err = engine::verify_key_package(&a.p, expected, &kp).unwrap_err();
            assert!(matches!(err, GroupError::KeyPackage(_)), "{err:?}");
        }
    }
    // The layout is exactly name ‖ 0x00 ‖ key.
    let mut want = b"carol\0".to_vec();
    want.extend_from_slice(&carol.id().identity);
    assert_eq!(carol.id().credential_identity(), want);
}

#[test]
fn a_leave_proposal_known_to_one_member_is_committed_by_value_and_everyone_follows() {
    // Review finding 1: a member sends its leave proposal to alice only (by 1:1 mail, or the
    // relay skips the others). Alice's commits must carry the Remove inline, or bob (who never
    // saw the proposal) could not process them and the group would freeze.
    let (a, b, c, d, e) = (
        User::new("alice"),
        User::new("bob"),
        User::new("carol"),
        User::new("dave"),
        User::new("erin"),
    );
    let gid = group_of(&a, &[&b, &c, &d]);
    // An add commit covers the stored leave.
    let bye = engine::leave(&c.p, &c.signer(), &gid).unwrap();
    assert!(matches!(
        a.recv(&gid, &bye).unwrap(),
        Incoming::Proposal { .. }
    ));
    let out = engine::add_members(&a.p, &a.signer(), &gid, &[e.candidate()]).unwrap();
    assert_eq!(out.removed, vec![c.id().identity]);
    assert_eq!(out.added, vec![e.id().identity]);
    engine::merge_own_commit(&a.p, &gid).unwrap();
    for u in [&b, &d] {
        match u.recv(&gid, &out.commit).unwrap() {
            Incoming::Commit { removed, added, .. } => {
                assert_eq!(removed, vec![c.id()]);
                assert_eq!(added, vec![e.id()]);
            }
            other => panic!("{other:?}"),
        }
    }
    e.join(&out.welcome.unwrap());
    // commit_pending_proposals, likewise.
    let bye = engine::leave(&d.p, &d.signer(), &gid).unwrap();
    assert!(matches!(
        a.recv(&gid, &bye).unwrap(),
        Incoming::Proposal { .. }
    ));
    let out = engine::commit_pending_proposals(&a.p, &a.signer(), &gid)
        .unwrap()
        .unwrap();
    assert_eq!(out.removed, vec![d.id().identity]);
    engine::merge_own_commit(&a.p, &gid).unwrap();
    for u in [&b, &e] {
        assert!(matches!(
            u.recv(&gid, &out.commit).unwrap(),
            Incoming::Commit { .. }
        ));
    }
    match d.recv(&gid, &out.commit).unwrap() {
        Incoming::Commit {
            we_were_removed, ..
        } => assert!(we_were_removed),
        other => panic!("{other:?}"),
    }
    assert_converged(&gid, &[&a, &b, &e]);
    assert_eq!(engine::members(&b.p, &gid).unwrap().len(), 3);
    // The store is empty afterwards.
    assert!(engine::commit_pending_proposals(&a.p, &a.signer(), &gid)
        .unwrap()
        .is_none());
}

#[test]
fn a_commit_carrying_a_proposal_by_reference_is_refused_even_by_those_who_hold_it() {
    use openmls::prelude::{GroupId, MlsGroup};
    use openmls_traits::OpenMlsProvider as _;
    let (a, b, c) = (User::new("alice"), User::new("bob"), User::new("carol"));
    let gid = group_of(&a, &[&b, &c]);
    let bye = engine::leave(&c.p, &c.signer(), &gid).unwrap();
    a.recv(&gid, &bye).unwrap();
    b.recv(&gid, &bye).unwrap();
    // openmls's own default: the stored proposal goes in by reference.
    let mut g = MlsGroup::load(a.p.storage(), &GroupId::from_slice(&gid))
        .unwrap()
        .unwrap();
    let (commit, _, _) = g.commit_to_pending_proposals(&a.p, &a.signer()).unwrap();
    let env = GroupEnvelope::Commit(commit.to_bytes().unwrap()).to_bytes();
    // Whether a member holds the proposal depends on what mail reached it: everyone refuses
    // alike, so no member's view depends on it.
    let err = b.recv(&gid, &env).unwrap_err();
    assert!(matches!(err, GroupError::Invalid(_)), "{err:?}");
}
