//! The encrypted profile store. Everything a profile holds (identity and prekey secrets,
//! sessions, contacts, message history, outbox) lives in one SQLite database whose values are
//! sealed with XChaCha20-Poly1305 under a key derived from the passphrase with Argon2id, and
//! whose lookup keys are HMACs, so names and contents are unreadable at rest.
//!
//! Crash safety comes from SQLite transactions (WAL, `synchronous=FULL`): callers group every
//! change that must happen together in one [`Tx`]. One process per profile: an exclusive lock
//! on `DIR/lock` is held while the store is open.

use std::fs::File;
use std::path::{Path, PathBuf};

use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use fs4::fs_std::FileExt;
use hmac::{Hmac, Mac};
use rand_core::{OsRng, RngCore};
use rusqlite::{params, OptionalExtension};
use serde::de::DeserializeOwned;
use serde::Serialize;
use sha2::Sha256;
use zeroize::Zeroizing;

/// Database file inside the profile directory.
pub const DATABASE_FILE: &str = "profile.sqlite3";
/// Lock file inside the profile directory.
pub const LOCK_FILE: &str = "lock";
const CHECK_PLAINTEXT: &[u8] = b"hush-profile-v1";
const SCHEMA_VERSION: i64 = 1;

/// Argon2id parameters (OWASP's minimum recommendation: 19 MiB, 2 passes, 1 lane).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
pub struct KdfParams {
    /// Memory in KiB.
    pub m_cost: u32,
    /// Passes.
    pub t_cost: u32,
    /// Lanes.
    pub p_cost: u32,
}

impl Default for KdfParams {
    fn default() -> Self {
        Self {
            m_cost: 19 * 1024,
            t_cost: 2,
            p_cost: 1,
        }
    }
}

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
    /// The passphrase does not open this profile. Nothing was changed.
    #[error("wrong passphrase for profile {0}")]
    WrongPassphrase(PathBuf),
    /// A stored value failed to authenticate or parse: the file was damaged or tampered with.
    #[error("profile data is corrupt: {0}")]
    Corrupt(String),
    /// Filesystem error.
    #[error("i/o error: {0}")]
    Io(#[from] std::io::Error),
    /// Database error.
    #[error("database error: {0}")]
    Db(#[from] rusqlite::Error),
}

struct Keys {
    seal: Zeroizing<[u8; 32]>,
    lookup: Zeroizing<[u8; 32]>,
}

impl Keys {
    fn derive(passphrase: &[u8], salt: &[u8], params: KdfParams) -> Result<Self, StoreError> {
        let argon = argon2::Argon2::new(
            argon2::Algorithm::Argon2id,
            argon2::Version::V0x13,
            argon2::Params::new(params.m_cost, params.t_cost, params.p_cost, Some(32))
                .map_err(|e| StoreError::Corrupt(format!("kdf parameters: {e}")))?,
        );
        let mut master = Zeroizing::new([0u8; 32]);
        argon
            .hash_password_into(passphrase, salt, &mut master[..])
            .map_err(|e| StoreError::Corrupt(format!("kdf: {e}")))?;
        let hk = hkdf::Hkdf::<Sha256>::new(None, &master[..]);
        let mut seal = Zeroizing::new([0u8; 32]);
        let mut lookup = Zeroizing::new([0u8; 32]);
        hk.expand(b"hush-profile-seal", &mut seal[..])
            .and_then(|()| hk.expand(b"hush-profile-lookup", &mut lookup[..]))
            .map_err(|_| StoreError::Corrupt("key derivation".into()))?;
        Ok(Self { seal, lookup })
    }

    fn lookup_key(&self, namespace: &str, key: &[u8]) -> Vec<u8> {
        let mut mac = match <Hmac<Sha256> as Mac>::new_from_slice(&self.lookup[..]) {
            Ok(m) => m,
            Err(_) => return Vec::new(),
        };
        mac.update(namespace.as_bytes());
        mac.update(&[0]);
        mac.update(key);
        mac.finalize().into_bytes().to_vec()
    }

    fn seal(&self, ad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, StoreError> {
        let mut nonce = [0u8; 24];
        OsRng.fill_bytes(&mut nonce);
        let cipher = XChaCha20Poly1305::new((&*self.seal).into());
        let ct = cipher
            .encrypt(
                XNonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: ad,
                },
            )
            .map_err(|_| StoreError::Corrupt("seal failed".into()))?;
        Ok([nonce.as_slice(), &ct].concat())
    }

    fn open(&self, ad: &[u8], sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, StoreError> {
        if sealed.len() < 24 + 16 {
            return Err(StoreError::Corrupt("sealed value too short".into()));
        }
        let (nonce, ct) = sealed.split_at(24);
        let cipher = XChaCha20Poly1305::new((&*self.seal).into());
        cipher
            .decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad: ad })
            .map(Zeroizing::new)
            .map_err(|_| StoreError::Corrupt("a stored value failed to authenticate".into()))
    }
}

