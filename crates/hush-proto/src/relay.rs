//! The client ↔ relay request protocol (`hush-relay/1`): requests, replies, errors and pushed
//! deliveries, encoded and decoded here so that the relay and the client share one definition.
//! These are the plaintexts of Noise transport messages; see docs/PROTOCOL.md, section 11.

use crate::codec::Reader;
use crate::envelope::MAX_ENVELOPE_LEN;
use crate::keys::{
    put_pq_prekey, read_pq_prekey, IdentityPublicKey, OneTimePrekey, PrekeyBundle, SignedPrekey,
    X25519PublicKey, PQ_PREKEY_WIRE_LEN,
};
use crate::pq::PqPrekey;
use crate::DecodeError;

mod error_code;
pub mod group;

pub use error_code::ErrorCode;
pub use group::{GroupCommit, GroupCommits, GroupId, LoggedCommit};

/// Version byte of every relay-protocol message.
pub const RELAY_PROTOCOL_VERSION: u8 = 1;
/// Noise protocol name of the client ↔ relay channel.
pub const NOISE_PATTERN: &str = "Noise_XK_25519_ChaChaPoly_SHA256";
/// Noise prologue, binding the handshake to this protocol.
pub const NOISE_PROLOGUE: &[u8] = b"hush-relay-v1";
/// Domain separation for the signature over the Noise handshake hash in [`Request::Hello`].
pub const AUTH_CONTEXT: &[u8] = b"hush-relay-auth-v1";
/// Domain separation for the signature over a username in [`Request::Register`].
pub const REGISTER_CONTEXT: &[u8] = b"hush-register-v1";
/// Longest username, in bytes.
pub const MAX_NAME_LEN: usize = 32;
/// Most one-time prekeys in one publish request.
pub const MAX_PREKEYS_PER_PUBLISH: usize = 200;
/// Most one-time PQ prekeys in one publish request: each is 1 252 bytes on the wire, and a
/// request must fit one Noise message.
pub const MAX_PQ_PREKEYS_PER_PUBLISH: usize = 40;
const _: () = assert!(
    1 + 8 + 1 + 1 + PQ_PREKEY_WIRE_LEN + 2 + MAX_PQ_PREKEYS_PER_PUBLISH * PQ_PREKEY_WIRE_LEN + 16
        <= 65_535,
    "a PQ prekey publish must fit one Noise message"
);
/// Most message ids in one ack.
pub const MAX_ACK_IDS: usize = 1000;
/// Longest error text in an error reply.
pub const MAX_ERROR_TEXT: usize = 512;
/// Largest plaintext of one relay-protocol message: a send request with a maximal envelope.
/// Fits one Noise transport message (65 535 bytes including the 16-byte tag).
pub const MAX_MESSAGE_LEN: usize = 1 + 8 + 1 + 32 + MAX_ENVELOPE_LEN;
const _: () = assert!(
    MAX_MESSAGE_LEN + 16 <= 65_535,
    "a send must fit one Noise message"
);

/// Whether `name` is a valid username: 1–32 bytes of `a-z 0-9 _ - .`, starting with a letter
/// or digit. Lowercase only, so names cannot be confused by case.
pub fn is_valid_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= MAX_NAME_LEN
        && bytes
            .first()
            .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-.".contains(b))
}

/// The message a client signs to authenticate a connection.
pub fn auth_message(handshake_hash: &[u8]) -> Vec<u8> {
    [AUTH_CONTEXT, handshake_hash].concat()
}

/// The message a client signs to register a name.
pub fn register_message(name: &str) -> Vec<u8> {
    [REGISTER_CONTEXT, name.as_bytes()].concat()
}

