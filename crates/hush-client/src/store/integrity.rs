//! Rollback, move and deletion detection for sealed rows.
//!
//! Every write of a row takes the next value of a per-profile *generation* counter, and the
//! row is sealed with AD = (table, the row's address in it, that generation): a value copied
//! to another key, table, contact or outbox slot no longer opens. Rolling a row back to an
//! older sealed value (with its older generation) is caught by the *manifest*: a sealed record,
//! rewritten by every committing transaction, of the next generation and, per table, the
//! number of live rows and the sum (mod 2^256) of a secret HMAC tag over (address,
//! generation, sealed bytes) of each. `open` reads every row (no decryption), recomputes the
//! sums and refuses the profile unless they match; it keeps each row's tag in memory, so every
//! later read also checks that the row is exactly the one last written. Tagging the sealed
//! bytes, not only the generation, also refuses a value sealed by a transaction that was
//! abandoned (its pages may reach the WAL) and whose generation the next one reused.
//! The limit: a copy of the *whole* database taken earlier is self-consistent and opens; only
//! a trusted monotonic counter outside the file could tell, and we have none.

use std::collections::HashMap;

use rusqlite::params;
use subtle::ConstantTimeEq;

use super::seal::Keys;
use super::StoreError;

/// Which table a row lives in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) enum Table {
    /// Keyed values (identity, prekeys, contacts, sessions, config).
    Kv = 0,
    /// Message history.
    Messages = 1,
    /// Outbox.
    Outbox = 2,
}

impl Table {
    const ALL: [Table; 3] = [Table::Kv, Table::Messages, Table::Outbox];

    pub(super) fn name(self) -> &'static str {
        match self {
            Table::Kv => "kv",
            Table::Messages => "history",
            Table::Outbox => "outbox",
        }
    }
}

/// Where a row lives: the table and every column that locates it, length-prefixed so that no
/// two different locations encode alike.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(super) struct Address {
    table: Table,
    bytes: Vec<u8>,
}

impl Address {
    fn new(table: Table, parts: &[&[u8]]) -> Self {
        let mut bytes = vec![table as u8];
        for part in parts {
            bytes.extend_from_slice(&(part.len() as u64).to_le_bytes());
            bytes.extend_from_slice(part);
        }
        Self { table, bytes }
    }

    /// A keyed value, by its lookup key.
    pub(super) fn kv(k: &[u8]) -> Self {
        Self::new(Table::Kv, &[k])
    }

    /// A history row: its position, contact and de-duplication key.
    pub(super) fn message(seq: i64, contact: &[u8], dedupe: &[u8]) -> Self {
        Self::new(Table::Messages, &[&seq.to_le_bytes(), contact, dedupe])
    }

    /// An outbox row, by its position.
    pub(super) fn outbox(seq: i64) -> Self {
        Self::new(Table::Outbox, &[&seq.to_le_bytes()])
    }

    pub(super) fn table(&self) -> Table {
        self.table
    }

    pub(super) fn bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// The AD a value at this address written at `generation` is sealed with.
    pub(super) fn ad(&self, generation: u64) -> Vec<u8> {
        [
            b"hush-row-v2\0".as_slice(),
            &self.bytes,
            &generation.to_le_bytes(),
        ]
        .concat()
    }
}

/// One table's row count and tag sum.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct TableSum {
    count: u64,
    sum: [u64; 4],
}

impl TableSum {
    fn add(&mut self, tag: &[u8; 32]) {
        let mut carry = false;
        for (limb, chunk) in self.sum.iter_mut().zip(tag.chunks_exact(8)) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let (s1, c1) = limb.overflowing_add(u64::from_le_bytes(word));
            let (s2, c2) = s1.overflowing_add(u64::from(carry));
            *limb = s2;
            carry = c1 || c2;
        }
        self.count = self.count.wrapping_add(1);
    }

    fn remove(&mut self, tag: &[u8; 32]) {
        let mut borrow = false;
        for (limb, chunk) in self.sum.iter_mut().zip(tag.chunks_exact(8)) {
            let mut word = [0u8; 8];
            word.copy_from_slice(chunk);
            let (d1, b1) = limb.overflowing_sub(u64::from_le_bytes(word));
            let (d2, b2) = d1.overflowing_sub(u64::from(borrow));
            *limb = d2;
            borrow = b1 || b2;
        }
        self.count = self.count.wrapping_sub(1);
    }
}

