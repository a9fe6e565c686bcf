//! The commit flow, and catching up with a group's commits.
//!
//! A commit is built in a profile transaction (openmls keeps it pending) and committed with a
//! [`PendingCommit`] record before it is sent. The relay orders commits per group by
//! compare-and-set on the epoch: `CommitAccepted` → merge it; `StaleEpoch` → another commit
//! won that epoch: discard ours, fetch and process the missing commits (GroupSync), build
//! again, at most [`COMMIT_RETRIES`] times. A reply lost with the connection leaves the record:
//! the next operation on the group sends the same commit again, and if the relay's log shows
//! it already won its epoch (byte-equal), it is merged rather than discarded.

use sha2::{Digest, Sha256};

use super::groups::{relay_group_id, GroupChange};
use super::keypackages::group_err;
use super::*;
use crate::group::{
    engine as group, CommitOut, GroupError, HushProvider, IdentitySigner, Incoming, MemberId,
};

/// Builds after a `StaleEpoch` before giving up.
pub const COMMIT_RETRIES: usize = 3;

/// Our commits sent and not yet settled, keyed by group id (hex).
pub(super) const NS_GROUP_PENDING: &str = "group-pending-commit";
/// Under [`KEY_SELF`]: hashes of the last [`APPLIED_COMMITS_KEPT`] commits applied.
const NS_GROUP_APPLIED: &str = "group-applied-commits";
/// Commits remembered as applied, so that the mailbox copy of one already applied through a
/// sync is acked silently.
const APPLIED_COMMITS_KEPT: usize = 256;
/// Sync rounds at most per catch-up (each up to `MAX_COMMITS_PER_SYNC` commits).
const SYNC_ROUNDS_MAX: usize = 16;

/// A commit of ours sent (or about to be) and not yet merged or discarded.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct PendingCommit {
    epoch: u64,
    added: Vec<[u8; 32]>,
    removed: Vec<[u8; 32]>,
    commit: Vec<u8>,
    welcome: Option<Vec<u8>>,
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct AppliedCommit {
    hash: String,
    /// Applied from a sync reply: its mailbox copy is still to come (and acked silently once).
    synced: bool,
}

/// What to commit.
pub(super) enum CommitOp {
    /// Add these members (expected identity, KeyPackage from the relay).
    Add(Vec<(MemberId, Vec<u8>)>),
    /// Remove these identities (those still members when the commit is built).
    Remove(Vec<[u8; 32]>),
    /// Commit the proposals received (a member's leave); if a concurrent commit dropped
    /// them, remove these identities instead while they are still members.
    Pending(Vec<[u8; 32]>),
}

/// What a commit envelope is known as, once applied.
pub(super) fn commit_hash(envelope: &[u8]) -> String {
    hex::encode(Sha256::digest(envelope))
}

/// Where in the relay's commit log this member is: the record's position, or the MLS epoch
/// if that is later (a joiner starts from its MLS epoch; see [`GroupRecord::relay_epoch`]).
fn relay_position(record_epoch: u64, provider: &HushProvider<'_>, group_id: &[u8]) -> u64 {
    group::epoch(provider, group_id).map_or(record_epoch, |mls| mls.max(record_epoch))
}

/// The relay request carrying a pending commit.
fn commit_request(group_id: &[u8], pending: &PendingCommit) -> Result<Request, ClientError> {
    Ok(Request::GroupCommit(hush_proto::relay::GroupCommit {
        group_id: relay_group_id(group_id)?,
        epoch: pending.epoch,
        added: pending.added.clone(),
        removed: pending.removed.clone(),
        commit: pending.commit.clone(),
        welcome: pending.welcome.clone(),
    }))
}

/// Whether `request` fits one relay message; a clear refusal if not (a Welcome carries the
/// whole ratchet tree, so a large group outgrows it: about 230 members today).
fn check_fits(request: &Request, adding: usize) -> Result<(), ClientError> {
    let len = request.encode(0).len();
    if len <= hush_proto::relay::group::MAX_REQUEST_LEN {
        return Ok(());
    }
    Err(ClientError::Group(format!(
        "this commit{} is {len} bytes with its Welcome, more than one relay message carries ({} bytes):          the group is too large to add members over this relay (about 230 members today); nothing was sent",
        if adding > 0 { format!(" adding {adding}") } else { String::new() },
        hush_proto::relay::group::MAX_REQUEST_LEN
    )))
}

