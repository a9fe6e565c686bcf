//! Versioned, serde-serializable snapshots of identities, prekeys and sessions, kept apart from
//! the live types (which are not `Serialize`). Pickles hold secrets: they zeroize on drop, never
//! print their bytes in `Debug`, and must be encrypted before they touch disk.
//!
//! New fields get `#[serde(default)]` so older pickles keep loading.

use std::collections::{BTreeMap, VecDeque};

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use crate::keys::{
    IdentityKeyPair, IdentityPublicKey, OneTimePrekeyPair, SignedPrekeyPair, X25519PublicKey,
    X25519Secret,
};
use crate::pq::{PqPrekeyPair, KEM_CIPHERTEXT_LEN, KEM_SEED_LEN, LAST_RESORT_ID_BIT};
use crate::prekeys::LocalPrekeys;
use crate::ratchet::{
    ChainKey, DoubleRatchet, MessageKey, RatchetLimits, RootKey, SkippedKey,
    PREVIOUS_CHAINS_REMEMBERED,
};
use crate::session::Session;
use crate::x3dh::{PqHeader, X3dhHeader};

/// The pickle format version this build writes and reads.
pub const PICKLE_VERSION: u8 = 1;

/// A pickle that cannot be turned back into live state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PickleError {
    /// Written by a version this build does not read.
    #[error("pickle version {got} is not supported (this build reads version {supported})")]
    UnsupportedVersion {
        /// The version found.
        got: u8,
        /// The version this build reads.
        supported: u8,
    },
    /// A field holds an impossible value (bad key, wrong length, limit exceeded).
    #[error("pickle field {0} is invalid")]
    InvalidField(&'static str),
}

macro_rules! redacted_debug {
    ($($name:ident),*) => {$(
        impl std::fmt::Debug for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($name)).finish_non_exhaustive()
            }
        }
    )*};
}

redacted_debug!(IdentityPickle, PrekeysPickle, SessionPickle);

fn check_version(got: u8) -> Result<(), PickleError> {
    if got == PICKLE_VERSION {
        Ok(())
    } else {
        Err(PickleError::UnsupportedVersion {
            got,
            supported: PICKLE_VERSION,
        })
    }
}

/// A pickled identity: the Ed25519 seed.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct IdentityPickle {
    /// Format version.
    pub version: u8,
    /// The 32-byte Ed25519 seed.
    pub seed: [u8; 32],
}

impl IdentityKeyPair {
    /// Snapshot for storage.
    pub fn pickle(&self) -> IdentityPickle {
        IdentityPickle {
            version: PICKLE_VERSION,
            seed: *self.seed(),
        }
    }

    /// Restore from a snapshot.
    pub fn from_pickle(pickle: &IdentityPickle) -> Result<Self, PickleError> {
        check_version(pickle.version)?;
        Ok(Self::from_seed(&pickle.seed))
    }
}

/// A pickled signed prekey.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct SignedPrekeyPickle {
    id: u32,
    created_at: u64,
    secret: [u8; 32],
    signature: Vec<u8>,
}

/// A pickled one-time prekey.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct OneTimePrekeyPickle {
    id: u32,
    secret: [u8; 32],
}

/// A pickled PQ prekey: its seed `d ‖ z` (the encapsulation key and the deterministic
/// Ed25519 signature are rebuilt from it and the identity on load).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct PqPrekeyPickle {
    id: u32,
    created_at: u64,
    seed: Vec<u8>,
}

/// Pickled [`LocalPrekeys`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct PrekeysPickle {
    version: u8,
    signed: Vec<SignedPrekeyPickle>,
    one_time: Vec<OneTimePrekeyPickle>,
    next_signed_id: u32,
    next_one_time_id: u32,
    /// One-time PQ prekeys (absent in pickles written before `hush-v2`).
    #[serde(default)]
    pq_one_time: Vec<PqPrekeyPickle>,
    /// Last-resort PQ prekeys, newest last.
    #[serde(default)]
    pq_last_resort: Vec<PqPrekeyPickle>,
    #[serde(default = "first_pq_one_time_id")]
    next_pq_one_time_id: u32,
    #[serde(default = "first_pq_last_resort_id")]
    next_pq_last_resort_id: u32,
}

