//! Receiving group mail: Welcomes, commits, application messages and proposals.
//!
//! As for 1:1 mail, everything is processed in a profile transaction and committed before the
//! relay is told to delete it; anything refused (forged, replayed, tampered, from a removed
//! member, an invitation from someone who is not a contact under its trusted key) becomes a
//! visible event and is acked, so it never blocks the next item. Who sent what comes from MLS
//! (the credential in the leaf that signed it), never from the relay's label.

use hush_proto::group::GroupEnvelope;

use super::group_commit::{CommitOp, FUTURE_EPOCH};
use super::groups::{
    free_group_name_in, history_key, member_warnings, relay_group_id, GroupChange, GroupRecord,
};
use super::receive::delivery_fingerprint;
use super::*;
use crate::group::{engine as group, GroupError, HushProvider, Incoming};

/// What to do once a group delivery is committed and acked.
pub(super) enum FollowUp {
    None,
    /// A member asked to leave: commit the proposal (exactly one remaining member wins).
    CommitProposals {
        group_id: Vec<u8>,
        leavers: Vec<[u8; 32]>,
    },
    /// We refused an invitation: ask the relay to stop sending us that group's mail.
    Leave {
        group_id: Vec<u8>,
    },
}

fn rejected(reason: String) -> Vec<Event> {
    vec![Event::Rejected {
        contact: None,
        reason,
    }]
}

impl Client {
    /// Process one group delivery (not yet acked). Errors are about the network or the
    /// profile: the delivery then stays unacked and comes again.
    pub(super) async fn accept_group_delivery(
        &mut self,
        delivery: &Delivery,
    ) -> Result<(Vec<Event>, FollowUp), ClientError> {
        let fingerprint = delivery_fingerprint(delivery);
        if self.seen_delivery(&fingerprint)? {
            // Committed before, but the ack was lost: ack it silently.
            return Ok((Vec::new(), FollowUp::None));
        }
        let envelope = match GroupEnvelope::from_bytes(&delivery.envelope) {
            Ok(e) => e,
            Err(e) => {
                return Ok((
                    rejected(format!("malformed group envelope: {e}")),
                    FollowUp::None,
                ))
            }
        };
        if let GroupEnvelope::Welcome(_) = &envelope {
            return self.accept_welcome(&envelope, &fingerprint);
        }
        let group_id = match group::group_id_of(&envelope) {
            Ok(id) => id,
            Err(e) => {
                return Ok((
                    rejected(format!("malformed group message: {e}")),
                    FollowUp::None,
                ))
            }
        };
        let known = {
            let tx = self.store.tx()?;
            Self::group_by_id(&tx, &group_id)?
        };
        let Some(record) = known else {
            return Ok((
                rejected("group mail for a group we are not in".into()),
                FollowUp::None,
            ));
        };
        if record.gone.is_some() {
            // Mail still queued for a group we left or were removed from: nothing to read.
            let tx = self.store.tx()?;
            Self::remember_delivery(&tx, &fingerprint)?;
            tx.commit()?;
            return Ok((Vec::new(), FollowUp::None));
        }
        let mut events = Vec::new();
        for attempt in 0..2 {
            if matches!(envelope, GroupEnvelope::Commit(_)) {
                match self.applied_before(&delivery.envelope)? {
                    Some(true) => {
                        // Applied through a sync: this is its mailbox copy.
                        let tx = self.store.tx()?;
                        Self::note_mailbox_copy(&tx, &delivery.envelope)?;
                        Self::remember_delivery(&tx, &fingerprint)?;
                        tx.commit()?;
                        return Ok((events, FollowUp::None));
                    }
                    Some(false) => {
                        events.extend(rejected(format!(
                            "replayed commit in group #{}: it was applied before",
                            record.name
                        )));
                        return Ok((events, FollowUp::None));
                    }
                    None => {}
                }
            }
            let outcome = match &envelope {
                GroupEnvelope::Commit(_) => self
                    .apply_commit(&group_id, &delivery.envelope, None, Some(&fingerprint))?
                    .map(|e| (e, FollowUp::None)),
                _ => self.apply_message(&group_id, &envelope, &fingerprint)?,
            };
            match outcome {
                Ok((more, follow)) => {
                    events.extend(more);
                    return Ok((events, follow));
                }
                Err(reason) if attempt == 0 && reason.starts_with(FUTURE_EPOCH) => {
                    // Commits we have not seen: fetch them, process them in order, retry.
                    match self.catch_up(&group_id, &mut events).await {
                        Ok(()) => {}
                        Err(ClientError::Relay(e)) => {
                            events.extend(rejected(format!(
                                "group #{}: cannot fetch the missing commits ({e})",
                                record.name
                            )));
                            return Ok((events, FollowUp::None));
                        }
                        Err(e) => return Err(e),
                    }
                }
                Err(reason) => {
                    events.extend(rejected(reason));
                    return Ok((events, FollowUp::None));
                }
            }
        }
        Ok((events, FollowUp::None))
    }

