//! Prekeys in the relay database: the classical signed and one-time prekeys of `hush-v1`, and
//! the PQ (ML-KEM-768) prekeys that `hush-v2` adds: one current last-resort key and a capped
//! stock of one-time keys per identity. A fetch pops a classical and a PQ one-time prekey in the
//! batch transaction, so no two fetches ever receive the same one of either kind.
//!
//! Signatures are checked by the connection handler before a write is queued; what is stored
//! here is served as stored, and each client verifies every bundle it fetches.

use std::collections::BTreeSet;

use hush_proto::pq::{PqPrekey, KEM_ENCAPSULATION_KEY_LEN};
use hush_proto::{IdentityPublicKey, OneTimePrekey, PrekeyBundle, SignedPrekey, X25519PublicKey};
use rusqlite::{params, Connection, OptionalExtension};

use super::{blob_array, i64_bits_to_u64, non_negative, u32_column, u64_bits_to_i64};
use crate::store::{IdentityBytes, PrekeyStock, StoreError, WriteResult};

/// Replace the signed prekey and add one-time prekeys, unless the identity holds no name or
/// that would grow the one-time stock past `max_stock`. A publish that adds no new one-time prekey id (a signed prekey
/// rotation, or re-sending ids already held) is never refused, even if the stock is already
/// above a since-lowered limit.
pub(super) fn publish_prekeys(
    conn: &Connection,
    identity: &IdentityBytes,
    signed_prekey: &SignedPrekey,
    one_time: &[OneTimePrekey],
    max_stock: u32,
) -> Result<WriteResult, StoreError> {
    // Checked in the same transaction as the insert, so a name freed meanwhile cannot leave
    // fresh keys behind (and the expiry sweep removes any that an older relay stored).
    if !conn
        .prepare_cached("SELECT 1 FROM users WHERE identity = ?1")?
        .exists(params![identity.as_slice()])?
    {
        return Ok(WriteResult::NotRegistered);
    }
    let stock = one_time_stock(conn, identity)?;
    let mut held =
        conn.prepare_cached("SELECT 1 FROM one_time_prekeys WHERE identity = ?1 AND id = ?2")?;
    let mut added: u64 = 0;
    let ids: BTreeSet<u32> = one_time.iter().map(|key| key.id).collect();
    for id in ids {
        if !held.exists(params![identity.as_slice(), i64::from(id)])? {
            added = added.saturating_add(1);
        }
    }
    if added > 0 && stock.saturating_add(added) > u64::from(max_stock) {
        return Ok(WriteResult::TooManyPrekeys);
    }

    conn.prepare_cached(
        "INSERT INTO signed_prekeys (identity, id, created_at, public, signature)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (identity) DO UPDATE SET
             id = excluded.id, created_at = excluded.created_at,
             public = excluded.public, signature = excluded.signature",
    )?
    .execute(params![
        identity.as_slice(),
        i64::from(signed_prekey.id),
        u64_bits_to_i64(signed_prekey.created_at),
        signed_prekey.public_key.as_bytes().as_slice(),
        signed_prekey.signature.as_slice(),
    ])?;
    let mut insert = conn.prepare_cached(
        // An upsert, not INSERT OR REPLACE: a REPLACE deletes without firing the delete
        // trigger that keeps `prekey_totals` in step.
        "INSERT INTO one_time_prekeys (identity, id, public) VALUES (?1, ?2, ?3)
         ON CONFLICT (identity, id) DO UPDATE SET public = excluded.public",
    )?;
    for key in one_time {
        insert.execute(params![
            identity.as_slice(),
            i64::from(key.id),
            key.public_key.as_bytes().as_slice(),
        ])?;
    }
    let remaining = one_time_stock(conn, identity)?;
    Ok(WriteResult::PrekeysStored {
        one_time_remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
    })
}

