//! A malicious relay operator editing the relay's database while it runs (real sockets,
//! in-process relay): tampered, replayed, dropped and reordered envelopes and substituted
//! bundles are all detected or harmless; the mailbox counters stay consistent throughout.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use hush_adversary::MaliciousRelay;
use hush_client::{Client, ClientError, DeliveryState, Event};
use hush_proto::relay::Delivery;
use hush_proto::{Envelope, IdentityKeyPair};
use rand_core::OsRng;

const WAIT: Duration = Duration::from_millis(300);

struct World {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    relay: hush_relay::RunningRelay,
    alice: Client,
    bob: Option<Client>,
    bob_key: [u8; 32],
    evil: MaliciousRelay,
}

async fn client(root: &Path, name: &str, relay: &hush_relay::RunningRelay) -> Client {
    Client::init(
        &root.join(name),
        b"pass",
        name,
        &relay.local_addr.to_string(),
        Some(relay.public_key),
    )
    .await
    .unwrap()
}

/// A relay, alice and bob with an established session (one message each way).
async fn world() -> World {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_owned();
    let relay_dir = root.join("relay");
    let relay = hush_relay::start(hush_relay::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data: relay_dir.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    let mut alice = client(&root, "alice", &relay).await;
    let mut bob = client(&root, "bob", &relay).await;
    alice.send_text("bob", "hello bob").await.unwrap();
    assert_eq!(texts(&recv(&mut bob).await), ["hello bob"]);
    bob.send_text("alice", "hello alice").await.unwrap();
    assert_eq!(texts(&recv(&mut alice).await), ["hello alice"]);
    let evil = MaliciousRelay::open(&relay_dir);
    World {
        _tmp: tmp,
        root,
        relay,
        alice,
        bob_key: *bob.identity_key().as_bytes(),
        bob: Some(bob),
        evil,
    }
}

async fn recv(client: &mut Client) -> Vec<Event> {
    let mut events = Vec::new();
    client
        .receive(WAIT, |e| events.push(e.clone()))
        .await
        .unwrap();
    events
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

fn count(client: &mut Client, contact: &str, text: &str) -> usize {
    client
        .history(contact)
        .unwrap()
        .iter()
        .filter(|m| m.text == text)
        .count()
}

/// Bob goes offline (closes his subscribed connection): what arrives now waits in the
/// relay's database, where the operator can reach it, until bob's next receive.
async fn bob_offline(w: &mut World) {
    if w.bob.take().is_some() {
        // Let the relay notice the closed connection.
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

impl World {
    /// Bob's client, reopened from his profile if he went offline.
    fn bob(&mut self) -> &mut Client {
        let root = self.root.clone();
        self.bob
            .get_or_insert_with(|| Client::open(&root.join("bob"), b"pass").unwrap())
    }
}

/// Alice sends `text` while bob is offline; returns the relay row holding it.
async fn send_and_capture(w: &mut World, text: &str) -> hush_adversary::StoredEnvelope {
    bob_offline(w).await;
    let bob_key = w.bob_key;
    let before: Vec<i64> = w
        .evil
        .mailbox(&bob_key)
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(
        w.alice.send_text("bob", text).await.unwrap().state,
        DeliveryState::OnRelay
    );
    w.evil
        .mailbox(&bob_key)
        .unwrap()
        .into_iter()
        .find(|r| !before.contains(&r.id))
        .expect("alice's envelope is in bob's mailbox")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tampered_envelope_is_rejected_and_the_next_genuine_one_decrypts() {
    let mut w = world().await;
    let target = send_and_capture(&mut w, "Transfer 100 to account 12345").await;
    w.evil.tamper(target.id, target.envelope.len() * 4).unwrap();
    assert!(w.evil.counters_consistent().unwrap());
    send_and_capture(&mut w, "this one is genuine").await;
    let events = recv(w.bob()).await;
    assert!(
        events.iter().any(|e| matches!(e, Event::Rejected { .. })),
        "the tampered envelope was not rejected: {events:?}"
    );
    assert_eq!(texts(&events), ["this one is genuine"]);
    assert_eq!(count(w.bob(), "alice", "Transfer 100 to account 12345"), 0);
    // The session goes on.
    send_and_capture(&mut w, "and another").await;
    assert_eq!(texts(&recv(w.bob()).await), ["and another"]);
    assert!(w.evil.counters_consistent().unwrap());
    w.relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_envelope_is_not_shown_twice() {
    let mut w = world().await;
    let copy = send_and_capture(&mut w, "pay once").await;
    assert_eq!(texts(&recv(w.bob()).await), ["pay once"]);
    // Delivered and acknowledged: the relay deleted it; the operator kept a copy.
    let bob_key = w.bob_key;
    assert!(w.evil.mailbox(&bob_key).unwrap().is_empty());
    assert!(w.evil.observed().iter().any(|o| o.id == copy.id));
    bob_offline(&mut w).await;
    let replayed = w.evil.replay(&copy).unwrap();
    assert!(w.evil.counters_consistent().unwrap());
    let events = recv(w.bob()).await;
    assert!(texts(&events).is_empty(), "replay shown again: {events:?}");
    // Another copy of a message already read is the relay's doing: reported (issue 8 item 9).
    assert!(
        events.iter().any(
            |e| matches!(e, Event::Rejected { contact: Some(c), reason } if c == "alice" && reason.contains("duplicate"))
        ),
        "replay not reported: {events:?}"
    );
    assert_eq!(count(w.bob(), "alice", "pay once"), 1);
    // Bob consumed (acknowledged) the replayed row.
    assert!(!w
        .evil
        .mailbox(&bob_key)
        .unwrap()
        .iter()
        .any(|r| r.id == replayed));
    assert!(w.evil.counters_consistent().unwrap());
    w.relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_envelope_is_missing_later_ones_arrive_and_the_loss_is_visible() {
    let mut w = world().await;
    send_and_capture(&mut w, "before the gap").await;
    let lost = send_and_capture(&mut w, "this one is dropped").await;
    send_and_capture(&mut w, "after the gap").await;
    w.evil.drop_envelope(lost.id).unwrap();
    assert!(w.evil.counters_consistent().unwrap());
    let events = recv(w.bob()).await;
    assert_eq!(texts(&events), ["before the gap", "after the gap"]);
    // Bob's receipts reach alice: the dropped message alone stays undelivered.
    recv(&mut w.alice).await;
    let history = w.alice.history("bob").unwrap();
    for m in history.iter().filter(|m| m.outgoing) {
        let expected = if m.text == "this one is dropped" {
            DeliveryState::OnRelay
        } else {
            DeliveryState::Delivered
        };
        assert_eq!(m.state, expected, "{}", m.text);
    }
    w.relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reordered_envelopes_both_decrypt_and_the_session_continues() {
    let mut w = world().await;
    let first = send_and_capture(&mut w, "first").await;
    let second = send_and_capture(&mut w, "second").await;
    w.evil.swap(first.id, second.id).unwrap();
    assert!(w.evil.counters_consistent().unwrap());
    let events = recv(w.bob()).await;
    assert_eq!(texts(&events), ["second", "first"]);
    assert!(!events.iter().any(|e| matches!(e, Event::Rejected { .. })));
    send_and_capture(&mut w, "third").await;
    assert_eq!(texts(&recv(w.bob()).await), ["third"]);
    w.bob().send_text("alice", "got all three").await.unwrap();
    assert_eq!(texts(&recv(&mut w.alice).await), ["got all three"]);
    w.relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn substituted_bundle_is_flagged_blocks_sending_and_changes_the_safety_number() {
    let mut w = world().await;
    let mut carol = client(&w.root, "carol", &w.relay).await;
    w.bob().add_contact("carol").await.unwrap();
    // Honest control: both ends of a pair compute the same safety number.
    let honest = w.alice.safety_number("bob").unwrap();
    assert_eq!(
        honest.digits(),
        w.bob().safety_number("alice").unwrap().digits()
    );
    w.alice.confirm_verified("bob").unwrap();
    let real_bob = w.bob_key;

    // The operator frees "bob"; mallory registers the name with her own identity.
    assert_eq!(
        w.evil.free_name("bob").unwrap().as_deref(),
        Some(&real_bob[..])
    );
    let mut mallory = Client::init(
        &w.root.join("mallory"),
        b"pass",
        "bob",
        &w.relay.local_addr.to_string(),
        Some(w.relay.public_key),
    )
    .await
    .unwrap();
    assert_ne!(w.evil.identity_of("bob").unwrap().unwrap(), real_bob);
    mallory
        .send_text("alice", "it's me, bob, new phone")
        .await
        .unwrap();

    let events = recv(&mut w.alice).await;
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::KeyChanged { contact } if contact == "bob")));
    let contact = w.alice.contact("bob").unwrap().unwrap();
    assert!(contact.changed_key.is_some());
    assert!(matches!(
        w.alice.send_text("bob", "are you really bob?").await,
        Err(ClientError::KeyChanged(_))
    ));
    assert_ne!(
        w.alice.safety_number("bob").unwrap().digits(),
        honest.digits()
    );

    // A fresh contact gets mallory's key: her safety number differs from the real bob's.
    carol.add_contact("bob").await.unwrap();
    assert_ne!(
        carol.safety_number("bob").unwrap().digits(),
        w.bob().safety_number("carol").unwrap().digits()
    );

    // Only an explicit trust unblocks sending (to the new key, unverified).
    w.alice.trust("bob").unwrap();
    assert!(!w.alice.contact("bob").unwrap().unwrap().verified);
    w.alice.send_text("bob", "ok, trusting").await.unwrap();
    assert_eq!(texts(&recv(&mut mallory).await), ["ok, trusting"]);
    w.relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_prekey_forged_by_another_key_is_refused() {
    let mut w = world().await;
    let bob_key = w.bob_key;
    bob_offline(&mut w).await; // so it does not republish its genuine prekey
    let forger = IdentityKeyPair::generate(&mut OsRng);
    w.evil.forge_signed_prekey(&bob_key, &forger).unwrap();
    let mut dave = client(&w.root, "dave", &w.relay).await;
    let result = dave.add_contact("bob").await;
    assert!(
        matches!(result, Err(ClientError::Session { .. })),
        "a bundle with a forged prekey signature was accepted: {result:?}"
    );
    assert!(dave.history("bob").unwrap_or_default().is_empty());
    w.relay.shutdown().await;
}

/// The relay answers `WhoIs` for a stranger with a name no one could register (an escape
/// sequence that erases the line, a newline, another contact's name after it). The client
/// refuses the name: no contact is created under it, the message is rejected (and acked, so
/// receiving goes on), and the real contact's session keeps working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_name_from_the_relay_that_no_one_could_register_is_refused() {
    let mut w = world().await;
    let mut carol = client(&w.root, "carol", &w.relay).await;
    assert!(w.evil.rename("carol", "\x1b[2K\ralice\nbob").unwrap());
    carol.send_text("bob", "from a stranger").await.unwrap();
    let bob = w.bob.as_mut().unwrap();
    let events = recv(bob).await;
    assert!(
        events.iter().all(|e| !matches!(e, Event::Message(_))),
        "{events:?}"
    );
    assert!(
        events.iter().any(|e| matches!(e, Event::Rejected { .. })),
        "{events:?}"
    );
    let names: Vec<String> = bob
        .contacts()
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["alice"]);
    // Nothing stays stuck in the mailbox, and alice's session is untouched.
    assert!(recv(bob).await.is_empty());
    w.alice.send_text("bob", "still me").await.unwrap();
    let bob = w.bob.as_mut().unwrap();
    assert_eq!(texts(&recv(bob).await), ["still me"]);
}

// ---- Issue 8: the relay's label is not who sent it; replays are refused and reported -------

/// Ids of the rows now waiting in `recipient`'s mailbox.
fn row_ids(evil: &mut MaliciousRelay, recipient: &[u8; 32]) -> Vec<i64> {
    evil.mailbox(recipient)
        .unwrap()
        .iter()
        .map(|r| r.id)
        .collect()
}

/// The one row of `recipient`'s mailbox that is not in `before`.
fn new_row(
    evil: &mut MaliciousRelay,
    recipient: &[u8; 32],
    before: &[i64],
) -> hush_adversary::StoredEnvelope {
    let mut rows: Vec<_> = evil
        .mailbox(recipient)
        .unwrap()
        .into_iter()
        .filter(|r| !before.contains(&r.id))
        .collect();
    assert_eq!(rows.len(), 1, "expected exactly one new row");
    rows.remove(0)
}

fn contact_names(client: &mut Client) -> Vec<String> {
    client
        .contacts()
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect()
}

fn rejected<'a>(events: &'a [Event], contact: &str) -> Vec<&'a str> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Rejected {
                contact: Some(c),
                reason,
            } if c == contact => Some(reason.as_str()),
            _ => None,
        })
        .collect()
}

