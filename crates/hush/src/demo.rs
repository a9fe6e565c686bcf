//! `hush demo`: the security properties of hush, shown with evidence in one command. No setup,
//! no network beyond loopback: an embedded relay on 127.0.0.1 and temporary profiles
//! (Argon2id, as always) live in a temporary directory deleted at exit.
//!
//! The demo plays the users *and* the attacker: it reads and edits the relay's SQLite database
//! the way a malicious relay operator could (tamper, replay, remap a name), opens a raw TCP
//! connection that breaks off mid-frame, scans every byte at rest for plaintexts and secrets,
//! and steals a live session state in process. Each property ends in a PASS/FAIL row of the
//! summary table; the exit status is non-zero if any row fails. Secret keys are never printed.
//!
//! `HUSH_DEMO_SABOTAGE=integrity` skips the tampering so that the integrity row must fail (used
//! by the test that checks the FAIL path).

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use hush_client::{Client, ClientError, Event};
use hush_proto::{
    ContentType, DecryptError, Envelope, IdentityKeyPair, IdentityPublicKey, LocalPrekeys,
    MessageContent, PrekeyBundle, SafetyNumber, Session, SignedPrekey, X25519PublicKey,
};
use rand_core::OsRng;
use rusqlite::{params, Connection};
use tokio::io::AsyncWriteExt;

/// The passphrase of the demo's temporary profiles (they are deleted at exit).
const PASSPHRASE: &[u8] = b"hush demo passphrase (temporary profiles)";
/// One receive call waits this long for deliveries.
const RECEIVE_WAIT: Duration = Duration::from_millis(500);
/// Upper bound for anything the demo waits for.
const PATIENCE: Duration = Duration::from_secs(15);

/// One row of the summary table.
struct Row {
    property: &'static str,
    pass: bool,
    evidence: String,
}

/// The property names, in table order (the test matches on them).
const PROPERTIES: [&str; 8] = [
    "Authentication",
    "Availability",
    "Integrity",
    "Replay",
    "Man in the middle",
    "Confidentiality",
    "Forward secrecy",
    "Post-compromise security",
];

/// A message row as the relay stores it.
struct StoredRow {
    id: i64,
    sender: Vec<u8>,
    envelope: Vec<u8>,
}

