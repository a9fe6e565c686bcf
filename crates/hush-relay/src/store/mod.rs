//! Durable relay state behind a storage trait: usernames, prekeys, MLS KeyPackages,
//! store-and-forward mailboxes, and groups (epoch, members, commit log) for the MLS delivery
//! service. Two backends implement [`Store`] with the same semantics: the embedded default,
//! SQLite in WAL mode ([`sqlite::SqliteStore`]), and PostgreSQL ([`postgres::PostgresStore`]),
//! which several relay nodes can share (batches from all nodes commit one at a time, so message
//! ids become visible in increasing order).
//!
//! Writes are applied in batches ([`Store::apply`]): the relay's group-commit writer collects
//! every write queued while the previous transaction committed and applies them in one
//! transaction, so durability costs one fsync per batch rather than per message. A write is
//! acknowledged to its client only after its batch has committed.

pub mod postgres;
pub mod sqlite;
#[cfg(test)]
mod suite;
mod values;

use hush_proto::pq::PqPrekey;
use hush_proto::relay::{GroupCommit, GroupCommits, GroupId};
use hush_proto::{OneTimePrekey, PrekeyBundle, SignedPrekey};

/// An identity key as the relay stores it: the raw 32-byte Ed25519 public key.
pub type IdentityBytes = [u8; 32];

/// A relay-assigned mailbox message id; increasing in commit order (across all the nodes
/// sharing a PostgreSQL store), so a reader following a cursor never skips one.
pub type MessageId = u64;

