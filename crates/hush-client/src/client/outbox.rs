//! Sending: encrypt and commit into the outbox, then hand the outbox to the relay.

use super::retry::{self, RetryState, RECEIPTS_HELD_MAX, RECEIPTS_QUEUED_MAX};
use super::*;
use crate::store::Row;

/// Refusal clock of each recipient whose oldest queued row was refused ([`RetryState`]),
/// keyed by the recipient's key (hex). (Not the per-row `outbox-retry` of before.)
const NS_OUTBOX_RETRY: &str = "outbox-retry-recipient";
/// The `failure` of a message held back so that it does not overtake a refused one.
const WAITING_BEHIND: &str =
    "waiting behind an earlier envelope to the same recipient that the relay refused";

/// What a flush did. The events come back even when the flush stopped on an error: a
/// failure it committed before the error is reported nowhere else.
#[derive(Debug)]
#[must_use]
pub struct Flushed {
    /// An [`Event::Failed`] for each message found undeliverable.
    pub events: Vec<Event>,
    /// Why the flush stopped early (the connection, or the profile); the remaining rows
    /// stay queued untouched.
    pub error: Option<ClientError>,
}

/// What [`Client::send_text_reporting`] did once the message was committed to the outbox.
#[derive(Debug)]
#[must_use]
pub struct Sent {
    /// The message as it stands: `OnRelay`, `Queued` (see `failure` and `error`) or `Failed`.
    pub entry: HistoryEntry,
    /// [`Event::Failed`] of every queued message (this one included) the flush gave up.
    pub events: Vec<Event>,
    /// Why the flush stopped early, if it did. The message is committed and stays queued,
    /// so this never means the message failed.
    pub error: Option<ClientError>,
}

impl Client {
    /// Encrypt, commit and queue a text; then try to hand the outbox to the relay. Returns
    /// the history entry, whose state says whether the relay has it (`OnRelay`), it is still
    /// queued (relay unreachable, or refused and retried later: see `failure`), or it can
    /// never be delivered (`Failed`). Refusals of other queued rows never fail this call.
    pub async fn send_text(&mut self, name: &str, text: &str) -> Result<HistoryEntry, ClientError> {
        let sent = self.send_text_reporting(name, text).await?;
        match sent.error {
            Some(e) if !matches!(e, ClientError::Network(_) | ClientError::Relay(_)) => Err(e),
            _ => Ok(sent.entry),
        }
    }