struct Demo {
    root: tempfile::TempDir,
    relay_addr: String,
    /// A recording, pass-through network tap between alice/bob and the relay.
    wire: hush_adversary::NetworkAttacker,
    relay_key: [u8; 32],
    relay_dir: PathBuf,
    alice: Client,
    bob: Option<Client>,
    alice_key: [u8; 32],
    bob_key: [u8; 32],
    /// Keys of the profiles made later (carol, mallory), for the at-rest scan.
    other_keys: Vec<(&'static str, [u8; 32])>,
    /// Every plaintext sent during the demo.
    texts: Vec<String>,
    /// Envelopes copied from the relay's database while they waited in a mailbox.
    captured: Vec<StoredRow>,
    /// The verified alice-bob safety number.
    verified_number: Option<String>,
    /// The in-process sessions of the ratchet properties.
    lab: Option<Lab>,
    step: u32,
}

/// Run the demo; exit status 0 only if every property passes.
pub async fn run() -> Result<ExitCode, String> {
    let started = Instant::now();
    let sabotage = std::env::var("HUSH_DEMO_SABOTAGE").unwrap_or_default();
    println!("hush demo: each security property of hush, with the evidence, on loopback only.");
    println!("An embedded relay and temporary profiles live in a temporary directory that is");
    println!("deleted at exit. The demo also plays the attacker: a malicious relay operator");
    println!("(who edits the relay's database), a broken client, and a thief of session state.");
    match sabotage.as_str() {
        "" => {}
        "integrity" => println!(
            "HUSH_DEMO_SABOTAGE=integrity: the tampering is skipped, so that row must FAIL."
        ),
        other => {
            return Err(format!(
                "HUSH_DEMO_SABOTAGE={other}: only `integrity` is supported"
            ))
        }
    }

    let root = tempfile::Builder::new()
        .prefix("hush-demo-")
        .tempdir()
        .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
    let relay_dir = root.path().join("relay");
    let relay = hush_relay::start(hush_relay::Config {
        listen: std::net::SocketAddr::from(([127, 0, 0, 1], 0)),
        data: relay_dir.clone(),
        ..Default::default()
    })
    .await
    .map_err(|e| format!("cannot start the embedded relay: {e}"))?;
    let relay_addr = relay.local_addr.to_string();
    // alice and bob reach the relay through a tap that records every byte both ways (and
    // changes nothing), so the confidentiality check can scan what crossed the wire.
    let (wire, wire_addr) = hush_adversary::NetworkAttacker::start(relay.local_addr)
        .await
        .map_err(|e| format!("cannot start the network tap: {e}"))?;
    let wire_addr = wire_addr.to_string();
    section("setup");
    let mut step = 0;
    let mut say = |text: String| {
        step += 1;
        println!("{step:>3}. {text}");
    };
    say(format!(
        "relay listening on {relay_addr} (data in {}), static public key {}",
        relay_dir.display(),
        short_hex(&relay.public_key)
    ));
    let alice = Client::init(
        &root.path().join("alice"),
        PASSPHRASE,
        "alice",
        &wire_addr,
        Some(relay.public_key),
    )
    .await
    .map_err(|e| format!("alice: {e}"))?;
    let bob = Client::init(
        &root.path().join("bob"),
        PASSPHRASE,
        "bob",
        &wire_addr,
        Some(relay.public_key),
    )
    .await
    .map_err(|e| format!("bob: {e}"))?;
    say(format!(
        "profiles alice (fingerprint {}) and bob (fingerprint {}) created: identity and 100 \
         one-time prekeys each, sealed under Argon2id of a fixed demo passphrase, registered \
         on the relay",
        alice.identity_key().fingerprint(),
        bob.identity_key().fingerprint()
    ));
    let mut demo = Demo {
        alice_key: *alice.identity_key().as_bytes(),
        bob_key: *bob.identity_key().as_bytes(),
        root,
        relay_addr,
        wire,
        relay_key: relay.public_key,
        relay_dir,
        alice,
        bob: Some(bob),
        other_keys: Vec::new(),
        texts: Vec::new(),
        captured: Vec::new(),
        verified_number: None,
        lab: None,
        step,
    };

    let mut rows = Vec::new();
    for property in PROPERTIES {
        section(property);
        let outcome = match property {
            "Authentication" => demo.authentication().await,
            "Availability" => demo.availability().await,
            "Integrity" => demo.integrity(sabotage == "integrity").await,
            "Replay" => demo.replay().await,
            "Man in the middle" => demo.man_in_the_middle().await,
            "Confidentiality" => demo.confidentiality(),
            "Forward secrecy" => demo.forward_secrecy(),
            _ => demo.post_compromise_security(),
        };
        let (pass, evidence) = match outcome {
            Ok((true, evidence)) => (true, evidence),
            Ok((false, expected)) => (
                false,
                format!("NOT shown (see above); expected: {expected}"),
            ),
            Err(e) => (false, format!("error: {e}")),
        };
        println!("  => {property}: {}", if pass { "PASS" } else { "FAIL" });
        rows.push(Row {
            property,
            pass,
            evidence,
        });
    }

    drop(demo.bob.take());
    relay.shutdown().await;
    section("summary");
    println!("  {:<26} {:<7} evidence", "property", "result");
    for row in &rows {
        println!(
            "  {:<26} {:<7} {}",
            row.property,
            if row.pass { "PASS" } else { "FAIL" },
            row.evidence
        );
    }
    let failed = rows.iter().filter(|r| !r.pass).count();
    println!(
        "\n{} of {} properties shown in {:.1} s; temporary files removed.",
        rows.len() - failed,
        rows.len(),
        started.elapsed().as_secs_f64()
    );
    drop(demo);
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn section(title: &str) {
    println!("\n== {title} ==");
}

impl Demo {
    fn say(&mut self, text: impl AsRef<str>) {
        self.step += 1;
        println!("{:>3}. {}", self.step, text.as_ref());
    }

    fn detail(&self, text: impl AsRef<str>) {
        println!("       {}", text.as_ref());
    }

    fn relay_db(&self) -> Result<Connection, String> {
        let conn = Connection::open(self.relay_dir.join(hush_relay::server::DATABASE_FILE))
            .map_err(|e| format!("relay database: {e}"))?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(|e| format!("relay database: {e}"))?;
        Ok(conn)
    }

    /// The envelopes waiting in a mailbox, oldest first.
    fn mailbox(&self, recipient: &[u8; 32]) -> Result<Vec<StoredRow>, String> {
        let db = self.relay_db()?;
        let mut stmt = db
            .prepare("SELECT id, sender, envelope FROM messages WHERE recipient = ?1 ORDER BY id")
            .map_err(|e| e.to_string())?;
        let rows = stmt
            .query_map(params![recipient.as_slice()], |r| {
                Ok(StoredRow {
                    id: r.get(0)?,
                    sender: r.get(1)?,
                    envelope: r.get(2)?,
                })
            })
            .map_err(|e| e.to_string())?;
        rows.collect::<Result<Vec<_>, _>>()
            .map_err(|e| e.to_string())
    }

    fn bob(&mut self) -> Result<&mut Client, String> {
        if self.bob.is_none() {
            let dir = self.root.path().join("bob");
            self.bob = Some(Client::open(&dir, PASSPHRASE).map_err(|e| format!("bob: {e}"))?);
        }
        self.bob.as_mut().ok_or_else(|| "bob".to_owned())
    }

    /// Close bob's client: his connection drops and the relay keeps his mail.
    async fn bob_offline(&mut self) {
        drop(self.bob.take());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    async fn alice_sends(&mut self, text: &str) -> Result<(), String> {
        let entry = self
            .alice
            .send_text("bob", text)
            .await
            .map_err(|e| format!("alice cannot send: {e}"))?;
        self.texts.push(text.to_owned());
        if entry.state == hush_client::DeliveryState::Queued {
            return Err("the relay did not store alice's message".into());
        }
        Ok(())
    }

    // ---- the properties ---------------------------------------------------------------------

    async fn authentication(&mut self) -> Result<(bool, String), String> {
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

    async fn availability(&mut self) -> Result<(bool, String), String> {
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

    async fn integrity(&mut self, sabotage: bool) -> Result<(bool, String), String> {
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

    async fn replay(&mut self) -> Result<(bool, String), String> {
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
        }
        .verify()
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

    async fn man_in_the_middle(&mut self) -> Result<(bool, String), String> {
        let forged_refused = self.forged_sender().await?;
        let carol = Client::init(
            &self.root.path().join("carol"),
            PASSPHRASE,
            "carol",
            &self.relay_addr,
            Some(self.relay_key),
        )
        .await
        .map_err(|e| format!("carol: {e}"))?;
        let mut carol = carol;
        let carol_key = *carol.identity_key().as_bytes();
        self.other_keys.push(("carol", carol_key));
        self.say(format!(
            "carol joins (fingerprint {}); she has never talked to bob",
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

    fn confidentiality(&mut self) -> Result<(bool, String), String> {
        let Some((sample_id, sample)) = self.captured.first().map(|r| (r.id, r.envelope.clone()))
        else {
            return Err("no envelope was captured".into());
        };
        self.say(format!(
            "what the relay stored for alice's message \"{}\" (row {}, copied from messages.envelope):",
            self.texts
                .iter()
                .find(|t| t.starts_with("Sent while you were offline (1/3)"))
                .map(String::as_str)
                .unwrap_or("?"),
            sample_id
        ));
        for line in annotate(&sample) {
            self.detail(line);
        }

        // What to look for.
        let mut secrets: Vec<(String, Vec<u8>)> = self
            .texts
            .iter()
            .map(|t| (format!("plaintext \"{t}\""), t.as_bytes().to_vec()))
            .collect();
        secrets.push(("the demo passphrase".into(), PASSPHRASE.to_vec()));
        let relay_secret = std::fs::read(self.relay_dir.join(hush_relay::keyfile::SECRET_FILE))
            .map_err(|e| format!("relay key file: {e}"))?;
        secrets.push((
            "the relay's static secret key (32 bytes from relay.key, not shown)".into(),
            relay_secret,
        ));
        let mut identities: Vec<(String, Vec<u8>)> = Vec::new();
        let mut keys = vec![("alice", self.alice_key), ("bob", self.bob_key)];
        keys.extend(self.other_keys.iter().copied());
        for (name, key) in &keys {
            identities.push((format!("{name}'s identity key (raw)"), key.to_vec()));
            identities.push((
                format!("{name}'s identity key (hex)"),
                hex::encode(key).into_bytes(),
            ));
        }

        // Where to look.
        let mut relay_files = files_in(&self.relay_dir)?;
        relay_files.retain(|p| {
            p.file_name()
                .is_some_and(|n| n != hush_relay::keyfile::SECRET_FILE)
        });
        let mut profile_files = Vec::new();
        for (name, _) in &keys {
            profile_files.extend(files_in(&self.root.path().join(name))?);
        }
        self.say("scan: every byte at rest is searched for");
        self.detail(format!(
            "- {} plaintexts (every message sent in this demo, UTF-8), the demo passphrase, and \
             the relay's static secret key",
            self.texts.len()
        ));
        self.detail(format!(
            "- in profile files also: the {} users' public identity keys, raw and hex (no \
             cleartext identifiers)",
            keys.len()
        ));
        self.detail(
            "(a profile's own identity seed and prekey secrets cannot be scanned for: no \
                     API hands them out, by design)",
        );
        self.detail(format!(
            "in: {} envelopes copied from the relay ({} bytes)",
            self.captured.len(),
            self.captured
                .iter()
                .map(|r| r.envelope.len())
                .sum::<usize>()
        ));
        let root = self.root.path().to_owned();
        for p in relay_files.iter().chain(&profile_files) {
            let size = std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
            self.detail(format!(
                "    {} ({size} bytes)",
                p.strip_prefix(&root).unwrap_or(p).display()
            ));
        }

        let wire = self.wire.recorded();
        self.say(format!(
            "and on the wire: {} bytes that crossed loopback between alice/bob and the relay \
             in {} connections (Noise transport frames; first 48 bytes of one client->relay \
             transcript after its handshake shown):",
            wire.len(),
            self.wire.connections()
        ));
        if let Some(t) = self
            .wire
            .transcripts()
            .into_iter()
            .max_by_key(|t| t.chunks.len())
        {
            let c2r = t.bytes(hush_adversary::Direction::ClientToRelay);
            // Skip the two handshake frames (4-byte length + 48 and 4 + 64 bytes).
            let after = c2r.get(120..).unwrap_or(&c2r);
            self.detail(format!(
                "    {}",
                after
                    .iter()
                    .take(48)
                    .map(|b| format!("{b:02x}"))
                    .collect::<String>()
            ));
        }
        let mut hits = Vec::new();
        for (what, needle) in &secrets {
            if contains(&wire, needle) {
                hits.push(format!("{what} on the wire"));
            }
        }
        for row in &self.captured {
            for (what, needle) in &secrets {
                if contains(&row.envelope, needle) {
                    hits.push(format!("{what} in envelope {}", row.id));
                }
            }
        }
        for p in &relay_files {
            let bytes = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
            for (what, needle) in &secrets {
                if contains(&bytes, needle) {
                    hits.push(format!("{what} in {}", p.display()));
                }
            }
        }
        for p in &profile_files {
            let bytes = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
            for (what, needle) in secrets.iter().chain(&identities) {
                if contains(&bytes, needle) {
                    hits.push(format!("{what} in {}", p.display()));
                }
            }
        }
        self.say(format!(
            "result: {} hit(s) on the wire, in {} envelopes, {} relay files and {} profile files",
            hits.len(),
            self.captured.len(),
            relay_files.len(),
            profile_files.len()
        ));
        for h in &hits {
            self.detail(format!("FOUND {h}"));
        }
        // Scanner self-check: the relay's directory does hold identity keys (metadata it needs).
        let mut control = false;
        for p in &relay_files {
            let bytes = std::fs::read(p).map_err(|e| format!("{}: {e}", p.display()))?;
            control |= contains(&bytes, &self.alice_key);
        }
        self.say(format!(
            "scanner self-check: alice's identity key {} in the relay database (the relay's \
             directory maps names to keys: metadata, not content)",
            if control { "IS found" } else { "is NOT found" }
        ));
        Ok((
            hits.is_empty() && control,
            format!(
                "0 of {} plaintexts/secrets on the wire ({} bytes), in {} stored envelopes, the \
                 relay DB or the profiles; no identity key in clear in any profile",
                secrets.len(),
                wire.len(),
                self.captured.len()
            ),
        ))
    }

    /// Forward secrecy, in process with hush-proto: record a conversation, steal bob's live
    /// session state, try every recorded envelope with it.
    fn forward_secrecy(&mut self) -> Result<(bool, String), String> {
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
    fn post_compromise_security(&mut self) -> Result<(bool, String), String> {
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
struct Lab {
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
        }
        .verify()
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

/// Receive (≈500 ms per call) until `done` holds for everything received so far, or until
/// [`PATIENCE`] has passed.
async fn receive_until(
    client: &mut Client,
    mut done: impl FnMut(&[Event]) -> bool,
) -> Result<Vec<Event>, String> {
    let deadline = Instant::now() + PATIENCE;
    let mut events = Vec::new();
    let mut last_error = None;
    while Instant::now() < deadline {
        match client
            .receive(RECEIVE_WAIT, |e| events.push(e.clone()))
            .await
        {
            Ok(()) => last_error = None,
            Err(e) => {
                last_error = Some(e.to_string());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        if done(&events) {
            return Ok(events);
        }
    }
    match last_error {
        Some(e) => Err(format!("receiving: {e}")),
        None => Ok(events),
    }
}

fn texts(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(m.text.clone()),
            _ => None,
        })
        .collect()
}

fn message<'a>(events: &'a [Event], text: &str) -> Option<&'a hush_client::HistoryEntry> {
    events.iter().find_map(|e| match e {
        Event::Message(m) if m.text == text => Some(m),
        _ => None,
    })
}

fn has_text(events: &[Event], text: &str) -> bool {
    message(events, text).is_some()
}

/// Put a copy of an envelope back into a mailbox, keeping the relay's counters in step (as the
/// relay itself would when storing).
fn reinsert(
    db: &Connection,
    recipient: &[u8; 32],
    sender: &[u8],
    envelope: &[u8],
) -> Result<i64, String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0);
    let len = i64::try_from(envelope.len()).unwrap_or(i64::MAX);
    let run = || -> rusqlite::Result<i64> {
        db.execute_batch("BEGIN IMMEDIATE")?;
        db.execute(
            "INSERT INTO messages (recipient, sender, received_at_ms, envelope)
             VALUES (?1, ?2, ?3, ?4)",
            params![recipient.as_slice(), sender, now, envelope],
        )?;
        let id = db.last_insert_rowid();
        db.execute(
            "INSERT INTO mailbox_usage (recipient, messages, bytes) VALUES (?1, 1, ?2)
             ON CONFLICT (recipient) DO UPDATE SET
                 messages = messages + 1, bytes = bytes + excluded.bytes",
            params![recipient.as_slice(), len],
        )?;
        db.execute(
            "UPDATE mailbox_totals SET messages = messages + 1, bytes = bytes + ?1
             WHERE singleton = 0",
            params![len],
        )?;
        db.execute_batch("COMMIT")?;
        Ok(id)
    };
    run().map_err(|e| {
        let _ = db.execute_batch("ROLLBACK");
        format!("re-inserting: {e}")
    })
}

fn files_in(dir: &Path) -> Result<Vec<PathBuf>, String> {
    let mut out = Vec::new();
    let entries = std::fs::read_dir(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.is_dir() {
            out.extend(files_in(&path)?);
        } else if path.is_file() {
            out.push(path);
        }
    }
    out.sort();
    Ok(out)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

/// A safety number as 12 groups of 5 digits on one line.
fn one_line(number: &SafetyNumber) -> String {
    number
        .grouped()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

fn short_hex(bytes: &[u8]) -> String {
    let head = bytes.get(..8).unwrap_or(bytes);
    format!("{}…", hex::encode(head))
}

/// The envelope's bytes, field by field (PROTOCOL.md §6).
fn annotate(envelope: &[u8]) -> Vec<String> {
    let mut lines = vec![format!(
        "{} bytes: {}",
        envelope.len(),
        hex::encode(envelope.get(..48).unwrap_or(envelope)) + "…"
    )];
    match Envelope::from_bytes(envelope) {
        Ok(parsed) => {
            let m = parsed.ratchet_message();
            let kind = match parsed {
                Envelope::Prekey(_) => "prekey envelope (carries the X3DH header)",
                Envelope::Message(_) => "ratchet message",
            };
            let (nonce, sealed) = m
                .ciphertext
                .split_at(hush_proto::primitives::NONCE_LEN.min(m.ciphertext.len()));
            lines.push(format!("  version 1, kind: {kind}"));
            lines.push(format!(
                "  sender's ratchet public key {} | PN {} | N {} (public, authenticated)",
                short_hex(m.header.ratchet_key.as_bytes()),
                m.header.previous_chain_length,
                m.header.counter
            ));
            lines.push(format!("  random nonce {}", short_hex(nonce)));
            lines.push(format!(
                "  XChaCha20-Poly1305 ciphertext + tag, {} bytes: {} (padded: a short text and a \
                 long one look alike)",
                sealed.len(),
                short_hex(sealed)
            ));
        }
        Err(e) => lines.push(format!("  does not parse: {e}")),
    }
    lines
}
