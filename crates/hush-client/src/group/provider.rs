//! The openmls provider the client uses: RustCrypto for the primitives and randomness, and
//! [`ProfileStorage`] so every openmls write lands in the caller's profile transaction.

use openmls_rust_crypto::RustCrypto;
use openmls_traits::OpenMlsProvider;

use super::storage::ProfileStorage;
use crate::store::Tx;

/// openmls over one open profile transaction. Nothing it writes is durable until the client
/// commits the transaction (together with its outbox or history row); dropping the
/// transaction undoes every openmls write made through this provider.
pub struct HushProvider<'t> {
    crypto: RustCrypto,
    storage: ProfileStorage<'t>,
}

impl<'t> HushProvider<'t> {
    /// A provider writing into `tx`.
    pub fn new(tx: &'t Tx<'t>) -> Self {
        Self {
            crypto: RustCrypto::default(),
            storage: ProfileStorage::new(tx),
        }
    }
}

impl<'t> OpenMlsProvider for HushProvider<'t> {
    type CryptoProvider = RustCrypto;
    type RandProvider = RustCrypto;
    type StorageProvider = ProfileStorage<'t>;

    fn storage(&self) -> &Self::StorageProvider {
        &self.storage
    }

    fn crypto(&self) -> &Self::CryptoProvider {
        &self.crypto
    }

    fn rand(&self) -> &Self::RandProvider {
        &self.crypto
    }
}
