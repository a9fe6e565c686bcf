//! Generation: run a scripted conversation between two parties with seeded, recording RNGs and
//! write down every key, KEM input, header, ciphertext and accept/reject decision.

use std::collections::HashMap;

use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

use super::format::*;
use super::rng::{RecordingRng, ScriptedRng};
use super::{deliver, with_message};
use crate::pq::{PqPrekeyPair, KEM_CIPHERTEXT_LEN};
use crate::ratchet::RatchetLimits;
use crate::x3dh::{self, PrekeyStore};
use crate::*;

#[derive(Clone, Copy)]
pub(super) enum Tamper {
    TagBit,
    CiphertextBit,
    NonceBit,
    Truncate(usize),
    HeaderCounter(u32),
    HeaderPn(u32),
    HeaderKey,
}

pub(super) enum Step {
    Send(bool, &'static str, &'static str),
    Recv(bool, &'static str, bool, &'static str),
    Tampered(bool, &'static str, Tamper, &'static str),
}
use Step::*;

/// Which PQ prekey (if any) Bob's bundle carries.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum PqChoice {
    /// `hush-v1`: none.
    None,
    /// A one-time PQ prekey (Bob holds two, and his last-resort key).
    OneTime,
    /// The last-resort PQ prekey: Bob has no one-time PQ prekey left.
    LastResort,
}

/// How a file's session is set up.
#[derive(Clone, Copy)]
pub(super) struct Setup {
    pub(super) seed: u64,
    pub(super) with_opk: bool,
    pub(super) pq: PqChoice,
    pub(super) limits: RatchetLimits,
}

impl Setup {
    fn profile(&self) -> Profile {
        match self.pq {
            PqChoice::None => Profile::V1,
            PqChoice::OneTime | PqChoice::LastResort => Profile::V2,
        }
    }
}

const CREATED_AT: u64 = 1_767_225_600;

struct Generator {
    profile: Profile,
    rng_a: RecordingRng,
    rng_b: RecordingRng,
    alice: IdentityKeyPair,
    bob: IdentityKeyPair,
    prekeys: LocalPrekeys,
    /// Bob's prekeys before the conversation (before the initial message used any up).
    initial_prekeys: LocalPrekeys,
    a: Option<Session>,
    b: Option<Session>,
    limits: RatchetLimits,
    sent: HashMap<&'static str, (Envelope, Vec<u8>)>,
    first_alice_send: Option<&'static str>,
    alice_privs: Vec<String>,
    bob_privs: Vec<String>,
    events: Vec<Event>,
    sent_at: u64,
}

fn pq_vec(pq: &PqPrekey) -> PqPrekeyVec {
    PqPrekeyVec {
        id: pq.id,
        ek: h(&pq.encapsulation_key[..]),
        sig: h(&pq.signature),
    }
}

/// Bundle-level reject cases: the `hush-v1` ones, and for `hush-v2` a flipped PQ prekey
/// signature and a PQ prekey (same id) made and signed by another identity.
fn bundle_reject_cases(
    bundle_vec: &BundleVec,
    opks: &[OneTimePrekey],
    alice: &IdentityKeyPair,
    seed: u64,
) -> Vec<(&'static str, BundleVec)> {
    let mut cases = Vec::new();
    let mut flipped = bundle_vec.clone();
    let mut sig = unhex::<64>(&flipped.signed_pre_key_sig);
    sig[0] ^= 0x80;
    flipped.signed_pre_key_sig = h(&sig);
    cases.push(("spk_signature_bit_flipped", flipped));
    let mut replaced = bundle_vec.clone();
    replaced.signed_pre_key = h(opks[0].public_key.as_bytes());
    cases.push(("spk_replaced_signature_kept", replaced));
    let mut other_identity = bundle_vec.clone();
    other_identity.identity_key = h(alice.public_key().as_bytes());
    cases.push(("identity_key_substituted", other_identity));
    if let Some(pq) = &bundle_vec.pq_pre_key {
        let mut flipped = bundle_vec.clone();
        let mut sig = unhex::<64>(&pq.sig);
        sig[0] ^= 0x80;
        if let Some(p) = flipped.pq_pre_key.as_mut() {
            p.sig = h(&sig);
        }
        cases.push(("pq_prekey_signature_bit_flipped", flipped));
        // What a relay could substitute: a valid PQ prekey with the same id, made and signed
        // by an identity it controls.
        let mut rng = ChaCha20Rng::seed_from_u64(seed ^ 0x6d616c);
        let mallory = IdentityKeyPair::generate(&mut rng);
        let theirs = PqPrekeyPair::generate(&mut rng, &mallory, pq.id, CREATED_AT).public();
        let mut other = bundle_vec.clone();
        other.pq_pre_key = Some(pq_vec(&theirs));
        cases.push(("pq_prekey_signed_by_other_identity", other));
    }
    cases
}

