//! The relay's typed refusals and their wire codes (docs/PROTOCOL.md §11.4).

/// Why the relay refused a request. The numeric codes are part of the wire format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// The request did not parse.
    Malformed,
    /// Unknown relay-protocol version.
    UnsupportedVersion,
    /// Unknown request type.
    UnknownRequest,
    /// A request other than Hello before authentication, or Hello twice.
    NotAuthenticated,
    /// The signature does not verify.
    BadSignature,
    /// The name is invalid.
    InvalidName,
    /// The name belongs to someone else.
    NameTaken,
    /// This identity already registered another name.
    AlreadyRegistered,
    /// No such user, or no prekeys published.
    UnknownUser,
    /// Too many one-time prekeys in stock.
    TooManyPrekeys,
    /// The recipient's mailbox is full.
    MailboxFull,
    /// Rate limit exceeded; retry later.
    RateLimited,
    /// The relay failed internally (storage); retry later.
    Internal,
    /// The relay is shutting down.
    ShuttingDown,
    /// The request needs a registered name first (PublishPrekeys before Register).
    NotRegistered,
    /// The relay's global storage quota is reached; retry later.
    StorageFull,
    /// This identity already has the most connections the relay allows.
    TooManyConnections,
    /// The group has moved past the commit's epoch: another commit won. Sync and retry.
    StaleEpoch,
    /// The connected identity is not a member of that group (on the relay's list).
    NotGroupMember,
    /// No group with that id on the relay.
    UnknownGroup,
    /// The commit would grow the group beyond the relay's member limit.
    GroupFull,
    /// A code this build does not know.
    Other(u16),
}

impl ErrorCode {
    /// Wire value.
    pub fn to_u16(self) -> u16 {
        match self {
            ErrorCode::Malformed => 1,
            ErrorCode::UnsupportedVersion => 2,
            ErrorCode::UnknownRequest => 3,
            ErrorCode::NotAuthenticated => 4,
            ErrorCode::BadSignature => 5,
            ErrorCode::InvalidName => 6,
            ErrorCode::NameTaken => 7,
            ErrorCode::AlreadyRegistered => 8,
            ErrorCode::UnknownUser => 9,
            ErrorCode::TooManyPrekeys => 10,
            ErrorCode::MailboxFull => 11,
            ErrorCode::RateLimited => 12,
            ErrorCode::Internal => 13,
            ErrorCode::ShuttingDown => 14,
            ErrorCode::NotRegistered => 15,
            ErrorCode::StorageFull => 16,
            ErrorCode::TooManyConnections => 17,
            ErrorCode::StaleEpoch => 18,
            ErrorCode::NotGroupMember => 19,
            ErrorCode::UnknownGroup => 20,
            ErrorCode::GroupFull => 21,
            ErrorCode::Other(code) => code,
        }
    }

    /// From the wire value.
    pub fn from_u16(code: u16) -> Self {
        match code {
            1 => ErrorCode::Malformed,
            2 => ErrorCode::UnsupportedVersion,
            3 => ErrorCode::UnknownRequest,
            4 => ErrorCode::NotAuthenticated,
            5 => ErrorCode::BadSignature,
            6 => ErrorCode::InvalidName,
            7 => ErrorCode::NameTaken,
            8 => ErrorCode::AlreadyRegistered,
            9 => ErrorCode::UnknownUser,
            10 => ErrorCode::TooManyPrekeys,
            11 => ErrorCode::MailboxFull,
            12 => ErrorCode::RateLimited,
            13 => ErrorCode::Internal,
            14 => ErrorCode::ShuttingDown,
            15 => ErrorCode::NotRegistered,
            16 => ErrorCode::StorageFull,
            17 => ErrorCode::TooManyConnections,
            18 => ErrorCode::StaleEpoch,
            19 => ErrorCode::NotGroupMember,
            20 => ErrorCode::UnknownGroup,
            21 => ErrorCode::GroupFull,
            other => ErrorCode::Other(other),
        }
    }

    /// A short stable label (used in metrics).
    pub fn label(self) -> &'static str {
        match self {
            ErrorCode::Malformed => "malformed",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::UnknownRequest => "unknown_request",
            ErrorCode::NotAuthenticated => "not_authenticated",
            ErrorCode::BadSignature => "bad_signature",
            ErrorCode::InvalidName => "invalid_name",
            ErrorCode::NameTaken => "name_taken",
            ErrorCode::AlreadyRegistered => "already_registered",
            ErrorCode::UnknownUser => "unknown_user",
            ErrorCode::TooManyPrekeys => "too_many_prekeys",
            ErrorCode::MailboxFull => "mailbox_full",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Internal => "internal",
            ErrorCode::ShuttingDown => "shutting_down",
            ErrorCode::NotRegistered => "not_registered",
            ErrorCode::StorageFull => "storage_full",
            ErrorCode::TooManyConnections => "too_many_connections",
            ErrorCode::StaleEpoch => "stale_epoch",
            ErrorCode::NotGroupMember => "not_group_member",
            ErrorCode::UnknownGroup => "unknown_group",
            ErrorCode::GroupFull => "group_full",
            ErrorCode::Other(_) => "other",
        }
    }
}
