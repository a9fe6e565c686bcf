//! A pairwise session: X3DH setup plus a Double Ratchet, producing and consuming [`Envelope`]s.

use rand_core::CryptoRngCore;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::envelope::{Envelope, PrekeyMessage};
use crate::keys::{IdentityKeyPair, IdentityPublicKey, VerifiedBundle, X25519PublicKey};
use crate::message::MAX_PLAINTEXT_LEN;
use crate::ratchet::{DoubleRatchet, RatchetLimits};
use crate::x3dh::{self, PrekeyStore, X3dhHeader, ASSOCIATED_DATA_LEN};
use crate::{DecryptError, EncryptError, Profile, SessionError};

/// One end of an end-to-end encrypted session with one peer.
#[derive(Clone)]
pub struct Session {
    pub(crate) ratchet: DoubleRatchet,
    pub(crate) local_identity: IdentityPublicKey,
    pub(crate) remote_identity: IdentityPublicKey,
    pub(crate) is_initiator: bool,
    /// The X3DH header that set the session up (sent by the initiator, received by the
    /// responder). Its ephemeral key names the session on both sides.
    pub(crate) x3dh_header: X3dhHeader,
    /// Initiator only: attach the X3DH header to every message until a reply arrives.
    pub(crate) pending_prekey: bool,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("remote_identity", &self.remote_identity)
            .field("is_initiator", &self.is_initiator)
            .field("ratchet", &self.ratchet)
            .finish_non_exhaustive()
    }
}

/// A session created from a received prekey message, with that message's plaintext.
#[derive(Debug)]
pub struct InboundSession {
    /// The new session.
    pub session: Session,
    /// The first message's plaintext.
    pub plaintext: Zeroizing<Vec<u8>>,
    /// The one-time prekey the message used: delete it only after this result is committed.
    pub used_one_time_prekey: Option<u32>,
    /// The one-time PQ prekey the message used (`None` for `hush-v1` and for a last-resort
    /// PQ prekey, which is kept): delete it in the same commit that stores the session.
    pub used_one_time_pq_prekey: Option<u32>,
}

impl Session {
    /// Start a session as initiator from a verified bundle (its profile is the session's).
    /// Draws the ephemeral key (32 bytes), for `hush-v2` the KEM randomness `m` (32 bytes),
    /// then the first ratchet key (32 bytes).
    pub fn initiate(
        rng: &mut impl CryptoRngCore,
        ours: &IdentityKeyPair,
        bundle: &VerifiedBundle,
    ) -> Result<Self, SessionError> {
        Self::initiate_with_limits(rng, ours, bundle, RatchetLimits::default())
    }

    /// [`Session::initiate`] with non-default skip limits (tests and vectors).
    pub fn initiate_with_limits(
        rng: &mut impl CryptoRngCore,
        ours: &IdentityKeyPair,
        bundle: &VerifiedBundle,
        limits: RatchetLimits,
    ) -> Result<Self, SessionError> {
        let (output, header, spk) = x3dh::initiate(rng, ours, bundle)?;
        let ratchet = DoubleRatchet::new_initiator(rng, &output.shared_secret, spk, limits)?;
        Ok(Self {
            ratchet,
            local_identity: ours.public_key(),
            remote_identity: bundle.bundle().identity_key,
            is_initiator: true,
            x3dh_header: header,
            pending_prekey: true,
        })
    }

    /// Create the responder's session from a prekey message and decrypt it. Nothing is created
    /// and no prekey is consumed unless the message authenticates. Draws no randomness today
    /// (the responder's first ratchet key is made by its first `encrypt`).
    ///
    /// `expected_sender` is the identity the caller believes sent the message (for a client,
    /// the sender the relay named). The X3DH header's identity key must be exactly that key, or
    /// [`SessionError::MismatchedIdentityKey`] is returned before any prekey lookup or key
    /// agreement: an inbound session cannot be created without naming whom it is expected from,
    /// so no caller can forget to check who is on the other end. Likewise `required` is the
    /// weakest profile the caller accepts from that sender: a first message of a weaker profile
    /// is refused with [`SessionError::Downgrade`] before any key agreement.
    pub fn respond(
        rng: &mut impl CryptoRngCore,
        ours: &IdentityKeyPair,
        expected_sender: &IdentityPublicKey,
        required: Profile,
        prekeys: &impl PrekeyStore,
        message: &PrekeyMessage,
    ) -> Result<InboundSession, SessionError> {
        Self::respond_with_limits(
            rng,
            ours,
            expected_sender,
            required,
            prekeys,
            message,
            RatchetLimits::default(),
        )
    }

