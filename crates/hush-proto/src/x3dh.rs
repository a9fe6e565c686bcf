//! X3DH session setup (Signal's Extended Triple Diffie-Hellman) with the `hush-v1` parameters,
//! and its post-quantum form PQXDH (`hush-v2`): the same four DH values plus an ML-KEM-768
//! shared secret, with the encapsulation key and ciphertext hashed into the KDF info.

use rand_core::CryptoRngCore;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use sha2::{Digest, Sha256};

use crate::keys::{
    IdentityKeyPair, IdentityPublicKey, OneTimePrekeyPair, SignedPrekeyPair, VerifiedBundle,
    X25519PublicKey, X25519Secret,
};
use crate::pq::{self, KemCiphertext, KemEncapsulationKey, PqPrekeyPair, KEM_SHARED_SECRET_LEN};
use crate::primitives::{self, KEY_LEN};
use crate::{Profile, SessionError};

/// HKDF info for the X3DH shared secret (`hush-v1`).
pub const X3DH_INFO: &[u8] = b"hush-x3dh-v1";
/// HKDF info prefix for the PQXDH shared secret (`hush-v2`); `SHA-256(ek) ‖ SHA-256(CT)`
/// follow it.
pub const PQXDH_INFO: &[u8] = b"hush-pqxdh-v2";
/// Length of the X3DH associated data: initiator's then responder's Ed25519 identity key.
pub const ASSOCIATED_DATA_LEN: usize = 2 * KEY_LEN;

/// The post-quantum part of a `hush-v2` first message: which PQ prekey was used and the KEM
/// ciphertext for it.
#[derive(Clone, PartialEq, Eq)]
pub struct PqHeader {
    /// The responder's PQ prekey id.
    pub prekey_id: u32,
    /// `ML-KEM.Encaps(ek)`'s ciphertext.
    pub ciphertext: Box<KemCiphertext>,
}

impl std::fmt::Debug for PqHeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PqHeader")
            .field("prekey_id", &self.prekey_id)
            .finish_non_exhaustive()
    }
}

/// What the initiator tells the responder so it can repeat the key agreement. On the wire the
/// prekeys are named by id; the responder looks them up.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct X3dhHeader {
    /// The initiator's identity key.
    pub identity_key: IdentityPublicKey,
    /// The initiator's ephemeral (base) key; it also identifies the session.
    pub ephemeral_key: X25519PublicKey,
    /// Which of the responder's signed prekeys was used.
    pub signed_prekey_id: u32,
    /// Which one-time prekey was used, if the bundle had one.
    pub one_time_prekey_id: Option<u32>,
    /// `hush-v2` only: the PQ prekey id and KEM ciphertext.
    pub pq: Option<PqHeader>,
}

impl X3dhHeader {
    /// The profile of the session this header sets up.
    pub fn profile(&self) -> Profile {
        if self.pq.is_some() {
            Profile::V2
        } else {
            Profile::V1
        }
    }
}

/// A responder's store of prekey secrets, looked up by the ids in an [`X3dhHeader`].
pub trait PrekeyStore {
    /// The signed prekey with this id, if still held.
    fn signed_prekey(&self, id: u32) -> Option<&SignedPrekeyPair>;
    /// The one-time prekey with this id, if not yet used.
    fn one_time_prekey(&self, id: u32) -> Option<&OneTimePrekeyPair>;
    /// The PQ prekey (one-time and not yet used, or last-resort and still kept) with this id.
    fn pq_prekey(&self, id: u32) -> Option<&PqPrekeyPair>;
}

/// SK and AD, the two results of X3DH.
pub(crate) struct X3dhOutput {
    pub(crate) shared_secret: Zeroizing<[u8; KEY_LEN]>,
    pub(crate) associated_data: [u8; ASSOCIATED_DATA_LEN],
}

/// Initiator side: draws the ephemeral key (32 bytes), then for a `hush-v2` bundle the KEM
/// randomness `m` (32 bytes), and derives SK.
pub(crate) fn initiate(
    rng: &mut impl CryptoRngCore,
    ours: &IdentityKeyPair,
    bundle: &VerifiedBundle,
) -> Result<(X3dhOutput, X3dhHeader, X25519PublicKey), SessionError> {
    let bundle = bundle.bundle();
    let our_public = ours.public_key();
    if bool::from(our_public.as_bytes().ct_eq(bundle.identity_key.as_bytes())) {
        return Err(SessionError::OwnIdentity);
    }
    let ephemeral = X25519Secret::generate(rng);
    let spk = bundle.signed_prekey.public_key;
    let dh = |secret: &X25519Secret, public: &X25519PublicKey| {
        secret
            .diffie_hellman(public)
            .map_err(|_| SessionError::NonContributory)
    };
    let dh1 = dh(ours.x25519_secret(), &spk)?;
    let dh2 = dh(&ephemeral, &bundle.identity_key.x25519())?;
    let dh3 = dh(&ephemeral, &spk)?;
    let dh4 = match &bundle.one_time_prekey {
        Some(opk) => Some(dh(&ephemeral, &opk.public_key)?),
        None => None,
    };
    let (shared_secret, pq) = match &bundle.pq_prekey {
        None => (
            derive_shared_secret(&dh1, &dh2, &dh3, dh4.as_deref(), None)?,
            None,
        ),
        Some(pq_prekey) => {
            // A verified bundle's key always parses; a malformed one is refused, never skipped.
            let (ciphertext, kem_secret) = pq::encapsulate(rng, &pq_prekey.encapsulation_key)
                .ok_or(SessionError::BadPqPrekeySignature)?;
            let kem = KemInput {
                shared_secret: &kem_secret,
                encapsulation_key: &pq_prekey.encapsulation_key,
                ciphertext: &ciphertext,
            };
            let sk = derive_shared_secret(&dh1, &dh2, &dh3, dh4.as_deref(), Some(kem))?;
            let header = PqHeader {
                prekey_id: pq_prekey.id,
                ciphertext,
            };
            (sk, Some(header))
        }
    };
    let header = X3dhHeader {
        identity_key: our_public,
        ephemeral_key: ephemeral.public_key(),
        signed_prekey_id: bundle.signed_prekey.id,
        one_time_prekey_id: bundle.one_time_prekey.map(|opk| opk.id),
        pq,
    };
    let output = X3dhOutput {
        shared_secret,
        associated_data: associated_data(&our_public, &bundle.identity_key),
    };
    Ok((output, header, spk))
}

