//! Refused outbox rows: when to retry them (exponential backoff) and when to give up.
//!
//! A refusal concerns one row (its recipient's mailbox is full, the recipient is gone, the
//! relay could not store it), so the row is parked and the flush goes on with the others: one
//! cheap user must not silence anyone (DESIGN.md, rule 9). Pure logic: the clock comes in as
//! an argument, so the policy is tested without waiting.

use std::time::Duration;

use hush_proto::relay::{ErrorCode, RelayError};
use serde::{Deserialize, Serialize};

/// Wait before the first retry of a refused row; doubled per refusal up to [`RETRY_MAX`].
pub const RETRY_FIRST: Duration = Duration::from_secs(10);
/// Longest wait between two attempts of a refused row (30 min), so a mailbox that frees up
/// is noticed within half an hour of a running client.
pub const RETRY_MAX: Duration = Duration::from_secs(30 * 60);
/// A delivery receipt refused for this long (24 h) is dropped: it is a courtesy, and keeping
/// it would let a sender whose mailbox stays full grow our outbox for ever.
pub const RECEIPT_GIVE_UP: Duration = Duration::from_secs(24 * 3600);
/// A message refused for this long (7 days) is marked [`super::DeliveryState::Failed`]. A
/// recipient that is gone (`UnknownUser`) fails at once.
pub const MESSAGE_GIVE_UP: Duration = Duration::from_secs(7 * 24 * 3600);

/// Delivery receipts kept waiting behind a refused row to the same recipient; later ones
/// beyond this are dropped, so a contact whose mailbox stays full (and who keeps writing to
/// us) costs at most this many rows in our outbox, not one per message for a day.
pub const RECEIPTS_HELD_MAX: usize = 100;

/// Delivery receipts kept in the whole outbox, across recipients; beyond this the oldest
/// receipts of whichever recipient holds the most are dropped, so many identities with full
/// mailboxes cannot grow our outbox either (each costs at most its share of this).
pub const RECEIPTS_QUEUED_MAX: usize = 250;

/// Persisted refusal clock of one recipient whose oldest queued row the relay refused
/// (sealed, in its own namespace keyed by the recipient's key). It is per recipient, not per
/// row: rows waiting behind the refused one age with it, so the give-up bounds hold for the
/// whole queue, not one row at a time.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub(super) struct RetryState {
    /// Refusals so far.
    pub attempts: u32,
    /// When the relay first refused this recipient's oldest row (ms since the Unix epoch).
    pub first_refused_ms: u64,
    /// Not tried again before this time (ms).
    pub next_attempt_ms: u64,
    /// The last refusal, in our own words (never the relay's free text).
    pub last_reason: String,
}

impl RetryState {
    /// Whether the recipient's queue may be tried at `now_ms`. A wait longer than
    /// [`RETRY_MAX`] from now (the clock went back, or a bad value) counts as due, so nothing
    /// is parked for ever.
    pub fn is_due(&self, now_ms: u64) -> bool {
        now_ms >= self.next_attempt_ms || self.next_attempt_ms - now_ms > duration_ms(RETRY_MAX)
    }

    /// Whether a queued receipt to this recipient is dropped at `now_ms`.
    pub fn receipt_expired(&self, now_ms: u64) -> bool {
        now_ms.saturating_sub(self.first_refused_ms) >= duration_ms(RECEIPT_GIVE_UP)
    }

    /// Why a message queued at `queued_ms` to this recipient fails at `now_ms`, if it does:
    /// it has waited [`MESSAGE_GIVE_UP`] since it was queued or since the recipient was first
    /// refused, whichever is later.
    pub fn message_expired(&self, queued_ms: u64, now_ms: u64) -> Option<String> {
        let waited = now_ms.saturating_sub(self.first_refused_ms.max(queued_ms));
        (waited >= duration_ms(MESSAGE_GIVE_UP)).then(|| {
            format!(
                "refused by the relay for {} hours, last: {}",
                waited / 3_600_000,
                self.last_reason
            )
        })
    }
}

/// The recipient's refusal clock after the relay refused its oldest row with `error` at
/// `now_ms`, after `previous` refusals (none for the first). The caller then applies
/// [`RetryState::receipt_expired`] / [`RetryState::message_expired`] to every queued row, and
/// gives up all of them at once when [`is_gone`] says so.
pub(super) fn on_refusal(
    previous: Option<&RetryState>,
    now_ms: u64,
    error: &RelayError,
) -> RetryState {
    let attempts = previous.map_or(0, |p| p.attempts).saturating_add(1);
    let first_refused_ms = previous.map_or(now_ms, |p| p.first_refused_ms.min(now_ms));
    let shift = attempts.saturating_sub(1).min(20);
    let backoff = duration_ms(RETRY_FIRST)
        .saturating_mul(1u64 << shift)
        .min(duration_ms(RETRY_MAX));
    RetryState {
        attempts,
        first_refused_ms,
        next_attempt_ms: now_ms.saturating_add(backoff),
        last_reason: reason(error.code),
    }
}

