//! Sending: encrypt and commit into the outbox, then hand the outbox to the relay.

use super::retry::{self, RetryState, Verdict, RECEIPTS_HELD_MAX};
use super::*;
use crate::store::Row;

/// Retry state of parked outbox rows ([`RetryState`]), keyed by the row's sequence number.
const NS_OUTBOX_RETRY: &str = "outbox-retry";
/// The `failure` of a message held back so that it does not overtake a refused one.
const WAITING_BEHIND: &str =
    "waiting behind an earlier envelope to the same recipient that the relay refused";

impl Client {
    /// Encrypt, commit and queue a text; then try to hand the outbox to the relay. Returns
    /// the history entry, whose state says whether the relay has it (`OnRelay`), it is still
    /// queued (relay unreachable, or refused and retried later: see `failure`), or it can
    /// never be delivered (`Failed`). Refusals of other queued rows never fail this call.
    pub async fn send_text(&mut self, name: &str, text: &str) -> Result<HistoryEntry, ClientError> {
        Ok(self.send_text_reporting(name, text).await?.0)
    }

    /// [`Client::send_text`], with the [`Event::Failed`] of every queued message (this one
    /// included) that the flush found undeliverable, for callers that notify.
    pub async fn send_text_reporting(
        &mut self,
        name: &str,
        text: &str,
    ) -> Result<(HistoryEntry, Vec<Event>), ClientError> {
        if self.contact(name)?.is_none() {
            self.add_contact(name).await?;
        }
        let entry = self.queue_text(name, text)?;
        let events = match self.flush_outbox().await {
            Ok(events) => events,
            Err(ClientError::Network(_)) => Vec::new(),
            Err(e) => return Err(e),
        };
        let tx = self.store.tx()?;
        let entry = tx
            .find_message::<HistoryEntry>(&dedupe_key(&self.identity.public_key(), &entry.id))?
            .map(|r| r.value)
            .unwrap_or(entry);
        Ok((entry, events))
    }

    /// Encrypt and commit a text without touching the network.
    pub fn queue_text(&mut self, name: &str, text: &str) -> Result<HistoryEntry, ClientError> {
        let contact = self
            .contact(name)?
            .ok_or_else(|| ClientError::NoSuchContact(name.into()))?;
        if contact.changed_key.is_some() {
            return Err(ClientError::KeyChanged(name.to_owned()));
        }
        let mut id = [0u8; 16];
        OsRng.fill_bytes(&mut id);
        let sent_at = now_ms();
        let content = MessageContent {
            id,
            sent_at_ms: sent_at,
            content_type: ContentType::TEXT,
            body: text.as_bytes().to_vec(),
        };
        let entry = HistoryEntry {
            id: hex::encode(id),
            contact: name.to_owned(),
            outgoing: true,
            text: text.to_owned(),
            sent_at,
            received_at: None,
            state: DeliveryState::Queued,
            verified: contact.verified,
            key_changed: false,
            failure: None,
        };
        let tx = self.store.tx()?;
        let envelope = Self::encrypt_for(&tx, &contact, &content)?;
        tx.add_message(
            name,
            &dedupe_key(&self.identity.public_key(), &entry.id),
            &entry,
        )?;
        tx.push_outbox(&OutboxItem {
            contact: name.to_owned(),
            recipient: contact.identity_key.clone(),
            envelope,
            message_id: Some(entry.id.clone()),
        })?;
        tx.commit()?;
        Ok(entry)
    }

    /// Encrypt with the contact's active session, saving the advanced session in `tx`.
    pub(super) fn encrypt_for(
        tx: &crate::store::Tx<'_>,
        contact: &Contact,
        content: &MessageContent,
    ) -> Result<Vec<u8>, ClientError> {
        let mut sessions = tx
            .get::<SessionSet>(NS_SESSIONS, &contact.name)?
            .unwrap_or_default()
            .load()?;
        let trusted = contact.key()?;
        let session = sessions
            .iter_mut()
            .find(|s| *s.remote_identity() == trusted && s.can_send())
            .ok_or_else(|| {
                ClientError::Invalid(format!(
                    "no session with {}; run `hush add {}`",
                    contact.name, contact.name
                ))
            })?;
        let padded = content.to_padded_bytes()?;
        let envelope = session.encrypt(&mut OsRng, &padded)?.to_bytes();
        tx.put(
            NS_SESSIONS,
            &contact.name,
            &SessionSet::from_sessions(&sessions),
        )?;
        Ok(envelope)
    }

    /// Number of envelopes waiting to be handed to the relay.
    pub fn outbox_len(&mut self) -> Result<usize, ClientError> {
        Ok(self.store.tx()?.outbox::<OutboxItem>()?.len())
    }

