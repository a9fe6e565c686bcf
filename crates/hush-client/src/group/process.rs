//! Processing what the relay delivers for a group: application messages, a member's leave
//! proposal, and commits. Everything is verified by openmls (membership, signatures, the
//! AEAD, the confirmation tag) and then checked against hush's rules; the result names the
//! sender by credential and identity key. On any error nothing was written: openmls applies
//! ratchet and epoch changes only after the message verified, and we merge only after our
//! checks passed.

use hush_proto::GroupEnvelope;
use openmls::framing::errors::{MessageDecryptionError, SecretTreeError};
use openmls::prelude::{
    ContentType, Credential, LeafNodeIndex, MlsGroup, MlsGroupStateError, MlsMessageIn,
    ProcessMessageError, ProcessedMessageContent, Proposal, ProposalOrRefType, ProtocolMessage,
    Sender, ValidationError,
};
use openmls_traits::OpenMlsProvider;
use tls_codec::Deserialize as _;
use zeroize::Zeroizing;

use super::config::MAX_PAST_EPOCHS;
use super::credential::MemberId;
use super::engine::{check_unique, load, member_at, member_id};
use super::GroupError;

/// What a processed group message turned out to be.
pub enum Incoming {
    /// An application message (its plaintext is wiped when dropped).
    Application {
        /// Who sent it (credential name and leaf signature key = identity key).
        sender: MemberId,
        /// The plaintext.
        plaintext: Zeroizing<Vec<u8>>,
        /// The epoch it was sent in (may be up to `MAX_PAST_EPOCHS` behind ours).
        epoch: u64,
    },
    /// A commit, already merged: we are now at `new_epoch`.
    Commit {
        /// Who committed.
        committer: MemberId,
        /// Members it added.
        added: Vec<MemberId>,
        /// Members it removed.
        removed: Vec<MemberId>,
        /// Whether it removed us (the group is now inactive: stop sending, delete when done).
        we_were_removed: bool,
        /// Our epoch after the commit.
        new_epoch: u64,
    },
    /// A proposal, stored until a member commits it. hush only accepts a member's own leave.
    Proposal {
        /// Who proposed.
        sender: MemberId,
        /// Whom it removes (the sender itself).
        removes: Vec<MemberId>,
    },
}

impl std::fmt::Debug for Incoming {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Incoming::Application {
                sender,
                plaintext,
                epoch,
            } => f
                .debug_struct("Application")
                .field("sender", sender)
                .field("plaintext_len", &plaintext.len())
                .field("epoch", epoch)
                .finish(),
            Incoming::Commit {
                committer,
                added,
                removed,
                we_were_removed,
                new_epoch,
            } => f
                .debug_struct("Commit")
                .field("committer", committer)
                .field("added", added)
                .field("removed", removed)
                .field("we_were_removed", we_were_removed)
                .field("new_epoch", new_epoch)
                .finish(),
            Incoming::Proposal { sender, removes } => f
                .debug_struct("Proposal")
                .field("sender", sender)
                .field("removes", removes)
                .finish(),
        }
    }
}

/// Parse a group message or commit envelope: only encrypted MLS messages (PrivateMessage)
/// are accepted, whose content type matches the envelope kind (a commit that does not travel
/// as a commit would bypass the relay's epoch ordering).
fn parse(env: &GroupEnvelope) -> Result<ProtocolMessage, GroupError> {
    let (bytes, commit_kind) = match env {
        GroupEnvelope::Message(b) => (b, false),
        GroupEnvelope::Commit(b) => (b, true),
        GroupEnvelope::Welcome(_) => {
            return Err(GroupError::Invalid(
                "a Welcome is joined, not processed".into(),
            ))
        }
    };
    let msg = MlsMessageIn::tls_deserialize_exact(bytes.as_slice())
        .map_err(|e| GroupError::Invalid(format!("malformed MLS message: {e}")))?;
    let pm = msg
        .try_into_protocol_message()
        .map_err(|_| GroupError::Invalid("not an MLS group message".into()))?;
    if !matches!(pm, ProtocolMessage::PrivateMessage(_)) {
        return Err(GroupError::Invalid(
            "hush groups only accept encrypted MLS messages".into(),
        ));
    }
    let kind_ok = match pm.content_type() {
        ContentType::Commit => commit_kind,
        ContentType::Application | ContentType::Proposal => !commit_kind,
    };
    if !kind_ok {
        return Err(GroupError::Invalid(
            "MLS content type does not match the envelope kind".into(),
        ));
    }
    Ok(pm)
}

