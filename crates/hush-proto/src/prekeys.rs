//! A user's own prekey secrets: the current and recent signed prekeys, the unused one-time
//! prekeys, and (`hush-v2`) the signed ML-KEM-768 prekeys: unused one-time ones and the current
//! and recent last-resort ones, with rotation and refill helpers.

use std::collections::BTreeMap;

use rand_core::CryptoRngCore;

use crate::keys::{
    IdentityKeyPair, OneTimePrekey, OneTimePrekeyPair, SignedPrekey, SignedPrekeyPair,
};
use crate::pq::{PqPrekey, PqPrekeyPair, LAST_RESORT_ID_BIT};
use crate::x3dh::PrekeyStore;

/// How many superseded signed prekeys are kept, so messages sent to a recently rotated key
/// still decrypt. Older ones are deleted for forward secrecy.
pub const SIGNED_PREKEYS_KEPT: usize = 3;

/// Most one-time prekey secrets kept: when a refill goes past it, the oldest are deleted.
/// The client publishes batches of 100 and refills below 25 left, so the relay serves at most
/// ~125 of ours; a key fetched by a sender survives 19 more refills (about 1 900 more fetches)
/// before it is dropped. That margin matters: anyone may fetch a user's bundle (0.5/s past a
/// burst of 20, the relay's per-user budget) and so push refills, and a sender who fetched a
/// key and writes later must still be read; with 500 kept, a third party could drop a waiting
/// sender's key in about 15 minutes of fetching. Keys older than that were withheld by a relay
/// or fetched by a sender who never wrote; keeping them without bound costs storage (64 bytes
/// each) and forward secrecy (a stolen profile would decrypt every first message ever sent to
/// them). A first message to a dropped key is refused with
/// [`crate::SessionError::UnknownOneTimePrekey`].
pub const MAX_ONE_TIME_PREKEYS: usize = 2000;

/// Most one-time PQ prekey secrets kept (64-byte seeds; each public key is 1 184 bytes, so
/// the relay stocks far fewer of them than classical ones). Same reasoning as
/// [`MAX_ONE_TIME_PREKEYS`]: the oldest beyond it are deleted, and a first message to one then
/// fails with [`crate::SessionError::UnknownPqPrekey`].
pub const MAX_ONE_TIME_PQ_PREKEYS: usize = 500;

/// How many superseded last-resort PQ prekeys are kept after a rotation, so first messages
/// sent to a recently replaced one still open (the same grace as signed prekeys).
pub const PQ_LAST_RESORT_KEPT: usize = SIGNED_PREKEYS_KEPT;

/// The prekey secrets a user holds.
#[derive(Clone, Debug)]
pub struct LocalPrekeys {
    /// Newest last.
    pub(crate) signed: Vec<SignedPrekeyPair>,
    pub(crate) one_time: BTreeMap<u32, OneTimePrekeyPair>,
    pub(crate) next_signed_id: u32,
    pub(crate) next_one_time_id: u32,
    /// One-time PQ prekeys by id (ids below [`LAST_RESORT_ID_BIT`]).
    pub(crate) pq_one_time: BTreeMap<u32, PqPrekeyPair>,
    /// Last-resort PQ prekeys, newest (current) last.
    pub(crate) pq_last_resort: Vec<PqPrekeyPair>,
    pub(crate) next_pq_one_time_id: u32,
    pub(crate) next_pq_last_resort_id: u32,
}

impl LocalPrekeys {
    /// A first signed prekey (id 1) and a first last-resort PQ prekey, created at `now`
    /// (seconds). Draws 32 + 64 bytes.
    pub fn new(rng: &mut impl CryptoRngCore, identity: &IdentityKeyPair, now: u64) -> Self {
        let mut store = Self::new_classical(rng, identity, now);
        store.rotate_pq_last_resort(rng, identity, now);
        store
    }

    /// A store with only the classical signed prekey, as a `hush-v1` build made it (the
    /// `hush-v1` vectors are generated from this, so their random draws stay as committed).
    pub(crate) fn new_classical(
        rng: &mut impl CryptoRngCore,
        identity: &IdentityKeyPair,
        now: u64,
    ) -> Self {
        let mut store = Self {
            signed: Vec::new(),
            one_time: BTreeMap::new(),
            next_signed_id: 1,
            next_one_time_id: 1,
            pq_one_time: BTreeMap::new(),
            pq_last_resort: Vec::new(),
            next_pq_one_time_id: 1,
            next_pq_last_resort_id: LAST_RESORT_ID_BIT | 1,
        };
        store.rotate_signed(rng, identity, now);
        store
    }

    /// The current last-resort PQ prekey, to publish (`None` only for a store loaded from a
    /// `hush-v1` pickle that has not been given one yet).
    pub fn current_pq_last_resort(&self) -> Option<PqPrekey> {
        self.pq_last_resort.last().map(PqPrekeyPair::public)
    }

