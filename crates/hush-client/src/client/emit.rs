//! At-least-once delivery to the consumer (a `recv` pipe, a JSON-RPC bot, the terminal UI).
//!
//! A received message is committed (and acked to the relay) before anyone is told of it, so
//! a process killed between the commit and the print would lose it for the consumer: the
//! relay's copy is gone, and a redelivery is acked silently. So every new message is also
//! recorded as "not yet emitted" in the same transaction, and removed from that record only
//! once the consumer has it ([`Client::mark_emitted`]). Consumers therefore see a message
//! at least once and de-duplicate by (`contact`, `id`).

use std::convert::Infallible;

use super::*;
use crate::store::Tx;

/// Messages remembered as committed but not yet emitted, oldest forgotten first. The record
/// is rewritten by every received message, so it must stay small: a consumer that runs
/// emits and clears it at once, and a crash leaves at most the few messages that were being
/// printed. It grows only while nobody consumes (an `rpc` that never subscribes, a library
/// caller that uses [`Client::pump`] without marking); 1,000 entries (about 130 KB) bound
/// that cost while covering a long unsubscribed run. A forgotten one stays in history and
/// in the unread count.
pub const UNEMITTED_KEPT: usize = 1_000;

/// Under [`KEY_SELF`]: the [`Unemitted`] list, oldest first.
const NS_UNEMITTED: &str = "unemitted";

/// One committed message not yet handed to a consumer.
#[derive(Clone, Debug, Serialize, Deserialize)]
struct Unemitted {
    contact: String,
    id: String,
    /// Its history row's de-duplication key (hex).
    dedupe: String,
}

/// Why [`Client::receive_emitting`] stopped.
#[derive(Debug)]
pub enum EmitError<E> {
    /// Receiving failed.
    Client(ClientError),
    /// The consumer refused an event (e.g. its stdout is closed); that event, and all after
    /// it, stay unemitted.
    Emit(E),
}

impl<E> From<ClientError> for EmitError<E> {
    fn from(e: ClientError) -> Self {
        Self::Client(e)
    }
}

impl<E> From<StoreError> for EmitError<E> {
    fn from(e: StoreError) -> Self {
        Self::Client(e.into())
    }
}

impl Client {
    /// Record a message committed in `tx` as not yet emitted (in the same transaction).
    pub(super) fn record_unemitted(
        tx: &Tx<'_>,
        entry: &HistoryEntry,
        dedupe: &[u8],
    ) -> Result<(), ClientError> {
        let mut list: Vec<Unemitted> = tx.get(NS_UNEMITTED, KEY_SELF)?.unwrap_or_default();
        list.push(Unemitted {
            contact: entry.contact.clone(),
            id: entry.id.clone(),
            dedupe: hex::encode(dedupe),
        });
        let excess = list.len().saturating_sub(UNEMITTED_KEPT);
        list.drain(..excess);
        tx.put(NS_UNEMITTED, KEY_SELF, &list)?;
        Ok(())
    }

    /// Committed messages no consumer has been given yet (oldest first): what a process
    /// killed before it printed them left behind. Emit them, then [`Client::mark_emitted`].
    pub fn unemitted_messages(&mut self) -> Result<Vec<HistoryEntry>, ClientError> {
        let tx = self.store.tx()?;
        let list: Vec<Unemitted> = tx.get(NS_UNEMITTED, KEY_SELF)?.unwrap_or_default();
        let mut messages = Vec::with_capacity(list.len());
        for item in &list {
            let Ok(dedupe) = hex::decode(&item.dedupe) else {
                continue;
            };
            if let Some(row) = tx.find_message::<HistoryEntry>(&dedupe)? {
                messages.push(row.value);
            }
        }
        Ok(messages)
    }

