//! Messaging: contacts and trust, sessions, the outbox, receiving and receipts.
//!
//! The rule everywhere is *commit before you act*: an encrypted message and the advanced
//! session are committed (with an outbox row) before the bytes leave; a received message is
//! decrypted on a copy of the session, and the new session, the message and any receipt are
//! committed in one transaction before the relay is told to delete it. A crash at any instant
//! loses nothing and reuses no key.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hush_net::{Connection, NetError};
use hush_proto::relay::{register_message, Delivery, ErrorCode, Reply, Request};
use hush_proto::{
    ContentType, DecryptError, Envelope, IdentityKeyPair, IdentityPickle, IdentityPublicKey,
    LocalPrekeys, MessageContent, PrekeyBundle, PrekeysPickle, Profile, SafetyNumber, Session,
    SessionError, SessionPickle,
};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};

use crate::store::{KdfParams, Passphrase, Store, StoreError};

mod contacts;
mod emit;
mod group_commit;
mod group_receive;
mod group_send;
mod groups;
mod init;
mod keypackages;
mod outbox;
mod prekeys;
mod receive;
mod relays;
mod retry;
mod upgrade;

pub use emit::{EmitError, UNEMITTED_KEPT};
pub use group_commit::COMMIT_RETRIES;
pub use groups::{GroupChange, GroupInfo, GroupMember, MemberState};
pub use keypackages::{KEY_PACKAGE_BATCH, KEY_PACKAGE_LAST_RESORT_MAX_AGE, KEY_PACKAGE_LOW_WATER};
pub use outbox::{Flushed, Sent};
pub use prekeys::{PQ_PREKEY_BATCH, PQ_PREKEY_LOW_WATER};
use receive::dedupe_key;
pub use relays::{parse_relay_list, MAX_RELAY_ADDRESSES};
pub use retry::{
    MESSAGE_GIVE_UP, RECEIPTS_HELD_MAX, RECEIPTS_QUEUED_MAX, RECEIPT_GIVE_UP, RETRY_FIRST,
    RETRY_MAX,
};
pub use upgrade::UPGRADE_CHECK_INTERVAL;

/// Timeout for connecting and authenticating to the relay.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Timeout for one request's reply.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
/// One-time prekeys published at init and per refill.
pub const PREKEY_BATCH: usize = 100;
/// Refill when the relay reports fewer than this many one-time prekeys left.
pub const PREKEY_LOW_WATER: u32 = 25;
/// Rotate the signed prekey after this many seconds (7 days).
pub const SIGNED_PREKEY_MAX_AGE: u64 = 7 * 24 * 3600;
/// Ping an idle relay connection this often (the relay closes idle ones after 300 s).
pub const KEEPALIVE_INTERVAL: Duration = Duration::from_secs(60);
/// Inactive sessions kept per contact (so late messages of a replaced session still decrypt).
pub const SESSIONS_KEPT: usize = 4;

