//! Placeholder for the PostgreSQL store (written on branch h-pgstore); removed when it merges.

use super::{IdentityBytes, StoreError};

/// Placeholder: always fails to connect.
pub struct PostgresStore;

impl PostgresStore {
    /// Placeholder for the real connect.
    pub fn connect(_url: &str) -> Result<Self, StoreError> {
        Err(StoreError(
            "the PostgreSQL store is not built in yet".into(),
        ))
    }

    /// Placeholder for the real free_name.
    pub fn free_name(&self, _name: &str) -> Result<Option<IdentityBytes>, StoreError> {
        Err(StoreError(
            "the PostgreSQL store is not built in yet".into(),
        ))
    }
}

fn missing<T>() -> Result<T, StoreError> {
    Err(StoreError(
        "the PostgreSQL store is not built in yet".into(),
    ))
}

impl super::Store for PostgresStore {
    fn apply(&self, _ops: &[super::WriteOp]) -> Result<Vec<super::WriteResult>, StoreError> {
        missing()
    }
    fn pending(
        &self,
        _recipient: &IdentityBytes,
        _after: super::MessageId,
        _limit: usize,
        _max_bytes: usize,
    ) -> Result<Vec<super::StoredMessage>, StoreError> {
        missing()
    }
    fn identity_of(&self, _name: &str) -> Result<Option<IdentityBytes>, StoreError> {
        missing()
    }
    fn name_of(&self, _identity: &IdentityBytes) -> Result<Option<String>, StoreError> {
        missing()
    }
    fn totals(&self) -> Result<super::StoreTotals, StoreError> {
        missing()
    }
    fn prekey_stock(&self) -> Result<super::PrekeyStock, StoreError> {
        missing()
    }
    fn group_stats(&self) -> Result<super::GroupStats, StoreError> {
        missing()
    }
    fn group_sync(
        &self,
        _group_id: &hush_proto::relay::GroupId,
        _member: &IdentityBytes,
        _after_epoch: u64,
        _max_commits: usize,
        _max_bytes: usize,
    ) -> Result<super::SyncResult, StoreError> {
        missing()
    }
}