    /// What comes after the ack; its failures are reported as events, never as errors.
    pub(super) async fn group_follow_up(&mut self, follow: FollowUp, events: &mut Vec<Event>) {
        match follow {
            FollowUp::None => {}
            FollowUp::CommitProposals { group_id, leavers } => {
                if let Err(e) = self
                    .commit_op(&group_id, CommitOp::Pending(leavers), events)
                    .await
                {
                    tracing::debug!("committing a leave proposal failed: {e}");
                }
            }
            FollowUp::Leave { group_id } => {
                if let Ok(group_id) = relay_group_id(&group_id) {
                    let _ = self.request(&Request::GroupLeave { group_id }).await;
                }
            }
        }
    }

    /// An application message or proposal, in its own transaction. `Ok(Err(reason))`:
    /// refused, nothing changed.
    #[allow(clippy::type_complexity)]
    fn apply_message(
        &mut self,
        group_id: &[u8],
        envelope: &GroupEnvelope,
        fingerprint: &str,
    ) -> Result<Result<(Vec<Event>, FollowUp), String>, ClientError> {
        let me = self.member_id();
        let tx = self.store.tx()?;
        let Some(mut record) = Self::group_by_id(&tx, group_id)? else {
            return Ok(Err("group mail for a group we are not in".into()));
        };
        let provider = HushProvider::new(&tx);
        let incoming = match group::process(&provider, group_id, envelope) {
            Ok(i) => i,
            Err(GroupError::FutureEpoch { have, got }) => {
                return Ok(Err(format!("{FUTURE_EPOCH} (have {have}, got {got})")))
            }
            Err(e) => {
                return Ok(Err(format!(
                    "refused a message in group #{}: {e}",
                    record.name
                )))
            }
        };
        let mut events = Vec::new();
        let mut follow = FollowUp::None;
        match incoming {
            Incoming::Application {
                sender, plaintext, ..
            } => {
                let content = match MessageContent::from_padded_bytes(&plaintext) {
                    Ok(c) => c,
                    Err(e) => {
                        // Authenticated but unreadable: the ratchet moved on, so commit that.
                        events.extend(rejected(format!(
                            "bad message content from {} in group #{}: {e}",
                            sender.name, record.name
                        )));
                        Self::remember_delivery(&tx, fingerprint)?;
                        tx.commit()?;
                        return Ok(Ok((events, follow)));
                    }
                };
                if content.content_type == ContentType::TEXT {
                    let state = super::groups::member_state(&me, &tx, &sender)?;
                    let key_changed = state == super::groups::MemberState::KeyChanged;
                    let entry = HistoryEntry {
                        id: hex::encode(content.id),
                        contact: sender.name.clone(),
                        outgoing: false,
                        text: String::from_utf8_lossy(&content.body).into_owned(),
                        sent_at: content.sent_at_ms,
                        received_at: Some(now_ms()),
                        state: DeliveryState::Received,
                        verified: state == super::groups::MemberState::Verified,
                        key_changed,
                        failure: None,
                        group: Some(record.name.clone()),
                    };
                    let dedupe = [sender.identity.as_slice(), entry.id.as_bytes()].concat();
                    if tx
                        .add_message(&history_key(&record.id), &dedupe, &entry)?
                        .is_some()
                    {
                        Self::record_unemitted(&tx, &entry, &dedupe)?;
                        record.unread = record.unread.saturating_add(1);
                        if key_changed {
                            events.push(Event::Group {
                                group: record.name.clone(),
                                change: GroupChange::MemberKeyChanged {
                                    member: sender.name.clone(),
                                },
                            });
                        }
                        events.push(Event::Message(entry));
                    }
                }
            }
            Incoming::Proposal { sender, removes } => {
                let leavers: Vec<[u8; 32]> = removes.iter().map(|m| m.identity).collect();
                for m in &removes {
                    if m.identity == sender.identity {
                        events.push(Event::Group {
                            group: record.name.clone(),
                            change: GroupChange::LeaveRequested {
                                member: m.name.clone(),
                            },
                        });
                    }
                }
                if !leavers.is_empty() {
                    follow = FollowUp::CommitProposals {
                        group_id: group_id.to_vec(),
                        leavers,
                    };
                }
            }
            Incoming::Commit { .. } => {
                return Ok(Err(format!(
                    "refused a commit sent as a group message in #{}",
                    record.name
                )))
            }
        }
        Self::put_group(&tx, &record)?;
        Self::remember_delivery(&tx, fingerprint)?;
        tx.commit()?;
        Ok(Ok((events, follow)))
    }

