//! Creating a profile (`hush init`) without losing an identity the relay may have bound to a
//! name, and without touching anything `init` did not create.
//!
//! The profile records "registration pending" from the moment the identity is committed until
//! the relay confirms the name. A Register whose reply is lost (timeout, dropped connection)
//! leaves the profile in place: the relay may have committed it, and the identity is then the
//! only key that will ever hold the name. `hush init` again with the same profile, name and
//! relay resumes with that identity (the relay treats the same name and key as success), and
//! so does any other command, because every new connection finishes a pending registration
//! before it publishes anything. Only a definite refusal (the name is taken or invalid) or a
//! failure before Register was sent removes the profile, and then only the files and
//! directories `init` made.

use std::io::ErrorKind;

use super::*;
use crate::store::{DATABASE_FILE, LOCK_FILE};

/// What `init` finds at the profile path.
enum ProfileDir {
    /// Nothing there: `init` makes it (and the missing parents, listed deepest first).
    Missing(Vec<PathBuf>),
    /// An existing directory with nothing but a stale lock file in it.
    Empty,
    /// A hush profile (it holds the database).
    Profile,
    /// Something else: other files, or not a directory.
    Foreign,
}

fn inspect(dir: &Path) -> Result<ProfileDir, ClientError> {
    if dir.exists() && !dir.is_dir() {
        return Ok(ProfileDir::Foreign);
    }
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == ErrorKind::NotFound => {
            let missing = dir
                .ancestors()
                .take_while(|d| !d.as_os_str().is_empty() && !d.exists())
                .map(Path::to_path_buf)
                .collect();
            return Ok(ProfileDir::Missing(missing));
        }
        Err(e) => return Err(ClientError::Store(StoreError::Io(e))),
    };
    let mut empty = true;
    for entry in entries {
        let name = entry.map_err(StoreError::Io)?.file_name();
        if name == DATABASE_FILE {
            return Ok(ProfileDir::Profile);
        }
        if name != LOCK_FILE {
            empty = false;
        }
    }
    Ok(if empty {
        ProfileDir::Empty
    } else {
        ProfileDir::Foreign
    })
}

/// Remove what a failed `init` made: the store's files, then the directories it created
/// (`remove_dir`, never recursive, so anything that appeared meanwhile stays).
fn remove_created(dir: &Path, created_dirs: &[PathBuf]) {
    let db = DATABASE_FILE;
    for file in [
        format!("{db}-wal"),
        format!("{db}-shm"),
        format!("{db}-journal"),
        db.to_owned(),
        LOCK_FILE.to_owned(),
    ] {
        let _ = std::fs::remove_file(dir.join(file));
    }
    for created in created_dirs {
        let _ = std::fs::remove_dir(created);
    }
}

/// Whether a Register refusal proves the relay did not bind the name to this identity.
fn refused_for_good(e: &ClientError) -> bool {
    matches!(
        e,
        ClientError::Relay(r) if matches!(
            r.code,
            ErrorCode::NameTaken
                | ErrorCode::InvalidName
                | ErrorCode::BadSignature
                | ErrorCode::AlreadyRegistered
        )
    )
}

