//! Man in the middle: the relay relabels a forged sender as alice, then remaps the name "bob"
//! to mallory; safety numbers and key-change blocking must expose both.

use std::time::{SystemTime, UNIX_EPOCH};

use hush_client::{Client, ClientError, Event};
use hush_proto::{
    ContentType, IdentityKeyPair, IdentityPublicKey, MessageContent, PrekeyBundle, SafetyNumber,
    Session, SignedPrekey, X25519PublicKey,
};
use rand_core::OsRng;
use rusqlite::params;

use super::clients::{has_text, message, receive_until};
use super::print::one_line;
use super::relay_db::reinsert;
use super::{Demo, PASSPHRASE};

impl Demo {
    /// The relay makes a throwaway identity, runs X3DH against bob's real bundle (the signed
    /// prekey it stores; no one-time prekey needed) and delivers the result to bob labelled as
    /// coming from alice, his verified contact. Returns whether bob's client refused it.
    async fn forged_sender(&mut self) -> Result<bool, String> {
        let pitch = "Hi Bob, it's Alice. Please send me the door code here.";
        let (id, created_at, public, signature) = {
            let db = self.relay_db()?;
            db.query_row(
                "SELECT id, created_at, public, signature FROM signed_prekeys WHERE identity = ?1",
                params![self.bob_key.as_slice()],
                |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, Vec<u8>>(2)?,
                        r.get::<_, Vec<u8>>(3)?,
                    ))
                },
            )
            .map_err(|e| format!("bob's signed prekey: {e}"))?
        };
        let bad = |what: &str| format!("bob's stored signed prekey: bad {what}");
        let bundle = PrekeyBundle {
            identity_key: IdentityPublicKey::from_bytes(&self.bob_key)
                .map_err(|e| e.to_string())?,
            signed_prekey: SignedPrekey {
                id: u32::try_from(id).map_err(|_| bad("id"))?,
                created_at: u64::try_from(created_at).map_err(|_| bad("time"))?,
                public_key: X25519PublicKey::from_bytes(public.try_into().map_err(|_| bad("key"))?),
                signature: signature.try_into().map_err(|_| bad("signature"))?,
            },
            one_time_prekey: None,
            pq_prekey: None,
        }
        .verify(hush_proto::Profile::V1)
        .map_err(|e| format!("bob's bundle: {e}"))?;
        let throwaway = IdentityKeyPair::generate(&mut OsRng);
        let mut session = Session::initiate(&mut OsRng, &throwaway, &bundle)
            .map_err(|e| format!("forging: {e}"))?;
        let mut id = [0u8; 16];
        rand_core::RngCore::fill_bytes(&mut OsRng, &mut id);
        let content = MessageContent {
            id,
            sent_at_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
                .unwrap_or(0),
            content_type: ContentType::TEXT,
            body: pitch.as_bytes().to_vec(),
        };
        let padded = content.to_padded_bytes().map_err(|e| e.to_string())?;
        let wire = session
            .encrypt(&mut OsRng, &padded)
            .map_err(|e| e.to_string())?
            .to_bytes();
        self.texts.push(pitch.to_owned());
        self.bob_offline().await;
        let row = reinsert(&self.relay_db()?, &self.bob_key, &self.alice_key, &wire)?;
        self.say(format!(
            "the malicious relay makes a throwaway identity (fingerprint {}), runs X3DH against \
             bob's real bundle and stores \"{pitch}\" in bob's mailbox as row {row}, with the \
             sender column set to alice, bob's verified contact",
            throwaway.public_key().fingerprint()
        ));
        let bob = self.bob()?;
        let events = receive_until(bob, |events| {
            events
                .iter()
                .any(|e| matches!(e, Event::Rejected { contact: Some(c), .. } if c == "alice"))
        })
        .await?;
        let reason = events.iter().find_map(|e| match e {
            Event::Rejected {
                contact: Some(c),
                reason,
            } if c == "alice" => Some(reason.clone()),
            _ => None,
        });
        let shown = has_text(&events, pitch)
            || bob
                .history("alice")
                .map_err(|e| e.to_string())?
                .iter()
                .any(|m| m.text == pitch);
        self.detail(match (&reason, shown) {
            (Some(reason), false) => format!(
                "bob's client refuses it and says so (Rejected: {reason}); nothing is shown as \
                 alice's, his sessions with her are untouched"
            ),
            (_, true) => "bob's client SHOWS IT AS ALICE'S".to_owned(),
            (None, false) => "bob's client shows nothing, but did NOT report it".to_owned(),
        });
        Ok(reason.is_some_and(|r| r.contains("forged sender")) && !shown)
    }

    pub(super) async fn man_in_the_middle(&mut self) -> Result<(bool, String), String> {
        let forged_refused = self.forged_sender().await?;
        // carol exists since the group row (she shared a group with bob, never a contact).
        let carol_dir = self.root.path().join("carol");
        let mut carol = if carol_dir.exists() {
            Client::open(&carol_dir, PASSPHRASE).map_err(|e| format!("carol: {e}"))?
        } else {
            let carol = Client::init(
                &carol_dir,
                PASSPHRASE,
                "carol",
                &self.relay_addr,
                Some(self.relay_key),
            )
            .await
            .map_err(|e| format!("carol: {e}"))?;
            self.other_keys
                .push(("carol", *carol.identity_key().as_bytes()));
            carol
        };
        self.say(format!(
            "carol (fingerprint {}) has never added bob as a contact",
            carol.identity_key().fingerprint()
        ));
        self.bob_offline().await;
        {
            let db = self.relay_db()?;
            db.execute("DELETE FROM users WHERE name = ?1", params!["bob"])
                .map_err(|e| format!("freeing the name: {e}"))?;
        }
        let mut mallory = Client::init(
            &self.root.path().join("mallory"),
            PASSPHRASE,
            "bob",
            &self.relay_addr,
            Some(self.relay_key),
        )
        .await
        .map_err(|e| format!("mallory: {e}"))?;
        self.other_keys
            .push(("mallory", *mallory.identity_key().as_bytes()));
        self.say(format!(
            "the malicious relay frees the name \"bob\" (DELETE FROM users WHERE name = 'bob') and \
             mallory registers as \"bob\" with her own identity (fingerprint {})",
            mallory.identity_key().fingerprint()
        ));

        // A fresh contact: trust on first use accepts mallory's key, but the numbers differ.
        carol
            .add_contact("bob")
            .await
            .map_err(|e| format!("carol cannot add bob: {e}"))?;
        let on_carol = carol.safety_number("bob").map_err(|e| e.to_string())?;
        let real_bob =
            hush_proto::IdentityPublicKey::from_bytes(&self.bob_key).map_err(|e| e.to_string())?;
        let on_bob = SafetyNumber::new(&real_bob, &carol.identity_key());
        self.say(
            "carol adds \"bob\" and gets mallory's bundle; when carol and the real bob compare:",
        );
        self.detail(format!(
            "carol's screen for \"bob\": {}",
            one_line(&on_carol)
        ));
        self.detail(format!(
            "real bob's screen for carol: {}",
            one_line(&on_bob)
        ));
        let fresh_differs = on_carol.digits() != on_bob.digits();
        self.detail(if fresh_differs {
            "different (carol's own half matches, the half for \"bob\" does not): comparing \
             numbers exposes the substitution"
        } else {
            "EQUAL"
        });

        // An existing contact: the key change is flagged and sending is blocked.
        let pitch = "Hi Alice, it's Bob on a new phone. Same Bob!";
        mallory
            .send_text("alice", pitch)
            .await
            .map_err(|e| format!("mallory cannot send: {e}"))?;
        self.texts.push(pitch.to_owned());
        self.say(format!("mallory, as \"bob\", writes to alice: \"{pitch}\""));
        let events = receive_until(&mut self.alice, |e| has_text(e, pitch)).await?;
        let flagged_event = events
            .iter()
            .any(|e| matches!(e, Event::KeyChanged { contact } if contact == "bob"));
        let flagged_message = message(&events, pitch).is_some_and(|m| m.key_changed && !m.verified);
        self.detail(format!(
            "alice's client: {} the message is shown {}",
            if flagged_event {
                "KEY CHANGED event for bob;"
            } else {
                "no key-change event;"
            },
            if flagged_message {
                "flagged [KEY CHANGED - not the trusted key]"
            } else {
                "WITHOUT a flag"
            }
        ));
        let blocked = match self.alice.send_text("bob", "Who are you? Prove it.").await {
            Err(ClientError::KeyChanged(_)) => true,
            Err(e) => {
                self.detail(format!("unexpected error: {e}"));
                false
            }
            Ok(_) => false,
        };
        self.say(format!(
            "alice tries to reply: {}",
            if blocked {
                "refused (ClientError::KeyChanged): sending is blocked until she runs `hush trust bob`"
            } else {
                "SENT (not blocked)"
            }
        ));
        let now = self.alice.safety_number("bob").map_err(|e| e.to_string())?;
        let changed = self
            .verified_number
            .as_deref()
            .is_some_and(|v| v != now.digits());
        self.detail(format!(
            "her safety number for bob {}: {}",
            if changed {
                "has changed from the verified one"
            } else {
                "is UNCHANGED"
            },
            one_line(&now)
        ));
        self.alice.trust("bob").map_err(|e| e.to_string())?;
        let still_verified = self
            .alice
            .contact("bob")
            .map_err(|e| e.to_string())?
            .is_some_and(|c| c.verified);
        let unblocked = self
            .alice
            .send_text("bob", "(accepted the new key after checking)")
            .await
            .is_ok();
        self.texts
            .push("(accepted the new key after checking)".to_owned());
        self.say(format!(
            "only an explicit `hush trust bob` lifts the block ({}), and it clears \"verified\" ({})",
            if unblocked {
                "sending works again"
            } else {
                "STILL BLOCKED"
            },
            if still_verified {
                "STILL VERIFIED"
            } else {
                "now unverified"
            }
        ));
        drop(mallory);
        drop(carol);
        Ok((
            forged_refused
                && fresh_differs
                && flagged_event
                && flagged_message
                && blocked
                && changed
                && unblocked
                && !still_verified,
            "a relay-relabelled sender is refused; a remapped name gives a fresh contact \
             different safety numbers; an existing contact sees KEY CHANGED and sending is \
             blocked until trust"
                .into(),
        ))
    }
}
