//! Groups (MLS): a removed member cannot read the next message, a new member cannot read the
//! messages from before it joined, and a relay that forges an add is refused, both ways it
//! can try: a KeyPackage of its own under a member's name, and a commit made by a group state
//! of its own under the same group id. The demo plays the relay: it copies group blobs and
//! commits out of its database, hands old ciphertexts to members, edits KeyPackage rows, and
//! builds its MLS state in memory with the same engine as the clients.

use std::path::Path;
use std::time::Duration;

use hush_client::group::{engine, GroupError, HushProvider, IdentitySigner, Incoming, MemberId};
use hush_client::store::Store;
use hush_client::{Client, ClientError, Event, GroupChange};
use hush_proto::group::GroupEnvelope;
use hush_proto::IdentityKeyPair;
use openmls_rust_crypto::OpenMlsRustCrypto;
use rand_core::OsRng;
use rusqlite::params;

use super::clients::{has_text, receive_within};
use super::print::short_hex;
use super::relay_db::{reinsert, GroupRow};
use super::{Demo, PASSPHRASE};

/// The group's local name.
const GROUP: &str = "team";
/// One receive call while mail is known to be waiting.
const QUICK: Duration = Duration::from_millis(100);

impl Demo {
    pub(super) async fn groups(&mut self) -> Result<(bool, String), String> {
        let mut carol = self.group_profile("carol").await?;
        let mut dave = self.group_profile("dave").await?;
        let dave_key = *dave.identity_key().as_bytes();
        let carol_key = *carol.identity_key().as_bytes();
        for name in ["carol", "dave"] {
            self.alice
                .add_contact(name)
                .await
                .map_err(|e| format!("alice cannot add {name}: {e}"))?;
        }
        for (name, client) in [("carol", &mut carol), ("dave", &mut dave)] {
            client
                .add_contact("alice")
                .await
                .map_err(|e| format!("{name} cannot add alice: {e}"))?;
        }
        self.say(format!(
            "carol (fingerprint {}) and dave (fingerprint {}) join; they and alice add each \
             other as contacts (a client takes a group invitation only from a contact)",
            carol.identity_key().fingerprint(),
            dave.identity_key().fingerprint()
        ));

        self.alice
            .group_create(GROUP, &["bob".to_owned(), "carol".to_owned()])
            .await
            .map_err(|e| format!("alice cannot create #{GROUP}: {e}"))?;
        let info = self.alice.group_info(GROUP).map_err(|e| e.to_string())?;
        let group_id = hex::decode(&info.id).map_err(|e| e.to_string())?;
        let bob_joined = receive_within(self.bob()?, QUICK, joined).await?;
        let carol_joined = receive_within(&mut carol, QUICK, joined).await?;
        self.say(format!(
            "alice creates #{GROUP} with bob and carol (MLS group id {}, epoch {}): bob {}, \
             carol {}",
            info.id,
            info.epoch.unwrap_or(0),
            if joined(&bob_joined) {
                "joins"
            } else {
                "does NOT join"
            },
            if joined(&carol_joined) {
                "joins"
            } else {
                "does NOT join"
            },
        ));
        let first = "Team: the launch moves to Thursday.";
        let m1 = self.alice_tells_group(first).await?;
        let bob_read = has_text(
            &receive_within(self.bob()?, QUICK, |e| has_text(e, first)).await?,
            first,
        );
        let carol_read = has_text(
            &receive_within(&mut carol, QUICK, |e| has_text(e, first)).await?,
            first,
        );
        self.say(format!(
            "alice -> #{GROUP}: \"{first}\" (bob reads it: {}, carol reads it: {})",
            yes(bob_read),
            yes(carol_read)
        ));
        self.show_blob(&m1);

        // 1. A removed member cannot read the next message.
        drop(carol);
        self.alice
            .group_remove(GROUP, &["carol".to_owned()])
            .await
            .map_err(|e| format!("alice cannot remove carol: {e}"))?;
        let removal = self
            .group_mailbox(&carol_key)?
            .pop()
            .ok_or("the relay gave carol no copy of the commit that removed her")?;
        let second = "Carol is off the project; the new budget is 40k.";
        let m2 = self.alice_tells_group(second).await?;
        self.say(format!(
            "carol is offline; alice removes her (the commit waits in carol's mailbox too, so \
             she learns it: group_blobs row {}, {} bytes) and sends \"{second}\":",
            removal.blob,
            removal.envelope.len()
        ));
        self.show_blob(&m2);
        self.say(
            "the relay hands carol everything it holds, fed to the MLS state in carol's \
             profile (opened from disk, as her client would):",
        );
        let tries = open_with_profile(
            &self.root.path().join("carol"),
            &group_id,
            &[&m2.envelope, &removal.envelope, &m2.envelope],
        )?;
        let [before, commit, after] = tries.as_slice() else {
            return Err("carol's attempts".into());
        };
        self.detail(format!(
            "the message, in her current state: {}",
            describe(before)
        ));
        self.detail(format!("the commit that removed her: {}", describe(commit)));
        self.detail(format!("the message again, after it: {}", describe(after)));
        let learned_removed = matches!(
            commit,
            Ok(Incoming::Commit {
                we_were_removed: true,
                ..
            })
        );
        let removed_cannot_read = before.is_err() && after.is_err() && learned_removed;
        let bob_read2 = has_text(
            &receive_within(self.bob()?, QUICK, |e| has_text(e, second)).await?,
            second,
        );
        self.detail(format!("bob reads it: {}", yes(bob_read2)));

        // 3a. The relay serves a KeyPackage of its own under dave's name.
        let forged_refused = self.forged_key_package(&group_id, &dave_key).await?;

        // 2. A new member cannot read what came before it joined.
        self.alice
            .group_add(GROUP, &["dave".to_owned()])
            .await
            .map_err(|e| format!("alice cannot add dave: {e}"))?;
        // dave's client has not asked for mail yet: the relay's rows wait for him with the
        // Welcome (a live subscription would only be pushed what the relay stores itself).
        {
            let db = self.relay_db()?;
            for m in [&m1, &m2] {
                reinsert(&db, &dave_key, &self.alice_key, &m.envelope)?;
            }
        }
        self.say(format!(
            "the relay now serves dave's real KeyPackage and alice adds dave; behind his \
             Welcome the relay puts the two earlier ciphertexts (blobs {} and {}, copied \
             before they were deleted) into dave's mailbox",
            m1.blob, m2.blob
        ));
        let third = "Welcome, dave. Kickoff is at 10.";
        self.alice_tells_group(third).await?;
        let got = receive_within(&mut dave, QUICK, |e| has_text(e, third)).await?;
        let dave_joined = joined(&got);
        self.detail(format!(
            "dave's client takes the Welcome: {}",
            if dave_joined {
                "he joins"
            } else {
                "he does NOT join"
            }
        ));
        let refused = rejections(&got);
        let old_read = has_text(&got, first) || has_text(&got, second);
        let history = dave.group_history(GROUP).map_err(|e| e.to_string())?;
        let old_in_history = history.iter().any(|h| h.text == first || h.text == second);
        for reason in &refused {
            self.detail(format!("dave's client: Rejected: {reason}"));
        }
        let new_read = has_text(&got, third);
        self.detail(format!(
            "alice -> #{GROUP}: \"{third}\": dave reads it: {}; the two earlier ones: {}",
            yes(new_read),
            if old_read || old_in_history {
                "READ"
            } else {
                "not read, not in his history"
            }
        ));
        let new_cannot_read_back =
            dave_joined && new_read && !old_read && !old_in_history && refused.len() >= 2;
        let bob_read3 = has_text(
            &receive_within(self.bob()?, QUICK, |e| has_text(e, third)).await?,
            third,
        );
        drop(dave);

        // 3b. The relay injects a commit made by a group of its own with the same id.
        let injected_refused = self.forged_commit(&group_id).await?;

        Ok((
            bob_read
                && carol_read
                && bob_read2
                && bob_read3
                && removed_cannot_read
                && new_cannot_read_back
                && forged_refused
                && injected_refused,
            "a removed member cannot open the next message; a new member cannot open earlier \
             ones; a relay-made KeyPackage is refused (nothing sent) and a relay-made commit \
             is refused (the group goes on)"
                .into(),
        ))
    }

