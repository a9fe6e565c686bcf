//! "Record now, decrypt later": an attacker who recorded a session setup off the wire (the
//! prekey bundle the relay served and the first envelope the initiator sent) and, years later,
//! can break X25519, which hands it every X25519 private key involved. It is what a quantum
//! computer running Shor's algorithm would give; ML-KEM-768 it cannot break.
//!
//! The attacker is written from docs/PROTOCOL.md with the primitive crates only (x25519-dalek,
//! HKDF, HMAC, SHA-256, XChaCha20-Poly1305) and parses the recorded bytes itself: nothing of
//! hush-proto runs in it, so a shortcut or bug there cannot make the attack succeed or fail.
//!
//! - `hush-v1` (bundle and envelope version 1): SK is HKDF of the four DH values alone; the
//!   attacker recomputes them, runs the first Double Ratchet step and opens the message.
//! - `hush-v2` (version 2): SK also takes the ML-KEM-768 shared secret SS, and `SHA-256(ek) ‖
//!   SHA-256(CT)` in its info. The attacker does everything else (the four DHs, both hashes,
//!   the ratchet step) and tries its best guesses for the missing SS; none opens the message.
//!   Given SS ([`BrokenKeys::kem_shared_secret`], what breaking ML-KEM would also give), the
//!   same code reads it: the one thing missing is SS.

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use hkdf::Hkdf;
use hmac::{Hmac, Mac};
use rand_core::{CryptoRng, RngCore};
use sha2::{Digest, Sha256};
use x25519_dalek::{PublicKey, StaticSecret};
use zeroize::{Zeroize, Zeroizing};

const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
const SIGNATURE_LEN: usize = 64;
const RATCHET_HEADER_LEN: usize = 40;
const KEM_ENCAPSULATION_KEY_LEN: usize = 1184;
const KEM_CIPHERTEXT_LEN: usize = 1088;
/// The furthest into the first chain the attacker walks (the protocol's own skip limit).
const MAX_COUNTER: u32 = 1000;

const X3DH_INFO: &[u8] = b"hush-x3dh-v1";
const PQXDH_INFO: &[u8] = b"hush-pqxdh-v2";
const ROOT_KDF_INFO: &[u8] = b"hush-dr-root-v1";
const MESSAGE_KDF_INFO: &[u8] = b"hush-dr-msg-v1";

/// Every X25519 private key of one session setup: what an attacker who breaks X25519 computes
/// from the public keys it recorded. (The initiator's first ratchet key is not needed: the
/// responder's signed prekey gives the same first ratchet DH.)
pub struct BrokenKeys {
    /// The initiator's identity key in X25519 form (`IdentityKeyPair::x25519_secret_bytes`).
    pub initiator_identity: Zeroizing<[u8; KEY_LEN]>,
    /// The responder's identity key in X25519 form.
    pub responder_identity: Zeroizing<[u8; KEY_LEN]>,
    /// The responder's signed prekey the bundle offered.
    pub signed_prekey: Zeroizing<[u8; KEY_LEN]>,
    /// The responder's one-time prekey, if the bundle offered one.
    pub one_time_prekey: Option<Zeroizing<[u8; KEY_LEN]>>,
    /// The initiator's ephemeral (base) key, as its RNG drew it.
    pub ephemeral: Zeroizing<[u8; KEY_LEN]>,
    /// The ML-KEM-768 shared secret of a `hush-v2` setup: breaking X25519 does NOT give it.
    /// `None` for the attacker of this module; `Some` only to show that it is the one missing
    /// piece (with it, the same derivation reads a `hush-v2` first message).
    pub kem_shared_secret: Option<Zeroizing<[u8; KEY_LEN]>>,
}

/// What was recorded off the wire: the bundle as the relay served it and the first envelope as
/// the initiator sent it.
#[derive(Clone, Debug)]
pub struct Recording {
    /// The encoded prekey bundle (docs/PROTOCOL.md §3).
    pub bundle: Vec<u8>,
    /// The encoded prekey envelope (docs/PROTOCOL.md §6).
    pub first_envelope: Vec<u8>,
}

