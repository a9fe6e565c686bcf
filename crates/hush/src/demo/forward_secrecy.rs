//! Forward secrecy and post-compromise security, in process with hush-proto: a recorded
//! conversation, a stolen live session state, and what it can still decrypt.

use std::time::{SystemTime, UNIX_EPOCH};

use hush_proto::{DecryptError, Envelope, IdentityKeyPair, LocalPrekeys, PrekeyBundle, Session};
use rand_core::OsRng;

use super::Demo;

impl Demo {
    /// Forward secrecy, in process with hush-proto: record a conversation, steal bob's live
    /// session state, try every recorded envelope with it.
    pub(super) fn forward_secrecy(&mut self) -> Result<(bool, String), String> {
        let mut lab = Lab::new()?;
        self.say(
            "in process, with hush-proto directly: alice and bob set up a session (X3DH) and talk \
             over several DH round trips; an eavesdropper records every envelope",
        );
        let script = [
            (true, "Meet me at the usual place."),
            (false, "At noon?"),
            (true, "Yes, noon."),
            (false, "Shall I bring the documents?"),
            (true, "All of them."),
        ];
        for (from_alice, text) in script {
            lab.exchange(from_alice, text)?;
        }
        for (i, r) in lab.recorded.iter().enumerate() {
            self.detail(format!(
                "captured #{} {} \"{}\" ({} bytes)",
                i + 1,
                if r.from_alice {
                    "alice->bob"
                } else {
                    "bob->alice"
                },
                r.text,
                r.wire.len()
            ));
        }
        let stolen = lab.bob.pickle();
        let size = serde_json::to_vec(&stolen).map(|v| v.len()).unwrap_or(0);
        self.say(format!(
            "the attacker steals bob's live session state NOW (root key, ratchet secret, chain \
             keys, skipped keys: {size} bytes pickled, not shown) and tries every captured \
             envelope with a copy of it:"
        ));
        let mut all_failed = true;
        for (i, r) in lab.recorded.iter().enumerate() {
            let result = Lab::attempt(&stolen, &r.wire);
            all_failed &= result.is_err();
            self.detail(format!("captured #{}: {}", i + 1, verdict(&result)));
        }
        // Control: the copy is live state, not garbage; it reads what alice sends next.
        let mut attacker =
            Session::from_pickle(&stolen).map_err(|e| format!("stolen state: {e}"))?;
        let next = "Sent after the theft, before bob replies.";
        let wire = lab.exchange(true, next)?;
        let control = Lab::attempt_with(&mut attacker, &wire);
        let live = control.as_deref().ok() == Some(next);
        self.say(format!(
            "control: alice's next message, in her current chain: {} (the honest limit: a live \
             state reads the current chain until the next DH round trip)",
            verdict(&control)
        ));
        lab.stolen = Some(stolen);
        lab.attacker = Some(attacker);
        self.lab = Some(lab);
        Ok((
            all_failed && live,
            "a session state stolen now decrypts none of the envelopes captured before the theft \
             (keys used once and deleted)"
                .into(),
        ))
    }

    /// Post-compromise security: continue the conversation until one DH round trip is done.
    pub(super) fn post_compromise_security(&mut self) -> Result<(bool, String), String> {
        let mut lab = self
            .lab
            .take()
            .ok_or("the forward secrecy run did not complete")?;
        let stolen = lab.stolen.take().ok_or("no stolen state")?;
        let mut attacker = lab.attacker.take().ok_or("no attacker state")?;
        let reply = "Got it. See you at noon.";
        let reply_wire = lab.send(false, reply)?;
        self.say(format!(
            "bob replies \"{reply}\": his message starts a chain from a fresh ratchet key, \
             drawn after the theft"
        ));
        let before = "One more before I read your reply.";
        let before_wire = lab.exchange(true, before)?;
        let early = Lab::attempt_with(&mut attacker, &before_wire);
        let early_read = early.as_deref().ok() == Some(before);
        self.say(format!(
            "alice writes before reading it (still her old chain): {}",
            verdict(&early)
        ));
        lab.deliver(false, reply, &reply_wire)?;
        self.say("alice reads bob's reply; her next message ratchets onto his fresh key");
        let mut later_failed = true;
        let later = [
            (true, "Now on a new chain."),
            (true, "And another one."),
            (false, "Reply from bob."),
            (true, "A full round trip later."),
        ];
        for (from_alice, text) in later {
            let wire = lab.exchange(from_alice, text)?;
            if !from_alice {
                continue;
            }
            let advanced = Lab::attempt_with(&mut attacker, &wire);
            let fresh = Lab::attempt(&stolen, &wire);
            later_failed &= advanced.is_err() && fresh.is_err();
            self.detail(format!(
                "alice->bob \"{text}\": stolen copy (advanced) {}; fresh copy {}",
                verdict(&advanced),
                verdict(&fresh)
            ));
        }
        self.say(format!(
            "bob read all of them; the attacker's state {}",
            if later_failed {
                "reads none: security is restored by one DH round trip"
            } else {
                "STILL READS some"
            }
        ));
        Ok((
            early_read && later_failed,
            "the stolen state reads alice's current chain only; after one DH round trip it \
             decrypts nothing"
                .into(),
        ))
    }
}