/// Alice and bob still talk both ways in their real sessions.
async fn still_talking(w: &mut World, tag: &str) {
    let to_bob = format!("alice to bob after {tag}");
    w.alice.send_text("bob", &to_bob).await.unwrap();
    assert_eq!(texts(&recv(w.bob()).await), [to_bob]);
    let to_alice = format!("bob to alice after {tag}");
    w.bob().send_text("alice", &to_alice).await.unwrap();
    assert_eq!(texts(&recv(&mut w.alice).await), [to_alice]);
}

/// Issue 8 item 1: the operator's throwaway identity runs X3DH against bob's real bundle and
/// the relay labels the envelope as alice's, a verified contact of bob's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prekey_message_from_another_identity_relabelled_as_a_verified_contact_is_rejected() {
    let mut w = world().await;
    w.bob().confirm_verified("alice").unwrap();
    let alice_key = *w.alice.identity_key().as_bytes();
    let bob_key = w.bob_key;
    let mut mallory = client(&w.root, "mallory", &w.relay).await;
    mallory.add_contact("bob").await.unwrap();
    bob_offline(&mut w).await;
    let before = row_ids(&mut w.evil, &bob_key);
    let forgery = "alice here: my account number changed to 666";
    mallory.send_text("bob", forgery).await.unwrap();
    let row = new_row(&mut w.evil, &bob_key, &before);
    assert!(matches!(
        Envelope::from_bytes(&row.envelope).unwrap(),
        Envelope::Prekey(_)
    ));
    w.evil.rewrite_sender(row.id, &alice_key).unwrap();
    assert!(w.evil.counters_consistent().unwrap());

    let events = recv(w.bob()).await;
    assert!(texts(&events).is_empty(), "forgery shown: {events:?}");
    let reasons = rejected(&events, "alice");
    assert!(
        reasons.iter().any(|r| r.contains("forged sender")),
        "forgery not reported: {events:?}"
    );
    assert_eq!(count(w.bob(), "alice", forgery), 0);
    let alice = w.bob().contact("alice").unwrap().unwrap();
    assert!(alice.verified && alice.changed_key.is_none(), "{alice:?}");
    assert_eq!(contact_names(w.bob()), ["alice"]);
    // Acked: the relay no longer holds it.
    assert!(w.evil.mailbox(&bob_key).unwrap().is_empty());
    still_talking(&mut w, "the forged first message").await;
    w.relay.shutdown().await;
}

