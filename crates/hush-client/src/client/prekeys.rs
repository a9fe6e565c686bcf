//! Keeping our prekeys published: the classical signed and one-time prekeys, and the
//! `hush-v2` signed ML-KEM-768 prekeys (one last-resort key and a stock of one-time keys).
//!
//! Every secret is committed to the profile before its public half leaves, so a crash between
//! the two can only leave a secret nobody can use, never a published key we cannot open.
//! Maintenance runs on every new relay connection (and at `init`).

use super::*;

/// One-time PQ prekeys published per refill: one `PublishPqPrekeys` request
/// ([`hush_proto::relay::MAX_PQ_PREKEYS_PER_PUBLISH`]). Each is about 1.2 KB on the relay
/// (1 184-byte encapsulation key, 64-byte signature), so a full stock costs about 60 KB per
/// user there, against 4 KB for the 100 classical ones; the last-resort key covers the gaps.
pub const PQ_PREKEY_BATCH: usize = hush_proto::relay::MAX_PQ_PREKEYS_PER_PUBLISH;

/// Refill the one-time PQ prekeys when the relay reports fewer than this many left. With
/// [`PQ_PREKEY_BATCH`] on top, the relay holds at most 49 + 40 of ours. Below it a busy
/// user's first messages use the last-resort key (still `hush-v2`, only without the extra
/// forward secrecy of a deleted one-time key) until the next connection refills.
pub const PQ_PREKEY_LOW_WATER: u32 = 10;

impl Client {
    /// Rotate the signed prekey (and with it the last-resort PQ prekey) when old; refill the
    /// one-time prekeys of both kinds when low. New secrets are committed before they are
    /// published.
    pub(super) async fn maintain_prekeys(&mut self) -> Result<(), ClientError> {
        let now = now_ms() / 1000;
        let rotate = self
            .prekeys
            .signed_is_older_than(now, SIGNED_PREKEY_MAX_AGE);
        if rotate {
            self.prekeys.rotate_signed(&mut OsRng, &self.identity, now);
            // The last-resort PQ prekey lives as long as the signed prekey; the previous ones
            // stay in `LocalPrekeys` for late first messages.
            self.prekeys
                .rotate_pq_last_resort(&mut OsRng, &self.identity, now);
            self.save_prekeys()?;
        }
        // Publishing nothing new tells us the stock; refill if it is low.
        let signed_prekey = self
            .prekeys
            .current_signed()
            .ok_or_else(|| ClientError::Invalid("no signed prekey".into()))?;
        let reply = self
            .open_conn()?
            .request(&Request::PublishPrekeys {
                signed_prekey,
                one_time: Vec::new(),
            })
            .await?;
        if let Reply::PrekeysStored { one_time_remaining } = reply {
            if one_time_remaining < PREKEY_LOW_WATER {
                let one_time = self.prekeys.generate_one_time(&mut OsRng, PREKEY_BATCH);
                self.save_prekeys()?;
                self.open_conn()?
                    .request(&Request::PublishPrekeys {
                        signed_prekey,
                        one_time,
                    })
                    .await?;
            }
        }
        self.maintain_pq_prekeys(now).await
    }

    /// Publish the current last-resort PQ prekey and refill the one-time PQ stock when low.
    /// A relay older than `hush-v2` does not know the request: we carry on (our bundle there
    /// stays `hush-v1`, which `hush-v2` contacts refuse, loudly, on their side).
    async fn maintain_pq_prekeys(&mut self, now: u64) -> Result<(), ClientError> {
        self.ensure_pq_last_resort()?;
        let last_resort = self.prekeys.current_pq_last_resort();
        let reply = self
            .open_conn()?
            .request(&Request::PublishPqPrekeys {
                last_resort,
                one_time: Vec::new(),
            })
            .await;
        let remaining = match reply {
            Ok(Reply::PqPrekeysStored { one_time_remaining }) => one_time_remaining,
            Ok(_) => return Err(ClientError::Network(NetError::UnexpectedReply)),
            Err(NetError::Relay(e)) if e.code == ErrorCode::UnknownRequest => {
                tracing::debug!("the relay does not store PQ prekeys (older than hush-v2)");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        if remaining >= PQ_PREKEY_LOW_WATER {
            return Ok(());
        }
        let one_time =
            self.prekeys
                .generate_pq_one_time(&mut OsRng, &self.identity, PQ_PREKEY_BATCH, now);
        self.save_prekeys()?;
        let reply = self
            .open_conn()?
            .request(&Request::PublishPqPrekeys {
                last_resort: None,
                one_time,
            })
            .await?;
        match reply {
            Reply::PqPrekeysStored { .. } => Ok(()),
            _ => Err(ClientError::Network(NetError::UnexpectedReply)),
        }
    }

    /// Give a profile written before `hush-v2` its first last-resort PQ prekey (committed).
    pub(super) fn ensure_pq_last_resort(&mut self) -> Result<(), ClientError> {
        if self.prekeys.current_pq_last_resort().is_none() {
            self.prekeys
                .rotate_pq_last_resort(&mut OsRng, &self.identity, now_ms() / 1000);
            self.save_prekeys()?;
        }
        Ok(())
    }

    /// The connection being maintained (opened by the caller).
    pub(super) fn open_conn(&mut self) -> Result<&mut Connection, ClientError> {
        self.conn
            .as_mut()
            .ok_or(ClientError::Network(NetError::Closed))
    }

    pub(super) fn save_prekeys(&mut self) -> Result<(), ClientError> {
        let tx = self.store.tx()?;
        tx.put(NS_PREKEYS, KEY_SELF, &self.prekeys.pickle())?;
        tx.commit()?;
        Ok(())
    }
}
