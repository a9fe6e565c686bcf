//! Replay: rebuild both parties from a file's keys and seeds, inject its randomness (ephemeral
//! key, KEM `m`, ratchet keys, nonces), run its events, and require identical SK, headers,
//! ciphertexts and accept/reject decisions. Works for files of either profile, ours or another
//! implementation's.

use std::collections::HashMap;

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;
use zeroize::Zeroizing;

use super::format::*;
use super::rng::ScriptedRng;
use super::{deliver, with_message};
use crate::pq::{self, PqPrekeyPair, KEM_CIPHERTEXT_LEN, KEM_ENCAPSULATION_KEY_LEN};
use crate::ratchet::RatchetLimits;
use crate::x3dh::{self, PqHeader, PrekeyStore};
use crate::*;

/// The profile a file declares, with its parameters checked against ours.
fn checked_profile(p: &Params) -> Profile {
    assert_eq!(p.rk_info, "hush-dr-root-v1");
    assert_eq!(p.msg_info, "hush-dr-msg-v1");
    assert_eq!(p.ck_constants, "0201");
    assert_eq!(p.header_encoding, "dh32|pn_u32be|n_u32be");
    assert_eq!(p.ad_encoding, "x3dh_ad|header");
    assert_eq!(p.bob_initial_ratchet_key, "spk");
    assert!(p.max_skip as usize <= p.max_stored_skipped);
    if p.profile == Profile::V2.name() {
        assert_eq!(p.x3dh_info, "hush-pqxdh-v2");
        assert_eq!(p.kem.as_deref(), Some("ML-KEM-768"));
        assert_eq!(
            p.pq_prekey_sig_context.as_deref(),
            Some("hush-v2-pq-prekey")
        );
        Profile::V2
    } else {
        assert_eq!(p.profile, Profile::V1.name());
        assert_eq!(p.x3dh_info, "hush-x3dh-v1");
        assert!(p.kem.is_none());
        Profile::V1
    }
}

fn pq_from(v: &PqPrekeyVec) -> PqPrekey {
    PqPrekey {
        id: v.id,
        encapsulation_key: Box::new(unhex::<KEM_ENCAPSULATION_KEY_LEN>(&v.ek)),
        signature: unhex(&v.sig),
    }
}

/// Bob's prekey store from the file: the signed prekey is id 1, one-time prekeys ids 1..=n in
/// list order, PQ prekeys under the ids the file gives (rebuilt from their seeds).
struct BobStore {
    spk: SignedPrekeyPair,
    prekeys: LocalPrekeys,
    opk_ids: HashMap<String, u32>,
}

fn bob_store(x: &X3dhVectors, bob: &IdentityKeyPair) -> BobStore {
    let spk = SignedPrekeyPair {
        id: 1,
        created_at: x.bob.spk_timestamp,
        secret: X25519Secret::from_bytes(unhex(&x.bob.spk_priv)),
        signature: unhex(&x.bundle.signed_pre_key_sig),
    };
    assert_eq!(
        h(spk.secret.public_key().as_bytes()),
        x.bundle.signed_pre_key
    );
    let mut prekeys = LocalPrekeys {
        signed: vec![spk.clone()],
        one_time: Default::default(),
        next_signed_id: 2,
        next_one_time_id: 1,
        pq_one_time: Default::default(),
        pq_last_resort: Vec::new(),
        next_pq_one_time_id: 1,
        next_pq_last_resort_id: pq::LAST_RESORT_ID_BIT | 1,
    };
    let mut opk_ids = HashMap::new();
    for (i, (secret, public)) in x.bob.opk_privs.iter().zip(&x.bundle.pre_keys).enumerate() {
        let opk = OneTimePrekeyPair {
            id: i as u32 + 1,
            secret: X25519Secret::from_bytes(unhex(secret)),
        };
        assert_eq!(&h(opk.secret.public_key().as_bytes()), public);
        opk_ids.insert(public.clone(), opk.id);
        prekeys.one_time.insert(opk.id, opk);
    }
    for entry in x.bob.pq_prekeys.iter().flatten() {
        let pair = PqPrekeyPair::from_seed(bob, entry.id, 0, Zeroizing::new(unhex(&entry.seed)));
        assert_eq!(
            pair.is_last_resort(),
            entry.last_resort,
            "PQ prekey {}: last-resort ids have bit 31 set (LAST_RESORT_ID_BIT)",
            entry.id
        );
        if pair.is_last_resort() {
            prekeys.pq_last_resort.push(pair);
        } else {
            prekeys.pq_one_time.insert(pair.id, pair);
        }
    }
    BobStore {
        spk,
        prekeys,
        opk_ids,
    }
}

