//! The store test suite: every test of [`Store`] semantics, run against each backend.
//!
//! Tests are written once, against [`Backend`], in [`messages`], [`prekeys`], [`keypackages`]
//! and [`groups`]; [`store_suite!`] turns the list of them into `#[test]` functions in
//! [`sqlite`] and [`postgres`], so a test reads `store::suite::sqlite::<name>` or
//! `store::suite::postgres::<name>`. The PostgreSQL ones use a fresh database from
//! `hush_testsvc::postgres()` per test and skip (one line) without a server, unless
//! `HUSH_REQUIRE_SERVICES=1`.
//!
//! Fixture SQL (tampering with rows to check that the store copes) and the counter checks use
//! SQL that both backends understand: table names are the same, blob literals come from
//! [`Backend::blob`], and sums are cast to `BIGINT`. Tests of one backend's specifics (SQLite
//! file headers, pragmas, migrations from old files) stay with that backend.

use std::any::Any;
use std::time::Duration;

use hush_proto::IdentityKeyPair;
use hush_proto::{OneTimePrekey, PrekeyBundle, SignedPrekey, X25519PublicKey};

use super::{IdentityBytes, MessageId, Store, StoreError, WriteOp, WriteResult};

pub(crate) mod groups;
mod keypackages;
mod messages;
pub(crate) mod postgres;
pub(crate) mod prekeys;
pub(crate) mod sqlite;

/// One store under test, with raw access to its database for fixtures and checks.
pub(crate) trait Backend {
    /// The store under test.
    fn store(&self) -> &dyn Store;
    /// Closes the store and opens it again on the same database.
    fn reopen(&mut self);
    /// The backend's `free_name` (not part of [`Store`]: an operator command).
    fn free_name(&self, name: &str) -> Result<Option<IdentityBytes>, StoreError>;
    /// A blob literal in this backend's SQL.
    fn blob(&self, bytes: &[u8]) -> String;
    /// Runs SQL on a connection of its own, with foreign keys enforced.
    fn exec(&self, sql: &str);
    /// Runs SQL on a connection of its own with foreign keys and CHECK constraints ignored, to
    /// leave rows that the store itself would never write.
    fn tamper(&self, sql: &str);
    /// The integer columns of the one row a query returns.
    fn query_ints(&self, sql: &str) -> Vec<i64>;
    /// Rows of (blob, integers...).
    fn query_keyed(&self, sql: &str) -> Vec<(Vec<u8>, Vec<i64>)>;
    /// Holds the write lock, with an uncommitted change renaming `alice` to `mallory`, until the
    /// returned guard is dropped; also returns how long a read may take meanwhile.
    fn hold_write_lock(&self) -> (Box<dyn Any>, Duration);

    /// Rows in a table.
    fn rows(&self, table: &str) -> i64 {
        self.query_ints(&format!("SELECT count(*) FROM {table}"))[0]
    }

    /// The kept counters agree with the rows they summarise (see [`check_counters`]).
    fn check_counters(&self) {
        check_counters(self);
    }
}

