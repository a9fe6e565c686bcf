//! Requests of the group part of the protocol: MLS KeyPackages, and the relay as MLS delivery
//! service. The relay never parses MLS; it checks only the group-envelope framing (`1 ‖ kind`),
//! who is asking, and its own limits, and leaves everything else to the members.

use std::sync::Arc;
use std::time::Instant;

use hush_proto::envelope::ENVELOPE_VERSION;
use hush_proto::group::{KIND_GROUP_COMMIT, KIND_GROUP_MESSAGE, KIND_GROUP_WELCOME};
use hush_proto::relay::group::{MAX_COMMITS_PER_SYNC, MAX_KEY_PACKAGES_PER_PUBLISH};
use hush_proto::relay::{is_valid_name, ErrorCode, GroupCommit, GroupId, RelayError, Reply};

use super::{err, now_ms, Session};
use crate::store::{GroupQuota, SyncResult, WriteOp, WriteResult};

/// Bytes of commits in one sync reply: one Noise message (65 535 bytes with its 16-byte tag)
/// less the reply header (version, kind, request id, status, type, current epoch, count).
const SYNC_REPLY_BYTES: usize = 65_535 - 16 - (1 + 1 + 8 + 1 + 1 + 8 + 2);

/// Mailboxes one send token pays for: a group message or commit costs one token plus one per
/// this many recipients, so fan-out cannot multiply a sender's rate limit (a 1 000-member
/// group: 51 tokens, about 4 messages a second at the default rate).
const RECIPIENTS_PER_TOKEN: usize = 20;

/// Whether `envelope` is framed as a group envelope of `kind` with some MLS bytes inside.
fn is_group_envelope(envelope: &[u8], kind: u8) -> bool {
    matches!(envelope, [ENVELOPE_VERSION, k, _, ..] if *k == kind)
}

fn storage_full() -> RelayError {
    err(
        ErrorCode::StorageFull,
        "the relay's storage is full; retry later",
    )
}

fn sender_quota() -> RelayError {
    // The same code as a full relay, as for 1:1 sends.
    err(
        ErrorCode::StorageFull,
        "your share of the relay's storage is used up; retry when your messages have been fetched",
    )
}

fn unexpected() -> RelayError {
    err(ErrorCode::Internal, "unexpected storage result")
}