/// A client request; each carries a request id echoed in its reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// First request on a connection: who I am, proven by a signature over the handshake hash.
    Hello {
        /// The client's Ed25519 identity key; its X25519 form must be the Noise static key.
        identity_key: IdentityPublicKey,
        /// Signature over [`auth_message`] of the handshake hash.
        signature: [u8; 64],
    },
    /// Claim a username for the connected identity.
    Register {
        /// The username.
        name: String,
        /// Signature over [`register_message`].
        signature: [u8; 64],
    },
    /// Publish a signed prekey and one-time prekeys.
    PublishPrekeys {
        /// The signed prekey.
        signed_prekey: SignedPrekey,
        /// One-time prekeys (at most [`MAX_PREKEYS_PER_PUBLISH`]).
        one_time: Vec<OneTimePrekey>,
    },
    /// Publish signed ML-KEM-768 prekeys (`hush-v2`): a new last-resort one (replacing the
    /// current one) and/or one-time ones. Needs a registered name, like `PublishPrekeys`.
    PublishPqPrekeys {
        /// The new last-resort PQ prekey, if it changed (or to learn the stock: the same one).
        last_resort: Option<PqPrekey>,
        /// One-time PQ prekeys (at most [`MAX_PQ_PREKEYS_PER_PUBLISH`]).
        one_time: Vec<PqPrekey>,
    },
    /// Fetch (and pop a one-time prekey of) someone's bundle.
    FetchBundle {
        /// Their username.
        name: String,
    },
    /// Store an envelope for a recipient.
    Send {
        /// The recipient's identity key.
        recipient: [u8; 32],
        /// The opaque envelope.
        envelope: Vec<u8>,
    },
    /// Start receiving: everything pending, then live pushes.
    Subscribe,
    /// Delete delivered messages from my mailbox.
    Ack {
        /// Relay message ids.
        ids: Vec<u64>,
    },
    /// Liveness check.
    Ping,
    /// Which name is registered for this identity (to label a first message from a stranger).
    WhoIs {
        /// The identity key.
        identity: [u8; 32],
    },
    /// Publish MLS KeyPackages: a new last-resort one (replacing the current one) and/or
    /// one-time ones. Opaque to the relay; needs a registered name.
    PublishKeyPackages {
        /// The new last-resort KeyPackage, if it changed.
        last_resort: Option<Vec<u8>>,
        /// One-time KeyPackages (at most [`group::MAX_KEY_PACKAGES_PER_PUBLISH`]).
        one_time: Vec<Vec<u8>>,
    },
    /// Fetch (and pop, if it is one-time) a KeyPackage of someone, to add them to a group.
    FetchKeyPackage {
        /// Their username.
        name: String,
    },
    /// Apply a commit to a group, if the group is still at the commit's epoch.
    GroupCommit(GroupCommit),
    /// Store a group message (application message or proposal) once and deliver it to every
    /// other member the relay knows.
    GroupSend {
        /// The group.
        group_id: GroupId,
        /// The group envelope.
        envelope: Vec<u8>,
    },
    /// Commits of a group made in epochs `after_epoch ..` (to catch up after a dropped or
    /// lost commit, or after `StaleEpoch`). Only members may ask.
    GroupSync {
        /// The group.
        group_id: GroupId,
        /// First epoch wanted.
        after_epoch: u64,
    },
    /// Stop receiving a group's mail (after sending a self-remove proposal to the group).
    GroupLeave {
        /// The group.
        group_id: GroupId,
    },
}

const REQ_HELLO: u8 = 1;
const REQ_REGISTER: u8 = 2;
const REQ_PUBLISH: u8 = 3;
const REQ_FETCH: u8 = 4;
const REQ_SEND: u8 = 5;
const REQ_SUBSCRIBE: u8 = 6;
const REQ_ACK: u8 = 7;
const REQ_PING: u8 = 8;
const REQ_WHOIS: u8 = 9;
const REQ_PUBLISH_PQ: u8 = 10;
const REQ_PUBLISH_KEY_PACKAGES: u8 = 11;
const REQ_FETCH_KEY_PACKAGE: u8 = 12;
const REQ_GROUP_COMMIT: u8 = 13;
const REQ_GROUP_SEND: u8 = 14;
const REQ_GROUP_SYNC: u8 = 15;
const REQ_GROUP_LEAVE: u8 = 16;

