//! Receiving: subscribe, decrypt on copies, commit, then ack; delivery receipts.

use sha2::{Digest, Sha256};

use super::*;

/// Base keys (X3DH ephemeral keys, the session ids) of inbound sessions remembered per contact,
/// oldest forgotten first. Only [`SESSIONS_KEPT`] + 1 sessions are kept, so without this record
/// a relay could replay the first message of an evicted session (one sent without a one-time
/// prekey) and set up a dead session that becomes active. A replay is only possible while the
/// signed prekey it names is still held (a few weeks), and an honest peer starts a new session
/// with us only on a reinstall or a simultaneous start, so 256 covers far more than a peer
/// makes in that time; libsignal keeps 40 archived states. At 32 bytes (64 hex) a key, a full
/// record is about 17 KB per contact, written only when a new inbound session is set up.
pub const SEEN_BASE_KEYS_KEPT: usize = 256;

/// Sessions kept per contact with an identity key the user has not accepted (a key change
/// pending `trust`): the newest only. The relay names who sent an envelope, so without this
/// bound it could have a throwaway identity it calls "bob" open sessions until bob's real ones
/// were pushed out of the [`SESSIONS_KEPT`] kept.
pub const UNACCEPTED_SESSIONS_KEPT: usize = 1;

/// Deliveries (relay id and envelope) most recently committed, so that the relay re-delivering
/// one whose ack was lost (a crash or a dropped connection between commit and ack) is acked
/// silently, while any other copy of an already-read message is reported as a replay.
/// Deliveries are committed and acked one at a time, so only the last few can come back;
/// 64 leaves a wide margin.
pub const RECENT_DELIVERIES_KEPT: usize = 64;

/// Per contact: [`SEEN_BASE_KEYS_KEPT`] base keys (hex) of inbound sessions, oldest first.
const NS_SEEN_BASE_KEYS: &str = "seen-base-keys";
/// Fingerprints of the last [`RECENT_DELIVERIES_KEPT`] committed deliveries, oldest first.
const NS_RECENT_DELIVERIES: &str = "recent-deliveries";

/// Who the relay says sent an envelope, resolved without storing anything: the contact (and
/// a changed key) is recorded only once the envelope authenticates.
struct Sender {
    /// The contact, as it will be stored if the envelope authenticates.
    contact: Contact,
    /// What must be stored with the first authenticated envelope.
    record: SenderRecord,
}

enum SenderRecord {
    /// A known contact under its known (or already recorded) key: nothing to store.
    Known,
    /// A stranger: a new, unverified contact.
    New,
    /// A known name under a key not seen before: record it as the changed key.
    ChangedKey,
}

/// How one pump step ended.
enum PumpStep<T> {
    /// The wait ended: whether a delivery came (and was processed).
    Received(bool),
    /// The interrupt completed first, with this output; nothing was received.
    Interrupted(T),
}

impl Client {
    /// One step of a long-running client (TUI, JSON-RPC): connect and subscribe if needed
    /// (then flush the outbox), wait up to `wait` for one delivery, process and ack it, and
    /// return its events at once: the receipts it queued are sent first thing in the next
    /// call (so a long-running caller shows a message one relay round trip sooner; they are
    /// committed, and a caller that stops flushes the outbox). When idle, flush once a parked
    /// recipient comes due.
    /// Network errors drop the connection; call again to retry. The outbox never fails a
    /// pump: refused rows are parked (see [`Client::flush_outbox`]). Committed events are
    /// always returned: an error met after them is dropped (it recurs on the next call).
    /// Call [`Client::mark_emitted`] for each message once the consumer has it; until then a
    /// restart finds it in [`Client::unemitted_messages`].
    pub async fn pump(&mut self, wait: Duration) -> Result<Vec<Event>, ClientError> {
        let (events, _) = self.pump_until(wait, std::future::pending::<()>()).await?;
        Ok(events)
    }

