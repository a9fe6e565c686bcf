//! The identity binding: a member's MLS credential is a BasicCredential whose identity is its
//! UTF-8 relay username, a 0x00 byte and its 32-byte Ed25519 identity public key, and its leaf
//! signature key is exactly that key (the key safety numbers cover), so verifying a contact once
//! covers it in every group, and two credentials are equal only if their keys are. MLS
//! signs with `SignWithLabel` ("MLS 1.0 " + label), which no hush signature can collide with
//! (docs/PROTOCOL.md §13).

use hush_proto::keys::IdentityKeyPair;
use hush_proto::relay::is_valid_name;
use hush_proto::IdentityPublicKey;
use openmls::prelude::{BasicCredential, Credential, CredentialType, CredentialWithKey};
use openmls_traits::signatures::{Signer, SignerError};
use openmls_traits::types::SignatureScheme;

use super::GroupError;

/// Who a group member is: the name in its credential and its leaf signature key (its Ed25519
/// identity key). Compare both with the contact of that name before trusting either.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MemberId {
    /// The relay username in the member's BasicCredential.
    pub name: String,
    /// The member's Ed25519 identity public key (= its MLS leaf signature key).
    pub identity: [u8; 32],
}

impl MemberId {
    /// A member id, refused unless the name is a valid relay name and the key a valid
    /// (non-weak) Ed25519 point.
    pub fn new(name: &str, identity: [u8; 32]) -> Result<Self, GroupError> {
        if !is_valid_name(name) {
            return Err(GroupError::Invalid(format!(
                "member name {name:?} is not a valid relay name"
            )));
        }
        IdentityPublicKey::from_bytes(&identity)
            .map_err(|e| GroupError::Invalid(format!("member signature key: {e}")))?;
        Ok(Self {
            name: name.to_owned(),
            identity,
        })
    }

    /// Read a member back from a leaf (or KeyPackage leaf): a Basic credential whose identity
    /// is `name ‖ 0x00 ‖ key` ([`Self::credential_identity`]) with a valid relay name, and a leaf
    /// signature key equal to that key and a valid Ed25519 point. Anything else is refused, so
    /// wherever hush compares credentials it compares keys too (PROTOCOL §13.1).
    pub fn from_leaf(credential: &Credential, signature_key: &[u8]) -> Result<Self, GroupError> {
        if credential.credential_type() != CredentialType::Basic {
            return Err(GroupError::Invalid(
                "credential is not a Basic credential".into(),
            ));
        }
        let basic = BasicCredential::try_from(credential.clone())
            .map_err(|e| GroupError::Invalid(format!("credential: {e}")))?;
        let (name, key) = split_identity(basic.identity())?;
        if key.as_slice() != signature_key {
            return Err(GroupError::Invalid(
                "the credential's key is not the leaf signature key".into(),
            ));
        }
        Self::new(name, *key)
    }

    /// The member a credential names (name and key from its identity alone), for a leaf whose
    /// signature key we no longer see (a past epoch's sender); its leaf was checked with
    /// [`Self::from_leaf`] when it entered the tree.
    pub(crate) fn from_credential(credential: &Credential) -> Result<Self, GroupError> {
        if credential.credential_type() != CredentialType::Basic {
            return Err(GroupError::Invalid(
                "credential is not a Basic credential".into(),
            ));
        }
        let basic = BasicCredential::try_from(credential.clone())
            .map_err(|e| GroupError::Invalid(format!("credential: {e}")))?;
        let (name, key) = split_identity(basic.identity())?;
        Self::new(name, *key)
    }

    /// The BasicCredential identity of this member: the UTF-8 name, one 0x00 byte, then the
    /// 32-byte identity key (a relay name never holds 0x00, so the layout is unambiguous).
    pub fn credential_identity(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.name.len() + 1 + 32);
        out.extend_from_slice(self.name.as_bytes());
        out.push(0);
        out.extend_from_slice(&self.identity);
        out
    }

    /// The credential and signature key our own leaves carry.
    pub(crate) fn credential_with_key(&self) -> CredentialWithKey {
        CredentialWithKey {
            credential: BasicCredential::new(self.credential_identity()).into(),
            signature_key: self.identity.to_vec().into(),
        }
    }
}

/// Split a BasicCredential identity into its name and key (see
/// [`MemberId::credential_identity`]).
fn split_identity(identity: &[u8]) -> Result<(&str, &[u8; 32]), GroupError> {
    let bad = || GroupError::Invalid("credential is not `name ‖ 0x00 ‖ 32-byte key`".into());
    let cut = identity.len().checked_sub(33).ok_or_else(bad)?;
    let (name, rest) = identity.split_at(cut);
    let (sep, key) = rest.split_first().ok_or_else(bad)?;
    if *sep != 0 {
        return Err(bad());
    }
    let key: &[u8; 32] = key.try_into().map_err(|_| bad())?;
    let name = std::str::from_utf8(name)
        .map_err(|_| GroupError::Invalid("credential name is not UTF-8".into()))?;
    Ok((name, key))
}

/// Signs MLS structures with the identity key. openmls prefixes every payload with its
/// `SignWithLabel` context before it reaches [`Signer::sign`].
pub struct IdentitySigner<'a>(&'a IdentityKeyPair);

impl<'a> IdentitySigner<'a> {
    /// A signer over `identity`.
    pub fn new(identity: &'a IdentityKeyPair) -> Self {
        Self(identity)
    }

    /// The public key leaves signed by this signer must carry.
    pub fn public_key(&self) -> [u8; 32] {
        *self.0.public_key().as_bytes()
    }

    /// Refuse to act for `me` unless its signature key is this signer's key.
    pub(crate) fn check(&self, me: &MemberId) -> Result<(), GroupError> {
        if me.identity != self.public_key() {
            return Err(GroupError::Invalid(
                "our member id does not carry our identity key".into(),
            ));
        }
        Ok(())
    }
}

impl std::fmt::Debug for IdentitySigner<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentitySigner").finish_non_exhaustive()
    }
}

impl Signer for IdentitySigner<'_> {
    fn sign(&self, payload: &[u8]) -> Result<Vec<u8>, SignerError> {
        Ok(self.0.sign(payload).to_vec())
    }

    fn signature_scheme(&self) -> SignatureScheme {
        SignatureScheme::ED25519
    }
}