/// The members of `ids` still in the group.
fn still_members(
    provider: &HushProvider<'_>,
    group_id: &[u8],
    ids: &[[u8; 32]],
) -> Result<Vec<[u8; 32]>, GroupError> {
    let members = group::members(provider, group_id)?;
    Ok(ids
        .iter()
        .filter(|id| members.iter().any(|m| m.identity == **id))
        .copied()
        .collect())
}

fn build(
    op: &CommitOp,
    provider: &HushProvider<'_>,
    signer: &IdentitySigner<'_>,
    group_id: &[u8],
) -> Result<Option<CommitOut>, GroupError> {
    match op {
        CommitOp::Add(candidates) => {
            group::add_members(provider, signer, group_id, candidates).map(Some)
        }
        CommitOp::Remove(ids) => {
            let still = still_members(provider, group_id, ids)?;
            if still.is_empty() {
                return Ok(None);
            }
            group::remove_members(provider, signer, group_id, &still).map(Some)
        }
        CommitOp::Pending(ids) => {
            if let Some(out) = group::commit_pending_proposals(provider, signer, group_id)? {
                return Ok(Some(out));
            }
            let still = still_members(provider, group_id, ids)?;
            if still.is_empty() {
                return Ok(None);
            }
            group::remove_members(provider, signer, group_id, &still).map(Some)
        }
    }
}

impl Client {
    /// Build, send and settle one commit (see the module doc). `Ok(None)`: nothing left to
    /// commit (e.g. a concurrent commit did it).
    pub(super) async fn commit_op(
        &mut self,
        group_id: &[u8],
        op: CommitOp,
        events: &mut Vec<Event>,
    ) -> Result<Option<CommitOut>, ClientError> {
        self.resolve_pending(group_id, events).await?;
        let id_hex = hex::encode(group_id);
        for _ in 0..=COMMIT_RETRIES {
            let (out, pending) = {
                let tx = self.store.tx()?;
                let provider = HushProvider::new(&tx);
                let signer = IdentitySigner::new(&self.identity);
                let record_epoch = Self::group_by_id(&tx, group_id)?.map_or(0, |r| r.relay_epoch);
                let position = relay_position(record_epoch, &provider, group_id);
                let Some(out) = build(&op, &provider, &signer, group_id).map_err(group_err)? else {
                    return Ok(None);
                };
                let pending = PendingCommit {
                    epoch: position,
                    added: out.added.clone(),
                    removed: out.removed.clone(),
                    commit: out.commit.clone(),
                    welcome: out.welcome.clone(),
                };
                // A commit and Welcome that cannot cross the relay in one message would stay
                // pending for ever (and block every send to the group): refuse it here, and
                // the dropped transaction takes openmls's pending commit with it.
                check_fits(&commit_request(group_id, &pending)?, out.added.len())?;
                // Committed with openmls's pending commit, before the commit leaves.
                tx.put(NS_GROUP_PENDING, &id_hex, &pending)?;
                tx.commit()?;
                (out, pending)
            };
            if self.send_pending(group_id, &pending, events).await? {
                return Ok(Some(out));
            }
        }
        Err(ClientError::Group(format!(
            "other members kept committing first; gave up after {COMMIT_RETRIES} retries (try again)"
        )))
    }

    /// Send (again) our pending commit for the group, if any, and settle it.
    pub(super) async fn resolve_pending(
        &mut self,
        group_id: &[u8],
        events: &mut Vec<Event>,
    ) -> Result<(), ClientError> {
        let pending: Option<PendingCommit> = self
            .store
            .tx()?
            .get(NS_GROUP_PENDING, &hex::encode(group_id))?;
        if let Some(pending) = pending {
            self.send_pending(group_id, &pending, events).await?;
        }
        Ok(())
    }

