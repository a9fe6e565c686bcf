//! The MLS engine: every group operation hush performs, over any openmls provider (the client
//! passes a [`HushProvider`](super::provider::HushProvider) writing into its profile
//! transaction; tests and benchmarks pass `OpenMlsRustCrypto`). Each call loads the group from
//! the provider's storage, acts, and leaves openmls's new state in that storage.
//!
//! Inputs from the relay are [`GroupEnvelope`]s and are refused unless they verify; outputs
//! are `GroupEnvelope` bytes ready for the relay. Who a member is comes from its credential
//! and leaf signature key ([`MemberId`]), never from the relay.

use hush_proto::GroupEnvelope;
use openmls::prelude::{
    ExtensionType, GroupId, KeyPackage, KeyPackageIn, LeafNodeIndex, LeafNodeParameters, Lifetime,
    Member, MlsGroup, MlsMessageBodyIn, MlsMessageIn, MlsMessageOut, Proposal, ProtocolVersion,
    StagedWelcome,
};
use openmls_traits::OpenMlsProvider;
use tls_codec::Deserialize as _;

use super::config::{self, CIPHERSUITE};
use super::credential::{IdentitySigner, MemberId};
use super::GroupError;

pub use super::process::{group_id_of, process, Incoming};

/// The length of a hush group id (16 random bytes, the same id on the relay and in MLS).
pub const GROUP_ID_LEN: usize = 16;

/// A commit we made, ready for `Request::GroupCommit`. openmls keeps it pending: merge it
/// with [`merge_own_commit`] once the relay accepts it, or [`discard_own_commit`] on
/// `StaleEpoch`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommitOut {
    /// The epoch the commit was made in (the relay's compare-and-set value).
    pub epoch: u64,
    /// `GroupEnvelope::Commit` bytes.
    pub commit: Vec<u8>,
    /// `GroupEnvelope::Welcome` bytes, when members are added.
    pub welcome: Option<Vec<u8>>,
    /// Identity keys of the members this commit adds.
    pub added: Vec<[u8; 32]>,
    /// Identity keys of the members this commit removes.
    pub removed: Vec<[u8; 32]>,
}

/// A group we joined from a Welcome.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Joined {
    /// The group id (16 bytes).
    pub group_id: Vec<u8>,
    /// The group's display name (from its GroupContext).
    pub name: String,
    /// Who added us (signed the Welcome's GroupInfo).
    pub inviter: MemberId,
    /// Every member, us included.
    pub members: Vec<MemberId>,
    /// The epoch we joined at.
    pub epoch: u64,
}

pub(crate) fn internal(e: impl std::fmt::Display) -> GroupError {
    GroupError::Internal(e.to_string())
}

/// Load a group, or [`GroupError::UnknownGroup`].
pub(crate) fn load<P: OpenMlsProvider>(p: &P, group_id: &[u8]) -> Result<MlsGroup, GroupError> {
    MlsGroup::load(p.storage(), &GroupId::from_slice(group_id))
        .map_err(|e| GroupError::Storage(e.to_string()))?
        .ok_or(GroupError::UnknownGroup)
}

/// Load a group we are an active member of, with no commit of ours pending.
fn load_ready<P: OpenMlsProvider>(p: &P, group_id: &[u8]) -> Result<MlsGroup, GroupError> {
    let group = load(p, group_id)?;
    if !group.is_active() {
        return Err(GroupError::NotAMember);
    }
    if group.pending_commit().is_some() {
        return Err(GroupError::PendingCommit);
    }
    Ok(group)
}

/// The member at a leaf, validated.
pub(crate) fn member_id(m: &Member) -> Result<MemberId, GroupError> {
    MemberId::from_leaf(&m.credential, &m.signature_key)
}

pub(crate) fn member_at(group: &MlsGroup, index: LeafNodeIndex) -> Result<MemberId, GroupError> {
    let m = group
        .member_at(index)
        .ok_or_else(|| GroupError::Invalid(format!("no member at leaf {}", index.u32())))?;
    member_id(&m)
}

fn envelope(
    out: &MlsMessageOut,
    wrap: fn(Vec<u8>) -> GroupEnvelope,
) -> Result<Vec<u8>, GroupError> {
    Ok(wrap(out.to_bytes().map_err(internal)?).to_bytes())
}