/// A successful reply.
#[derive(Clone, Debug, PartialEq, Eq)]
// A bundle is a few hundred bytes inline; replies live for one request, so boxing it would buy
// nothing but an allocation.
#[allow(clippy::large_enum_variant)]
pub enum Reply {
    /// Hello accepted; the name this identity has registered, if any.
    Welcome {
        /// Registered name.
        name: Option<String>,
    },
    /// Name registered.
    Registered,
    /// Prekeys stored; one-time prekeys now in stock (refill when low).
    PrekeysStored {
        /// Stock after this publish.
        one_time_remaining: u32,
    },
    /// PQ prekeys stored; one-time PQ prekeys now in stock (refill when low).
    PqPrekeysStored {
        /// One-time PQ stock after this publish.
        one_time_remaining: u32,
    },
    /// The bundle (its one-time prekeys, classical and PQ, are now deleted on the relay).
    Bundle(PrekeyBundle),
    /// Envelope durably stored.
    Stored {
        /// Relay message id.
        id: u64,
    },
    /// Subscribed; pending messages follow as deliveries.
    Subscribed,
    /// Acked messages deleted.
    Acked {
        /// How many were deleted.
        removed: u32,
    },
    /// Reply to ping.
    Pong,
    /// The name registered for the identity asked about.
    Name {
        /// The name.
        name: String,
    },
    /// KeyPackages stored; one-time KeyPackages now in stock (refill when low).
    KeyPackagesStored {
        /// One-time stock after this publish.
        one_time_remaining: u32,
    },
    /// A KeyPackage (a one-time one is now deleted on the relay). The identity is the relay's
    /// claim: the client checks the KeyPackage's signature key against the contact's key.
    KeyPackage {
        /// The owner's identity key, per the relay.
        identity: [u8; 32],
        /// The KeyPackage (MLSMessage bytes), unparsed.
        key_package: Vec<u8>,
    },
    /// The commit was applied: the group is now at `epoch`.
    CommitAccepted {
        /// The group's new epoch.
        epoch: u64,
    },
    /// Commits from the group's log.
    GroupCommits(GroupCommits),
    /// No longer a member on the relay: no more mail for this group.
    LeftGroup,
}

const REP_WELCOME: u8 = 1;
const REP_REGISTERED: u8 = 2;
const REP_PREKEYS_STORED: u8 = 3;
const REP_BUNDLE: u8 = 4;
const REP_STORED: u8 = 5;
const REP_SUBSCRIBED: u8 = 6;
const REP_ACKED: u8 = 7;
const REP_PONG: u8 = 8;
const REP_NAME: u8 = 9;
const REP_PQ_PREKEYS_STORED: u8 = 10;
const REP_KEY_PACKAGES_STORED: u8 = 11;
const REP_KEY_PACKAGE: u8 = 12;
const REP_COMMIT_ACCEPTED: u8 = 13;
const REP_GROUP_COMMITS: u8 = 14;
const REP_LEFT_GROUP: u8 = 15;

/// Anything the relay sends.
#[derive(Clone, Debug, PartialEq, Eq)]
#[allow(clippy::large_enum_variant)]
pub enum ServerMessage {
    /// The reply to request `request_id`.
    Response {
        /// Echo of the request id.
        request_id: u64,
        /// Success or a typed error.
        result: Result<Reply, RelayError>,
    },
    /// A stored envelope for the connected identity.
    Deliver(Delivery),
}

/// A typed error reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayError {
    /// What went wrong.
    pub code: ErrorCode,
    /// Human-readable detail (never contains payloads or keys).
    pub message: String,
}

impl std::fmt::Display for RelayError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code.label())
    }
}

impl std::error::Error for RelayError {}

/// One pushed envelope.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// Relay message id, to ack.
    pub id: u64,
    /// The authenticated sender's identity key.
    pub sender: [u8; 32],
    /// When the relay stored it (ms since the Unix epoch).
    pub received_at_ms: u64,
    /// The envelope.
    pub envelope: Vec<u8>,
}

const KIND_RESPONSE: u8 = 1;
const KIND_DELIVER: u8 = 2;
const STATUS_OK: u8 = 0;
const STATUS_ERROR: u8 = 1;

fn check_version(r: &mut Reader<'_>, what: &'static str) -> Result<(), DecodeError> {
    let version = r.u8()?;
    if version != RELAY_PROTOCOL_VERSION {
        return Err(DecodeError::UnsupportedVersion {
            what,
            got: version,
            supported: RELAY_PROTOCOL_VERSION,
        });
    }
    Ok(())
}

fn put_name(out: &mut Vec<u8>, name: &str) {
    let bytes = name.as_bytes();
    let len = bytes.len().min(MAX_NAME_LEN);
    out.push(len as u8);
    out.extend_from_slice(bytes.get(..len).unwrap_or_default());
}