/// A first message the attacker read.
#[derive(Debug)]
pub struct Readout {
    /// The setup's profile, from the envelope version: 1 = `hush-v1`, 2 = `hush-v2`.
    pub version: u8,
    /// Which key derivation opened it.
    pub derivation: &'static str,
    /// The AEAD plaintext (the padded message content).
    pub plaintext: Zeroizing<Vec<u8>>,
}

/// Why the attack did not produce a plaintext.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum QuantumAttackError {
    /// The recording is not a bundle and prekey envelope this attacker understands.
    #[error("malformed recording: {0}")]
    Malformed(&'static str),
    /// A key handed over does not belong to the recorded setup.
    #[error("the {0} handed over does not match the recording")]
    WrongKey(&'static str),
    /// An X25519 result was all zero (a small-order public key in the recording).
    #[error("non-contributory X25519 result")]
    NonContributory,
    /// Every derivation was tried and none opened the first message.
    #[error("cannot open the first message: tried {}", tried.join("; "))]
    CannotOpen {
        /// The setup's profile (envelope version).
        version: u8,
        /// The derivations tried, in order.
        tried: Vec<&'static str>,
    },
}

/// A byte cursor that refuses to read past the end (no panicking slices on recorded input).
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], QuantumAttackError> {
        if self.0.len() < n {
            return Err(QuantumAttackError::Malformed(what));
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], QuantumAttackError> {
        self.take(N, what)?
            .try_into()
            .map_err(|_| QuantumAttackError::Malformed(what))
    }

    fn u8(&mut self, what: &'static str) -> Result<u8, QuantumAttackError> {
        Ok(u8::from_be_bytes(self.array(what)?))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, QuantumAttackError> {
        Ok(u32::from_be_bytes(self.array(what)?))
    }

    fn option(&mut self, what: &'static str) -> Result<bool, QuantumAttackError> {
        match self.u8(what)? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(QuantumAttackError::Malformed(what)),
        }
    }
}

/// The public values of a recorded bundle the attack needs.
struct Bundle {
    version: u8,
    identity: [u8; KEY_LEN],
    signed_prekey_id: u32,
    signed_prekey: [u8; KEY_LEN],
    one_time_prekey: Option<(u32, [u8; KEY_LEN])>,
    pq_prekey: Option<(u32, Box<[u8; KEM_ENCAPSULATION_KEY_LEN]>)>,
}

fn parse_bundle(bytes: &[u8]) -> Result<Bundle, QuantumAttackError> {
    let mut c = Cursor(bytes);
    let version = c.u8("bundle version")?;
    if version != 1 && version != 2 {
        return Err(QuantumAttackError::Malformed("bundle version"));
    }
    let identity = c.array("bundle identity")?;
    let signed_prekey_id = c.u32("bundle signed prekey id")?;
    c.take(8, "bundle signed prekey time")?;
    let signed_prekey = c.array("bundle signed prekey")?;
    c.take(SIGNATURE_LEN, "bundle signed prekey signature")?;
    let one_time_prekey = if c.option("bundle one-time prekey flag")? {
        Some((
            c.u32("bundle one-time id")?,
            c.array("bundle one-time key")?,
        ))
    } else {
        None
    };
    let pq_prekey = if version == 2 {
        let id = c.u32("bundle PQ prekey id")?;
        let ek = Box::new(c.array::<KEM_ENCAPSULATION_KEY_LEN>("bundle PQ prekey")?);
        c.take(SIGNATURE_LEN, "bundle PQ prekey signature")?;
        Some((id, ek))
    } else {
        None
    };
    if !c.0.is_empty() {
        return Err(QuantumAttackError::Malformed("bytes after the bundle"));
    }
    Ok(Bundle {
        version,
        identity,
        signed_prekey_id,
        signed_prekey,
        one_time_prekey,
        pq_prekey,
    })
}

/// The fields of a recorded prekey envelope.
struct FirstMessage<'a> {
    version: u8,
    identity: [u8; KEY_LEN],
    ephemeral: [u8; KEY_LEN],
    signed_prekey_id: u32,
    one_time_prekey_id: Option<u32>,
    pq: Option<(u32, Box<[u8; KEM_CIPHERTEXT_LEN]>)>,
    header: [u8; RATCHET_HEADER_LEN],
    ciphertext: &'a [u8],
}