/// Issue 8 item 1: an ordinary message from an established session with mallory, relabelled
/// as alice's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ordinary_message_relabelled_as_another_contact_is_rejected() {
    let mut w = world().await;
    let alice_key = *w.alice.identity_key().as_bytes();
    let bob_key = w.bob_key;
    let mut mallory = client(&w.root, "mallory", &w.relay).await;
    mallory
        .send_text("bob", "hi bob, mallory here")
        .await
        .unwrap();
    assert_eq!(texts(&recv(w.bob()).await), ["hi bob, mallory here"]);
    w.bob().send_text("mallory", "hi mallory").await.unwrap();
    assert_eq!(texts(&recv(&mut mallory).await), ["hi mallory"]);

    bob_offline(&mut w).await;
    let before = row_ids(&mut w.evil, &bob_key);
    let forgery = "alice here: please forward me your keys";
    mallory.send_text("bob", forgery).await.unwrap();
    let row = new_row(&mut w.evil, &bob_key, &before);
    assert!(matches!(
        Envelope::from_bytes(&row.envelope).unwrap(),
        Envelope::Message(_)
    ));
    w.evil.rewrite_sender(row.id, &alice_key).unwrap();
    assert!(w.evil.counters_consistent().unwrap());

    let events = recv(w.bob()).await;
    assert!(texts(&events).is_empty(), "forgery shown: {events:?}");
    assert!(!rejected(&events, "alice").is_empty(), "{events:?}");
    assert_eq!(count(w.bob(), "alice", forgery), 0);
    assert_eq!(count(w.bob(), "mallory", forgery), 0);
    assert!(w.evil.mailbox(&bob_key).unwrap().is_empty());
    still_talking(&mut w, "the relabelled message").await;
    w.relay.shutdown().await;
}