/// A new KeyPackage for `me` (lifetime [`config::KEY_PACKAGE_LIFETIME_SECS`]), as
/// MLSMessage(KeyPackage) bytes for `PublishKeyPackages`. Its private keys stay in the
/// provider's storage until a Welcome uses it (a last-resort one is kept after use).
pub fn new_key_package<P: OpenMlsProvider>(
    p: &P,
    signer: &IdentitySigner,
    me: &MemberId,
    last_resort: bool,
) -> Result<Vec<u8>, GroupError> {
    signer.check(me)?;
    let mut builder = KeyPackage::builder()
        .key_package_lifetime(Lifetime::new(config::KEY_PACKAGE_LIFETIME_SECS))
        .leaf_node_capabilities(config::capabilities());
    if last_resort {
        builder = builder.mark_as_last_resort();
    }
    let bundle = builder
        .build(CIPHERSUITE, p, signer, me.credential_with_key())
        .map_err(internal)?;
    MlsMessageOut::from(bundle.key_package().clone())
        .to_bytes()
        .map_err(internal)
}

/// Delete the private keys of one of our KeyPackages (the MLSMessage bytes
/// [`new_key_package`] returned): a last-resort one some time after it was replaced, a one-time
/// one that expired unused. Its lifetime is not checked (an expired one must go too). Returns
/// whether we still held it. A Welcome to it can no longer be joined.
pub fn forget_key_package<P: OpenMlsProvider>(p: &P, bytes: &[u8]) -> Result<bool, GroupError> {
    use openmls::prelude::{KeyPackageBundle, KeyPackageRef};
    use openmls_traits::storage::StorageProvider as _;
    use tls_codec::Serialize as _;
    let msg = MlsMessageIn::tls_deserialize_exact(bytes)
        .map_err(|e| GroupError::KeyPackage(format!("malformed: {e}")))?;
    let MlsMessageBodyIn::KeyPackage(kp) = msg.extract() else {
        return Err(GroupError::KeyPackage("not a KeyPackage".into()));
    };
    let kp_bytes = kp.tls_serialize_detached().map_err(internal)?;
    let hash_ref =
        openmls::ciphersuite::hash_ref::make_key_package_ref(&kp_bytes, CIPHERSUITE, p.crypto())
            .map_err(internal)?;
    let held = p
        .storage()
        .key_package::<KeyPackageRef, KeyPackageBundle>(&hash_ref)
        .map_err(|e| GroupError::Storage(e.to_string()))?
        .is_some();
    if held {
        p.storage()
            .delete_key_package(&hash_ref)
            .map_err(|e| GroupError::Storage(e.to_string()))?;
    }
    Ok(held)
}

/// Create group `group_id` named `name` with us as its only member (epoch 0).
pub fn create_group<P: OpenMlsProvider>(
    p: &P,
    signer: &IdentitySigner,
    me: &MemberId,
    group_id: [u8; GROUP_ID_LEN],
    name: &str,
) -> Result<(), GroupError> {
    signer.check(me)?;
    let cfg = config::create_config(name)?;
    MlsGroup::new_with_group_id(
        p,
        signer,
        &cfg,
        GroupId::from_slice(&group_id),
        me.credential_with_key(),
    )
    .map_err(internal)?;
    Ok(())
}

/// Check a KeyPackage the relay served for `expected`: it must parse, be MLS 1.0 with our
/// ciphersuite, carry valid signatures (leaf and package) and an unexpired lifetime, and its
/// credential name and signature key must be exactly the ones we asked for (the relay could
/// serve a valid KeyPackage of its own under that name). Exposed for the client's checks.
pub fn verify_key_package<P: OpenMlsProvider>(
    p: &P,
    expected: &MemberId,
    bytes: &[u8],
) -> Result<KeyPackage, GroupError> {
    let msg = MlsMessageIn::tls_deserialize_exact(bytes)
        .map_err(|e| GroupError::KeyPackage(format!("malformed: {e}")))?;
    let kp_in: KeyPackageIn = match msg.extract() {
        MlsMessageBodyIn::KeyPackage(kp) => kp,
        _ => return Err(GroupError::KeyPackage("not a KeyPackage".into())),
    };
    let kp = kp_in
        .validate(p.crypto(), ProtocolVersion::Mls10)
        .map_err(|e| GroupError::KeyPackage(e.to_string()))?;
    if kp.ciphersuite() != CIPHERSUITE {
        return Err(GroupError::KeyPackage(format!(
            "ciphersuite {:?}, hush groups use 0x0003",
            kp.ciphersuite()
        )));
    }
    let leaf = kp.leaf_node();
    if !leaf
        .capabilities()
        .extensions()
        .contains(&ExtensionType::Unknown(config::GROUP_NAME_EXTENSION))
    {
        return Err(GroupError::KeyPackage(
            "not a hush KeyPackage (no group-name capability)".into(),
        ));
    }
    let found = MemberId::from_leaf(leaf.credential(), leaf.signature_key().as_slice())
        .map_err(|e| GroupError::KeyPackage(e.to_string()))?;
    if found.name != expected.name {
        return Err(GroupError::KeyPackage(format!(
            "credential names {:?}, we asked for {:?}",
            found.name, expected.name
        )));
    }
    if found.identity != expected.identity {
        return Err(GroupError::KeyPackage(format!(
            "signature key of {:?} is not the identity key we know for it",
            expected.name
        )));
    }
    Ok(kp)
}

