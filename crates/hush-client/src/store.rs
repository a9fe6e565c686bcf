//! The encrypted profile store. Everything a profile holds (identity and prekey secrets,
//! sessions, contacts, message history, outbox) lives in one SQLite database whose values are
//! sealed with XChaCha20-Poly1305 under a key derived from the passphrase with Argon2id, and
//! whose lookup keys are HMACs, so names and contents are unreadable at rest.
//!
//! Crash safety comes from SQLite transactions (WAL, `synchronous=FULL`): callers group every
//! change that must happen together in one [`Tx`]. One process per profile: an exclusive lock
//! on `DIR/lock` is held while the store is open.

use std::cell::RefCell;
use std::fs::File;
use std::path::{Path, PathBuf};

use fs4::fs_std::FileExt;
use rand_core::{OsRng, RngCore};
use rusqlite::{params, OptionalExtension};
use serde::de::DeserializeOwned;
use serde::Serialize;
use zeroize::Zeroizing;

mod integrity;
mod seal;
#[cfg(test)]
mod tamper_tests;
#[cfg(test)]
mod tests;

use integrity::{check_row, misplaced, Address, Integrity, Pending, Tag};
use seal::Keys;
pub use seal::{KdfParams, KDF_MAX_M_COST, KDF_MAX_P_COST, KDF_MAX_T_COST, SEALED_MIN_PADDED_LEN};

/// Database file inside the profile directory.
pub const DATABASE_FILE: &str = "profile.sqlite3";
/// Lock file inside the profile directory.
pub const LOCK_FILE: &str = "lock";
const CHECK_PLAINTEXT: &[u8] = b"hush-profile-v2";
/// On-disk format. 2: rows carry a generation and are bound to their place, a sealed manifest,
/// authenticated KDF parameters, padded values. Format 1 profiles are refused.
pub const SCHEMA_VERSION: i64 = 2;

/// Why a profile could not be opened or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// No profile in that directory.
    #[error("no profile at {0} (run `hush init` first)")]
    NotFound(PathBuf),
    /// A profile already exists there.
    #[error("a profile already exists at {0}")]
    AlreadyExists(PathBuf),
    /// Another process has the profile open.
    #[error("profile {0} is in use by another hush process")]
    Locked(PathBuf),
    /// The passphrase does not open this profile. Nothing was changed. (The key-derivation
    /// parameters are authenticated too: edited ones look like a wrong passphrase.)
    #[error("wrong passphrase for profile {0} (or its key-derivation parameters were altered)")]
    WrongPassphrase(PathBuf),
    /// A stored value failed to authenticate or parse: the file was damaged or tampered with.
    #[error("profile data is corrupt: {0}")]
    Corrupt(String),
    /// A sealed value is authentic but not where or when it belongs (rolled back, moved
    /// between keys or tables, or deleted): someone with write access edited the profile.
    #[error("profile tampered: {what} ({detail}); restore the profile from a trusted copy or make a new one")]
    Tampered {
        /// Which part of the profile (table or namespace).
        what: String,
        /// What was found wrong.
        detail: String,
    },
    /// The profile was written by a hush with another on-disk format.
    #[error("profile format {found} is not supported by this hush (it reads format {expected}); make a new profile with `hush init`")]
    UnsupportedFormat {
        /// The format found on disk.
        found: i64,
        /// The format this build reads.
        expected: i64,
    },
    /// The stored Argon2id parameters are out of bounds (an edited profile); nothing was derived.
    #[error("profile key-derivation parameters refused: {0}")]
    KdfParams(String),
    /// An empty passphrase was given without the explicit opt-in.
    #[error("an empty passphrase is refused; set one, or pass --allow-empty-passphrase (HUSH_ALLOW_EMPTY_PASSPHRASE=1) to store the profile unprotected")]
    EmptyPassphrase,
    /// Filesystem error.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// Database error.
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
}

/// An open, locked, unlocked-by-passphrase profile store.
pub struct Store {
    conn: rusqlite::Connection,
    keys: Keys,
    integrity: Integrity,
    dir: PathBuf,
    _lock: File,
}