/// A recorded envelope of the in-process conversation.
struct Captured {
    from_alice: bool,
    text: String,
    wire: Vec<u8>,
}

/// Two hush-proto sessions in process, for the ratchet properties.
pub(super) struct Lab {
    alice: Session,
    bob: Session,
    recorded: Vec<Captured>,
    stolen: Option<hush_proto::SessionPickle>,
    attacker: Option<Session>,
}

impl Lab {
    fn new() -> Result<Self, String> {
        let err = |e: hush_proto::SessionError| format!("session setup: {e}");
        let alice_identity = IdentityKeyPair::generate(&mut OsRng);
        let bob_identity = IdentityKeyPair::generate(&mut OsRng);
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let mut prekeys = LocalPrekeys::new(&mut OsRng, &bob_identity, now);
        let one_time = prekeys.generate_one_time(&mut OsRng, 1);
        let bundle = PrekeyBundle {
            identity_key: bob_identity.public_key(),
            signed_prekey: prekeys.current_signed().ok_or("no signed prekey")?,
            one_time_prekey: one_time.first().copied(),
            pq_prekey: None,
        }
        .verify(hush_proto::Profile::V1)
        .map_err(err)?;
        let mut alice = Session::initiate(&mut OsRng, &alice_identity, &bundle).map_err(err)?;
        let text = "Hello Bob.";
        let wire = alice
            .encrypt(&mut OsRng, text.as_bytes())
            .map_err(|e| e.to_string())?
            .to_bytes();
        let Ok(Envelope::Prekey(first)) = Envelope::from_bytes(&wire) else {
            return Err("the first message is not a prekey envelope".into());
        };
        let inbound = Session::respond(
            &mut OsRng,
            &bob_identity,
            &alice_identity.public_key(),
            hush_proto::Profile::V1,
            &prekeys,
            &first,
        )
        .map_err(err)?;
        if inbound.plaintext.as_slice() != text.as_bytes() {
            return Err("bob misread the first message".into());
        }
        Ok(Self {
            alice,
            bob: inbound.session,
            recorded: vec![Captured {
                from_alice: true,
                text: text.into(),
                wire,
            }],
            stolen: None,
            attacker: None,
        })
    }

    fn send(&mut self, from_alice: bool, text: &str) -> Result<Vec<u8>, String> {
        let session = if from_alice {
            &mut self.alice
        } else {
            &mut self.bob
        };
        let wire = session
            .encrypt(&mut OsRng, text.as_bytes())
            .map_err(|e| e.to_string())?
            .to_bytes();
        self.recorded.push(Captured {
            from_alice,
            text: text.into(),
            wire: wire.clone(),
        });
        Ok(wire)
    }

    fn deliver(&mut self, from_alice: bool, text: &str, wire: &[u8]) -> Result<(), String> {
        let session = if from_alice {
            &mut self.bob
        } else {
            &mut self.alice
        };
        let read = Self::attempt_with(session, wire).map_err(|e| format!("genuine: {e}"))?;
        if read != text {
            return Err("a genuine message was misread".into());
        }
        Ok(())
    }

    fn exchange(&mut self, from_alice: bool, text: &str) -> Result<Vec<u8>, String> {
        let wire = self.send(from_alice, text)?;
        self.deliver(from_alice, text, &wire)?;
        Ok(wire)
    }

    fn attempt(state: &hush_proto::SessionPickle, wire: &[u8]) -> Result<String, String> {
        let mut session = Session::from_pickle(state).map_err(|e| e.to_string())?;
        Self::attempt_with(&mut session, wire)
    }

    fn attempt_with(session: &mut Session, wire: &[u8]) -> Result<String, String> {
        let envelope = Envelope::from_bytes(wire).map_err(|e| e.to_string())?;
        match session.decrypt(&mut OsRng, &envelope) {
            Ok(p) => Ok(String::from_utf8_lossy(&p).into_owned()),
            Err(DecryptError::Duplicate { .. }) => {
                Err("duplicate: its message key was used and deleted".into())
            }
            Err(DecryptError::Authentication) => {
                Err("authentication failed: the state holds no key for it".into())
            }
            Err(e) => Err(e.to_string()),
        }
    }
}

fn verdict(result: &Result<String, String>) -> String {
    match result {
        Ok(text) => format!("CAN decrypt \"{text}\""),
        Err(why) => format!("cannot decrypt ({why})"),
    }
}