fn read_name(r: &mut Reader<'_>) -> Result<String, DecodeError> {
    let len = usize::from(r.u8()?);
    if len > MAX_NAME_LEN {
        return Err(DecodeError::TooLong {
            what: "username",
            len,
            max: MAX_NAME_LEN,
        });
    }
    String::from_utf8(r.take(len)?.to_vec()).map_err(|_| DecodeError::InvalidField {
        what: "username (not UTF-8)",
        value: 0,
    })
}

/// A name in a relay reply: it must be one a user could have registered, since the client
/// shows it and files contacts under it.
fn registered_name(name: String, what: &'static str) -> Result<String, DecodeError> {
    if is_valid_name(&name) {
        Ok(name)
    } else {
        Err(DecodeError::InvalidName { what })
    }
}

fn put_signed_prekey(out: &mut Vec<u8>, spk: &SignedPrekey) {
    out.extend_from_slice(&spk.id.to_be_bytes());
    out.extend_from_slice(&spk.created_at.to_be_bytes());
    out.extend_from_slice(spk.public_key.as_bytes());
    out.extend_from_slice(&spk.signature);
}

fn read_signed_prekey(r: &mut Reader<'_>) -> Result<SignedPrekey, DecodeError> {
    Ok(SignedPrekey {
        id: r.u32()?,
        created_at: r.u64()?,
        public_key: X25519PublicKey::from_wire(r.array()?)?,
        signature: r.array()?,
    })
}