/// One-time prekeys held for `identity`.
fn one_time_stock(conn: &Connection, identity: &IdentityBytes) -> Result<u64, StoreError> {
    let count: i64 = conn
        .prepare_cached("SELECT count(*) FROM one_time_prekeys WHERE identity = ?1")?
        .query_row(params![identity.as_slice()], |row| row.get(0))?;
    non_negative(count, "one-time prekey count")
}

/// The user's signed prekey plus (if `pop_one_time`) the lowest-id classical one-time prekey,
/// and a PQ prekey if the user has any ([`pq_prekey_for_bundle`]). One-time keys are deleted
/// here, in the batch transaction, so no two fetches ever receive the same one.
pub(super) fn fetch_bundle(
    conn: &Connection,
    name: &str,
    pop_one_time: bool,
) -> Result<WriteResult, StoreError> {
    let row = conn
        .prepare_cached(
            "SELECT u.identity, s.id, s.created_at, s.public, s.signature
             FROM users AS u JOIN signed_prekeys AS s ON s.identity = u.identity
             WHERE u.name = ?1",
        )?
        .query_row(params![name], |row| {
            Ok((
                row.get::<_, Vec<u8>>(0)?,
                row.get::<_, i64>(1)?,
                row.get::<_, i64>(2)?,
                row.get::<_, Vec<u8>>(3)?,
                row.get::<_, Vec<u8>>(4)?,
            ))
        })
        .optional()?;
    let Some((identity, spk_id, spk_created_at, spk_public, spk_signature)) = row else {
        return Ok(WriteResult::UnknownUser);
    };
    let identity: IdentityBytes = blob_array(&identity, "user identity")?;
    let identity_key = IdentityPublicKey::from_bytes(&identity)
        .map_err(|err| StoreError(format!("stored identity key is invalid: {err}")))?;
    let signed_prekey = SignedPrekey {
        id: u32_column(spk_id, "signed prekey id")?,
        created_at: i64_bits_to_u64(spk_created_at),
        public_key: X25519PublicKey::from_bytes(blob_array(&spk_public, "signed prekey")?),
        signature: blob_array(&spk_signature, "signed prekey signature")?,
    };

    let one_time_prekey = if pop_one_time {
        pop_one_time_prekey(conn, &identity)?
    } else {
        None
    };
    let pq_prekey = pq_prekey_for_bundle(conn, &identity, pop_one_time)?;
    Ok(WriteResult::Bundle(PrekeyBundle {
        identity_key,
        signed_prekey,
        one_time_prekey,
        pq_prekey,
    }))
}

/// Delete and return the lowest-id classical one-time prekey of `identity`.
fn pop_one_time_prekey(
    conn: &Connection,
    identity: &IdentityBytes,
) -> Result<Option<OneTimePrekey>, StoreError> {
    let popped = conn
        .prepare_cached(
            "DELETE FROM one_time_prekeys
             WHERE identity = ?1
               AND id = (SELECT min(id) FROM one_time_prekeys WHERE identity = ?1)
             RETURNING id, public",
        )?
        .query_row(params![identity.as_slice()], |row| {
            Ok((row.get::<_, i64>(0)?, row.get::<_, Vec<u8>>(1)?))
        })
        .optional()?;
    popped
        .map(|(id, public)| {
            Ok(OneTimePrekey {
                id: u32_column(id, "one-time prekey id")?,
                public_key: X25519PublicKey::from_bytes(blob_array(&public, "one-time prekey")?),
            })
        })
        .transpose()
}