    /// Send a pending commit and settle it: `true` if it was merged, `false` if it lost its
    /// epoch (discarded, and the group caught up).
    async fn send_pending(
        &mut self,
        group_id: &[u8],
        pending: &PendingCommit,
        events: &mut Vec<Event>,
    ) -> Result<bool, ClientError> {
        let request = commit_request(group_id, pending)?;
        match self.request(&request).await {
            Ok(Reply::CommitAccepted { epoch }) => {
                self.settle_pending(group_id, true, Some(epoch))?;
                Ok(true)
            }
            Ok(_) => Err(ClientError::Network(NetError::UnexpectedReply)),
            Err(ClientError::Relay(e)) if e.code == ErrorCode::StaleEpoch => {
                // Did our commit win before a lost reply? Then the log holds it, byte-equal.
                let reply = self.sync_request(group_id, pending.epoch).await?;
                let ours = reply
                    .commits
                    .iter()
                    .any(|c| c.epoch == pending.epoch && c.commit == pending.commit);
                self.settle_pending(group_id, ours, ours.then_some(pending.epoch + 1))?;
                self.apply_logged(group_id, &reply.commits, events)?;
                self.catch_up(group_id, events).await?;
                Ok(ours)
            }
            Err(ClientError::Relay(e)) => {
                // Refused for good (not a member, unknown group, too large): drop it.
                self.settle_pending(group_id, false, None)?;
                Err(ClientError::Relay(e))
            }
            // Unknown outcome: the record stays, and the next operation sends it again.
            Err(e) => Err(e),
        }
    }

    /// Merge (won) or discard (lost) our pending commit, and forget the record.
    fn settle_pending(
        &mut self,
        group_id: &[u8],
        won: bool,
        position: Option<u64>,
    ) -> Result<(), ClientError> {
        let tx = self.store.tx()?;
        let provider = HushProvider::new(&tx);
        if won {
            group::merge_own_commit(&provider, group_id).map_err(group_err)?;
            if let (Some(position), Some(mut record)) =
                (position, Self::group_by_id(&tx, group_id)?)
            {
                record.relay_epoch = record.relay_epoch.max(position);
                Self::put_group(&tx, &record)?;
            }
        } else {
            // Nothing to discard if a commit of another member was merged meanwhile.
            let _ = group::discard_own_commit(&provider, group_id);
        }
        tx.delete(NS_GROUP_PENDING, &hex::encode(group_id))?;
        tx.commit()?;
        Ok(())
    }

    async fn sync_request(
        &mut self,
        group_id: &[u8],
        after_epoch: u64,
    ) -> Result<hush_proto::relay::GroupCommits, ClientError> {
        match self
            .request(&Request::GroupSync {
                group_id: relay_group_id(group_id)?,
                after_epoch,
            })
            .await?
        {
            Reply::GroupCommits(c) => Ok(c),
            _ => Err(ClientError::Network(NetError::UnexpectedReply)),
        }
    }

    /// Fetch and process, in order, the commits the relay holds after our epoch.
    pub(super) async fn catch_up(
        &mut self,
        group_id: &[u8],
        events: &mut Vec<Event>,
    ) -> Result<(), ClientError> {
        for _ in 0..SYNC_ROUNDS_MAX {
            let Some(position) = self.position(group_id)? else {
                // Removed by a commit just applied: nothing more to fetch.
                return Ok(());
            };
            let reply = self.sync_request(group_id, position).await?;
            // A reply holds at most so many commits (or bytes): ask again until current.
            let walked = self.apply_logged(group_id, &reply.commits, events)?;
            if walked == 0 || position + walked as u64 >= reply.current_epoch {
                return Ok(());
            }
        }
        Ok(())
    }

    /// Our position in the group's commit log, or `None` if we are no longer in the group.
    fn position(&mut self, group_id: &[u8]) -> Result<Option<u64>, ClientError> {
        let tx = self.store.tx()?;
        let provider = HushProvider::new(&tx);
        let Some(record) = Self::group_by_id(&tx, group_id)? else {
            return Ok(None);
        };
        if group::epoch(&provider, group_id).is_err() {
            return Ok(None);
        }
        Ok(Some(relay_position(
            record.relay_epoch,
            &provider,
            group_id,
        )))
    }