/// Add members. Each candidate is the member we expect (name + identity key, from our
/// contacts) and the KeyPackage bytes the relay served for it; any KeyPackage that does not
/// verify or belongs to someone else refuses the whole add (see [`verify_key_package`]), as
/// does a name or key already in the group.
pub fn add_members<P: OpenMlsProvider>(
    p: &P,
    signer: &IdentitySigner,
    group_id: &[u8],
    candidates: &[(MemberId, Vec<u8>)],
) -> Result<CommitOut, GroupError> {
    let mut group = load_ready(p, group_id)?;
    if candidates.is_empty() {
        return Err(GroupError::Invalid("no members to add".into()));
    }
    let current = members_of(&group)?;
    let mut kps = Vec::with_capacity(candidates.len());
    let mut added: Vec<MemberId> = Vec::with_capacity(candidates.len());
    for (expected, bytes) in candidates {
        let kp = verify_key_package(p, expected, bytes)?;
        if current
            .iter()
            .chain(added.iter())
            .any(|m| m.name == expected.name || m.identity == expected.identity)
        {
            return Err(GroupError::Invalid(format!(
                "{:?} (or its key) is already in the group",
                expected.name
            )));
        }
        kps.push(kp);
        added.push(expected.clone());
    }
    let epoch = group.epoch().as_u64();
    let (commit, welcome) = build_commit(p, signer, &mut group, kps, Vec::new(), false)?;
    pending_out(&group, epoch, &commit, welcome.as_ref())
}

/// Remove the members with these identity keys (not ourselves: use [`leave`]).
pub fn remove_members<P: OpenMlsProvider>(
    p: &P,
    signer: &IdentitySigner,
    group_id: &[u8],
    identities: &[[u8; 32]],
) -> Result<CommitOut, GroupError> {
    let mut group = load_ready(p, group_id)?;
    if identities.is_empty() {
        return Err(GroupError::Invalid("no members to remove".into()));
    }
    let mut indices = Vec::with_capacity(identities.len());
    for id in identities {
        let m = group
            .members()
            .find(|m| m.signature_key.as_slice() == id.as_slice())
            .ok_or(GroupError::UnknownMember)?;
        if m.index == group.own_leaf_index() {
            return Err(GroupError::Invalid(
                "cannot remove ourselves; leave instead".into(),
            ));
        }
        if !indices.contains(&m.index) {
            indices.push(m.index);
        }
    }
    let epoch = group.epoch().as_u64();
    let (commit, welcome) = build_commit(p, signer, &mut group, Vec::new(), indices, false)?;
    pending_out(&group, epoch, &commit, welcome.as_ref())
}

/// Commit the proposals we received and stored (e.g. a member's leave), if any.
pub fn commit_pending_proposals<P: OpenMlsProvider>(
    p: &P,
    signer: &IdentitySigner,
    group_id: &[u8],
) -> Result<Option<CommitOut>, GroupError> {
    let mut group = load_ready(p, group_id)?;
    if !group.has_pending_proposals() {
        return Ok(None);
    }
    let epoch = group.epoch().as_u64();
    let (commit, welcome) = build_commit(p, signer, &mut group, Vec::new(), Vec::new(), false)?;
    pending_out(&group, epoch, &commit, welcome.as_ref()).map(Some)
}