impl Client {
    /// Create a profile, register `name` and publish prekeys. The identity is committed before
    /// anything is sent. `relay` is one `host:port` or several addresses of one deployment
    /// separated by commas, tried in that order (see [`parse_relay_list`]). Without
    /// `relay_key`, the key of the first address that answers is fetched and pinned for all
    /// of them (trust on first use). `dir` must be new, empty, or a profile whose
    /// registration of `name` on `relay` is still pending (then this finishes it with the
    /// same identity).
    /// An empty passphrase is refused unless given as [`Passphrase::allow_empty`].
    pub async fn init<'p>(
        dir: &Path,
        passphrase: impl Into<Passphrase<'p>>,
        name: &str,
        relay: &str,
        relay_key: Option<[u8; 32]>,
    ) -> Result<Self, ClientError> {
        let passphrase: Passphrase<'p> = passphrase.into();
        if !hush_proto::relay::is_valid_name(name) {
            return Err(ClientError::Invalid(format!(
                "invalid name {name:?}: use 1-32 of a-z 0-9 _ - . starting with a letter or digit"
            )));
        }
        let relays = parse_relay_list(relay)?;
        let created_dirs = match inspect(dir)? {
            ProfileDir::Foreign => return Err(ClientError::NotAProfile(dir.to_owned())),
            ProfileDir::Profile => {
                return Self::resume_init(dir, passphrase.bytes(), name, &relays, relay_key).await
            }
            ProfileDir::Missing(dirs) => dirs,
            ProfileDir::Empty => Vec::new(),
        };
        // The address that gave the key is tried first for the registration.
        let (relay_key, first) = match relay_key {
            Some(k) => (k, relays.first().cloned().unwrap_or_default()),
            None => super::relays::fetch_key_first(&relays).await?,
        };
        let config = ProfileConfig::new(name, relays, first, relay_key);
        let mut client = match Self::create(dir, passphrase, config) {
            Ok(client) => client,
            Err(e) => {
                // Locked or already created by a concurrent init: not ours to remove.
                if !matches!(
                    e,
                    ClientError::Store(StoreError::Locked(_) | StoreError::AlreadyExists(_))
                ) {
                    remove_created(dir, &created_dirs);
                }
                return Err(e);
            }
        };
        match client.register_new().await {
            Ok(()) => {}
            Err(e @ ClientError::RegistrationPending { .. }) => return Err(e),
            Err(e) => {
                // The relay never bound the name to this identity: nothing to keep.
                drop(client);
                remove_created(dir, &created_dirs);
                return Err(e);
            }
        }
        // Registered: from here on the profile stays whatever happens.
        tokio::time::timeout(REQUEST_TIMEOUT, async {
            client.maintain_prekeys().await?;
            client.maintain_key_packages().await
        })
        .await
        .unwrap_or(Err(ClientError::Network(NetError::Timeout)))?;
        Ok(client)
    }

    /// The new store with a fresh identity and prekeys, marked "registration pending".
    fn create(
        dir: &Path,
        passphrase: Passphrase<'_>,
        config: ProfileConfig,
    ) -> Result<Self, ClientError> {
        let mut store = Store::create(dir, passphrase, KdfParams::default())?;
        let identity = IdentityKeyPair::generate(&mut OsRng);
        let prekeys = LocalPrekeys::new(&mut OsRng, &identity, now_ms() / 1000);
        {
            let tx = store.tx()?;
            tx.put(NS_IDENTITY, KEY_SELF, &identity.pickle())?;
            tx.put(NS_PREKEYS, KEY_SELF, &prekeys.pickle())?;
            tx.put(NS_CONFIG, KEY_SELF, &config)?;
            tx.put(NS_CONFIG, KEY_REGISTRATION_PENDING, &true)?;
            tx.commit()?;
        }
        Ok(Self {
            store,
            identity,
            prekeys,
            config,
            conn: None,
            subscribed: false,
            last_traffic: std::time::Instant::now(),
            registration_pending: true,
            outbox_due_ms: None,
            flush_next: false,
        })
    }

    /// Connect and register. A failure to connect or a definite refusal is returned as is
    /// (the name is not ours); anything that leaves the outcome unknown is
    /// [`ClientError::RegistrationPending`].
    async fn register_new(&mut self) -> Result<(), ClientError> {
        let conn = self.connect_relay().await?;
        self.conn = Some(conn);
        self.subscribed = false;
        let confirmed = tokio::time::timeout(REQUEST_TIMEOUT, self.confirm_registration())
            .await
            .unwrap_or(Err(ClientError::Network(NetError::Timeout)));
        match confirmed {
            Ok(()) => Ok(()),
            Err(e) if refused_for_good(&e) => Err(e),
            Err(e) => {
                self.conn = None;
                Err(ClientError::RegistrationPending {
                    name: self.config.name.clone(),
                    source: Box::new(e),
                })
            }
        }
    }

    /// `init` on a profile that exists: allowed only to finish its own pending registration.
    async fn resume_init(
        dir: &Path,
        passphrase: &[u8],
        name: &str,
        relays: &[String],
        relay_key: Option<[u8; 32]>,
    ) -> Result<Self, ClientError> {
        let mut client = Self::open(dir, passphrase)?;
        if !client.registration_pending {
            return Err(StoreError::AlreadyExists(dir.to_owned()).into());
        }
        if client.config.name != name || client.config.relay_list() != relays {
            return Err(ClientError::Invalid(format!(
                "the profile at {} is registering {} on {}; run init with that name and relay to finish it, or choose another --profile",
                dir.display(),
                client.config.name,
                client.config.relay_list().join(",")
            )));
        }
        if relay_key.is_some_and(|k| hex::encode(k) != client.config.relay_key) {
            return Err(ClientError::RelayKeyChanged);
        }
        // A new connection finishes the registration, then publishes prekeys.
        client.connection().await?;
        Ok(client)
    }

    /// On a connection just opened: if our name is not yet confirmed, register it (again:
    /// the relay answers the same name and key with success) and record the confirmation.
    /// The relay's Welcome already names us if an earlier Register was committed.
    pub(super) async fn confirm_registration(&mut self) -> Result<(), ClientError> {
        if !self.registration_pending {
            return Ok(());
        }
        let name = self.config.name.clone();
        let conn = self
            .conn
            .as_mut()
            .ok_or(ClientError::Network(NetError::Closed))?;
        match conn.registered_name.as_deref() {
            Some(current) if current == name => {}
            Some(_) => {
                // This identity holds another name: it can never hold ours.
                return Err(ClientError::Relay(hush_proto::relay::RelayError {
                    code: ErrorCode::AlreadyRegistered,
                    message: "this identity is registered under another name".into(),
                }));
            }
            None => {
                let signature = self.identity.sign(&register_message(&name));
                let reply = conn
                    .request(&Request::Register {
                        name: name.clone(),
                        signature,
                    })
                    .await;
                match reply {
                    Ok(Reply::Registered) => {}
                    Ok(_) => return Err(NetError::UnexpectedReply.into()),
                    Err(e) => {
                        let e = ClientError::from(e);
                        if !matches!(e, ClientError::Relay(_)) {
                            self.conn = None;
                        }
                        return Err(e);
                    }
                }
            }
        }
        let tx = self.store.tx()?;
        tx.delete(NS_CONFIG, KEY_REGISTRATION_PENDING)?;
        tx.commit()?;
        self.registration_pending = false;
        Ok(())
    }
}