/// The sealed manifest: the next generation and each table's count and sum.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Manifest {
    next_generation: u64,
    tables: [TableSum; 3],
}

const MANIFEST_AD: &[u8] = b"hush-profile-manifest-v2";
const MANIFEST_LEN: usize = 8 + 3 * (8 + 32);

impl Manifest {
    pub(super) fn new() -> Self {
        Self {
            next_generation: 1,
            tables: [TableSum::default(); 3],
        }
    }

    fn table(&mut self, table: Table) -> &mut TableSum {
        match table {
            Table::Kv => &mut self.tables[0],
            Table::Messages => &mut self.tables[1],
            Table::Outbox => &mut self.tables[2],
        }
    }

    fn to_bytes(self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MANIFEST_LEN);
        out.extend_from_slice(&self.next_generation.to_le_bytes());
        for t in &self.tables {
            out.extend_from_slice(&t.count.to_le_bytes());
            for limb in &t.sum {
                out.extend_from_slice(&limb.to_le_bytes());
            }
        }
        out
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != MANIFEST_LEN {
            return None;
        }
        let mut words = bytes.chunks_exact(8).map(|c| {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            u64::from_le_bytes(w)
        });
        let next_generation = words.next()?;
        let mut tables = [TableSum::default(); 3];
        for t in &mut tables {
            t.count = words.next()?;
            for limb in &mut t.sum {
                *limb = words.next()?;
            }
        }
        Some(Self {
            next_generation,
            tables,
        })
    }

    /// Seal for the `meta` table.
    pub(super) fn seal(&self, keys: &Keys) -> Result<Vec<u8>, StoreError> {
        keys.seal(MANIFEST_AD, &self.to_bytes())
    }
}

fn tampered(table: Table, detail: impl Into<String>) -> StoreError {
    StoreError::Tampered {
        what: table.name().into(),
        detail: detail.into(),
    }
}

/// A row version's secret tag.
pub(super) type Tag = [u8; 32];

/// The verified state of an open profile: the manifest and each live row's tag.
pub(super) struct Integrity {
    manifest: Manifest,
    tags: HashMap<Address, Tag>,
}

fn generation(raw: i64, table: Table, next: u64) -> Result<u64, StoreError> {
    match u64::try_from(raw) {
        Ok(g) if g < next => Ok(g),
        _ => Err(tampered(
            table,
            format!("a row claims generation {raw}, but the manifest is only at {next}"),
        )),
    }
}

impl Integrity {
    /// A new, empty profile.
    pub(super) fn empty() -> Self {
        Self {
            manifest: Manifest::new(),
            tags: HashMap::new(),
        }
    }

    /// Open the sealed manifest and check every row against it.
    pub(super) fn load(conn: &rusqlite::Connection, keys: &Keys) -> Result<Self, StoreError> {
        let missing = || StoreError::Tampered {
            what: "manifest".into(),
            detail: "missing or does not authenticate".into(),
        };
        let sealed: Vec<u8> = conn
            .query_row("SELECT v FROM meta WHERE k = 'manifest'", [], |r| r.get(0))
            .map_err(|_| missing())?;
        let manifest = keys
            .open(MANIFEST_AD, &sealed)
            .and_then(|b| Manifest::from_bytes(&b))
            .ok_or_else(missing)?;
        let next = manifest.next_generation;
        let mut found = Manifest::new();
        found.next_generation = next;
        let mut tags = HashMap::new();
        let mut note = |address: Address, raw: i64, sealed: &[u8]| -> Result<(), StoreError> {
            let table = address.table();
            let g = generation(raw, table, next)?;
            let tag = keys.row_tag(&address.bytes, g, sealed);
            found.table(table).add(&tag);
            tags.insert(address, tag);
            Ok(())
        };
        {
            let mut stmt = conn.prepare("SELECT k, gen, v FROM kv")?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let (k, v): (Vec<u8>, Vec<u8>) = (r.get(0)?, r.get(2)?);
                note(Address::kv(&k), r.get(1)?, &v)?;
            }
        }
        {
            let mut stmt = conn.prepare("SELECT seq, contact, dedupe, gen, v FROM messages")?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let (c, d, v): (Vec<u8>, Vec<u8>, Vec<u8>) = (r.get(1)?, r.get(2)?, r.get(4)?);
                note(Address::message(r.get(0)?, &c, &d), r.get(3)?, &v)?;
            }
        }
        {
            let mut stmt = conn.prepare("SELECT seq, gen, v FROM outbox")?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let v: Vec<u8> = r.get(2)?;
                note(Address::outbox(r.get(0)?), r.get(1)?, &v)?;
            }
        }
        let mut expected = manifest;
        for table in Table::ALL {
            let (want, got) = (*expected.table(table), *found.table(table));
            if want != got {
                return Err(tampered(
                    table,
                    format!(
                        "its rows do not match the sealed manifest ({} rows found, {} expected): \
                         a row was rolled back, moved, added or deleted",
                        got.count, want.count
                    ),
                ));
            }
        }
        Ok(Self { manifest, tags })
    }
}

