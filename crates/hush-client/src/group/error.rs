//! Why a group operation was refused. On every error the group's state is as it was: openmls
//! writes nothing on a failed `process`, and with the profile provider the caller drops the
//! transaction anyway.

/// A refused group operation.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum GroupError {
    /// No state for that group id in this profile.
    #[error("unknown group")]
    UnknownGroup,
    /// The message is for a later epoch than ours: commits are missing; sync, then retry.
    #[error("message from epoch {got}, we are at epoch {have}: sync the group's commits first")]
    FutureEpoch {
        /// Our epoch.
        have: u64,
        /// The message's epoch.
        got: u64,
    },
    /// The message is older than we can open (a past commit or proposal, or an application
    /// message beyond `max_past_epochs` or beyond the sender ratchet's out-of-order window).
    #[error("message from epoch {got} is too old (we are at epoch {have})")]
    TooOld {
        /// Our epoch.
        have: u64,
        /// The message's epoch.
        got: u64,
    },
    /// The message was already processed (its key is spent), or is our own message echoed back.
    #[error("message already processed (replay)")]
    Replay,
    /// We are no longer a member of this group (removed or left).
    #[error("we are not a member of this group")]
    NotAMember,
    /// No member of the group has that identity key.
    #[error("no member of the group has that key")]
    UnknownMember,
    /// A commit of ours is pending: merge it (accepted) or discard it (refused) first.
    #[error("a commit of ours is pending")]
    PendingCommit,
    /// A KeyPackage was refused: wrong name or key for whom we asked, wrong ciphersuite,
    /// expired, badly signed, or no KeyPackage of ours matches a Welcome.
    #[error("key package refused: {0}")]
    KeyPackage(String),
    /// The group name is empty, too long or contains control characters.
    #[error("invalid group name: {0}")]
    Name(String),
    /// Not verifiable or not acceptable (forged, tampered, garbled, or breaking hush's rules):
    /// refused, nothing changed.
    #[error("refused: {0}")]
    Invalid(String),
    /// The profile store failed.
    #[error("group state storage: {0}")]
    Storage(String),
    /// openmls failed in a way that is not the input's fault.
    #[error("mls: {0}")]
    Internal(String),
}
