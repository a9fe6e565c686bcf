//! A two-party hush-v2 (PQXDH) conversation in one process: Bob publishes a prekey bundle, Alice starts
//! a session from it, they exchange messages, and the program prints what crosses the wire
//! (ciphertexts), what each side reads, both safety numbers, and what happens to a tampered and
//! a replayed message. Run with `cargo run --example conversation`.

use hush_proto::{
    ContentType, Envelope, IdentityKeyPair, LocalPrekeys, MessageContent, PrekeyBundle,
    SafetyNumber, Session,
};
use rand_core::{OsRng, RngCore};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut rng = OsRng;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs();

    println!("== hush-v2 example conversation ==\n");
    let alice = IdentityKeyPair::generate(&mut rng);
    let bob = IdentityKeyPair::generate(&mut rng);
    let mut bob_prekeys = LocalPrekeys::new(&mut rng, &bob, now);
    let one_time = bob_prekeys.generate_one_time(&mut rng, 1);
    println!(
        "alice identity fingerprint {}",
        alice.public_key().fingerprint()
    );
    println!(
        "bob   identity fingerprint {}",
        bob.public_key().fingerprint()
    );

    // What the relay would store and serve: the bundle's wire bytes.
    let published = PrekeyBundle {
        identity_key: bob.public_key(),
        signed_prekey: bob_prekeys.current_signed().ok_or("no signed prekey")?,
        one_time_prekey: one_time.first().copied(),
        // hush-v2: the signed ML-KEM-768 last-resort prekey every profile holds.
        pq_prekey: bob_prekeys.current_pq_last_resort(),
    }
    .to_bytes();
    println!("bob publishes a {}-byte prekey bundle", published.len());
    let fetched = PrekeyBundle::from_bytes(&published)?.verify(hush_proto::Profile::V2)?;
    let mut alice_session = Session::initiate(&mut rng, &alice, &fetched)?;

    let mut bob_session: Option<Session> = None;
    let script: [(bool, &str); 6] = [
        (true, "Hi Bob! This is Alice."),
        (true, "Did my first message arrive?"),
        (false, "Loud and clear. Only we can read this."),
        (true, "Great: the relay sees only padded ciphertext."),
        (false, "And each reply ratchets our keys forward."),
        (true, "Forward secrecy and post-compromise security, then."),
    ];
    for (i, (from_alice, text)) in script.iter().enumerate() {
        let content = MessageContent {
            id: random_id(&mut rng),
            sent_at_ms: now * 1000 + i as u64,
            content_type: ContentType::TEXT,
            body: text.as_bytes().to_vec(),
        };
        let padded = content.to_padded_bytes()?;
        let (sender, envelope) = if *from_alice {
            ("alice", alice_session.encrypt(&mut rng, &padded)?)
        } else {
            let session = bob_session.as_mut().ok_or("bob has no session yet")?;
            ("bob", session.encrypt(&mut rng, &padded)?)
        };
        let wire = envelope.to_bytes();
        let kind = match envelope {
            Envelope::Prekey(_) => "prekey",
            Envelope::Message(_) => "message",
        };
        println!(
            "\n{sender} -> {} [{kind} envelope, {} bytes]\n  wire: {}",
            if *from_alice { "bob" } else { "alice" },
            wire.len(),
            excerpt(&wire)
        );

        let received = Envelope::from_bytes(&wire)?;
        let plaintext = if *from_alice {
            match (&mut bob_session, &received) {
                (Some(session), env) => session.decrypt(&mut rng, env)?,
                (None, Envelope::Prekey(pre)) => {
                    let inbound = Session::respond(
                        &mut rng,
                        &bob,
                        &alice.public_key(),
                        hush_proto::Profile::V2,
                        &bob_prekeys,
                        pre,
                    )?;
                    if let Some(id) = inbound.used_one_time_prekey {
                        bob_prekeys.remove_one_time(id);
                    }
                    bob_session = Some(inbound.session);
                    inbound.plaintext
                }
                (None, Envelope::Message(_)) => return Err("bob expected a prekey message".into()),
            }
        } else {
            alice_session.decrypt(&mut rng, &received)?
        };
        let content = MessageContent::from_padded_bytes(&plaintext)?;
        println!("  read: {}", String::from_utf8_lossy(&content.body));
    }

    let bob_session = bob_session.as_mut().ok_or("bob has no session")?;
    println!("\n== what an attacker on the relay can do with a fresh message ==");
    let content = MessageContent {
        id: random_id(&mut rng),
        sent_at_ms: now * 1000 + 99,
        content_type: ContentType::TEXT,
        body: b"One more, to be attacked.".to_vec(),
    };
    let genuine = alice_session.encrypt(&mut rng, &content.to_padded_bytes()?)?;
    if let Envelope::Message(mut forged) = genuine.clone() {
        if let Some(byte) = forged.ciphertext.last_mut() {
            *byte ^= 1;
        }
        match bob_session.decrypt(&mut rng, &Envelope::Message(forged)) {
            Ok(_) => println!("bit-flipped copy: ACCEPTED (this is a bug)"),
            Err(e) => println!("bit-flipped copy: rejected ({e})"),
        }
    }
    let read = MessageContent::from_padded_bytes(&bob_session.decrypt(&mut rng, &genuine)?)?;
    println!(
        "genuine copy:     read: {}",
        String::from_utf8_lossy(&read.body)
    );
    match bob_session.decrypt(&mut rng, &genuine) {
        Ok(_) => println!("replayed copy:    ACCEPTED (this is a bug)"),
        Err(e) => println!("replayed copy:    rejected ({e})"),
    }

    println!("\n== safety numbers (compare them aloud or scan the QR payload) ==");
    let alice_view = SafetyNumber::new(&alice.public_key(), &bob.public_key());
    let bob_view = SafetyNumber::new(&bob.public_key(), &alice.public_key());
    println!("alice sees:\n{}", alice_view.grouped());
    println!("bob sees:\n{}", bob_view.grouped());
    println!(
        "equal: {}; bob scanning alice's QR payload: {}",
        alice_view.digits() == bob_view.digits(),
        match bob_view.verify_qr(&alice_view.qr_payload()) {
            Ok(()) => "verified".to_string(),
            Err(e) => e.to_string(),
        }
    );
    Ok(())
}

fn random_id(rng: &mut impl RngCore) -> [u8; 16] {
    let mut id = [0u8; 16];
    rng.fill_bytes(&mut id);
    id
}

fn excerpt(bytes: &[u8]) -> String {
    let hex: String = bytes.iter().take(48).map(|b| format!("{b:02x}")).collect();
    if bytes.len() > 48 {
        format!("{hex}…")
    } else {
        hex
    }
}