/// Rotate our leaf's encryption key (an empty commit with an update path, covering any stored
/// proposals): post-compromise security for our leaf. Keeps our credential and signature key.
pub fn self_update<P: OpenMlsProvider>(
    p: &P,
    signer: &IdentitySigner,
    group_id: &[u8],
) -> Result<CommitOut, GroupError> {
    let mut group = load_ready(p, group_id)?;
    let epoch = group.epoch().as_u64();
    let (commit, welcome) = build_commit(p, signer, &mut group, Vec::new(), Vec::new(), true)?;
    pending_out(&group, epoch, &commit, welcome.as_ref())
}

/// Build and stage (pending) a commit of ours: these adds and removes, plus a Remove **by
/// value** for every leave proposal we stored. openmls's default would put stored proposals in
/// by reference, and a member who never received the proposal (sent to only some members, or
/// skipped by the relay) could not process the commit: one leave could freeze the group
/// (review finding 1). The proposal store is emptied when the commit is merged (ours, or the
/// one the relay took instead).
fn build_commit<P: OpenMlsProvider>(
    p: &P,
    signer: &IdentitySigner,
    group: &mut MlsGroup,
    adds: Vec<KeyPackage>,
    mut removes: Vec<LeafNodeIndex>,
    self_update: bool,
) -> Result<(MlsMessageOut, Option<MlsMessageOut>), GroupError> {
    let own = group.own_leaf_index();
    for qp in group.pending_proposals() {
        // process() stores nothing but a member's own leave.
        if let Proposal::Remove(r) = qp.proposal() {
            if r.removed() == own {
                return Err(GroupError::Invalid(
                    "we asked to leave: another member must commit it".into(),
                ));
            }
            if !removes.contains(&r.removed()) {
                removes.push(r.removed());
            }
        }
    }
    let mut builder = group
        .commit_builder()
        .consume_proposal_store(false)
        .propose_removals(removes)
        .propose_adds(adds);
    if self_update {
        builder = builder
            .leaf_node_parameters(LeafNodeParameters::default())
            .force_self_update(true);
    }
    let bundle = builder
        .load_psks(p.storage())
        .map_err(|e| GroupError::Invalid(e.to_string()))?
        .build(p.rand(), p.crypto(), signer, |_| true)
        .map_err(|e| GroupError::Invalid(e.to_string()))?
        .stage_commit(p)
        .map_err(|e| GroupError::Invalid(e.to_string()))?;
    let (commit, welcome, _) = bundle.into_messages();
    Ok((commit, welcome))
}

/// The [`CommitOut`] of the commit now pending in `group`, made in `epoch`.
fn pending_out(
    group: &MlsGroup,
    epoch: u64,
    commit: &MlsMessageOut,
    welcome: Option<&MlsMessageOut>,
) -> Result<CommitOut, GroupError> {
    let mut removed = Vec::new();
    let mut added = Vec::new();
    if let Some(staged) = group.pending_commit() {
        for r in staged.remove_proposals() {
            removed.push(member_at(group, r.remove_proposal().removed())?.identity);
        }
        for a in staged.add_proposals() {
            let leaf = a.add_proposal().key_package().leaf_node();
            added.push(
                MemberId::from_leaf(leaf.credential(), leaf.signature_key().as_slice())?.identity,
            );
        }
    }
    Ok(CommitOut {
        epoch,
        commit: envelope(commit, GroupEnvelope::Commit)?,
        welcome: welcome
            .map(|w| envelope(w, GroupEnvelope::Welcome))
            .transpose()?,
        added,
        removed,
    })
}

/// The relay accepted our pending commit (`CommitAccepted`): move to the next epoch. Without a
/// pending commit this does nothing, so a retried merge is harmless.
pub fn merge_own_commit<P: OpenMlsProvider>(p: &P, group_id: &[u8]) -> Result<(), GroupError> {
    let mut group = load(p, group_id)?;
    if group.pending_commit().is_none() {
        return Ok(());
    }
    group.merge_pending_commit(p).map_err(internal)
}

/// The relay refused our pending commit (`StaleEpoch`): forget it; the epoch is unchanged.
pub fn discard_own_commit<P: OpenMlsProvider>(p: &P, group_id: &[u8]) -> Result<(), GroupError> {
    let mut group = load(p, group_id)?;
    group
        .clear_pending_commit(p.storage())
        .map_err(|e| GroupError::Storage(e.to_string()))
}

/// Ask to leave: a Remove proposal for our own leaf, as `GroupEnvelope::Message` bytes for
/// `GroupSend`. Another member commits it; we learn it from that commit.
pub fn leave<P: OpenMlsProvider>(
    p: &P,
    signer: &IdentitySigner,
    group_id: &[u8],
) -> Result<Vec<u8>, GroupError> {
    let mut group = load_ready(p, group_id)?;
    let out = group.leave_group(p, signer).map_err(internal)?;
    envelope(&out, GroupEnvelope::Message)
}