impl Request {
    /// Encode as `version ‖ request_id u64 ‖ type u8 ‖ body`.
    pub fn encode(&self, request_id: u64) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.push(RELAY_PROTOCOL_VERSION);
        out.extend_from_slice(&request_id.to_be_bytes());
        match self {
            Request::Hello {
                identity_key,
                signature,
            } => {
                out.push(REQ_HELLO);
                out.extend_from_slice(identity_key.as_bytes());
                out.extend_from_slice(signature);
            }
            Request::Register { name, signature } => {
                out.push(REQ_REGISTER);
                put_name(&mut out, name);
                out.extend_from_slice(signature);
            }
            Request::PublishPrekeys {
                signed_prekey,
                one_time,
            } => {
                out.push(REQ_PUBLISH);
                put_signed_prekey(&mut out, signed_prekey);
                let count = one_time.len().min(MAX_PREKEYS_PER_PUBLISH);
                out.extend_from_slice(&(count as u16).to_be_bytes());
                for opk in one_time.iter().take(count) {
                    out.extend_from_slice(&opk.id.to_be_bytes());
                    out.extend_from_slice(opk.public_key.as_bytes());
                }
            }
            Request::PublishPqPrekeys {
                last_resort,
                one_time,
            } => {
                out.push(REQ_PUBLISH_PQ);
                match last_resort {
                    Some(pq) => {
                        out.push(1);
                        put_pq_prekey(&mut out, pq);
                    }
                    None => out.push(0),
                }
                let count = one_time.len().min(MAX_PQ_PREKEYS_PER_PUBLISH);
                out.extend_from_slice(&(count as u16).to_be_bytes());
                for pq in one_time.iter().take(count) {
                    put_pq_prekey(&mut out, pq);
                }
            }
            Request::FetchBundle { name } => {
                out.push(REQ_FETCH);
                put_name(&mut out, name);
            }
            Request::Send {
                recipient,
                envelope,
            } => {
                out.push(REQ_SEND);
                out.extend_from_slice(recipient);
                out.extend_from_slice(envelope);
            }
            Request::Subscribe => out.push(REQ_SUBSCRIBE),
            Request::Ack { ids } => {
                out.push(REQ_ACK);
                let count = ids.len().min(MAX_ACK_IDS);
                out.extend_from_slice(&(count as u16).to_be_bytes());
                for id in ids.iter().take(count) {
                    out.extend_from_slice(&id.to_be_bytes());
                }
            }
            Request::Ping => out.push(REQ_PING),
            Request::WhoIs { identity } => {
                out.push(REQ_WHOIS);
                out.extend_from_slice(identity);
            }
            Request::PublishKeyPackages {
                last_resort,
                one_time,
            } => {
                out.push(REQ_PUBLISH_KEY_PACKAGES);
                group::put_key_packages(&mut out, last_resort.as_deref(), one_time);
            }
            Request::FetchKeyPackage { name } => {
                out.push(REQ_FETCH_KEY_PACKAGE);
                put_name(&mut out, name);
            }
            Request::GroupCommit(commit) => {
                out.push(REQ_GROUP_COMMIT);
                commit.put(&mut out);
            }
            Request::GroupSend { group_id, envelope } => {
                out.push(REQ_GROUP_SEND);
                group_id.put(&mut out);
                out.extend_from_slice(envelope);
            }
            Request::GroupSync {
                group_id,
                after_epoch,
            } => {
                out.push(REQ_GROUP_SYNC);
                group_id.put(&mut out);
                out.extend_from_slice(&after_epoch.to_be_bytes());
            }
            Request::GroupLeave { group_id } => {
                out.push(REQ_GROUP_LEAVE);
                group_id.put(&mut out);
            }
        }
        out
    }

    /// Decode. On error, the request id is returned too when it could be read, so the relay
    /// can answer with a typed error for that request.
    pub fn decode(bytes: &[u8]) -> Result<(u64, Request), (Option<u64>, DecodeError)> {
        let mut r = Reader::new(bytes, "relay request");
        check_version(&mut r, "relay request").map_err(|e| (None, e))?;
        let request_id = r.u64().map_err(|e| (None, e))?;
        Self::decode_body(&mut r)
            .and_then(|req| r.finish().map(|()| req))
            .map(|req| (request_id, req))
            .map_err(|e| (Some(request_id), e))
    }

    fn decode_body(r: &mut Reader<'_>) -> Result<Request, DecodeError> {
        Ok(match r.u8()? {
            REQ_HELLO => Request::Hello {
                identity_key: IdentityPublicKey::from_bytes(&r.array()?)?,
                signature: r.array()?,
            },
            REQ_REGISTER => Request::Register {
                name: read_name(r)?,
                signature: r.array()?,
            },
            REQ_PUBLISH => {
                let signed_prekey = read_signed_prekey(r)?;
                let count = usize::from(r.u16()?);
                if count > MAX_PREKEYS_PER_PUBLISH {
                    return Err(DecodeError::TooLong {
                        what: "one-time prekey batch",
                        len: count,
                        max: MAX_PREKEYS_PER_PUBLISH,
                    });
                }
                let mut one_time = Vec::with_capacity(count);
                for _ in 0..count {
                    one_time.push(OneTimePrekey {
                        id: r.u32()?,
                        public_key: X25519PublicKey::from_wire(r.array()?)?,
                    });
                }
                Request::PublishPrekeys {
                    signed_prekey,
                    one_time,
                }
            }
            REQ_PUBLISH_PQ => {
                let last_resort = match r.u8()? {
                    0 => None,
                    1 => Some(read_pq_prekey(r)?),
                    other => {
                        return Err(DecodeError::InvalidField {
                            what: "PQ publish last-resort flag",
                            value: u64::from(other),
                        })
                    }
                };
                let count = usize::from(r.u16()?);
                if count > MAX_PQ_PREKEYS_PER_PUBLISH {
                    return Err(DecodeError::TooLong {
                        what: "one-time PQ prekey batch",
                        len: count,
                        max: MAX_PQ_PREKEYS_PER_PUBLISH,
                    });
                }
                let mut one_time = Vec::with_capacity(count);
                for _ in 0..count {
                    one_time.push(read_pq_prekey(r)?);
                }
                Request::PublishPqPrekeys {
                    last_resort,
                    one_time,
                }
            }
            REQ_FETCH => Request::FetchBundle {
                name: read_name(r)?,
            },
            REQ_SEND => {
                let recipient = r.array()?;
                let envelope = r.rest();
                if envelope.len() > MAX_ENVELOPE_LEN {
                    return Err(DecodeError::TooLong {
                        what: "envelope",
                        len: envelope.len(),
                        max: MAX_ENVELOPE_LEN,
                    });
                }
                Request::Send {
                    recipient,
                    envelope: envelope.to_vec(),
                }
            }
            REQ_SUBSCRIBE => Request::Subscribe,
            REQ_ACK => {
                let count = usize::from(r.u16()?);
                if count > MAX_ACK_IDS {
                    return Err(DecodeError::TooLong {
                        what: "ack batch",
                        len: count,
                        max: MAX_ACK_IDS,
                    });
                }
                let mut ids = Vec::with_capacity(count);
                for _ in 0..count {
                    ids.push(r.u64()?);
                }
                Request::Ack { ids }
            }
            REQ_PING => Request::Ping,
            REQ_WHOIS => Request::WhoIs {
                identity: r.array()?,
            },
            REQ_PUBLISH_KEY_PACKAGES => {
                let (last_resort, one_time) = group::read_key_packages(r)?;
                Request::PublishKeyPackages {
                    last_resort,
                    one_time,
                }
            }
            REQ_FETCH_KEY_PACKAGE => Request::FetchKeyPackage {
                name: read_name(r)?,
            },
            REQ_GROUP_COMMIT => Request::GroupCommit(GroupCommit::read(r)?),
            REQ_GROUP_SEND => Request::GroupSend {
                group_id: GroupId::read(r)?,
                envelope: group::read_group_envelope(r)?,
            },
            REQ_GROUP_SYNC => Request::GroupSync {
                group_id: GroupId::read(r)?,
                after_epoch: r.u64()?,
            },
            REQ_GROUP_LEAVE => Request::GroupLeave {
                group_id: GroupId::read(r)?,
            },
            other => {
                return Err(DecodeError::InvalidField {
                    what: "relay request type",
                    value: u64::from(other),
                })
            }
        })
    }
}

