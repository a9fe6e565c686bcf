//! Post-quantum session setup ("record now, decrypt later"), in process with hush-proto: a
//! real `hush-v1` and a real `hush-v2` setup are recorded as the bytes that cross the relay,
//! then an attacker who has broken X25519 (and so holds every X25519 private key of both
//! setups) tries to read each first message. The attacker is `hush_adversary::quantum`,
//! written from docs/PROTOCOL.md on the primitive crates, not through hush-proto.

use std::time::{SystemTime, UNIX_EPOCH};

use hush_adversary::quantum::{
    read_first_message, BrokenKeys, QuantumAttackError, Readout, Recording, RecordingRng,
};
use hush_proto::message::ContentType;
use hush_proto::{
    Envelope, IdentityKeyPair, LocalPrekeys, MessageContent, PrekeyBundle, PrekeyStore, Profile,
    Session,
};
use rand_core::OsRng;

use super::print::short_hex;
use super::Demo;

/// One recorded setup and the keys the attacker gets.
struct Recorded {
    recording: Recording,
    keys: BrokenKeys,
    text: &'static str,
}

impl Demo {
    /// The row: PASS only if the attacker reads the `hush-v1` first message and not the
    /// `hush-v2` one (which bob, its recipient, does read).
    pub(super) fn post_quantum(&mut self) -> Result<(bool, String), String> {
        self.say(
            "in process, with hush-proto directly: alice sets up one session with a hush-v1 \
             bundle of bob's (X25519 only) and one with a hush-v2 bundle (X25519 + ML-KEM-768); \
             an eavesdropper records the bundle and the first envelope of each, as they cross \
             the relay",
        );
        let v1 = record(
            Profile::V1,
            "Recorded in 2026: the vault code is 4-8-15-16.",
        )?;
        let v2 = record(
            Profile::V2,
            "Recorded in 2026: the new vault code is 23-42.",
        )?;
        for (name, r) in [("hush-v1", &v1), ("hush-v2", &v2)] {
            self.detail(format!(
                "{name}: bundle {} bytes (version {}), first envelope {} bytes (version {}): {}",
                r.recording.bundle.len(),
                r.recording.bundle.first().copied().unwrap_or(0),
                r.recording.first_envelope.len(),
                r.recording.first_envelope.first().copied().unwrap_or(0),
                short_hex(&r.recording.first_envelope)
            ));
        }
        self.say(
            "years later the attacker breaks X25519 (a quantum computer running Shor's \
             algorithm): it is handed every X25519 private key of both setups (alice's and \
             bob's identity keys, bob's signed and one-time prekeys, alice's ephemeral key; \
             not shown) and derives SK from the recording, without hush's code",
        );
        let v1_result = read_first_message(&v1.recording, &v1.keys);
        let v1_read = matches!(&v1_result, Ok(r) if body(r).as_deref() == Some(v1.text));
        self.detail(format!("hush-v1 first message: {}", verdict(&v1_result)));
        let v2_result = read_first_message(&v2.recording, &v2.keys);
        let v2_read = v2_result.is_ok();
        self.detail(format!("hush-v2 first message: {}", verdict(&v2_result)));
        self.say(format!(
            "the attacker {} the hush-v1 conversation and {} the hush-v2 one: the ML-KEM-768 \
             shared secret in hush-v2's SK is out of its reach (the ratchet's later DH steps \
             are X25519 only; see docs/THREAT_MODEL.md)",
            if v1_read { "READS" } else { "does not read" },
            if v2_read { "READS" } else { "cannot read" },
        ));
        Ok((
            v1_read && !v2_read,
            "with every X25519 key of a recorded setup, an attacker reads the hush-v1 first \
             message and not the hush-v2 one (ML-KEM-768 in the key agreement)"
                .into(),
        ))
    }
}

