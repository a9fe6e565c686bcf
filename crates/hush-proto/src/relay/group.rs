//! The group part of the relay protocol: MLS KeyPackages on the relay, and the relay as MLS
//! delivery service (RFC 9750). The relay never parses MLS: KeyPackages, commits, Welcomes and
//! group messages are opaque bytes to it. It orders commits per group by compare-and-set on the
//! epoch and fans group mail out to the members it was told about; what protects the group is
//! MLS itself, checked by every member (docs/PROTOCOL.md §13).

use crate::codec::Reader;
use crate::envelope::MAX_ENVELOPE_LEN;
use crate::DecodeError;

/// Longest group id the relay accepts (hush uses 16 random bytes; MLS allows more).
pub const MAX_GROUP_ID_LEN: usize = 32;
/// Longest KeyPackage the relay stores (hush's are about 300 bytes).
pub const MAX_KEY_PACKAGE_LEN: usize = 2048;
/// Most one-time KeyPackages in one publish request.
pub const MAX_KEY_PACKAGES_PER_PUBLISH: usize = 25;
/// Most members added or removed by one commit, as told to the relay for fan-out.
pub const MAX_MEMBERS_PER_COMMIT: usize = 200;
/// Most commits in one [`GroupCommits`] reply (the client asks again for more).
pub const MAX_COMMITS_PER_SYNC: usize = 64;
/// Largest request plaintext: one Noise transport message less its 16-byte tag.
pub const MAX_REQUEST_LEN: usize = 65_535 - 16;
/// Largest commit + Welcome in one [`GroupCommit`] (so the request fits one Noise message).
pub const MAX_COMMIT_PAYLOAD_LEN: usize = MAX_REQUEST_LEN
    - (1 + 8 + 1 + 1 + MAX_GROUP_ID_LEN + 8 + 2 + 2 + 4)
    - 2 * 32 * MAX_MEMBERS_PER_COMMIT;

const _: () = assert!(
    1 + 8
        + 1
        + 1
        + 2
        + MAX_KEY_PACKAGE_LEN
        + 2
        + MAX_KEY_PACKAGES_PER_PUBLISH * (2 + MAX_KEY_PACKAGE_LEN)
        <= MAX_REQUEST_LEN,
    "a KeyPackage publish must fit one Noise message"
);

/// An opaque group id: 1 to [`MAX_GROUP_ID_LEN`] bytes. The MLS group id, so the relay and
/// every member name the group the same way, but the relay learns nothing from it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GroupId(Vec<u8>);

impl GroupId {
    /// A group id, if its length is allowed.
    pub fn new(bytes: Vec<u8>) -> Result<Self, DecodeError> {
        if bytes.is_empty() || bytes.len() > MAX_GROUP_ID_LEN {
            return Err(DecodeError::TooLong {
                what: "group id (1 to 32 bytes)",
                len: bytes.len(),
                max: MAX_GROUP_ID_LEN,
            });
        }
        Ok(Self(bytes))
    }

    /// The id's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Lower-case hex, for logs and lookup keys (never secret).
    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }

    pub(crate) fn put(&self, out: &mut Vec<u8>) {
        out.push(self.0.len() as u8);
        out.extend_from_slice(&self.0);
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let len = usize::from(r.u8()?);
        Self::new(r.take(len)?.to_vec())
    }
}

/// A commit handed to the relay: applied only if the group is still at `epoch` (or, for a new
/// group, `epoch` is 0 and the id is unused). The relay then stores the commit in the mailbox
/// of every member it knew before the commit (removed ones too, so they learn it) except the
/// committer, the Welcome (if any) in the mailbox of every added member, and updates its
/// member list by `added` and `removed` — all in one transaction.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupCommit {
    /// The group.
    pub group_id: GroupId,
    /// The epoch the commit was made in; the group moves to `epoch + 1`.
    pub epoch: u64,
    /// Identity keys the commit adds (for fan-out and the Welcome).
    pub added: Vec<[u8; 32]>,
    /// Identity keys the commit removes (they stop receiving after this commit).
    pub removed: Vec<[u8; 32]>,
    /// The commit, as a group envelope ([`crate::group::GroupEnvelope::Commit`] bytes).
    pub commit: Vec<u8>,
    /// The Welcome for the added members, as a group envelope, if any were added.
    pub welcome: Option<Vec<u8>>,
}

