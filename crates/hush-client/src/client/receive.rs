//! Receiving: subscribe, decrypt on copies, commit, then ack; delivery receipts.

use super::*;

impl Client {
    /// Connect, subscribe, flush the outbox, and process deliveries until `wait` has passed
    /// (pending messages are always drained first, even when `wait` is zero). Each event is
    /// passed to `on_event` after it is committed, also when an error ends the call later.
    pub async fn receive(
        &mut self,
        wait: Duration,
        mut on_event: impl FnMut(&Event),
    ) -> Result<(), ClientError> {
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
            events.iter().for_each(&mut on_event);
            if !got? && tokio::time::Instant::now() >= deadline {
                break;
            }
        }
        // Receipts queued while receiving; a refusal or a lost connection never fails `recv`.
        let mut events = Vec::new();
        let flushed = self.flush_after_receiving(&mut events).await;
        events.iter().for_each(&mut on_event);
        flushed
    }

    /// One step of a long-running client (TUI, JSON-RPC): connect and subscribe if needed
    /// (then flush the outbox), wait up to `wait` for one delivery, process and ack it, and
    /// send any receipts it queued; when idle, flush once a parked recipient comes due.
    /// Network errors drop the connection; call again to retry. The outbox never fails a
    /// pump: refused rows are parked (see [`Client::flush_outbox`]). Committed events are
    /// always returned: an error met after them is dropped (it recurs on the next call).
    pub async fn pump(&mut self, wait: Duration) -> Result<Vec<Event>, ClientError> {
        let mut events = Vec::new();
        let result = match self.pump_inner(wait, &mut events).await {
            Ok(got) => {
                let due = self.outbox_due_ms.is_some_and(|t| now_ms() >= t);
                if got || due {
                    self.flush_after_receiving(&mut events).await
                } else {
                    Ok(())
                }
            }
            Err(e) => Err(e),
        };
        match result {
            Err(e) if events.is_empty() => Err(e),
            _ => Ok(events),
        }
    }

    /// Receive at most one delivery into `events`; whether one came.
    async fn pump_inner(
        &mut self,
        wait: Duration,
        events: &mut Vec<Event>,
    ) -> Result<bool, ClientError> {
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
        let delivery = match conn.next_delivery(wait).await {
            Ok(Some(d)) => d,
            Ok(None) => {
                // Keep an idle connection alive well inside the relay's idle timeout.
                if self.last_traffic.elapsed() > KEEPALIVE_INTERVAL {
                    self.request(&Request::Ping).await?;
                    self.last_traffic = std::time::Instant::now();
                }
                return Ok(false);
            }
            Err(e) => {
                self.conn = None;
                return Err(e.into());
            }
        };
        self.last_traffic = std::time::Instant::now();
        events.extend(self.process_delivery(&delivery).await?);
        Ok(true)
    }

    /// Flush for a receiving client, its events into `events`: a lost connection or a relay
    /// refusal is not an error here (the rows stay queued); only a profile failure is.
    async fn flush_after_receiving(&mut self, events: &mut Vec<Event>) -> Result<(), ClientError> {
        let flushed = self.flush_outbox().await;
        events.extend(flushed.events);
        match flushed.error {
            None | Some(ClientError::Network(_) | ClientError::Relay(_)) => Ok(()),
            Some(e) => Err(e),
        }
    }

    /// Handle one delivered envelope: decrypt on copies, commit, then ack.
    pub async fn process_delivery(
        &mut self,
        delivery: &Delivery,
    ) -> Result<Vec<Event>, ClientError> {
        let sender = IdentityPublicKey::from_bytes(&delivery.sender).ok();
        let events = match sender {
            Some(sender) => self.accept_envelope(sender, delivery).await?,
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

    async fn contact_for_sender(
        &mut self,
        sender: &IdentityPublicKey,
    ) -> Result<Option<Contact>, ClientError> {
        let key_hex = hex::encode(sender.as_bytes());
        let by_key: Option<String> = self.store.tx()?.get(NS_CONTACT_BY_KEY, &key_hex)?;
        if let Some(name) = by_key {
            return self.contact(&name);
        }
        // A stranger or a changed key: ask the relay which name this identity holds.
        let name = match self
            .request(&Request::WhoIs {
                identity: *sender.as_bytes(),
            })
            .await
        {
            Ok(Reply::Name { name }) => name,
            Ok(_) | Err(ClientError::Relay(_)) => return Ok(None),
            // A name no one could register: the relay is lying. No contact under it.
            Err(ClientError::Network(NetError::Protocol(
                hush_proto::DecodeError::InvalidName { .. },
            ))) => return Ok(None),
            Err(e) => return Err(e),
        };
        let tx = self.store.tx()?;
        let contact = match tx.get::<Contact>(NS_CONTACT, &name)? {
            Some(mut c) => {
                if c.identity_key != key_hex && c.changed_key.as_deref() != Some(key_hex.as_str()) {
                    c.changed_key = Some(key_hex.clone());
                    Self::put_contact_key_change(&tx, &c, &key_hex)?;
                }
                c
            }
            None => {
                let c = Contact {
                    name: name.clone(),
                    identity_key: key_hex,
                    verified: false,
                    changed_key: None,
                    unread: 0,
                };
                Self::put_contact(&tx, &c)?;
                c
            }
        };
        tx.commit()?;
        Ok(Some(contact))
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
        let Some(contact) = self.contact_for_sender(&sender).await? else {
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
        if plaintext.is_none() && !duplicate {
            if let Envelope::Prekey(pre) = &envelope {
                match Session::respond(&mut OsRng, &self.identity, &self.prekeys, pre) {
                    Ok(inbound) => {
                        plaintext = Some(inbound.plaintext);
                        used_one_time_prekey = inbound.used_one_time_prekey;
                        let new = inbound.session;
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
                    Err(SessionError::UnknownOneTimePrekey(_)) => {
                        failure = "one-time prekey already used (replayed first message)".into();
                        duplicate = true;
                    }
                    Err(e) => failure = e.to_string(),
                }
            }
        }
        if duplicate && plaintext.is_none() {
            // Already processed (we crashed before acking, or the relay replayed it).
            return Ok(Vec::new());
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
        if let Some(id) = used_one_time_prekey {
            self.prekeys.remove_one_time(id);
            tx.put(NS_PREKEYS, KEY_SELF, &self.prekeys.pickle())?;
        }
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
            };
            let new = tx.add_message(&contact.name, &dedupe_key(&sender, &entry.id), &entry)?;
            if new.is_some() {
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
                        })?;
                    }
                }
            }
        }
        tx.commit()?;
        Ok(events)
    }
}

pub(super) fn random_id() -> [u8; 16] {
    let mut id = [0u8; 16];
    OsRng.fill_bytes(&mut id);
    id
}

/// De-duplication key of a message: the sender's identity and the sender-chosen id.
pub(super) fn dedupe_key(sender: &IdentityPublicKey, id_hex: &str) -> Vec<u8> {
    [sender.as_bytes().as_slice(), id_hex.as_bytes()].concat()
}