/// One write, as queued by a connection handler.
#[derive(Debug, Clone)]
pub enum WriteOp {
    /// Bind `name` to `identity` (first come, first served; an identity has at most one name).
    Register {
        /// The requested username (already validated by the caller).
        name: String,
        /// The identity asking.
        identity: IdentityBytes,
        /// The identity's signature over the registration (kept as evidence).
        signature: Vec<u8>,
    },
    /// Replace the identity's signed prekey and add one-time prekeys.
    PublishPrekeys {
        /// The publishing identity.
        identity: IdentityBytes,
        /// The new signed prekey (signature already verified by the caller).
        signed_prekey: SignedPrekey,
        /// One-time prekeys to add (ids already present are replaced).
        one_time: Vec<OneTimePrekey>,
        /// Most one-time prekeys kept per identity; extra ones are refused.
        max_stock: u32,
    },
    /// Store `hush-v2` PQ prekeys: replace the last-resort key (if given) and add one-time keys.
    PublishPqPrekeys {
        /// The publishing identity.
        identity: IdentityBytes,
        /// The new last-resort key (signature, key and id bit already checked by the caller).
        last_resort: Option<PqPrekey>,
        /// One-time PQ prekeys to add (ids already present are replaced).
        one_time: Vec<PqPrekey>,
        /// Most one-time PQ prekeys kept per identity; extra ones are refused.
        max_stock: u32,
    },
    /// Pop one bundle for `name`: the signed prekey, the lowest-id classical one-time prekey
    /// and the lowest-id one-time PQ prekey (else the last-resort PQ prekey), the one-time ones
    /// deleted in the same transaction so no two fetches ever get the same one.
    FetchBundle {
        /// The username.
        name: String,
        /// Whether to pop a one-time prekey; false when that user's fetch budget is spent, so
        /// the bundle (signed prekey only) still lets a session start.
        pop_one_time: bool,
    },
    /// Store an envelope in `recipient`'s mailbox, within quota.
    Enqueue {
        /// Mailbox owner.
        recipient: IdentityBytes,
        /// Authenticated sender.
        sender: IdentityBytes,
        /// The opaque envelope bytes.
        envelope: Vec<u8>,
        /// Relay clock when received (ms since the Unix epoch).
        received_at_ms: u64,
        /// Quota: most messages in one mailbox.
        max_messages: u32,
        /// Quota: most envelope bytes in one mailbox.
        max_bytes: u64,
        /// Quota: most envelope bytes in all mailboxes together.
        max_total_bytes: u64,
        /// Quota: most envelope bytes stored from one sender (a quarter of it once all
        /// mailboxes together are above 90 % of `max_total_bytes`).
        max_sender_bytes: u64,
    },
    /// Delete acknowledged messages, only from `recipient`'s own mailbox.
    Ack {
        /// Mailbox owner (the authenticated connection).
        recipient: IdentityBytes,
        /// Message ids to delete; ids not in this mailbox are ignored.
        ids: Vec<MessageId>,
    },
    /// Store MLS KeyPackages (opaque): replace the last-resort one if given, add one-time ones.
    PublishKeyPackages {
        /// The publishing identity.
        identity: IdentityBytes,
        /// The new last-resort KeyPackage.
        last_resort: Option<Vec<u8>>,
        /// One-time KeyPackages to add.
        one_time: Vec<Vec<u8>>,
        /// Most one-time KeyPackages kept per identity; a publish beyond it is refused.
        max_stock: u32,
    },
    /// Pop the oldest one-time KeyPackage of `name` (in the batch transaction, so no two
    /// fetches get the same one), else serve its last-resort one.
    FetchKeyPackage {
        /// The username.
        name: String,
        /// False when that user's fetch budget is spent: only the last-resort one is served.
        pop_one_time: bool,
    },
    /// Apply a commit if the group is at its epoch (compare-and-set), fan it and its Welcome out.
    GroupCommit {
        /// The commit as received.
        commit: GroupCommit,
        /// The authenticated committer.
        sender: IdentityBytes,
        /// Relay clock when received (ms since the Unix epoch).
        received_at_ms: u64,
        /// Mailbox and storage quotas, as for [`WriteOp::Enqueue`].
        quota: GroupQuota,
        /// Most members a group may have after the commit.
        max_members: u32,
        /// Most commits kept in the group's log.
        max_log: u32,
    },
    /// Store a group message once and reference it from every other member's mailbox.
    GroupSend {
        /// The group.
        group_id: GroupId,
        /// The authenticated sender (must be a member).
        sender: IdentityBytes,
        /// The group envelope.
        envelope: Vec<u8>,
        /// Relay clock when received (ms since the Unix epoch).
        received_at_ms: u64,
        /// Mailbox and storage quotas.
        quota: GroupQuota,
    },
    /// Remove `identity` from the group's member list (its own request).
    GroupLeave {
        /// The group.
        group_id: GroupId,
        /// The leaving identity.
        identity: IdentityBytes,
    },
    /// Delete messages received before `before_ms` (TTL expiry), and the prekeys of
    /// identities that hold no name (published before registration was required, or left by a
    /// freed name), so keys nobody can be reached at do not stay served or stored for ever.
    Expire {
        /// Cut-off (ms since the Unix epoch).
        before_ms: u64,
    },
}

/// The quotas a group fan-out is checked against (see `WriteOp::Enqueue` for their meaning).
/// A group message counts once toward `max_total_bytes` and the sender's share (it is stored
/// once), and in full toward each recipient's `max_messages` and `max_bytes` (what that
/// recipient has to download). A recipient whose mailbox is full is skipped, not the send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GroupQuota {
    /// Most messages in one mailbox.
    pub max_messages: u32,
    /// Most envelope bytes in one mailbox.
    pub max_bytes: u64,
    /// Most bytes stored in all mailboxes together.
    pub max_total_bytes: u64,
    /// Most bytes stored from one sender.
    pub max_sender_bytes: u64,
}

/// Mailbox rows a fan-out created: who gets which message id (for live delivery), and how many
/// recipients were skipped because their mailbox was full.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FanOut {
    /// (recipient, mailbox message id).
    pub delivered: Vec<(IdentityBytes, MessageId)>,
    /// Recipients skipped: mailbox over its message or byte quota.
    pub skipped_full: u32,
}

