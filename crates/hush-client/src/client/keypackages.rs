//! Keeping our MLS KeyPackages on the relay, as prekeys are kept: one last-resort KeyPackage
//! (rotated every [`KEY_PACKAGE_LAST_RESORT_MAX_AGE`]) and a stock of one-time ones, refilled
//! by [`KEY_PACKAGE_BATCH`] when the relay reports fewer than [`KEY_PACKAGE_LOW_WATER`].
//!
//! openmls stores each KeyPackage's private keys through the profile's storage provider in the
//! transaction that records the batch, and that transaction is committed before the public
//! KeyPackages leave: a crash in between leaves keys nobody can use, never a published
//! KeyPackage we cannot join with.

use super::*;
use crate::group::{engine as group, HushProvider, IdentitySigner, MemberId};

/// One-time KeyPackages published per refill (one `PublishKeyPackages` request).
pub const KEY_PACKAGE_BATCH: usize = 20;
/// Refill when the relay reports fewer one-time KeyPackages than this.
pub const KEY_PACKAGE_LOW_WATER: u32 = 5;
/// Rotate the last-resort KeyPackage after this many seconds (30 days).
pub const KEY_PACKAGE_LAST_RESORT_MAX_AGE: u64 = 30 * 24 * 3600;

/// Under [`KEY_SELF`]: the [`KeyPackageStock`] record.
const NS_KEY_PACKAGES: &str = "key-packages";

/// What we know of our KeyPackages on the relay.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
struct KeyPackageStock {
    /// When the current last-resort KeyPackage was made (s since the Unix epoch); 0: none.
    last_resort_made_at: u64,
    /// The current last-resort KeyPackage, until the relay confirmed it (published again on
    /// the next connection if the reply was lost).
    unpublished_last_resort: Option<Vec<u8>>,
}

impl Client {
    /// Our MLS member id: the registered name and the identity key.
    pub(super) fn member_id(&self) -> MemberId {
        MemberId {
            name: self.config.name.clone(),
            identity: *self.identity.public_key().as_bytes(),
        }
    }

    /// Rotate the last-resort KeyPackage when old and refill the one-time stock when low
    /// (new private keys committed before the KeyPackages are published). A relay without
    /// groups does not know the request: we carry on.
    pub(super) async fn maintain_key_packages(&mut self) -> Result<(), ClientError> {
        let now = now_ms() / 1000;
        let me = self.member_id();
        let mut stock: KeyPackageStock = self
            .store
            .tx()?
            .get(NS_KEY_PACKAGES, KEY_SELF)?
            .unwrap_or_default();
        if stock.last_resort_made_at == 0
            || now.saturating_sub(stock.last_resort_made_at) > KEY_PACKAGE_LAST_RESORT_MAX_AGE
        {
            let tx = self.store.tx()?;
            let provider = HushProvider::new(&tx);
            let signer = IdentitySigner::new(&self.identity);
            let kp = group::new_key_package(&provider, &signer, &me, true).map_err(group_err)?;
            stock.last_resort_made_at = now;
            stock.unpublished_last_resort = Some(kp);
            tx.put(NS_KEY_PACKAGES, KEY_SELF, &stock)?;
            tx.commit()?;
        }
        // Publishing nothing new (or only a new last-resort one) tells us the stock.
        let reply = self
            .open_conn()?
            .request(&Request::PublishKeyPackages {
                last_resort: stock.unpublished_last_resort.clone(),
                one_time: Vec::new(),
            })
            .await;
        let remaining = match reply {
            Ok(Reply::KeyPackagesStored { one_time_remaining }) => one_time_remaining,
            Ok(_) => return Err(ClientError::Network(NetError::UnexpectedReply)),
            Err(NetError::Relay(e)) if e.code == ErrorCode::UnknownRequest => {
                tracing::debug!("the relay does not store KeyPackages (older than groups)");
                return Ok(());
            }
            // A refusal (rate limit, quota) is about KeyPackages only: the connection serves
            // everything else, and the next one tries again.
            Err(NetError::Relay(e)) => {
                tracing::debug!("the relay refused our KeyPackages: {e}");
                return Ok(());
            }
            Err(e) => return Err(e.into()),
        };
        if stock.unpublished_last_resort.is_some() {
            stock.unpublished_last_resort = None;
            let tx = self.store.tx()?;
            tx.put(NS_KEY_PACKAGES, KEY_SELF, &stock)?;
            tx.commit()?;
        }
        if remaining >= KEY_PACKAGE_LOW_WATER {
            return Ok(());
        }
        // A batch whose reply is lost is not published again (the relay may hold it: a copy
        // served twice would fail the second join); its unused private keys stay behind.
        let batch = {
            let tx = self.store.tx()?;
            let provider = HushProvider::new(&tx);
            let signer = IdentitySigner::new(&self.identity);
            let batch = (0..KEY_PACKAGE_BATCH)
                .map(|_| group::new_key_package(&provider, &signer, &me, false))
                .collect::<Result<Vec<_>, _>>()
                .map_err(group_err)?;
            tx.commit()?;
            batch
        };
        let reply = self
            .open_conn()?
            .request(&Request::PublishKeyPackages {
                last_resort: None,
                one_time: batch,
            })
            .await;
        match reply {
            Ok(Reply::KeyPackagesStored { .. }) => Ok(()),
            Ok(_) => Err(ClientError::Network(NetError::UnexpectedReply)),
            Err(NetError::Relay(e)) => {
                tracing::debug!("the relay refused our KeyPackages: {e}");
                Ok(())
            }
            Err(e) => Err(e.into()),
        }
    }
}

/// A group engine error, in the client's terms.
pub(super) fn group_err(e: crate::group::GroupError) -> ClientError {
    ClientError::Group(e.to_string())
}