/// The group id a message or commit envelope is for (in clear in every MLS PrivateMessage), so
/// the receive path can find the group. Not authenticated until [`process`] succeeds.
pub fn group_id_of(env: &GroupEnvelope) -> Result<Vec<u8>, GroupError> {
    Ok(parse(env)?.group_id().as_slice().to_vec())
}

fn map_process_error<E: std::fmt::Display>(
    e: ProcessMessageError<E>,
    have: u64,
    got: u64,
) -> GroupError {
    use ProcessMessageError as Pe;
    match e {
        Pe::StorageError(e) => GroupError::Storage(e.to_string()),
        Pe::GroupStateError(MlsGroupStateError::UseAfterEviction) => GroupError::NotAMember,
        Pe::ValidationError(ValidationError::UnableToDecrypt(
            MessageDecryptionError::SecretTreeError(SecretTreeError::SecretReuseError),
        )) => GroupError::Replay,
        Pe::ValidationError(ValidationError::UnableToDecrypt(
            MessageDecryptionError::SecretTreeError(SecretTreeError::TooDistantInThePast),
        ))
        | Pe::ValidationError(ValidationError::NoPastEpochData) => GroupError::TooOld { have, got },
        Pe::ValidationError(ValidationError::WrongEpoch) if got > have => {
            GroupError::FutureEpoch { have, got }
        }
        Pe::ValidationError(ValidationError::WrongEpoch) => GroupError::TooOld { have, got },
        e => GroupError::Invalid(e.to_string()),
    }
}

/// The sender of an application message: the (name, key) its credential names, which must be
/// the member at its leaf now. A message from a past epoch was verified under that epoch's
/// leaf; if the leaf has changed hands since (removed, and someone added in its place, even
/// under the same name), the key differs and the message is refused: its sender is no longer
/// known to us (review finding 5).
fn resolve_sender(
    group: &MlsGroup,
    index: LeafNodeIndex,
    credential: &Credential,
) -> Result<MemberId, GroupError> {
    let then = MemberId::from_credential(credential)?;
    match group.member_at(index).map(|m| member_id(&m)) {
        Some(Ok(now)) if now == then => Ok(now),
        _ => Err(GroupError::Invalid(
            "the sender has left the group since; its key is no longer known".into(),
        )),
    }
}

/// Process a group message or commit envelope for `group_id`.
///
/// - a message from a later epoch → [`GroupError::FutureEpoch`] (sync the commits first);
/// - a commit or proposal from an earlier epoch, or an application message more than
///   `MAX_PAST_EPOCHS` back → [`GroupError::TooOld`];
/// - an application message already opened → [`GroupError::Replay`];
/// - anything not verifiable (forged, tampered, from a non-member, a commit changing a
///   member's key, a proposal other than a leave) → [`GroupError::Invalid`].
///
/// A commit is merged here; we may have had a commit of our own pending for the same epoch:
/// the relay delivers only the commit it accepted, so ours is dropped by the merge.
pub fn process<P: OpenMlsProvider>(
    p: &P,
    group_id: &[u8],
    env: &GroupEnvelope,
) -> Result<Incoming, GroupError> {
    let pm = parse(env)?;
    if pm.group_id().as_slice() != group_id {
        return Err(GroupError::Invalid("message is for another group".into()));
    }
    let mut group = load(p, group_id)?;
    process_in(p, &mut group, pm)
}

/// [`process`] on a loaded group (see [`LoadedGroup`](super::engine::LoadedGroup)).
pub(crate) fn process_loaded<P: OpenMlsProvider>(
    p: &P,
    group: &mut MlsGroup,
    env: &GroupEnvelope,
) -> Result<Incoming, GroupError> {
    let pm = parse(env)?;
    if pm.group_id() != group.group_id() {
        return Err(GroupError::Invalid("message is for another group".into()));
    }
    process_in(p, group, pm)
}