    /// Make a new last-resort PQ prekey (draws 64 bytes); keep the last
    /// [`PQ_LAST_RESORT_KEPT`] old ones so late first messages to them still open. Rotate it
    /// whenever the signed prekey is rotated.
    pub fn rotate_pq_last_resort(
        &mut self,
        rng: &mut impl CryptoRngCore,
        identity: &IdentityKeyPair,
        now: u64,
    ) -> PqPrekey {
        let id = self.next_pq_last_resort_id | LAST_RESORT_ID_BIT;
        let next = self.next_pq_last_resort_id.wrapping_add(1) | LAST_RESORT_ID_BIT;
        // Skip the wrapped-to-zero id (0x8000_0000) so every id stays non-trivial.
        self.next_pq_last_resort_id = next.max(LAST_RESORT_ID_BIT | 1);
        let pair = PqPrekeyPair::generate(rng, identity, id, now);
        let public = pair.public();
        self.pq_last_resort.retain(|old| old.id != id);
        self.pq_last_resort.push(pair);
        while self.pq_last_resort.len() > PQ_LAST_RESORT_KEPT + 1 {
            self.pq_last_resort.remove(0);
        }
        public
    }

    /// Make `count` new one-time PQ prekeys (draws 64 bytes each); the caller persists this
    /// store, then publishes them. Keeps at most [`MAX_ONE_TIME_PQ_PREKEYS`].
    pub fn generate_pq_one_time(
        &mut self,
        rng: &mut impl CryptoRngCore,
        identity: &IdentityKeyPair,
        count: usize,
        now: u64,
    ) -> Vec<PqPrekey> {
        let made = (0..count)
            .map(|_| {
                let id = self.next_pq_one_time_id;
                let next = self.next_pq_one_time_id.wrapping_add(1) & !LAST_RESORT_ID_BIT;
                self.next_pq_one_time_id = next.max(1);
                let pair = PqPrekeyPair::generate(rng, identity, id, now);
                let public = pair.public();
                self.pq_one_time.insert(id, pair);
                public
            })
            .collect();
        let excess = self
            .pq_one_time
            .len()
            .saturating_sub(MAX_ONE_TIME_PQ_PREKEYS);
        if excess > 0 {
            let next = self.next_pq_one_time_id;
            let mut ids: Vec<u32> = self.pq_one_time.keys().copied().collect();
            ids.sort_unstable_by_key(|id| {
                std::cmp::Reverse(next.wrapping_sub(*id) & !LAST_RESORT_ID_BIT)
            });
            for id in ids.into_iter().take(excess) {
                self.pq_one_time.remove(&id);
            }
        }
        made
    }

    /// Delete a used one-time PQ prekey (in the commit that stores the session it created).
    /// Last-resort keys are not deleted this way: they serve many initiators.
    pub fn remove_pq_one_time(&mut self, id: u32) -> bool {
        self.pq_one_time.remove(&id).is_some()
    }

    /// Unused one-time PQ prekeys held.
    pub fn pq_one_time_count(&self) -> usize {
        self.pq_one_time.len()
    }

    /// The current signed prekey, to publish.
    pub fn current_signed(&self) -> Option<SignedPrekey> {
        self.signed.last().map(SignedPrekeyPair::public)
    }

    /// Make a new signed prekey; keep the last [`SIGNED_PREKEYS_KEPT`] old ones.
    pub fn rotate_signed(
        &mut self,
        rng: &mut impl CryptoRngCore,
        identity: &IdentityKeyPair,
        now: u64,
    ) -> SignedPrekey {
        let spk = SignedPrekeyPair::generate(rng, identity, self.next_signed_id, now);
        self.next_signed_id = self.next_signed_id.wrapping_add(1).max(1);
        let public = spk.public();
        self.signed.push(spk);
        while self.signed.len() > SIGNED_PREKEYS_KEPT + 1 {
            self.signed.remove(0);
        }
        public
    }

    /// Whether the current signed prekey is older than `max_age` seconds at `now`.
    pub fn signed_is_older_than(&self, now: u64, max_age: u64) -> bool {
        self.signed
            .last()
            .is_none_or(|spk| now.saturating_sub(spk.created_at) > max_age)
    }

    /// Make `count` new one-time prekeys; the caller persists this store, then publishes them.
    /// Keeps at most [`MAX_ONE_TIME_PREKEYS`]: the oldest secrets beyond it are deleted.
    pub fn generate_one_time(
        &mut self,
        rng: &mut impl CryptoRngCore,
        count: usize,
    ) -> Vec<OneTimePrekey> {
        let made = (0..count)
            .map(|_| {
                let id = self.next_one_time_id;
                self.next_one_time_id = self.next_one_time_id.wrapping_add(1).max(1);
                let opk = OneTimePrekeyPair::generate(rng, id);
                let public = opk.public();
                self.one_time.insert(id, opk);
                public
            })
            .collect();
        self.drop_oldest_one_time();
        made
    }

