//! Two RNGs: one that records every draw (generation), one that hands out injected bytes
//! (replay).

use std::collections::VecDeque;

use rand_chacha::rand_core::{CryptoRng, RngCore};
use rand_chacha::ChaCha20Rng;

/// A seeded RNG that remembers each draw, so the generator can write out the keys, KEM
/// randomness and nonces it used.
#[derive(Clone)]
pub(super) struct RecordingRng {
    pub(super) inner: ChaCha20Rng,
    pub(super) draws: Vec<Vec<u8>>,
}

impl RecordingRng {
    pub(super) fn new(inner: ChaCha20Rng) -> Self {
        Self {
            inner,
            draws: Vec::new(),
        }
    }
}

impl RngCore for RecordingRng {
    fn next_u32(&mut self) -> u32 {
        unreachable!("hush-proto draws only byte strings")
    }
    fn next_u64(&mut self) -> u64 {
        unreachable!("hush-proto draws only byte strings")
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.inner.fill_bytes(dest);
        self.draws.push(dest.to_vec());
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_chacha::rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
impl CryptoRng for RecordingRng {}

/// Hands out injected bytes: 32-byte draws in order (X25519 secrets, and in `hush-v2` the KEM
/// encapsulation randomness `m` right after the ephemeral key), 24-byte draws as nonces.
#[derive(Clone, Default)]
pub(super) struct ScriptedRng {
    pub(super) keys: VecDeque<[u8; 32]>,
    pub(super) nonces: VecDeque<[u8; 24]>,
}

impl RngCore for ScriptedRng {
    fn next_u32(&mut self) -> u32 {
        unreachable!()
    }
    fn next_u64(&mut self) -> u64 {
        unreachable!()
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        match dest.len() {
            32 => dest.copy_from_slice(&self.keys.pop_front().expect("ran out of injected keys")),
            24 => dest.copy_from_slice(&self.nonces.pop_front().expect("ran out of nonces")),
            n => panic!("unexpected draw of {n} bytes"),
        }
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_chacha::rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}
impl CryptoRng for ScriptedRng {}
