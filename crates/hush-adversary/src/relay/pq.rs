//! The operator against `hush-v2` PQ prekeys: strip them from bundles (a downgrade attempt),
//! withhold the one-time ones (so every initiator gets the last-resort key), or serve a
//! popped one-time key a second time.

use hush_proto::PqPrekey;
use rusqlite::params;

use super::{AdversaryError, MaliciousRelay};

impl MaliciousRelay {
    /// Delete every PQ prekey (last-resort and one-time) the relay holds for `identity`, so
    /// its bundles are served as `hush-v1` (no PQ prekey): the downgrade a `hush-v2` client
    /// must refuse. Returns how many were deleted. The owner's next connection publishes a
    /// last-resort key again.
    pub fn strip_pq_prekeys(&self, identity: &[u8; 32]) -> Result<usize, AdversaryError> {
        let db = self.db()?;
        let last_resort = db.execute(
            "DELETE FROM pq_last_resort_prekeys WHERE identity = ?1",
            params![identity.as_slice()],
        )?;
        Ok(last_resort + self.withhold_pq_one_time_prekeys(identity)?)
    }

    /// Delete `identity`'s one-time PQ prekeys, so bundles carry its last-resort PQ prekey.
    /// Returns how many were withheld.
    pub fn withhold_pq_one_time_prekeys(
        &self,
        identity: &[u8; 32],
    ) -> Result<usize, AdversaryError> {
        Ok(self.db()?.execute(
            "DELETE FROM pq_one_time_prekeys WHERE identity = ?1",
            params![identity.as_slice()],
        )?)
    }

    /// The one-time PQ prekeys held for `identity`, lowest id (the next served) first.
    pub fn pq_one_time_prekeys(
        &self,
        identity: &[u8; 32],
    ) -> Result<Vec<PqPrekey>, AdversaryError> {
        let db = self.db()?;
        let mut stmt = db.prepare(
            "SELECT id, encapsulation_key, signature FROM pq_one_time_prekeys
             WHERE identity = ?1 ORDER BY id",
        )?;
        let rows = stmt
            .query_map(params![identity.as_slice()], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, Vec<u8>>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let malformed = || AdversaryError::Invalid("malformed PQ prekey row".into());
        rows.into_iter()
            .map(|(id, ek, signature)| {
                Ok(PqPrekey {
                    id: u32::try_from(id).map_err(|_| malformed())?,
                    encapsulation_key: Box::new(ek.as_slice().try_into().map_err(|_| malformed())?),
                    signature: signature.as_slice().try_into().map_err(|_| malformed())?,
                })
            })
            .collect()
    }

    /// Put `key` (typically one already popped by a fetch) back into `identity`'s one-time
    /// PQ stock, so the relay serves it to another initiator.
    pub fn serve_pq_one_time_prekey_again(
        &self,
        identity: &[u8; 32],
        key: &PqPrekey,
    ) -> Result<(), AdversaryError> {
        self.db()?.execute(
            "INSERT INTO pq_one_time_prekeys (identity, id, encapsulation_key, signature)
             VALUES (?1, ?2, ?3, ?4)
             ON CONFLICT (identity, id) DO UPDATE SET
                 encapsulation_key = excluded.encapsulation_key, signature = excluded.signature",
            params![
                identity.as_slice(),
                i64::from(key.id),
                key.encapsulation_key.as_slice(),
                key.signature.as_slice()
            ],
        )?;
        Ok(())
    }
}