impl ServerMessage {
    /// Encode: `version ‖ kind ‖ …` (see docs/PROTOCOL.md §11).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        out.push(RELAY_PROTOCOL_VERSION);
        match self {
            ServerMessage::Response { request_id, result } => {
                out.push(KIND_RESPONSE);
                out.extend_from_slice(&request_id.to_be_bytes());
                match result {
                    Ok(reply) => {
                        out.push(STATUS_OK);
                        encode_reply(&mut out, reply);
                    }
                    Err(err) => {
                        out.push(STATUS_ERROR);
                        out.extend_from_slice(&err.code.to_u16().to_be_bytes());
                        let text = truncate_utf8(&err.message, MAX_ERROR_TEXT);
                        out.extend_from_slice(&(text.len() as u16).to_be_bytes());
                        out.extend_from_slice(text.as_bytes());
                    }
                }
            }
            ServerMessage::Deliver(d) => {
                out.push(KIND_DELIVER);
                out.extend_from_slice(&d.id.to_be_bytes());
                out.extend_from_slice(&d.sender);
                out.extend_from_slice(&d.received_at_ms.to_be_bytes());
                out.extend_from_slice(&d.envelope);
            }
        }
        out
    }

    /// Decode a relay message.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes, "relay message");
        check_version(&mut r, "relay message")?;
        let message = match r.u8()? {
            KIND_RESPONSE => {
                let request_id = r.u64()?;
                let result = match r.u8()? {
                    STATUS_OK => Ok(decode_reply(&mut r)?),
                    STATUS_ERROR => {
                        let code = ErrorCode::from_u16(r.u16()?);
                        let len = usize::from(r.u16()?);
                        if len > MAX_ERROR_TEXT {
                            return Err(DecodeError::TooLong {
                                what: "error text",
                                len,
                                max: MAX_ERROR_TEXT,
                            });
                        }
                        let message = String::from_utf8_lossy(r.take(len)?).into_owned();
                        Err(RelayError { code, message })
                    }
                    other => {
                        return Err(DecodeError::InvalidField {
                            what: "response status",
                            value: u64::from(other),
                        })
                    }
                };
                ServerMessage::Response { request_id, result }
            }
            KIND_DELIVER => {
                let id = r.u64()?;
                let sender = r.array()?;
                let received_at_ms = r.u64()?;
                let envelope = r.rest();
                if envelope.len() > MAX_ENVELOPE_LEN {
                    return Err(DecodeError::TooLong {
                        what: "delivered envelope",
                        len: envelope.len(),
                        max: MAX_ENVELOPE_LEN,
                    });
                }
                ServerMessage::Deliver(Delivery {
                    id,
                    sender,
                    received_at_ms,
                    envelope: envelope.to_vec(),
                })
            }
            other => {
                return Err(DecodeError::InvalidField {
                    what: "relay message kind",
                    value: u64::from(other),
                })
            }
        };
        r.finish()?;
        Ok(message)
    }
}

