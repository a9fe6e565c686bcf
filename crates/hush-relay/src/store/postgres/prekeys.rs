//! Prekeys in the relay database: the classical signed and one-time prekeys of `hush-v1`, and
//! the PQ (ML-KEM-768) prekeys that `hush-v2` adds: one current last-resort key and a capped
//! stock of one-time keys per identity. A fetch pops a classical and a PQ one-time prekey in the
//! batch transaction, so no two fetches ever receive the same one of either kind (the batch
//! also holds the write lock, so fetches from other nodes wait for it).
//!
//! Signatures are checked by the connection handler before a write is queued; what is stored
//! here is served as stored, and each client verifies every bundle it fetches.

use std::collections::BTreeSet;

use hush_proto::pq::{PqPrekey, KEM_ENCAPSULATION_KEY_LEN};
use hush_proto::{IdentityPublicKey, OneTimePrekey, PrekeyBundle, SignedPrekey, X25519PublicKey};
use postgres::{GenericClient, Row};

use super::{blob_array, i64_bits_to_u64, non_negative, u32_column, u64_bits_to_i64, Db};
use crate::store::{IdentityBytes, PrekeyStock, StoreError, WriteResult};

/// Whether `identity` holds a name.
pub(super) fn is_registered<C: GenericClient>(
    db: &mut Db<'_, C>,
    identity: &[u8],
) -> Result<bool, StoreError> {
    db.exists("SELECT 1 FROM users WHERE identity = $1", &[&identity])
}

/// How many of `ids` (deduplicated) `identity` does not hold yet in the one-time table named by
/// `held_sql` (which returns the held ids among `= ANY($2)`).
fn new_ids<C: GenericClient>(
    db: &mut Db<'_, C>,
    held_sql: &'static str,
    identity: &IdentityBytes,
    ids: impl Iterator<Item = u32>,
) -> Result<u64, StoreError> {
    let ids: BTreeSet<i64> = ids.map(i64::from).collect();
    if ids.is_empty() {
        return Ok(0);
    }
    let list: Vec<i64> = ids.iter().copied().collect();
    let held = db.query(held_sql, &[&identity.as_slice(), &list])?.len();
    Ok(u64::try_from(ids.len().saturating_sub(held)).unwrap_or(u64::MAX))
}

/// Replace the signed prekey and add one-time prekeys, unless the identity holds no name or
/// that would grow the one-time stock past `max_stock`. A publish that adds no new one-time
/// prekey id (a signed prekey rotation, or re-sending ids already held) is never refused, even
/// if the stock is already above a since-lowered limit.
pub(super) fn publish_prekeys<C: GenericClient>(
    db: &mut Db<'_, C>,
    identity: &IdentityBytes,
    signed_prekey: &SignedPrekey,
    one_time: &[OneTimePrekey],
    max_stock: u32,
) -> Result<WriteResult, StoreError> {
    // Checked in the same transaction as the insert, so a name freed meanwhile cannot leave
    // fresh keys behind (and the expiry sweep removes any left otherwise).
    if !is_registered(db, identity)? {
        return Ok(WriteResult::NotRegistered);
    }
    let stock = one_time_stock(db, identity)?;
    let added = new_ids(
        db,
        "SELECT id FROM one_time_prekeys WHERE identity = $1 AND id = ANY($2)",
        identity,
        one_time.iter().map(|key| key.id),
    )?;
    if added > 0 && stock.saturating_add(added) > u64::from(max_stock) {
        return Ok(WriteResult::TooManyPrekeys);
    }

    db.execute(
        "INSERT INTO signed_prekeys (identity, id, created_at, public, signature)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (identity) DO UPDATE SET
             id = excluded.id, created_at = excluded.created_at,
             public = excluded.public, signature = excluded.signature",
        &[
            &identity.as_slice(),
            &i64::from(signed_prekey.id),
            &u64_bits_to_i64(signed_prekey.created_at),
            &signed_prekey.public_key.as_bytes().as_slice(),
            &signed_prekey.signature.as_slice(),
        ],
    )?;
    for key in one_time {
        // An upsert, one row per statement: a later key with an id already listed replaces
        // the earlier one, as in SQLite (one multi-row upsert may not touch a row twice).
        db.execute(
            "INSERT INTO one_time_prekeys (identity, id, public) VALUES ($1, $2, $3)
             ON CONFLICT (identity, id) DO UPDATE SET public = excluded.public",
            &[
                &identity.as_slice(),
                &i64::from(key.id),
                &key.public_key.as_bytes().as_slice(),
            ],
        )?;
    }
    let remaining = one_time_stock(db, identity)?;
    Ok(WriteResult::PrekeysStored {
        one_time_remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
    })
}

