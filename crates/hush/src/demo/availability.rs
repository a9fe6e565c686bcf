//! Availability: mail for an offline user waits on the relay and arrives in order; a client
//! that breaks off mid-frame disturbs nobody.

use tokio::io::AsyncWriteExt;

use super::clients::{has_text, receive_until, texts};
use super::relay_db::StoredRow;
use super::Demo;

impl Demo {
    pub(super) async fn availability(&mut self) -> Result<(bool, String), String> {
        self.bob_offline().await;
        self.say("bob goes offline (his client is closed)");
        let before: Vec<i64> = self.mailbox(&self.bob_key)?.iter().map(|r| r.id).collect();
        let offline = [
            "Sent while you were offline (1/3).",
            "Sent while you were offline (2/3).",
            "Sent while you were offline (3/3).",
        ];
        for text in offline {
            self.alice_sends(text).await?;
        }
        let new: Vec<StoredRow> = self
            .mailbox(&self.bob_key)?
            .into_iter()
            .filter(|r| !before.contains(&r.id))
            .collect();
        self.say(format!(
            "alice sends 3 messages; the relay has stored {} new envelopes in bob's mailbox \
             (rows {}) and acknowledged them to alice",
            new.len(),
            new.iter()
                .map(|r| r.id.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
        let stored_all = new.len() == offline.len();
        self.captured.extend(new);

        let bob = self.bob()?;
        let events = receive_until(bob, |e| offline.iter().all(|t| has_text(e, t))).await?;
        let arrived: Vec<String> = texts(&events)
            .into_iter()
            .filter(|t| offline.contains(&t.as_str()))
            .collect();
        let in_order = arrived == offline;
        self.say("bob comes online and receives:");
        for t in &arrived {
            self.detail(format!("\"{t}\""));
        }
        let left = self.mailbox(&self.bob_key)?.len();
        self.detail(format!(
            "{} ({} left in his mailbox: acknowledged envelopes are deleted)",
            if in_order {
                "all three, in order"
            } else {
                "NOT all three in order"
            },
            left
        ));

        // A client that connects and breaks off in the middle of a frame.
        let mut raw = tokio::net::TcpStream::connect(&self.relay_addr)
            .await
            .map_err(|e| format!("raw connection: {e}"))?;
        let mut partial = 256u32.to_be_bytes().to_vec();
        partial.extend_from_slice(&[0x42; 16]);
        raw.write_all(&partial)
            .await
            .map_err(|e| format!("raw connection: {e}"))?;
        self.say(
            "a raw TCP client connects to the relay, announces a 256-byte frame, sends 16 bytes \
             of it, and stalls",
        );
        let during = "Still flowing while a broken client hangs mid-frame.";
        self.alice_sends(during).await?;
        let bob = self.bob()?;
        let events = receive_until(bob, |e| has_text(e, during)).await?;
        let flowed_during = has_text(&events, during);
        drop(raw);
        self.say("the raw client drops its connection mid-frame");
        let after = "And still flowing after it disconnected.";
        self.alice_sends(after).await?;
        let bob = self.bob()?;
        let events = receive_until(bob, |e| has_text(e, after)).await?;
        let flowed_after = has_text(&events, after);
        self.detail(format!(
            "bob, online, receives live: \"{during}\" {} and \"{after}\" {}",
            if flowed_during { "(yes)" } else { "(NO)" },
            if flowed_after { "(yes)" } else { "(NO)" }
        ));
        Ok((
            stored_all && in_order && flowed_during && flowed_after,
            "3 messages sent while bob was offline arrived in order when he connected; a client \
             cut off mid-frame disturbed nobody"
                .into(),
        ))
    }
}