fn encode_reply(out: &mut Vec<u8>, reply: &Reply) {
    match reply {
        Reply::Welcome { name } => {
            out.push(REP_WELCOME);
            put_name(out, name.as_deref().unwrap_or(""));
        }
        Reply::Registered => out.push(REP_REGISTERED),
        Reply::PrekeysStored { one_time_remaining } => {
            out.push(REP_PREKEYS_STORED);
            out.extend_from_slice(&one_time_remaining.to_be_bytes());
        }
        Reply::PqPrekeysStored { one_time_remaining } => {
            out.push(REP_PQ_PREKEYS_STORED);
            out.extend_from_slice(&one_time_remaining.to_be_bytes());
        }
        Reply::Bundle(bundle) => {
            out.push(REP_BUNDLE);
            out.extend_from_slice(&bundle.to_bytes());
        }
        Reply::Stored { id } => {
            out.push(REP_STORED);
            out.extend_from_slice(&id.to_be_bytes());
        }
        Reply::Subscribed => out.push(REP_SUBSCRIBED),
        Reply::Acked { removed } => {
            out.push(REP_ACKED);
            out.extend_from_slice(&removed.to_be_bytes());
        }
        Reply::Pong => out.push(REP_PONG),
        Reply::Name { name } => {
            out.push(REP_NAME);
            put_name(out, name);
        }
        Reply::KeyPackagesStored { one_time_remaining } => {
            out.push(REP_KEY_PACKAGES_STORED);
            out.extend_from_slice(&one_time_remaining.to_be_bytes());
        }
        Reply::KeyPackage {
            identity,
            key_package,
        } => {
            out.push(REP_KEY_PACKAGE);
            group::put_fetched_key_package(out, identity, key_package);
        }
        Reply::CommitAccepted { epoch } => {
            out.push(REP_COMMIT_ACCEPTED);
            out.extend_from_slice(&epoch.to_be_bytes());
        }
        Reply::GroupCommits(commits) => {
            out.push(REP_GROUP_COMMITS);
            commits.put(out);
        }
        Reply::LeftGroup => out.push(REP_LEFT_GROUP),
    }
}

fn decode_reply(r: &mut Reader<'_>) -> Result<Reply, DecodeError> {
    Ok(match r.u8()? {
        REP_WELCOME => {
            let name = read_name(r)?;
            Reply::Welcome {
                // Empty means "not registered".
                name: if name.is_empty() {
                    None
                } else {
                    Some(registered_name(name, "registered name")?)
                },
            }
        }
        REP_REGISTERED => Reply::Registered,
        REP_PREKEYS_STORED => Reply::PrekeysStored {
            one_time_remaining: r.u32()?,
        },
        REP_PQ_PREKEYS_STORED => Reply::PqPrekeysStored {
            one_time_remaining: r.u32()?,
        },
        REP_BUNDLE => Reply::Bundle(PrekeyBundle::from_bytes(r.rest())?),
        REP_STORED => Reply::Stored { id: r.u64()? },
        REP_SUBSCRIBED => Reply::Subscribed,
        REP_ACKED => Reply::Acked { removed: r.u32()? },
        REP_PONG => Reply::Pong,
        REP_NAME => Reply::Name {
            name: registered_name(read_name(r)?, "name of an identity")?,
        },
        REP_KEY_PACKAGES_STORED => Reply::KeyPackagesStored {
            one_time_remaining: r.u32()?,
        },
        REP_KEY_PACKAGE => {
            let (identity, key_package) = group::read_fetched_key_package(r)?;
            Reply::KeyPackage {
                identity,
                key_package,
            }
        }
        REP_COMMIT_ACCEPTED => Reply::CommitAccepted { epoch: r.u64()? },
        REP_GROUP_COMMITS => Reply::GroupCommits(GroupCommits::read(r)?),
        REP_LEFT_GROUP => Reply::LeftGroup,
        other => {
            return Err(DecodeError::InvalidField {
                what: "reply type",
                value: u64::from(other),
            })
        }
    })
}

fn truncate_utf8(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text.get(..end).unwrap_or_default()
}

#[cfg(test)]
mod tests;