fn first_pq_one_time_id() -> u32 {
    1
}

fn first_pq_last_resort_id() -> u32 {
    LAST_RESORT_ID_BIT | 1
}

fn pickle_pq(pair: &PqPrekeyPair) -> PqPrekeyPickle {
    PqPrekeyPickle {
        id: pair.id,
        created_at: pair.created_at,
        seed: pair.seed().to_vec(),
    }
}

fn unpickle_pq(
    identity: &IdentityKeyPair,
    pickle: &PqPrekeyPickle,
    last_resort: bool,
) -> Result<PqPrekeyPair, PickleError> {
    let mut seed = Zeroizing::new([0u8; KEM_SEED_LEN]);
    if pickle.seed.len() != KEM_SEED_LEN {
        return Err(PickleError::InvalidField("PQ prekey seed length"));
    }
    seed.copy_from_slice(&pickle.seed);
    if (pickle.id & LAST_RESORT_ID_BIT != 0) != last_resort {
        return Err(PickleError::InvalidField("PQ prekey id kind"));
    }
    Ok(PqPrekeyPair::from_seed(
        identity,
        pickle.id,
        pickle.created_at,
        seed,
    ))
}

impl LocalPrekeys {
    /// Snapshot for storage.
    pub fn pickle(&self) -> PrekeysPickle {
        PrekeysPickle {
            version: PICKLE_VERSION,
            signed: self
                .signed
                .iter()
                .map(|spk| SignedPrekeyPickle {
                    id: spk.id,
                    created_at: spk.created_at,
                    secret: *spk.secret.to_bytes(),
                    signature: spk.signature.to_vec(),
                })
                .collect(),
            one_time: self
                .one_time
                .values()
                .map(|opk| OneTimePrekeyPickle {
                    id: opk.id,
                    secret: *opk.secret.to_bytes(),
                })
                .collect(),
            next_signed_id: self.next_signed_id,
            next_one_time_id: self.next_one_time_id,
            pq_one_time: self.pq_one_time.values().map(pickle_pq).collect(),
            pq_last_resort: self.pq_last_resort.iter().map(pickle_pq).collect(),
            next_pq_one_time_id: self.next_pq_one_time_id,
            next_pq_last_resort_id: self.next_pq_last_resort_id,
        }
    }

    /// Restore from a snapshot. `identity` re-signs the PQ prekeys (their signatures are
    /// deterministic, so exactly the published ones come back); a pickle written before
    /// `hush-v2` loads with no PQ prekeys.
    pub fn from_pickle(
        identity: &IdentityKeyPair,
        pickle: &PrekeysPickle,
    ) -> Result<Self, PickleError> {
        check_version(pickle.version)?;
        let mut signed = Vec::with_capacity(pickle.signed.len());
        for spk in &pickle.signed {
            let signature: [u8; 64] = spk
                .signature
                .as_slice()
                .try_into()
                .map_err(|_| PickleError::InvalidField("signed prekey signature"))?;
            signed.push(SignedPrekeyPair {
                id: spk.id,
                created_at: spk.created_at,
                secret: X25519Secret::from_bytes(spk.secret),
                signature,
            });
        }
        let one_time: BTreeMap<u32, OneTimePrekeyPair> = pickle
            .one_time
            .iter()
            .map(|opk| {
                (
                    opk.id,
                    OneTimePrekeyPair {
                        id: opk.id,
                        secret: X25519Secret::from_bytes(opk.secret),
                    },
                )
            })
            .collect();
        // The next one-time id must be a one-time id: with bit 31 set, every new "one-time"
        // PQ prekey would be published under a last-resort id that no lookup finds.
        if pickle.next_pq_one_time_id & LAST_RESORT_ID_BIT != 0 {
            return Err(PickleError::InvalidField("next one-time PQ prekey id"));
        }
        let mut pq_one_time = BTreeMap::new();
        for pq in &pickle.pq_one_time {
            pq_one_time.insert(pq.id, unpickle_pq(identity, pq, false)?);
        }
        let pq_last_resort = pickle
            .pq_last_resort
            .iter()
            .map(|pq| unpickle_pq(identity, pq, true))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            signed,
            one_time,
            next_signed_id: pickle.next_signed_id,
            next_one_time_id: pickle.next_one_time_id,
            pq_one_time,
            pq_last_resort,
            next_pq_one_time_id: pickle.next_pq_one_time_id,
            next_pq_last_resort_id: pickle.next_pq_last_resort_id,
        })
    }
}