fn parse_first_message(bytes: &[u8]) -> Result<FirstMessage<'_>, QuantumAttackError> {
    let mut c = Cursor(bytes);
    let version = c.u8("envelope version")?;
    if version != 1 && version != 2 {
        return Err(QuantumAttackError::Malformed("envelope version"));
    }
    if c.u8("envelope kind")? != 1 {
        return Err(QuantumAttackError::Malformed("not a prekey envelope"));
    }
    let identity = c.array("envelope identity")?;
    let ephemeral = c.array("envelope ephemeral key")?;
    let signed_prekey_id = c.u32("envelope signed prekey id")?;
    let one_time_prekey_id = if c.option("envelope one-time prekey flag")? {
        Some(c.u32("envelope one-time prekey id")?)
    } else {
        None
    };
    let pq = if version == 2 {
        let id = c.u32("envelope PQ prekey id")?;
        Some((id, Box::new(c.array("envelope KEM ciphertext")?)))
    } else {
        None
    };
    let header = c.array("ratchet header")?;
    let ciphertext = c.0;
    if ciphertext.len() < NONCE_LEN + TAG_LEN {
        return Err(QuantumAttackError::Malformed("ciphertext too short"));
    }
    Ok(FirstMessage {
        version,
        identity,
        ephemeral,
        signed_prekey_id,
        one_time_prekey_id,
        pq,
        header,
        ciphertext,
    })
}

/// X25519 with the contributory check.
fn dh(
    secret: &[u8; KEY_LEN],
    public: &[u8; KEY_LEN],
) -> Result<Zeroizing<[u8; KEY_LEN]>, QuantumAttackError> {
    let shared = StaticSecret::from(*secret).diffie_hellman(&PublicKey::from(*public));
    if !shared.was_contributory() {
        return Err(QuantumAttackError::NonContributory);
    }
    Ok(Zeroizing::new(shared.to_bytes()))
}

fn public_of(secret: &[u8; KEY_LEN]) -> [u8; KEY_LEN] {
    PublicKey::from(&StaticSecret::from(*secret)).to_bytes()
}

fn hkdf(salt: &[u8], ikm: &[u8], info: &[u8], out: &mut [u8]) -> Result<(), QuantumAttackError> {
    Hkdf::<Sha256>::new(Some(salt), ikm)
        .expand(info, out)
        .map_err(|_| QuantumAttackError::Malformed("HKDF length"))
}

fn hmac(key: &[u8], data: &[u8]) -> Result<Zeroizing<[u8; KEY_LEN]>, QuantumAttackError> {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key)
        .map_err(|_| QuantumAttackError::Malformed("HMAC key"))?;
    mac.update(data);
    let mut out = Zeroizing::new([0u8; KEY_LEN]);
    out.copy_from_slice(&mac.finalize().into_bytes());
    Ok(out)
}

