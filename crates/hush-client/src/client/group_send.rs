//! Sending to a group: the padded message content as the MLS application payload, committed
//! with the advanced MLS state and an outbox row before the `GroupSend` leaves (the relay
//! stores it once for every member).

use super::groups::history_key;
use super::keypackages::group_err;
use super::*;
use crate::group::{engine as group, HushProvider, IdentitySigner};

impl Client {
    /// [`Client::send_text_reporting`] for `#NAME`: first settle our pending commit and catch
    /// up with the group's commits (best effort: offline, the message is queued in the epoch
    /// we know), then encrypt, commit and flush.
    pub(super) async fn send_group_reporting(
        &mut self,
        name: &str,
        text: &str,
    ) -> Result<Sent, ClientError> {
        let record = self.usable_group(name)?;
        let id = record.id_bytes()?;
        let mut events = Vec::new();
        let synced = match self.resolve_pending(&id, &mut events).await {
            Ok(()) => self.catch_up(&id, &mut events).await,
            Err(e) => Err(e),
        };
        if let Err(e) = synced {
            tracing::debug!("group catch-up before sending failed: {e}");
        }
        // A commit met while catching up may have removed us.
        let record = self.usable_group(name)?;
        let entry = self.queue_group_text(&record, text)?;
        let Flushed {
            events: more,
            error,
        } = self.flush_outbox().await;
        events.extend(more);
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

    /// Encrypt a text for the group and commit it (MLS state, history row, outbox row).
    fn queue_group_text(
        &mut self,
        record: &super::groups::GroupRecord,
        text: &str,
    ) -> Result<HistoryEntry, ClientError> {
        let id_bytes = record.id_bytes()?;
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
            contact: format!("#{}", record.name),
            outgoing: true,
            text: text.to_owned(),
            sent_at,
            received_at: None,
            state: DeliveryState::Queued,
            verified: false,
            key_changed: false,
            failure: None,
            group: Some(record.name.clone()),
        };
        let padded = content.to_padded_bytes()?;
        let tx = self.store.tx()?;
        let provider = HushProvider::new(&tx);
        let signer = IdentitySigner::new(&self.identity);
        let members = group::members(&provider, &id_bytes).map_err(group_err)?;
        if members.len() < 2 {
            return Err(ClientError::Invalid(format!(
                "#{} has no other members yet: add some with `hush group add {} NAME`",
                record.name, record.name
            )));
        }
        let envelope = group::encrypt(&provider, &signer, &id_bytes, &padded).map_err(group_err)?;
        tx.add_message(
            &history_key(&record.id),
            &dedupe_key(&self.identity.public_key(), &entry.id),
            &entry,
        )?;
        tx.push_outbox(&OutboxItem {
            contact: format!("#{}", record.name),
            recipient: format!("group:{}", record.id),
            envelope,
            message_id: Some(entry.id.clone()),
            group: Some(record.id.clone()),
        })?;
        tx.commit()?;
        Ok(entry)
    }
}