/// What went wrong, in words a user can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// Profile store problem (wrong passphrase, locked, corrupt, …).
    #[error("{0}")]
    Store(#[from] StoreError),
    /// The relay could not be reached or the connection failed.
    #[error("relay unreachable: {0}")]
    Network(NetError),
    /// The relay's key differs from the pinned one.
    #[error("the relay's key has changed since it was pinned; refusing to connect (possible interception)")]
    RelayKeyChanged,
    /// The relay refused a request.
    #[error("relay refused: {0}")]
    Relay(hush_proto::relay::RelayError),
    /// No such user on the relay.
    #[error("no user named {0} on the relay")]
    UnknownUser(String),
    /// The contact's identity key changed; sending is blocked until the user accepts it.
    #[error("{0}'s identity key has changed. Messages to them are blocked until you compare safety numbers (`hush verify {0}`) and accept the new key with `hush trust {0}`")]
    KeyChanged(String),
    /// The contact does not exist.
    #[error("no contact named {0}")]
    NoSuchContact(String),
    /// The relay served a bundle weaker than the contact is known to support (a `hush-v1`
    /// bundle, without a PQ prekey, for a contact that ever used `hush-v2`, or for a new
    /// contact). Like a key change, this is refused loudly and nothing is sent: a relay that
    /// strips the PQ prekey would otherwise take the session back to what a future quantum
    /// computer can decrypt.
    #[error("DOWNGRADE REFUSED: the relay served {name} a {offered} bundle (without a post-quantum prekey), but {required} is required for {name}{why}; no session was started and nothing was sent (a relay stripping the post-quantum prekey, or {name} runs a hush older than hush-v2)")]
    Downgrade {
        /// Contact.
        name: String,
        /// What the contact is known to support.
        required: Profile,
        /// What the bundle offered.
        offered: Profile,
        /// Why that is required (said to the user).
        why: &'static str,
    },
    /// Session setup failed (e.g. a bundle with a bad signature: a relay substitution).
    #[error("cannot start a session with {name}: {source}")]
    Session {
        /// Contact.
        name: String,
        /// Why.
        source: SessionError,
    },
    /// Encrypting failed.
    #[error("encryption failed: {0}")]
    Encrypt(#[from] hush_proto::EncryptError),
    /// Invalid input from the user.
    #[error("{0}")]
    Invalid(String),
    /// The group engine refused or failed (a KeyPackage that does not match the contact,
    /// an unknown group, …).
    #[error("group: {0}")]
    Group(String),
    /// `init` was pointed at a directory holding other files; nothing was touched.
    #[error("{0} is not empty and is not a hush profile; refusing to create a profile there (choose a new or empty directory with --profile)")]
    NotAProfile(PathBuf),
    /// The relay may have bound the name to this profile's identity but did not confirm it.
    /// The identity is kept so that a retry can finish the registration.
    #[error("registering {name} is not confirmed by the relay ({source}); the identity is kept: run `hush init` again with the same --profile, --name and --relay to finish (any other command that reaches the relay finishes it too)")]
    RegistrationPending {
        /// The name being registered.
        name: String,
        /// Why it is unconfirmed.
        source: Box<ClientError>,
    },
}

impl From<NetError> for ClientError {
    fn from(e: NetError) -> Self {
        match e {
            NetError::KeyMismatch => ClientError::RelayKeyChanged,
            NetError::Relay(r) => ClientError::Relay(r),
            other => ClientError::Network(other),
        }
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Where the profile says the relay is.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProfileConfig {
    /// Our registered name.
    pub name: String,
    /// The relay address tried first, `host:port`: the one that answered last (see
    /// [`ProfileConfig::relay_list`]). The only address in profiles made before failover.
    pub relay: String,
    /// Every address of the relay's deployment, in the user's order. Absent (empty) in
    /// profiles made before failover, which then have only `relay`; kept beside `relay` so
    /// that an older build still opens the profile and uses the address that answered last.
    #[serde(default)]
    pub relays: Vec<String>,
    /// The pinned relay key (hex).
    pub relay_key: String,
}

/// A contact and what we know about their key.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Contact {
    /// Their registered name.
    pub name: String,
    /// The identity key we trust for them (hex).
    pub identity_key: String,
    /// Whether the user compared safety numbers and confirmed.
    pub verified: bool,
    /// A different identity key seen for this name and not yet accepted (hex).
    pub changed_key: Option<String>,
    /// Messages received and not yet viewed.
    #[serde(default)]
    pub unread: u32,
    /// The weakest session-setup profile accepted with this contact, for bundles we fetch
    /// and first messages we receive. Contacts made by this build start at `hush-v2`; a
    /// contact stored by a build older than `hush-v2` has no such field and reads as
    /// `hush-v1` (legacy) until a `hush-v2` bundle or session is seen from them, after which
    /// it is `hush-v2` for good: nothing weaker is ever accepted again.
    #[serde(default = "legacy_profile", with = "profile_name")]
    pub required: Profile,
}

/// What a contact stored before `hush-v2` (without [`Contact::required`]) requires.
fn legacy_profile() -> Profile {
    Profile::V1
}

/// A [`Profile`] stored by its name (`"hush-v1"`, `"hush-v2"`).
mod profile_name {
    use hush_proto::Profile;
    use serde::{Deserialize, Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(p: &Profile, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(p.name())
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Profile, D::Error> {
        let name = String::deserialize(d)?;
        [Profile::V1, Profile::V2]
            .into_iter()
            .find(|p| p.name() == name)
            .ok_or_else(|| serde::de::Error::custom(format!("unknown profile {name:?}")))
    }
}

impl Contact {
    fn key(&self) -> Result<IdentityPublicKey, ClientError> {
        parse_identity(&self.identity_key)
    }
}

fn parse_identity(hex_key: &str) -> Result<IdentityPublicKey, ClientError> {
    let bytes: [u8; 32] = hex::decode(hex_key)
        .ok()
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ClientError::Store(StoreError::Corrupt("stored identity key".into())))?;
    IdentityPublicKey::from_bytes(&bytes)
        .map_err(|_| ClientError::Store(StoreError::Corrupt("stored identity key".into())))
}

/// Where a message is.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Encrypted and committed, not yet accepted by the relay.
    Queued,
    /// Durably stored by the relay.
    OnRelay,
    /// The recipient's device confirmed receipt (end-to-end encrypted receipt).
    Delivered,
    /// A message we received.
    Received,
    /// It will never be delivered (the recipient is gone, or the relay refused it for longer
    /// than [`MESSAGE_GIVE_UP`]); [`HistoryEntry::failure`] says why. Not retried.
    Failed,
}

/// One line of history.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct HistoryEntry {
    /// Message id (hex, 16 bytes), chosen by the sender.
    pub id: String,
    /// The contact.
    pub contact: String,
    /// Whether we sent it.
    pub outgoing: bool,
    /// The text.
    pub text: String,
    /// Sender's clock (ms since the Unix epoch).
    pub sent_at: u64,
    /// When we received it (ms), for incoming messages.
    pub received_at: Option<u64>,
    /// Delivery state.
    pub state: DeliveryState,
    /// Whether the contact was verified when this message was sent or received.
    pub verified: bool,
    /// Whether it arrived under an identity key that is not the trusted one.
    pub key_changed: bool,
    /// For an outgoing message the relay refused: why. While `Queued` this is the last
    /// refusal (it is retried with backoff); with `Failed` it is the final reason.
    #[serde(default)]
    pub failure: Option<String>,
    /// The group (local name, without `#`) for a group message; then `contact` is the
    /// sender (incoming) or `#NAME` (outgoing).
    #[serde(default)]
    pub group: Option<String>,
}

/// Something that happened while receiving.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// A new message (shown once, however often the relay delivers it).
    Message(HistoryEntry),
    /// The peer confirmed receipt of these message ids (hex).
    Delivered {
        /// Contact.
        contact: String,
        /// Message ids.
        ids: Vec<String>,
    },
    /// A contact's identity key changed.
    KeyChanged {
        /// Contact.
        contact: String,
    },
    /// One of our messages will never be delivered (see [`DeliveryState::Failed`]).
    Failed {
        /// Contact.
        contact: String,
        /// Message id (hex).
        id: String,
        /// Why.
        reason: String,
    },
    /// Something changed in a group (a member joined, left, was removed, or has a key we
    /// do not trust): a system line.
    Group {
        /// The group's local name (without `#`).
        group: String,
        /// What changed.
        change: GroupChange,
    },
    /// An envelope was rejected (forged, corrupted, replayed, or undecryptable).
    Rejected {
        /// Contact, if known.
        contact: Option<String>,
        /// Why.
        reason: String,
    },
}