/// The PQ prekey a bundle carries: a one-time key popped here (lowest id first) while the
/// stock lasts, else the last-resort key, which stays stored for the next initiator. `None`
/// only when the identity has no PQ prekey at all (a `hush-v1` publisher): the bundle is then
/// version 1.
///
/// When `pop_one_time` is false (that user's fetch budget is spent) the last-resort key is
/// served instead of a one-time one, as the classical one-time prekey is left out; a one-time
/// key is popped only if there is no last-resort key, because a bundle without any PQ prekey
/// would look like a downgrade to every `hush-v2` contact and be refused.
fn pq_prekey_for_bundle(
    conn: &Connection,
    identity: &IdentityBytes,
    pop_one_time: bool,
) -> Result<Option<PqPrekey>, StoreError> {
    if pop_one_time {
        if let Some(key) = pop_pq_one_time(conn, identity)? {
            return Ok(Some(key));
        }
    }
    let last_resort = conn
        .prepare_cached(
            "SELECT id, encapsulation_key, signature FROM pq_last_resort_prekeys
             WHERE identity = ?1",
        )?
        .query_row(params![identity.as_slice()], pq_row)
        .optional()?;
    match last_resort {
        Some(row) => pq_prekey(row, "last-resort PQ prekey").map(Some),
        None if !pop_one_time => pop_pq_one_time(conn, identity),
        None => Ok(None),
    }
}

/// Delete and return the lowest-id one-time PQ prekey of `identity`.
fn pop_pq_one_time(
    conn: &Connection,
    identity: &IdentityBytes,
) -> Result<Option<PqPrekey>, StoreError> {
    conn.prepare_cached(
        "DELETE FROM pq_one_time_prekeys
         WHERE identity = ?1
           AND id = (SELECT min(id) FROM pq_one_time_prekeys WHERE identity = ?1)
         RETURNING id, encapsulation_key, signature",
    )?
    .query_row(params![identity.as_slice()], pq_row)
    .optional()?
    .map(|row| pq_prekey(row, "one-time PQ prekey"))
    .transpose()
}

/// (id, encapsulation key, signature) as read from a PQ prekey row.
type PqRow = (i64, Vec<u8>, Vec<u8>);

fn pq_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<PqRow> {
    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
}

/// A PQ prekey from its row, every column checked (a malformed row is an error, not a panic).
fn pq_prekey((id, ek, signature): PqRow, what: &str) -> Result<PqPrekey, StoreError> {
    Ok(PqPrekey {
        id: u32_column(id, what)?,
        encapsulation_key: Box::new(blob_array::<KEM_ENCAPSULATION_KEY_LEN>(&ek, what)?),
        signature: blob_array(&signature, what)?,
    })
}

/// Store PQ prekeys for `identity`: replace its last-resort key if one is given, and add the
/// one-time keys (ids already held are replaced), unless the identity holds no name or the
/// one-time stock would grow past `max_stock`. Like the classical publish, a request that adds
/// no new one-time id (a last-resort rotation) is never refused for the stock. The caller has
/// checked every signature, the encapsulation keys, and the last-resort id bit.
pub(super) fn publish_pq_prekeys(
    conn: &Connection,
    identity: &IdentityBytes,
    last_resort: Option<&PqPrekey>,
    one_time: &[PqPrekey],
    max_stock: u32,
) -> Result<WriteResult, StoreError> {
    if !conn
        .prepare_cached("SELECT 1 FROM users WHERE identity = ?1")?
        .exists(params![identity.as_slice()])?
    {
        return Ok(WriteResult::NotRegistered);
    }
    let stock = pq_one_time_stock(conn, identity)?;
    let mut held =
        conn.prepare_cached("SELECT 1 FROM pq_one_time_prekeys WHERE identity = ?1 AND id = ?2")?;
    let mut added: u64 = 0;
    let ids: BTreeSet<u32> = one_time.iter().map(|key| key.id).collect();
    for id in ids {
        if !held.exists(params![identity.as_slice(), i64::from(id)])? {
            added = added.saturating_add(1);
        }
    }
    if added > 0 && stock.saturating_add(added) > u64::from(max_stock) {
        return Ok(WriteResult::TooManyPrekeys);
    }
    if let Some(key) = last_resort {
        conn.prepare_cached(
            "INSERT INTO pq_last_resort_prekeys (identity, id, encapsulation_key, signature)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (identity) DO UPDATE SET
                 id = excluded.id, encapsulation_key = excluded.encapsulation_key,
                 signature = excluded.signature",
        )?
        .execute(params![
            identity.as_slice(),
            i64::from(key.id),
            key.encapsulation_key.as_slice(),
            key.signature.as_slice(),
        ])?;
    }
    let mut insert = conn.prepare_cached(
        "INSERT INTO pq_one_time_prekeys (identity, id, encapsulation_key, signature)
         VALUES (?1, ?2, ?3, ?4)
         ON CONFLICT (identity, id) DO UPDATE SET
             encapsulation_key = excluded.encapsulation_key, signature = excluded.signature",
    )?;
    for key in one_time {
        insert.execute(params![
            identity.as_slice(),
            i64::from(key.id),
            key.encapsulation_key.as_slice(),
            key.signature.as_slice(),
        ])?;
    }
    let remaining = pq_one_time_stock(conn, identity)?;
    Ok(WriteResult::PqPrekeysStored {
        one_time_remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
    })
}