/// One commit from the relay's per-group log, as returned by a sync.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LoggedCommit {
    /// The epoch it was made in (the group moved to `epoch + 1`).
    pub epoch: u64,
    /// The committer's identity key, as authenticated by the relay (a label: the MLS
    /// signature inside is what counts).
    pub sender: [u8; 32],
    /// The commit envelope.
    pub commit: Vec<u8>,
}

/// The relay's answer to a sync: commits after the asked epoch, oldest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupCommits {
    /// The group's epoch on the relay now.
    pub current_epoch: u64,
    /// Commits made in epochs `after_epoch ..`, at most [`MAX_COMMITS_PER_SYNC`]; ask again
    /// from the last one's epoch + 1 for more. Older ones may have expired from the log.
    pub commits: Vec<LoggedCommit>,
}

fn put_bytes_u16(out: &mut Vec<u8>, bytes: &[u8]) {
    let len = bytes.len().min(usize::from(u16::MAX));
    out.extend_from_slice(&(len as u16).to_be_bytes());
    out.extend_from_slice(bytes.get(..len).unwrap_or_default());
}

fn read_key_package(r: &mut Reader<'_>) -> Result<Vec<u8>, DecodeError> {
    let len = usize::from(r.u16()?);
    if len == 0 || len > MAX_KEY_PACKAGE_LEN {
        return Err(DecodeError::TooLong {
            what: "KeyPackage (1 to 2048 bytes)",
            len,
            max: MAX_KEY_PACKAGE_LEN,
        });
    }
    Ok(r.take(len)?.to_vec())
}

fn put_keys(out: &mut Vec<u8>, keys: &[[u8; 32]]) {
    let count = keys.len().min(MAX_MEMBERS_PER_COMMIT);
    out.extend_from_slice(&(count as u16).to_be_bytes());
    for key in keys.iter().take(count) {
        out.extend_from_slice(key);
    }
}

fn read_keys(r: &mut Reader<'_>, what: &'static str) -> Result<Vec<[u8; 32]>, DecodeError> {
    let count = usize::from(r.u16()?);
    if count > MAX_MEMBERS_PER_COMMIT {
        return Err(DecodeError::TooLong {
            what,
            len: count,
            max: MAX_MEMBERS_PER_COMMIT,
        });
    }
    (0..count).map(|_| r.array()).collect()
}

fn check_envelope_len(len: usize, what: &'static str) -> Result<(), DecodeError> {
    if len > MAX_ENVELOPE_LEN {
        return Err(DecodeError::TooLong {
            what,
            len,
            max: MAX_ENVELOPE_LEN,
        });
    }
    Ok(())
}

/// `flag u8 ‖ [len u16 ‖ last_resort] ‖ count u16 ‖ (len u16 ‖ key_package)*`
pub(crate) fn put_key_packages(
    out: &mut Vec<u8>,
    last_resort: Option<&[u8]>,
    one_time: &[Vec<u8>],
) {
    match last_resort {
        Some(kp) => {
            out.push(1);
            put_bytes_u16(out, kp);
        }
        None => out.push(0),
    }
    let count = one_time.len().min(MAX_KEY_PACKAGES_PER_PUBLISH);
    out.extend_from_slice(&(count as u16).to_be_bytes());
    for kp in one_time.iter().take(count) {
        put_bytes_u16(out, kp);
    }
}

/// A KeyPackage publish: the last-resort KeyPackage, if any, and the one-time ones.
type PublishedKeyPackages = (Option<Vec<u8>>, Vec<Vec<u8>>);

/// Inverse of [`put_key_packages`].
pub(crate) fn read_key_packages(r: &mut Reader<'_>) -> Result<PublishedKeyPackages, DecodeError> {
    let last_resort = match r.u8()? {
        0 => None,
        1 => Some(read_key_package(r)?),
        other => {
            return Err(DecodeError::InvalidField {
                what: "KeyPackage publish last-resort flag",
                value: u64::from(other),
            })
        }
    };
    let count = usize::from(r.u16()?);
    if count > MAX_KEY_PACKAGES_PER_PUBLISH {
        return Err(DecodeError::TooLong {
            what: "one-time KeyPackage batch",
            len: count,
            max: MAX_KEY_PACKAGES_PER_PUBLISH,
        });
    }
    let one_time = (0..count)
        .map(|_| read_key_package(r))
        .collect::<Result<_, _>>()?;
    Ok((last_resort, one_time))
}