    /// Hand the queued envelopes to the relay, oldest first; each is removed only after the
    /// relay says it is stored. A row the relay refuses is parked with exponential backoff
    /// (see [`super::retry`]) and the flush goes on with the next one, so one full mailbox or
    /// one vanished recipient never holds up anyone else. Rows for a recipient whose earlier
    /// row is parked wait behind it, so messages to one contact keep their order.
    ///
    /// Returns an [`Event::Failed`] for each message that became undeliverable. Errs only
    /// when the connection is lost (the remaining rows stay queued) or the profile fails.
    pub async fn flush_outbox(&mut self) -> Result<Vec<Event>, ClientError> {
        let now = now_ms();
        let items = self.store.tx()?.outbox::<OutboxItem>()?;
        let mut events = Vec::new();
        // Recipients with an earlier row still queued in this pass, and how many receipts
        // to each wait behind it.
        let mut held = std::collections::HashMap::<String, usize>::new();
        for row in items {
            if let Some(receipts) = held.get_mut(&row.value.recipient) {
                if row.value.message_id.is_none() {
                    *receipts += 1;
                    if *receipts > RECEIPTS_HELD_MAX {
                        // A sender whose mailbox stays full must not grow our outbox.
                        self.give_up(&row, "")?;
                        continue;
                    }
                }
                self.note_held(&row)?;
                continue;
            }
            let retry_key = row.seq.to_string();
            let retry: Option<RetryState> = self.store.tx()?.get(NS_OUTBOX_RETRY, &retry_key)?;
            if retry.as_ref().is_some_and(|r| !r.is_due(now)) {
                held.insert(row.value.recipient.clone(), 0);
                continue;
            }
            let recipient: Option<[u8; 32]> = hex::decode(&row.value.recipient)
                .ok()
                .and_then(|b| b.try_into().ok());
            let Some(recipient) = recipient else {
                events.extend(self.give_up(&row, "the stored recipient key is corrupt")?);
                continue;
            };
            let reply = self
                .request(&Request::Send {
                    recipient,
                    envelope: row.value.envelope.clone(),
                })
                .await;
            match reply {
                Ok(Reply::Stored { .. }) => {
                    let tx = self.store.tx()?;
                    tx.remove_outbox(row.seq)?;
                    tx.delete(NS_OUTBOX_RETRY, &retry_key)?;
                    if let Some(id) = &row.value.message_id {
                        let key = dedupe_key(&self.identity.public_key(), id);
                        if let Some(mut entry) = tx.find_message::<HistoryEntry>(&key)? {
                            if entry.value.state == DeliveryState::Queued {
                                entry.value.state = DeliveryState::OnRelay;
                                entry.value.failure = None;
                                tx.update_message(&key, &entry.value)?;
                            }
                        }
                    }
                    tx.commit()?;
                }
                Ok(_) => return Err(ClientError::Network(NetError::UnexpectedReply)),
                Err(ClientError::Relay(e)) if retry::is_about_connection(e.code) => {
                    // Not about this row: stop here, everything stays queued as it is.
                    return Ok(events);
                }
                Err(ClientError::Relay(e)) => {
                    let receipt = row.value.message_id.is_none();
                    match retry::on_refusal(retry.as_ref(), now, receipt, &e) {
                        Verdict::Park(state) => {
                            self.park(&row, &state)?;
                            held.insert(row.value.recipient.clone(), 0);
                        }
                        Verdict::GiveUp(reason) => events.extend(self.give_up(&row, &reason)?),
                    }
                }
                Err(e) => return Err(e),
            }
        }
        Ok(events)
    }

    /// A message waiting behind a refused row to the same recipient says so (once).
    fn note_held(&mut self, row: &Row<OutboxItem>) -> Result<(), ClientError> {
        let Some(id) = &row.value.message_id else {
            return Ok(());
        };
        let key = dedupe_key(&self.identity.public_key(), id);
        let tx = self.store.tx()?;
        if let Some(mut entry) = tx.find_message::<HistoryEntry>(&key)? {
            if entry.value.state == DeliveryState::Queued && entry.value.failure.is_none() {
                entry.value.failure = Some(WAITING_BEHIND.to_owned());
                tx.update_message(&key, &entry.value)?;
                tx.commit()?;
            }
        }
        Ok(())
    }

    /// Persist a refused row's retry state; its message shows the refusal while queued.
    fn park(&mut self, row: &Row<OutboxItem>, state: &RetryState) -> Result<(), ClientError> {
        let tx = self.store.tx()?;
        tx.put(NS_OUTBOX_RETRY, &row.seq.to_string(), state)?;
        if let Some(id) = &row.value.message_id {
            let key = dedupe_key(&self.identity.public_key(), id);
            if let Some(mut entry) = tx.find_message::<HistoryEntry>(&key)? {
                if entry.value.state == DeliveryState::Queued {
                    entry.value.failure = Some(state.last_reason.clone());
                    tx.update_message(&key, &entry.value)?;
                }
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Remove a row that can never be delivered: a receipt is dropped, a message is marked
    /// [`DeliveryState::Failed`] with `reason` (returned as an event).
    fn give_up(
        &mut self,
        row: &Row<OutboxItem>,
        reason: &str,
    ) -> Result<Option<Event>, ClientError> {
        let tx = self.store.tx()?;
        tx.remove_outbox(row.seq)?;
        tx.delete(NS_OUTBOX_RETRY, &row.seq.to_string())?;
        let mut event = None;
        if let Some(id) = &row.value.message_id {
            let key = dedupe_key(&self.identity.public_key(), id);
            if let Some(mut entry) = tx.find_message::<HistoryEntry>(&key)? {
                if entry.value.state == DeliveryState::Queued {
                    entry.value.state = DeliveryState::Failed;
                    entry.value.failure = Some(reason.to_owned());
                    tx.update_message(&key, &entry.value)?;
                    event = Some(Event::Failed {
                        contact: row.value.contact.clone(),
                        id: id.clone(),
                        reason: reason.to_owned(),
                    });
                }
            }
        }
        tx.commit()?;
        Ok(event)
    }
}
