//! Groups (MLS, RFC 9420): the local record of each group and the user's operations on it —
//! create, add, remove, leave, list, members, history. The commit flow lives in
//! [`super::group_commit`], the receive path in [`super::group_receive`], sending in
//! [`super::group_send`]. The MLS engine is [`crate::group`].
//!
//! A group has a local name (`#team`), chosen by its creator and taken from the Welcome by a
//! joiner, made unique locally (`team`, `team-2`). History rows of a group are stored under
//! `#` and its id, so they never mix with a contact's (no contact name starts with `#`).

use hush_proto::relay::GroupId;

use super::keypackages::group_err;
use super::*;
use crate::group::{engine as group, HushProvider, IdentitySigner, MemberId};

/// Local group records, keyed by local name.
pub(super) const NS_GROUP: &str = "group";
/// Group id (hex) → local name.
pub(super) const NS_GROUP_BY_ID: &str = "group-by-id";
/// Under [`KEY_SELF`]: every local group name, in creation order.
const NS_GROUP_LIST: &str = "group-list";

/// One group as this profile knows it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub(super) struct GroupRecord {
    /// Local name (without `#`).
    pub name: String,
    /// The MLS group id (hex), also the relay's.
    pub id: String,
    /// Why we are no longer a member (left, removed by someone); then nothing is sent to it
    /// and its MLS state is gone.
    #[serde(default)]
    pub gone: Option<String>,
    /// Messages received and not yet viewed.
    #[serde(default)]
    pub unread: u32,
    /// Our self-remove proposal, kept until the relay took it and our GroupLeave (so that
    /// `leave` can be finished after a lost connection).
    #[serde(default)]
    pub leaving: Option<Vec<u8>>,
    /// The relay's commit-log position we have reached: the epoch we name in `GroupCommit`
    /// and `GroupSync`. Usually the MLS epoch, but it runs ahead of it by every logged commit
    /// we skipped as invalid (garbage a member made the relay accept), so such a commit cannot
    /// freeze the group. 0 until known: then the MLS epoch is the best guess.
    #[serde(default)]
    pub relay_epoch: u64,
}

impl GroupRecord {
    pub(super) fn id_bytes(&self) -> Result<Vec<u8>, ClientError> {
        hex::decode(&self.id)
            .map_err(|_| ClientError::Store(StoreError::Corrupt("stored group id".into())))
    }
}

/// Where a history row of a group is filed.
pub(super) fn history_key(group_id_hex: &str) -> String {
    format!("#{group_id_hex}")
}

/// The relay's name for a group.
pub(super) fn relay_group_id(id: &[u8]) -> Result<GroupId, ClientError> {
    GroupId::new(id.to_vec()).map_err(|e| ClientError::Invalid(e.to_string()))
}

/// A member's standing, compared with our contacts (safety numbers cover every group).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MemberState {
    /// Ourselves.
    You,
    /// A contact whose safety number the user compared, under that key.
    Verified,
    /// A contact under its known key, not verified.
    Known,
    /// A contact name whose key in the group differs from the contact's key (or whose key
    /// change is not yet accepted).
    KeyChanged,
    /// Nobody in our contacts: shown with its key fingerprint.
    NotAContact,
}

impl MemberState {
    /// How it is shown.
    pub fn label(self) -> &'static str {
        match self {
            MemberState::You => "you",
            MemberState::Verified => "verified",
            MemberState::Known => "known",
            MemberState::KeyChanged => "KEY CHANGED",
            MemberState::NotAContact => "not a contact",
        }
    }
}

/// One member of a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupMember {
    /// The name in its credential.
    pub name: String,
    /// Its identity key (hex), the leaf signature key.
    pub identity_key: String,
    /// Compared with our contacts.
    pub state: MemberState,
}

/// A group, for `hush group list` and `members`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupInfo {
    /// Local name (without `#`).
    pub name: String,
    /// Group id (hex).
    pub id: String,
    /// Why we are no longer a member, if we are not.
    pub gone: Option<String>,
    /// Unread messages.
    pub unread: u32,
    /// Current epoch (none once gone).
    pub epoch: Option<u64>,
    /// The epoch authenticator (hex): equal for every member in the same epoch of the same
    /// group, so two members can compare it to know they see the same group state.
    pub epoch_authenticator: Option<String>,
    /// Members (empty once gone).
    pub members: Vec<GroupMember>,
}