impl Session<'_> {
    /// Group mail needs a registered name, as 1:1 mail needs a registered recipient: every
    /// stored byte then belongs to someone who holds a name.
    async fn require_name(&self) -> Result<(), RelayError> {
        if self.is_registered(self.id_bytes).await? {
            Ok(())
        } else {
            Err(err(
                ErrorCode::NotRegistered,
                "register a name before sending group mail",
            ))
        }
    }

    fn charge_fan_out(&mut self, rows: usize) {
        // Whole tokens only: a message to a small group costs what a 1:1 message costs.
        let extra = rows / RECIPIENTS_PER_TOKEN;
        if extra > 0 {
            self.send_bucket.charge(extra as f64, Instant::now());
        }
    }

    fn group_quota(&self) -> GroupQuota {
        let config = &self.shared.config;
        GroupQuota {
            max_messages: config.mailbox_max_messages,
            max_bytes: config.mailbox_max_bytes,
            max_total_bytes: config.storage_max_bytes,
            max_sender_bytes: config.sender_max_bytes,
        }
    }

    /// Store KeyPackages for the connected identity (a registered name is needed, as for
    /// prekeys; the same publish rate limit).
    pub(super) async fn publish_key_packages(
        &mut self,
        last_resort: Option<Vec<u8>>,
        one_time: Vec<Vec<u8>>,
    ) -> Result<Reply, RelayError> {
        if !self.publish_bucket.try_take(Instant::now()) {
            return Err(err(
                ErrorCode::RateLimited,
                "publishing KeyPackages too often",
            ));
        }
        if one_time.len() > MAX_KEY_PACKAGES_PER_PUBLISH {
            return Err(err(
                ErrorCode::TooManyPrekeys,
                "too many KeyPackages in one request",
            ));
        }
        let max_stock = self.shared.config.max_one_time_key_packages;
        match self
            .write(WriteOp::PublishKeyPackages {
                identity: self.id_bytes,
                last_resort,
                one_time,
                max_stock,
            })
            .await?
        {
            WriteResult::KeyPackagesStored { one_time_remaining } => {
                Ok(Reply::KeyPackagesStored { one_time_remaining })
            }
            WriteResult::TooManyPrekeys => Err(err(
                ErrorCode::TooManyPrekeys,
                format!("at most {max_stock} one-time KeyPackages may be stored"),
            )),
            WriteResult::NotRegistered => Err(err(
                ErrorCode::NotRegistered,
                "register a name before publishing KeyPackages",
            )),
            _ => Err(unexpected()),
        }
    }

    /// Pop a KeyPackage of `name`, under the same per-connection and per-user fetch limits as
    /// bundles: once that user's budget is spent, only its last-resort KeyPackage is served.
    pub(super) async fn fetch_key_package(&mut self, name: String) -> Result<Reply, RelayError> {
        let now = Instant::now();
        if !self.fetch_bucket.try_take(now) {
            return Err(err(ErrorCode::RateLimited, "too many fetches"));
        }
        if !is_valid_name(&name) {
            return Err(err(ErrorCode::InvalidName, "invalid name"));
        }
        let limited = self.fetch_budget_spent(&name, now);
        match self
            .write(WriteOp::FetchKeyPackage {
                name: name.clone(),
                pop_one_time: !limited,
            })
            .await?
        {
            WriteResult::KeyPackage {
                identity,
                key_package,
            } => {
                self.note_fetched(name, now);
                Ok(Reply::KeyPackage {
                    identity,
                    key_package,
                })
            }
            WriteResult::KeyPackageBudgetSpent => Err(err(
                ErrorCode::RateLimited,
                "that user's KeyPackages are fetched too often; retry later",
            )),
            WriteResult::UnknownUser => Err(err(
                ErrorCode::UnknownUser,
                "no such user, or no KeyPackage published",
            )),
            _ => Err(unexpected()),
        }
    }

    /// Apply a commit by compare-and-set on the group's epoch, fanning it and its Welcome out
    /// in the same transaction. Costs one send token, however many members get it.
    pub(super) async fn group_commit(&mut self, commit: GroupCommit) -> Result<Reply, RelayError> {
        if !self.send_bucket.try_take(Instant::now()) {
            return Err(err(ErrorCode::RateLimited, "sending too fast"));
        }
        self.require_name().await?;
        if !is_group_envelope(&commit.commit, KIND_GROUP_COMMIT) {
            return Err(err(ErrorCode::Malformed, "not a group commit envelope"));
        }
        if commit
            .welcome
            .as_ref()
            .is_some_and(|w| !is_group_envelope(w, KIND_GROUP_WELCOME))
        {
            return Err(err(ErrorCode::Malformed, "not a group Welcome envelope"));
        }
        let config = &self.shared.config;
        let (max_members, max_log) = (config.max_group_members, config.group_log_max_commits);
        match self
            .write(WriteOp::GroupCommit {
                commit,
                sender: self.id_bytes,
                received_at_ms: now_ms(),
                quota: self.group_quota(),
                max_members,
                max_log,
            })
            .await?
        {
            WriteResult::CommitAccepted {
                epoch,
                commit,
                welcome,
            } => {
                let rows = commit.delivered.len() + welcome.delivered.len();
                self.charge_fan_out(rows);
                Ok(Reply::CommitAccepted { epoch })
            }
            WriteResult::StaleEpoch { current } => Err(err(
                ErrorCode::StaleEpoch,
                format!("the group is at epoch {current}; sync and retry"),
            )),
            WriteResult::NotGroupMember => {
                Err(err(ErrorCode::NotGroupMember, "not a member of that group"))
            }
            WriteResult::UnknownGroup => Err(err(
                ErrorCode::UnknownGroup,
                "no such group (a new group starts at epoch 0)",
            )),
            WriteResult::GroupFull => Err(err(
                ErrorCode::GroupFull,
                format!("a group may have at most {max_members} members"),
            )),
            WriteResult::UnknownUser => Err(err(
                ErrorCode::UnknownUser,
                "an added member has no registered name",
            )),
            WriteResult::StorageFull => Err(storage_full()),
            WriteResult::SenderQuota => Err(sender_quota()),
            _ => Err(unexpected()),
        }
    }

    /// Store a group message once for every other member. Costs one send token.
    pub(super) async fn group_send(
        &mut self,
        group_id: GroupId,
        envelope: Vec<u8>,
    ) -> Result<Reply, RelayError> {
        if !self.send_bucket.try_take(Instant::now()) {
            return Err(err(ErrorCode::RateLimited, "sending too fast"));
        }
        self.require_name().await?;
        if !is_group_envelope(&envelope, KIND_GROUP_MESSAGE) {
            return Err(err(ErrorCode::Malformed, "not a group message envelope"));
        }
        match self
            .write(WriteOp::GroupSend {
                group_id,
                sender: self.id_bytes,
                envelope,
                received_at_ms: now_ms(),
                quota: self.group_quota(),
            })
            .await?
        {
            WriteResult::GroupStored { id, fan_out } => {
                self.charge_fan_out(fan_out.delivered.len());
                Ok(Reply::Stored { id })
            }
            WriteResult::NotGroupMember => {
                Err(err(ErrorCode::NotGroupMember, "not a member of that group"))
            }
            WriteResult::UnknownGroup => Err(err(ErrorCode::UnknownGroup, "no such group")),
            WriteResult::StorageFull => Err(storage_full()),
            WriteResult::SenderQuota => Err(sender_quota()),
            _ => Err(unexpected()),
        }
    }

    /// Logged commits for a member, read from a reader connection (no write transaction).
    pub(super) async fn group_sync(
        &mut self,
        group_id: GroupId,
        after_epoch: u64,
    ) -> Result<Reply, RelayError> {
        // A read, but not free: rate-limited like a fetch.
        if !self.fetch_bucket.try_take(Instant::now()) {
            return Err(err(ErrorCode::RateLimited, "syncing too often"));
        }
        let store = Arc::clone(&self.shared.store);
        let member = self.id_bytes;
        let result = tokio::task::spawn_blocking(move || {
            store.group_sync(
                &group_id,
                &member,
                after_epoch,
                MAX_COMMITS_PER_SYNC,
                SYNC_REPLY_BYTES,
            )
        })
        .await
        .map_err(|_| err(ErrorCode::Internal, "sync failed"))?
        .map_err(|e| {
            tracing::error!(error = %e, "group sync failed");
            err(ErrorCode::Internal, "storage unavailable; retry later")
        })?;
        match result {
            SyncResult::Commits(commits) => Ok(Reply::GroupCommits(commits)),
            SyncResult::NotGroupMember => {
                Err(err(ErrorCode::NotGroupMember, "not a member of that group"))
            }
            SyncResult::UnknownGroup => Err(err(ErrorCode::UnknownGroup, "no such group")),
        }
    }

    /// Take the caller off the group's member list: no more mail for it from this group.
    pub(super) async fn group_leave(&mut self, group_id: GroupId) -> Result<Reply, RelayError> {
        match self
            .write(WriteOp::GroupLeave {
                group_id,
                identity: self.id_bytes,
            })
            .await?
        {
            WriteResult::LeftGroup => Ok(Reply::LeftGroup),
            WriteResult::UnknownGroup => Err(err(ErrorCode::UnknownGroup, "no such group")),
            _ => Err(unexpected()),
        }
    }
}