/// The changes of one transaction, applied to [`Integrity`] only when it commits.
pub(super) struct Pending {
    manifest: Manifest,
    changes: HashMap<Address, Option<Tag>>,
}

impl Pending {
    pub(super) fn new(base: &Integrity) -> Self {
        Self {
            manifest: base.manifest,
            changes: HashMap::new(),
        }
    }

    /// The tag the row at `address` must have (`None`: there must be no row).
    pub(super) fn expected(&self, base: &Integrity, address: &Address) -> Option<Tag> {
        match self.changes.get(address) {
            Some(t) => *t,
            None => base.tags.get(address).copied(),
        }
    }

    /// Take a fresh generation for a write.
    pub(super) fn next_generation(&mut self) -> Result<u64, StoreError> {
        let g = self.manifest.next_generation;
        if g >= i64::MAX as u64 {
            return Err(StoreError::Corrupt("generation counter exhausted".into()));
        }
        self.manifest.next_generation = g + 1;
        Ok(g)
    }

    /// Record that the row at `address` went from tag `old` to `new` (`None`: absent).
    pub(super) fn replace(&mut self, address: Address, old: Option<Tag>, new: Option<Tag>) {
        let sums = self.manifest.table(address.table());
        if let Some(old) = old {
            sums.remove(&old);
        }
        if let Some(new) = new {
            sums.add(&new);
        }
        self.changes.insert(address, new);
    }

    /// Whether anything was written.
    pub(super) fn is_dirty(&self) -> bool {
        !self.changes.is_empty()
    }

    /// The manifest to seal with this transaction.
    pub(super) fn manifest(&self) -> &Manifest {
        &self.manifest
    }

    /// After a successful commit.
    pub(super) fn apply(self, base: &mut Integrity) {
        base.manifest = self.manifest;
        for (address, tag) in self.changes {
            match tag {
                Some(tag) => base.tags.insert(address, tag),
                None => base.tags.remove(&address),
            };
        }
    }
}

/// Check a row read (or not) at `address` against the tag the manifest says it must have;
/// returns the row's generation.
pub(super) fn check_row(
    keys: &Keys,
    expected: Option<Tag>,
    address: &Address,
    found: Option<(i64, &[u8])>,
) -> Result<Option<u64>, StoreError> {
    let table = address.table();
    match (expected, found) {
        (None, None) => Ok(None),
        (Some(_), None) => Err(tampered(table, "a row was deleted")),
        (None, Some(_)) => Err(tampered(
            table,
            "a row is not in the sealed manifest (moved or inserted)",
        )),
        (Some(want), Some((raw, sealed))) => {
            let generation = u64::try_from(raw).map_err(|_| misplaced(address))?;
            let tag = keys.row_tag(&address.bytes, generation, sealed);
            if bool::from(tag.ct_eq(&want)) {
                Ok(Some(generation))
            } else {
                Err(tampered(
                    table,
                    "a row was rolled back or replaced since it was last written",
                ))
            }
        }
    }
}

/// The error for a value that does not open at its address.
pub(super) fn misplaced(address: &Address) -> StoreError {
    tampered(
        address.table(),
        "a sealed value does not belong at this place (moved, swapped or altered)",
    )
}

/// Write the sealed manifest in the current transaction.
pub(super) fn write_manifest(
    conn: &rusqlite::Connection,
    keys: &Keys,
    manifest: &Manifest,
) -> Result<(), StoreError> {
    conn.execute(
        "INSERT OR REPLACE INTO meta (k, v) VALUES ('manifest', ?1)",
        params![manifest.seal(keys)?],
    )?;
    Ok(())
}
