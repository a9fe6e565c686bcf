//! MLS KeyPackages in the relay database, handled like PQ prekeys: per identity one last-resort
//! KeyPackage (replaced on publish, served whenever the one-time stock is empty) and a capped
//! stock of one-time ones, each popped by exactly one fetch in the batch transaction. The relay
//! never parses them: the client that fetches one checks its signature, ciphersuite, lifetime
//! and that its credential is the contact it expected.

use rusqlite::{params, Connection, OptionalExtension};

use super::{blob_array, non_negative};
use crate::store::{IdentityBytes, StoreError, WriteResult};

/// Store KeyPackages for `identity`, unless it holds no name or the one-time stock would grow
/// past `max_stock` (a publish that adds no one-time KeyPackage, a last-resort rotation, is
/// never refused for the stock).
pub(super) fn publish_key_packages(
    conn: &Connection,
    identity: &IdentityBytes,
    last_resort: Option<&[u8]>,
    one_time: &[Vec<u8>],
    max_stock: u32,
) -> Result<WriteResult, StoreError> {
    if !conn
        .prepare_cached("SELECT 1 FROM users WHERE identity = ?1")?
        .exists(params![identity.as_slice()])?
    {
        return Ok(WriteResult::NotRegistered);
    }
    let stock = one_time_stock(conn, identity)?;
    let added = u64::try_from(one_time.len()).unwrap_or(u64::MAX);
    if added > 0 && stock.saturating_add(added) > u64::from(max_stock) {
        return Ok(WriteResult::TooManyPrekeys);
    }
    if let Some(kp) = last_resort {
        conn.prepare_cached(
            "INSERT INTO key_packages_last_resort (identity, key_package) VALUES (?1, ?2)
             ON CONFLICT (identity) DO UPDATE SET key_package = excluded.key_package",
        )?
        .execute(params![identity.as_slice(), kp])?;
    }
    let mut insert = conn.prepare_cached(
        "INSERT INTO key_packages_one_time (identity, key_package) VALUES (?1, ?2)",
    )?;
    for kp in one_time {
        insert.execute(params![identity.as_slice(), kp])?;
    }
    let remaining = one_time_stock(conn, identity)?;
    Ok(WriteResult::KeyPackagesStored {
        one_time_remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
    })
}

/// One-time KeyPackages held for `identity`.
fn one_time_stock(conn: &Connection, identity: &IdentityBytes) -> Result<u64, StoreError> {
    let count: i64 = conn
        .prepare_cached("SELECT count(*) FROM key_packages_one_time WHERE identity = ?1")?
        .query_row(params![identity.as_slice()], |row| row.get(0))?;
    non_negative(count, "one-time KeyPackage count")
}

/// The oldest one-time KeyPackage of `name`, deleted here (so no two fetches get the same
/// one), else its last-resort KeyPackage. With `pop_one_time` false (that user's fetch budget
/// is spent) only the last-resort one is served.
pub(super) fn fetch_key_package(
    conn: &Connection,
    name: &str,
    pop_one_time: bool,
) -> Result<WriteResult, StoreError> {
    let identity: Option<Vec<u8>> = conn
        .prepare_cached("SELECT identity FROM users WHERE name = ?1")?
        .query_row(params![name], |row| row.get(0))
        .optional()?;
    let Some(identity) = identity else {
        return Ok(WriteResult::UnknownUser);
    };
    let identity: IdentityBytes = blob_array(&identity, "user identity")?;
    if pop_one_time {
        let popped: Option<Vec<u8>> = conn
            .prepare_cached(
                "DELETE FROM key_packages_one_time
                 WHERE id = (SELECT min(id) FROM key_packages_one_time WHERE identity = ?1)
                 RETURNING key_package",
            )?
            .query_row(params![identity.as_slice()], |row| row.get(0))
            .optional()?;
        if let Some(key_package) = popped {
            return Ok(WriteResult::KeyPackage {
                identity,
                key_package,
            });
        }
    }
    let last_resort: Option<Vec<u8>> = conn
        .prepare_cached("SELECT key_package FROM key_packages_last_resort WHERE identity = ?1")?
        .query_row(params![identity.as_slice()], |row| row.get(0))
        .optional()?;
    Ok(match last_resort {
        Some(key_package) => WriteResult::KeyPackage {
            identity,
            key_package,
        },
        None if pop_one_time => WriteResult::UnknownUser,
        None => {
            // Only a spent budget kept a one-time KeyPackage from being served: say so.
            if one_time_stock(conn, &identity)? > 0 {
                WriteResult::KeyPackageBudgetSpent
            } else {
                WriteResult::UnknownUser
            }
        }
    })
}