fn process_in<P: OpenMlsProvider>(
    p: &P,
    group: &mut MlsGroup,
    pm: ProtocolMessage,
) -> Result<Incoming, GroupError> {
    let content_type = pm.content_type();
    if !group.is_active() {
        return Err(GroupError::NotAMember);
    }
    let have = group.epoch().as_u64();
    let got = pm.epoch().as_u64();
    if got > have {
        return Err(GroupError::FutureEpoch { have, got });
    }
    let past_ok =
        matches!(content_type, ContentType::Application) && have - got <= MAX_PAST_EPOCHS as u64;
    if got < have && !past_ok {
        return Err(GroupError::TooOld { have, got });
    }
    let processed = group
        .process_message(p, pm)
        .map_err(|e| map_process_error(e, have, got))?;
    let index = match processed.sender() {
        Sender::Member(i) => *i,
        _ => return Err(GroupError::Invalid("not sent by a member".into())),
    };
    let credential = processed.credential().clone();
    match processed.into_content() {
        ProcessedMessageContent::ApplicationMessage(app) => Ok(Incoming::Application {
            sender: resolve_sender(group, index, &credential)?,
            plaintext: Zeroizing::new(app.into_bytes()),
            epoch: got,
        }),
        ProcessedMessageContent::ProposalMessage(qp) => {
            let sender = member_at(group, index)?;
            match qp.proposal() {
                Proposal::Remove(r) if r.removed() == index => {}
                _ => {
                    return Err(GroupError::Invalid(
                        "hush only accepts a member's proposal to leave".into(),
                    ))
                }
            }
            group
                .store_pending_proposal(p.storage(), *qp)
                .map_err(|e| GroupError::Storage(e.to_string()))?;
            Ok(Incoming::Proposal {
                sender: sender.clone(),
                removes: vec![sender],
            })
        }
        ProcessedMessageContent::StagedCommitMessage(staged) => {
            let committer_member = group
                .member_at(index)
                .ok_or_else(|| GroupError::Invalid("committer is not a member".into()))?;
            let committer = member_id(&committer_member)?;
            for qp in staged.queued_proposals() {
                if !matches!(qp.proposal(), Proposal::Add(_) | Proposal::Remove(_)) {
                    return Err(GroupError::Invalid(
                        "commit carries a proposal hush does not use".into(),
                    ));
                }
                // Whether we hold a referenced proposal depends on which mail reached us;
                // refusing every reference makes all members decide alike (review finding 1).
                if qp.proposal_or_ref_type() != ProposalOrRefType::Proposal {
                    return Err(GroupError::Invalid(
                        "commit carries a proposal by reference; hush commits carry them inline"
                            .into(),
                    ));
                }
            }
            if let Some(leaf) = staged.update_path_leaf_node() {
                if leaf.signature_key().as_slice() != committer.identity.as_slice()
                    || leaf.credential() != &committer_member.credential
                {
                    return Err(GroupError::Invalid(
                        "commit changes the committer's credential or key".into(),
                    ));
                }
            }
            let mut added = Vec::new();
            for a in staged.add_proposals() {
                let leaf = a.add_proposal().key_package().leaf_node();
                added.push(MemberId::from_leaf(
                    leaf.credential(),
                    leaf.signature_key().as_slice(),
                )?);
            }
            let mut removed = Vec::new();
            for r in staged.remove_proposals() {
                removed.push(member_at(group, r.remove_proposal().removed())?);
            }
            let mut after: Vec<MemberId> = group
                .members()
                .map(|m| member_id(&m))
                .collect::<Result<Vec<_>, _>>()?;
            after.retain(|m| !removed.contains(m));
            after.extend(added.iter().cloned());
            check_unique(&after)?;
            let we_were_removed = staged.self_removed();
            group
                .merge_staged_commit(p, *staged)
                .map_err(|e| GroupError::Storage(e.to_string()))?;
            Ok(Incoming::Commit {
                committer,
                added,
                removed,
                we_were_removed,
                new_epoch: group.epoch().as_u64(),
            })
        }
        ProcessedMessageContent::ExternalJoinProposalMessage(_) => Err(GroupError::Invalid(
            "external proposals are not accepted".into(),
        )),
        // Our own message echoed back (the relay never sends us our own mail).
        _ => Err(GroupError::Replay),
    }
}