    /// Move our log position past `logged_epoch` without applying anything (a commit applied
    /// before, or one every member refuses).
    fn pass_position(&mut self, group_id: &[u8], logged_epoch: u64) -> Result<(), ClientError> {
        let tx = self.store.tx()?;
        if let Some(mut record) = Self::group_by_id(&tx, group_id)? {
            record.relay_epoch = record.relay_epoch.max(logged_epoch + 1);
            Self::put_group(&tx, &record)?;
            tx.commit()?;
        }
        Ok(())
    }

    /// Apply logged commits in order from our epoch; returns how many were applied.
    fn apply_logged(
        &mut self,
        group_id: &[u8],
        commits: &[hush_proto::relay::LoggedCommit],
        events: &mut Vec<Event>,
    ) -> Result<usize, ClientError> {
        let mut walked = 0;
        for logged in commits {
            let Some(epoch) = self.position(group_id)? else {
                break;
            };
            if logged.epoch < epoch {
                continue;
            }
            if logged.epoch > epoch {
                events.push(Event::Rejected {
                    contact: None,
                    reason: format!(
                        "group commits for epochs {epoch} to {} are missing from the relay's log; \
                         this group cannot catch up (ask a member to remove and re-add you)",
                        logged.epoch
                    ),
                });
                break;
            }
            walked += 1;
            if self.applied_before(&logged.commit)?.is_some() {
                // Applied already (from the mailbox): only our position moves.
                self.pass_position(group_id, logged.epoch)?;
                continue;
            }
            match self.apply_commit(group_id, &logged.commit, Some(logged.epoch), None)? {
                Ok(more) => events.extend(more),
                Err(reason) if reason.starts_with(FUTURE_EPOCH) => {
                    // A valid commit we cannot reach: we missed one the others applied.
                    events.push(Event::Rejected {
                        contact: None,
                        reason: format!("{reason}; this group cannot catch up (ask a member to remove and re-add you)"),
                    });
                    break;
                }
                Err(reason) => {
                    // Every member refuses the same bytes the same way, so every member skips
                    // this entry and the log goes on: a garbage commit the relay accepted (it
                    // cannot check MLS) does not freeze the group.
                    self.pass_position(group_id, logged.epoch)?;
                    events.push(Event::Rejected {
                        contact: None,
                        reason: format!("skipped an invalid commit in the group's log: {reason}"),
                    });
                }
            }
        }
        Ok(walked)
    }

    /// Whether this commit envelope was applied before; `Some(true)` if through a sync only
    /// (its mailbox copy is expected once).
    pub(super) fn applied_before(&mut self, envelope: &[u8]) -> Result<Option<bool>, ClientError> {
        let hash = commit_hash(envelope);
        let list: Vec<AppliedCommit> = self
            .store
            .tx()?
            .get(NS_GROUP_APPLIED, KEY_SELF)?
            .unwrap_or_default();
        Ok(list.iter().find(|a| a.hash == hash).map(|a| a.synced))
    }

    /// Record that the mailbox copy of a synced commit came (the next copy is a replay).
    pub(super) fn note_mailbox_copy(
        tx: &crate::store::Tx<'_>,
        envelope: &[u8],
    ) -> Result<(), ClientError> {
        Self::note_applied(tx, envelope, false)
    }

    fn note_applied(
        tx: &crate::store::Tx<'_>,
        envelope: &[u8],
        synced: bool,
    ) -> Result<(), ClientError> {
        let hash = commit_hash(envelope);
        let mut list: Vec<AppliedCommit> = tx.get(NS_GROUP_APPLIED, KEY_SELF)?.unwrap_or_default();
        list.retain(|a| a.hash != hash);
        list.push(AppliedCommit { hash, synced });
        let excess = list.len().saturating_sub(APPLIED_COMMITS_KEPT);
        list.drain(..excess);
        tx.put(NS_GROUP_APPLIED, KEY_SELF, &list)?;
        Ok(())
    }