/// Pickled X3DH header an initiator still attaches.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize)]
pub struct X3dhHeaderPickle {
    identity_key: [u8; 32],
    ephemeral_key: [u8; 32],
    signed_prekey_id: u32,
    one_time_prekey_id: Option<u32>,
    /// `hush-v2`: the PQ prekey id (absent in `hush-v1` sessions and older pickles).
    #[serde(default)]
    pq_prekey_id: Option<u32>,
    /// `hush-v2`: the KEM ciphertext, kept so later copies of the first message match exactly.
    #[serde(default)]
    kem_ciphertext: Option<Vec<u8>>,
}

/// A pickled skipped message key.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct SkippedKeyPickle {
    ratchet_key: [u8; 32],
    counter: u32,
    message_key: [u8; 32],
}

/// A pickled [`Session`].
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub struct SessionPickle {
    version: u8,
    local_identity: [u8; 32],
    remote_identity: [u8; 32],
    is_initiator: bool,
    x3dh_header: X3dhHeaderPickle,
    pending_prekey: bool,
    root_key: [u8; 32],
    self_ratchet_secret: [u8; 32],
    remote_ratchet_key: Option<[u8; 32]>,
    sending_chain_key: Option<[u8; 32]>,
    receiving_chain_key: Option<[u8; 32]>,
    send_counter: u32,
    receive_counter: u32,
    previous_send_count: u32,
    skipped: Vec<SkippedKeyPickle>,
    previous_remote_keys: Vec<[u8; 32]>,
    max_skip: u32,
    max_stored_skipped: u32,
}

impl Session {
    /// Snapshot for storage. Commit it durably *before* sending what `encrypt` produced, and
    /// before acknowledging what `decrypt` accepted.
    pub fn pickle(&self) -> SessionPickle {
        let r = &self.ratchet;
        SessionPickle {
            version: PICKLE_VERSION,
            local_identity: *self.local_identity.as_bytes(),
            remote_identity: *self.remote_identity.as_bytes(),
            is_initiator: self.is_initiator,
            x3dh_header: X3dhHeaderPickle {
                identity_key: *self.x3dh_header.identity_key.as_bytes(),
                ephemeral_key: *self.x3dh_header.ephemeral_key.as_bytes(),
                signed_prekey_id: self.x3dh_header.signed_prekey_id,
                one_time_prekey_id: self.x3dh_header.one_time_prekey_id,
                pq_prekey_id: self.x3dh_header.pq.as_ref().map(|pq| pq.prekey_id),
                kem_ciphertext: self
                    .x3dh_header
                    .pq
                    .as_ref()
                    .map(|pq| pq.ciphertext.to_vec()),
            },
            pending_prekey: self.pending_prekey,
            root_key: r.root_key.0,
            self_ratchet_secret: *r.self_ratchet.to_bytes(),
            remote_ratchet_key: r.remote_ratchet.map(|k| *k.as_bytes()),
            sending_chain_key: r.sending_chain.as_ref().map(|c| c.0),
            receiving_chain_key: r.receiving_chain.as_ref().map(|c| c.0),
            send_counter: r.send_counter,
            receive_counter: r.receive_counter,
            previous_send_count: r.previous_send_count,
            skipped: r
                .skipped
                .iter()
                .map(|s| SkippedKeyPickle {
                    ratchet_key: s.ratchet_key,
                    counter: s.counter,
                    message_key: s.message_key.0,
                })
                .collect(),
            previous_remote_keys: r.previous_remote_keys.iter().copied().collect(),
            max_skip: r.limits.max_skip,
            // Limits are u32 on disk; the stored-key cap is far below u32::MAX.
            max_stored_skipped: u32::try_from(r.limits.max_stored_skipped).unwrap_or(u32::MAX),
        }
    }