    /// [`Client::pump`] whose idle wait also ends when `interrupt` completes, with its output:
    /// a caller that serves requests (`hush web`) answers one at once instead of after `wait`.
    /// `interrupt` is polled only while nothing is being processed (the wait for a delivery,
    /// which is cancel-safe), and is dropped unfinished when a delivery comes first, so it
    /// must be cancel-safe itself (`mpsc::Receiver::recv` is).
    pub async fn pump_until<T>(
        &mut self,
        wait: Duration,
        interrupt: impl std::future::Future<Output = T>,
    ) -> Result<(Vec<Event>, Option<T>), ClientError> {
        let mut events = Vec::new();
        // Receipts the last delivery queued: they go out before waiting again.
        if std::mem::take(&mut self.flush_next) {
            self.flush_after_receiving(&mut events).await?;
        }
        let mut interrupted = None;
        let result = match self.pump_step(wait, interrupt, &mut events).await {
            Ok(PumpStep::Received(true)) => {
                // Hand the message over now; its receipt (a commit and a relay round trip)
                // goes out at the start of the next call.
                self.flush_next = true;
                Ok(())
            }
            Ok(step) => {
                if let PumpStep::Interrupted(value) = step {
                    interrupted = Some(value);
                }
                if self.outbox_due_ms.is_some_and(|t| now_ms() >= t) {
                    self.flush_after_receiving(&mut events).await
                } else {
                    Ok(())
                }
            }
            Err(e) => Err(e),
        };
        match result {
            Err(e) if events.is_empty() => Err(e),
            _ => Ok((events, interrupted)),
        }
    }

    /// Receive at most one delivery into `events`; whether one came.
    pub(super) async fn pump_inner(
        &mut self,
        wait: Duration,
        events: &mut Vec<Event>,
    ) -> Result<bool, ClientError> {
        match self
            .pump_step(wait, std::future::pending::<()>(), events)
            .await?
        {
            PumpStep::Received(got) => Ok(got),
            PumpStep::Interrupted(()) => Ok(false),
        }
    }

    /// [`Client::pump_inner`] with an interrupt for the idle wait.
    async fn pump_step<T>(
        &mut self,
        wait: Duration,
        interrupt: impl std::future::Future<Output = T>,
        events: &mut Vec<Event>,
    ) -> Result<PumpStep<T>, ClientError> {
        if !self.subscribed || self.conn.is_none() {
            // Subscribe first: receiving never waits on the outbox.
            self.request(&Request::Subscribe).await?;
            self.subscribed = true;
            self.flush_after_receiving(events).await?;
            if self.conn.is_none() {
                return Err(ClientError::Network(NetError::Closed));
            }
        }
        let conn = self.connection().await?;
        // Both branches are cancel-safe: a frame half read stays in the reader's buffer.
        let next = tokio::select! {
            biased;
            next = conn.next_delivery(wait) => next,
            value = interrupt => return Ok(PumpStep::Interrupted(value)),
        };
        let delivery = match next {
            Ok(Some(d)) => d,
            Ok(None) => {
                // Keep an idle connection alive well inside the relay's idle timeout.
                if self.last_traffic.elapsed() > KEEPALIVE_INTERVAL {
                    self.request(&Request::Ping).await?;
                    self.last_traffic = std::time::Instant::now();
                }
                return Ok(PumpStep::Received(false));
            }
            Err(e) => {
                self.conn = None;
                return Err(e.into());
            }
        };
        self.last_traffic = std::time::Instant::now();
        events.extend(self.process_delivery(&delivery).await?);
        Ok(PumpStep::Received(true))
    }

    /// Flush for a receiving client, its events into `events`: a lost connection or a relay
    /// refusal is not an error here (the rows stay queued); only a profile failure is.
    pub(super) async fn flush_after_receiving(
        &mut self,
        events: &mut Vec<Event>,
    ) -> Result<(), ClientError> {
        let flushed = self.flush_outbox().await;
        events.extend(flushed.events);
        match flushed.error {
            None | Some(ClientError::Network(_) | ClientError::Relay(_)) => Ok(()),
            Some(e) => Err(e),
        }
    }