/// Whether a refusal says the recipient is gone (e.g. after `hush-relay free-name`): every
/// row queued to it fails at once.
pub(super) fn is_gone(error: &RelayError) -> bool {
    // For a group: we are no longer a member on the relay, or the group is gone.
    matches!(
        error.code,
        ErrorCode::UnknownUser | ErrorCode::NotGroupMember | ErrorCode::UnknownGroup
    )
}

/// Whether a refusal is about our connection rather than the row (sending too fast, the
/// relay shutting down): the flush stops and nothing is parked.
pub(super) fn is_about_connection(code: ErrorCode) -> bool {
    matches!(code, ErrorCode::RateLimited | ErrorCode::ShuttingDown)
}

/// A refusal in our own words: the relay's message text is attacker-controlled and is not
/// stored or shown.
fn reason(code: ErrorCode) -> String {
    let what = match code {
        ErrorCode::UnknownUser => {
            "the relay says there is no such recipient (the name may have been freed)"
        }
        ErrorCode::NotGroupMember => "the relay says we are no longer a member of the group",
        ErrorCode::UnknownGroup => "the relay does not know the group",
        ErrorCode::MailboxFull => "the recipient's mailbox is full",
        ErrorCode::StorageFull => "the relay's storage, or our share of it, is full",
        ErrorCode::Malformed => "the relay could not parse it",
        ErrorCode::Internal => "the relay could not store it",
        _ => "the relay refused it",
    };
    format!("{what} ({})", code.label())
}

fn duration_ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn refused(code: ErrorCode) -> RelayError {
        RelayError {
            code,
            message: "\u{1b}]0;relay text\u{7}".into(),
        }
    }

    const HOUR: u64 = 3_600_000;

    #[test]
    fn backoff_doubles_from_the_first_wait_up_to_the_cap() {
        let full = refused(ErrorCode::MailboxFull);
        let mut state: Option<RetryState> = None;
        let mut now = 1_000_000;
        let mut waits = Vec::new();
        for _ in 0..12 {
            let next = on_refusal(state.as_ref(), now, &full);
            assert!(!next.is_due(now));
            assert!(next.is_due(next.next_attempt_ms));
            waits.push(next.next_attempt_ms - now);
            now = next.next_attempt_ms;
            state = Some(next);
        }
        assert_eq!(&waits[..4], &[10_000, 20_000, 40_000, 80_000]);
        assert_eq!(*waits.last().unwrap(), 30 * 60 * 1000);
        let state = state.unwrap();
        assert_eq!(state.attempts, 12);
        assert_eq!(state.first_refused_ms, 1_000_000);
        assert!(state.last_reason.contains("mailbox is full"));
        assert!(
            !state.last_reason.contains("relay text"),
            "relay text stored"
        );
    }

    #[test]
    fn receipts_are_dropped_after_a_day_and_messages_fail_after_a_week() {
        let state = on_refusal(None, 0, &refused(ErrorCode::MailboxFull));
        assert!(!state.receipt_expired(23 * HOUR));
        assert!(state.receipt_expired(24 * HOUR));
        assert!(state.message_expired(0, 24 * HOUR).is_none());
        let reason = state
            .message_expired(0, 7 * 24 * HOUR)
            .expect("a week of refusals must fail the message");
        assert!(reason.contains("168 hours"), "{reason}");
        assert!(reason.contains("mailbox_full"), "{reason}");
        // A message queued later than the first refusal gets its own week.
        assert!(state.message_expired(2 * HOUR, 7 * 24 * HOUR).is_none());
        assert!(state
            .message_expired(2 * HOUR, 7 * 24 * HOUR + 2 * HOUR)
            .is_some());
    }

    #[test]
    fn a_gone_recipient_is_told_apart() {
        assert!(is_gone(&refused(ErrorCode::UnknownUser)));
        assert!(!is_gone(&refused(ErrorCode::MailboxFull)));
        let state = on_refusal(None, 5, &refused(ErrorCode::UnknownUser));
        assert!(
            state.last_reason.contains("no such recipient"),
            "{}",
            state.last_reason
        );
    }

    #[test]
    fn a_wait_beyond_the_cap_counts_as_due() {
        let parked = RetryState {
            attempts: 1,
            first_refused_ms: 0,
            next_attempt_ms: 100 * HOUR,
            last_reason: String::new(),
        };
        // The clock went back a day: do not wait for it to catch up.
        assert!(parked.is_due(76 * HOUR));
        assert!(!parked.is_due(100 * HOUR - 1000));
    }
}