/// Something that changed in a group: shown as a system line.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum GroupChange {
    /// We joined, invited by `inviter` (a contact under its known key).
    Joined {
        /// Who added us.
        inviter: String,
        /// Everyone in the group (with us).
        members: Vec<String>,
    },
    /// `by` added `members`.
    Added {
        /// Committer.
        by: String,
        /// Added names.
        members: Vec<String>,
    },
    /// `by` removed `members` (a leave is a removal committed by someone else).
    Removed {
        /// Committer.
        by: String,
        /// Removed names.
        members: Vec<String>,
    },
    /// `by` removed us: nothing more can be sent or read in this group.
    WeWereRemoved {
        /// Committer.
        by: String,
    },
    /// `member` asked to leave (a remaining member commits it).
    LeaveRequested {
        /// Who.
        member: String,
    },
    /// A member whose key is not the one we trust for that name.
    MemberKeyChanged {
        /// Member name.
        member: String,
    },
    /// A member who is not one of our contacts.
    NotAContact {
        /// Member name.
        member: String,
        /// Its identity key fingerprint.
        fingerprint: String,
    },
}

/// A local name for a group: the given one if it is a valid name, else `group`.
fn clean_name(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    if hush_proto::relay::is_valid_name(&lower) {
        lower
    } else {
        "group".to_owned()
    }
}

impl Client {
    /// The record of the group named `name` (with or without a leading `#`).
    pub(super) fn group_record(&mut self, name: &str) -> Result<GroupRecord, ClientError> {
        let name = name.strip_prefix('#').unwrap_or(name);
        self.store
            .tx()?
            .get(NS_GROUP, name)?
            .ok_or_else(|| ClientError::Invalid(format!("no group named #{name}")))
    }

    /// The record of the group with this id, if we know it.
    pub(super) fn group_by_id(
        tx: &crate::store::Tx<'_>,
        id: &[u8],
    ) -> Result<Option<GroupRecord>, ClientError> {
        let Some(name) = tx.get::<String>(NS_GROUP_BY_ID, &hex::encode(id))? else {
            return Ok(None);
        };
        Ok(tx.get(NS_GROUP, &name)?)
    }

    pub(super) fn put_group(
        tx: &crate::store::Tx<'_>,
        record: &GroupRecord,
    ) -> Result<(), ClientError> {
        let mut names: Vec<String> = tx.get(NS_GROUP_LIST, KEY_SELF)?.unwrap_or_default();
        if !names.contains(&record.name) {
            names.push(record.name.clone());
            tx.put(NS_GROUP_LIST, KEY_SELF, &names)?;
        }
        tx.put(NS_GROUP, &record.name, record)?;
        tx.put(NS_GROUP_BY_ID, &record.id, &record.name)?;
        Ok(())
    }

    /// Create group `name` and add `members` (contacts under their trusted key). Returns the
    /// events of the commit flow (e.g. commits of others met while retrying).
    pub async fn group_create(
        &mut self,
        name: &str,
        members: &[String],
    ) -> Result<Vec<Event>, ClientError> {
        let name = name.strip_prefix('#').unwrap_or(name);
        if !hush_proto::relay::is_valid_name(name) {
            return Err(ClientError::Invalid(format!(
                "invalid group name {name:?}: use 1-32 of a-z 0-9 _ - . starting with a letter or digit"
            )));
        }
        // Everything that can be refused is checked, and every KeyPackage fetched, before the
        // group exists.
        let candidates = self.fetch_candidates(members).await?;
        let mut id = [0u8; 16];
        OsRng.fill_bytes(&mut id);
        let me = self.member_id();
        {
            let tx = self.store.tx()?;
            if tx.get::<GroupRecord>(NS_GROUP, name)?.is_some() {
                return Err(ClientError::Invalid(format!(
                    "you already have a group named #{name}"
                )));
            }
            let provider = HushProvider::new(&tx);
            let signer = IdentitySigner::new(&self.identity);
            group::create_group(&provider, &signer, &me, id, name).map_err(group_err)?;
            Self::put_group(
                &tx,
                &GroupRecord {
                    name: name.to_owned(),
                    id: hex::encode(id),
                    gone: None,
                    unread: 0,
                    leaving: None,
                    relay_epoch: 0,
                },
            )?;
            tx.commit()?;
        }
        let mut events = Vec::new();
        if !candidates.is_empty() {
            let op = super::group_commit::CommitOp::Add(candidates);
            self.commit_op(&id, op, &mut events).await?;
        }
        Ok(events)
    }