    /// The consumer has `message` (written and flushed): stop re-emitting it.
    pub fn mark_emitted(&mut self, message: &HistoryEntry) -> Result<(), ClientError> {
        let tx = self.store.tx()?;
        let mut list: Vec<Unemitted> = tx.get(NS_UNEMITTED, KEY_SELF)?.unwrap_or_default();
        // The first match only: a second message under the same id (the contact's key
        // changed) is then emitted again rather than lost.
        let Some(index) = list
            .iter()
            .position(|u| u.contact == message.contact && u.id == message.id)
        else {
            return Ok(());
        };
        list.remove(index);
        if list.is_empty() {
            tx.delete(NS_UNEMITTED, KEY_SELF)?;
        } else {
            tx.put(NS_UNEMITTED, KEY_SELF, &list)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// [`Client::receive`] with at-least-once delivery to `emit`: first the messages a
    /// previous run committed but never emitted, then each event as it is committed. A
    /// message is marked emitted only after `emit` returned `Ok` for it, so `emit` must
    /// return only once the event is written out (printed and flushed). Stops at the first
    /// `emit` error.
    pub async fn receive_emitting<E>(
        &mut self,
        wait: Duration,
        mut emit: impl FnMut(&Event) -> Result<(), E>,
    ) -> Result<(), EmitError<E>> {
        for message in self.unemitted_messages()? {
            emit(&Event::Message(message.clone())).map_err(EmitError::Emit)?;
            self.mark_emitted(&message)?;
        }
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Pending messages arrive right after Subscribe; a short grace catches them even
            // when `wait` is zero or over.
            let now = tokio::time::Instant::now();
            let budget = if now < deadline {
                deadline - now
            } else {
                Duration::from_millis(300)
            };
            let mut events = Vec::new();
            let got = self.pump_inner(budget, &mut events).await;
            self.emit_all(&events, &mut emit)?;
            if !got? && tokio::time::Instant::now() >= deadline {
                break;
            }
        }
        // Receipts queued while receiving; a refusal or a lost connection never fails `recv`.
        let mut events = Vec::new();
        let flushed = self.flush_after_receiving(&mut events).await;
        self.emit_all(&events, &mut emit)?;
        Ok(flushed?)
    }

    /// Hand `events` to `emit` in order, marking each message emitted once `emit` took it.
    fn emit_all<E>(
        &mut self,
        events: &[Event],
        emit: &mut impl FnMut(&Event) -> Result<(), E>,
    ) -> Result<(), EmitError<E>> {
        for event in events {
            emit(event).map_err(EmitError::Emit)?;
            if let Event::Message(message) = event {
                self.mark_emitted(message)?;
            }
        }
        Ok(())
    }

    /// Connect, subscribe, flush the outbox, and process deliveries until `wait` has passed
    /// (pending messages are always drained first, even when `wait` is zero). Each event is
    /// passed to `on_event` after it is committed, also when an error ends the call later;
    /// messages a killed earlier run never emitted come first (see
    /// [`Client::receive_emitting`]).
    pub async fn receive(
        &mut self,
        wait: Duration,
        mut on_event: impl FnMut(&Event),
    ) -> Result<(), ClientError> {
        let emitted = self
            .receive_emitting(wait, |event| {
                on_event(event);
                Ok::<(), Infallible>(())
            })
            .await;
        match emitted {
            Ok(()) => Ok(()),
            Err(EmitError::Client(e)) => Err(e),
            Err(EmitError::Emit(never)) => match never {},
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use super::*;
    use crate::store::{KdfParams, Store};

    fn entry(n: usize) -> HistoryEntry {
        HistoryEntry {
            id: format!("{n:032x}"),
            contact: "alice".into(),
            outgoing: false,
            text: format!("message {n}"),
            sent_at: 0,
            received_at: Some(0),
            state: DeliveryState::Received,
            verified: false,
            key_changed: false,
            failure: None,
            group: None,
        }
    }

    #[test]
    fn the_record_keeps_only_the_newest_unemitted_kept() {
        let dir = tempfile::tempdir().unwrap();
        let params = KdfParams {
            m_cost: 256,
            t_cost: 1,
            p_cost: 1,
        };
        let mut store = Store::create(dir.path(), b"pw", params).unwrap();
        let tx = store.tx().unwrap();
        for n in 0..UNEMITTED_KEPT + 5 {
            Client::record_unemitted(&tx, &entry(n), n.to_string().as_bytes()).unwrap();
        }
        let list: Vec<Unemitted> = tx.get(NS_UNEMITTED, KEY_SELF).unwrap().unwrap();
        assert_eq!(list.len(), UNEMITTED_KEPT);
        assert_eq!(list[0].id, entry(5).id, "the oldest are forgotten first");
        assert_eq!(list[UNEMITTED_KEPT - 1].id, entry(UNEMITTED_KEPT + 4).id);
    }
}