    /// A new profile for the group row, registered directly on the relay.
    async fn group_profile(&mut self, name: &'static str) -> Result<Client, String> {
        let client = Client::init(
            &self.root.path().join(name),
            PASSPHRASE,
            name,
            &self.relay_addr,
            Some(self.relay_key),
        )
        .await
        .map_err(|e| format!("{name}: {e}"))?;
        self.other_keys
            .push((name, *client.identity_key().as_bytes()));
        Ok(client)
    }

    /// alice sends `text` to the group; the blob the relay stored for it (bob's copy, taken
    /// before anyone acked it and the relay deleted it).
    async fn alice_tells_group(&mut self, text: &str) -> Result<GroupRow, String> {
        self.alice
            .send_text(&format!("#{GROUP}"), text)
            .await
            .map_err(|e| format!("alice cannot send to #{GROUP}: {e}"))?;
        self.texts.push(text.to_owned());
        self.group_mailbox(&self.bob_key)?
            .pop()
            .ok_or_else(|| "the relay stored nothing for bob".to_owned())
    }

    fn show_blob(&self, row: &GroupRow) {
        self.detail(format!(
            "relay DB: group_blobs row {} ({} bytes, stored once, referenced from {} mailbox \
             row(s)): {}",
            row.blob,
            row.envelope.len(),
            row.refs,
            short_hex(&row.envelope)
        ));
    }

