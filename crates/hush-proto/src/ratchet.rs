//! The Double Ratchet (Signal specification, section 3) with the `hush-v1` functions.
//!
//! Every decryption is computed on temporaries and committed only once the AEAD tag verifies,
//! so a forged, replayed or corrupted message leaves the state byte-for-byte unchanged.

use std::collections::VecDeque;

use rand_core::CryptoRngCore;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::codec::Reader;
use crate::keys::{X25519PublicKey, X25519Secret};
use crate::primitives::{self, KEY_LEN, NONCE_LEN, TAG_LEN};
use crate::{DecodeError, DecryptError, EncryptError};

/// HKDF info for KDF_RK.
pub const ROOT_KDF_INFO: &[u8] = b"hush-dr-root-v1";
/// HKDF info turning a message key into an AEAD key.
pub const MESSAGE_KDF_INFO: &[u8] = b"hush-dr-msg-v1";
/// Length of the encoded header: ratchet key (32) ‖ PN u32be ‖ N u32be.
pub const HEADER_LEN: usize = 40;
/// Default per-chain skip limit: a message may skip at most this many keys in one chain, to
/// bound the work and memory a single forged header can cost.
pub const MAX_SKIP: u32 = 1000;
/// Default total of stored skipped message keys; beyond it the oldest are evicted, so a peer
/// that skips constantly cannot grow our state without bound.
pub const MAX_STORED_SKIPPED: usize = 2000;
/// How many earlier receiving ratchet keys we remember, only to tell a late replay of an old
/// chain (`Duplicate`) from a forgery (`Authentication`). Bounded for the same reason.
pub const PREVIOUS_CHAINS_REMEMBERED: usize = 32;

const CHAIN_MESSAGE_KEY_CONSTANT: u8 = 0x01;
const CHAIN_NEXT_KEY_CONSTANT: u8 = 0x02;

/// Skip limits of a ratchet; [`RatchetLimits::default`] is `hush-v1`'s (1000 / 2000).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RatchetLimits {
    /// Most keys one message may skip within one chain.
    pub max_skip: u32,
    /// Most skipped keys stored in total (oldest evicted first).
    pub max_stored_skipped: usize,
}

impl Default for RatchetLimits {
    fn default() -> Self {
        Self {
            max_skip: MAX_SKIP,
            max_stored_skipped: MAX_STORED_SKIPPED,
        }
    }
}

/// The Double Ratchet message header, sent in clear and authenticated as associated data.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// The sender's current ratchet public key.
    pub ratchet_key: X25519PublicKey,
    /// Number of messages in the sender's previous sending chain (PN).
    pub previous_chain_length: u32,
    /// This message's number in the current sending chain (N).
    pub counter: u32,
}

impl Header {
    /// `ratchet_key(32) ‖ PN u32be ‖ N u32be`.
    pub fn to_bytes(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        let (key, rest) = out.split_at_mut(KEY_LEN);
        key.copy_from_slice(self.ratchet_key.as_bytes());
        let (pn, n) = rest.split_at_mut(4);
        pn.copy_from_slice(&self.previous_chain_length.to_be_bytes());
        n.copy_from_slice(&self.counter.to_be_bytes());
        out
    }

    /// Parse exactly 40 bytes.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes, "ratchet header");
        let header = Self::read(&mut r)?;
        r.finish()?;
        Ok(header)
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(Self {
            ratchet_key: X25519PublicKey::from_wire(r.array()?)?,
            previous_chain_length: r.u32()?,
            counter: r.u32()?,
        })
    }
}

/// A header plus `nonce(24) ‖ ciphertext ‖ tag(16)`: one Double Ratchet message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RatchetMessage {
    /// The clear header.
    pub header: Header,
    /// `nonce ‖ AEAD ciphertext ‖ tag`.
    pub ciphertext: Vec<u8>,
}

macro_rules! secret_key_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Zeroize, ZeroizeOnDrop)]
        pub(crate) struct $name(pub(crate) [u8; KEY_LEN]);

        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name)).finish_non_exhaustive()
            }
        }
    };
}