/// One-time prekeys held for `identity`.
fn one_time_stock<C: GenericClient>(
    db: &mut Db<'_, C>,
    identity: &IdentityBytes,
) -> Result<u64, StoreError> {
    let count: i64 = db
        .query_one(
            "SELECT count(*) FROM one_time_prekeys WHERE identity = $1",
            &[&identity.as_slice()],
        )?
        .try_get(0)?;
    non_negative(count, "one-time prekey count")
}

/// The user's signed prekey plus (if `pop_one_time`) the lowest-id classical one-time prekey,
/// and a PQ prekey if the user has any ([`pq_prekey_for_bundle`]). One-time keys are deleted
/// here, in the batch transaction, so no two fetches ever receive the same one.
pub(super) fn fetch_bundle<C: GenericClient>(
    db: &mut Db<'_, C>,
    name: &str,
    pop_one_time: bool,
) -> Result<WriteResult, StoreError> {
    let Some(row) = db.query_opt(
        "SELECT u.identity, s.id, s.created_at, s.public, s.signature
         FROM users AS u JOIN signed_prekeys AS s ON s.identity = u.identity
         WHERE u.name = $1",
        &[&name],
    )?
    else {
        return Ok(WriteResult::UnknownUser);
    };
    let identity: IdentityBytes = blob_array(&row.try_get::<_, Vec<u8>>(0)?, "user identity")?;
    let identity_key = IdentityPublicKey::from_bytes(&identity)
        .map_err(|err| StoreError(format!("stored identity key is invalid: {err}")))?;
    let signed_prekey = SignedPrekey {
        id: u32_column(row.try_get(1)?, "signed prekey id")?,
        created_at: i64_bits_to_u64(row.try_get(2)?),
        public_key: X25519PublicKey::from_bytes(blob_array(
            &row.try_get::<_, Vec<u8>>(3)?,
            "signed prekey",
        )?),
        signature: blob_array(&row.try_get::<_, Vec<u8>>(4)?, "signed prekey signature")?,
    };

    let one_time_prekey = if pop_one_time {
        pop_one_time_prekey(db, &identity)?
    } else {
        None
    };
    let pq_prekey = pq_prekey_for_bundle(db, &identity, pop_one_time)?;
    Ok(WriteResult::Bundle(PrekeyBundle {
        identity_key,
        signed_prekey,
        one_time_prekey,
        pq_prekey,
    }))
}

