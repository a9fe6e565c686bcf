//! Integrity and replay: the relay flips a bit of a stored envelope, and re-inserts one that
//! was already delivered; bob's client must reject both.

use std::time::Instant;

use hush_client::Event;
use rusqlite::{params, Connection};

use super::clients::{has_text, receive_until};
use super::relay_db::reinsert;
use super::{Demo, PATIENCE, RECEIVE_WAIT};

impl Demo {
    pub(super) async fn integrity(&mut self, sabotage: bool) -> Result<(bool, String), String> {
        self.bob_offline().await;
        let target = "Transfer 100 to account 12345.";
        let before: Vec<i64> = self.mailbox(&self.bob_key)?.iter().map(|r| r.id).collect();
        self.alice_sends(target).await?;
        let row = self
            .mailbox(&self.bob_key)?
            .into_iter()
            .find(|r| !before.contains(&r.id))
            .ok_or("alice's envelope is not in bob's mailbox")?;
        self.say(format!(
            "bob is offline; alice sends \"{target}\"; it waits on the relay as row {} ({} bytes)",
            row.id,
            row.envelope.len()
        ));
        let mut tampered = row.envelope.clone();
        let index = tampered.len() / 2;
        let original = tampered.get(index).copied().unwrap_or_default();
        if let Some(byte) = tampered.get_mut(index) {
            *byte ^= 0x01;
        }
        if sabotage {
            self.say("SABOTAGED: the envelope is left untouched");
        } else {
            let db = self.relay_db()?;
            db.execute(
                "UPDATE messages SET envelope = ?1 WHERE id = ?2",
                params![tampered, row.id],
            )
            .map_err(|e| format!("tampering: {e}"))?;
            self.say(format!(
                "the malicious relay flips one bit of it in its database \
                 (UPDATE messages SET envelope = ?): byte {index} {original:#04x} -> {:#04x}",
                original ^ 0x01
            ));
        }
        self.captured.push(row);
        let genuine = "This one is genuine.";
        self.alice_sends(genuine).await?;
        self.say(format!("alice sends \"{genuine}\""));
        let bob = self.bob()?;
        let events = receive_until(bob, |e| {
            has_text(e, genuine)
                && (e.iter().any(|e| matches!(e, Event::Rejected { .. })) || has_text(e, target))
        })
        .await?;
        let rejected: Vec<String> = events
            .iter()
            .filter_map(|e| match e {
                Event::Rejected { contact, reason } => Some(format!(
                    "{} ({reason})",
                    contact.as_deref().unwrap_or("unknown sender")
                )),
                _ => None,
            })
            .collect();
        let got_genuine = has_text(&events, genuine);
        let history = self.bob()?.history("alice").map_err(|e| e.to_string())?;
        let target_shown = history.iter().any(|m| m.text == target);
        self.say("bob comes online:");
        for r in &rejected {
            self.detail(format!("rejected an envelope from {r}"));
        }
        if rejected.is_empty() {
            self.detail("NOTHING was rejected");
        }
        self.detail(format!(
            "the genuine message {}",
            if got_genuine {
                "still decrypts"
            } else {
                "did NOT arrive"
            }
        ));
        self.detail(format!(
            "the tampered text {} in bob's history",
            if target_shown {
                "IS SHOWN"
            } else {
                "is not shown"
            }
        ));
        Ok((
            !rejected.is_empty() && got_genuine && !target_shown,
            "a 1-bit change on the relay was rejected (AEAD tag); the next genuine message \
             decrypted"
                .into(),
        ))
    }

    pub(super) async fn replay(&mut self) -> Result<(bool, String), String> {
        let Some(original) = self.captured.first() else {
            return Err("no envelope was captured".into());
        };
        let (original_id, sender, envelope) = (
            original.id,
            original.sender.clone(),
            original.envelope.clone(),
        );
        let text = self
            .texts
            .iter()
            .find(|t| t.starts_with("Sent while you were offline (1/3)"))
            .cloned()
            .unwrap_or_default();
        let count = |demo: &mut Demo| -> Result<usize, String> {
            Ok(demo
                .bob()?
                .history("alice")
                .map_err(|e| e.to_string())?
                .iter()
                .filter(|m| m.text == text)
                .count())
        };
        let before = count(self)?;
        self.bob_offline().await;
        let new_id = reinsert(&self.relay_db()?, &self.bob_key, &sender, &envelope)?;
        self.say(format!(
            "bob is offline; the malicious relay re-inserts a copy of row {original_id} (\"{text}\", \
             delivered and deleted earlier) into his mailbox as row {new_id}"
        ));
        let db_path = self.relay_dir.join(hush_relay::server::DATABASE_FILE);
        let bob = self.bob()?;
        let mut events = Vec::new();
        let deadline = Instant::now() + PATIENCE;
        let mut consumed = false;
        while Instant::now() < deadline {
            bob.receive(RECEIVE_WAIT, |e| events.push(e.clone()))
                .await
                .map_err(|e| e.to_string())?;
            let db = Connection::open(&db_path).map_err(|e| e.to_string())?;
            let left: i64 = db
                .query_row(
                    "SELECT count(*) FROM messages WHERE id = ?1",
                    params![new_id],
                    |r| r.get(0),
                )
                .map_err(|e| e.to_string())?;
            if left == 0 {
                consumed = true;
                break;
            }
        }
        let shown_again = has_text(&events, &text);
        let reported = events.iter().find_map(|e| match e {
            Event::Rejected {
                contact: Some(c),
                reason,
            } if c == "alice" => Some(reason.clone()),
            _ => None,
        });
        let after = count(self)?;
        self.say(format!(
            "bob comes online: the relay delivers row {new_id} ({}); bob's client shows {}",
            if consumed {
                "bob acknowledged it, so it is gone"
            } else {
                "it was NOT consumed"
            },
            if shown_again {
                "it AGAIN".to_owned()
            } else {
                match &reported {
                    Some(reason) => format!(
                        "nothing new (the session already used and deleted that message key) \
                         and reports it: Rejected: {reason}"
                    ),
                    None => "nothing, and does NOT report the replay".to_owned(),
                }
            }
        ));
        self.detail(format!(
            "\"{text}\" appears {after} time(s) in bob's history (before the replay: {before})"
        ));
        Ok((
            consumed && !shown_again && reported.is_some() && before == 1 && after == 1,
            "an already-delivered envelope re-inserted by the relay was discarded and reported; \
             no duplicate in history"
                .into(),
        ))
    }
}