secret_key_type!(
    /// RK: the root key, advanced at every DH ratchet step.
    RootKey
);
secret_key_type!(
    /// CK: a sending or receiving chain key.
    ChainKey
);
secret_key_type!(
    /// MK: a single message's key.
    MessageKey
);

impl RootKey {
    /// KDF_RK(rk, dh) = HKDF-SHA-256(salt = rk, ikm = dh, info = "hush-dr-root-v1", L = 64).
    fn ratchet(&self, dh_output: &[u8; KEY_LEN]) -> (RootKey, ChainKey) {
        let mut okm = Zeroizing::new([0u8; 2 * KEY_LEN]);
        // 64 bytes is far below HKDF's limit, so this cannot fail; keep the error typed anyway.
        let _ = primitives::hkdf_sha256(&self.0, dh_output, ROOT_KDF_INFO, &mut okm[..]);
        let (rk, ck) = okm.split_at(KEY_LEN);
        let mut root = RootKey([0u8; KEY_LEN]);
        root.0.copy_from_slice(rk);
        let mut chain = ChainKey([0u8; KEY_LEN]);
        chain.0.copy_from_slice(ck);
        (root, chain)
    }
}

impl ChainKey {
    /// KDF_CK: MK = HMAC(ck, 0x01), CK' = HMAC(ck, 0x02).
    fn step(&self) -> (MessageKey, ChainKey) {
        let mk = primitives::hmac_sha256(&self.0, &[CHAIN_MESSAGE_KEY_CONSTANT]);
        let ck = primitives::hmac_sha256(&self.0, &[CHAIN_NEXT_KEY_CONSTANT]);
        (MessageKey(*mk), ChainKey(*ck))
    }
}

impl MessageKey {
    /// AEAD key = HKDF-SHA-256(salt = 32 zero bytes, ikm = mk, info = "hush-dr-msg-v1", L = 32).
    fn aead_key(&self) -> Zeroizing<[u8; KEY_LEN]> {
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        let _ = primitives::hkdf_sha256(&[0u8; KEY_LEN], &self.0, MESSAGE_KDF_INFO, &mut key[..]);
        key
    }

    fn seal(
        &self,
        rng: &mut impl CryptoRngCore,
        plaintext: &[u8],
        associated_data: &[u8],
    ) -> Result<Vec<u8>, EncryptError> {
        let mut nonce = [0u8; NONCE_LEN];
        rng.fill_bytes(&mut nonce);
        let sealed = primitives::aead_seal(&self.aead_key(), &nonce, plaintext, associated_data)
            .map_err(|_| EncryptError::Aead)?;
        let mut out = Vec::with_capacity(NONCE_LEN + sealed.len());
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    fn open(
        &self,
        ciphertext: &[u8],
        associated_data: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
        let mut r = Reader::new(ciphertext, "ciphertext");
        let nonce: [u8; NONCE_LEN] = r.array()?;
        let sealed = r.rest();
        if sealed.len() < TAG_LEN {
            return Err(DecodeError::Truncated { what: "ciphertext" }.into());
        }
        primitives::aead_open(&self.aead_key(), &nonce, sealed, associated_data)
            .map_err(|_| DecryptError::Authentication)
    }
}

#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub(crate) struct SkippedKey {
    pub(crate) ratchet_key: [u8; KEY_LEN],
    pub(crate) counter: u32,
    pub(crate) message_key: MessageKey,
}

/// The Double Ratchet state of one side of one session.
#[derive(Clone)]
pub(crate) struct DoubleRatchet {
    pub(crate) root_key: RootKey,
    pub(crate) self_ratchet: X25519Secret,
    pub(crate) remote_ratchet: Option<X25519PublicKey>,
    pub(crate) sending_chain: Option<ChainKey>,
    pub(crate) receiving_chain: Option<ChainKey>,
    pub(crate) send_counter: u32,
    pub(crate) receive_counter: u32,
    pub(crate) previous_send_count: u32,
    pub(crate) skipped: VecDeque<SkippedKey>,
    pub(crate) previous_remote_keys: VecDeque<[u8; KEY_LEN]>,
    pub(crate) limits: RatchetLimits,
    /// Test-vector hook: the last message key used to encrypt.
    #[cfg(test)]
    pub(crate) last_message_key: Option<[u8; KEY_LEN]>,
}

