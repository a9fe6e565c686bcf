//! Keys derived from the passphrase, sealing (XChaCha20-Poly1305) with padding, and the bounds
//! on the stored Argon2id parameters.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hmac::{Hmac, Mac};
use rand_core::{OsRng, RngCore};
use serde::Serialize;
use sha2::Sha256;
use zeroize::Zeroizing;

use super::StoreError;

/// Every sealed value is padded to at least this many bytes, then to its Padmé bucket, so
/// the size of a row at rest does not tell how long a message, name or session is. 512 bytes
/// covers a history entry with a text of up to about 300 bytes.
pub const SEALED_MIN_PADDED_LEN: usize = 512;

/// Largest Argon2id memory cost accepted from a profile (256 MiB, in KiB): an edited profile
/// must not make `open` allocate gigabytes. The default is 19 MiB.
pub const KDF_MAX_M_COST: u32 = 256 * 1024;
/// Largest Argon2id pass count accepted from a profile: bounds the time `open` can take
/// (at most a few seconds at [`KDF_MAX_M_COST`]). The default is 2.
pub const KDF_MAX_T_COST: u32 = 10;
/// Largest Argon2id lane count accepted from a profile. The default is 1.
pub const KDF_MAX_P_COST: u32 = 8;

/// Argon2id parameters (OWASP's minimum recommendation: 19 MiB, 2 passes, 1 lane).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost: u32,
    /// Passes.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl Default for KdfParams {
    fn default() -> Self {
        Self {
            m_cost: 19 * 1024,
            t_cost: 2,
            p_cost: 1,
        }
    }
}

impl KdfParams {
    /// Refuse parameters outside the bounds before any work is done.
    pub fn check_bounds(&self) -> Result<(), StoreError> {
        if self.m_cost > KDF_MAX_M_COST
            || self.t_cost > KDF_MAX_T_COST
            || self.p_cost > KDF_MAX_P_COST
        {
            return Err(StoreError::KdfParams(format!(
                "m_cost {} KiB, t_cost {}, p_cost {} exceed the limits ({KDF_MAX_M_COST} KiB, \
                 {KDF_MAX_T_COST}, {KDF_MAX_P_COST})",
                self.m_cost, self.t_cost, self.p_cost
            )));
        }
        argon2::Params::new(self.m_cost, self.t_cost, self.p_cost, Some(32))
            .map(|_| ())
            .map_err(|e| StoreError::KdfParams(e.to_string()))
    }

    /// The canonical bytes bound into the passphrase check value.
    pub(super) fn to_bytes(self) -> Vec<u8> {
        [self.m_cost, self.t_cost, self.p_cost]
            .iter()
            .flat_map(|v| v.to_le_bytes())
            .collect()
    }
}

/// The keys of an unlocked profile.
pub(super) struct Keys {
    seal: Zeroizing<[u8; 32]>,
    lookup: Zeroizing<[u8; 32]>,
    manifest: Zeroizing<[u8; 32]>,
}

fn hmac(key: &[u8; 32], parts: &[&[u8]]) -> [u8; 32] {
    let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(key) {
        Ok(m) => m,
        // HMAC takes keys of any length; this arm is unreachable.
        Err(_) => return [0u8; 32],
    };
    for part in parts {
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

impl Keys {
    /// Argon2id then HKDF. The parameters must be within bounds (checked here first).
    pub(super) fn derive(
        passphrase: &[u8],
        salt: &[u8],
        params: KdfParams,
    ) -> Result<Self, StoreError> {
        params.check_bounds()?;
        let argon = argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon2::Params::new(params.m_cost, params.t_cost, params.p_cost, Some(32))
                .map_err(|e| StoreError::KdfParams(e.to_string()))?,
        );
        let mut master = Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(passphrase, salt, &mut master[..])
            .map_err(|e| StoreError::Corrupt(format!("kdf: {e}")))?;
        let hk = hkdf::Hkdf::<Sha256>::new(None, &master[..]);
        let mut seal = Zeroizing::new([0u8; 32]);
        let mut lookup = Zeroizing::new([0u8; 32]);
        let mut manifest = Zeroizing::new([0u8; 32]);
        hk.expand(b"hush-profile-seal", &mut seal[..])
            .and_then(|()| hk.expand(b"hush-profile-lookup", &mut lookup[..]))
            .and_then(|()| hk.expand(b"hush-profile-manifest", &mut manifest[..]))
            .map_err(|_| StoreError::Corrupt("key derivation".into()))?;
        Ok(Self {
            seal,
            lookup,
            manifest,
        })
    }

    /// The opaque lookup key of (`namespace`, `key`).
    pub(super) fn lookup_key(&self, namespace: &str, key: &[u8]) -> Vec<u8> {
        hmac(&self.lookup, &[namespace.as_bytes(), &[0], key]).to_vec()
    }

    /// The secret tag of one row version (its place, generation and exact sealed bytes),
    /// summed into the manifest and remembered while the profile is open.
    pub(super) fn row_tag(&self, address: &[u8], generation: u64, sealed: &[u8]) -> [u8; 32] {
        let len = (sealed.len() as u64).to_le_bytes();
        hmac(
            &self.manifest,
            &[address, &generation.to_le_bytes(), &len, sealed],
        )
    }

    /// Seal raw bytes (no padding).
    pub(super) fn seal(&self, ad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, StoreError> {
        let mut nonce = [0u8; 24];
        OsRng.fill_bytes(&mut nonce);
        let cipher = XChaCha20Poly1305::new((&*self.seal).into());
        let ct = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: ad,
                },
            )
            .map_err(|_| StoreError::Corrupt("seal failed".into()))?;
        Ok([nonce.as_slice(), &ct].concat())
    }

    /// Open raw bytes; `None` if they do not authenticate under `ad`.
    pub(super) fn open(&self, ad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        if sealed.len() < 24 + 16 {
            return None;
        }
        let (nonce, ct) = sealed.split_at(24);
        let cipher = XChaCha20Poly1305::new((&*self.seal).into());
        cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad: ad })
            .ok()
            .map(Zeroizing::new)
    }

    /// Seal a value padded to [`padded_value_len`].
    pub(super) fn seal_padded(&self, ad: &[u8], value: &[u8]) -> Result<Vec<u8>, StoreError> {
        let len = u32::try_from(value.len())
            .map_err(|_| StoreError::Corrupt("value too large to store".into()))?;
        let mut padded = Zeroizing::new(Vec::with_capacity(padded_value_len(value.len())));
        padded.extend_from_slice(&len.to_le_bytes());
        padded.extend_from_slice(value);
        padded.resize(padded_value_len(value.len()), 0);
        self.seal(ad, &padded)
    }

    /// Open a padded value; `None` if it does not authenticate or its length prefix is wrong.
    pub(super) fn open_padded(&self, ad: &[u8], sealed: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let padded = self.open(ad, sealed)?;
        let (len, rest) = padded.split_first_chunk::<4>()?;
        let len = usize::try_from(u32::from_le_bytes(*len)).ok()?;
        rest.get(..len).map(|v| Zeroizing::new(v.to_vec()))
    }
}

/// Length prefix plus value, rounded up as message content is (Padmé), never below
/// [`SEALED_MIN_PADDED_LEN`].
pub(super) fn padded_value_len(len: usize) -> usize {
    hush_proto::message::padded_len(len.saturating_add(4)).max(SEALED_MIN_PADDED_LEN)
}
