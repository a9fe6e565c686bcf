//! The two-party simulation behind the random-interleaving property tests (in `tests.rs` for
//! `hush-v1` and `tests_v2.rs` for `hush-v2`): messages are sent, delivered in any order,
//! replayed and corrupted, and every failure must leave the receiver's state unchanged.

use proptest::prelude::*;
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

use crate::tests::{bundle_of, party, Party};
use crate::*;

#[derive(Clone, Debug)]
pub(crate) enum Op {
    Send {
        from_alice: bool,
    },
    Deliver {
        to_bob: bool,
        pick: usize,
    },
    Replay {
        to_bob: bool,
        pick: usize,
    },
    Corrupt {
        to_bob: bool,
        pick: usize,
        bit: usize,
    },
}

pub(crate) fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => any::<bool>().prop_map(|from_alice| Op::Send { from_alice }),
        3 => (any::<bool>(), any::<usize>()).prop_map(|(to_bob, pick)| Op::Deliver { to_bob, pick }),
        1 => (any::<bool>(), any::<usize>()).prop_map(|(to_bob, pick)| Op::Replay { to_bob, pick }),
        1 => (any::<bool>(), any::<usize>(), any::<usize>())
            .prop_map(|(to_bob, pick, bit)| Op::Corrupt { to_bob, pick, bit }),
    ]
}

pub(crate) struct InFlight {
    pub(crate) wire: Vec<u8>,
    plaintext: Vec<u8>,
    delivered: bool,
}

pub(crate) struct Sim {
    /// The profile of the session and the weakest one Bob accepts.
    profile: Profile,
    rng: ChaCha20Rng,
    alice: Party,
    bob: Party,
    bundle: VerifiedBundle,
    pub(crate) to_bob: Vec<InFlight>,
    to_alice: Vec<InFlight>,
    sent: u32,
}

impl Sim {
    pub(crate) fn new(seed: u64) -> Self {
        Self::with_profile(seed, Profile::V1)
    }

    /// A simulation over a session of `profile`. For `hush-v2` the bundle carries Bob's
    /// one-time PQ prekey, or (one seed in three) his last-resort one.
    pub(crate) fn with_profile(seed: u64, profile: Profile) -> Self {
        let mut rng = ChaCha20Rng::seed_from_u64(seed);
        let alice = party(&mut rng, 0);
        let mut bob = party(&mut rng, 1);
        let mut bundle = bundle_of(&bob, seed.is_multiple_of(2));
        if profile == Profile::V2 {
            let one_time =
                bob.prekeys
                    .generate_pq_one_time(&mut rng, &bob.identity, 1, 1_700_000_000);
            bundle.pq_prekey = if seed.is_multiple_of(3) {
                bob.prekeys.current_pq_last_resort()
            } else {
                one_time.first().cloned()
            };
        }
        let bundle = bundle.verify(profile).unwrap();
        Self {
            profile,
            rng,
            alice,
            bob,
            bundle,
            to_bob: Vec::new(),
            to_alice: Vec::new(),
            sent: 0,
        }
    }

    fn send(&mut self, from_alice: bool) {
        self.sent += 1;
        let text = format!("message {}", self.sent).into_bytes();
        let (p, queue) = if from_alice {
            if self.alice.session.is_none() {
                let s =
                    Session::initiate(&mut self.rng, &self.alice.identity, &self.bundle).unwrap();
                self.alice.session = Some(s);
            }
            (&mut self.alice, &mut self.to_bob)
        } else {
            (&mut self.bob, &mut self.to_alice)
        };
        let Some(session) = p.session.as_mut() else {
            return; // Bob cannot send before he has a session.
        };
        let env = session.encrypt(&mut self.rng, &text).unwrap();
        queue.push(InFlight {
            wire: env.to_bytes(),
            plaintext: text,
            delivered: false,
        });
    }