impl std::fmt::Debug for DoubleRatchet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DoubleRatchet")
            .field("send_counter", &self.send_counter)
            .field("receive_counter", &self.receive_counter)
            .field("skipped_keys", &self.skipped.len())
            .finish_non_exhaustive()
    }
}

/// What a successful decryption will change, computed before anything is committed.
enum Commit {
    /// A stored skipped key at this index was used.
    Skipped(usize),
    /// The current receiving chain advanced.
    SameChain {
        next_chain: ChainKey,
        next_counter: u32,
        newly_skipped: Vec<SkippedKey>,
    },
    /// The receiving half of a DH ratchet step. The sending half (a new ratchet key and
    /// sending chain) is done lazily by the next `encrypt`: the same keys result, and a
    /// receiver that never replies saves a key generation and a DH.
    NewChain {
        root_key: RootKey,
        remote_ratchet: X25519PublicKey,
        receiving_chain: ChainKey,
        next_counter: u32,
        newly_skipped: Vec<SkippedKey>,
    },
}

impl DoubleRatchet {
    /// RatchetInitAlice: a fresh ratchet key (draws 32 bytes) and a sending chain at once.
    pub(crate) fn new_initiator(
        rng: &mut impl CryptoRngCore,
        shared_secret: &[u8; KEY_LEN],
        remote_ratchet: X25519PublicKey,
        limits: RatchetLimits,
    ) -> Result<Self, crate::SessionError> {
        let self_ratchet = X25519Secret::generate(rng);
        let dh = self_ratchet
            .diffie_hellman(&remote_ratchet)
            .map_err(|_| crate::SessionError::NonContributory)?;
        let (root_key, sending_chain) = RootKey(*shared_secret).ratchet(&dh);
        Ok(Self {
            root_key,
            self_ratchet,
            remote_ratchet: Some(remote_ratchet),
            sending_chain: Some(sending_chain),
            receiving_chain: None,
            send_counter: 0,
            receive_counter: 0,
            previous_send_count: 0,
            skipped: VecDeque::new(),
            previous_remote_keys: VecDeque::new(),
            limits,
            #[cfg(test)]
            last_message_key: None,
        })
    }

    /// RatchetInitBob: the signed prekey is the first ratchet key; no chains until a message
    /// arrives.
    pub(crate) fn new_responder(
        shared_secret: &[u8; KEY_LEN],
        signed_prekey: X25519Secret,
        limits: RatchetLimits,
    ) -> Self {
        Self {
            root_key: RootKey(*shared_secret),
            self_ratchet: signed_prekey,
            remote_ratchet: None,
            sending_chain: None,
            receiving_chain: None,
            send_counter: 0,
            receive_counter: 0,
            previous_send_count: 0,
            skipped: VecDeque::new(),
            previous_remote_keys: VecDeque::new(),
            limits,
            #[cfg(test)]
            last_message_key: None,
        }
    }

    /// Whether this side can send (the responder cannot until the first message arrives).
    pub(crate) fn can_send(&self) -> bool {
        self.sending_chain.is_some() || self.remote_ratchet.is_some()
    }

