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
    LocalPrekeys, MessageContent, PrekeyBundle, PrekeysPickle, SafetyNumber, Session, SessionError,
    SessionPickle,
};
use rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};

use crate::store::{KdfParams, Store, StoreError};

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
    /// Relay address, `host:port`.
    pub relay: String,
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
    /// Create a profile: identity and prekeys are committed *before* anything is published.
    /// Without `relay_key`, the relay's key is fetched and pinned (trust on first use).
    pub async fn init(
        dir: &Path,
        passphrase: &[u8],
        name: &str,
        relay: &str,
        relay_key: Option<[u8; 32]>,
    ) -> Result<Self, ClientError> {
        if !hush_proto::relay::is_valid_name(name) {
            return Err(ClientError::Invalid(format!(
                "invalid name {name:?}: use 1-32 of a-z 0-9 _ - . starting with a letter or digit"
            )));
        }
        let relay_key = match relay_key {
            Some(k) => k,
            None => {
                let stream =
                    tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(relay))
                        .await
                        .map_err(|_| ClientError::Network(NetError::Timeout))?
                        .map_err(|e| ClientError::Network(e.into()))?;
                hush_net::noise::fetch_relay_key(stream).await?
            }
        };
        let mut store = Store::create(dir, passphrase, KdfParams::default())?;
        let identity = IdentityKeyPair::generate(&mut OsRng);
        let now = now_ms() / 1000;
        let mut prekeys = LocalPrekeys::new(&mut OsRng, &identity, now);
        let one_time = prekeys.generate_one_time(&mut OsRng, PREKEY_BATCH);
        let config = ProfileConfig {
            name: name.to_owned(),
            relay: relay.to_owned(),
            relay_key: hex::encode(relay_key),
        };
        {
            let tx = store.tx()?;
            tx.put(NS_IDENTITY, KEY_SELF, &identity.pickle())?;
            tx.put(NS_PREKEYS, KEY_SELF, &prekeys.pickle())?;
            tx.put(NS_CONFIG, KEY_SELF, &config)?;
            tx.commit()?;
        }
        let mut client = Self {
            store,
            identity,
            prekeys,
            config,
            conn: None,
            subscribed: false,
            last_traffic: std::time::Instant::now(),
        };
        let signature = client.identity.sign(&register_message(name));
        let registered = client
            .request(&Request::Register {
                name: name.to_owned(),
                signature,
            })
            .await;
        if let Err(e) = registered {
            // Nothing was published: remove the half-made profile so the name can be retried.
            let dir = client.store.dir().to_owned();
            drop(client);
            let _ = std::fs::remove_dir_all(&dir);
            return Err(e);
        }
        let signed_prekey = client
            .prekeys
            .current_signed()
            .ok_or_else(|| ClientError::Invalid("no signed prekey".into()))?;
        client
            .request(&Request::PublishPrekeys {
                signed_prekey,
                one_time,
            })
            .await?;
        Ok(client)
    }

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
        drop(tx);
        let corrupt =
            |e: hush_proto::PickleError| ClientError::Store(StoreError::Corrupt(e.to_string()));
        Ok(Self {
            identity: IdentityKeyPair::from_pickle(&identity_pickle).map_err(corrupt)?,
            prekeys: LocalPrekeys::from_pickle(&prekeys_pickle).map_err(corrupt)?,
            config,
            store,
            conn: None,
            subscribed: false,
            last_traffic: std::time::Instant::now(),
        })
    }

    /// Our name.
    pub fn name(&self) -> &str {
        &self.config.name
    }

    /// The relay address.
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

    fn relay_key(&self) -> Result<[u8; 32], ClientError> {
        hex::decode(&self.config.relay_key)
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| ClientError::Store(StoreError::Corrupt("relay key".into())))
    }

    async fn connection(&mut self) -> Result<&mut Connection, ClientError> {
        if self.conn.is_none() {
            let key = self.relay_key()?;
            let conn = hush_net::connect(
                self.config.relay.as_str(),
                &key,
                &self.identity,
                CONNECT_TIMEOUT,
            )
            .await?;
            self.conn = Some(conn);
            // A new connection is not subscribed, whoever opened it (`pump` or a request).
            self.subscribed = false;
            // Its requests need the same timeout as any other, and a connection that failed
            // here is dropped so that the next call reconnects.
            let maintained = tokio::time::timeout(REQUEST_TIMEOUT, self.maintain_prekeys())
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

    /// Rotate the signed prekey when old; refill one-time prekeys when low. New secrets are
    /// committed before they are published.
    async fn maintain_prekeys(&mut self) -> Result<(), ClientError> {
        let now = now_ms() / 1000;
        let rotate = self
            .prekeys
            .signed_is_older_than(now, SIGNED_PREKEY_MAX_AGE);
        if rotate {
            self.prekeys.rotate_signed(&mut OsRng, &self.identity, now);
            self.save_prekeys()?;
        }
        // Publishing nothing new tells us the stock; refill if it is low.
        let signed_prekey = self
            .prekeys
            .current_signed()
            .ok_or_else(|| ClientError::Invalid("no signed prekey".into()))?;
        let conn = self
            .conn
            .as_mut()
            .ok_or(ClientError::Network(NetError::Closed))?;
        let reply = conn
            .request(&Request::PublishPrekeys {
                signed_prekey,
                one_time: Vec::new(),
            })
            .await?;
        if let Reply::PrekeysStored { one_time_remaining } = reply {
            if one_time_remaining < PREKEY_LOW_WATER {
                let one_time = self.prekeys.generate_one_time(&mut OsRng, PREKEY_BATCH);
                self.save_prekeys()?;
                let conn = self
                    .conn
                    .as_mut()
                    .ok_or(ClientError::Network(NetError::Closed))?;
                conn.request(&Request::PublishPrekeys {
                    signed_prekey,
                    one_time,
                })
                .await?;
            }
        }
        Ok(())
    }

    fn save_prekeys(&mut self) -> Result<(), ClientError> {
        let tx = self.store.tx()?;
        tx.put(NS_PREKEYS, KEY_SELF, &self.prekeys.pickle())?;
        tx.commit()?;
        Ok(())
    }

    // ---- contacts ----------------------------------------------------------------------

    /// Every contact, sorted by name.
    pub fn contacts(&mut self) -> Result<Vec<Contact>, ClientError> {
        let tx = self.store.tx()?;
        let names: Vec<String> = tx.get("contact-list", KEY_SELF)?.unwrap_or_default();
        let mut out = Vec::new();
        for name in names {
            if let Some(c) = tx.get::<Contact>(NS_CONTACT, &name)? {
                out.push(c);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    /// One contact.
    pub fn contact(&mut self, name: &str) -> Result<Option<Contact>, ClientError> {
        Ok(self.store.tx()?.get(NS_CONTACT, name)?)
    }

    fn put_contact(tx: &crate::store::Tx<'_>, contact: &Contact) -> Result<(), ClientError> {
        let mut names: Vec<String> = tx.get("contact-list", KEY_SELF)?.unwrap_or_default();
        if !names.contains(&contact.name) {
            names.push(contact.name.clone());
            tx.put("contact-list", KEY_SELF, &names)?;
        }
        tx.put(NS_CONTACT, &contact.name, contact)?;
        tx.put(NS_CONTACT_BY_KEY, &contact.identity_key, &contact.name)?;
        Ok(())
    }

    /// Fetch `name`'s bundle and start a session (trust on first use). For a known contact
    /// whose relay-served key differs from the trusted one, the change is recorded and
    /// [`ClientError::KeyChanged`] returned.
    pub async fn add_contact(&mut self, name: &str) -> Result<Contact, ClientError> {
        if name == self.config.name {
            return Err(ClientError::Invalid("that is your own name".into()));
        }
        if !hush_proto::relay::is_valid_name(name) {
            return Err(ClientError::Invalid(format!("invalid name {name:?}")));
        }
        let bundle = match self
            .request(&Request::FetchBundle {
                name: name.to_owned(),
            })
            .await
        {
            Ok(Reply::Bundle(b)) => b,
            Ok(_) => return Err(ClientError::Network(NetError::UnexpectedReply)),
            Err(ClientError::Relay(e)) if e.code == ErrorCode::UnknownUser => {
                return Err(ClientError::UnknownUser(name.to_owned()))
            }
            Err(e) => return Err(e),
        };
        self.start_session(name, bundle)
    }

    fn start_session(&mut self, name: &str, bundle: PrekeyBundle) -> Result<Contact, ClientError> {
        let key_hex = hex::encode(bundle.identity_key.as_bytes());
        let existing: Option<Contact> = self.store.tx()?.get(NS_CONTACT, name)?;
        if let Some(mut contact) = existing.clone() {
            if contact.identity_key != key_hex {
                contact.changed_key = Some(key_hex);
                let tx = self.store.tx()?;
                Self::put_contact(&tx, &contact)?;
                tx.commit()?;
                return Err(ClientError::KeyChanged(name.to_owned()));
            }
        }
        let verified = bundle.verify().map_err(|source| ClientError::Session {
            name: name.to_owned(),
            source,
        })?;
        let session =
            Session::initiate(&mut OsRng, &self.identity, &verified).map_err(|source| {
                ClientError::Session {
                    name: name.to_owned(),
                    source,
                }
            })?;
        let contact = existing.unwrap_or(Contact {
            name: name.to_owned(),
            identity_key: key_hex,
            verified: false,
            changed_key: None,
            unread: 0,
        });
        let tx = self.store.tx()?;
        let mut sessions = tx
            .get::<SessionSet>(NS_SESSIONS, name)?
            .unwrap_or_default()
            .load()?;
        sessions.insert(0, session);
        tx.put(NS_SESSIONS, name, &SessionSet::from_sessions(&sessions))?;
        Self::put_contact(&tx, &contact)?;
        tx.commit()?;
        Ok(contact)
    }

    /// The safety number with a contact.
    pub fn safety_number(&mut self, name: &str) -> Result<SafetyNumber, ClientError> {
        let contact = self
            .contact(name)?
            .ok_or_else(|| ClientError::NoSuchContact(name.into()))?;
        let key = match &contact.changed_key {
            Some(k) => parse_identity(k)?,
            None => contact.key()?,
        };
        Ok(SafetyNumber::new(&self.identity.public_key(), &key))
    }

    /// Mark a contact verified after the user compared safety numbers.
    pub fn confirm_verified(&mut self, name: &str) -> Result<(), ClientError> {
        let tx = self.store.tx()?;
        let mut contact: Contact = tx
            .get(NS_CONTACT, name)?
            .ok_or_else(|| ClientError::NoSuchContact(name.into()))?;
        if contact.changed_key.is_some() {
            return Err(ClientError::KeyChanged(name.to_owned()));
        }
        contact.verified = true;
        Self::put_contact(&tx, &contact)?;
        tx.commit()?;
        Ok(())
    }

    /// Accept a contact's changed identity key. Old sessions are dropped; the next send starts
    /// a fresh one with the new key unless the new key already sent us a session.
    pub fn trust(&mut self, name: &str) -> Result<(), ClientError> {
        let tx = self.store.tx()?;
        let mut contact: Contact = tx
            .get(NS_CONTACT, name)?
            .ok_or_else(|| ClientError::NoSuchContact(name.into()))?;
        let Some(new_key) = contact.changed_key.take() else {
            return Ok(());
        };
        tx.delete(NS_CONTACT_BY_KEY, &contact.identity_key)?;
        contact.identity_key = new_key;
        contact.verified = false;
        let sessions = tx
            .get::<SessionSet>(NS_SESSIONS, name)?
            .unwrap_or_default()
            .load()?;
        let key = contact.key()?;
        let kept: Vec<Session> = sessions
            .into_iter()
            .filter(|s| *s.remote_identity() == key)
            .collect();
        tx.put(NS_SESSIONS, name, &SessionSet::from_sessions(&kept))?;
        Self::put_contact(&tx, &contact)?;
        tx.commit()?;
        Ok(())
    }

    /// History with a contact, oldest first.
    pub fn history(&mut self, name: &str) -> Result<Vec<HistoryEntry>, ClientError> {
        let tx = self.store.tx()?;
        Ok(tx
            .messages::<HistoryEntry>(name)?
            .into_iter()
            .map(|r| r.value)
            .collect())
    }

    /// Clear a contact's unread count (the user looked).
    pub fn mark_read(&mut self, name: &str) -> Result<(), ClientError> {
        let tx = self.store.tx()?;
        if let Some(mut c) = tx.get::<Contact>(NS_CONTACT, name)? {
            c.unread = 0;
            Self::put_contact(&tx, &c)?;
            tx.commit()?;
        }
        Ok(())
    }

    // ---- sending ------------------------------------------------------------------------

    /// Encrypt, commit and queue a text; then try to hand the outbox to the relay. Returns
    /// the history entry, whose state says whether the relay has it (`OnRelay`) or it is
    /// still queued because the relay is unreachable.
    pub async fn send_text(&mut self, name: &str, text: &str) -> Result<HistoryEntry, ClientError> {
        if self.contact(name)?.is_none() {
            self.add_contact(name).await?;
        }
        let entry = self.queue_text(name, text)?;
        match self.flush_outbox().await {
            Ok(()) | Err(ClientError::Network(_)) => {}
            Err(e) => return Err(e),
        }
        let tx = self.store.tx()?;
        Ok(tx
            .find_message::<HistoryEntry>(&dedupe_key(&self.identity.public_key(), &entry.id))?
            .map(|r| r.value)
            .unwrap_or(entry))
    }

    /// Encrypt and commit a text without touching the network.
    pub fn queue_text(&mut self, name: &str, text: &str) -> Result<HistoryEntry, ClientError> {
        let contact = self
            .contact(name)?
            .ok_or_else(|| ClientError::NoSuchContact(name.into()))?;
        if contact.changed_key.is_some() {
            return Err(ClientError::KeyChanged(name.to_owned()));
        }
        let mut id = [0u8; 16];
        OsRng.fill_bytes(&mut id);
        let sent_at = now_ms();
        let content = MessageContent {
            id,
            sent_at_ms: sent_at,
            content_type: ContentType::TEXT,
            body: text.as_bytes().to_vec(),
        };
        let entry = HistoryEntry {
            id: hex::encode(id),
            contact: name.to_owned(),
            outgoing: true,
            text: text.to_owned(),
            sent_at,
            received_at: None,
            state: DeliveryState::Queued,
            verified: contact.verified,
            key_changed: false,
        };
        let tx = self.store.tx()?;
        let envelope = Self::encrypt_for(&tx, &contact, &content)?;
        tx.add_message(
            name,
            &dedupe_key(&self.identity.public_key(), &entry.id),
            &entry,
        )?;
        tx.push_outbox(&OutboxItem {
            contact: name.to_owned(),
            recipient: contact.identity_key.clone(),
            envelope,
            message_id: Some(entry.id.clone()),
        })?;
        tx.commit()?;
        Ok(entry)
    }

    /// Encrypt with the contact's active session, saving the advanced session in `tx`.
    fn encrypt_for(
        tx: &crate::store::Tx<'_>,
        contact: &Contact,
        content: &MessageContent,
    ) -> Result<Vec<u8>, ClientError> {
        let mut sessions = tx
            .get::<SessionSet>(NS_SESSIONS, &contact.name)?
            .unwrap_or_default()
            .load()?;
        let trusted = contact.key()?;
        let session = sessions
            .iter_mut()
            .find(|s| *s.remote_identity() == trusted && s.can_send())
            .ok_or_else(|| {
                ClientError::Invalid(format!(
                    "no session with {}; run `hush add {}`",
                    contact.name, contact.name
                ))
            })?;
        let padded = content.to_padded_bytes()?;
        let envelope = session.encrypt(&mut OsRng, &padded)?.to_bytes();
        tx.put(
            NS_SESSIONS,
            &contact.name,
            &SessionSet::from_sessions(&sessions),
        )?;
        Ok(envelope)
    }

    /// Number of envelopes waiting to be handed to the relay.
    pub fn outbox_len(&mut self) -> Result<usize, ClientError> {
        Ok(self.store.tx()?.outbox::<OutboxItem>()?.len())
    }

    /// Hand every queued envelope to the relay, oldest first; each is removed only after the
    /// relay says it is stored.
    pub async fn flush_outbox(&mut self) -> Result<(), ClientError> {
        let items = self.store.tx()?.outbox::<OutboxItem>()?;
        for row in items {
            let recipient: [u8; 32] = hex::decode(&row.value.recipient)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| {
                    ClientError::Store(StoreError::Corrupt("outbox recipient".into()))
                })?;
            let reply = self
                .request(&Request::Send {
                    recipient,
                    envelope: row.value.envelope.clone(),
                })
                .await;
            match reply {
                Ok(Reply::Stored { .. }) => {
                    let tx = self.store.tx()?;
                    tx.remove_outbox(row.seq)?;
                    if let Some(id) = &row.value.message_id {
                        let key = dedupe_key(&self.identity.public_key(), id);
                        if let Some(mut entry) = tx.find_message::<HistoryEntry>(&key)? {
                            if entry.value.state == DeliveryState::Queued {
                                entry.value.state = DeliveryState::OnRelay;
                                tx.update_message(&key, &entry.value)?;
                            }
                        }
                    }
                    tx.commit()?;
                }
                Ok(_) => return Err(ClientError::Network(NetError::UnexpectedReply)),
                Err(ClientError::Relay(e))
                    if e.code == ErrorCode::MailboxFull || e.code == ErrorCode::RateLimited =>
                {
                    // Keep it queued; a later flush retries.
                    return Err(ClientError::Relay(e));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    // ---- receiving ----------------------------------------------------------------------

    /// Connect, flush the outbox, subscribe, and process deliveries until `wait` has passed
    /// (pending messages are always drained first, even when `wait` is zero). Each event is
    /// passed to `on_event` after it is committed.
    pub async fn receive(
        &mut self,
        wait: Duration,
        mut on_event: impl FnMut(&Event),
    ) -> Result<(), ClientError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Pending messages arrive right after Subscribe; a short grace catches them even
            // when `wait` is zero or over.
            let now = tokio::time::Instant::now();
            let budget = if now < deadline {
                deadline - now
            } else {
                Duration::from_millis(300)
            };
            let (events, got) = self.pump_inner(budget).await?;
            for event in &events {
                on_event(event);
            }
            if !got && tokio::time::Instant::now() >= deadline {
                break;
            }
        }
        match self.flush_outbox().await {
            Ok(()) | Err(ClientError::Network(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// One step of a long-running client (TUI, JSON-RPC): connect and subscribe if needed
    /// (flushing the outbox first), wait up to `wait` for one delivery, process and ack it, and
    /// send any receipts it queued. Network errors drop the connection; call again to retry.
    pub async fn pump(&mut self, wait: Duration) -> Result<Vec<Event>, ClientError> {
        let (events, got) = self.pump_inner(wait).await?;
        if got {
            match self.flush_outbox().await {
                Ok(()) | Err(ClientError::Network(_)) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(events)
    }

    async fn pump_inner(&mut self, wait: Duration) -> Result<(Vec<Event>, bool), ClientError> {
        if !self.subscribed || self.conn.is_none() {
            self.flush_outbox().await?;
            self.request(&Request::Subscribe).await?;
            self.subscribed = true;
        }
        let conn = self.connection().await?;
        let delivery = match conn.next_delivery(wait).await {
            Ok(Some(d)) => d,
            Ok(None) => {
                // Keep an idle connection alive well inside the relay's idle timeout.
                if self.last_traffic.elapsed() > KEEPALIVE_INTERVAL {
                    self.request(&Request::Ping).await?;
                    self.last_traffic = std::time::Instant::now();
                }
                return Ok((Vec::new(), false));
            }
            Err(e) => {
                self.conn = None;
                return Err(e.into());
            }
        };
        self.last_traffic = std::time::Instant::now();
        Ok((self.process_delivery(&delivery).await?, true))
    }

    /// Handle one delivered envelope: decrypt on copies, commit, then ack.
    pub async fn process_delivery(
        &mut self,
        delivery: &Delivery,
    ) -> Result<Vec<Event>, ClientError> {
        let sender = IdentityPublicKey::from_bytes(&delivery.sender).ok();
        let events = match sender {
            Some(sender) => self.accept_envelope(sender, delivery).await?,
            None => vec![Event::Rejected {
                contact: None,
                reason: "invalid sender key".into(),
            }],
        };
        self.request(&Request::Ack {
            ids: vec![delivery.id],
        })
        .await?;
        Ok(events)
    }

    async fn contact_for_sender(
        &mut self,
        sender: &IdentityPublicKey,
    ) -> Result<Option<Contact>, ClientError> {
        let key_hex = hex::encode(sender.as_bytes());
        let by_key: Option<String> = self.store.tx()?.get(NS_CONTACT_BY_KEY, &key_hex)?;
        if let Some(name) = by_key {
            return self.contact(&name);
        }
        // A stranger or a changed key: ask the relay which name this identity holds.
        let name = match self
            .request(&Request::WhoIs {
                identity: *sender.as_bytes(),
            })
            .await
        {
            Ok(Reply::Name { name }) => name,
            Ok(_) | Err(ClientError::Relay(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        let tx = self.store.tx()?;
        let contact = match tx.get::<Contact>(NS_CONTACT, &name)? {
            Some(mut c) => {
                if c.identity_key != key_hex && c.changed_key.as_deref() != Some(key_hex.as_str()) {
                    c.changed_key = Some(key_hex.clone());
                    Self::put_contact_key_change(&tx, &c, &key_hex)?;
                }
                c
            }
            None => {
                let c = Contact {
                    name: name.clone(),
                    identity_key: key_hex,
                    verified: false,
                    changed_key: None,
                    unread: 0,
                };
                Self::put_contact(&tx, &c)?;
                c
            }
        };
        tx.commit()?;
        Ok(Some(contact))
    }

    fn put_contact_key_change(
        tx: &crate::store::Tx<'_>,
        contact: &Contact,
        new_key: &str,
    ) -> Result<(), ClientError> {
        tx.put(NS_CONTACT, &contact.name, contact)?;
        tx.put(NS_CONTACT_BY_KEY, new_key, &contact.name)?;
        Ok(())
    }

    async fn accept_envelope(
        &mut self,
        sender: IdentityPublicKey,
        delivery: &Delivery,
    ) -> Result<Vec<Event>, ClientError> {
        let Some(contact) = self.contact_for_sender(&sender).await? else {
            return Ok(vec![Event::Rejected {
                contact: None,
                reason: "sender has no registered name".into(),
            }]);
        };
        let key_changed = contact.identity_key != hex::encode(sender.as_bytes());
        let envelope = match Envelope::from_bytes(&delivery.envelope) {
            Ok(e) => e,
            Err(e) => {
                return Ok(vec![Event::Rejected {
                    contact: Some(contact.name),
                    reason: format!("malformed envelope: {e}"),
                }])
            }
        };
        let tx = self.store.tx()?;
        let mut sessions = tx
            .get::<SessionSet>(NS_SESSIONS, &contact.name)?
            .unwrap_or_default()
            .load()?;
        drop(tx);

        // Decrypt on copies; commit only what succeeded.
        let mut plaintext = None;
        let mut used_one_time_prekey = None;
        let mut duplicate = false;
        let mut failure = String::from("no session could decrypt it");
        for index in 0..sessions.len() {
            let Some(candidate) = sessions.get(index) else {
                break;
            };
            if *candidate.remote_identity() != sender {
                continue;
            }
            if let Envelope::Prekey(pre) = &envelope {
                if !candidate.matches(pre) {
                    continue;
                }
            }
            let mut copy = candidate.clone();
            match copy.decrypt(&mut OsRng, &envelope) {
                Ok(p) => {
                    plaintext = Some(p);
                    if let Some(slot) = sessions.get_mut(index) {
                        *slot = copy;
                    }
                    break;
                }
                Err(DecryptError::Duplicate { .. }) => {
                    duplicate = true;
                    break;
                }
                Err(e) => failure = e.to_string(),
            }
        }
        if plaintext.is_none() && !duplicate {
            if let Envelope::Prekey(pre) = &envelope {
                match Session::respond(&mut OsRng, &self.identity, &self.prekeys, pre) {
                    Ok(inbound) => {
                        plaintext = Some(inbound.plaintext);
                        used_one_time_prekey = inbound.used_one_time_prekey;
                        let new = inbound.session;
                        // Simultaneous initiation: when our active session has not heard back,
                        // the session with the smaller base key wins on both sides.
                        // Otherwise the peer started afresh (reinstall, lost state): newest wins.
                        let adopt = match sessions.first() {
                            None => true,
                            Some(active) if *active.remote_identity() != sender => true,
                            Some(active) if active.has_received() => true,
                            Some(active) => {
                                new.session_id().as_bytes() < active.session_id().as_bytes()
                            }
                        };
                        if adopt {
                            sessions.insert(0, new);
                        } else {
                            sessions.insert(1.min(sessions.len()), new);
                        }
                    }
                    Err(SessionError::UnknownOneTimePrekey(_)) => {
                        failure = "one-time prekey already used (replayed first message)".into();
                        duplicate = true;
                    }
                    Err(e) => failure = e.to_string(),
                }
            }
        }
        if duplicate && plaintext.is_none() {
            // Already processed (we crashed before acking, or the relay replayed it).
            return Ok(Vec::new());
        }
        let Some(plaintext) = plaintext else {
            return Ok(vec![Event::Rejected {
                contact: Some(contact.name),
                reason: failure,
            }]);
        };
        let content = match MessageContent::from_padded_bytes(&plaintext) {
            Ok(c) => c,
            Err(e) => {
                return Ok(vec![Event::Rejected {
                    contact: Some(contact.name),
                    reason: format!("bad message content: {e}"),
                }])
            }
        };

        let mut events = Vec::new();
        let tx = self.store.tx()?;
        if let Some(id) = used_one_time_prekey {
            self.prekeys.remove_one_time(id);
            tx.put(NS_PREKEYS, KEY_SELF, &self.prekeys.pickle())?;
        }
        tx.put(
            NS_SESSIONS,
            &contact.name,
            &SessionSet::from_sessions(&sessions),
        )?;
        if content.content_type == ContentType::DELIVERY_RECEIPT {
            let mut ids = Vec::new();
            for chunk in content.body.chunks_exact(16) {
                let id = hex::encode(chunk);
                let key = dedupe_key(&self.identity.public_key(), &id);
                if let Some(mut row) = tx.find_message::<HistoryEntry>(&key)? {
                    if row.value.contact == contact.name && row.value.outgoing {
                        row.value.state = DeliveryState::Delivered;
                        tx.update_message(&key, &row.value)?;
                        ids.push(id);
                    }
                }
            }
            if !ids.is_empty() {
                events.push(Event::Delivered {
                    contact: contact.name.clone(),
                    ids,
                });
            }
        } else if content.content_type == ContentType::TEXT {
            let entry = HistoryEntry {
                id: hex::encode(content.id),
                contact: contact.name.clone(),
                outgoing: false,
                text: String::from_utf8_lossy(&content.body).into_owned(),
                sent_at: content.sent_at_ms,
                received_at: Some(now_ms()),
                state: DeliveryState::Received,
                verified: contact.verified && !key_changed,
                key_changed,
            };
            let new = tx.add_message(&contact.name, &dedupe_key(&sender, &entry.id), &entry)?;
            if new.is_some() {
                let mut c: Contact = tx
                    .get(NS_CONTACT, &contact.name)?
                    .unwrap_or(contact.clone());
                c.unread = c.unread.saturating_add(1);
                tx.put(NS_CONTACT, &c.name, &c)?;
                if key_changed {
                    events.push(Event::KeyChanged {
                        contact: contact.name.clone(),
                    });
                }
                events.push(Event::Message(entry));
                // An end-to-end encrypted receipt, queued in the same transaction. Not sent to
                // a changed key the user has not accepted.
                if !key_changed {
                    let receipt = MessageContent {
                        id: random_id(),
                        sent_at_ms: now_ms(),
                        content_type: ContentType::DELIVERY_RECEIPT,
                        body: content.id.to_vec(),
                    };
                    if let Ok(envelope) = Self::encrypt_for(&tx, &contact, &receipt) {
                        tx.push_outbox(&OutboxItem {
                            contact: contact.name.clone(),
                            recipient: contact.identity_key.clone(),
                            envelope,
                            message_id: None,
                        })?;
                    }
                }
            }
        }
        tx.commit()?;
        Ok(events)
    }
}

fn random_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    OsRng.fill_bytes(&mut id);
    id
}

/// De-duplication key of a message: the sender's identity and the sender-chosen id.
fn dedupe_key(sender: &IdentityPublicKey, id_hex: &str) -> Vec<u8> {
    [sender.as_bytes().as_slice(), id_hex.as_bytes()].concat()
}