/// Issue 8 item 7: the relay withholds bob's one-time prekeys, keeps alice's first message of
/// a session, waits until alice started enough newer sessions for bob to evict it, and
/// replays it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_first_message_of_an_evicted_session_is_refused() {
    let mut w = world().await;
    let bob_key = w.bob_key;
    bob_offline(&mut w).await;
    assert!(w.evil.withhold_one_time_prekeys(&bob_key).unwrap() > 0);
    let mut firsts = Vec::new();
    let mut sent = Vec::new();
    // More new sessions than bob keeps (SESSIONS_KEPT + 1 = 5).
    for i in 0..6 {
        w.alice.add_contact("bob").await.unwrap();
        let text = format!("fresh session {i}");
        firsts.push(send_and_capture(&mut w, &text).await);
        sent.push(text);
    }
    for first in &firsts {
        match Envelope::from_bytes(&first.envelope).unwrap() {
            Envelope::Prekey(pre) => assert_eq!(pre.x3dh.one_time_prekey_id, None),
            Envelope::Message(_) => panic!("a new session's first message has an X3DH header"),
        }
    }
    assert_eq!(texts(&recv(w.bob()).await), sent);

    bob_offline(&mut w).await;
    w.evil.replay(&firsts[0]).unwrap();
    assert!(w.evil.counters_consistent().unwrap());
    let events = recv(w.bob()).await;
    assert!(texts(&events).is_empty(), "{events:?}");
    assert!(w.evil.mailbox(&bob_key).unwrap().is_empty());
    // Bob's active session is still the newest one (not a revived session alice no longer
    // has): his reply reaches alice, and hers him.
    w.bob()
        .send_text("alice", "bob after the replay")
        .await
        .unwrap();
    let at_alice = recv(&mut w.alice).await;
    assert_eq!(texts(&at_alice), ["bob after the replay"], "{at_alice:?}");
    w.alice
        .send_text("bob", "alice after the replay")
        .await
        .unwrap();
    assert_eq!(texts(&recv(w.bob()).await), ["alice after the replay"]);
    assert!(
        rejected(&events, "alice")
            .iter()
            .any(|r| r.contains("replayed first message")),
        "replay not reported: {events:?}"
    );
    w.relay.shutdown().await;
}