fn lock(dir: &Path) -> Result<File, StoreError> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(LOCK_FILE))?;
    match file.try_lock_exclusive() {
        Ok(true) => Ok(file),
        Ok(false) => Err(StoreError::Locked(dir.to_owned())),
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
            Err(StoreError::Locked(dir.to_owned()))
        }
        Err(e) => Err(e.into()),
    }
}

fn connect(path: &Path) -> Result<rusqlite::Connection, StoreError> {
    let conn = rusqlite::Connection::open(path)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "FULL")?;
    conn.pragma_update(None, "secure_delete", "ON")?;
    conn.busy_timeout(std::time::Duration::from_secs(5))?;
    Ok(conn)
}

/// A passphrase for a new profile, and whether the user explicitly allowed it to be empty.
/// Plain bytes convert into one that must not be empty, so the unprotected profile is never
/// made by accident.
#[derive(Clone, Copy)]
pub struct Passphrase<'a> {
    bytes: &'a [u8],
    allow_empty: bool,
}

impl<'a> Passphrase<'a> {
    /// The passphrase itself.
    pub(crate) fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// A passphrase that may be empty: only when the user asked for an unprotected profile.
    pub fn allow_empty(bytes: &'a [u8]) -> Self {
        Self {
            bytes,
            allow_empty: true,
        }
    }
}

impl<'a, T: AsRef<[u8]> + ?Sized> From<&'a T> for Passphrase<'a> {
    fn from(bytes: &'a T) -> Self {
        Self {
            bytes: bytes.as_ref(),
            allow_empty: false,
        }
    }
}

impl std::fmt::Debug for Passphrase<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passphrase")
            .field("allow_empty", &self.allow_empty)
            .finish_non_exhaustive()
    }
}

/// The AD of the passphrase check value: the salt and the KDF parameters are authenticated.
fn check_ad(salt: &[u8], params: KdfParams) -> Vec<u8> {
    [
        b"hush-profile-check-v2\0".as_slice(),
        salt,
        &params.to_bytes(),
    ]
    .concat()
}

