//! Moving an existing `hush-v1` conversation to `hush-v2` (docs/PROTOCOL.md, "Migration to
//! hush-v2").
//!
//! Sessions made before `hush-v2` keep working (their messages still decrypt), but nothing
//! tells us when the contact's hush learns `hush-v2`. So before sending on a `hush-v1`
//! session, the client fetches the contact's bundle, at most once per
//! [`UPGRADE_CHECK_INTERVAL`] (the time of the last check is kept in the profile): a verified
//! `hush-v2` bundle starts a new `hush-v2` session, which carries this message, marks the
//! contact `hush-v2` for good, and which the peer adopts as it adopts any newer inbound
//! session. A `hush-v1` bundle leaves the `hush-v1` session in use until the next check.
//! Fetching a bundle uses up one of the contact's one-time prekeys, hence the bound.

use std::time::Duration;

use super::contacts::sendable;
use super::*;

/// Least time between two bundle fetches that look for a `hush-v2` upgrade of one contact
/// whose session is still `hush-v1` (24 h).
pub const UPGRADE_CHECK_INTERVAL: Duration = Duration::from_secs(24 * 3600);

/// Per contact: when (ms since the Unix epoch) its bundle was last fetched.
const NS_UPGRADE_CHECK: &str = "upgrade-check";

impl Client {
    /// Before queueing a message to an existing contact: make sure we hold a session we may
    /// send on. With none (after `trust`, or only sessions weaker than the contact requires)
    /// a new one is started from a fresh bundle, which must satisfy the contact's profile (a
    /// refused downgrade fails the send: nothing is queued). With a `hush-v1` one, look for a
    /// `hush-v2` upgrade when a check is due at `now` (ms); failing to reach the relay for it
    /// keeps the `hush-v1` session in use.
    /// [`Client::prepare_session`] now, for front ends that queue and flush themselves (the
    /// TUI): the same session check and `hush-v2` upgrade `send_text` runs.
    pub async fn prepare_to_send(&mut self, name: &str) -> Result<(), ClientError> {
        self.prepare_session(name, now_ms()).await
    }

    pub(super) async fn prepare_session(
        &mut self,
        name: &str,
        now: u64,
    ) -> Result<(), ClientError> {
        // Read in a block: the transaction must not live across the awaits below (the TUI
        // runs this on a spawned task, which needs a `Send` future).
        let (active, last_check) = {
            let tx = self.store.tx()?;
            let Some(contact) = tx.get::<Contact>(NS_CONTACT, name)? else {
                return Ok(());
            };
            if contact.changed_key.is_some() {
                // Blocked until the user accepts the key (`queue_text` says so).
                return Ok(());
            }
            let trusted = contact.key()?;
            let active = tx
                .get::<SessionSet>(NS_SESSIONS, name)?
                .unwrap_or_default()
                .load()?
                .iter()
                .find(|s| sendable(s, &contact, &trusted))
                .map(Session::profile);
            let last_check: Option<u64> = tx.get(NS_UPGRADE_CHECK, name)?;
            (active, last_check)
        };
        match active {
            Some(profile) if profile >= Profile::CURRENT => Ok(()),
            Some(_) => {
                // A check from the future (the clock went back) counts as due.
                let recent = last_check.is_some_and(|t| {
                    t <= now && now - t < UPGRADE_CHECK_INTERVAL.as_millis() as u64
                });
                if recent {
                    return Ok(());
                }
                self.check_upgrade_at(name, now).await
            }
            None => {
                let bundle = self.fetch_bundle(name).await?;
                self.start_session(name, bundle).map(|_| ())
            }
        }
    }

    /// Fetch `name`'s bundle now and, if it is `hush-v2`, start a `hush-v2` session with
    /// them (the check's time is recorded either way). Called by the send path when a check
    /// is due; public (hidden) so tests can run it without waiting a day.
    #[doc(hidden)]
    pub async fn check_upgrade_at(&mut self, name: &str, now: u64) -> Result<(), ClientError> {
        // Recorded before the fetch: a fetch pops the contact's one-time prekeys on the relay,
        // so a network attacker who cuts every reply must not turn each of our sends into
        // another fetch (found by review).
        {
            let tx = self.store.tx()?;
            Self::record_upgrade_check(&tx, name, now)?;
            tx.commit()?;
        }
        let bundle = match self.fetch_bundle(name).await {
            Ok(bundle) => bundle,
            // Not a verdict on the contact: keep the hush-v1 session, check again tomorrow.
            Err(ClientError::Network(_) | ClientError::Relay(_) | ClientError::UnknownUser(_)) => {
                return Ok(())
            }
            Err(e) => return Err(e),
        };
        if bundle.pq_prekey.is_none() {
            // Still hush-v1 (their hush is older, or their relay is): nothing to do yet.
            return Ok(());
        }
        self.start_session(name, bundle).map(|_| ())
    }

    /// Record in `tx` that `name`'s bundle was fetched at `now` (ms).
    pub(super) fn record_upgrade_check(
        tx: &crate::store::Tx<'_>,
        name: &str,
        now: u64,
    ) -> Result<(), ClientError> {
        tx.put(NS_UPGRADE_CHECK, name, &now)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    #[test]
    fn a_contact_stored_before_hush_v2_is_legacy_and_the_profile_is_stored_by_name() {
        // As a build before hush-v2 wrote it: no `required`.
        let legacy: Contact = serde_json::from_str(
            r#"{"name":"bob","identity_key":"00","verified":false,"changed_key":null,"unread":0}"#,
        )
        .unwrap();
        assert_eq!(legacy.required, Profile::V1);
        let mut upgraded = legacy;
        upgraded.required = Profile::V2;
        let json = serde_json::to_value(&upgraded).unwrap();
        assert_eq!(json["required"], "hush-v2");
        let back: Contact = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(back, upgraded);
        let mut unknown = json;
        unknown["required"] = "hush-v9".into();
        assert!(serde_json::from_value::<Contact>(unknown).is_err());
    }
}