/// The result of one [`WriteOp`], in the same order as the ops.
#[derive(Debug, Clone, PartialEq, Eq)]
// One result per op, consumed at once: a boxed bundle would add an allocation for nothing.
#[allow(clippy::large_enum_variant)]
pub enum WriteResult {
    /// Register succeeded (or the identity already had exactly this name).
    Registered,
    /// The name belongs to another identity.
    NameTaken,
    /// This identity already registered a different name.
    AlreadyRegistered {
        /// The name it has.
        name: String,
    },
    /// Prekeys stored; this many one-time prekeys are now in stock.
    PrekeysStored {
        /// One-time prekeys remaining for this identity.
        one_time_remaining: u32,
    },
    /// PQ prekeys stored; this many one-time PQ prekeys are now in stock.
    PqPrekeysStored {
        /// One-time PQ prekeys remaining for this identity.
        one_time_remaining: u32,
    },
    /// Storing would exceed the per-identity one-time prekey stock (classical or PQ).
    TooManyPrekeys,
    /// Prekeys may be published only by an identity that holds a name.
    NotRegistered,
    /// A bundle was popped.
    Bundle(PrekeyBundle),
    /// No such user, or the user never published prekeys.
    UnknownUser,
    /// Envelope stored under this id.
    Stored(MessageId),
    /// The recipient's mailbox is over its message or byte quota.
    MailboxFull,
    /// All mailboxes together are over the relay's storage quota.
    StorageFull,
    /// The sender's share of the storage quota is used up.
    SenderQuota,
    /// Ack deleted this many messages.
    Acked(u32),
    /// KeyPackages stored; this many one-time ones are now in stock.
    KeyPackagesStored {
        /// One-time KeyPackages remaining for this identity.
        one_time_remaining: u32,
    },
    /// A KeyPackage was served (a one-time one is now deleted).
    KeyPackage {
        /// Its owner.
        identity: IdentityBytes,
        /// The KeyPackage bytes.
        key_package: Vec<u8>,
    },
    /// The user's fetch budget is spent and it has no last-resort KeyPackage.
    KeyPackageBudgetSpent,
    /// The commit was applied.
    CommitAccepted {
        /// The group's new epoch.
        epoch: u64,
        /// Mailbox rows holding the commit (members before it, except the committer).
        commit: FanOut,
        /// Mailbox rows holding the Welcome (added members).
        welcome: FanOut,
    },
    /// The group is not at the commit's epoch (another commit won).
    StaleEpoch {
        /// The group's epoch now.
        current: u64,
    },
    /// The identity is not on the group's member list.
    NotGroupMember,
    /// No such group (or a commit for a new group at an epoch other than 0).
    UnknownGroup,
    /// The commit would grow the group beyond its member limit.
    GroupFull,
    /// A group message was stored once under this blob id and referenced from each mailbox.
    GroupStored {
        /// The stored group message's id (0 when there was nobody to deliver to).
        id: u64,
        /// Mailbox rows holding it.
        fan_out: FanOut,
    },
    /// The identity left the group.
    LeftGroup,
    /// Expiry deleted this many messages (prekeys of nameless identities are not counted).
    Expired(u64),
}

/// A stored envelope, as delivered to its recipient.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredMessage {
    /// Relay-assigned id; the recipient acks with it.
    pub id: MessageId,
    /// The authenticated sender's identity key.
    pub sender: IdentityBytes,
    /// When the relay stored it (ms since the Unix epoch).
    pub received_at_ms: u64,
    /// The opaque envelope.
    pub envelope: Vec<u8>,
}

/// Totals for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreTotals {
    /// Messages in all mailboxes.
    pub messages: u64,
    /// Envelope bytes in all mailboxes.
    pub bytes: u64,
}

/// Prekeys held by all identities together, for metrics (no per-identity figures, so the
/// metrics stay bounded however many users there are).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrekeyStock {
    /// Classical one-time prekeys.
    pub one_time: u64,
    /// One-time PQ prekeys.
    pub pq_one_time: u64,
    /// Identities with a last-resort PQ prekey (at most one each).
    pub pq_last_resort: u64,
}