    /// A Welcome: join only if the inviter (the member who signed the commit that added us,
    /// as MLS checked) is a contact under its trusted key; otherwise nothing is kept.
    fn accept_welcome(
        &mut self,
        welcome: &GroupEnvelope,
        fingerprint: &str,
    ) -> Result<(Vec<Event>, FollowUp), ClientError> {
        let me = self.member_id();
        let tx = self.store.tx()?;
        let provider = HushProvider::new(&tx);
        let joined = match group::join(&provider, welcome) {
            Ok(j) => j,
            Err(e) => {
                drop(tx);
                return Ok((
                    rejected(format!("refused a group invitation: {e}")),
                    FollowUp::None,
                ));
            }
        };
        let inviter = &joined.inviter;
        let inviter_state = super::groups::member_state(&me, &tx, inviter)?;
        let refusal = match inviter_state {
            super::groups::MemberState::Verified | super::groups::MemberState::Known => None,
            super::groups::MemberState::KeyChanged => Some(format!(
                "its key is not the one you trust for {}",
                inviter.name
            )),
            super::groups::MemberState::NotAContact => Some(format!(
                "{} is not one of your contacts (add and verify them, then ask again)",
                inviter.name
            )),
            super::groups::MemberState::You => Some("it claims to come from you".into()),
        };
        let existing = Self::group_by_id(&tx, &joined.group_id)?;
        let refusal = refusal.or_else(|| {
            existing
                .as_ref()
                .filter(|r| r.gone.is_none())
                .map(|r| format!("you are already in that group (#{})", r.name))
        });
        if let Some(why) = refusal {
            // Dropping the transaction drops the joined state with it.
            drop(tx);
            let follow = if existing.is_some() {
                FollowUp::None
            } else {
                FollowUp::Leave {
                    group_id: joined.group_id.clone(),
                }
            };
            return Ok((
                vec![Event::Rejected {
                    contact: Some(inviter.name.clone()),
                    reason: format!(
                        "refused an invitation to a group from {}: {why}",
                        inviter.name
                    ),
                }],
                follow,
            ));
        }
        let name = match &existing {
            Some(r) => r.name.clone(),
            None => free_group_name_in(&tx, &joined.name)?,
        };
        let record = GroupRecord {
            name: name.clone(),
            id: hex::encode(&joined.group_id),
            gone: None,
            unread: existing.as_ref().map_or(0, |r| r.unread),
            leaving: None,
            relay_epoch: 0,
        };
        Self::put_group(&tx, &record)?;
        let mut events = vec![Event::Group {
            group: name.clone(),
            change: GroupChange::Joined {
                inviter: inviter.name.clone(),
                members: joined.members.iter().map(|m| m.name.clone()).collect(),
            },
        }];
        member_warnings(&me, &tx, &name, &joined.members, &mut events)?;
        Self::remember_delivery(&tx, fingerprint)?;
        tx.commit()?;
        Ok((events, FollowUp::None))
    }
}