/// A group kept loaded across calls, for a caller that sends or receives many messages in a
/// row (loading a group from storage costs more than encrypting one message). openmls writes
/// every change through to the provider's storage as it goes, so the two stay equal; but if
/// the transaction under the provider is dropped, or any call returns an error (openmls may
/// have moved the in-memory ratchet before hush's own checks refused), drop this and load it
/// again.
pub struct LoadedGroup {
    group: MlsGroup,
}

impl LoadedGroup {
    /// Load group `group_id` from the provider's storage.
    pub fn load<P: OpenMlsProvider>(p: &P, group_id: &[u8]) -> Result<Self, GroupError> {
        Ok(Self {
            group: load(p, group_id)?,
        })
    }

    /// The group's current epoch.
    pub fn epoch(&self) -> u64 {
        self.group.epoch().as_u64()
    }

    /// [`encrypt`] without reloading.
    pub fn encrypt<P: OpenMlsProvider>(
        &mut self,
        p: &P,
        signer: &IdentitySigner,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, GroupError> {
        encrypt_in(p, signer, &mut self.group, plaintext)
    }

    /// [`process`] without reloading.
    pub fn process<P: OpenMlsProvider>(
        &mut self,
        p: &P,
        env: &GroupEnvelope,
    ) -> Result<Incoming, GroupError> {
        super::process::process_loaded(p, &mut self.group, env)
    }
}

fn encrypt_in<P: OpenMlsProvider>(
    p: &P,
    signer: &IdentitySigner,
    group: &mut MlsGroup,
    plaintext: &[u8],
) -> Result<Vec<u8>, GroupError> {
    if !group.is_active() {
        return Err(GroupError::NotAMember);
    }
    if group.pending_commit().is_some() {
        return Err(GroupError::PendingCommit);
    }
    let out = group
        .create_message(p, signer, plaintext)
        .map_err(internal)?;
    envelope(&out, GroupEnvelope::Message)
}

/// Encrypt an application message for the group, as `GroupEnvelope::Message` bytes.
pub fn encrypt<P: OpenMlsProvider>(
    p: &P,
    signer: &IdentitySigner,
    group_id: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, GroupError> {
    encrypt_in(p, signer, &mut load(p, group_id)?, plaintext)
}

/// Join a group from a Welcome envelope. Refused unless it decrypts with one of our
/// KeyPackages, uses our ciphersuite and a 16-byte group id, carries a valid group name, and
/// every member's credential is a valid name with a valid Ed25519 key, each name once.
/// openmls consumes the KeyPackage's keys (kept if last-resort) in the provider's storage:
/// on error the caller drops its transaction.
pub fn join<P: OpenMlsProvider>(p: &P, welcome: &GroupEnvelope) -> Result<Joined, GroupError> {
    join_in(p, welcome, None)
}

/// [`join`] for a group we were in before (we left, were removed, deleted it) and knew up to
/// epoch `last_epoch`: a Welcome to an epoch at or before it is refused (`Invalid`) before
/// anything is written. The relay keeps every Welcome and can replay the one that first added
/// us (through a last-resort KeyPackage, whose keys stay), which would "rejoin" us at a stale
/// epoch whose members (some since removed) could read what we send. A real re-add is a Welcome
/// to a later epoch. The client keeps `last_epoch` for every group it deleted.
pub fn join_after<P: OpenMlsProvider>(
    p: &P,
    welcome: &GroupEnvelope,
    last_epoch: u64,
) -> Result<Joined, GroupError> {
    join_in(p, welcome, Some(last_epoch))
}

fn join_in<P: OpenMlsProvider>(
    p: &P,
    welcome: &GroupEnvelope,
    last_epoch: Option<u64>,
) -> Result<Joined, GroupError> {
    let GroupEnvelope::Welcome(bytes) = welcome else {
        return Err(GroupError::Invalid("not a Welcome envelope".into()));
    };
    let msg = MlsMessageIn::tls_deserialize_exact(bytes.as_slice())
        .map_err(|e| GroupError::Invalid(format!("malformed Welcome: {e}")))?;
    let MlsMessageBodyIn::Welcome(welcome) = msg.extract() else {
        return Err(GroupError::Invalid("not a Welcome".into()));
    };
    if welcome.ciphersuite() != CIPHERSUITE {
        return Err(GroupError::Invalid(
            "Welcome uses another ciphersuite".into(),
        ));
    }
    // Leaf lifetimes are checked on KeyPackages when they are added; re-checking them in the
    // tree would make a group unjoinable once a quiet member's leaf passed 90 days.
    let staged = StagedWelcome::build_from_welcome(p, &config::join_config(), welcome)
        .map_err(|e| match e {
            openmls::prelude::WelcomeError::NoMatchingKeyPackage
            | openmls::prelude::WelcomeError::NoMatchingEncryptionKey => {
                GroupError::KeyPackage("no KeyPackage of ours matches this Welcome".into())
            }
            e => GroupError::Invalid(e.to_string()),
        })?
        .skip_lifetime_validation()
        .build()
        .map_err(|e| GroupError::Invalid(e.to_string()))?;
    let group_id = staged.group_context().group_id().as_slice().to_vec();
    if group_id.len() != GROUP_ID_LEN {
        return Err(GroupError::Invalid("group id is not 16 bytes".into()));
    }
    let welcome_epoch = staged.group_context().epoch().as_u64();
    if let Some(last) = last_epoch {
        if welcome_epoch <= last {
            return Err(GroupError::Invalid(format!(
                "a Welcome to epoch {welcome_epoch} of a group we knew up to epoch {last} \
                 (replayed)"
            )));
        }
    }
    let name = config::group_name(staged.group_context().extensions())?;
    let members = staged
        .members()
        .map(|m| member_id(&m))
        .collect::<Result<Vec<_>, _>>()?;
    check_unique(&members)?;
    let sender = staged.welcome_sender().map_err(internal)?;
    let inviter = MemberId::from_leaf(sender.credential(), sender.signature_key().as_slice())?;
    let group = staged
        .into_group(p)
        .map_err(|e| GroupError::Invalid(e.to_string()))?;
    Ok(Joined {
        group_id,
        name,
        inviter,
        members,
        epoch: group.epoch().as_u64(),
    })
}

/// Refuse a member list in which a name or an identity key appears twice.
pub(crate) fn check_unique(members: &[MemberId]) -> Result<(), GroupError> {
    for (i, a) in members.iter().enumerate() {
        if members
            .iter()
            .skip(i + 1)
            .any(|b| a.name == b.name || a.identity == b.identity)
        {
            return Err(GroupError::Invalid(format!(
                "member {:?} (or its key) appears twice",
                a.name
            )));
        }
    }
    Ok(())
}

fn members_of(group: &MlsGroup) -> Result<Vec<MemberId>, GroupError> {
    group.members().map(|m| member_id(&m)).collect()
}

/// The group's current epoch.
pub fn epoch<P: OpenMlsProvider>(p: &P, group_id: &[u8]) -> Result<u64, GroupError> {
    Ok(load(p, group_id)?.epoch().as_u64())
}

/// The group's display name.
pub fn name<P: OpenMlsProvider>(p: &P, group_id: &[u8]) -> Result<String, GroupError> {
    config::group_name(load(p, group_id)?.extensions())
}

/// Every current member, us included, in leaf order.
pub fn members<P: OpenMlsProvider>(p: &P, group_id: &[u8]) -> Result<Vec<MemberId>, GroupError> {
    members_of(&load(p, group_id)?)
}

/// Whether we are still an active member (false once a commit removed us).
pub fn is_active<P: OpenMlsProvider>(p: &P, group_id: &[u8]) -> Result<bool, GroupError> {
    Ok(load(p, group_id)?.is_active())
}

/// The epoch authenticator: equal for every member in the same epoch of the same group
/// (compare it out of band to detect a split view).
pub fn epoch_authenticator<P: OpenMlsProvider>(
    p: &P,
    group_id: &[u8],
) -> Result<Vec<u8>, GroupError> {
    Ok(load(p, group_id)?.epoch_authenticator().as_slice().to_vec())
}

/// Delete every piece of the group's state (a real delete; unknown groups are fine).
pub fn delete_group<P: OpenMlsProvider>(p: &P, group_id: &[u8]) -> Result<(), GroupError> {
    let mut group = match load(p, group_id) {
        Ok(g) => g,
        Err(GroupError::UnknownGroup) => return Ok(()),
        Err(e) => return Err(e),
    };
    group
        .delete(p.storage())
        .map_err(|e| GroupError::Storage(e.to_string()))
}