/// The responder's view of a header written in the file (prekeys by public key → ids).
fn header_from(v: &X3dhHeaderVec, store: &BobStore) -> X3dhHeader {
    assert_eq!(
        v.signed_pre_key,
        h(store.spk.secret.public_key().as_bytes())
    );
    X3dhHeader {
        identity_key: IdentityPublicKey::from_bytes(&unhex(&v.identity_key)).unwrap(),
        ephemeral_key: X25519PublicKey::from_wire(unhex(&v.ephemeral_key)).unwrap(),
        signed_prekey_id: store.spk.id,
        one_time_prekey_id: v.pre_key.as_ref().map(|k| store.opk_ids[k]),
        pq: v.pq_pre_key_id.map(|id| PqHeader {
            prekey_id: id,
            ciphertext: Box::new(unhex::<KEM_CIPHERTEXT_LEN>(
                v.kem_ciphertext.as_ref().unwrap(),
            )),
        }),
    }
}

pub(super) fn replay(file: &VectorFile) {
    assert_eq!(file.format, FORMAT);
    let profile = checked_profile(&file.params);
    let p = &file.params;
    let limits = RatchetLimits {
        max_skip: p.max_skip,
        max_stored_skipped: p.max_stored_skipped,
    };
    let x = &file.x3dh;
    let alice = IdentityKeyPair::from_seed(&unhex(&x.alice.identity_seed));
    let bob = IdentityKeyPair::from_seed(&unhex(&x.bob.identity_seed));
    assert_eq!(h(bob.public_key().as_bytes()), x.bundle.identity_key);
    let store = bob_store(x, &bob);
    let mut prekeys = store.prekeys.clone();

    let bundle_from = |b: &BundleVec, opk: Option<&String>| -> Option<PrekeyBundle> {
        Some(PrekeyBundle {
            identity_key: IdentityPublicKey::from_bytes(&unhex(&b.identity_key)).ok()?,
            signed_prekey: SignedPrekey {
                id: 1,
                created_at: x.bob.spk_timestamp,
                public_key: X25519PublicKey::from_bytes(unhex(&b.signed_pre_key)),
                signature: unhex(&b.signed_pre_key_sig),
            },
            one_time_prekey: opk.map(|k| OneTimePrekey {
                id: store.opk_ids[k],
                public_key: X25519PublicKey::from_bytes(unhex(k)),
            }),
            pq_prekey: b.pq_pre_key.as_ref().map(pq_from),
        })
    };
    assert_eq!(profile == Profile::V2, x.bundle.pq_pre_key.is_some());
    if let Some(pq) = &x.bundle.pq_pre_key {
        // The published key and its signature are exactly what the held seed and Bob's
        // identity give (Ed25519 is deterministic): the signed message format agrees.
        let held = prekeys
            .pq_prekey(pq.id)
            .expect("bundle's PQ prekey is held");
        assert_eq!(held.public(), pq_from(pq), "PQ prekey from its seed");
    }
    let bundle = bundle_from(&x.bundle, x.chosen_opk.as_ref())
        .unwrap()
        .verify(profile)
        .unwrap();

    // X3DH: SK, AD and header from the injected ephemeral key and KEM randomness.
    let mut eph = ScriptedRng::default();
    eph.keys.push_back(unhex(&x.alice_ephemeral_priv));
    if profile == Profile::V2 {
        eph.keys
            .push_back(unhex(x.kem_encaps_randomness.as_ref().unwrap()));
    }
    let (out, header, _) = x3dh::initiate(&mut eph, &alice, &bundle).unwrap();
    assert!(eph.keys.is_empty());
    assert_eq!(h(&*out.shared_secret), x.shared_secret, "SK");
    assert_eq!(h(&out.associated_data), x.associated_data, "AD");
    assert_eq!(h(header.identity_key.as_bytes()), x.header.identity_key);
    assert_eq!(h(header.ephemeral_key.as_bytes()), x.header.ephemeral_key);
    assert_eq!(x.header.pre_key, x.chosen_opk);
    assert_eq!(header_from(&x.header, &store), header, "X3DH header");
    if let Some(pq_header) = &header.pq {
        let pq = x.bundle.pq_pre_key.as_ref().unwrap();
        assert_eq!(pq_header.prekey_id, pq.id);
        assert_eq!(Some(h(&pq_header.ciphertext[..])), x.kem_ciphertext, "CT");
        let mut m = ScriptedRng::default();
        m.keys
            .push_back(unhex(x.kem_encaps_randomness.as_ref().unwrap()));
        let (_, ss) = pq::encapsulate(&mut m, &pq_from(pq).encapsulation_key).unwrap();
        assert_eq!(Some(h(&ss[..])), x.kem_shared_secret, "KEM shared secret");
        let held = prekeys.pq_prekey(pq.id).unwrap();
        assert_eq!(h(&held.decapsulate(&pq_header.ciphertext)[..]), h(&ss[..]));
    }
    let pq_pair = header
        .pq
        .as_ref()
        .map(|p| prekeys.pq_prekey(p.prekey_id).unwrap());
    let theirs = x3dh::respond(
        &bob,
        &store.spk,
        header
            .one_time_prekey_id
            .and_then(|id| prekeys.one_time.get(&id)),
        pq_pair,
        &header,
    )
    .unwrap();
    assert_eq!(h(&*theirs.shared_secret), x.shared_secret, "responder's SK");

    let r = &file.ratchet;
    replay_reject_cases(x, &store, profile, limits, &bob, &alice, r, &bundle_from);

    // Ratchet: inject keys and nonces, run every event, compare bytes and decisions.
    let mut rng_a = ScriptedRng::default();
    rng_a.keys.push_back(unhex(&x.alice_ephemeral_priv));
    if let Some(m) = &x.kem_encaps_randomness {
        rng_a.keys.push_back(unhex(m));
    }
    rng_a
        .keys
        .extend(r.alice_ratchet_privs.iter().map(|k| unhex::<32>(k)));
    let mut rng_b = ScriptedRng::default();
    rng_b
        .keys
        .extend(r.bob_ratchet_privs.iter().map(|k| unhex::<32>(k)));
    for e in r.events.iter().filter(|e| e.op == "send") {
        let nonce: [u8; 24] = unhex::<24>(&e.ciphertext.as_ref().unwrap()[..48]);
        if e.party == "alice" {
            rng_a.nonces.push_back(nonce);
        } else {
            rng_b.nonces.push_back(nonce);
        }
    }
    let mut a = Some(Session::initiate_with_limits(&mut rng_a, &alice, &bundle, limits).unwrap());
    let mut b: Option<Session> = None;
    let mut sent: HashMap<&str, (Envelope, Vec<u8>)> = HashMap::new();
    for (i, e) in r.events.iter().enumerate() {
        let to_alice = e.party == "alice";
        let what = format!("event {i} ({} {} {})", e.op, e.party, e.id);
        match e.op.as_str() {
            "send" => {
                let (s, rng) = if to_alice {
                    (a.as_mut().unwrap(), &mut rng_a)
                } else {
                    (
                        b.as_mut().expect("bob sends only after receiving"),
                        &mut rng_b,
                    )
                };
                let pt = hex::decode(e.plaintext.as_ref().unwrap()).unwrap();
                let env = s.encrypt(rng, &pt).unwrap();
                let m = env.ratchet_message();
                assert_eq!(Some(h(&m.header.to_bytes())), e.header, "{what}: header");
                assert_eq!(Some(h(&m.ciphertext)), e.ciphertext, "{what}: ciphertext");
                if let Some(mk) = &e.mk {
                    assert_eq!(&h(&s.ratchet.last_message_key.unwrap()), mk, "{what}: mk");
                }
                sent.insert(&e.id, (env, pt));
            }
            "recv" => {
                let (env, pt) = sent
                    .get(e.id.as_str())
                    .expect("recv of an unsent id")
                    .clone();
                let mut m = env.ratchet_message().clone();
                let mut parse_ok = true;
                if let Some(hd) = &e.header {
                    match Header::from_bytes(&hex::decode(hd).unwrap()) {
                        Ok(hd) => m.header = hd,
                        Err(_) => parse_ok = false,
                    }
                }
                if let Some(ct) = &e.ciphertext {
                    m.ciphertext = hex::decode(ct).unwrap();
                }
                let env = with_message(&env, m);
                let (rng, identity, peer, session) = if to_alice {
                    (&mut rng_a, &alice, bob.public_key(), &mut a)
                } else {
                    (&mut rng_b, &bob, alice.public_key(), &mut b)
                };
                let got = if parse_ok {
                    deliver(
                        rng,
                        identity,
                        &peer,
                        profile,
                        &mut prekeys,
                        session,
                        &env,
                        limits,
                    )
                } else {
                    Err(())
                };
                let expected_ok = e.result.as_deref() == Some("ok");
                assert_eq!(got.is_ok(), expected_ok, "{what}: {:?}", e.note);
                if let Ok(got) = got {
                    assert_eq!(got, pt, "{what}: plaintext");
                }
            }
            other => panic!("{what}: unknown op {other}"),
        }
    }
    // hush-proto makes the sending half of a DH step (and its new ratchet key) lazily, at the
    // next send. A file from an implementation that generates eagerly may therefore list one
    // final key per party that a run ending on a receive never draws; every other key is used.
    assert!(
        rng_a.keys.len() <= 1 && rng_b.keys.len() <= 1,
        "listed ratchet keys left unused"
    );
    assert!(rng_a.nonces.is_empty() && rng_b.nonces.is_empty());
    // A one-time PQ prekey that set up the session is gone; the last-resort one stays.
    if let Some(pq) = &header.pq {
        let still_held = prekeys.pq_prekey(pq.prekey_id).is_some();
        assert_eq!(still_held, pq.prekey_id & pq::LAST_RESORT_ID_BIT != 0);
    }
}

