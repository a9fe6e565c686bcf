//! Authentication: alice and bob exchange messages, compare safety numbers and mark each
//! other verified.

use super::clients::{has_text, message, receive_until};
use super::print::one_line;
use super::Demo;

impl Demo {
    pub(super) async fn authentication(&mut self) -> Result<(bool, String), String> {
        let hello = "Hi Bob, it's Alice. Is this channel private?";
        self.say(
            "alice adds bob: she fetches his prekey bundle from the relay, checks the signed \
             prekey against his identity key, runs X3DH and sends:",
        );
        self.alice_sends(hello).await?;
        self.detail(format!("\"{hello}\""));
        let bob = self.bob()?;
        let events = receive_until(bob, |e| has_text(e, hello)).await?;
        let got = message(&events, hello);
        self.say(format!(
            "bob receives it: {}",
            got.map(|m| format!(
                "\"{}\" from {} ({})",
                m.text,
                m.contact,
                if m.verified { "verified" } else { "unverified" }
            ))
            .unwrap_or_else(|| "NOTHING".into())
        ));
        let reply = "Private to us two. Let's compare safety numbers.";
        let bob = self.bob()?;
        bob.send_text("alice", reply)
            .await
            .map_err(|e| format!("bob cannot send: {e}"))?;
        self.texts.push(reply.to_owned());
        let events = receive_until(&mut self.alice, |e| has_text(e, reply)).await?;
        let replied = has_text(&events, reply);
        self.say(format!(
            "alice receives bob's reply: {}",
            if replied {
                format!("\"{reply}\"")
            } else {
                "NOTHING".into()
            }
        ));

        let on_alice = self.alice.safety_number("bob").map_err(|e| e.to_string())?;
        let on_bob = self
            .bob()?
            .safety_number("alice")
            .map_err(|e| e.to_string())?;
        self.say("safety numbers (from both identity keys; read aloud or scan the QR code):");
        self.detail(format!(
            "on alice's screen for bob: {}",
            one_line(&on_alice)
        ));
        self.detail(format!("on bob's screen for alice: {}", one_line(&on_bob)));
        let equal = on_alice.digits() == on_bob.digits();
        self.detail(if equal {
            "equal: no one has substituted a key between them"
        } else {
            "DIFFERENT"
        });
        let mut verified = false;
        if equal {
            self.alice
                .confirm_verified("bob")
                .map_err(|e| e.to_string())?;
            self.bob()?
                .confirm_verified("alice")
                .map_err(|e| e.to_string())?;
            let a = self
                .alice
                .contact("bob")
                .map_err(|e| e.to_string())?
                .is_some_and(|c| c.verified);
            let b = self
                .bob()?
                .contact("alice")
                .map_err(|e| e.to_string())?
                .is_some_and(|c| c.verified);
            verified = a && b;
            self.say(format!(
                "both confirm (`hush verify NAME --confirm`): alice marks bob {}, bob marks alice {}",
                if a { "verified" } else { "NOT verified" },
                if b { "verified" } else { "NOT verified" }
            ));
            self.verified_number = Some(on_alice.digits().to_owned());
        }
        let after = "Numbers match. From now on you show as verified.";
        self.alice_sends(after).await?;
        let bob = self.bob()?;
        let events = receive_until(bob, |e| has_text(e, after)).await?;
        let shown_verified = message(&events, after).is_some_and(|m| m.verified);
        self.say(format!(
            "the next message reaches bob marked {}",
            if shown_verified {
                "verified"
            } else {
                "NOT verified"
            }
        ));
        let pass = got.is_some() && replied && equal && verified && shown_verified;
        Ok((
            pass,
            format!(
                "equal 60-digit safety numbers on both sides ({}…); confirm_verified marks both; \
                 later messages show verified",
                on_alice.digits().get(..10).unwrap_or_default()
            ),
        ))
    }
}
