//! Retry pacing for the relay after failures, shared by the transports' owner loops: a
//! failed pump is not retried at once in a loop (the relay may be down for minutes), but
//! requests are still answered meanwhile (sends then queue).

use std::time::Duration;

use hush_client::ClientError;
use tokio::time::Instant;

/// First and longest delay before retrying the relay after a failure.
const RETRY_MIN: Duration = Duration::from_secs(1);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// When the relay may be tried next, and what went wrong last.
pub(crate) struct Backoff {
    pub(crate) next_at: Instant,
    delay: Duration,
    last_error: Option<String>,
    /// Prefix of the lines on stderr (`hush rpc`, `hush web`).
    label: &'static str,
}

impl Backoff {
    pub(crate) fn new(label: &'static str) -> Self {
        Self {
            next_at: Instant::now(),
            delay: RETRY_MIN,
            last_error: None,
            label,
        }
    }

    /// Whether a pump step is due now.
    pub(crate) fn due(&self) -> bool {
        Instant::now() >= self.next_at
    }

    pub(crate) fn succeeded(&mut self) {
        if self.last_error.take().is_some() {
            eprintln!("{}: relay connection restored", self.label);
        }
        self.delay = RETRY_MIN;
    }

    pub(crate) fn failed(&mut self, error: &ClientError) {
        // Shown on stderr, and relay error texts are the relay's words: sanitised.
        let text = crate::sanitize::line(&error.to_string());
        if self.last_error.is_none() {
            // The first failure after working is usually a dropped connection (relay idle
            // timeout or restart): reconnect at once.
            eprintln!("{}: relay: {text}; reconnecting", self.label);
            self.next_at = Instant::now();
            self.delay = RETRY_MIN;
        } else {
            if self.last_error.as_deref() != Some(text.as_str()) {
                eprintln!(
                    "{}: relay: {text}; retrying in {} s",
                    self.label,
                    self.delay.as_secs()
                );
            }
            self.next_at = Instant::now() + self.delay;
            self.delay = (self.delay * 2).min(RETRY_MAX);
        }
        self.last_error = Some(text);
    }
}
