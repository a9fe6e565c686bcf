//! Confidentiality: an annotated stored envelope, and the byte scanner that searches the wire,
//! the stored envelopes, the relay's files and the profiles for plaintexts and secrets.

use std::path::{Path, PathBuf};

use hush_proto::Envelope;

use super::print::short_hex;
use super::{Demo, PASSPHRASE};

impl Demo {
    pub(super) fn confidentiality(&mut self) -> Result<(bool, String), String> {
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