    /// Handle one delivered envelope: decrypt on copies, commit, then ack. A message it
    /// returns stays recorded as not emitted until [`Client::mark_emitted`].
    pub async fn process_delivery(
        &mut self,
        delivery: &Delivery,
    ) -> Result<Vec<Event>, ClientError> {
        if hush_proto::group::GroupEnvelope::is_group(&delivery.envelope) {
            let (mut events, follow) = self.accept_group_delivery(delivery).await?;
            self.request(&Request::Ack {
                ids: vec![delivery.id],
            })
            .await?;
            self.group_follow_up(follow, &mut events).await;
            return Ok(events);
        }
        let sender = IdentityPublicKey::from_bytes(&delivery.sender).ok();
        let events = match sender {
            Some(sender) => match self.accept_envelope(sender, delivery).await {
                Ok(events) => events,
                // The relay could not tell us who the sender is, for now: nothing was decided
                // or committed. Leave it unacked; the relay delivers it again on the next
                // connection, and receiving goes on meanwhile.
                Err(ClientError::Relay(_)) => return Ok(Vec::new()),
                Err(e) => return Err(e),
            },
            None => vec![Event::Rejected {
                contact: None,
                reason: "invalid sender key".into(),
            }],
        };
        self.request(&Request::Ack {
            ids: vec![delivery.id],
        })
        .await?;
        Ok(events)
    }

    /// Resolve the relay-named sender to a contact without storing anything.
    async fn contact_for_sender(
        &mut self,
        sender: &IdentityPublicKey,
    ) -> Result<Option<Sender>, ClientError> {
        let key_hex = hex::encode(sender.as_bytes());
        let by_key: Option<String> = self.store.tx()?.get(NS_CONTACT_BY_KEY, &key_hex)?;
        if let Some(name) = by_key {
            return Ok(self.contact(&name)?.map(|contact| Sender {
                contact,
                record: SenderRecord::Known,
            }));
        }
        // A stranger or a changed key: ask the relay which name this identity holds.
        let name = match self
            .request(&Request::WhoIs {
                identity: *sender.as_bytes(),
            })
            .await
        {
            Ok(Reply::Name { name }) => name,
            // A definite "no such name". Any other refusal (a storage failure, a rate limit)
            // says nothing about the sender: it goes up, and the delivery is left unacked.
            Ok(_) => return Ok(None),
            Err(ClientError::Relay(e)) if e.code == ErrorCode::UnknownUser => return Ok(None),
            // A name no one could register: the relay is lying. No contact under it.
            Err(ClientError::Network(NetError::Protocol(
                hush_proto::DecodeError::InvalidName { .. },
            ))) => return Ok(None),
            Err(e) => return Err(e),
        };
        let existing = self.store.tx()?.get::<Contact>(NS_CONTACT, &name)?;
        Ok(Some(match existing {
            Some(mut c) => {
                if c.identity_key != key_hex && c.changed_key.as_deref() != Some(key_hex.as_str()) {
                    c.changed_key = Some(key_hex);
                    Sender {
                        contact: c,
                        record: SenderRecord::ChangedKey,
                    }
                } else {
                    Sender {
                        contact: c,
                        record: SenderRecord::Known,
                    }
                }
            }
            None => Sender {
                contact: Contact {
                    name,
                    identity_key: key_hex,
                    verified: false,
                    changed_key: None,
                    unread: 0,
                    required: Profile::CURRENT,
                },
                record: SenderRecord::New,
            },
        }))
    }

    fn put_contact_key_change(
        tx: &crate::store::Tx<'_>,
        contact: &Contact,
        new_key: &str,
    ) -> Result<(), ClientError> {
        tx.put(NS_CONTACT, &contact.name, contact)?;
        tx.put(NS_CONTACT_BY_KEY, new_key, &contact.name)?;
        Ok(())
    }