    /// Delete the oldest one-time secrets beyond [`MAX_ONE_TIME_PREKEYS`]. Ids count up and
    /// wrap, so age is the distance back from the next id.
    fn drop_oldest_one_time(&mut self) {
        let excess = self.one_time.len().saturating_sub(MAX_ONE_TIME_PREKEYS);
        if excess == 0 {
            return;
        }
        let next = self.next_one_time_id;
        let mut ids: Vec<u32> = self.one_time.keys().copied().collect();
        ids.sort_unstable_by_key(|id| std::cmp::Reverse(next.wrapping_sub(*id)));
        for id in ids.into_iter().take(excess) {
            self.one_time.remove(&id);
        }
    }

    /// Delete a used one-time prekey (after the session it created is committed).
    pub fn remove_one_time(&mut self, id: u32) -> bool {
        self.one_time.remove(&id).is_some()
    }

    /// Unused one-time prekeys held.
    pub fn one_time_count(&self) -> usize {
        self.one_time.len()
    }
}

impl PrekeyStore for LocalPrekeys {
    fn signed_prekey(&self, id: u32) -> Option<&SignedPrekeyPair> {
        self.signed.iter().find(|spk| spk.id == id)
    }

    fn one_time_prekey(&self, id: u32) -> Option<&OneTimePrekeyPair> {
        self.one_time.get(&id)
    }

    fn pq_prekey(&self, id: u32) -> Option<&PqPrekeyPair> {
        if id & LAST_RESORT_ID_BIT != 0 {
            self.pq_last_resort.iter().find(|pq| pq.id == id)
        } else {
            self.pq_one_time.get(&id)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::panic)]

    use rand_chacha::rand_core::SeedableRng;
    use rand_chacha::ChaCha20Rng;

    use super::*;
    use crate::{Envelope, PrekeyBundle, Session, SessionError};

    const BATCH: usize = 100;

    #[test]
    fn the_one_time_store_is_capped_and_the_oldest_secrets_are_dropped_first() {
        let mut rng = ChaCha20Rng::seed_from_u64(7);
        let identity = IdentityKeyPair::generate(&mut rng);
        let mut prekeys = LocalPrekeys::new(&mut rng, &identity, 1_700_000_000);
        // A relay that reports a low stock on every connection makes the client refill again
        // and again; the secrets held must stay bounded.
        let refills = MAX_ONE_TIME_PREKEYS / BATCH + 3;
        let mut last = Vec::new();
        for _ in 0..refills {
            last = prekeys.generate_one_time(&mut rng, BATCH);
        }
        assert_eq!(prekeys.one_time_count(), MAX_ONE_TIME_PREKEYS);
        // The newest batch is all there; the first keys ever made are gone.
        assert!(last.iter().all(|k| prekeys.one_time_prekey(k.id).is_some()));
        assert!(prekeys.one_time_prekey(1).is_none());
        let oldest_kept = (refills * BATCH - MAX_ONE_TIME_PREKEYS + 1) as u32;
        assert!(prekeys.one_time_prekey(oldest_kept).is_some());
        assert!(prekeys.one_time_prekey(oldest_kept - 1).is_none());
    }

    #[test]
    fn a_first_message_to_a_pruned_one_time_prekey_is_refused_not_a_panic() {
        let mut rng = ChaCha20Rng::seed_from_u64(8);
        let alice = IdentityKeyPair::generate(&mut rng);
        let bob = IdentityKeyPair::generate(&mut rng);
        let mut bob_prekeys = LocalPrekeys::new(&mut rng, &bob, 1_700_000_000);
        let first = bob_prekeys.generate_one_time(&mut rng, BATCH);
        // A sender fetched bob's first one-time prekey, then stayed silent for many refills.
        let bundle = PrekeyBundle {
            identity_key: bob.public_key(),
            signed_prekey: bob_prekeys.current_signed().unwrap(),
            one_time_prekey: first.first().cloned(),
            pq_prekey: None,
        }
        .verify(crate::Profile::V1)
        .unwrap();
        for _ in 0..MAX_ONE_TIME_PREKEYS / BATCH + 1 {
            bob_prekeys.generate_one_time(&mut rng, BATCH);
        }
        let mut session = Session::initiate(&mut rng, &alice, &bundle).unwrap();
        let Envelope::Prekey(pre) = session.encrypt(&mut rng, b"hello").unwrap() else {
            panic!("a first message is a prekey envelope");
        };
        match Session::respond(
            &mut rng,
            &bob,
            &alice.public_key(),
            crate::Profile::V1,
            &bob_prekeys,
            &pre,
        ) {
            Err(SessionError::UnknownOneTimePrekey(1)) => {}
            Err(e) => panic!("unexpected error {e}"),
            Ok(_) => panic!("a pruned one-time prekey was still usable"),
        }
    }
}