    /// Deliver `wire` to a party; returns the plaintext on success. Checks that a failure
    /// leaves the party's state exactly as it was.
    pub(crate) fn receive(&mut self, to_bob: bool, wire: &[u8]) -> Option<Vec<u8>> {
        let peer = if to_bob {
            self.alice.identity.public_key()
        } else {
            self.bob.identity.public_key()
        };
        let p = if to_bob {
            &mut self.bob
        } else {
            &mut self.alice
        };
        let before = p.session.as_ref().map(Session::pickle);
        let result = match Envelope::from_bytes(wire) {
            Err(_) => None,
            Ok(env) => match (p.session.as_mut(), env) {
                (Some(s), env) => s.decrypt(&mut self.rng, &env).ok().map(|pt| pt.to_vec()),
                (None, Envelope::Prekey(pre)) => {
                    match Session::respond(
                        &mut self.rng,
                        &p.identity,
                        &peer,
                        self.profile,
                        &p.prekeys,
                        &pre,
                    ) {
                        Ok(inbound) => {
                            p.session = Some(inbound.session);
                            // Used one-time keys go in the commit that stores the session.
                            if let Some(id) = inbound.used_one_time_prekey {
                                p.prekeys.remove_one_time(id);
                            }
                            if let Some(id) = inbound.used_one_time_pq_prekey {
                                p.prekeys.remove_pq_one_time(id);
                            }
                            Some(inbound.plaintext.to_vec())
                        }
                        Err(_) => None,
                    }
                }
                (None, Envelope::Message(_)) => None,
            },
        };
        if result.is_none() {
            let after = p.session.as_ref().map(Session::pickle);
            assert!(before == after, "a rejected message changed the session");
        }
        result
    }

    pub(crate) fn apply(&mut self, op: Op) {
        match op {
            Op::Send { from_alice } => self.send(from_alice),
            Op::Deliver { to_bob, pick } => {
                let queue = if to_bob { &self.to_bob } else { &self.to_alice };
                let pending: Vec<usize> =
                    (0..queue.len()).filter(|&i| !queue[i].delivered).collect();
                if pending.is_empty() {
                    return;
                }
                let i = pending[pick % pending.len()];
                let wire = queue[i].wire.clone();
                let got = self.receive(to_bob, &wire);
                let queue = if to_bob {
                    &mut self.to_bob
                } else {
                    &mut self.to_alice
                };
                assert_eq!(
                    got.as_deref(),
                    Some(&queue[i].plaintext[..]),
                    "genuine message lost"
                );
                queue[i].delivered = true;
            }
            Op::Replay { to_bob, pick } => {
                let queue = if to_bob { &self.to_bob } else { &self.to_alice };
                let done: Vec<usize> = (0..queue.len()).filter(|&i| queue[i].delivered).collect();
                if done.is_empty() {
                    return;
                }
                let wire = queue[done[pick % done.len()]].wire.clone();
                assert_eq!(self.receive(to_bob, &wire), None, "replay accepted");
            }
            Op::Corrupt { to_bob, pick, bit } => {
                let queue = if to_bob { &self.to_bob } else { &self.to_alice };
                if queue.is_empty() {
                    return;
                }
                let mut wire = queue[pick % queue.len()].wire.clone();
                let bit = bit % (wire.len() * 8);
                wire[bit / 8] ^= 1 << (bit % 8);
                assert_eq!(
                    self.receive(to_bob, &wire),
                    None,
                    "corrupted message accepted"
                );
            }
        }
    }

    /// Everything still in flight arrives: every genuine message decrypts exactly once.
    pub(crate) fn drain(&mut self) {
        for to_bob in [true, false] {
            let n = if to_bob {
                self.to_bob.len()
            } else {
                self.to_alice.len()
            };
            for i in (0..n).rev() {
                let q = if to_bob { &self.to_bob } else { &self.to_alice };
                if q[i].delivered {
                    continue;
                }
                let wire = q[i].wire.clone();
                let expected = q[i].plaintext.clone();
                assert_eq!(
                    self.receive(to_bob, &wire),
                    Some(expected),
                    "late message lost"
                );
            }
        }
    }
}
