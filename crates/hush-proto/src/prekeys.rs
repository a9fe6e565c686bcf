//! A user's own prekey secrets: the current and recent signed prekeys and the unused one-time
//! prekeys, with rotation and refill helpers.

use std::collections::BTreeMap;

use rand_core::CryptoRngCore;

use crate::keys::{
    IdentityKeyPair, OneTimePrekey, OneTimePrekeyPair, SignedPrekey, SignedPrekeyPair,
};
use crate::x3dh::PrekeyStore;

/// How many superseded signed prekeys are kept, so messages sent to a recently rotated key
/// still decrypt. Older ones are deleted for forward secrecy.
pub const SIGNED_PREKEYS_KEPT: usize = 3;

/// The prekey secrets a user holds.
#[derive(Clone, Debug)]
pub struct LocalPrekeys {
    /// Newest last.
    pub(crate) signed: Vec<SignedPrekeyPair>,
    pub(crate) one_time: BTreeMap<u32, OneTimePrekeyPair>,
    pub(crate) next_signed_id: u32,
    pub(crate) next_one_time_id: u32,
}

impl LocalPrekeys {
    /// A first signed prekey (id 1) created at `now` (seconds).
    pub fn new(rng: &mut impl CryptoRngCore, identity: &IdentityKeyPair, now: u64) -> Self {
        let mut store = Self {
            signed: Vec::new(),
            one_time: BTreeMap::new(),
            next_signed_id: 1,
            next_one_time_id: 1,
        };
        store.rotate_signed(rng, identity, now);
        store
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
    pub fn generate_one_time(
        &mut self,
        rng: &mut impl CryptoRngCore,
        count: usize,
    ) -> Vec<OneTimePrekey> {
        (0..count)
            .map(|_| {
                let id = self.next_one_time_id;
                self.next_one_time_id = self.next_one_time_id.wrapping_add(1).max(1);
                let opk = OneTimePrekeyPair::generate(rng, id);
                let public = opk.public();
                self.one_time.insert(id, opk);
                public
            })
            .collect()
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
}