pub(super) fn generate(setup: Setup, steps: &[Step]) -> VectorFile {
    let Setup {
        seed,
        with_opk,
        pq: pq_choice,
        limits,
    } = setup;
    let profile = setup.profile();
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    let alice = IdentityKeyPair::generate(&mut rng);
    let bob = IdentityKeyPair::generate(&mut rng);
    let mut prekeys = match profile {
        // The hush-v1 files keep the draws they were committed with.
        Profile::V1 => LocalPrekeys::new_classical(&mut rng, &bob, CREATED_AT),
        Profile::V2 => LocalPrekeys::new(&mut rng, &bob, CREATED_AT),
    };
    let opks = prekeys.generate_one_time(&mut rng, 3);
    let pq_chosen = match pq_choice {
        PqChoice::None => None,
        PqChoice::OneTime => prekeys
            .generate_pq_one_time(&mut rng, &bob, 2, CREATED_AT)
            .first()
            .cloned(),
        PqChoice::LastResort => prekeys.current_pq_last_resort(),
    };
    let spk = prekeys.current_signed().unwrap();
    let chosen = if with_opk { opks.get(1).copied() } else { None };
    let bundle = PrekeyBundle {
        identity_key: bob.public_key(),
        signed_prekey: spk,
        one_time_prekey: chosen,
        pq_prekey: pq_chosen.clone(),
    };
    let bundle_vec = BundleVec {
        identity_key: h(bob.public_key().as_bytes()),
        signed_pre_key: h(spk.public_key.as_bytes()),
        signed_pre_key_sig: h(&spk.signature),
        pre_keys: opks.iter().map(|o| h(o.public_key.as_bytes())).collect(),
        pq_pre_key: pq_chosen.as_ref().map(pq_vec),
    };
    let reject_cases = bundle_reject_cases(&bundle_vec, &opks, &alice, seed);

    let verified = bundle.clone().verify(profile).unwrap();
    let mut rng_a = RecordingRng::new(ChaCha20Rng::seed_from_u64(seed ^ 0xa11ce));
    let a = Session::initiate_with_limits(&mut rng_a, &alice, &verified, limits).unwrap();
    // Ephemeral key, [KEM m,] first ratchet key.
    let kem_draws = usize::from(profile == Profile::V2);
    assert_eq!(rng_a.draws.len(), 2 + kem_draws, "initiate's draws");
    let ephemeral = rng_a.draws[0].clone();
    let kem_m = (kem_draws == 1).then(|| rng_a.draws[1].clone());
    let alice_privs = vec![h(&rng_a.draws[1 + kem_draws])];

    // X3DH intermediate values, recomputed from the injected ephemeral key (and KEM m).
    let mut eph_rng = ScriptedRng::default();
    eph_rng
        .keys
        .push_back(ephemeral.clone().try_into().unwrap());
    if let Some(m) = &kem_m {
        eph_rng.keys.push_back(m.clone().try_into().unwrap());
    }
    let (output, header, _) = x3dh::initiate(&mut eph_rng, &alice, &verified).unwrap();
    let kem = match (&pq_chosen, &kem_m) {
        (Some(pq), Some(m)) => {
            let mut m_rng = ScriptedRng::default();
            m_rng.keys.push_back(m.clone().try_into().unwrap());
            let (ct, ss) = crate::pq::encapsulate(&mut m_rng, &pq.encapsulation_key).unwrap();
            assert_eq!(Some(&ct), header.pq.as_ref().map(|p| &p.ciphertext));
            Some((h(m), h(&ct[..]), h(&ss[..])))
        }
        _ => None,
    };
    let pq_secrets = (profile == Profile::V2).then(|| {
        let mut held: Vec<_> = prekeys.pq_one_time.values().collect();
        held.extend(prekeys.pq_last_resort.iter());
        held.iter()
            .map(|pair| PqPrekeySecretVec {
                id: pair.id,
                seed: h(&pair.seed()[..]),
                last_resort: pair.is_last_resort(),
            })
            .collect()
    });
    let x3dh_vectors = X3dhVectors {
        alice: AliceKeys {
            identity_seed: h(&*alice.seed()),
        },
        bob: BobKeys {
            identity_seed: h(&*bob.seed()),
            spk_priv: h(&*prekeys.signed_prekey(spk.id).unwrap().secret.to_bytes()),
            spk_timestamp: spk.created_at,
            opk_privs: opks
                .iter()
                .map(|o| h(&*prekeys.one_time_prekey(o.id).unwrap().secret.to_bytes()))
                .collect(),
            pq_prekeys: pq_secrets,
        },
        bundle: bundle_vec,
        alice_ephemeral_priv: h(&ephemeral),
        chosen_opk: chosen.map(|o| h(o.public_key.as_bytes())),
        kem_encaps_randomness: kem.as_ref().map(|k| k.0.clone()),
        kem_ciphertext: kem.as_ref().map(|k| k.1.clone()),
        kem_shared_secret: kem.as_ref().map(|k| k.2.clone()),
        header: header_vec(&header, &spk, chosen.as_ref()),
        shared_secret: h(&*output.shared_secret),
        associated_data: h(&output.associated_data),
        reject_cases: reject_cases
            .into_iter()
            .map(|(name, bundle)| RejectCase {
                name: name.into(),
                bundle: Some(bundle),
                header: None,
                result: "reject".into(),
            })
            .collect(),
    };

    let mut g = Generator {
        profile,
        rng_a,
        rng_b: RecordingRng::new(ChaCha20Rng::seed_from_u64(seed ^ 0xb0b)),
        alice,
        bob,
        initial_prekeys: prekeys.clone(),
        prekeys,
        a: Some(a),
        b: None,
        limits,
        sent: HashMap::new(),
        first_alice_send: None,
        alice_privs,
        bob_privs: Vec::new(),
        events: Vec::new(),
        sent_at: 1_767_225_600_000,
    };
    for step in steps {
        g.step(step);
    }
    let mut x3dh_vectors = x3dh_vectors;
    if profile == Profile::V2 {
        x3dh_vectors.reject_cases.push(g.kem_ciphertext_flip(&spk));
    }
    VectorFile {
        format: FORMAT.into(),
        generator: format!(
            "hush-proto {} (seeded ChaCha20, seed {seed})",
            env!("CARGO_PKG_VERSION")
        ),
        params: params(profile, limits),
        x3dh: x3dh_vectors,
        ratchet: RatchetVectors {
            alice_ratchet_privs: g.alice_privs,
            bob_ratchet_privs: g.bob_privs,
            events: g.events,
        },
    }
}

