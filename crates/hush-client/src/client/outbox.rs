//! Sending: encrypt and commit into the outbox, then hand the outbox to the relay.

use super::*;

impl Client {
    /// Encrypt, commit and queue a text; then try to hand the outbox to the relay. Returns
    /// the history entry, whose state says whether the relay has it (`OnRelay`) or it is
    /// still queued because the relay is unreachable.
    pub async fn send_text(&mut self, name: &str, text: &str) -> Result<HistoryEntry, ClientError> {
        if self.contact(name)?.is_none() {
            self.add_contact(name).await?;
        }
        let entry = self.queue_text(name, text)?;
        match self.flush_outbox().await {
            Ok(()) | Err(ClientError::Network(_)) => {}
            Err(e) => return Err(e),
        }
        let tx = self.store.tx()?;
        Ok(tx
            .find_message::<HistoryEntry>(&dedupe_key(&self.identity.public_key(), &entry.id))?
            .map(|r| r.value)
            .unwrap_or(entry))
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

    /// Hand every queued envelope to the relay, oldest first; each is removed only after the
    /// relay says it is stored.
    pub async fn flush_outbox(&mut self) -> Result<(), ClientError> {
        let items = self.store.tx()?.outbox::<OutboxItem>()?;
        for row in items {
            let recipient: [u8; 32] = hex::decode(&row.value.recipient)
                .ok()
                .and_then(|b| b.try_into().ok())
                .ok_or_else(|| {
                    ClientError::Store(StoreError::Corrupt("outbox recipient".into()))
                })?;
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
                    if let Some(id) = &row.value.message_id {
                        let key = dedupe_key(&self.identity.public_key(), id);
                        if let Some(mut entry) = tx.find_message::<HistoryEntry>(&key)? {
                            if entry.value.state == DeliveryState::Queued {
                                entry.value.state = DeliveryState::OnRelay;
                                tx.update_message(&key, &entry.value)?;
                            }
                        }
                    }
                    tx.commit()?;
                }
                Ok(_) => return Err(ClientError::Network(NetError::UnexpectedReply)),
                Err(ClientError::Relay(e))
                    if e.code == ErrorCode::MailboxFull || e.code == ErrorCode::RateLimited =>
                {
                    // Keep it queued; a later flush retries.
                    return Err(ClientError::Relay(e));
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }
}