/// `identity(32) ‖ len u16 ‖ key_package`
pub(crate) fn put_fetched_key_package(out: &mut Vec<u8>, identity: &[u8; 32], kp: &[u8]) {
    out.extend_from_slice(identity);
    put_bytes_u16(out, kp);
}

/// Inverse of [`put_fetched_key_package`].
pub(crate) fn read_fetched_key_package(
    r: &mut Reader<'_>,
) -> Result<([u8; 32], Vec<u8>), DecodeError> {
    Ok((r.array()?, read_key_package(r)?))
}

impl GroupCommit {
    /// `group_id ‖ epoch u64 ‖ added ‖ removed ‖ commit_len u32 ‖ commit ‖ welcome (rest;
    /// empty = none)`, where `added` and `removed` are `count u16 ‖ identity(32)*`.
    pub(crate) fn put(&self, out: &mut Vec<u8>) {
        self.group_id.put(out);
        out.extend_from_slice(&self.epoch.to_be_bytes());
        put_keys(out, &self.added);
        put_keys(out, &self.removed);
        out.extend_from_slice(&(self.commit.len() as u32).to_be_bytes());
        out.extend_from_slice(&self.commit);
        if let Some(welcome) = &self.welcome {
            out.extend_from_slice(welcome);
        }
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let group_id = GroupId::read(r)?;
        let epoch = r.u64()?;
        let added = read_keys(r, "members added by one commit")?;
        let removed = read_keys(r, "members removed by one commit")?;
        let commit_len = r.u32()? as usize;
        check_envelope_len(commit_len, "commit envelope")?;
        if commit_len == 0 {
            return Err(DecodeError::Truncated {
                what: "commit envelope",
            });
        }
        let commit = r.take(commit_len)?.to_vec();
        let welcome = r.rest();
        check_envelope_len(welcome.len(), "Welcome envelope")?;
        Ok(Self {
            group_id,
            epoch,
            added,
            removed,
            commit,
            welcome: (!welcome.is_empty()).then(|| welcome.to_vec()),
        })
    }
}

impl GroupCommits {
    /// `current_epoch u64 ‖ count u16 ‖ (epoch u64 ‖ sender(32) ‖ len u32 ‖ commit)*`
    pub(crate) fn put(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.current_epoch.to_be_bytes());
        let count = self.commits.len().min(MAX_COMMITS_PER_SYNC);
        out.extend_from_slice(&(count as u16).to_be_bytes());
        for c in self.commits.iter().take(count) {
            out.extend_from_slice(&c.epoch.to_be_bytes());
            out.extend_from_slice(&c.sender);
            out.extend_from_slice(&(c.commit.len() as u32).to_be_bytes());
            out.extend_from_slice(&c.commit);
        }
    }

    pub(crate) fn read(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let current_epoch = r.u64()?;
        let count = usize::from(r.u16()?);
        if count > MAX_COMMITS_PER_SYNC {
            return Err(DecodeError::TooLong {
                what: "commits in one sync reply",
                len: count,
                max: MAX_COMMITS_PER_SYNC,
            });
        }
        let mut commits = Vec::with_capacity(count);
        for _ in 0..count {
            let epoch = r.u64()?;
            let sender = r.array()?;
            let len = r.u32()? as usize;
            check_envelope_len(len, "logged commit")?;
            commits.push(LoggedCommit {
                epoch,
                sender,
                commit: r.take(len)?.to_vec(),
            });
        }
        Ok(Self {
            current_epoch,
            commits,
        })
    }
}

/// A group envelope in a request, checked against the envelope limit.
pub(crate) fn read_group_envelope(r: &mut Reader<'_>) -> Result<Vec<u8>, DecodeError> {
    let envelope = r.rest();
    check_envelope_len(envelope.len(), "group envelope")?;
    Ok(envelope.to_vec())
}
