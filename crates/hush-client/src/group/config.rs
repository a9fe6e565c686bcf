//! The one configuration every hush group uses (docs/PROTOCOL.md §13).

use openmls::prelude::{
    Capabilities, Ciphersuite, CredentialType, Extension, ExtensionType, Extensions, GroupContext,
    Lifetime, MlsGroupCreateConfig, MlsGroupJoinConfig, RequiredCapabilitiesExtension,
    SenderRatchetConfiguration, UnknownExtension, PURE_CIPHERTEXT_WIRE_FORMAT_POLICY,
};

use super::GroupError;

/// MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519 (0x0003): hush's own primitives.
pub const CIPHERSUITE: Ciphersuite =
    Ciphersuite::MLS_128_DHKEMX25519_CHACHA20POLY1305_SHA256_Ed25519;
/// The GroupContext extension carrying the group's display name (UTF-8), from the private-use
/// range (RFC 9420 §17.3, 0xF000–0xFFFF). A joiner reads the name from the Welcome.
pub const GROUP_NAME_EXTENSION: u16 = 0xF0A1;
/// Longest group display name, in bytes.
pub const MAX_GROUP_NAME_LEN: usize = 64;
/// How many past epochs' message secrets a member keeps, so an application message delayed
/// by a few commits still opens. Each is a forward-secrecy window: keep it small.
pub const MAX_PAST_EPOCHS: usize = 5;
/// Per sender, how many skipped message keys are kept for out-of-order delivery.
pub const OUT_OF_ORDER_TOLERANCE: u32 = 32;
/// Per sender, how far ahead of the last message a generation may jump.
pub const MAX_FORWARD_DISTANCE: u32 = 1000;
/// Application plaintexts are padded to a multiple of this many bytes.
pub const PADDING_SIZE: usize = 32;
/// A KeyPackage is valid for 90 days; openmls refuses an expired one when it is used.
pub const KEY_PACKAGE_LIFETIME_SECS: u64 = 90 * 24 * 60 * 60;

/// What every hush leaf supports: our ciphersuite, Basic credentials, the group-name
/// extension and the last-resort KeyPackage extension.
pub fn capabilities() -> Capabilities {
    Capabilities::new(
        None,
        Some(&[CIPHERSUITE]),
        Some(&[
            ExtensionType::Unknown(GROUP_NAME_EXTENSION),
            ExtensionType::LastResort,
        ]),
        None,
        Some(&[CredentialType::Basic]),
    )
}

/// The configuration of every group we are in (set again when we join).
pub fn join_config() -> MlsGroupJoinConfig {
    MlsGroupJoinConfig::builder()
        .wire_format_policy(PURE_CIPHERTEXT_WIRE_FORMAT_POLICY)
        .padding_size(PADDING_SIZE)
        .max_past_epochs(MAX_PAST_EPOCHS)
        .use_ratchet_tree_extension(true)
        .sender_ratchet_configuration(SenderRatchetConfiguration::new(
            OUT_OF_ORDER_TOLERANCE,
            MAX_FORWARD_DISTANCE,
        ))
        .build()
}

/// Refuse an empty, over-long or control-character group name.
pub fn check_group_name(name: &str) -> Result<(), GroupError> {
    if name.is_empty() {
        return Err(GroupError::Name("empty".into()));
    }
    if name.len() > MAX_GROUP_NAME_LEN {
        return Err(GroupError::Name(format!(
            "{} bytes, at most {MAX_GROUP_NAME_LEN}",
            name.len()
        )));
    }
    if name.chars().any(char::is_control) {
        return Err(GroupError::Name("contains control characters".into()));
    }
    Ok(())
}

/// The GroupContext extensions of a new group: its name, and required capabilities listing the
/// name extension and Basic credentials (so only hush clients can be added).
fn group_context_extensions(name: &str) -> Result<Extensions<GroupContext>, GroupError> {
    Extensions::from_vec(vec![
        Extension::Unknown(
            GROUP_NAME_EXTENSION,
            UnknownExtension(name.as_bytes().to_vec()),
        ),
        Extension::RequiredCapabilities(RequiredCapabilitiesExtension::new(
            &[ExtensionType::Unknown(GROUP_NAME_EXTENSION)],
            &[],
            &[CredentialType::Basic],
        )),
    ])
    .map_err(|e| GroupError::Internal(format!("group context extensions: {e}")))
}

/// The configuration a new group is created with.
pub fn create_config(name: &str) -> Result<MlsGroupCreateConfig, GroupError> {
    check_group_name(name)?;
    let join = join_config();
    Ok(MlsGroupCreateConfig::builder()
        .ciphersuite(CIPHERSUITE)
        .wire_format_policy(join.wire_format_policy())
        .padding_size(PADDING_SIZE)
        .max_past_epochs(MAX_PAST_EPOCHS)
        .use_ratchet_tree_extension(true)
        .sender_ratchet_configuration(*join.sender_ratchet_configuration())
        .capabilities(capabilities())
        .lifetime(Lifetime::new(KEY_PACKAGE_LIFETIME_SECS))
        .with_group_context_extensions(group_context_extensions(name)?)
        .build())
}

/// The group's display name, from its GroupContext extensions.
pub fn group_name(extensions: &Extensions<GroupContext>) -> Result<String, GroupError> {
    let ext = extensions
        .unknown(GROUP_NAME_EXTENSION)
        .ok_or_else(|| GroupError::Invalid("the group has no name extension".into()))?;
    let name = std::str::from_utf8(&ext.0)
        .map_err(|_| GroupError::Invalid("group name is not UTF-8".into()))?;
    check_group_name(name).map_err(|e| GroupError::Invalid(e.to_string()))?;
    Ok(name.to_owned())
}