/// The X3DH header as the format writes it: prekeys by public key, PQ prekey by id.
fn header_vec(
    header: &X3dhHeader,
    spk: &SignedPrekey,
    opk: Option<&OneTimePrekey>,
) -> X3dhHeaderVec {
    X3dhHeaderVec {
        identity_key: h(header.identity_key.as_bytes()),
        ephemeral_key: h(header.ephemeral_key.as_bytes()),
        signed_pre_key: h(spk.public_key.as_bytes()),
        pre_key: opk.map(|o| h(o.public_key.as_bytes())),
        pq_pre_key_id: header.pq.as_ref().map(|p| p.prekey_id),
        kem_ciphertext: header.pq.as_ref().map(|p| h(&p.ciphertext[..])),
    }
}

impl Generator {
    /// The reject case `kem_ciphertext_bit_flipped`: the initial message with one bit of the
    /// KEM ciphertext flipped (in the middle) is refused, and Bob's prekeys are untouched.
    fn kem_ciphertext_flip(&self, spk: &SignedPrekey) -> RejectCase {
        let first = self
            .first_alice_send
            .expect("alice sent an initial message");
        let Envelope::Prekey(pre) = &self.sent[first].0 else {
            panic!("the initial message is a prekey envelope");
        };
        let mut pre = pre.clone();
        let pq = pre.x3dh.pq.as_mut().unwrap();
        pq.ciphertext[KEM_CIPHERTEXT_LEN / 2] ^= 0x01;
        let prekeys = &self.initial_prekeys;
        let before = prekeys.pickle();
        let result = Session::respond_with_limits(
            &mut ChaCha20Rng::seed_from_u64(0),
            &self.bob,
            &self.alice.public_key(),
            self.profile,
            prekeys,
            &pre,
            self.limits,
        );
        assert!(
            matches!(result, Err(SessionError::InitialMessage(_))),
            "a flipped KEM ciphertext must fail at the first message"
        );
        assert!(prekeys.pickle() == before, "nothing committed");
        // The genuine initial message still opens with the same prekeys.
        let Envelope::Prekey(genuine) = &self.sent[first].0 else {
            unreachable!()
        };
        Session::respond_with_limits(
            &mut ChaCha20Rng::seed_from_u64(0),
            &self.bob,
            &self.alice.public_key(),
            self.profile,
            prekeys,
            genuine,
            self.limits,
        )
        .unwrap();
        let opk = pre.x3dh.one_time_prekey_id.map(|id| OneTimePrekey {
            id,
            public_key: prekeys.one_time[&id].secret.public_key(),
        });
        RejectCase {
            name: "kem_ciphertext_bit_flipped".into(),
            bundle: None,
            header: Some(header_vec(&pre.x3dh, spk, opk.as_ref())),
            result: "reject".into(),
        }
    }