impl Store {
    /// Create a new profile in `dir` (made if missing) sealed under `passphrase`. An empty
    /// passphrase is refused unless it was made with [`Passphrase::allow_empty`].
    pub fn create<'p>(
        dir: &Path,
        passphrase: impl Into<Passphrase<'p>>,
        params: KdfParams,
    ) -> Result<Self, StoreError> {
        let passphrase = passphrase.into();
        if passphrase.bytes.is_empty() && !passphrase.allow_empty {
            return Err(StoreError::EmptyPassphrase);
        }
        let passphrase = passphrase.bytes;
        params.check_bounds()?;
        std::fs::create_dir_all(dir)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
        }
        let lock = lock(dir)?;
        let path = dir.join(DATABASE_FILE);
        if path.exists() {
            return Err(StoreError::AlreadyExists(dir.to_owned()));
        }
        let mut salt = [0u8; 16];
        OsRng.fill_bytes(&mut salt);
        let keys = Keys::derive(passphrase, &salt, params)?;
        let integrity = Integrity::empty();
        let mut conn = connect(&path)?;
        let tx = conn.transaction()?;
        tx.execute_batch(
            "CREATE TABLE meta (k TEXT PRIMARY KEY, v BLOB NOT NULL);
             CREATE TABLE kv (k BLOB PRIMARY KEY, gen INTEGER NOT NULL, v BLOB NOT NULL);
             CREATE TABLE messages (seq INTEGER PRIMARY KEY AUTOINCREMENT,
                                    contact BLOB NOT NULL, dedupe BLOB NOT NULL UNIQUE,
                                    gen INTEGER NOT NULL, v BLOB NOT NULL);
             CREATE INDEX messages_by_contact ON messages (contact, seq);
             CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT,
                                  gen INTEGER NOT NULL, v BLOB NOT NULL);",
        )?;
        let check = keys.seal(&check_ad(&salt, params), CHECK_PLAINTEXT)?;
        let params_json =
            serde_json::to_vec(&params).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        tx.execute(
            "INSERT INTO meta (k, v) VALUES ('salt', ?1)",
            params![salt.to_vec()],
        )?;
        tx.execute(
            "INSERT INTO meta (k, v) VALUES ('kdf', ?1)",
            params![params_json],
        )?;
        tx.execute(
            "INSERT INTO meta (k, v) VALUES ('check', ?1)",
            params![check],
        )?;
        integrity::write_manifest(&tx, &keys, &integrity::Manifest::new())?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        tx.commit()?;
        Ok(Self {
            conn,
            keys,
            integrity,
            dir: dir.to_owned(),
            _lock: lock,
        })
    }

    /// Open an existing profile. A wrong passphrase changes nothing. Every row is checked
    /// against the sealed manifest: a rolled-back, moved or deleted row is
    /// [`StoreError::Tampered`].
    pub fn open(dir: &Path, passphrase: &[u8]) -> Result<Self, StoreError> {
        let path = dir.join(DATABASE_FILE);
        if !path.exists() {
            return Err(StoreError::NotFound(dir.to_owned()));
        }
        let lock = lock(dir)?;
        let conn = connect(&path)?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version != SCHEMA_VERSION {
            return Err(StoreError::UnsupportedFormat {
                found: version,
                expected: SCHEMA_VERSION,
            });
        }
        let meta = |k: &str| -> Result<Vec<u8>, StoreError> {
            conn.query_row("SELECT v FROM meta WHERE k = ?1", params![k], |r| r.get(0))
                .optional()?
                .ok_or_else(|| StoreError::Corrupt(format!("missing {k}")))
        };
        let salt = meta("salt")?;
        let params: KdfParams = serde_json::from_slice(&meta("kdf")?)
            .map_err(|e| StoreError::KdfParams(e.to_string()))?;
        let check = meta("check")?;
        // Bounds first: an edited m_cost or t_cost must not make this hang or exhaust memory.
        let keys = Keys::derive(passphrase, &salt, params)?;
        match keys.open(&check_ad(&salt, params), &check) {
            Some(p) if p.as_slice() == CHECK_PLAINTEXT => {}
            _ => return Err(StoreError::WrongPassphrase(dir.to_owned())),
        }
        let integrity = Integrity::load(&conn, &keys)?;
        Ok(Self {
            conn,
            keys,
            integrity,
            dir: dir.to_owned(),
            _lock: lock,
        })
    }

    /// The profile directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Start a transaction; nothing is visible or durable until [`Tx::commit`].
    pub fn tx(&mut self) -> Result<Tx<'_>, StoreError> {
        let pending = RefCell::new(Pending::new(&self.integrity));
        Ok(Tx {
            tx: self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?,
            keys: &self.keys,
            integrity: &mut self.integrity,
            pending,
        })
    }
}

/// A message history row.
#[derive(Debug, Clone)]
pub struct Row<T> {
    /// Insertion order.
    pub seq: i64,
    /// The decrypted value.
    pub value: T,
}

/// One atomic set of changes to the profile.
pub struct Tx<'a> {
    tx: rusqlite::Transaction<'a>,
    keys: &'a Keys,
    integrity: &'a mut Integrity,
    pending: RefCell<Pending>,
}

/// A raw history row: (seq, contact lookup key, generation, sealed value).
type MessageRow = (i64, Vec<u8>, i64, Vec<u8>);