#[derive(Clone, Debug, Serialize, Deserialize)]
struct OutboxItem {
    contact: String,
    recipient: String,
    envelope: Vec<u8>,
    /// The history row this envelope carries (none for receipts).
    message_id: Option<String>,
    /// For a group message: the group id (hex); sent with `GroupSend`, and `recipient` is
    /// then `group:` and the id (its queue).
    #[serde(default)]
    group: Option<String>,
}

/// All sessions with one contact: the active one first.
#[derive(Serialize, Deserialize, Default)]
struct SessionSet {
    sessions: Vec<SessionPickle>,
}

impl SessionSet {
    fn load(&self) -> Result<Vec<Session>, ClientError> {
        self.sessions
            .iter()
            .map(|p| {
                Session::from_pickle(p)
                    .map_err(|e| ClientError::Store(StoreError::Corrupt(format!("session: {e}"))))
            })
            .collect()
    }

    fn from_sessions(sessions: &[Session]) -> Self {
        Self {
            sessions: sessions
                .iter()
                .take(SESSIONS_KEPT + 1)
                .map(Session::pickle)
                .collect(),
        }
    }
}

const NS_CONFIG: &str = "config";
const NS_IDENTITY: &str = "identity";
const NS_PREKEYS: &str = "prekeys";
const NS_CONTACT: &str = "contact";
const NS_CONTACT_BY_KEY: &str = "contact-by-key";
const NS_SESSIONS: &str = "sessions";
const KEY_SELF: &str = "self";
/// Present (under [`NS_CONFIG`]) from `init` until the relay confirms the registration.
const KEY_REGISTRATION_PENDING: &str = "registration-pending";

/// An open profile.
pub struct Client {
    store: Store,
    identity: IdentityKeyPair,
    prekeys: LocalPrekeys,
    config: ProfileConfig,
    conn: Option<Connection>,
    /// Whether the current connection has subscribed to deliveries.
    subscribed: bool,
    /// When the relay last sent us something (for keep-alive pings).
    last_traffic: std::time::Instant,
    /// The relay has not yet confirmed our name; the next connection registers first.
    registration_pending: bool,
    /// When the outbox is next worth a flush (the earliest parked recipient comes due, or
    /// a flush stopped early), so an idle long-running client retries it (`pump`).
    outbox_due_ms: Option<u64>,
    /// The last pump processed a delivery and returned its events before flushing the
    /// receipts it queued: the next pump flushes first.
    flush_next: bool,
}