fn delivery_of(row: &hush_adversary::StoredEnvelope) -> Delivery {
    Delivery {
        id: u64::try_from(row.id).unwrap(),
        sender: row.sender.clone().try_into().unwrap(),
        received_at_ms: u64::try_from(row.received_at_ms).unwrap(),
        envelope: row.envelope.clone(),
    }
}

/// Issue 8 item 9: the relay re-delivering a row whose ack was lost is the client's own
/// crash/reconnect case and stays invisible; another copy, or a message whose counter the
/// relay lowered onto one already read, is reported (and acked).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redelivery_is_silent_but_a_replayed_copy_or_a_lowered_counter_is_reported() {
    let mut w = world().await;
    let bob_key = w.bob_key;
    let first = send_and_capture(&mut w, "pay once").await;
    let second = send_and_capture(&mut w, "pay again?").await;

    // Bob commits `first`, the ack is lost, the relay delivers the same row again.
    let events = w
        .bob()
        .process_delivery(&delivery_of(&first))
        .await
        .unwrap();
    assert_eq!(texts(&events), ["pay once"]);
    // ...and hands it to its consumer (otherwise the next receive emits it again: delivery
    // to the consumer is at least once).
    for event in &events {
        if let Event::Message(m) = event {
            w.bob().mark_emitted(m).unwrap();
        }
    }
    let again = w
        .bob()
        .process_delivery(&delivery_of(&first))
        .await
        .unwrap();
    assert!(again.is_empty(), "a redelivery after a lost ack: {again:?}");
    assert_eq!(count(w.bob(), "alice", "pay once"), 1);

    // The relay lowers `second`'s counter onto `first`'s and replays `first` under a new id.
    let Envelope::Message(m1) = Envelope::from_bytes(&first.envelope).unwrap() else {
        panic!("an established session sends ordinary messages")
    };
    let Envelope::Message(mut m2) = Envelope::from_bytes(&second.envelope).unwrap() else {
        panic!("an established session sends ordinary messages")
    };
    assert_eq!(m2.header.counter, m1.header.counter + 1);
    m2.header.counter = m1.header.counter;
    w.evil
        .replace_envelope(second.id, &Envelope::Message(m2).to_bytes())
        .unwrap();
    bob_offline(&mut w).await;
    w.evil.replay(&first).unwrap();
    assert!(w.evil.counters_consistent().unwrap());
    let events = recv(w.bob()).await;
    assert!(texts(&events).is_empty(), "{events:?}");
    let reasons = rejected(&events, "alice");
    assert_eq!(
        reasons.iter().filter(|r| r.contains("duplicate")).count(),
        2,
        "lowered counter and replay not both reported: {events:?}"
    );
    assert_eq!(count(w.bob(), "alice", "pay once"), 1);
    assert!(w.evil.mailbox(&bob_key).unwrap().is_empty());
    still_talking(&mut w, "the replays").await;
    w.relay.shutdown().await;
}