/// Every reject case: a bundle must fail verification; a header (as delivered) must not open
/// the initial message, leave Bob's prekeys as they were, and the genuine one opens after.
#[allow(clippy::too_many_arguments)]
fn replay_reject_cases(
    x: &X3dhVectors,
    store: &BobStore,
    profile: Profile,
    limits: RatchetLimits,
    bob: &IdentityKeyPair,
    alice: &IdentityKeyPair,
    r: &RatchetVectors,
    bundle_from: &dyn Fn(&BundleVec, Option<&String>) -> Option<PrekeyBundle>,
) {
    let first = r
        .events
        .iter()
        .find(|e| e.op == "send" && e.party == "alice")
        .expect("an initial message");
    let initial = RatchetMessage {
        header: Header::from_bytes(&hex::decode(first.header.as_ref().unwrap()).unwrap()).unwrap(),
        ciphertext: hex::decode(first.ciphertext.as_ref().unwrap()).unwrap(),
    };
    for case in &x.reject_cases {
        let expect_ok = case.result == "ok";
        if let Some(bundle) = &case.bundle {
            let accepted = bundle_from(bundle, None).is_some_and(|b| b.verify(profile).is_ok());
            assert_eq!(accepted, expect_ok, "reject case {}", case.name);
        }
        if let Some(header) = &case.header {
            let message = PrekeyMessage {
                x3dh: header_from(header, store),
                message: initial.clone(),
            };
            let before = store.prekeys.pickle();
            let opened = Session::respond_with_limits(
                &mut ChaCha20Rng::seed_from_u64(0),
                bob,
                &alice.public_key(),
                profile,
                &store.prekeys,
                &message,
                limits,
            )
            .is_ok();
            assert_eq!(opened, expect_ok, "reject case {}", case.name);
            assert!(store.prekeys.pickle() == before, "{}: committed", case.name);
        }
        assert!(
            case.bundle.is_some() || case.header.is_some(),
            "reject case {} holds neither a bundle nor a header",
            case.name
        );
    }
}
