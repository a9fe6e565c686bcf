//! X3DH session setup (Signal's Extended Triple Diffie-Hellman) with the `hush-v1` parameters.

use rand_core::CryptoRngCore;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::keys::{
    IdentityKeyPair, IdentityPublicKey, OneTimePrekeyPair, SignedPrekeyPair, VerifiedBundle,
    X25519PublicKey, X25519Secret,
};
use crate::primitives::{self, KEY_LEN};
use crate::SessionError;

/// HKDF info for the X3DH shared secret.
pub const X3DH_INFO: &[u8] = b"hush-x3dh-v1";
/// Length of the X3DH associated data: initiator's then responder's Ed25519 identity key.
pub const ASSOCIATED_DATA_LEN: usize = 2 * KEY_LEN;

/// What the initiator tells the responder so it can repeat the key agreement. On the wire the
/// prekeys are named by id; the responder looks them up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct X3dhHeader {
    /// The initiator's identity key.
    pub identity_key: IdentityPublicKey,
    /// The initiator's ephemeral (base) key; it also identifies the session.
    pub ephemeral_key: X25519PublicKey,
    /// Which of the responder's signed prekeys was used.
    pub signed_prekey_id: u32,
    /// Which one-time prekey was used, if the bundle had one.
    pub one_time_prekey_id: Option<u32>,
}

/// A responder's store of prekey secrets, looked up by the ids in an [`X3dhHeader`].
pub trait PrekeyStore {
    /// The signed prekey with this id, if still held.
    fn signed_prekey(&self, id: u32) -> Option<&SignedPrekeyPair>;
    /// The one-time prekey with this id, if not yet used.
    fn one_time_prekey(&self, id: u32) -> Option<&OneTimePrekeyPair>;
}

/// SK and AD, the two results of X3DH.
pub(crate) struct X3dhOutput {
    pub(crate) shared_secret: Zeroizing<[u8; KEY_LEN]>,
    pub(crate) associated_data: [u8; ASSOCIATED_DATA_LEN],
}

/// Initiator side: draws the ephemeral key (32 bytes) and derives SK.
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
    let shared_secret = derive_shared_secret(&dh1, &dh2, &dh3, dh4.as_deref())?;
    let header = X3dhHeader {
        identity_key: our_public,
        ephemeral_key: ephemeral.public_key(),
        signed_prekey_id: bundle.signed_prekey.id,
        one_time_prekey_id: bundle.one_time_prekey.map(|opk| opk.id),
    };
    let output = X3dhOutput {
        shared_secret,
        associated_data: associated_data(&our_public, &bundle.identity_key),
    };
    Ok((output, header, spk))
}

/// Responder side: repeats the agreement with the named prekeys.
pub(crate) fn respond(
    ours: &IdentityKeyPair,
    signed_prekey: &SignedPrekeyPair,
    one_time_prekey: Option<&OneTimePrekeyPair>,
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
    Ok(X3dhOutput {
        shared_secret: derive_shared_secret(&dh1, &dh2, &dh3, dh4.as_deref())?,
        associated_data: associated_data(&header.identity_key, &our_public),
    })
}

/// SK = HKDF-SHA-256(salt = 0³², IKM = 0xFF³² ‖ DH1 ‖ DH2 ‖ DH3 [‖ DH4], info, L = 32).
fn derive_shared_secret(
    dh1: &[u8; KEY_LEN],
    dh2: &[u8; KEY_LEN],
    dh3: &[u8; KEY_LEN],
    dh4: Option<&[u8; KEY_LEN]>,
) -> Result<Zeroizing<[u8; KEY_LEN]>, SessionError> {
    let mut ikm = Zeroizing::new(Vec::with_capacity(5 * KEY_LEN));
    ikm.extend_from_slice(&[0xFF; KEY_LEN]);
    ikm.extend_from_slice(dh1);
    ikm.extend_from_slice(dh2);
    ikm.extend_from_slice(dh3);
    if let Some(dh4) = dh4 {
        ikm.extend_from_slice(dh4);
    }
    let mut sk = Zeroizing::new([0u8; KEY_LEN]);
    primitives::hkdf_sha256(&[0u8; KEY_LEN], &ikm, X3DH_INFO, &mut sk[..])
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