fn encode<T: Serialize>(value: &T) -> Result<Zeroizing<Vec<u8>>, StoreError> {
    serde_json::to_vec(value)
        .map(Zeroizing::new)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl Tx<'_> {
    /// The tag the row at `address` must have, per the manifest and this transaction.
    fn expected(&self, address: &Address) -> Option<Tag> {
        self.pending.borrow().expected(self.integrity, address)
    }

    /// Check a row found (or not) at `address` and open its value.
    fn open_row<T: DeserializeOwned>(
        &self,
        address: &Address,
        row: Option<(i64, Vec<u8>)>,
    ) -> Result<Option<T>, StoreError> {
        let found = row.as_ref().map(|(g, v)| (*g, v.as_slice()));
        let generation = check_row(self.keys, self.expected(address), address, found)?;
        match (generation, row) {
            (Some(g), Some((_, sealed))) => {
                let plain = self
                    .keys
                    .open_padded(&address.ad(g), &sealed)
                    .ok_or_else(|| misplaced(address))?;
                Ok(Some(decode(&plain)?))
            }
            _ => Ok(None),
        }
    }

    /// Seal `value` for `address` at a fresh generation; the caller writes it, then calls
    /// [`Tx::record`] with the new tag.
    fn seal_new<T: Serialize>(
        &self,
        address: &Address,
        value: &T,
    ) -> Result<(u64, Vec<u8>, Tag), StoreError> {
        let generation = self.pending.borrow_mut().next_generation()?;
        let sealed = self
            .keys
            .seal_padded(&address.ad(generation), &encode(value)?)?;
        let tag = self.keys.row_tag(address.bytes(), generation, &sealed);
        Ok((generation, sealed, tag))
    }

    fn record(&self, address: Address, old: Option<Tag>, new: Option<Tag>) {
        self.pending.borrow_mut().replace(address, old, new);
    }

    /// Store `value` under (`namespace`, `key`).
    pub fn put<T: Serialize>(
        &self,
        namespace: &str,
        key: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        let k = self.keys.lookup_key(namespace, key.as_bytes());
        let address = Address::kv(&k);
        let old = self.expected(&address);
        let (generation, v, tag) = self.seal_new(&address, value)?;
        self.tx.execute(
            "INSERT OR REPLACE INTO kv (k, gen, v) VALUES (?1, ?2, ?3)",
            params![k, generation as i64, v],
        )?;
        self.record(address, old, Some(tag));
        Ok(())
    }

    /// The value under (`namespace`, `key`), if any.
    pub fn get<T: DeserializeOwned>(
        &self,
        namespace: &str,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let k = self.keys.lookup_key(namespace, key.as_bytes());
        let row: Option<(i64, Vec<u8>)> = self
            .tx
            .query_row("SELECT gen, v FROM kv WHERE k = ?1", params![k], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()?;
        self.open_row(&Address::kv(&k), row)
    }

    /// Delete (`namespace`, `key`).
    pub fn delete(&self, namespace: &str, key: &str) -> Result<(), StoreError> {
        let k = self.keys.lookup_key(namespace, key.as_bytes());
        let address = Address::kv(&k);
        let old = self.expected(&address);
        self.tx.execute("DELETE FROM kv WHERE k = ?1", params![k])?;
        self.record(address, old, None);
        Ok(())
    }

    /// Append a history row for `contact`, unless one with the same `dedupe` key exists.
    /// Returns whether it was new.
    pub fn add_message<T: Serialize>(
        &self,
        contact: &str,
        dedupe: &[u8],
        value: &T,
    ) -> Result<Option<i64>, StoreError> {
        let c = self.keys.lookup_key("contact", contact.as_bytes());
        let d = self.keys.lookup_key("dedupe", dedupe);
        let exists: Option<i64> = self
            .tx
            .query_row(
                "SELECT seq FROM messages WHERE dedupe = ?1",
                params![d],
                |r| r.get(0),
            )
            .optional()?;
        if exists.is_some() {
            return Ok(None);
        }
        // The row's position is part of its address, so it is inserted first, then sealed.
        self.tx.execute(
            "INSERT INTO messages (contact, dedupe, gen, v) VALUES (?1, ?2, 0, x'')",
            params![c, d],
        )?;
        let seq = self.tx.last_insert_rowid();
        let address = Address::message(seq, &c, &d);
        let (generation, v, tag) = self.seal_new(&address, value)?;
        self.tx.execute(
            "UPDATE messages SET gen = ?1, v = ?2 WHERE seq = ?3",
            params![generation as i64, v, seq],
        )?;
        self.record(address, None, Some(tag));
        Ok(Some(seq))
    }

    /// The history row with this `dedupe` key: (seq, contact, gen, v).
    fn message_row(&self, d: &[u8]) -> Result<Option<MessageRow>, StoreError> {
        Ok(self
            .tx
            .query_row(
                "SELECT seq, contact, gen, v FROM messages WHERE dedupe = ?1",
                params![d],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
            )
            .optional()?)
    }

    /// Find the history row with this `dedupe` key.
    pub fn find_message<T: DeserializeOwned>(
        &self,
        dedupe: &[u8],
    ) -> Result<Option<Row<T>>, StoreError> {
        let d = self.keys.lookup_key("dedupe", dedupe);
        let Some((seq, c, generation, v)) = self.message_row(&d)? else {
            return Ok(None);
        };
        let address = Address::message(seq, &c, &d);
        Ok(self
            .open_row(&address, Some((generation, v)))?
            .map(|value| Row { seq, value }))
    }

    /// Replace the value of the history row with this `dedupe` key.
    pub fn update_message<T: Serialize>(&self, dedupe: &[u8], value: &T) -> Result<(), StoreError> {
        let d = self.keys.lookup_key("dedupe", dedupe);
        let Some((seq, c, found, current)) = self.message_row(&d)? else {
            return Ok(());
        };
        let address = Address::message(seq, &c, &d);
        let old = self.expected(&address);
        check_row(self.keys, old, &address, Some((found, &current)))?;
        let (generation, v, tag) = self.seal_new(&address, value)?;
        self.tx.execute(
            "UPDATE messages SET gen = ?1, v = ?2 WHERE seq = ?3",
            params![generation as i64, v, seq],
        )?;
        self.record(address, old, Some(tag));
        Ok(())
    }

    /// All history rows for `contact`, oldest first.
    pub fn messages<T: DeserializeOwned>(&self, contact: &str) -> Result<Vec<Row<T>>, StoreError> {
        let c = self.keys.lookup_key("contact", contact.as_bytes());
        let mut stmt = self
            .tx
            .prepare("SELECT seq, dedupe, gen, v FROM messages WHERE contact = ?1 ORDER BY seq")?;
        let rows = stmt.query_map(params![c], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, Vec<u8>>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, d, generation, v) = row?;
            let address = Address::message(seq, &c, &d);
            if let Some(value) = self.open_row(&address, Some((generation, v)))? {
                out.push(Row { seq, value });
            }
        }
        Ok(out)
    }

    /// Queue an outbox item; returns its sequence number.
    pub fn push_outbox<T: Serialize>(&self, value: &T) -> Result<i64, StoreError> {
        self.tx
            .execute("INSERT INTO outbox (gen, v) VALUES (0, x'')", [])?;
        let seq = self.tx.last_insert_rowid();
        let address = Address::outbox(seq);
        let (generation, v, tag) = self.seal_new(&address, value)?;
        self.tx.execute(
            "UPDATE outbox SET gen = ?1, v = ?2 WHERE seq = ?3",
            params![generation as i64, v, seq],
        )?;
        self.record(address, None, Some(tag));
        Ok(seq)
    }

    /// Every queued outbox item, oldest first.
    pub fn outbox<T: DeserializeOwned>(&self) -> Result<Vec<Row<T>>, StoreError> {
        let mut stmt = self
            .tx
            .prepare("SELECT seq, gen, v FROM outbox ORDER BY seq")?;
        let rows = stmt.query_map([], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, Vec<u8>>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, generation, v) = row?;
            let address = Address::outbox(seq);
            if let Some(value) = self.open_row(&address, Some((generation, v)))? {
                out.push(Row { seq, value });
            }
        }
        Ok(out)
    }

    /// Remove a sent outbox item.
    pub fn remove_outbox(&self, seq: i64) -> Result<(), StoreError> {
        let address = Address::outbox(seq);
        let old = self.expected(&address);
        self.tx
            .execute("DELETE FROM outbox WHERE seq = ?1", params![seq])?;
        self.record(address, old, None);
        Ok(())
    }

    /// Make every change durable, atomically, with the manifest that covers them.
    pub fn commit(self) -> Result<(), StoreError> {
        let pending = self.pending.into_inner();
        if pending.is_dirty() {
            integrity::write_manifest(&self.tx, self.keys, pending.manifest())?;
        }
        self.tx.commit()?;
        pending.apply(self.integrity);
        Ok(())
    }
}