/// Delete and return the lowest-id classical one-time prekey of `identity`.
fn pop_one_time_prekey<C: GenericClient>(
    db: &mut Db<'_, C>,
    identity: &IdentityBytes,
) -> Result<Option<OneTimePrekey>, StoreError> {
    db.query_opt(
        "DELETE FROM one_time_prekeys
         WHERE identity = $1
           AND id = (SELECT min(id) FROM one_time_prekeys WHERE identity = $1)
         RETURNING id, public",
        &[&identity.as_slice()],
    )?
    .map(|row| {
        Ok(OneTimePrekey {
            id: u32_column(row.try_get(0)?, "one-time prekey id")?,
            public_key: X25519PublicKey::from_bytes(blob_array(
                &row.try_get::<_, Vec<u8>>(1)?,
                "one-time prekey",
            )?),
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
fn pq_prekey_for_bundle<C: GenericClient>(
    db: &mut Db<'_, C>,
    identity: &IdentityBytes,
    pop_one_time: bool,
) -> Result<Option<PqPrekey>, StoreError> {
    if pop_one_time {
        if let Some(key) = pop_pq_one_time(db, identity)? {
            return Ok(Some(key));
        }
    }
    let last_resort = db.query_opt(
        "SELECT id, encapsulation_key, signature FROM pq_last_resort_prekeys
         WHERE identity = $1",
        &[&identity.as_slice()],
    )?;
    match last_resort {
        Some(row) => pq_prekey(&row, "last-resort PQ prekey").map(Some),
        None if !pop_one_time => pop_pq_one_time(db, identity),
        None => Ok(None),
    }
}

/// Delete and return the lowest-id one-time PQ prekey of `identity`.
fn pop_pq_one_time<C: GenericClient>(
    db: &mut Db<'_, C>,
    identity: &IdentityBytes,
) -> Result<Option<PqPrekey>, StoreError> {
    db.query_opt(
        "DELETE FROM pq_one_time_prekeys
         WHERE identity = $1
           AND id = (SELECT min(id) FROM pq_one_time_prekeys WHERE identity = $1)
         RETURNING id, encapsulation_key, signature",
        &[&identity.as_slice()],
    )?
    .map(|row| pq_prekey(&row, "one-time PQ prekey"))
    .transpose()
}

/// A PQ prekey from its (id, encapsulation key, signature) row, every column checked (a
/// malformed row is an error, not a panic).
fn pq_prekey(row: &Row, what: &str) -> Result<PqPrekey, StoreError> {
    let ek: Vec<u8> = row.try_get(1)?;
    let signature: Vec<u8> = row.try_get(2)?;
    Ok(PqPrekey {
        id: u32_column(row.try_get(0)?, what)?,
        encapsulation_key: Box::new(blob_array::<KEM_ENCAPSULATION_KEY_LEN>(&ek, what)?),
        signature: blob_array(&signature, what)?,
    })
}

/// Store PQ prekeys for `identity`: replace its last-resort key if one is given, and add the
/// one-time keys (ids already held are replaced), unless the identity holds no name or the
/// one-time stock would grow past `max_stock`. Like the classical publish, a request that adds
/// no new one-time id (a last-resort rotation) is never refused for the stock. The caller has
/// checked every signature, the encapsulation keys, and the last-resort id bit.
pub(super) fn publish_pq_prekeys<C: GenericClient>(
    db: &mut Db<'_, C>,
    identity: &IdentityBytes,
    last_resort: Option<&PqPrekey>,
    one_time: &[PqPrekey],
    max_stock: u32,
) -> Result<WriteResult, StoreError> {
    if !is_registered(db, identity)? {
        return Ok(WriteResult::NotRegistered);
    }
    let stock = pq_one_time_stock(db, identity)?;
    let added = new_ids(
        db,
        "SELECT id FROM pq_one_time_prekeys WHERE identity = $1 AND id = ANY($2)",
        identity,
        one_time.iter().map(|key| key.id),
    )?;
    if added > 0 && stock.saturating_add(added) > u64::from(max_stock) {
        return Ok(WriteResult::TooManyPrekeys);
    }
    if let Some(key) = last_resort {
        db.execute(
            "INSERT INTO pq_last_resort_prekeys (identity, id, encapsulation_key, signature)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (identity) DO UPDATE SET
                 id = excluded.id, encapsulation_key = excluded.encapsulation_key,
                 signature = excluded.signature",
            &[
                &identity.as_slice(),
                &i64::from(key.id),
                &key.encapsulation_key.as_slice(),
                &key.signature.as_slice(),
            ],
        )?;
    }
    for key in one_time {
        db.execute(
            "INSERT INTO pq_one_time_prekeys (identity, id, encapsulation_key, signature)
             VALUES ($1, $2, $3, $4)
             ON CONFLICT (identity, id) DO UPDATE SET
                 encapsulation_key = excluded.encapsulation_key, signature = excluded.signature",
            &[
                &identity.as_slice(),
                &i64::from(key.id),
                &key.encapsulation_key.as_slice(),
                &key.signature.as_slice(),
            ],
        )?;
    }
    let remaining = pq_one_time_stock(db, identity)?;
    Ok(WriteResult::PqPrekeysStored {
        one_time_remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
    })
}

/// One-time PQ prekeys held for `identity`.
fn pq_one_time_stock<C: GenericClient>(
    db: &mut Db<'_, C>,
    identity: &IdentityBytes,
) -> Result<u64, StoreError> {
    let count: i64 = db
        .query_one(
            "SELECT count(*) FROM pq_one_time_prekeys WHERE identity = $1",
            &[&identity.as_slice()],
        )?
        .try_get(0)?;
    non_negative(count, "one-time PQ prekey count")
}

/// Delete every prekey and KeyPackage of `identity` (its name was freed).
pub(super) fn delete_prekeys_of<C: GenericClient>(
    db: &mut Db<'_, C>,
    identity: &[u8],
) -> Result<(), StoreError> {
    // Classical one-time prekeys go with their signed prekey (ON DELETE CASCADE).
    for sql in [
        "DELETE FROM signed_prekeys WHERE identity = $1",
        "DELETE FROM pq_last_resort_prekeys WHERE identity = $1",
        "DELETE FROM pq_one_time_prekeys WHERE identity = $1",
        "DELETE FROM key_packages_last_resort WHERE identity = $1",
        "DELETE FROM key_packages_one_time WHERE identity = $1",
    ] {
        db.execute(sql, &[&identity])?;
    }
    Ok(())
}

/// Delete the prekeys and KeyPackages of identities that hold no name: nobody can fetch them
/// by name, and keeping them would let anyone store keys for free. (PQ prekeys and KeyPackages
/// also go with the user row by ON DELETE CASCADE; this sweep is the same as SQLite's.)
pub(super) fn delete_nameless_prekeys<C: GenericClient>(
    db: &mut Db<'_, C>,
) -> Result<(), StoreError> {
    for sql in [
        "DELETE FROM signed_prekeys AS t
         WHERE NOT EXISTS (SELECT 1 FROM users AS u WHERE u.identity = t.identity)",
        "DELETE FROM pq_last_resort_prekeys AS t
         WHERE NOT EXISTS (SELECT 1 FROM users AS u WHERE u.identity = t.identity)",
        "DELETE FROM pq_one_time_prekeys AS t
         WHERE NOT EXISTS (SELECT 1 FROM users AS u WHERE u.identity = t.identity)",
        "DELETE FROM key_packages_last_resort AS t
         WHERE NOT EXISTS (SELECT 1 FROM users AS u WHERE u.identity = t.identity)",
        "DELETE FROM key_packages_one_time AS t
         WHERE NOT EXISTS (SELECT 1 FROM users AS u WHERE u.identity = t.identity)",
    ] {
        db.execute(sql, &[])?;
    }
    Ok(())
}

/// Prekeys held by all identities together, for metrics: one row, kept by triggers in the
/// same transactions as the prekeys.
pub(super) fn prekey_stock<C: GenericClient>(
    db: &mut Db<'_, C>,
) -> Result<PrekeyStock, StoreError> {
    let row = db.query_one(
        "SELECT one_time, pq_one_time, pq_last_resort FROM prekey_totals WHERE singleton = 0",
        &[],
    )?;
    Ok(PrekeyStock {
        one_time: non_negative(row.try_get(0)?, "one-time prekey total")?,
        pq_one_time: non_negative(row.try_get(1)?, "one-time PQ prekey total")?,
        pq_last_resort: non_negative(row.try_get(2)?, "last-resort PQ prekey total")?,
    })
}
