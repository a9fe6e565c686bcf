//! The identity binding: a member's MLS credential is a BasicCredential whose identity is its
//! UTF-8 relay username, and its leaf signature key is exactly its Ed25519 identity public key
//! (the key safety numbers cover), so verifying a contact once covers it in every group. MLS
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

    /// Read a member back from a leaf (or KeyPackage leaf): a Basic credential holding a valid
    /// relay name, and a valid 32-byte Ed25519 signature key. Anything else is refused.
    pub fn from_leaf(credential: &Credential, signature_key: &[u8]) -> Result<Self, GroupError> {
        if credential.credential_type() != CredentialType::Basic {
            return Err(GroupError::Invalid(
                "credential is not a Basic credential".into(),
            ));
        }
        let basic = BasicCredential::try_from(credential.clone())
            .map_err(|e| GroupError::Invalid(format!("credential: {e}")))?;
        let name = std::str::from_utf8(basic.identity())
            .map_err(|_| GroupError::Invalid("credential name is not UTF-8".into()))?;
        let identity: [u8; 32] = signature_key
            .try_into()
            .map_err(|_| GroupError::Invalid("signature key is not 32 bytes".into()))?;
        Self::new(name, identity)
    }

    /// The credential and signature key our own leaves carry.
    pub(crate) fn credential_with_key(&self) -> CredentialWithKey {
        CredentialWithKey {
            credential: BasicCredential::new(self.name.as_bytes().to_vec()).into(),
            signature_key: self.identity.to_vec().into(),
        }
    }
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
