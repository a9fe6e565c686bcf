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
//!
//! This file is the driver (setup, the recording network tap, step numbering, the table, the
//! exit status); each property group has its own file, and `print`, `clients` and `relay_db`
//! hold what they share.

mod authentication;
mod availability;
mod clients;
mod confidentiality;
mod forward_secrecy;
mod groups;
mod integrity;
mod man_in_the_middle;
mod post_quantum;
mod print;
mod relay_db;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use hush_client::Client;

use self::forward_secrecy::Lab;
use self::print::{section, short_hex};
use self::relay_db::StoredRow;

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
const PROPERTIES: [&str; 10] = [
    "Authentication",
    "Availability",
    "Integrity",
    "Replay",
    "Groups",
    "Man in the middle",
    "Confidentiality",
    "Forward secrecy",
    "Post-compromise security",
    "Post-quantum (record now, decrypt later)",
];

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
    /// Keys of the profiles made later (carol, dave, mallory), for the at-rest scan.
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
    crate::output::show!(
        "hush demo: each security property of hush, with the evidence, on loopback only."
    );
    crate::output::show!(
        "An embedded relay and temporary profiles live in a temporary directory that is"
    );
    crate::output::show!(
        "deleted at exit. The demo also plays the attacker: a malicious relay operator"
    );
    crate::output::show!(
        "(who edits the relay's database), a broken client, and a thief of session state."
    );
    match sabotage.as_str() {
        "" => {}
        "integrity" => crate::output::show!(
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
        crate::output::show!("{step:>3}. {text}");
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
            "Groups" => demo.groups().await,
            "Man in the middle" => demo.man_in_the_middle().await,
            "Confidentiality" => demo.confidentiality(),
            "Forward secrecy" => demo.forward_secrecy(),
            "Post-quantum (record now, decrypt later)" => demo.post_quantum(),
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
        crate::output::show!("  => {property}: {}", if pass { "PASS" } else { "FAIL" });
        rows.push(Row {
            property,
            pass,
            evidence,
        });
    }

    drop(demo.bob.take());
    relay.shutdown().await;
    section("summary");
    crate::output::show!("  {:<41} {:<7} evidence", "property", "result");
    for row in &rows {
        crate::output::show!(
            "  {:<41} {:<7} {}",
            row.property,
            if row.pass { "PASS" } else { "FAIL" },
            row.evidence
        );
    }
    let failed = rows.iter().filter(|r| !r.pass).count();
    crate::output::show!(
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