    /// RatchetEncrypt. After a DH step on receipt, first completes it: draws a new ratchet key
    /// (32 bytes) and derives the sending chain. Then draws 24 bytes for the nonce. `ad` is the
    /// X3DH associated data. On error nothing changes.
    pub(crate) fn encrypt(
        &mut self,
        rng: &mut impl CryptoRngCore,
        plaintext: &[u8],
        ad: &[u8],
    ) -> Result<RatchetMessage, EncryptError> {
        let next_counter = self
            .send_counter
            .checked_add(1)
            .ok_or(EncryptError::ChainExhausted)?;
        let pending_step = match (&self.sending_chain, &self.remote_ratchet) {
            (Some(_), _) => None,
            (None, Some(remote)) => {
                let self_ratchet = X25519Secret::generate(rng);
                let dh = self_ratchet
                    .diffie_hellman(remote)
                    .map_err(|_| EncryptError::NonContributory)?;
                let (root_key, chain) = self.root_key.ratchet(&dh);
                Some((self_ratchet, root_key, chain))
            }
            (None, None) => return Err(EncryptError::NoSession),
        };
        let (ratchet_key, chain) = match (&pending_step, &self.sending_chain) {
            (Some((key, _, chain)), _) => (key.public_key(), chain),
            (None, Some(chain)) => (self.self_ratchet.public_key(), chain),
            (None, None) => return Err(EncryptError::NoSession),
        };
        let (message_key, next_chain) = chain.step();
        let header = Header {
            ratchet_key,
            previous_chain_length: self.previous_send_count,
            counter: self.send_counter,
        };
        let ciphertext = message_key.seal(rng, plaintext, &full_ad(ad, &header))?;
        if let Some((self_ratchet, root_key, _)) = pending_step {
            self.self_ratchet = self_ratchet;
            self.root_key = root_key;
        }
        self.sending_chain = Some(next_chain);
        self.send_counter = next_counter;
        #[cfg(test)]
        {
            self.last_message_key = Some(message_key.0);
        }
        Ok(RatchetMessage { header, ciphertext })
    }

    /// RatchetDecrypt. Draws no randomness (the sending half of a DH step is done by the next
    /// `encrypt`). On any error the state is unchanged.
    pub(crate) fn decrypt(
        &mut self,
        message: &RatchetMessage,
        ad: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
        let header = &message.header;
        let ad = full_ad(ad, header);
        let (plaintext, commit) = self.try_decrypt(header, &message.ciphertext, &ad)?;
        self.apply(commit);
        Ok(plaintext)
    }

    fn try_decrypt(
        &self,
        header: &Header,
        ciphertext: &[u8],
        ad: &[u8],
    ) -> Result<(Zeroizing<Vec<u8>>, Commit), DecryptError> {
        if ciphertext.len() < NONCE_LEN + TAG_LEN {
            return Err(DecodeError::Truncated { what: "ciphertext" }.into());
        }
        let key = header.ratchet_key.as_bytes();
        // Ratchet keys and counters are public header values: plain comparison is fine here and
        // keeps a full store (2000 keys) cheap to search.
        let stored = self
            .skipped
            .iter()
            .position(|s| s.counter == header.counter && &s.ratchet_key == key);
        if let Some(index) = stored {
            let skipped = self
                .skipped
                .get(index)
                .ok_or(DecryptError::Authentication)?;
            let plaintext = skipped.message_key.open(ciphertext, ad)?;
            return Ok((plaintext, Commit::Skipped(index)));
        }

        let is_current = self
            .remote_ratchet
            .as_ref()
            .is_some_and(|current| bool::from(current.as_bytes().ct_eq(key)));
        if is_current {
            // A header naming the current chain but with no receiving chain is forged: the
            // responder never sends under its signed prekey.
            let chain = self
                .receiving_chain
                .as_ref()
                .ok_or(DecryptError::Authentication)?;
            if header.counter < self.receive_counter {
                return Err(DecryptError::Duplicate {
                    counter: header.counter,
                });
            }
            let (message_key, next_chain, newly_skipped) =
                self.walk_chain(chain, key, self.receive_counter, header.counter)?;
            let plaintext = message_key.open(ciphertext, ad)?;
            return Ok((
                plaintext,
                Commit::SameChain {
                    next_chain,
                    next_counter: next_counter(header.counter)?,
                    newly_skipped,
                },
            ));
        }

        if self
            .previous_remote_keys
            .iter()
            .any(|old| bool::from(old.ct_eq(key)))
        {
            return Err(DecryptError::Duplicate {
                counter: header.counter,
            });
        }

        // DH ratchet step. Cheap checks first, so a forged header costs no DH.
        let limit = self.limits.max_skip;
        if u64::from(header.counter) > u64::from(limit) {
            return Err(DecryptError::TooManySkipped {
                requested: u64::from(header.counter),
                limit,
            });
        }
        let next_counter = next_counter(header.counter)?;
        let mut newly_skipped = Vec::new();
        if let (Some(chain), Some(old_key)) = (&self.receiving_chain, &self.remote_ratchet) {
            if header.previous_chain_length > self.receive_counter {
                let (_, _, old_chain_skipped) = self.walk_chain(
                    chain,
                    old_key.as_bytes(),
                    self.receive_counter,
                    header.previous_chain_length,
                )?;
                newly_skipped = old_chain_skipped;
            }
        }
        let dh_receive = self
            .self_ratchet
            .diffie_hellman(&header.ratchet_key)
            .map_err(|_| DecryptError::NonContributory)?;
        let (root_key, receiving_chain) = self.root_key.ratchet(&dh_receive);
        let (message_key, receiving_chain, new_chain_skipped) =
            self.walk_chain(&receiving_chain, key, 0, header.counter)?;
        let plaintext = message_key.open(ciphertext, ad)?;
        newly_skipped.extend(new_chain_skipped);
        Ok((
            plaintext,
            Commit::NewChain {
                root_key,
                remote_ratchet: header.ratchet_key,
                receiving_chain,
                next_counter,
                newly_skipped,
            },
        ))
    }