    /// A contact we may add to a group: known, and its key not in a changed state.
    fn addable_contact(&mut self, name: &str) -> Result<Contact, ClientError> {
        if name == self.config.name {
            return Err(ClientError::Invalid(
                "you are in your groups already".into(),
            ));
        }
        let contact = self.contact(name)?.ok_or_else(|| {
            ClientError::Invalid(format!(
                "{name} is not a contact: run `hush add {name}` (and compare safety numbers with `hush verify {name}`) first"
            ))
        })?;
        if contact.changed_key.is_some() {
            return Err(ClientError::KeyChanged(name.to_owned()));
        }
        Ok(contact)
    }

    /// Add contacts to a group: fetch a KeyPackage for each (the engine checks it carries
    /// the contact's name and identity key), commit, Welcome them.
    pub async fn group_add(
        &mut self,
        name: &str,
        members: &[String],
    ) -> Result<Vec<Event>, ClientError> {
        let record = self.usable_group(name)?;
        let candidates = self.fetch_candidates(members).await?;
        let mut events = Vec::new();
        let id = record.id_bytes()?;
        let op = super::group_commit::CommitOp::Add(candidates);
        self.commit_op(&id, op, &mut events).await?;
        Ok(events)
    }

    /// For each name: a contact we may add, and a KeyPackage the relay served for it under
    /// the contact's identity key (the engine checks its credential and signatures).
    async fn fetch_candidates(
        &mut self,
        members: &[String],
    ) -> Result<Vec<(MemberId, Vec<u8>)>, ClientError> {
        for m in members {
            self.addable_contact(m)?;
        }
        let mut candidates = Vec::new();
        for m in members {
            let contact = self.addable_contact(m)?;
            let identity: [u8; 32] = *contact.key()?.as_bytes();
            let reply = self
                .request(&Request::FetchKeyPackage { name: m.clone() })
                .await;
            let key_package = match reply {
                Ok(Reply::KeyPackage {
                    identity: claimed,
                    key_package,
                }) => {
                    if claimed != identity {
                        return Err(ClientError::KeyChanged(m.clone()));
                    }
                    key_package
                }
                Ok(_) => return Err(ClientError::Network(NetError::UnexpectedReply)),
                Err(ClientError::Relay(e)) if e.code == ErrorCode::UnknownUser => {
                    return Err(ClientError::Invalid(format!(
                        "{m} has no KeyPackage on the relay (their hush may be older than groups)"
                    )))
                }
                Err(e) => return Err(e),
            };
            candidates.push((
                MemberId {
                    name: m.clone(),
                    identity,
                },
                key_package,
            ));
        }
        Ok(candidates)
    }

    /// Remove members (by name) from a group.
    pub async fn group_remove(
        &mut self,
        name: &str,
        members: &[String],
    ) -> Result<Vec<Event>, ClientError> {
        let record = self.usable_group(name)?;
        let id = record.id_bytes()?;
        let current = {
            let tx = self.store.tx()?;
            let provider = HushProvider::new(&tx);
            group::members(&provider, &id).map_err(group_err)?
        };
        let mut identities = Vec::new();
        for m in members {
            if *m == self.config.name {
                return Err(ClientError::Invalid(format!(
                    "to leave, run `hush group leave {}`",
                    record.name
                )));
            }
            let found: Vec<[u8; 32]> = current
                .iter()
                .filter(|c| c.name == *m)
                .map(|c| c.identity)
                .collect();
            if found.is_empty() {
                return Err(ClientError::Invalid(format!(
                    "{m} is not a member of #{}",
                    record.name
                )));
            }
            identities.extend(found);
        }
        let mut events = Vec::new();
        self.commit_op(
            &id,
            super::group_commit::CommitOp::Remove(identities),
            &mut events,
        )
        .await?;
        Ok(events)
    }

