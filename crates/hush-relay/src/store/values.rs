//! Values as both stores keep them: the quota rule for one enqueue, and the checked
//! conversions between Rust integers and the databases' signed 64-bit integers. A malformed
//! value read back is a [`StoreError`] naming what was malformed, never its bytes, never a panic.

use std::time::{SystemTime, UNIX_EPOCH};

use super::{GroupQuota, StoreError};

/// The limits an enqueue is checked against (the quota fields of `WriteOp::Enqueue`).
pub(crate) struct Quota {
    pub(crate) max_messages: u32,
    pub(crate) max_bytes: u64,
    pub(crate) max_total_bytes: u64,
    pub(crate) max_sender_bytes: u64,
}

impl From<&GroupQuota> for Quota {
    fn from(q: &GroupQuota) -> Self {
        Self {
            max_messages: q.max_messages,
            max_bytes: q.max_bytes,
            max_total_bytes: q.max_total_bytes,
            max_sender_bytes: q.max_sender_bytes,
        }
    }
}

/// Above this share of the storage quota (in tenths), only light senders may store more.
const HEADROOM_TENTHS: u64 = 9;

impl Quota {
    /// The most bytes `sender` may have stored once this envelope is in: its share, or a
    /// quarter of it once the relay is nearly full, so a sender with little stored can still
    /// send while heavy senders wait for their mail to be fetched.
    pub(crate) fn sender_limit(&self, total_after: u64) -> u64 {
        if total_after > self.max_total_bytes / 10 * HEADROOM_TENTHS {
            self.max_sender_bytes / 4
        } else {
            self.max_sender_bytes
        }
    }
}

/// A fixed-size blob read from the database, or an error naming what was malformed (not its
/// bytes).
pub(crate) fn blob_array<const N: usize>(bytes: &[u8], what: &str) -> Result<[u8; N], StoreError> {
    <[u8; N]>::try_from(bytes).map_err(|_| {
        StoreError(format!(
            "malformed {what} in the database: {} bytes, expected {N}",
            bytes.len()
        ))
    })
}

/// A stored integer that must not be negative.
pub(crate) fn non_negative(value: i64, what: &str) -> Result<u64, StoreError> {
    u64::try_from(value)
        .map_err(|_| StoreError(format!("malformed {what} in the database: {value}")))
}

/// A stored integer that must fit a `u32`.
pub(crate) fn u32_column(value: i64, what: &str) -> Result<u32, StoreError> {
    u32::try_from(value)
        .map_err(|_| StoreError(format!("malformed {what} in the database: {value}")))
}

/// Times and cut-offs beyond `i64::MAX` ms (292 million years) are clamped.
pub(crate) fn saturating_i64(value: u64) -> i64 {
    i64::try_from(value).unwrap_or(i64::MAX)
}

/// A `u64` that must round-trip exactly (a signed prekey's `created_at` is whatever the owner
/// chose), stored in a signed 64-bit column by reinterpreting its bits.
pub(crate) fn u64_bits_to_i64(value: u64) -> i64 {
    i64::from_ne_bytes(value.to_ne_bytes())
}

/// Inverse of [`u64_bits_to_i64`].
pub(crate) fn i64_bits_to_u64(value: i64) -> u64 {
    u64::from_ne_bytes(value.to_ne_bytes())
}

pub(crate) fn too_large() -> StoreError {
    StoreError("value too large for the database".to_owned())
}

/// Wall-clock time for `registered_at_ms` (0 if the clock is before 1970).
pub(crate) fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