/// Groups held by the relay, for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GroupStats {
    /// Groups.
    pub groups: u64,
    /// Memberships over all groups.
    pub members: u64,
}

/// The answer to a group sync.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncResult {
    /// Logged commits, oldest first.
    Commits(GroupCommits),
    /// The asker is not a member.
    NotGroupMember,
    /// No such group.
    UnknownGroup,
}

/// A storage failure (I/O, corruption). Clients get a generic internal error; the relay logs it.
#[derive(Debug, thiserror::Error)]
#[error("storage error: {0}")]
pub struct StoreError(pub String);

/// Why [`Store::apply`] failed, and whether the batch may have been applied anyway. There is
/// deliberately no `From<StoreError>`: every failure must say which case it is.
#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    /// Nothing of the batch was applied: the ops may be applied again (alone or in another
    /// batch).
    #[error("{0}")]
    NotApplied(StoreError),
    /// The batch may have been applied (COMMIT was sent and its answer lost, or the batch is
    /// known to have committed but its results are lost): its ops must never be applied again.
    #[error("{0} (outcome unknown: the batch may have been applied)")]
    OutcomeUnknown(StoreError),
}

impl ApplyError {
    /// The underlying error, whichever the case.
    pub fn error(&self) -> &StoreError {
        match self {
            Self::NotApplied(err) | Self::OutcomeUnknown(err) => err,
        }
    }

    /// Tests: the error of a batch that must have been refused as a whole.
    #[cfg(test)]
    pub(crate) fn not_applied(self) -> StoreError {
        match self {
            Self::NotApplied(err) => err,
            Self::OutcomeUnknown(err) => panic!("expected NotApplied, got OutcomeUnknown: {err}"),
        }
    }

    /// The underlying error, whichever the case.
    pub fn into_error(self) -> StoreError {
        match self {
            Self::NotApplied(err) | Self::OutcomeUnknown(err) => err,
        }
    }
}

/// A durable store for the relay. Implementations must make [`Store::apply`] atomic and durable:
/// when it returns `Ok`, every op's effect survives a crash (SIGKILL, power loss with WAL +
/// `synchronous=FULL`), and when it returns [`ApplyError::NotApplied`], none does. A networked
/// store that loses the answer to its COMMIT returns [`ApplyError::OutcomeUnknown`]: the
/// caller must then not apply those ops again (a pop or an enqueue would happen twice).
pub trait Store: Send + Sync + 'static {
    /// Apply a batch of writes in one transaction; results are in op order.
    fn apply(&self, ops: &[WriteOp]) -> Result<Vec<WriteResult>, ApplyError>;
    /// Up to `limit` messages for `recipient` with id greater than `after`, in id order,
    /// stopping after the message that brings the envelope bytes to `max_bytes` (at least one
    /// message is returned if any is pending, whatever its size).
    fn pending(
        &self,
        recipient: &IdentityBytes,
        after: MessageId,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<StoredMessage>, StoreError>;
    /// The identity registered under `name`.
    fn identity_of(&self, name: &str) -> Result<Option<IdentityBytes>, StoreError>;
    /// The name registered by `identity`.
    fn name_of(&self, identity: &IdentityBytes) -> Result<Option<String>, StoreError>;
    /// Messages and bytes in all mailboxes.
    fn totals(&self) -> Result<StoreTotals, StoreError>;
    /// Prekeys in stock over all identities.
    fn prekey_stock(&self) -> Result<PrekeyStock, StoreError>;
    /// Groups and memberships over all groups.
    fn group_stats(&self) -> Result<GroupStats, StoreError>;
    /// For a member of `group_id`: logged commits made in epochs `after_epoch ..`, oldest
    /// first, at most `max_commits` and together at most `max_bytes` of commit envelope plus
    /// per-commit overhead (at least one if any), and the group's current epoch.
    fn group_sync(
        &self,
        group_id: &GroupId,
        member: &IdentityBytes,
        after_epoch: u64,
        max_commits: usize,
        max_bytes: usize,
    ) -> Result<SyncResult, StoreError>;
}