/// An open, locked, unlocked-by-passphrase profile store.
pub struct Store {
    conn: rusqlite::Connection,
    keys: Keys,
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

impl Store {
    /// Create a new profile in `dir` (made if missing) sealed under `passphrase`.
    pub fn create(dir: &Path, passphrase: &[u8], params: KdfParams) -> Result<Self, StoreError> {
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
        let mut conn = connect(&path)?;
        let tx = conn.transaction()?;
        tx.execute_batch(
            "CREATE TABLE meta (k TEXT PRIMARY KEY, v BLOB NOT NULL);
             CREATE TABLE kv (k BLOB PRIMARY KEY, v BLOB NOT NULL);
             CREATE TABLE messages (seq INTEGER PRIMARY KEY AUTOINCREMENT,
                                    contact BLOB NOT NULL, dedupe BLOB NOT NULL UNIQUE,
                                    v BLOB NOT NULL);
             CREATE INDEX messages_by_contact ON messages (contact, seq);
             CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, v BLOB NOT NULL);",
        )?;
        let check = keys.seal(b"check", CHECK_PLAINTEXT)?;
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
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
        tx.commit()?;
        Ok(Self {
            conn,
            keys,
            dir: dir.to_owned(),
            _lock: lock,
        })
    }

    /// Open an existing profile. A wrong passphrase changes nothing.
    pub fn open(dir: &Path, passphrase: &[u8]) -> Result<Self, StoreError> {
        let path = dir.join(DATABASE_FILE);
        if !path.exists() {
            return Err(StoreError::NotFound(dir.to_owned()));
        }
        let lock = lock(dir)?;
        let conn = connect(&path)?;
        let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
        if version != SCHEMA_VERSION {
            return Err(StoreError::Corrupt(format!(
                "profile schema version {version} is not supported (this build reads {SCHEMA_VERSION})"
            )));
        }
        let meta = |k: &str| -> Result<Vec<u8>, StoreError> {
            conn.query_row("SELECT v FROM meta WHERE k = ?1", params![k], |r| r.get(0))
                .optional()?
                .ok_or_else(|| StoreError::Corrupt(format!("missing {k}")))
        };
        let salt = meta("salt")?;
        let params: KdfParams = serde_json::from_slice(&meta("kdf")?)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let check = meta("check")?;
        let keys = Keys::derive(passphrase, &salt, params)?;
        match keys.open(b"check", &check) {
            Ok(p) if p.as_slice() == CHECK_PLAINTEXT => {}
            _ => return Err(StoreError::WrongPassphrase(dir.to_owned())),
        }
        Ok(Self {
            conn,
            keys,
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
        Ok(Tx {
            tx: self
                .conn
                .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?,
            keys: &self.keys,
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
}

fn encode<T: Serialize>(value: &T) -> Result<Zeroizing<Vec<u8>>, StoreError> {
    serde_json::to_vec(value)
        .map(Zeroizing::new)
        .map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

impl Tx<'_> {
    /// Store `value` under (`namespace`, `key`).
    pub fn put<T: Serialize>(
        &self,
        namespace: &str,
        key: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        let k = self.keys.lookup_key(namespace, key.as_bytes());
        let v = self.keys.seal(&k, &encode(value)?)?;
        self.tx.execute(
            "INSERT OR REPLACE INTO kv (k, v) VALUES (?1, ?2)",
            params![k, v],
        )?;
        Ok(())
    }

    /// The value under (`namespace`, `key`), if any.
    pub fn get<T: DeserializeOwned>(
        &self,
        namespace: &str,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let k = self.keys.lookup_key(namespace, key.as_bytes());
        let sealed: Option<Vec<u8>> = self
            .tx
            .query_row("SELECT v FROM kv WHERE k = ?1", params![k], |r| r.get(0))
            .optional()?;
        match sealed {
            Some(sealed) => Ok(Some(decode(&self.keys.open(&k, &sealed)?)?)),
            None => Ok(None),
        }
    }

    /// Delete (`namespace`, `key`).
    pub fn delete(&self, namespace: &str, key: &str) -> Result<(), StoreError> {
        let k = self.keys.lookup_key(namespace, key.as_bytes());
        self.tx.execute("DELETE FROM kv WHERE k = ?1", params![k])?;
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
        let v = self.keys.seal(&d, &encode(value)?)?;
        self.tx.execute(
            "INSERT INTO messages (contact, dedupe, v) VALUES (?1, ?2, ?3)",
            params![c, d, v],
        )?;
        Ok(Some(self.tx.last_insert_rowid()))
    }

    /// Find the history row with this `dedupe` key.
    pub fn find_message<T: DeserializeOwned>(
        &self,
        dedupe: &[u8],
    ) -> Result<Option<Row<T>>, StoreError> {
        let d = self.keys.lookup_key("dedupe", dedupe);
        let row: Option<(i64, Vec<u8>)> = self
            .tx
            .query_row(
                "SELECT seq, v FROM messages WHERE dedupe = ?1",
                params![d],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()?;
        match row {
            Some((seq, v)) => Ok(Some(Row {
                seq,
                value: decode(&self.keys.open(&d, &v)?)?,
            })),
            None => Ok(None),
        }
    }

    /// Replace the value of the history row with this `dedupe` key.
    pub fn update_message<T: Serialize>(&self, dedupe: &[u8], value: &T) -> Result<(), StoreError> {
        let d = self.keys.lookup_key("dedupe", dedupe);
        let v = self.keys.seal(&d, &encode(value)?)?;
        self.tx.execute(
            "UPDATE messages SET v = ?1 WHERE dedupe = ?2",
            params![v, d],
        )?;
        Ok(())
    }

    /// All history rows for `contact`, oldest first.
    pub fn messages<T: DeserializeOwned>(&self, contact: &str) -> Result<Vec<Row<T>>, StoreError> {
        let c = self.keys.lookup_key("contact", contact.as_bytes());
        let mut stmt = self
            .tx
            .prepare("SELECT seq, dedupe, v FROM messages WHERE contact = ?1 ORDER BY seq")?;
        let rows = stmt.query_map(params![c], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, Vec<u8>>(1)?,
                r.get::<_, Vec<u8>>(2)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, d, v) = row?;
            out.push(Row {
                seq,
                value: decode(&self.keys.open(&d, &v)?)?,
            });
        }
        Ok(out)
    }

    /// Queue an outbox item; returns its sequence number.
    pub fn push_outbox<T: Serialize>(&self, value: &T) -> Result<i64, StoreError> {
        let seal_ad = b"outbox";
        let v = self.keys.seal(seal_ad, &encode(value)?)?;
        self.tx
            .execute("INSERT INTO outbox (v) VALUES (?1)", params![v])?;
        Ok(self.tx.last_insert_rowid())
    }

    /// Every queued outbox item, oldest first.
    pub fn outbox<T: DeserializeOwned>(&self) -> Result<Vec<Row<T>>, StoreError> {
        let mut stmt = self.tx.prepare("SELECT seq, v FROM outbox ORDER BY seq")?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?)))?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, v) = row?;
            out.push(Row {
                seq,
                value: decode(&self.keys.open(b"outbox", &v)?)?,
            });
        }
        Ok(out)
    }