    /// Advance a copy of `chain` from position `from` to `until`, returning the key at `until`,
    /// the chain after it, and the keys skipped on the way. Enforces the per-chain skip limit.
    fn walk_chain(
        &self,
        chain: &ChainKey,
        ratchet_key: &[u8; KEY_LEN],
        from: u32,
        until: u32,
    ) -> Result<(MessageKey, ChainKey, Vec<SkippedKey>), DecryptError> {
        let limit = self.limits.max_skip;
        let skip = until.saturating_sub(from);
        if skip > limit {
            return Err(DecryptError::TooManySkipped {
                requested: u64::from(skip),
                limit,
            });
        }
        let mut skipped = Vec::with_capacity(skip as usize);
        let mut chain = chain.clone();
        for counter in from..until {
            let (message_key, next) = chain.step();
            skipped.push(SkippedKey {
                ratchet_key: *ratchet_key,
                counter,
                message_key,
            });
            chain = next;
        }
        let (message_key, next) = chain.step();
        Ok((message_key, next, skipped))
    }

    fn apply(&mut self, commit: Commit) {
        match commit {
            Commit::Skipped(index) => {
                self.skipped.remove(index);
            }
            Commit::SameChain {
                next_chain,
                next_counter,
                newly_skipped,
            } => {
                self.receiving_chain = Some(next_chain);
                self.receive_counter = next_counter;
                self.store_skipped(newly_skipped);
            }
            Commit::NewChain {
                root_key,
                remote_ratchet,
                receiving_chain,
                next_counter,
                newly_skipped,
            } => {
                if let Some(old) = self.remote_ratchet.replace(remote_ratchet) {
                    self.previous_remote_keys.push_back(*old.as_bytes());
                    while self.previous_remote_keys.len() > PREVIOUS_CHAINS_REMEMBERED {
                        self.previous_remote_keys.pop_front();
                    }
                }
                self.root_key = root_key;
                self.previous_send_count = self.send_counter;
                self.send_counter = 0;
                self.sending_chain = None;
                self.receiving_chain = Some(receiving_chain);
                self.receive_counter = next_counter;
                self.store_skipped(newly_skipped);
            }
        }
    }

    fn store_skipped(&mut self, keys: Vec<SkippedKey>) {
        self.skipped.extend(keys);
        while self.skipped.len() > self.limits.max_stored_skipped {
            self.skipped.pop_front();
        }
    }

    /// Number of stored skipped message keys.
    pub(crate) fn skipped_len(&self) -> usize {
        self.skipped.len()
    }
}

fn next_counter(counter: u32) -> Result<u32, DecryptError> {
    counter
        .checked_add(1)
        .ok_or(DecryptError::Malformed(DecodeError::InvalidField {
            what: "ratchet header counter",
            value: u64::from(counter),
        }))
}

/// AEAD associated data: X3DH AD (64 bytes) ‖ header (40 bytes).
fn full_ad(x3dh_ad: &[u8], header: &Header) -> Vec<u8> {
    let mut ad = Vec::with_capacity(x3dh_ad.len() + HEADER_LEN);
    ad.extend_from_slice(x3dh_ad);
    ad.extend_from_slice(&header.to_bytes());
    ad
}