/// One guess at SK: its name, the HKDF input keying material and the HKDF info.
type Candidate = (&'static str, Zeroizing<Vec<u8>>, Vec<u8>);

/// Recover the first message of a recorded session setup with the X25519 keys handed over.
///
/// Every key is first checked against the recording (its public key, and the prekey ids the
/// envelope names), so a failure below is the profile's doing, not a mix-up of inputs.
pub fn read_first_message(
    recording: &Recording,
    keys: &BrokenKeys,
) -> Result<Readout, QuantumAttackError> {
    let bundle = parse_bundle(&recording.bundle)?;
    let first = parse_first_message(&recording.first_envelope)?;
    if bundle.version != first.version {
        return Err(QuantumAttackError::Malformed(
            "bundle and envelope profiles differ",
        ));
    }
    if first.signed_prekey_id != bundle.signed_prekey_id
        || public_of(&keys.signed_prekey) != bundle.signed_prekey
    {
        return Err(QuantumAttackError::WrongKey("signed prekey"));
    }
    if public_of(&keys.ephemeral) != first.ephemeral {
        return Err(QuantumAttackError::WrongKey("ephemeral key"));
    }
    let one_time = match (
        &bundle.one_time_prekey,
        first.one_time_prekey_id,
        &keys.one_time_prekey,
    ) {
        (Some((id, public)), Some(used), Some(secret)) if *id == used => {
            if public_of(secret) != *public {
                return Err(QuantumAttackError::WrongKey("one-time prekey"));
            }
            Some((secret, public))
        }
        (None, None, _) => None,
        _ => return Err(QuantumAttackError::WrongKey("one-time prekey")),
    };
    let kem = match (&bundle.pq_prekey, &first.pq) {
        (Some((id, ek)), Some((used, ct))) if id == used => Some((ek, ct)),
        (None, None) => None,
        _ => return Err(QuantumAttackError::Malformed("PQ prekey id mismatch")),
    };

    // The four X3DH values, each from one private key and a public key on the wire
    // (PROTOCOL.md §4): DH1 = DH(IK_A, SPK_B), DH2 = DH(EK_A, IK_B) computed as DH(IK_B, EK_A),
    // DH3 = DH(EK_A, SPK_B), DH4 = DH(EK_A, OPK_B).
    let mut dh_ikm = Zeroizing::new(Vec::with_capacity(5 * KEY_LEN));
    dh_ikm.extend_from_slice(&[0xFF; KEY_LEN]);
    dh_ikm.extend_from_slice(&dh(&keys.initiator_identity, &bundle.signed_prekey)?[..]);
    dh_ikm.extend_from_slice(&dh(&keys.responder_identity, &first.ephemeral)?[..]);
    dh_ikm.extend_from_slice(&dh(&keys.ephemeral, &bundle.signed_prekey)?[..]);
    if let Some((_, public)) = one_time {
        dh_ikm.extend_from_slice(&dh(&keys.ephemeral, public)?[..]);
    }

    // The first ratchet step: the initiator's ratchet key is in the header, and the
    // responder's first ratchet key is the signed prekey.
    let mut ratchet_key = [0u8; KEY_LEN];
    ratchet_key.copy_from_slice(
        first
            .header
            .get(..KEY_LEN)
            .ok_or(QuantumAttackError::Malformed("header"))?,
    );
    let ratchet_dh = dh(&keys.signed_prekey, &ratchet_key)?;
    let counter_bytes: [u8; 4] = first
        .header
        .get(RATCHET_HEADER_LEN - 4..)
        .and_then(|b| b.try_into().ok())
        .ok_or(QuantumAttackError::Malformed("header"))?;
    let counter = u32::from_be_bytes(counter_bytes);
    if counter > MAX_COUNTER {
        return Err(QuantumAttackError::Malformed("message counter"));
    }
    let mut ad = Vec::with_capacity(2 * KEY_LEN + RATCHET_HEADER_LEN);
    ad.extend_from_slice(&first.identity);
    ad.extend_from_slice(&bundle.identity);
    ad.extend_from_slice(&first.header);

    // The candidate SKs: for hush-v1 the real one; for hush-v2 the attacker's best guesses.
    let mut candidates: Vec<Candidate> = Vec::new();
    match kem {
        None => candidates.push(("hush-v1 X3DH", dh_ikm.clone(), X3DH_INFO.to_vec())),
        Some((ek, ct)) => {
            let mut info = PQXDH_INFO.to_vec();
            info.extend_from_slice(&Sha256::digest(&ek[..]));
            info.extend_from_slice(&Sha256::digest(&ct[..]));
            if let Some(ss) = &keys.kem_shared_secret {
                let mut ikm = dh_ikm.clone();
                ikm.extend_from_slice(&ss[..]);
                candidates.push(("hush-v2 PQXDH with the KEM secret", ikm, info.clone()));
            }
            candidates.push((
                "hush-v2 PQXDH without the KEM secret",
                dh_ikm.clone(),
                info.clone(),
            ));
            let mut zero_ss = dh_ikm.clone();
            zero_ss.extend_from_slice(&[0u8; KEY_LEN]);
            candidates.push(("hush-v2 PQXDH with an all-zero KEM secret", zero_ss, info));
            candidates.push((
                "hush-v1 X3DH over the same DHs",
                dh_ikm.clone(),
                X3DH_INFO.to_vec(),
            ));
        }
    }

    let mut tried = Vec::new();
    for (derivation, ikm, info) in candidates {
        tried.push(derivation);
        let mut sk = Zeroizing::new([0u8; KEY_LEN]);
        hkdf(&[0u8; KEY_LEN], &ikm, &info, &mut sk[..])?;
        if let Some(plaintext) = open_first_chain(&sk, &ratchet_dh, counter, &first, &ad)? {
            return Ok(Readout {
                version: first.version,
                derivation,
                plaintext,
            });
        }
    }
    Err(QuantumAttackError::CannotOpen {
        version: first.version,
        tried,
    })
}

/// KDF_RK(SK, DH) → chain key; walk to `counter`; MK → AEAD key; open. `None` if the tag
/// does not verify.
fn open_first_chain(
    sk: &[u8; KEY_LEN],
    ratchet_dh: &[u8; KEY_LEN],
    counter: u32,
    first: &FirstMessage<'_>,
    ad: &[u8],
) -> Result<Option<Zeroizing<Vec<u8>>>, QuantumAttackError> {
    let mut root = Zeroizing::new([0u8; 2 * KEY_LEN]);
    hkdf(sk, ratchet_dh, ROOT_KDF_INFO, &mut root[..])?;
    let mut chain = Zeroizing::new([0u8; KEY_LEN]);
    chain.copy_from_slice(
        root.get(KEY_LEN..)
            .ok_or(QuantumAttackError::Malformed("KDF_RK"))?,
    );
    for _ in 0..counter {
        chain = hmac(&chain[..], &[0x02])?;
    }
    let message_key = hmac(&chain[..], &[0x01])?;
    let mut aead_key = Zeroizing::new([0u8; KEY_LEN]);
    hkdf(
        &[0u8; KEY_LEN],
        &message_key[..],
        MESSAGE_KDF_INFO,
        &mut aead_key[..],
    )?;
    let (nonce, sealed) = first
        .ciphertext
        .split_at(NONCE_LEN.min(first.ciphertext.len()));
    let cipher = XChaCha20Poly1305::new((&*aead_key).into());
    Ok(cipher
        .decrypt(
            XNonce::from_slice(nonce),
            Payload {
                msg: sealed,
                aad: ad,
            },
        )
        .ok()
        .map(Zeroizing::new))
}

/// An RNG wrapper that keeps a copy of every draw, so a test can hand the attacker the
/// ephemeral secret the initiator drew (its first 32-byte draw in `Session::initiate`) as if it
/// had broken it out of the recorded public key.
pub struct RecordingRng<R> {
    inner: R,
    draws: Vec<Zeroizing<Vec<u8>>>,
}

impl<R> RecordingRng<R> {
    /// Wrap `inner`.
    pub fn new(inner: R) -> Self {
        Self {
            inner,
            draws: Vec::new(),
        }
    }

    /// The draws so far, oldest first.
    pub fn draws(&self) -> &[Zeroizing<Vec<u8>>] {
        &self.draws
    }

    /// The `index`-th draw as a 32-byte key, if it was one.
    pub fn key(&self, index: usize) -> Option<Zeroizing<[u8; KEY_LEN]>> {
        let draw = self.draws.get(index)?;
        let mut key = Zeroizing::new([0u8; KEY_LEN]);
        if draw.len() != KEY_LEN {
            return None;
        }
        key.copy_from_slice(draw);
        Some(key)
    }

    /// Forget the draws (zeroized).
    pub fn clear(&mut self) {
        for draw in &mut self.draws {
            draw.zeroize();
        }
        self.draws.clear();
    }
}

impl<R: RngCore> RngCore for RecordingRng<R> {
    fn next_u32(&mut self) -> u32 {
        let mut bytes = [0u8; 4];
        self.fill_bytes(&mut bytes);
        u32::from_le_bytes(bytes)
    }

    fn next_u64(&mut self) -> u64 {
        let mut bytes = [0u8; 8];
        self.fill_bytes(&mut bytes);
        u64::from_le_bytes(bytes)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        self.inner.fill_bytes(dest);
        self.draws.push(Zeroizing::new(dest.to_vec()));
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.inner.try_fill_bytes(dest)?;
        self.draws.push(Zeroizing::new(dest.to_vec()));
        Ok(())
    }
}

impl<R: CryptoRng> CryptoRng for RecordingRng<R> {}
