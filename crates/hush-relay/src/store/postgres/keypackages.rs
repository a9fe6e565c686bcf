//! MLS KeyPackages in the relay database, handled like PQ prekeys: per identity one last-resort
//! KeyPackage (replaced on publish, served whenever the one-time stock is empty) and a capped
//! stock of one-time ones, each popped by exactly one fetch in the batch transaction. The relay
//! never parses them: the client that fetches one checks its signature, ciphersuite, lifetime
//! and that its credential is the contact it expected.

use postgres::GenericClient;

use super::prekeys::is_registered;
use super::{blob_array, non_negative, Db};
use crate::store::{IdentityBytes, StoreError, WriteResult};

/// Store KeyPackages for `identity`, unless it holds no name or the one-time stock would grow
/// past `max_stock` (a publish that adds no one-time KeyPackage, a last-resort rotation, is
/// never refused for the stock).
pub(super) fn publish_key_packages<C: GenericClient>(
    db: &mut Db<'_, C>,
    identity: &IdentityBytes,
    last_resort: Option<&[u8]>,
    one_time: &[Vec<u8>],
    max_stock: u32,
) -> Result<WriteResult, StoreError> {
    if !is_registered(db, identity)? {
        return Ok(WriteResult::NotRegistered);
    }
    let stock = one_time_stock(db, identity)?;
    let added = u64::try_from(one_time.len()).unwrap_or(u64::MAX);
    if added > 0 && stock.saturating_add(added) > u64::from(max_stock) {
        return Ok(WriteResult::TooManyPrekeys);
    }
    if let Some(kp) = last_resort {
        db.execute(
            "INSERT INTO key_packages_last_resort (identity, key_package) VALUES ($1, $2)
             ON CONFLICT (identity) DO UPDATE SET key_package = excluded.key_package",
            &[&identity.as_slice(), &kp],
        )?;
    }
    if !one_time.is_empty() {
        // One statement; `WITH ORDINALITY` keeps the publish order as the id (pop) order.
        db.execute(
            "INSERT INTO key_packages_one_time (identity, key_package)
             SELECT $1, kp FROM unnest($2::bytea[]) WITH ORDINALITY AS t(kp, n) ORDER BY n",
            &[&identity.as_slice(), &one_time],
        )?;
    }
    let remaining = one_time_stock(db, identity)?;
    Ok(WriteResult::KeyPackagesStored {
        one_time_remaining: u32::try_from(remaining).unwrap_or(u32::MAX),
    })
}

/// One-time KeyPackages held for `identity`.
fn one_time_stock<C: GenericClient>(
    db: &mut Db<'_, C>,
    identity: &IdentityBytes,
) -> Result<u64, StoreError> {
    let count: i64 = db
        .query_one(
            "SELECT count(*) FROM key_packages_one_time WHERE identity = $1",
            &[&identity.as_slice()],
        )?
        .try_get(0)?;
    non_negative(count, "one-time KeyPackage count")
}

/// The oldest one-time KeyPackage of `name`, deleted here (so no two fetches get the same
/// one), else its last-resort KeyPackage. With `pop_one_time` false (that user's fetch budget
/// is spent) only the last-resort one is served.
pub(super) fn fetch_key_package<C: GenericClient>(
    db: &mut Db<'_, C>,
    name: &str,
    pop_one_time: bool,
) -> Result<WriteResult, StoreError> {
    let Some(row) = db.query_opt("SELECT identity FROM users WHERE name = $1", &[&name])? else {
        return Ok(WriteResult::UnknownUser);
    };
    let identity: IdentityBytes = blob_array(&row.try_get::<_, Vec<u8>>(0)?, "user identity")?;
    if pop_one_time {
        let popped = db.query_opt(
            "DELETE FROM key_packages_one_time
             WHERE id = (SELECT min(id) FROM key_packages_one_time WHERE identity = $1)
             RETURNING key_package",
            &[&identity.as_slice()],
        )?;
        if let Some(row) = popped {
            return Ok(WriteResult::KeyPackage {
                identity,
                key_package: row.try_get(0)?,
            });
        }
    }
    let last_resort = db.query_opt(
        "SELECT key_package FROM key_packages_last_resort WHERE identity = $1",
        &[&identity.as_slice()],
    )?;
    Ok(match last_resort {
        Some(row) => WriteResult::KeyPackage {
            identity,
            key_package: row.try_get(0)?,
        },
        None if pop_one_time => WriteResult::UnknownUser,
        None => {
            // Only a spent budget kept a one-time KeyPackage from being served: say so.
            if one_time_stock(db, &identity)? > 0 {
                WriteResult::KeyPackageBudgetSpent
            } else {
                WriteResult::UnknownUser
            }
        }
    })
}