    fn step(&mut self, step: &Step) {
        match *step {
            Send(alice, id, text) => self.send(alice, id, text),
            Recv(to_alice, id, expect_ok, note) => {
                let env = self.sent[id].0.clone();
                self.recv(to_alice, id, &env, expect_ok, None, note);
            }
            Tampered(to_alice, id, tamper, note) => {
                let env = self.sent[id].0.clone();
                let mut m = env.ratchet_message().clone();
                let n = m.ciphertext.len();
                let mut header_changed = false;
                match tamper {
                    Tamper::TagBit => m.ciphertext[n - 1] ^= 0x01,
                    Tamper::CiphertextBit => m.ciphertext[24] ^= 0x01,
                    Tamper::NonceBit => m.ciphertext[0] ^= 0x01,
                    Tamper::Truncate(len) => m.ciphertext.truncate(len),
                    Tamper::HeaderCounter(c) => {
                        m.header.counter = c;
                        header_changed = true;
                    }
                    Tamper::HeaderPn(pn) => {
                        m.header.previous_chain_length = pn;
                        header_changed = true;
                    }
                    Tamper::HeaderKey => {
                        let mut rng = ChaCha20Rng::seed_from_u64(u64::from(m.header.counter));
                        m.header.ratchet_key = X25519Secret::generate(&mut rng).public_key();
                        header_changed = true;
                    }
                }
                let tampered = with_message(&env, m.clone());
                let overrides = (
                    header_changed.then(|| h(&m.header.to_bytes())),
                    (!header_changed).then(|| h(&m.ciphertext)),
                );
                self.recv(to_alice, id, &tampered, false, Some(overrides), note);
            }
        }
    }

    fn send(&mut self, alice: bool, id: &'static str, text: &str) {
        self.sent_at += 1000;
        let mut msg_id = [0u8; 16];
        msg_id[..id.len()].copy_from_slice(id.as_bytes());
        let content = MessageContent {
            id: msg_id,
            sent_at_ms: self.sent_at,
            content_type: ContentType::TEXT,
            body: text.as_bytes().to_vec(),
        };
        let plaintext = content.to_padded_bytes().unwrap().to_vec();
        let (session, rng) = if alice {
            (self.a.as_mut().unwrap(), &mut self.rng_a)
        } else {
            (self.b.as_mut().unwrap(), &mut self.rng_b)
        };
        let draws_before = rng.draws.len();
        let env = session.encrypt(rng, &plaintext).unwrap();
        let privs = if alice {
            &mut self.alice_privs
        } else {
            &mut self.bob_privs
        };
        for draw in &rng.draws[draws_before..] {
            // The sending half of a DH step draws the new ratchet key; then the nonce.
            if draw.len() == 32 {
                privs.push(h(draw));
            }
        }
        let m = env.ratchet_message();
        self.events.push(Event {
            op: "send".into(),
            party: party_name(alice),
            id: id.into(),
            plaintext: Some(h(&plaintext)),
            header: Some(h(&m.header.to_bytes())),
            ciphertext: Some(h(&m.ciphertext)),
            mk: session.ratchet.last_message_key.map(|k| h(&k)),
            ..Event::default()
        });
        if alice && self.first_alice_send.is_none() {
            self.first_alice_send = Some(id);
        }
        self.sent.insert(id, (env, plaintext));
    }

    fn recv(
        &mut self,
        to_alice: bool,
        id: &'static str,
        env: &Envelope,
        expect_ok: bool,
        overrides: Option<(Option<String>, Option<String>)>,
        note: &str,
    ) {
        let (rng, identity, peer, session) = if to_alice {
            (
                &mut self.rng_a,
                &self.alice,
                self.bob.public_key(),
                &mut self.a,
            )
        } else {
            (
                &mut self.rng_b,
                &self.bob,
                self.alice.public_key(),
                &mut self.b,
            )
        };
        let draws_before = rng.draws.len();
        let result = deliver(
            rng,
            identity,
            &peer,
            self.profile,
            &mut self.prekeys,
            session,
            env,
            self.limits,
        );
        assert_eq!(result.is_ok(), expect_ok, "{id}: {note}");
        if let Ok(pt) = &result {
            assert_eq!(pt, &self.sent[id].1);
        }
        assert_eq!(
            rng.draws.len(),
            draws_before,
            "a receive draws no randomness"
        );
        let (header, ciphertext) = overrides.unwrap_or((None, None));
        self.events.push(Event {
            op: "recv".into(),
            party: party_name(to_alice),
            id: id.into(),
            header,
            ciphertext,
            result: Some(if expect_ok { "ok" } else { "reject" }.into()),
            note: (!note.is_empty()).then(|| note.to_string()),
            ..Event::default()
        });
    }
}

fn party_name(alice: bool) -> String {
    if alice { "alice" } else { "bob" }.into()
}