    /// Remove a sent outbox item.
    pub fn remove_outbox(&self, seq: i64) -> Result<(), StoreError> {
        self.tx
            .execute("DELETE FROM outbox WHERE seq = ?1", params![seq])?;
        Ok(())
    }

    /// Make every change durable, atomically.
    pub fn commit(self) -> Result<(), StoreError> {
        self.tx.commit()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fast() -> KdfParams {
        KdfParams {
            m_cost: 256,
            t_cost: 1,
            p_cost: 1,
        }
    }

    #[test]
    fn values_round_trip_and_nothing_is_readable_at_rest() {
        let dir = tempfile::tempdir().unwrap();
        {
            let mut store = Store::create(dir.path(), b"pw", fast()).unwrap();
            let tx = store.tx().unwrap();
            tx.put("contact", "bob", &"the secret value").unwrap();
            tx.add_message("bob", b"m1", &"hello plaintext").unwrap();
            tx.commit().unwrap();
        }
        let raw = std::fs::read(dir.path().join(DATABASE_FILE)).unwrap();
        let wal = std::fs::read(dir.path().join("profile.sqlite3-wal")).unwrap_or_default();
        for needle in [&b"secret value"[..], b"hello plaintext", b"bob"] {
            assert!(!raw.windows(needle.len()).any(|w| w == needle));
            assert!(!wal.windows(needle.len()).any(|w| w == needle));
        }
        let mut store = Store::open(dir.path(), b"pw").unwrap();
        let tx = store.tx().unwrap();
        assert_eq!(
            tx.get::<String>("contact", "bob").unwrap().unwrap(),
            "the secret value"
        );
        assert_eq!(tx.messages::<String>("bob").unwrap().len(), 1);
        assert!(tx.add_message("bob", b"m1", &"dup").unwrap().is_none());
    }

    #[test]
    fn wrong_passphrase_and_second_process_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::create(dir.path(), b"right", fast()).unwrap();
        assert!(matches!(
            Store::open(dir.path(), b"right"),
            Err(StoreError::Locked(_))
        ));
        drop(store);
        assert!(matches!(
            Store::open(dir.path(), b"wrong"),
            Err(StoreError::WrongPassphrase(_))
        ));
        assert!(Store::open(dir.path(), b"right").is_ok());
    }
}