/// Generates one `#[test]` per suite test for a backend. `$make` is an expression giving
/// `Option<impl Backend>`; `None` (services absent, already reported) skips the test.
macro_rules! store_suite {
    ($make:expr; $($(#[$attr:meta])* $module:ident :: $name:ident,)*) => {
        $(
            $(#[$attr])*
            #[test]
            fn $name() {
                if let Some(mut backend) = $make {
                    super::$module::$name(&mut backend);
                }
            }
        )*
    };
}

/// The suite: every test, once. A test function missing here is dead code (a warning).
macro_rules! all_store_tests {
    ($make:expr) => {
        store_suite! {
            $make;
            messages::register_is_first_come_first_served,
            messages::enqueue_pending_order_and_cursor,
            messages::ack_deletes_only_own_messages,
            messages::quota_by_messages,
            messages::global_storage_quota_spans_mailboxes_and_batches,
            messages::each_sender_has_a_share_of_the_storage_quota,
            messages::quota_by_bytes,
            messages::expire_deletes_old_messages_and_updates_usage,
            messages::batch_results_in_order_and_all_visible,
            messages::failing_batch_changes_nothing,
            messages::malformed_rows_are_errors_not_panics,
            messages::data_survives_reopen_and_ids_are_never_reused,
            messages::totals_track_enqueue_ack_expire,
            messages::reads_do_not_wait_for_a_writer,
            messages::concurrent_batches_get_unique_ids,
            prekeys::fetch_pops_distinct_one_time_prekeys_then_none,
            prekeys::fetch_unknown_user_or_no_prekeys,
            prekeys::publish_replaces_signed_prekey_and_one_time_ids,
            prekeys::too_many_prekeys_changes_nothing,
            prekeys::prekeys_need_a_name_and_nameless_ones_expire,
            prekeys::pq_one_time_prekeys_pop_once_then_last_resort_repeats,
            prekeys::bundles_without_pq_prekeys_stay_version_1,
            prekeys::pq_last_resort_replaced_and_stock_capped,
            prekeys::budget_spent_serves_last_resort,
            prekeys::pq_prekeys_go_with_the_name,
            prekeys::malformed_pq_rows_are_errors,
            keypackages::one_time_key_packages_pop_once_oldest_first_then_last_resort_repeats,
            keypackages::key_packages_need_a_name_and_a_stock_within_the_cap,
            keypackages::spent_budget_serves_the_last_resort_key_package_only,
            keypackages::concurrent_fetches_pop_distinct_key_packages,
            keypackages::key_packages_go_with_the_name,
            groups::creating_a_group_welcomes_the_added_members_once_stored,
            groups::two_commits_for_one_epoch_exactly_one_wins,
            groups::non_members_are_refused_everything,
            groups::group_message_stored_once_deleted_at_the_last_ack,
            groups::removed_member_gets_the_commit_then_nothing,
            groups::a_full_mailbox_skips_only_that_member,
            groups::storage_quota_counts_a_group_message_once,
            groups::group_mail_and_log_expire,
            groups::sync_returns_logged_commits_within_bounds,
            groups::leaving_stops_mail_and_the_last_leave_deletes_the_group,
            groups::member_limit_and_unregistered_members_are_refused,
            groups::a_welcome_reaches_an_added_member_already_on_the_list,
            groups::logged_commits_count_toward_the_storage_quota,
            /// Rough store-level cost of a fan-out (not a benchmark: run by hand on a quiet
            /// machine, `cargo test -p hush-relay --lib fan_out_cost -- --ignored --nocapture`).
            #[ignore = "timing; run by hand"]
            groups::fan_out_cost,
        }
    };
}
use {all_store_tests, store_suite};

pub(crate) const MAX_MESSAGES: u32 = 100;
pub(crate) const MAX_BYTES: u64 = 1 << 20;
pub(crate) const MAX_TOTAL_BYTES: u64 = 1 << 30;

/// A valid Ed25519 identity key derived from a one-byte seed.
pub(crate) fn ident(n: u8) -> IdentityBytes {
    *IdentityKeyPair::from_seed(&[n; 32]).public_key().as_bytes()
}

pub(crate) fn spk(id: u32) -> SignedPrekey {
    SignedPrekey {
        id,
        created_at: 1_700_000_000 + u64::from(id),
        public_key: X25519PublicKey::from_bytes([id as u8; 32]),
        signature: [0xA5; 64],
    }
}

pub(crate) fn otp(id: u32) -> OneTimePrekey {
    OneTimePrekey {
        id,
        public_key: X25519PublicKey::from_bytes([(id as u8).wrapping_add(100); 32]),
    }
}

pub(crate) fn register(name: &str, identity: IdentityBytes) -> WriteOp {
    WriteOp::Register {
        name: name.to_owned(),
        identity,
        signature: vec![1; 64],
    }
}

pub(crate) fn publish(
    identity: IdentityBytes,
    spk_id: u32,
    ids: &[u32],
    max_stock: u32,
) -> WriteOp {
    WriteOp::PublishPrekeys {
        identity,
        signed_prekey: spk(spk_id),
        one_time: ids.iter().map(|&id| otp(id)).collect(),
        max_stock,
    }
}

pub(crate) fn fetch(name: &str) -> WriteOp {
    WriteOp::FetchBundle {
        name: name.to_owned(),
        pop_one_time: true,
    }
}

pub(crate) fn enqueue_op(recipient: IdentityBytes, envelope: &[u8], at: u64) -> WriteOp {
    WriteOp::Enqueue {
        recipient,
        sender: ident(99),
        envelope: envelope.to_vec(),
        received_at_ms: at,
        max_messages: MAX_MESSAGES,
        max_bytes: MAX_BYTES,
        max_total_bytes: MAX_TOTAL_BYTES,
        max_sender_bytes: MAX_TOTAL_BYTES,
    }
}

pub(crate) fn one(store: &dyn Store, op: WriteOp) -> WriteResult {
    let mut results = store.apply(&[op]).unwrap();
    assert_eq!(results.len(), 1);
    results.pop().unwrap()
}

pub(crate) fn stored(result: WriteResult) -> MessageId {
    match result {
        WriteResult::Stored(id) => id,
        other => panic!("expected Stored, got {other:?}"),
    }
}

pub(crate) fn bundle(result: WriteResult) -> PrekeyBundle {
    match result {
        WriteResult::Bundle(bundle) => bundle,
        other => panic!("expected Bundle, got {other:?}"),
    }
}

/// The O(1) counters agree with the rows they summarise: mailbox usage (and empty mailboxes
/// have no usage row), the global totals, per-sender usage, the prekey totals behind the
/// metrics, group blob reference counts and the group totals.
pub(crate) fn check_counters<B: Backend + ?Sized>(b: &B) {
    check_prekey_totals(b);
    let mut usage: Vec<(Vec<u8>, Vec<i64>)> =
        b.query_keyed("SELECT recipient, messages, bytes FROM mailbox_usage ORDER BY recipient");
    // A mailbox counts a group message's shared bytes in full.
    let actual = b.query_keyed(
        "SELECT m.recipient, count(*),
                CAST(sum(length(m.envelope) + coalesce(length(b.envelope), 0)) AS BIGINT)
         FROM messages AS m LEFT JOIN group_blobs AS b ON b.id = m.blob
         GROUP BY m.recipient ORDER BY m.recipient",
    );
    usage.sort();
    assert_eq!(usage, actual);
    let totals = b.query_ints("SELECT messages, bytes FROM mailbox_totals");
    // The totals count bytes as stored: a group message once.
    let stored = b.query_ints(
        "SELECT (SELECT count(*) FROM messages),
                CAST((SELECT coalesce(sum(length(envelope)), 0) FROM messages)
                   + (SELECT coalesce(sum(length(envelope)), 0) FROM group_blobs)
                   + (SELECT coalesce(sum(length(envelope)), 0) FROM group_commits) AS BIGINT)",
    );
    assert_eq!(totals, stored);
    check_group_counters(b);
    assert_eq!(
        b.query_keyed("SELECT sender, bytes FROM sender_usage ORDER BY sender"),
        b.query_keyed(
            "SELECT sender, CAST(sum(len) AS BIGINT) FROM (
                 SELECT sender, length(envelope) AS len FROM messages WHERE blob IS NULL
                 UNION ALL SELECT sender, length(envelope) AS len FROM group_blobs
                 UNION ALL SELECT sender, length(envelope) AS len FROM group_commits) AS s
             GROUP BY sender HAVING sum(len) > 0 ORDER BY sender"
        )
    );
}

/// The metrics' prekey totals (kept by triggers) agree with the rows they count.
pub(crate) fn check_prekey_totals<B: Backend + ?Sized>(b: &B) {
    let stock = b.query_ints(
        "SELECT one_time, pq_one_time, pq_last_resort FROM prekey_totals WHERE singleton = 0",
    );
    let counted = vec![
        b.rows("one_time_prekeys"),
        b.rows("pq_one_time_prekeys"),
        b.rows("pq_last_resort_prekeys"),
    ];
    assert_eq!(stock, counted);
}

/// Group blobs' reference counts match the mailbox rows pointing at them (none dangling, none
/// unreferenced), and the trigger-kept group totals match the rows.
fn check_group_counters<B: Backend + ?Sized>(b: &B) {
    // Every blob's reference count is the number of mailbox rows pointing at it, never 0.
    let bad_refs = b.query_ints(
        "SELECT count(*) FROM group_blobs AS b
         WHERE b.refs != (SELECT count(*) FROM messages WHERE blob = b.id) OR b.refs = 0",
    );
    assert_eq!(bad_refs, vec![0]);
    let dangling = b.query_ints(
        "SELECT count(*) FROM messages
         WHERE blob IS NOT NULL AND blob NOT IN (SELECT id FROM group_blobs)",
    );
    assert_eq!(dangling, vec![0]);
    let group_totals = b.query_ints("SELECT groups, members FROM group_totals");
    let group_rows =
        b.query_ints("SELECT (SELECT count(*) FROM groups), (SELECT count(*) FROM group_members)");
    assert_eq!(group_totals, group_rows);
}