    /// The relay replaces every KeyPackage it holds for dave with one of a fresh identity of
    /// its own that carries the name "dave"; alice's client must refuse the add and send
    /// nothing. The genuine rows are put back afterwards.
    async fn forged_key_package(
        &mut self,
        group_id: &[u8],
        dave_key: &[u8; 32],
    ) -> Result<bool, String> {
        let fake = IdentityKeyPair::generate(&mut OsRng);
        let fake_id = MemberId::new("dave", *fake.public_key().as_bytes())
            .map_err(|e| format!("forged member: {e}"))?;
        let relay_mls = OpenMlsRustCrypto::default();
        let forged =
            engine::new_key_package(&relay_mls, &IdentitySigner::new(&fake), &fake_id, false)
                .map_err(|e| format!("forged KeyPackage: {e}"))?;
        let saved = {
            let db = self.relay_db()?;
            let mut stmt = db
                .prepare("SELECT id, key_package FROM key_packages_one_time WHERE identity = ?1")
                .map_err(|e| e.to_string())?;
            let one_time = stmt
                .query_map(params![dave_key.as_slice()], |r| {
                    Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
                })
                .map_err(|e| e.to_string())?
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| e.to_string())?;
            let last_resort: Vec<Vec<u8>> = db
                .prepare("SELECT key_package FROM key_packages_last_resort WHERE identity = ?1")
                .map_err(|e| e.to_string())?
                .query_map(params![dave_key.as_slice()], |r| r.get(0))
                .map_err(|e| e.to_string())?
                .collect::<Result<_, _>>()
                .map_err(|e| e.to_string())?;
            for table in ["key_packages_one_time", "key_packages_last_resort"] {
                db.execute(
                    &format!("UPDATE {table} SET key_package = ?2 WHERE identity = ?1"),
                    params![dave_key.as_slice(), forged],
                )
                .map_err(|e| format!("forging {table}: {e}"))?;
            }
            (one_time, last_resort)
        };
        self.say(format!(
            "the malicious relay makes a fresh identity (fingerprint {}) and a KeyPackage for \
             it whose credential says \"dave\" ({} bytes: {}), and puts it in place of dave's \
             {} KeyPackages (UPDATE key_packages_one_time / key_packages_last_resort)",
            fake.public_key().fingerprint(),
            forged.len(),
            short_hex(&forged),
            saved.0.len() + saved.1.len()
        ));
        let epoch_before = self.group_epoch()?;
        let commits_before = self.commit_count(group_id)?;
        let outcome = self.alice.group_add(GROUP, &["dave".to_owned()]).await;
        let epoch_after = self.group_epoch()?;
        let commits_after = self.commit_count(group_id)?;
        let dave_mail = self.group_mailbox(dave_key)?.len();
        // Only the client's own check counts: the embedded relay's honest code could refuse
        // such a commit for reasons of its own (a real malicious relay would not).
        let refused = match &outcome {
            Err(ClientError::Group(why)) if why.starts_with("key package refused") => {
                self.detail(format!(
                    "alice adds dave: her client refuses it before making any commit ({why}): \
                     the KeyPackage's signature key is not the identity key of her contact dave"
                ));
                true
            }
            Err(e) => {
                self.detail(format!(
                    "alice adds dave: it fails, but NOT by her client's KeyPackage check: {e}"
                ));
                false
            }
            Ok(_) => {
                self.detail("alice's client ADDED the relay's member as dave");
                false
            }
        };
        let nothing_sent =
            epoch_before == epoch_after && commits_before == commits_after && dave_mail == 0;
        self.detail(format!(
            "relay DB: {} (epoch {epoch_before} -> {epoch_after}, {commits_before} -> \
             {commits_after} commits for the group, {dave_mail} group items for dave)",
            if nothing_sent {
                "nothing was sent"
            } else {
                "SOMETHING WAS SENT"
            }
        ));
        {
            let db = self.relay_db()?;
            for (id, kp) in &saved.0 {
                db.execute(
                    "UPDATE key_packages_one_time SET key_package = ?2 WHERE id = ?1",
                    params![id, kp],
                )
                .map_err(|e| format!("restoring: {e}"))?;
            }
            for kp in &saved.1 {
                db.execute(
                    "UPDATE key_packages_last_resort SET key_package = ?2 WHERE identity = ?1",
                    params![dave_key.as_slice(), kp],
                )
                .map_err(|e| format!("restoring: {e}"))?;
            }
        }
        Ok(refused && nothing_sent)
    }

    /// The relay builds a group state of its own under the real group id ("alice" under a
    /// key of its own, brought to the real epoch), makes a commit there adding a member of
    /// its own, and delivers it to bob: his client must refuse it, and the group go on.
    async fn forged_commit(&mut self, group_id: &[u8]) -> Result<bool, String> {
        let epoch = self.group_epoch()?;
        let id: [u8; engine::GROUP_ID_LEN] = group_id
            .try_into()
            .map_err(|_| "group id length".to_owned())?;
        let err = |e: GroupError| format!("the relay's own group: {e}");
        let relay_mls = OpenMlsRustCrypto::default();
        let fake_alice = IdentityKeyPair::generate(&mut OsRng);
        let signer = IdentitySigner::new(&fake_alice);
        let me = MemberId::new("alice", *fake_alice.public_key().as_bytes()).map_err(err)?;
        engine::create_group(&relay_mls, &signer, &me, id, GROUP).map_err(err)?;
        // Commits of its own until its epoch is the real one (an add, then its removal, …).
        let mut extra: Option<[u8; 32]> = None;
        while engine::epoch(&relay_mls, group_id).map_err(err)? < epoch {
            let out = match extra.take() {
                Some(key) => engine::remove_members(&relay_mls, &signer, group_id, &[key]),
                None => {
                    let (member, kp) = relay_member(&relay_mls, "filler")?;
                    extra = Some(member.identity);
                    engine::add_members(&relay_mls, &signer, group_id, &[(member, kp)])
                }
            }
            .map_err(err)?;
            drop(out);
            engine::merge_own_commit(&relay_mls, group_id).map_err(err)?;
        }
        let (eve, kp) = relay_member(&relay_mls, "eve")?;
        let eve_fingerprint = fingerprint(&eve.identity);
        let out = engine::add_members(&relay_mls, &signer, group_id, &[(eve, kp)]).map_err(err)?;
        self.bob_offline().await;
        {
            let db = self.relay_db()?;
            reinsert(&db, &self.bob_key, &self.alice_key, &out.commit)?;
        }
        self.say(format!(
            "the malicious relay makes a group state of its own with the same group id: \
             \"alice\" under a key of its own (fingerprint {}), brought to epoch {} like the \
             real group; there it commits adding \"eve\" (its own, fingerprint \
             {eve_fingerprint}) and puts that commit into bob's mailbox as alice's ({} bytes: \
             {})",
            fake_alice.public_key().fingerprint(),
            out.epoch,
            out.commit.len(),
            short_hex(&out.commit)
        ));
        let got = receive_within(self.bob()?, QUICK, |e| !rejections(e).is_empty()).await?;
        let refused = rejections(&got);
        for reason in &refused {
            self.detail(format!("bob's client: Rejected: {reason}"));
        }
        let fourth = "Dave is in; eve is not.";
        self.alice_tells_group(fourth).await?;
        let read = has_text(
            &receive_within(self.bob()?, QUICK, |e| has_text(e, fourth)).await?,
            fourth,
        );
        let info = self.bob()?.group_info(GROUP).map_err(|e| e.to_string())?;
        let names: Vec<String> = info
            .members
            .iter()
            .map(|m| format!("{} ({})", m.name, m.state.label()))
            .collect();
        let unchanged = info.epoch == Some(epoch) && !info.members.iter().any(|m| m.name == "eve");
        self.detail(format!(
            "bob's group after it: epoch {}, members {}; alice -> #{GROUP}: \"{fourth}\": bob \
             reads it: {}",
            info.epoch.unwrap_or(0),
            names.join(", "),
            yes(read)
        ));
        Ok(!refused.is_empty() && read && unchanged)
    }

    fn group_epoch(&mut self) -> Result<u64, String> {
        self.alice
            .group_info(GROUP)
            .map_err(|e| e.to_string())?
            .epoch
            .ok_or_else(|| "alice is not in the group".to_owned())
    }
}