    async fn accept_envelope(
        &mut self,
        sender: IdentityPublicKey,
        delivery: &Delivery,
    ) -> Result<Vec<Event>, ClientError> {
        let fingerprint = delivery_fingerprint(delivery);
        let recent: Vec<String> = self
            .store
            .tx()?
            .get(NS_RECENT_DELIVERIES, KEY_SELF)?
            .unwrap_or_default();
        if recent.contains(&fingerprint) {
            // Committed before, but the ack was lost (crash or reconnect): ack it silently.
            return Ok(Vec::new());
        }
        let Some(Sender {
            mut contact,
            record,
        }) = self.contact_for_sender(&sender).await?
        else {
            return Ok(vec![Event::Rejected {
                contact: None,
                reason: "sender has no registered name".into(),
            }]);
        };
        let key_changed = contact.identity_key != hex::encode(sender.as_bytes());
        let envelope = match Envelope::from_bytes(&delivery.envelope) {
            Ok(e) => e,
            Err(e) => {
                return Ok(vec![Event::Rejected {
                    contact: Some(contact.name),
                    reason: format!("malformed envelope: {e}"),
                }])
            }
        };
        let tx = self.store.tx()?;
        let mut sessions = tx
            .get::<SessionSet>(NS_SESSIONS, &contact.name)?
            .unwrap_or_default()
            .load()?;
        drop(tx);

        // Decrypt on copies; commit only what succeeded.
        let mut plaintext = None;
        let mut used_one_time_prekey = None;
        let mut used_one_time_pq_prekey = None;
        // Whether the contact's required profile rises with this envelope (a first `hush-v2`
        // session from a contact stored before hush-v2).
        let mut upgraded = false;
        let mut duplicate = false;
        let mut failure = String::from("no session could decrypt it");
        for index in 0..sessions.len() {
            let Some(candidate) = sessions.get(index) else {
                break;
            };
            if *candidate.remote_identity() != sender {
                continue;
            }
            if let Envelope::Prekey(pre) = &envelope {
                if !candidate.matches(pre) {
                    continue;
                }
            }
            let mut copy = candidate.clone();
            match copy.decrypt(&mut OsRng, &envelope) {
                Ok(p) => {
                    plaintext = Some(p);
                    if let Some(slot) = sessions.get_mut(index) {
                        *slot = copy;
                    }
                    break;
                }
                Err(DecryptError::Duplicate { .. }) => {
                    duplicate = true;
                    break;
                }
                Err(e) => failure = e.to_string(),
            }
        }
        let mut new_inbound_session = false;
        if plaintext.is_none() && !duplicate {
            if let Envelope::Prekey(pre) = &envelope {
                let base_key = hex::encode(pre.x3dh.ephemeral_key.as_bytes());
                let seen: Vec<String> = self
                    .store
                    .tx()?
                    .get(NS_SEEN_BASE_KEYS, &contact.name)?
                    .unwrap_or_default();
                if seen.contains(&base_key) {
                    return Ok(vec![Event::Rejected {
                        contact: Some(contact.name),
                        reason: "replayed first message: its session was set up before".into(),
                    }]);
                }
                // The expected sender is the one the relay named: a header naming any other
                // identity is refused before any key agreement or prekey lookup.
                match Session::respond(
                    &mut OsRng,
                    &self.identity,
                    &sender,
                    contact.required,
                    &self.prekeys,
                    pre,
                ) {
                    Ok(inbound) => {
                        plaintext = Some(inbound.plaintext);
                        used_one_time_prekey = inbound.used_one_time_prekey;
                        used_one_time_pq_prekey = inbound.used_one_time_pq_prekey;
                        new_inbound_session = true;
                        let new = inbound.session;
                        if new.profile() > contact.required {
                            contact.required = new.profile();
                            upgraded = true;
                        }
                        // Simultaneous initiation: when our active session has not heard back,
                        // the session with the smaller base key wins on both sides.
                        // Otherwise the peer started afresh (reinstall, lost state): newest wins.
                        let adopt = match sessions.first() {
                            None => true,
                            Some(active) if *active.remote_identity() != sender => true,
                            Some(active) if active.has_received() => true,
                            Some(active) => {
                                new.session_id().as_bytes() < active.session_id().as_bytes()
                            }
                        };
                        if adopt {
                            sessions.insert(0, new);
                        } else {
                            sessions.insert(1.min(sessions.len()), new);
                        }
                    }
                    Err(SessionError::MismatchedIdentityKey) => {
                        failure = "forged sender: the message was set up by another identity \
                                   than the sender the relay named"
                            .into();
                    }
                    Err(SessionError::UnknownOneTimePrekey(id)) => {
                        failure = format!(
                            "first message names one-time prekey {id}, which is used up or \
                             unknown (a replay, or a prekey we no longer hold)"
                        );
                    }
                    Err(SessionError::Downgrade { required, offered }) => {
                        failure =
                            downgrade_reason(&contact, record_is_new(&record), required, offered);
                    }
                    Err(SessionError::UnknownPqPrekey(id)) => {
                        failure = format!(
                            "first message names PQ prekey {id}, which is used up or unknown \
                             (a replay, a one-time PQ prekey the relay served twice, or one we \
                             no longer hold)"
                        );
                    }
                    Err(e) => failure = e.to_string(),
                }
            }
        }
        if duplicate && plaintext.is_none() {
            // Not a redelivery of what we committed (that was acked silently above): another
            // copy of a message already read, or one whose counter was lowered.
            return Ok(vec![Event::Rejected {
                contact: Some(contact.name),
                reason: "duplicate: a copy of a message already received, or its counter was \
                         lowered (replayed by the relay, or resent by the sender)"
                    .into(),
            }]);
        }
        let Some(plaintext) = plaintext else {
            return Ok(vec![Event::Rejected {
                contact: Some(contact.name),
                reason: failure,
            }]);
        };
        let content = match MessageContent::from_padded_bytes(&plaintext) {
            Ok(c) => c,
            Err(e) => {
                return Ok(vec![Event::Rejected {
                    contact: Some(contact.name),
                    reason: format!("bad message content: {e}"),
                }])
            }
        };

        let mut events = Vec::new();
        let tx = self.store.tx()?;
        // The envelope authenticated: only now is a stranger or a changed key recorded.
        match record {
            SenderRecord::Known if upgraded => {
                tx.put(NS_CONTACT, &contact.name, &contact)?;
            }
            SenderRecord::Known => {}
            SenderRecord::New => Self::put_contact(&tx, &contact)?,
            SenderRecord::ChangedKey => {
                let key_hex = hex::encode(sender.as_bytes());
                Self::put_contact_key_change(&tx, &contact, &key_hex)?;
            }
        }
        if new_inbound_session {
            // Every inbound session's base key, before eviction drops any of them.
            let mut seen: Vec<String> = tx
                .get(NS_SEEN_BASE_KEYS, &contact.name)?
                .unwrap_or_default();
            for session in sessions.iter().filter(|s| !s.is_initiator()) {
                let key = hex::encode(session.session_id().as_bytes());
                if !seen.contains(&key) {
                    seen.push(key);
                }
            }
            let excess = seen.len().saturating_sub(SEEN_BASE_KEYS_KEPT);
            seen.drain(..excess);
            tx.put(NS_SEEN_BASE_KEYS, &contact.name, &seen)?;
        }
        let mut recent = recent;
        recent.push(fingerprint);
        let excess = recent.len().saturating_sub(RECENT_DELIVERIES_KEPT);
        recent.drain(..excess);
        tx.put(NS_RECENT_DELIVERIES, KEY_SELF, &recent)?;
        // Used one-time prekeys (classical and PQ) are deleted in the commit that stores the
        // session they made: a replay of its first message then finds them gone.
        if used_one_time_prekey.is_some() || used_one_time_pq_prekey.is_some() {
            if let Some(id) = used_one_time_prekey {
                self.prekeys.remove_one_time(id);
            }
            if let Some(id) = used_one_time_pq_prekey {
                self.prekeys.remove_pq_one_time(id);
            }
            tx.put(NS_PREKEYS, KEY_SELF, &self.prekeys.pickle())?;
        }
        // A key the user has not accepted (KEY CHANGED) keeps one session at most, so its
        // authenticated envelopes cannot push out the sessions of the trusted key.
        let trusted = contact.key()?;
        let mut unaccepted = 0usize;
        sessions.retain(|s| {
            if *s.remote_identity() == trusted {
                return true;
            }
            unaccepted += 1;
            unaccepted <= UNACCEPTED_SESSIONS_KEPT
        });
        tx.put(
            NS_SESSIONS,
            &contact.name,
            &SessionSet::from_sessions(&sessions),
        )?;
        if content.content_type == ContentType::DELIVERY_RECEIPT {
            let mut ids = Vec::new();
            for chunk in content.body.chunks_exact(16) {
                let id = hex::encode(chunk);
                let key = dedupe_key(&self.identity.public_key(), &id);
                if let Some(mut row) = tx.find_message::<HistoryEntry>(&key)? {
                    if row.value.contact == contact.name && row.value.outgoing {
                        row.value.state = DeliveryState::Delivered;
                        tx.update_message(&key, &row.value)?;
                        ids.push(id);
                    }
                }
            }
            if !ids.is_empty() {
                events.push(Event::Delivered {
                    contact: contact.name.clone(),
                    ids,
                });
            }
        } else if content.content_type == ContentType::TEXT {
            let entry = HistoryEntry {
                id: hex::encode(content.id),
                contact: contact.name.clone(),
                outgoing: false,
                text: String::from_utf8_lossy(&content.body).into_owned(),
                sent_at: content.sent_at_ms,
                received_at: Some(now_ms()),
                state: DeliveryState::Received,
                verified: contact.verified && !key_changed,
                key_changed,
                failure: None,
                group: None,
            };
            let dedupe = dedupe_key(&sender, &entry.id);
            let new = tx.add_message(&contact.name, &dedupe, &entry)?;
            if new.is_some() {
                // Until a consumer has it, a crash must not lose it (see `emit`).
                Self::record_unemitted(&tx, &entry, &dedupe)?;
                let mut c: Contact = tx
                    .get(NS_CONTACT, &contact.name)?
                    .unwrap_or(contact.clone());
                c.unread = c.unread.saturating_add(1);
                tx.put(NS_CONTACT, &c.name, &c)?;
                if key_changed {
                    events.push(Event::KeyChanged {
                        contact: contact.name.clone(),
                    });
                }
                events.push(Event::Message(entry));
                // An end-to-end encrypted receipt, queued in the same transaction. Not sent to
                // a changed key the user has not accepted.
                if !key_changed {
                    let receipt = MessageContent {
                        id: random_id(),
                        sent_at_ms: now_ms(),
                        content_type: ContentType::DELIVERY_RECEIPT,
                        body: content.id.to_vec(),
                    };
                    if let Ok(envelope) = Self::encrypt_for(&tx, &contact, &receipt) {
                        tx.push_outbox(&OutboxItem {
                            contact: contact.name.clone(),
                            recipient: contact.identity_key.clone(),
                            envelope,
                            message_id: None,
                            group: None,
                        })?;
                    }
                }
            }
        }
        tx.commit()?;
        Ok(events)
    }
}