    /// Leave a group: a self-remove proposal to the group (a remaining member commits it),
    /// then GroupLeave; the group's MLS state is then deleted (its history stays).
    pub async fn group_leave(&mut self, name: &str) -> Result<(), ClientError> {
        let mut record = self.group_record(name)?;
        if record.gone.is_some() && record.leaving.is_none() {
            return Ok(());
        }
        let id = record.id_bytes()?;
        if record.leaving.is_none() {
            let mut events = Vec::new();
            // Our own pending commit first: a proposal is made in the group's current epoch.
            self.resolve_pending(&id, &mut events).await?;
            let tx = self.store.tx()?;
            let provider = HushProvider::new(&tx);
            let signer = IdentitySigner::new(&self.identity);
            let proposal = group::leave(&provider, &signer, &id).map_err(group_err)?;
            record.leaving = Some(proposal);
            record.gone = Some("left".into());
            Self::put_group(&tx, &record)?;
            tx.commit()?;
        }
        let group_id = relay_group_id(&id)?;
        if let Some(proposal) = record.leaving.clone() {
            match self
                .request(&Request::GroupSend {
                    group_id: group_id.clone(),
                    envelope: proposal,
                })
                .await
            {
                Ok(_) => {}
                // Already off the relay's list (removed meanwhile, or a retry): nothing to ask.
                Err(ClientError::Relay(e))
                    if matches!(e.code, ErrorCode::NotGroupMember | ErrorCode::UnknownGroup) => {}
                Err(e) => return Err(e),
            }
        }
        match self.request(&Request::GroupLeave { group_id }).await {
            Ok(_) => {}
            Err(ClientError::Relay(e))
                if matches!(e.code, ErrorCode::NotGroupMember | ErrorCode::UnknownGroup) => {}
            Err(e) => return Err(e),
        }
        let tx = self.store.tx()?;
        let provider = HushProvider::new(&tx);
        // Gone already if a commit removed us meanwhile.
        let _ = group::delete_group(&provider, &id);
        record.leaving = None;
        Self::put_group(&tx, &record)?;
        tx.delete(super::group_commit::NS_GROUP_PENDING, &record.id)?;
        tx.commit()?;
        Ok(())
    }

    /// A group we are still a member of.
    pub(super) fn usable_group(&mut self, name: &str) -> Result<GroupRecord, ClientError> {
        let record = self.group_record(name)?;
        if let Some(why) = &record.gone {
            return Err(ClientError::Invalid(format!(
                "you are no longer a member of #{} ({why})",
                record.name
            )));
        }
        Ok(record)
    }

    /// Every group, in creation order.
    pub fn groups(&mut self) -> Result<Vec<GroupInfo>, ClientError> {
        let names: Vec<String> = self
            .store
            .tx()?
            .get(NS_GROUP_LIST, KEY_SELF)?
            .unwrap_or_default();
        let mut out = Vec::new();
        for name in names {
            out.push(self.group_info(&name)?);
        }
        Ok(out)
    }

    /// One group with its members, epoch and epoch authenticator.
    pub fn group_info(&mut self, name: &str) -> Result<GroupInfo, ClientError> {
        let record = self.group_record(name)?;
        let mut info = GroupInfo {
            name: record.name.clone(),
            id: record.id.clone(),
            gone: record.gone.clone(),
            unread: record.unread,
            epoch: None,
            epoch_authenticator: None,
            members: Vec::new(),
        };
        if record.gone.is_some() {
            return Ok(info);
        }
        let id = record.id_bytes()?;
        let me = self.member_id();
        let tx = self.store.tx()?;
        let provider = HushProvider::new(&tx);
        info.epoch = Some(group::epoch(&provider, &id).map_err(group_err)?);
        info.epoch_authenticator = Some(hex::encode(
            group::epoch_authenticator(&provider, &id).map_err(group_err)?,
        ));
        let members = group::members(&provider, &id).map_err(group_err)?;
        for m in members {
            let state = member_state(&me, &tx, &m)?;
            info.members.push(GroupMember {
                name: m.name,
                identity_key: hex::encode(m.identity),
                state,
            });
        }
        Ok(info)
    }

    /// History of a group (by local name), oldest first; clears nothing.
    pub fn group_history(&mut self, name: &str) -> Result<Vec<HistoryEntry>, ClientError> {
        let record = self.group_record(name)?;
        let tx = self.store.tx()?;
        Ok(tx
            .messages::<HistoryEntry>(&history_key(&record.id))?
            .into_iter()
            .map(|r| r.value)
            .collect())
    }

    /// Clear a group's unread count.
    pub(super) fn group_mark_read(&mut self, name: &str) -> Result<(), ClientError> {
        let mut record = self.group_record(name)?;
        if record.unread > 0 {
            record.unread = 0;
            let tx = self.store.tx()?;
            Self::put_group(&tx, &record)?;
            tx.commit()?;
        }
        Ok(())
    }
}