/// The platform default profile directory (`$XDG_DATA_HOME/hush` or `~/.local/share/hush`).
pub fn default_profile_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("hush");
    }
    match std::env::var_os("HOME") {
        Some(home) => PathBuf::from(home).join(".local/share/hush"),
        None => PathBuf::from(".hush"),
    }
}

impl Client {
    /// Open an existing profile.
    pub fn open(dir: &Path, passphrase: &[u8]) -> Result<Self, ClientError> {
        let mut store = Store::open(dir, passphrase)?;
        let tx = store.tx()?;
        let missing =
            |what: &str| ClientError::Store(StoreError::Corrupt(format!("missing {what}")));
        let identity_pickle: IdentityPickle = tx
            .get(NS_IDENTITY, KEY_SELF)?
            .ok_or_else(|| missing("identity"))?;
        let prekeys_pickle: PrekeysPickle = tx
            .get(NS_PREKEYS, KEY_SELF)?
            .ok_or_else(|| missing("prekeys"))?;
        let config: ProfileConfig = tx
            .get(NS_CONFIG, KEY_SELF)?
            .ok_or_else(|| missing("config"))?;
        let registration_pending = tx
            .get::<bool>(NS_CONFIG, KEY_REGISTRATION_PENDING)?
            .is_some();
        drop(tx);
        let corrupt =
            |e: hush_proto::PickleError| ClientError::Store(StoreError::Corrupt(e.to_string()));
        let identity = IdentityKeyPair::from_pickle(&identity_pickle).map_err(corrupt)?;
        let prekeys = LocalPrekeys::from_pickle(&identity, &prekeys_pickle).map_err(corrupt)?;
        let mut client = Self {
            identity,
            prekeys,
            config,
            store,
            conn: None,
            subscribed: false,
            last_traffic: std::time::Instant::now(),
            registration_pending,
            // Whatever the profile holds queued is tried by the first pump.
            outbox_due_ms: Some(0),
            flush_next: false,
        };
        // A profile written before hush-v2 holds no PQ prekey: give it its last-resort one
        // now (committed before any connection publishes it).
        client.ensure_pq_last_resort()?;
        Ok(client)
    }

    /// Our name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The relay address tried first: the one that answered last (all of them:
    /// [`Client::relays`]).
    pub fn relay(&self) -> &str {
        &self.config.relay
    }

    /// Our identity key.
    pub fn identity_key(&self) -> IdentityPublicKey {
        self.identity.public_key()
    }

    /// Whether a relay connection is open.
    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }

    /// The pinned relay key (given to `init` or trusted on first use there), which every
    /// connection must present.
    pub fn relay_key(&self) -> Result<[u8; 32], ClientError> {
        hex::decode(&self.config.relay_key)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| ClientError::Store(StoreError::Corrupt("relay key".into())))
    }

    async fn connection(&mut self) -> Result<&mut Connection, ClientError> {
        if self.conn.is_none() {
            let conn = self.connect_relay().await?;
            // The relay stores prekeys only for an identity with a name (`init` publishes
            // them itself right after Register).
            let registered = conn.registered_name.is_some();
            self.conn = Some(conn);
            // A new connection is not subscribed, whoever opened it (`pump` or a request).
            self.subscribed = false;
            // Its requests need the same timeout as any other, and a connection that failed
            // here is dropped so that the next call reconnects. An unconfirmed registration
            // is finished first: nothing else is published for a name not yet ours. The relay
            // stores prekeys only for an identity with a name (one freed by the operator has
            // none), so prekeys are maintained only when the name is ours.
            let maintained = tokio::time::timeout(REQUEST_TIMEOUT, async {
                let registering = self.registration_pending;
                self.confirm_registration().await?;
                if registered || registering {
                    self.maintain_prekeys().await?;
                    self.maintain_key_packages().await?;
                }
                Ok(())
            })
            .await
            .unwrap_or(Err(ClientError::Network(NetError::Timeout)));
            if let Err(e) = maintained {
                self.conn = None;
                return Err(e);
            }
        }
        self.conn
            .as_mut()
            .ok_or(ClientError::Network(NetError::Closed))
    }

    /// One request; a failed connection is dropped so the next call reconnects.
    async fn request(&mut self, request: &Request) -> Result<Reply, ClientError> {
        let conn = self.connection().await?;
        let result = tokio::time::timeout(REQUEST_TIMEOUT, conn.request(request))
            .await
            .map_err(|_| NetError::Timeout)
            .and_then(|r| r);
        match result {
            Ok(reply) => Ok(reply),
            Err(NetError::Relay(e)) => Err(ClientError::Relay(e)),
            Err(e) => {
                self.conn = None;
                Err(e.into())
            }
        }
    }
}