impl Client {
    /// Whether this delivery was committed before (its ack was lost).
    pub(super) fn seen_delivery(&mut self, fingerprint: &str) -> Result<bool, ClientError> {
        let recent: Vec<String> = self
            .store
            .tx()?
            .get(NS_RECENT_DELIVERIES, KEY_SELF)?
            .unwrap_or_default();
        Ok(recent.iter().any(|f| f == fingerprint))
    }

    /// Record a delivery as committed, in the transaction that commits it.
    pub(super) fn remember_delivery(
        tx: &crate::store::Tx<'_>,
        fingerprint: &str,
    ) -> Result<(), ClientError> {
        let mut recent: Vec<String> = tx.get(NS_RECENT_DELIVERIES, KEY_SELF)?.unwrap_or_default();
        recent.push(fingerprint.to_owned());
        let excess = recent.len().saturating_sub(RECENT_DELIVERIES_KEPT);
        recent.drain(..excess);
        tx.put(NS_RECENT_DELIVERIES, KEY_SELF, &recent)?;
        Ok(())
    }
}

fn record_is_new(record: &SenderRecord) -> bool {
    matches!(record, SenderRecord::New)
}

/// Why a first message weaker than the contact requires was refused, loudly (like a key
/// change): a relay, or whoever holds the sender's identity key, tried to set up a session a
/// future quantum computer could decrypt.
fn downgrade_reason(contact: &Contact, new: bool, required: Profile, offered: Profile) -> String {
    let why = if new {
        "every new contact must use hush-v2; their hush is older than hush-v2 and must be updated"
    } else {
        "they used hush-v2 before: possible downgrade attack (a relay injecting a first message \
         in their name, or someone holding their identity key), or an old install of theirs"
    };
    format!(
        "DOWNGRADE REFUSED: a {offered} first message in the name of {}, for whom {required} \
         is required ({why}); nothing was changed",
        contact.name
    )
}

pub(super) fn random_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    OsRng.fill_bytes(&mut id);
    id
}

/// Names one delivery as the relay made it: its relay id and its exact bytes. A redelivery
/// after a lost ack has both; a replayed copy has a new id, a lowered counter other bytes.
pub(super) fn delivery_fingerprint(delivery: &Delivery) -> String {
    let mut hash = Sha256::new();
    hash.update(delivery.id.to_be_bytes());
    hash.update(delivery.sender);
    hash.update(&delivery.envelope);
    hex::encode(hash.finalize())
}

/// De-duplication key of a message: the sender's identity and the sender-chosen id.
pub(super) fn dedupe_key(sender: &IdentityPublicKey, id_hex: &str) -> Vec<u8> {
    [sender.as_bytes().as_slice(), id_hex.as_bytes()].concat()
}