/// A member of the relay's own making: a fresh identity and a KeyPackage for it.
fn relay_member(relay_mls: &OpenMlsRustCrypto, name: &str) -> Result<(MemberId, Vec<u8>), String> {
    let identity = IdentityKeyPair::generate(&mut OsRng);
    let member = MemberId::new(name, *identity.public_key().as_bytes())
        .map_err(|e| format!("{name}: {e}"))?;
    let kp = engine::new_key_package(relay_mls, &IdentitySigner::new(&identity), &member, false)
        .map_err(|e| format!("{name}: {e}"))?;
    Ok((member, kp))
}

/// Feed envelopes to the MLS state in a (closed) profile, in one transaction that is dropped:
/// what a client holding that state would make of them, and nothing written.
fn open_with_profile(
    dir: &Path,
    group_id: &[u8],
    envelopes: &[&[u8]],
) -> Result<Vec<Result<Incoming, GroupError>>, String> {
    let mut store = Store::open(dir, PASSPHRASE).map_err(|e| format!("profile: {e}"))?;
    let tx = store.tx().map_err(|e| e.to_string())?;
    let provider = HushProvider::new(&tx);
    let mut out = Vec::new();
    for bytes in envelopes {
        let envelope = GroupEnvelope::from_bytes(bytes).map_err(|e| e.to_string())?;
        out.push(engine::process(&provider, group_id, &envelope));
    }
    Ok(out)
}

fn describe(result: &Result<Incoming, GroupError>) -> String {
    match result {
        Ok(Incoming::Application { .. }) => "CAN read it".into(),
        Ok(Incoming::Commit {
            committer,
            we_were_removed: true,
            new_epoch,
            ..
        }) => format!(
            "a commit by {} to epoch {new_epoch} that removes her: it carries no secret of \
             the new epoch for her",
            committer.name
        ),
        Ok(Incoming::Commit { .. }) => "a commit that does NOT remove her".into(),
        Ok(Incoming::Proposal { .. }) => "a proposal".into(),
        Err(e) => format!("cannot open it ({e})"),
    }
}

fn joined(events: &[Event]) -> bool {
    events.iter().any(|e| {
        matches!(
            e,
            Event::Group {
                change: GroupChange::Joined { .. },
                ..
            }
        )
    })
}

fn rejections(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Rejected { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

fn fingerprint(identity: &[u8; 32]) -> String {
    hush_proto::IdentityPublicKey::from_bytes(identity)
        .map(|k| k.fingerprint())
        .unwrap_or_else(|_| short_hex(identity))
}

fn yes(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "NO"
    }
}