/// Issue 8 item 9: a first message naming a one-time prekey bob does not hold (the relay
/// rewrote the unauthenticated id, or the key is gone) is reported, not dropped; and a
/// stranger whose envelope does not authenticate is not added as a contact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_message_naming_a_missing_one_time_prekey_is_reported_and_adds_no_contact() {
    let mut w = world().await;
    let bob_key = w.bob_key;
    let mut carol = client(&w.root, "carol", &w.relay).await;
    carol.add_contact("bob").await.unwrap();
    bob_offline(&mut w).await;
    let before = row_ids(&mut w.evil, &bob_key);
    carol.send_text("bob", "hi bob, carol here").await.unwrap();
    let row = new_row(&mut w.evil, &bob_key, &before);
    let Envelope::Prekey(mut pre) = Envelope::from_bytes(&row.envelope).unwrap() else {
        panic!("a first message has an X3DH header")
    };
    assert!(pre.x3dh.one_time_prekey_id.is_some());
    pre.x3dh.one_time_prekey_id = Some(0xdead_beef);
    w.evil
        .replace_envelope(row.id, &Envelope::Prekey(pre).to_bytes())
        .unwrap();
    assert!(w.evil.counters_consistent().unwrap());
    let events = recv(w.bob()).await;
    assert!(
        rejected(&events, "carol")
            .iter()
            .any(|r| r.contains("one-time prekey")),
        "not reported: {events:?}"
    );
    assert_eq!(contact_names(w.bob()), ["alice"]);
    assert!(w.evil.mailbox(&bob_key).unwrap().is_empty());
    w.relay.shutdown().await;
}

/// Issue 8 item 9: junk from a stranger, or from a new key under a contact's name, changes
/// no contact (no new entry, no KEY CHANGED flag) because it never authenticates.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn junk_from_a_stranger_or_a_new_key_leaves_the_contacts_untouched() {
    let mut w = world().await;
    let bob_key = w.bob_key;
    w.bob().confirm_verified("alice").unwrap();
    let mut carol = client(&w.root, "carol", &w.relay).await;
    bob_offline(&mut w).await;
    let before = row_ids(&mut w.evil, &bob_key);
    carol.send_text("bob", "junk from carol").await.unwrap();
    let row = new_row(&mut w.evil, &bob_key, &before);
    w.evil.tamper(row.id, row.envelope.len() * 8 - 1).unwrap();

    // The operator hands the name "alice" to mallory, whose envelope is junk too.
    w.evil.free_name("alice").unwrap().unwrap();
    let mut mallory = Client::init(
        &w.root.join("mallory"),
        b"pass",
        "alice",
        &w.relay.local_addr.to_string(),
        Some(w.relay.public_key),
    )
    .await
    .unwrap();
    let before = row_ids(&mut w.evil, &bob_key);
    mallory
        .send_text("bob", "junk from a new key")
        .await
        .unwrap();
    let row = new_row(&mut w.evil, &bob_key, &before);
    w.evil.tamper(row.id, row.envelope.len() * 8 - 1).unwrap();

    let events = recv(w.bob()).await;
    assert!(texts(&events).is_empty(), "{events:?}");
    assert!(!rejected(&events, "carol").is_empty(), "{events:?}");
    assert!(!rejected(&events, "alice").is_empty(), "{events:?}");
    assert!(
        !events.iter().any(|e| matches!(e, Event::KeyChanged { .. })),
        "{events:?}"
    );
    assert_eq!(contact_names(w.bob()), ["alice"]);
    let alice = w.bob().contact("alice").unwrap().unwrap();
    assert_eq!(alice.changed_key, None);
    assert!(alice.verified);
    assert!(w.evil.mailbox(&bob_key).unwrap().is_empty());
    w.relay.shutdown().await;
}