/// Responder side: repeats the agreement with the named prekeys. `pq_prekey` is the PQ prekey
/// the header names (`hush-v2`); the caller looked it up.
pub(crate) fn respond(
    ours: &IdentityKeyPair,
    signed_prekey: &SignedPrekeyPair,
    one_time_prekey: Option<&OneTimePrekeyPair>,
    pq_prekey: Option<&PqPrekeyPair>,
    header: &X3dhHeader,
) -> Result<X3dhOutput, SessionError> {
    let our_public = ours.public_key();
    if bool::from(our_public.as_bytes().ct_eq(header.identity_key.as_bytes())) {
        return Err(SessionError::OwnIdentity);
    }
    let dh = |secret: &X25519Secret, public: &X25519PublicKey| {
        secret
            .diffie_hellman(public)
            .map_err(|_| SessionError::NonContributory)
    };
    let dh1 = dh(&signed_prekey.secret, &header.identity_key.x25519())?;
    let dh2 = dh(ours.x25519_secret(), &header.ephemeral_key)?;
    let dh3 = dh(&signed_prekey.secret, &header.ephemeral_key)?;
    let dh4 = match one_time_prekey {
        Some(opk) => Some(dh(&opk.secret, &header.ephemeral_key)?),
        None => None,
    };
    let shared_secret = match (&header.pq, pq_prekey) {
        (None, None) => derive_shared_secret(&dh1, &dh2, &dh3, dh4.as_deref(), None)?,
        (Some(pq_header), Some(pq_prekey)) => {
            let kem_secret = pq_prekey.decapsulate(&pq_header.ciphertext);
            let kem = KemInput {
                shared_secret: &kem_secret,
                encapsulation_key: pq_prekey.encapsulation_key(),
                ciphertext: &pq_header.ciphertext,
            };
            derive_shared_secret(&dh1, &dh2, &dh3, dh4.as_deref(), Some(kem))?
        }
        (Some(pq_header), None) => return Err(SessionError::UnknownPqPrekey(pq_header.prekey_id)),
        (None, Some(_)) => {
            return Err(SessionError::Downgrade {
                required: Profile::V2,
                offered: Profile::V1,
            })
        }
    };
    Ok(X3dhOutput {
        shared_secret,
        associated_data: associated_data(&header.identity_key, &our_public),
    })
}

/// The KEM part of a PQXDH agreement.
struct KemInput<'a> {
    shared_secret: &'a [u8; KEM_SHARED_SECRET_LEN],
    encapsulation_key: &'a KemEncapsulationKey,
    ciphertext: &'a KemCiphertext,
}

/// SK = HKDF-SHA-256(salt = 0³², IKM = 0xFF³² ‖ DH1 ‖ DH2 ‖ DH3 [‖ DH4] [‖ SS], info, L = 32),
/// where for `hush-v2` info = "hush-pqxdh-v2" ‖ SHA-256(ek) ‖ SHA-256(CT), binding the exact
/// PQ prekey and ciphertext into SK.
fn derive_shared_secret(
    dh1: &[u8; KEY_LEN],
    dh2: &[u8; KEY_LEN],
    dh3: &[u8; KEY_LEN],
    dh4: Option<&[u8; KEY_LEN]>,
    kem: Option<KemInput<'_>>,
) -> Result<Zeroizing<[u8; KEY_LEN]>, SessionError> {
    let mut ikm = Zeroizing::new(Vec::with_capacity(6 * KEY_LEN));
    ikm.extend_from_slice(&[0xFF; KEY_LEN]);
    ikm.extend_from_slice(dh1);
    ikm.extend_from_slice(dh2);
    ikm.extend_from_slice(dh3);
    if let Some(dh4) = dh4 {
        ikm.extend_from_slice(dh4);
    }
    let mut info = Vec::with_capacity(PQXDH_INFO.len() + 2 * KEY_LEN);
    match kem {
        None => info.extend_from_slice(X3DH_INFO),
        Some(kem) => {
            ikm.extend_from_slice(kem.shared_secret);
            info.extend_from_slice(PQXDH_INFO);
            info.extend_from_slice(&Sha256::digest(kem.encapsulation_key));
            info.extend_from_slice(&Sha256::digest(kem.ciphertext));
        }
    }
    let mut sk = Zeroizing::new([0u8; KEY_LEN]);
    primitives::hkdf_sha256(&[0u8; KEY_LEN], &ikm, &info, &mut sk[..])
        .map_err(|_| SessionError::NonContributory)?;
    Ok(sk)
}

/// AD = Ed25519 IK_initiator ‖ Ed25519 IK_responder.
pub(crate) fn associated_data(
    initiator: &IdentityPublicKey,
    responder: &IdentityPublicKey,
) -> [u8; ASSOCIATED_DATA_LEN] {
    let mut ad = [0u8; ASSOCIATED_DATA_LEN];
    let (a, b) = ad.split_at_mut(KEY_LEN);
    a.copy_from_slice(initiator.as_bytes());
    b.copy_from_slice(responder.as_bytes());
    ad
}