/// A real setup of `profile` between fresh alice and bob: bob's bundle (with one-time
/// prekeys, classical and, for hush-v2, PQ) as bytes, alice's first envelope as bytes, bob
/// reading it, and every X25519 private key involved.
fn record(profile: Profile, text: &'static str) -> Result<Recorded, String> {
    let err = |e: hush_proto::SessionError| format!("{profile} setup: {e}");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let alice = IdentityKeyPair::generate(&mut OsRng);
    let bob = IdentityKeyPair::generate(&mut OsRng);
    let mut prekeys = LocalPrekeys::new(&mut OsRng, &bob, now);
    let one_time_prekey = prekeys.generate_one_time(&mut OsRng, 1).first().copied();
    let pq_prekey = match profile {
        Profile::V1 => None,
        Profile::V2 => prekeys
            .generate_pq_one_time(&mut OsRng, &bob, 1, now)
            .into_iter()
            .next(),
    };
    let bundle = PrekeyBundle {
        identity_key: bob.public_key(),
        signed_prekey: prekeys.current_signed().ok_or("no signed prekey")?,
        one_time_prekey,
        pq_prekey,
    }
    .to_bytes();
    let verified = PrekeyBundle::from_bytes(&bundle)
        .map_err(|e| format!("{profile} bundle: {e}"))?
        .verify(profile)
        .map_err(err)?;
    // Alice's RNG keeps its draws: the first is her ephemeral key, which the attacker would
    // recover from the public one on the wire.
    let mut alice_rng = RecordingRng::new(OsRng);
    let mut session = Session::initiate(&mut alice_rng, &alice, &verified).map_err(err)?;
    let ephemeral = alice_rng.key(0).ok_or("no ephemeral key drawn")?;
    alice_rng.clear();
    let padded = MessageContent {
        id: [1; 16],
        sent_at_ms: now.saturating_mul(1000),
        content_type: ContentType::TEXT,
        body: text.as_bytes().to_vec(),
    }
    .to_padded_bytes()
    .map_err(|e| e.to_string())?;
    let first_envelope = session
        .encrypt(&mut OsRng, &padded)
        .map_err(|e| e.to_string())?
        .to_bytes();
    let Ok(Envelope::Prekey(first)) = Envelope::from_bytes(&first_envelope) else {
        return Err(format!(
            "{profile}: the first message is not a prekey envelope"
        ));
    };
    let inbound = Session::respond(
        &mut OsRng,
        &bob,
        &alice.public_key(),
        profile,
        &prekeys,
        &first,
    )
    .map_err(err)?;
    if inbound.plaintext.as_slice() != padded.as_slice() {
        return Err(format!("{profile}: bob misread the first message"));
    }
    let signed_prekey = prekeys
        .signed_prekey(first.x3dh.signed_prekey_id)
        .ok_or("signed prekey gone")?
        .secret
        .to_bytes();
    let one_time_prekey = match first.x3dh.one_time_prekey_id {
        Some(id) => Some(
            prekeys
                .one_time_prekey(id)
                .ok_or("one-time prekey gone")?
                .secret
                .to_bytes(),
        ),
        None => None,
    };
    Ok(Recorded {
        recording: Recording {
            bundle,
            first_envelope,
        },
        keys: BrokenKeys {
            initiator_identity: alice.x25519_secret_bytes(),
            responder_identity: bob.x25519_secret_bytes(),
            signed_prekey,
            one_time_prekey,
            ephemeral,
            kem_shared_secret: None,
        },
        text,
    })
}

fn body(readout: &Readout) -> Option<String> {
    MessageContent::from_padded_bytes(&readout.plaintext)
        .ok()
        .map(|c| String::from_utf8_lossy(&c.body).into_owned())
}

fn verdict(result: &Result<Readout, QuantumAttackError>) -> String {
    match result {
        Ok(readout) => format!(
            "CAN decrypt \"{}\" (SK from {})",
            body(readout).unwrap_or_else(|| "<not message content>".into()),
            readout.derivation
        ),
        Err(QuantumAttackError::CannotOpen { tried, .. }) => format!(
            "cannot decrypt (all four DHs and the ratchet step done; tried {}: none opens)",
            tried.join(", ")
        ),
        Err(e) => format!("attack failed: {e}"),
    }
}