/// A free local name for a group called `wanted`: itself, else `wanted-2`, `wanted-3`, …
pub(super) fn free_group_name_in(
    tx: &crate::store::Tx<'_>,
    wanted: &str,
) -> Result<String, ClientError> {
    let base = clean_name(wanted);
    if tx.get::<GroupRecord>(NS_GROUP, &base)?.is_none() {
        return Ok(base);
    }
    for n in 2..10_000u32 {
        let suffix = format!("-{n}");
        let stem: String = base.chars().take(32 - suffix.len()).collect();
        let candidate = format!("{stem}{suffix}");
        if tx.get::<GroupRecord>(NS_GROUP, &candidate)?.is_none() {
            return Ok(candidate);
        }
    }
    Err(ClientError::Invalid(
        "too many groups with that name".into(),
    ))
}

/// How `member` stands against our contacts (`me`: ourselves).
pub(super) fn member_state(
    me: &MemberId,
    tx: &crate::store::Tx<'_>,
    member: &MemberId,
) -> Result<MemberState, ClientError> {
    if member.name == me.name && member.identity == me.identity {
        return Ok(MemberState::You);
    }
    let Some(contact) = tx.get::<Contact>(NS_CONTACT, &member.name)? else {
        return Ok(MemberState::NotAContact);
    };
    Ok(
        if contact.identity_key != hex::encode(member.identity) || contact.changed_key.is_some() {
            MemberState::KeyChanged
        } else if contact.verified {
            MemberState::Verified
        } else {
            MemberState::Known
        },
    )
}

/// System lines for members whose key we do not trust under their name.
pub(super) fn member_warnings(
    me: &MemberId,
    tx: &crate::store::Tx<'_>,
    group: &str,
    members: &[MemberId],
    events: &mut Vec<Event>,
) -> Result<(), ClientError> {
    for m in members {
        let change = match member_state(me, tx, m)? {
            MemberState::KeyChanged => GroupChange::MemberKeyChanged {
                member: m.name.clone(),
            },
            MemberState::NotAContact => GroupChange::NotAContact {
                member: m.name.clone(),
                fingerprint: fingerprint_of(&m.identity),
            },
            _ => continue,
        };
        events.push(Event::Group {
            group: group.to_owned(),
            change,
        });
    }
    Ok(())
}

/// The fingerprint shown for an identity key we have no contact for.
pub(super) fn fingerprint_of(identity: &[u8; 32]) -> String {
    IdentityPublicKey::from_bytes(identity)
        .map(|k| k.fingerprint())
        .unwrap_or_else(|_| hex::encode(identity))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::store::{KdfParams, Store};

    fn record(name: &str, id: &str) -> GroupRecord {
        GroupRecord {
            name: name.into(),
            id: id.into(),
            gone: None,
            unread: 0,
            leaving: None,
            relay_epoch: 0,
        }
    }

    #[test]
    fn a_joined_group_gets_a_free_valid_local_name() {
        let dir = tempfile::tempdir().unwrap();
        let params = KdfParams {
            m_cost: 256,
            t_cost: 1,
            p_cost: 1,
        };
        let mut store = Store::create(dir.path(), b"pw", params).unwrap();
        let tx = store.tx().unwrap();
        assert_eq!(free_group_name_in(&tx, "Team").unwrap(), "team");
        Client::put_group(&tx, &record("team", "01")).unwrap();
        assert_eq!(free_group_name_in(&tx, "team").unwrap(), "team-2");
        Client::put_group(&tx, &record("team-2", "02")).unwrap();
        assert_eq!(free_group_name_in(&tx, "team").unwrap(), "team-3");
        // A name no one could type (or a terminal escape) becomes `group`.
        assert_eq!(free_group_name_in(&tx, "\u{1b}[2J").unwrap(), "group");
        let long = "a".repeat(32);
        Client::put_group(&tx, &record(&long, "03")).unwrap();
        let second = free_group_name_in(&tx, &long).unwrap();
        assert_eq!(second.len(), 32);
        assert!(second.ends_with("-2"));
        let by_id = Client::group_by_id(&tx, &[2]).unwrap().unwrap();
        assert_eq!(by_id.name, "team-2");
    }
}