    /// [`Session::respond`] with non-default skip limits (tests and vectors).
    #[allow(clippy::too_many_arguments)]
    pub fn respond_with_limits(
        rng: &mut impl CryptoRngCore,
        ours: &IdentityKeyPair,
        expected_sender: &IdentityPublicKey,
        required: Profile,
        prekeys: &impl PrekeyStore,
        message: &PrekeyMessage,
        limits: RatchetLimits,
    ) -> Result<InboundSession, SessionError> {
        let header = &message.x3dh;
        if !bool::from(
            header
                .identity_key
                .as_bytes()
                .ct_eq(expected_sender.as_bytes()),
        ) {
            return Err(SessionError::MismatchedIdentityKey);
        }
        let offered = header.profile();
        if offered < required {
            return Err(SessionError::Downgrade { required, offered });
        }
        let spk = prekeys
            .signed_prekey(header.signed_prekey_id)
            .ok_or(SessionError::UnknownSignedPrekey(header.signed_prekey_id))?;
        let opk = match header.one_time_prekey_id {
            Some(id) => Some(
                prekeys
                    .one_time_prekey(id)
                    .ok_or(SessionError::UnknownOneTimePrekey(id))?,
            ),
            None => None,
        };
        let pq_prekey = match &header.pq {
            Some(pq) => Some(
                prekeys
                    .pq_prekey(pq.prekey_id)
                    .ok_or(SessionError::UnknownPqPrekey(pq.prekey_id))?,
            ),
            None => None,
        };
        let _ = rng;
        let output = x3dh::respond(ours, spk, opk, pq_prekey, header)?;
        let ratchet =
            DoubleRatchet::new_responder(&output.shared_secret, spk.secret.clone(), limits);
        let mut session = Self {
            ratchet,
            local_identity: ours.public_key(),
            remote_identity: header.identity_key,
            is_initiator: false,
            x3dh_header: header.clone(),
            pending_prekey: false,
        };
        let plaintext = session
            .ratchet
            .decrypt(&message.message, &output.associated_data)
            .map_err(SessionError::InitialMessage)?;
        Ok(InboundSession {
            session,
            plaintext,
            used_one_time_prekey: header.one_time_prekey_id,
            used_one_time_pq_prekey: pq_prekey.filter(|pq| !pq.is_last_resort()).map(|pq| pq.id),
        })
    }

    /// Encrypt one (already padded) plaintext. Draws 24 bytes for the nonce, preceded by 32
    /// bytes for a new ratchet key when a DH step is due (first message after a reply).
    pub fn encrypt(
        &mut self,
        rng: &mut impl CryptoRngCore,
        plaintext: &[u8],
    ) -> Result<Envelope, EncryptError> {
        if plaintext.len() > MAX_PLAINTEXT_LEN {
            return Err(EncryptError::PlaintextTooLarge {
                len: plaintext.len(),
                max: MAX_PLAINTEXT_LEN,
            });
        }
        let ad = self.associated_data();
        let message = self.ratchet.encrypt(rng, plaintext, &ad)?;
        Ok(if self.pending_prekey {
            Envelope::Prekey(PrekeyMessage {
                x3dh: self.x3dh_header.clone(),
                message,
            })
        } else {
            Envelope::Message(message)
        })
    }

    /// Decrypt one envelope. On any error the session is byte-for-byte unchanged. Draws no
    /// randomness today; the parameter keeps the API stable for a post-quantum ratchet.
    pub fn decrypt(
        &mut self,
        rng: &mut impl CryptoRngCore,
        envelope: &Envelope,
    ) -> Result<Zeroizing<Vec<u8>>, DecryptError> {
        if let Envelope::Prekey(prekey) = envelope {
            if !self.matches(prekey) {
                return Err(DecryptError::SessionMismatch);
            }
        }
        let ad = self.associated_data();
        let _ = rng; // Reserved: decryption currently draws no randomness.
        let plaintext = self.ratchet.decrypt(envelope.ratchet_message(), &ad)?;
        // A reply proves the responder has the session: stop attaching the X3DH header.
        self.pending_prekey = false;
        Ok(plaintext)
    }

    /// Whether a prekey message belongs to this session (the very X3DH header that created it),
    /// as when an initiator sends several messages before hearing back. Every header field must
    /// match, so a relay cannot alter the unauthenticated prekey ids of later copies.
    pub fn matches(&self, message: &PrekeyMessage) -> bool {
        let ours = &self.x3dh_header;
        let theirs = &message.x3dh;
        !self.is_initiator
            && bool::from(
                ours.ephemeral_key
                    .as_bytes()
                    .ct_eq(theirs.ephemeral_key.as_bytes()),
            )
            && ours == theirs
    }

    /// The peer's identity key.
    pub fn remote_identity(&self) -> &IdentityPublicKey {
        &self.remote_identity
    }

    /// The session's setup profile: `hush-v2` when a PQ prekey was part of the agreement.
    pub fn profile(&self) -> Profile {
        self.x3dh_header.profile()
    }

    /// Our identity key.
    pub fn local_identity(&self) -> &IdentityPublicKey {
        &self.local_identity
    }

    /// Whether we started this session.
    pub fn is_initiator(&self) -> bool {
        self.is_initiator
    }

    /// The initiator's base key: a public identifier of this session, equal on both sides.
    pub fn session_id(&self) -> &X25519PublicKey {
        &self.x3dh_header.ephemeral_key
    }

    /// Whether a reply has been received (initiator) — until then messages carry X3DH headers.
    pub fn has_received(&self) -> bool {
        !self.pending_prekey
    }

    /// Whether this side can send now.
    pub fn can_send(&self) -> bool {
        self.ratchet.can_send()
    }

    /// Skipped message keys currently stored.
    pub fn skipped_keys(&self) -> usize {
        self.ratchet.skipped_len()
    }

    fn associated_data(&self) -> [u8; ASSOCIATED_DATA_LEN] {
        if self.is_initiator {
            x3dh::associated_data(&self.local_identity, &self.remote_identity)
        } else {
            x3dh::associated_data(&self.remote_identity, &self.local_identity)
        }
    }
}