/// A first message from a stranger arrives while the relay cannot answer `WhoIs` (a storage
/// failure: `Internal`). That says nothing about the sender, so the envelope is neither
/// rejected nor acked: the relay delivers it again on the next connection, where it is shown.
/// Only a definite answer (`UnknownUser`, or a name no one could register) rejects it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_message_is_kept_for_later_when_the_name_lookup_fails_for_now() {
    let mut w = world().await;
    let mut carol = client(&w.root, "carol", &w.relay).await;
    carol.send_text("bob", "hello from carol").await.unwrap();
    // The delivery is on its way to bob's live connection; now the relay's name lookups fail.
    let db = rusqlite::Connection::open(w.root.join("relay/relay.sqlite3")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    db.execute_batch("ALTER TABLE users RENAME TO users_away")
        .unwrap();
    let events = recv(w.bob()).await;
    assert!(
        !events
            .iter()
            .any(|e| matches!(e, Event::Message(_) | Event::Rejected { .. })),
        "nothing is shown or rejected while the name cannot be looked up: {events:?}"
    );
    db.execute_batch("ALTER TABLE users_away RENAME TO users")
        .unwrap();
    // Bob's next connection gets the unacknowledged envelope again.
    bob_offline(&mut w).await;
    let events = recv(w.bob()).await;
    assert_eq!(texts(&events), ["hello from carol"], "{events:?}");
    w.relay.shutdown().await;
}

/// The relay answers `add carol` with bob's real, validly signed bundle. One identity has one
/// name, so this is a substitution: the client refuses it, and bob stays bob (the old client
/// made "carol" with bob's key and moved bob's key to that name: bob's messages then showed as
/// carol's, and what alice wrote to carol went to bob).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contacts_key_served_under_another_name_is_refused() {
    let mut w = world().await;
    assert!(w.evil.rename("bob", "carol").unwrap());
    let result = w.alice.add_contact("carol").await;
    assert!(
        result.is_err(),
        "bob's bundle was accepted as carol's: {result:?}"
    );
    let names: Vec<String> = w
        .alice
        .contacts()
        .unwrap()
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(names, ["bob"]);
    assert!(w.evil.rename("carol", "bob").unwrap());
    w.bob().send_text("alice", "still bob").await.unwrap();
    let events = recv(&mut w.alice).await;
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Message(m) if m.contact == "bob" && m.text == "still bob")),
        "{events:?}"
    );
    w.relay.shutdown().await;
}

/// The relay hands bob's name to a throwaway identity, which opens five sessions with alice.
/// Alice is told loudly (KEY CHANGED), but the throwaway's sessions must not push bob's real
/// sessions out: bob, on his trusted key, still reaches her. (Before, five authenticated
/// envelopes from the claimed new key evicted every session of the trusted one.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_of_an_unaccepted_new_key_do_not_evict_the_trusted_keys_sessions() {
    let mut w = world().await;
    w.evil.free_name("bob").unwrap();
    let mut mallory = Client::init(
        &w.root.join("mallory"),
        b"pass",
        "bob",
        &w.relay.local_addr.to_string(),
        Some(w.relay.public_key),
    )
    .await
    .unwrap();
    for i in 0..5 {
        mallory.add_contact("alice").await.unwrap();
        mallory
            .send_text("alice", &format!("claimed {i}"))
            .await
            .unwrap();
    }
    let events = recv(&mut w.alice).await;
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::KeyChanged { contact } if contact == "bob")),
        "{events:?}"
    );
    w.bob().send_text("alice", "still me").await.unwrap();
    let events = recv(&mut w.alice).await;
    assert!(
        events.iter().any(|e| matches!(
            e,
            Event::Message(m) if m.text == "still me" && m.contact == "bob" && !m.key_changed
        )),
        "the trusted key's session was evicted: {events:?}"
    );
    w.relay.shutdown().await;
}