    /// [`Client::send_text`] for callers that report: the flush's events and error come back
    /// with the entry. Errs only before the message is committed; after that it is queued,
    /// whatever the flush met.
    pub async fn send_text_reporting(
        &mut self,
        name: &str,
        text: &str,
    ) -> Result<Sent, ClientError> {
        if let Some(group) = name.strip_prefix('#') {
            return self.send_group_reporting(group, text).await;
        }
        if self.contact(name)?.is_none() {
            self.add_contact(name).await?;
        } else {
            self.prepare_session(name, now_ms()).await?;
        }
        let entry = self.queue_text(name, text)?;
        let Flushed { events, error } = self.flush_outbox().await;
        let stored = self
            .store
            .tx()
            .and_then(|tx| {
                tx.find_message::<HistoryEntry>(&dedupe_key(&self.identity.public_key(), &entry.id))
            })
            .map(|r| r.map(|r| r.value));
        let (entry, error) = match stored {
            Ok(found) => (found.unwrap_or(entry), error),
            Err(e) => (entry, error.or(Some(e.into()))),
        };
        Ok(Sent {
            entry,
            events,
            error,
        })
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
            group: None,
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
            group: None,
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
            .find(|s| super::contacts::sendable(s, contact, &trusted))
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
    /// relay says it is stored. When the relay refuses a recipient's oldest row, that
    /// recipient is parked with exponential backoff (see [`super::retry`]) and the flush goes
    /// on with the others, so one full mailbox or one vanished recipient never holds up
    /// anyone else. Its later rows wait behind (messages to one contact keep their order) and
    /// age with it: receipts are dropped a day after the first refusal, messages fail a week
    /// after (or after they were queued, if later), all of them at once for a gone recipient.
    ///
    /// Connects once, before the first row: a failure there (or a refusal while registering
    /// or publishing prekeys) is about the connection and parks nothing. Rows are sent only
    /// on that connection; if it drops, the flush stops.
    pub async fn flush_outbox(&mut self) -> Flushed {
        self.flush_outbox_at(now_ms()).await
    }

    /// [`Client::flush_outbox`] with the clock given (ms since the Unix epoch), so tests can
    /// check the give-up bounds without waiting days.
    #[doc(hidden)]
    pub async fn flush_outbox_at(&mut self, now: u64) -> Flushed {
        let mut events = Vec::new();
        let mut due = None;
        let error = self.flush_into(now, &mut events, &mut due).await.err();
        // Retry a flush that stopped early at the next idle moment, else when the earliest
        // parked recipient comes due.
        self.outbox_due_ms = if error.is_some() { Some(now) } else { due };
        Flushed { events, error }
    }

    async fn flush_into(
        &mut self,
        now: u64,
        events: &mut Vec<Event>,
        due: &mut Option<u64>,
    ) -> Result<(), ClientError> {
        let items = self.store.tx()?.outbox::<OutboxItem>()?;
        // Each recipient's rows in order, recipients in the order of their oldest row.
        let mut queues: Vec<(String, Vec<Row<OutboxItem>>)> = Vec::new();
        let mut index = std::collections::HashMap::<String, usize>::new();
        for row in items {
            let recipient = row.value.recipient.clone();
            match index.get(&recipient).and_then(|&i| queues.get_mut(i)) {
                Some((_, rows)) => rows.push(row),
                None => {
                    index.insert(recipient.clone(), queues.len());
                    queues.push((recipient, vec![row]));
                }
            }
        }
        self.cap_receipts(&mut queues)?;
        let mut connected = false;
        for (recipient, rows) in queues {
            if let Some(next) = self
                .flush_recipient(now, &recipient, rows, events, &mut connected)
                .await?
            {
                *due = Some(due.map_or(next, |d: u64| d.min(next)));
            }
        }
        Ok(())
    }

    /// Keep at most [`RECEIPTS_QUEUED_MAX`] receipts in the whole outbox: beyond it, drop the
    /// oldest receipts of whichever recipient holds the most. Many identities with full
    /// mailboxes, each writing to us, must not grow our outbox (or the cost of each flush).
    fn cap_receipts(
        &mut self,
        queues: &mut [(String, Vec<Row<OutboxItem>>)],
    ) -> Result<(), ClientError> {
        let is_receipt = |row: &Row<OutboxItem>| row.value.message_id.is_none();
        let mut counts: Vec<usize> = queues
            .iter()
            .map(|(_, rows)| rows.iter().filter(|r| is_receipt(r)).count())
            .collect();
        let total: usize = counts.iter().sum();
        let mut to_drop = vec![0usize; counts.len()];
        for _ in 0..total.saturating_sub(RECEIPTS_QUEUED_MAX) {
            let most = counts.iter().enumerate().max_by_key(|(_, c)| **c);
            let Some(i) = most.map(|(i, _)| i) else { break };
            if let (Some(c), Some(d)) = (counts.get_mut(i), to_drop.get_mut(i)) {
                *c = c.saturating_sub(1);
                *d += 1;
            }
        }
        for ((_, rows), mut drop) in queues.iter_mut().zip(to_drop) {
            if drop == 0 {
                continue;
            }
            let mut kept = Vec::with_capacity(rows.len());
            for row in std::mem::take(rows) {
                if drop > 0 && is_receipt(&row) {
                    drop -= 1;
                    self.give_up(&row, "")?;
                } else {
                    kept.push(row);
                }
            }
            *rows = kept;
        }
        Ok(())
    }

    /// Flush one recipient's queue; returns when it is next due if rows remain parked.
    async fn flush_recipient(
        &mut self,
        now: u64,
        recipient_hex: &str,
        rows: Vec<Row<OutboxItem>>,
        events: &mut Vec<Event>,
        connected: &mut bool,
    ) -> Result<Option<u64>, ClientError> {
        let mut state: Option<RetryState> = self.store.tx()?.get(NS_OUTBOX_RETRY, recipient_hex)?;
        if let Some(parked) = state.as_ref().filter(|s| !s.is_due(now)) {
            let next = parked.next_attempt_ms;
            self.hold(&rows)?;
            return Ok(Some(next));
        }
        let mut rows = std::collections::VecDeque::from(rows);
        // A group's queue is named `group:ID`; its rows go out with GroupSend.
        let group = recipient_hex
            .strip_prefix("group:")
            .and_then(|id| hex::decode(id).ok())
            .and_then(|id| hush_proto::relay::GroupId::new(id).ok());
        let recipient: Option<[u8; 32]> = hex::decode(recipient_hex)
            .ok()
            .and_then(|b| b.try_into().ok());
        if recipient.is_none() && group.is_none() {
            for row in &rows {
                events.extend(self.give_up(row, "the stored recipient key is corrupt")?);
            }
            self.forget_recipient(recipient_hex)?;
            return Ok(None);
        }
        while let Some(head) = rows.front() {
            if !*connected {
                // Connect (register, publish prekeys) before any row is sent, so that a
                // refusal there is never blamed on a row.
                self.connection().await?;
                *connected = true;
            }
            let request = match (&group, recipient) {
                (Some(group_id), _) => Request::GroupSend {
                    group_id: group_id.clone(),
                    envelope: head.value.envelope.clone(),
                },
                (None, Some(recipient)) => Request::Send {
                    recipient,
                    envelope: head.value.envelope.clone(),
                },
                (None, None) => break,
            };
            let reply = self.request_on_open(&request).await;
            match reply {
                Ok(Reply::Stored { .. }) => {
                    let tx = self.store.tx()?;
                    tx.remove_outbox(head.seq)?;
                    // The recipient took a row: its refusal clock starts afresh.
                    tx.delete(NS_OUTBOX_RETRY, recipient_hex)?;
                    if let Some(id) = &head.value.message_id {
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
                    state = None;
                    rows.pop_front();
                }
                Ok(_) => return Err(ClientError::Network(NetError::UnexpectedReply)),
                // Not about this row (sending too fast, shutting down): stop, park nothing.
                Err(ClientError::Relay(e)) if retry::is_about_connection(e.code) => {
                    return Err(ClientError::Relay(e));
                }
                Err(ClientError::Relay(e)) => {
                    let next = retry::on_refusal(state.as_ref(), now, &e);
                    let gone = retry::is_gone(&e);
                    return self.after_refusal(recipient_hex, rows, next, gone, now, events);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(None)
    }

    /// Apply a recipient's new refusal clock to its whole queue: give up what is too old
    /// (everything, for a gone recipient), park the rest. Returns when it is next due.
    fn after_refusal(
        &mut self,
        recipient_hex: &str,
        rows: std::collections::VecDeque<Row<OutboxItem>>,
        state: RetryState,
        gone: bool,
        now: u64,
        events: &mut Vec<Event>,
    ) -> Result<Option<u64>, ClientError> {
        let mut kept = Vec::new();
        for row in rows {
            let expired = if gone {
                Some(state.last_reason.clone())
            } else if row.value.message_id.is_none() {
                state.receipt_expired(now).then(String::new)
            } else {
                let queued = self.message(&row)?.map_or(0, |m| m.sent_at);
                state.message_expired(queued, now)
            };
            match expired {
                Some(reason) => events.extend(self.give_up(&row, &reason)?),
                None => kept.push(row),
            }
        }
        let Some(head) = kept.first() else {
            self.forget_recipient(recipient_hex)?;
            return Ok(None);
        };
        self.park(recipient_hex, head, &state)?;
        self.hold(&kept)?;
        Ok(Some(state.next_attempt_ms))
    }

    /// The rows behind a parked head: messages say why they wait; receipts beyond
    /// [`RECEIPTS_HELD_MAX`] are dropped, so a contact whose mailbox stays full (and who
    /// keeps writing to us) cannot grow our outbox.
    fn hold(&mut self, rows: &[Row<OutboxItem>]) -> Result<(), ClientError> {
        let mut receipts = 0usize;
        for row in rows.iter().skip(1) {
            if row.value.message_id.is_none() {
                receipts += 1;
                if receipts > RECEIPTS_HELD_MAX {
                    self.give_up(row, "")?;
                }
                continue;
            }
            self.note_held(row)?;
        }
        Ok(())
    }

    /// One request on the connection opened for this flush; never reconnects (a new
    /// connection would register and publish prekeys, and its refusals are not the row's).
    async fn request_on_open(&mut self, request: &Request) -> Result<Reply, ClientError> {
        if self.conn.is_none() {
            return Err(ClientError::Network(NetError::Closed));
        }
        self.request(request).await
    }

    fn message(&mut self, row: &Row<OutboxItem>) -> Result<Option<HistoryEntry>, ClientError> {
        let Some(id) = &row.value.message_id else {
            return Ok(None);
        };
        let key = dedupe_key(&self.identity.public_key(), id);
        Ok(self
            .store
            .tx()?
            .find_message::<HistoryEntry>(&key)?
            .map(|r| r.value))
    }

    fn forget_recipient(&mut self, recipient_hex: &str) -> Result<(), ClientError> {
        let tx = self.store.tx()?;
        tx.delete(NS_OUTBOX_RETRY, recipient_hex)?;
        tx.commit()?;
        Ok(())
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

    /// Persist a recipient's refusal clock; its head message shows the refusal while queued.
    fn park(
        &mut self,
        recipient_hex: &str,
        row: &Row<OutboxItem>,
        state: &RetryState,
    ) -> Result<(), ClientError> {
        let tx = self.store.tx()?;
        tx.put(NS_OUTBOX_RETRY, recipient_hex, state)?;
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