/// One-time PQ prekeys held for `identity`.
fn pq_one_time_stock(conn: &Connection, identity: &IdentityBytes) -> Result<u64, StoreError> {
    let count: i64 = conn
        .prepare_cached("SELECT count(*) FROM pq_one_time_prekeys WHERE identity = ?1")?
        .query_row(params![identity.as_slice()], |row| row.get(0))?;
    non_negative(count, "one-time PQ prekey count")
}

/// Delete every prekey and KeyPackage of `identity` (its name was freed).
pub(super) fn delete_prekeys_of(conn: &Connection, identity: &[u8]) -> Result<(), StoreError> {
    // Classical one-time prekeys go with their signed prekey (ON DELETE CASCADE).
    for table in [
        "DELETE FROM signed_prekeys WHERE identity = ?1",
        "DELETE FROM pq_last_resort_prekeys WHERE identity = ?1",
        "DELETE FROM pq_one_time_prekeys WHERE identity = ?1",
        "DELETE FROM key_packages_last_resort WHERE identity = ?1",
        "DELETE FROM key_packages_one_time WHERE identity = ?1",
    ] {
        conn.prepare_cached(table)?.execute(params![identity])?;
    }
    Ok(())
}

/// Delete the prekeys and KeyPackages of identities that hold no name: nobody can fetch them by name, and
/// keeping them would let anyone store keys for free. (PQ prekeys also go with the user row by
/// ON DELETE CASCADE; this sweep catches any left while foreign keys were off.)
pub(super) fn delete_nameless_prekeys(conn: &Connection) -> Result<(), StoreError> {
    for table in [
        "DELETE FROM signed_prekeys WHERE identity NOT IN (SELECT identity FROM users)",
        "DELETE FROM pq_last_resort_prekeys WHERE identity NOT IN (SELECT identity FROM users)",
        "DELETE FROM pq_one_time_prekeys WHERE identity NOT IN (SELECT identity FROM users)",
        "DELETE FROM key_packages_last_resort WHERE identity NOT IN (SELECT identity FROM users)",
        "DELETE FROM key_packages_one_time WHERE identity NOT IN (SELECT identity FROM users)",
    ] {
        conn.prepare_cached(table)?.execute([])?;
    }
    Ok(())
}

/// Prekeys held by all identities together, for metrics: one row, kept by triggers in the
/// same transactions as the prekeys (a count over millions of rows took 0.5 s per scrape).
pub(super) fn prekey_stock(conn: &Connection) -> Result<PrekeyStock, StoreError> {
    let (one_time, pq_one_time, pq_last_resort): (i64, i64, i64) = conn
        .prepare_cached(
            "SELECT one_time, pq_one_time, pq_last_resort FROM prekey_totals
             WHERE singleton = 0",
        )?
        .query_row([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?;
    Ok(PrekeyStock {
        one_time: non_negative(one_time, "one-time prekey total")?,
        pq_one_time: non_negative(pq_one_time, "one-time PQ prekey total")?,
        pq_last_resort: non_negative(pq_last_resort, "last-resort PQ prekey total")?,
    })
}
