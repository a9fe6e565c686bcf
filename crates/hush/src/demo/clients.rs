//! The demo's users: bob's client (closed and reopened to take him offline), alice sending,
//! and receiving until the expected events have arrived.

use std::time::{Duration, Instant};

use hush_client::{Client, Event};

use super::{Demo, PASSPHRASE, PATIENCE, RECEIVE_WAIT};

impl Demo {
    pub(super) fn bob(&mut self) -> Result<&mut Client, String> {
        if self.bob.is_none() {
            let dir = self.root.path().join("bob");
            self.bob = Some(Client::open(&dir, PASSPHRASE).map_err(|e| format!("bob: {e}"))?);
        }
        self.bob.as_mut().ok_or_else(|| "bob".to_owned())
    }

    /// Close bob's client: his connection drops and the relay keeps his mail.
    pub(super) async fn bob_offline(&mut self) {
        drop(self.bob.take());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    pub(super) async fn alice_sends(&mut self, text: &str) -> Result<(), String> {
        let entry = self
            .alice
            .send_text("bob", text)
            .await
            .map_err(|e| format!("alice cannot send: {e}"))?;
        self.texts.push(text.to_owned());
        if entry.state == hush_client::DeliveryState::Queued {
            return Err("the relay did not store alice's message".into());
        }
        Ok(())
    }
}

/// Receive (≈500 ms per call) until `done` holds for everything received so far, or until
/// [`PATIENCE`] has passed.
pub(super) async fn receive_until(
    client: &mut Client,
    done: impl FnMut(&[Event]) -> bool,
) -> Result<Vec<Event>, String> {
    receive_within(client, RECEIVE_WAIT, done).await
}

/// [`receive_until`] with `wait` per receive call (shorter calls when mail is known to be
/// waiting already).
pub(super) async fn receive_within(
    client: &mut Client,
    wait: Duration,
    mut done: impl FnMut(&[Event]) -> bool,
) -> Result<Vec<Event>, String> {
    let deadline = Instant::now() + PATIENCE;
    let mut events = Vec::new();
    let mut last_error = None;
    while Instant::now() < deadline {
        match client.receive(wait, |e| events.push(e.clone())).await {
            Ok(()) => last_error = None,
            Err(e) => {
                last_error = Some(e.to_string());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        if done(&events) {
            return Ok(events);
        }
    }
    match last_error {
        Some(e) => Err(format!("receiving: {e}")),
        None => Ok(events),
    }
}

pub(super) fn texts(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(m.text.clone()),
            _ => None,
        })
        .collect()
}

pub(super) fn message<'a>(
    events: &'a [Event],
    text: &str,
) -> Option<&'a hush_client::HistoryEntry> {
    events.iter().find_map(|e| match e {
        Event::Message(m) if m.text == text => Some(m),
        _ => None,
    })
}

pub(super) fn has_text(events: &[Event], text: &str) -> bool {
    message(events, text).is_some()
}