    /// Restore from a snapshot, validating every key and bound.
    pub fn from_pickle(pickle: &SessionPickle) -> Result<Self, PickleError> {
        check_version(pickle.version)?;
        let identity = |bytes: &[u8; 32], what| {
            IdentityPublicKey::from_bytes(bytes).map_err(|_| PickleError::InvalidField(what))
        };
        let local_identity = identity(&pickle.local_identity, "local identity")?;
        let remote_identity = identity(&pickle.remote_identity, "remote identity")?;
        let h = &pickle.x3dh_header;
        let x3dh_header = X3dhHeader {
            identity_key: identity(&h.identity_key, "X3DH header identity")?,
            ephemeral_key: X25519PublicKey::from_bytes(h.ephemeral_key),
            signed_prekey_id: h.signed_prekey_id,
            one_time_prekey_id: h.one_time_prekey_id,
            pq: match (h.pq_prekey_id, &h.kem_ciphertext) {
                (None, None) => None,
                (Some(prekey_id), Some(ct)) => Some(PqHeader {
                    prekey_id,
                    ciphertext: Box::new(
                        <[u8; KEM_CIPHERTEXT_LEN]>::try_from(ct.as_slice())
                            .map_err(|_| PickleError::InvalidField("KEM ciphertext length"))?,
                    ),
                }),
                _ => return Err(PickleError::InvalidField("PQ header half present")),
            },
        };
        let limits = RatchetLimits {
            max_skip: pickle.max_skip,
            max_stored_skipped: pickle.max_stored_skipped as usize,
        };
        if pickle.skipped.len() > limits.max_stored_skipped {
            return Err(PickleError::InvalidField("skipped keys exceed their limit"));
        }
        if pickle.previous_remote_keys.len() > PREVIOUS_CHAINS_REMEMBERED {
            return Err(PickleError::InvalidField(
                "previous ratchet keys exceed their limit",
            ));
        }
        if pickle.receiving_chain_key.is_some() && pickle.remote_ratchet_key.is_none() {
            return Err(PickleError::InvalidField(
                "receiving chain without ratchet key",
            ));
        }
        let ratchet = DoubleRatchet {
            root_key: RootKey(pickle.root_key),
            self_ratchet: X25519Secret::from_bytes(pickle.self_ratchet_secret),
            remote_ratchet: pickle.remote_ratchet_key.map(X25519PublicKey::from_bytes),
            sending_chain: pickle.sending_chain_key.map(ChainKey),
            receiving_chain: pickle.receiving_chain_key.map(ChainKey),
            send_counter: pickle.send_counter,
            receive_counter: pickle.receive_counter,
            previous_send_count: pickle.previous_send_count,
            skipped: pickle
                .skipped
                .iter()
                .map(|s| SkippedKey {
                    ratchet_key: s.ratchet_key,
                    counter: s.counter,
                    message_key: MessageKey(s.message_key),
                })
                .collect::<VecDeque<_>>(),
            previous_remote_keys: pickle.previous_remote_keys.iter().copied().collect(),
            limits,
            #[cfg(test)]
            last_message_key: None,
        };
        Ok(Self {
            ratchet,
            local_identity,
            remote_identity,
            is_initiator: pickle.is_initiator,
            x3dh_header,
            pending_prekey: pickle.pending_prekey,
        })
    }
}
