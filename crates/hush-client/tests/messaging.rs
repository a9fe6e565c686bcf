//! Client library against a real in-process relay over loopback: first contact, offline
//! delivery, receipts, de-duplication, key changes, simultaneous initiation.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::time::Duration;

use hush_client::{Client, ClientError, DeliveryState, Event};

async fn relay(dir: &Path) -> hush_relay::RunningRelay {
    hush_relay::start(hush_relay::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data: dir.to_owned(),
        ..Default::default()
    })
    .await
    .unwrap()
}

async fn init(dir: &Path, name: &str, relay: &hush_relay::RunningRelay) -> Client {
    Client::init(
        &dir.join(name),
        b"pass",
        name,
        &relay.local_addr.to_string(),
        None,
    )
    .await
    .unwrap()
}

async fn recv(client: &mut Client) -> Vec<Event> {
    let mut events = Vec::new();
    client
        .receive(Duration::from_millis(300), |e| events.push(e.clone()))
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_delivery_receipts_and_history() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = relay(&tmp.path().join("relay")).await;
    let mut alice = init(tmp.path(), "alice", &relay).await;
    let mut bob = init(tmp.path(), "bob", &relay).await;

    // Bob is offline (not receiving); alice sends three messages to a name she never added.
    for text in ["one", "two", "three"] {
        let entry = alice.send_text("bob", text).await.unwrap();
        assert_eq!(entry.state, DeliveryState::OnRelay);
    }
    let events = recv(&mut bob).await;
    assert_eq!(texts(&events), ["one", "two", "three"]);
    // Nothing is shown twice on a second receive.
    assert!(texts(&recv(&mut bob).await).is_empty());
    // Bob's receipts reach alice and mark her messages delivered.
    let events = recv(&mut alice).await;
    assert!(events.iter().any(|e| matches!(e, Event::Delivered { .. })));
    let history = alice.history("bob").unwrap();
    assert_eq!(history.len(), 3);
    assert!(history.iter().all(|m| m.state == DeliveryState::Delivered));

    // A reply, and the conversation continues both ways.
    bob.send_text("alice", "hi alice").await.unwrap();
    assert_eq!(texts(&recv(&mut alice).await), ["hi alice"]);
    alice.send_text("bob", "four").await.unwrap();
    assert_eq!(texts(&recv(&mut bob).await), ["four"]);
    assert_eq!(bob.history("alice").unwrap().len(), 5);
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simultaneous_first_messages_converge_to_one_session() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = relay(&tmp.path().join("relay")).await;
    let mut alice = init(tmp.path(), "alice", &relay).await;
    let mut bob = init(tmp.path(), "bob", &relay).await;
    alice.send_text("bob", "from alice").await.unwrap();
    bob.send_text("alice", "from bob").await.unwrap();
    assert_eq!(texts(&recv(&mut alice).await), ["from bob"]);
    assert_eq!(texts(&recv(&mut bob).await), ["from alice"]);
    for round in 0..3 {
        alice.send_text("bob", &format!("a{round}")).await.unwrap();
        assert_eq!(texts(&recv(&mut bob).await), [format!("a{round}")]);
        bob.send_text("alice", &format!("b{round}")).await.unwrap();
        assert_eq!(texts(&recv(&mut alice).await), [format!("b{round}")]);
    }
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_relay_keeps_the_message_queued_until_the_next_connection() {
    let tmp = tempfile::tempdir().unwrap();
    let relay_dir = tmp.path().join("relay");
    let relay1 = relay(&relay_dir).await;
    let addr = relay1.local_addr;
    let mut alice = init(tmp.path(), "alice", &relay1).await;
    let mut bob = init(tmp.path(), "bob", &relay1).await;
    alice.add_contact("bob").await.unwrap();
    relay1.shutdown().await;
    drop(alice);
    let mut alice = Client::open(&tmp.path().join("alice"), b"pass").unwrap();
    let entry = alice.queue_text("bob", "while down").unwrap();
    assert!(alice.flush_outbox().await.error.is_some());
    assert_eq!(alice.outbox_len().unwrap(), 1);
    assert_eq!(entry.state, DeliveryState::Queued);
    // Same data dir, same port: the relay comes back.
    let relay2 = hush_relay::start(hush_relay::Config {
        listen: addr,
        data: relay_dir.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    drop(alice);
    let mut alice = Client::open(&tmp.path().join("alice"), b"pass").unwrap();
    assert!(alice.flush_outbox().await.error.is_none());
    assert_eq!(alice.outbox_len().unwrap(), 0);
    drop(bob);
    bob = Client::open(&tmp.path().join("bob"), b"pass").unwrap();
    assert_eq!(texts(&recv(&mut bob).await), ["while down"]);
    relay2.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_identity_key_is_flagged_and_blocks_sending_until_trusted() {
    let tmp = tempfile::tempdir().unwrap();
    let relay_dir = tmp.path().join("relay");
    let relay = relay(&relay_dir).await;
    let mut alice = init(tmp.path(), "alice", &relay).await;
    let mut bob = init(tmp.path(), "bob", &relay).await;
    alice.send_text("bob", "hello").await.unwrap();
    recv(&mut bob).await;
    alice.confirm_verified("bob").unwrap();
    let before = alice.safety_number("bob").unwrap();

    // The operator (or a malicious relay) frees the name; a new identity takes "bob".
    drop(bob);
    let store =
        hush_relay::store::sqlite::SqliteStore::open(&relay_dir.join("relay.sqlite3")).unwrap();
    assert!(store.free_name("bob").unwrap().is_some());
    drop(store);
    let mut bob2 = Client::init(
        &tmp.path().join("bob2"),
        b"pass",
        "bob",
        &relay.local_addr.to_string(),
        None,
    )
    .await
    .unwrap();
    bob2.send_text("alice", "it's me, new phone").await.unwrap();

    let events = recv(&mut alice).await;
    assert!(events
        .iter()
        .any(|e| matches!(e, Event::KeyChanged { contact } if contact == "bob")));
    let flagged: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(m.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(flagged.len(), 1);
    assert!(flagged[0].key_changed && !flagged[0].verified);
    assert!(matches!(
        alice.send_text("bob", "are you really bob?").await,
        Err(ClientError::KeyChanged(_))
    ));
    assert_ne!(
        alice.safety_number("bob").unwrap().digits(),
        before.digits()
    );
    alice.trust("bob").unwrap();
    let contact = alice.contact("bob").unwrap().unwrap();
    assert!(!contact.verified && contact.changed_key.is_none());
    alice.send_text("bob", "welcome back").await.unwrap();
    assert_eq!(texts(&recv(&mut bob2).await), ["welcome back"]);
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_row_is_parked_with_backoff_and_blocks_neither_others_nor_its_order() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = hush_relay::start(hush_relay::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data: tmp.path().join("relay"),
        mailbox_max_messages: 2,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut alice = init(tmp.path(), "alice", &relay).await;
    let mut bob = init(tmp.path(), "bob", &relay).await;
    let mut carol = init(tmp.path(), "carol", &relay).await;
    for text in ["fill 1", "fill 2"] {
        carol.send_text("bob", text).await.unwrap();
    }

    // Bob's mailbox is full: alice's first message is parked, her second waits behind it
    // (never overtakes it), and her message to carol goes out regardless.
    let first = alice.send_text("bob", "first").await.unwrap();
    assert_eq!(first.state, DeliveryState::Queued);
    assert!(first
        .failure
        .as_deref()
        .unwrap()
        .contains("mailbox is full"));
    let second = alice.send_text("bob", "second").await.unwrap();
    assert_eq!(second.state, DeliveryState::Queued);
    assert!(second
        .failure
        .as_deref()
        .unwrap()
        .contains("waiting behind"));
    let to_carol = alice.send_text("carol", "to carol").await.unwrap();
    assert_eq!(to_carol.state, DeliveryState::OnRelay);
    assert_eq!(texts(&recv(&mut carol).await), ["to carol"]);
    assert_eq!(alice.outbox_len().unwrap(), 2);

    // Bob makes room; the parked row waits out its backoff, which survives a restart.
    assert_eq!(texts(&recv(&mut bob).await), ["fill 1", "fill 2"]);
    drop(alice);
    let mut alice = Client::open(&tmp.path().join("alice"), b"pass").unwrap();
    let flushed = alice.flush_outbox().await;
    assert!(flushed.events.is_empty() && flushed.error.is_none());
    assert_eq!(alice.outbox_len().unwrap(), 2, "retried before its time");

    tokio::time::sleep(hush_client::client::RETRY_FIRST + Duration::from_millis(500)).await;
    assert!(alice.flush_outbox().await.error.is_none());
    assert_eq!(alice.outbox_len().unwrap(), 0);
    let history = alice.history("bob").unwrap();
    assert!(history
        .iter()
        .all(|m| m.state == DeliveryState::OnRelay && m.failure.is_none()));
    assert_eq!(texts(&recv(&mut bob).await), ["first", "second"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_to_a_full_mailbox_are_capped_and_receiving_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = hush_relay::start(hush_relay::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data: tmp.path().join("relay"),
        mailbox_max_messages: 60,
        ..Default::default()
    })
    .await
    .unwrap();
    let mut victim = init(tmp.path(), "victim", &relay).await;
    let mut mallory = init(tmp.path(), "mallory", &relay).await;
    let mut friend = init(tmp.path(), "friend", &relay).await;
    for n in 0..60 {
        friend
            .send_text("mallory", &format!("fill {n}"))
            .await
            .unwrap();
    }
    // Mallory writes 120 messages (in batches the victim's mailbox holds); every one queues
    // a receipt to her full mailbox.
    for batch in 0..3 {
        for n in 0..40 {
            let entry = mallory
                .send_text("victim", &format!("{batch}/{n}"))
                .await
                .unwrap();
            assert_eq!(entry.state, DeliveryState::OnRelay);
        }
        assert_eq!(texts(&recv(&mut victim).await).len(), 40);
    }
    assert_eq!(
        victim.outbox_len().unwrap(),
        hush_client::client::RECEIPTS_HELD_MAX + 1
    );
}

/// `pump_until` (what `hush web` waits with): a request arriving while the client waits for
/// deliveries ends the wait at once, with the request, and a delivery that comes later is
/// still received whole, neither lost nor half read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_pump_returns_at_once_and_loses_no_delivery() {
    let dir = tempfile::tempdir().unwrap();
    let relay = relay(dir.path()).await;
    let mut alice = init(dir.path(), "alice", &relay).await;
    let mut bob = init(dir.path(), "bob", &relay).await;
    alice.send_text("bob", "first").await.unwrap();
    assert_eq!(texts(&recv(&mut bob).await), vec!["first"]);

    // Nothing to receive: the interrupt ends a 30 s wait long before it runs out.
    let started = std::time::Instant::now();
    let (events, interrupted) = bob
        .pump_until(Duration::from_secs(30), async { 7 })
        .await
        .unwrap();
    assert!(events.is_empty());
    assert_eq!(interrupted, Some(7));
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "the wait was not interrupted: {:?}",
        started.elapsed()
    );

    // Interrupted waits while a message is on its way, then a plain wait: it arrives once.
    alice.send_text("bob", "second").await.unwrap();
    let mut got = Vec::new();
    for _ in 0..20 {
        let (events, _) = bob
            .pump_until(
                Duration::from_millis(50),
                tokio::time::sleep(Duration::from_millis(1)),
            )
            .await
            .unwrap();
        got.extend(texts(&events));
    }
    for _ in 0..20 {
        if !got.is_empty() {
            break;
        }
        got.extend(texts(&bob.pump(Duration::from_millis(200)).await.unwrap()));
    }
    assert_eq!(got, vec!["second"]);
}

/// A long-running client shows a message before sending its receipt: the pump that received
/// it returns at once with the receipt committed in the outbox, and the next pump sends it
/// first thing (so the sender still sees "delivered").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pump_hands_a_message_over_before_its_receipt_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let relay = relay(dir.path()).await;
    let mut alice = init(dir.path(), "alice", &relay).await;
    let mut bob = init(dir.path(), "bob", &relay).await;
    alice.send_text("bob", "hello").await.unwrap();
    let mut got = Vec::new();
    for _ in 0..50 {
        got = bob.pump(Duration::from_millis(200)).await.unwrap();
        if !got.is_empty() {
            break;
        }
    }
    assert_eq!(texts(&got), vec!["hello"]);
    assert_eq!(
        bob.outbox_len().unwrap(),
        1,
        "the receipt waits for the next pump"
    );
    let _ = bob.pump(Duration::from_millis(10)).await.unwrap();
    assert_eq!(
        bob.outbox_len().unwrap(),
        0,
        "the next pump sent the receipt"
    );
    let delivered = recv(&mut alice).await;
    assert!(
        delivered
            .iter()
            .any(|e| matches!(e, Event::Delivered { contact, .. } if contact == "bob")),
        "{delivered:?}"
    );
}