    /// Process one commit envelope of another member in its own transaction (with the
    /// delivery fingerprint, if it came from the mailbox). `Ok(Err(reason))`: refused,
    /// nothing changed. A commit from a future epoch is `Err(reason)` starting with
    /// [`FUTURE_EPOCH`].
    pub(super) fn apply_commit(
        &mut self,
        group_id: &[u8],
        envelope: &[u8],
        logged_at: Option<u64>,
        delivery: Option<&str>,
    ) -> Result<Result<Vec<Event>, String>, ClientError> {
        let synced = logged_at.is_some();
        let env = match hush_proto::group::GroupEnvelope::from_bytes(envelope) {
            Ok(env @ hush_proto::group::GroupEnvelope::Commit(_)) => env,
            Ok(_) => return Ok(Err("not a commit where a commit belongs".into())),
            Err(e) => return Ok(Err(format!("malformed group envelope: {e}"))),
        };
        let me = self.member_id();
        let tx = self.store.tx()?;
        let Some(mut record) = Self::group_by_id(&tx, group_id)? else {
            return Ok(Err("a commit for a group we are not in".into()));
        };
        let provider = HushProvider::new(&tx);
        let position_before = relay_position(record.relay_epoch, &provider, group_id);
        let incoming = match group::process(&provider, group_id, &env) {
            Ok(i) => i,
            Err(GroupError::FutureEpoch { have, got }) => {
                return Ok(Err(format!("{FUTURE_EPOCH} (have {have}, got {got})")))
            }
            Err(e) => {
                return Ok(Err(format!(
                    "refused a commit in group #{}: {e}",
                    record.name
                )))
            }
        };
        let Incoming::Commit {
            committer,
            added,
            removed,
            we_were_removed,
            ..
        } = incoming
        else {
            return Ok(Err(format!(
                "refused a commit in group #{}: not a commit",
                record.name
            )));
        };
        let mut events = Vec::new();
        if !added.is_empty() {
            events.push(Event::Group {
                group: record.name.clone(),
                change: GroupChange::Added {
                    by: committer.name.clone(),
                    members: added.iter().map(|m| m.name.clone()).collect(),
                },
            });
            super::groups::member_warnings(&me, &tx, &record.name, &added, &mut events)?;
        }
        let others: Vec<String> = removed
            .iter()
            .filter(|m| m.identity != me.identity)
            .map(|m| m.name.clone())
            .collect();
        if !others.is_empty() {
            events.push(Event::Group {
                group: record.name.clone(),
                change: GroupChange::Removed {
                    by: committer.name.clone(),
                    members: others,
                },
            });
        }
        if we_were_removed {
            let _ = group::delete_group(&provider, group_id);
            record.gone = Some(format!("removed by {}", committer.name));
            events.push(Event::Group {
                group: record.name.clone(),
                change: GroupChange::WeWereRemoved {
                    by: committer.name.clone(),
                },
            });
        }
        // The commit took one place in the relay's log: the one it was logged at, or (from the
        // mailbox, which the relay fills in log order) the next one.
        record.relay_epoch = logged_at.unwrap_or(position_before) + 1;
        Self::put_group(&tx, &record)?;
        Self::note_applied(&tx, envelope, synced)?;
        if let Some(fingerprint) = delivery {
            Self::remember_delivery(&tx, fingerprint)?;
        }
        tx.commit()?;
        Ok(Ok(events))
    }
}

/// How [`Client::apply_commit`] says a commit is from an epoch we have not reached.
pub(super) const FUTURE_EPOCH: &str = "commit from a future epoch";

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    fn pending(welcome_len: usize) -> PendingCommit {
        PendingCommit {
            epoch: 3,
            added: vec![[1; 32]],
            removed: vec![],
            commit: vec![1, 4, 0, 0],
            welcome: Some([vec![1, 5], vec![0; welcome_len]].concat()),
        }
    }

    /// A commit whose Welcome does not fit one relay message is refused before anything is
    /// stored or sent (it used to stay pending and block the group); one that fits passes.
    #[test]
    fn a_commit_too_large_for_one_relay_message_is_refused_clearly() {
        let gid = [9u8; 16];
        let fits = commit_request(&gid, &pending(30_000)).unwrap();
        assert!(check_fits(&fits, 1).is_ok());
        let too_large = commit_request(&gid, &pending(70_000)).unwrap();
        let err = check_fits(&too_large, 1).unwrap_err().to_string();
        assert!(err.contains("too large to add members"), "{err}");
        assert!(err.contains("nothing was sent"), "{err}");
    }
}
