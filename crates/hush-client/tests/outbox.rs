//! The outbox against a real in-process relay: refusal clocks per recipient, refusals while
//! connecting, idle retries (issue 8 item 2, review findings).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hush_client::{Client, DeliveryState, Event};

const HOUR: u64 = 3_600_000;

async fn relay(dir: &Path, tune: impl FnOnce(&mut hush_relay::Config)) -> hush_relay::RunningRelay {
    let mut config = hush_relay::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data: dir.to_owned(),
        ..Default::default()
    };
    tune(&mut config);
    hush_relay::start(config).await.unwrap()
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

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// Review finding 1: rows waiting behind a parked row share its refusal clock, so every
/// receipt to a full mailbox is gone a day after the first refusal and every message a week
/// after, not one row per day.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_behind_a_parked_row_age_with_it() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = relay(&tmp.path().join("relay"), |c| c.mailbox_max_messages = 1).await;
    let mut alice = init(tmp.path(), "alice", &relay).await;
    let mut bob = init(tmp.path(), "bob", &relay).await;
    let mut carol = init(tmp.path(), "carol", &relay).await;
    carol.send_text("bob", "fill").await.unwrap();

    // Three messages from bob: each queues a receipt to bob's full mailbox.
    let start = now_ms();
    for n in 0..3 {
        bob.send_text("alice", &format!("b{n}")).await.unwrap();
        assert_eq!(texts(&recv(&mut alice).await), [format!("b{n}")]);
    }
    let message = alice.send_text("bob", "to bob").await.unwrap();
    assert_eq!(message.state, DeliveryState::Queued);
    assert_eq!(alice.outbox_len().unwrap(), 4);

    // A day later every receipt is gone; the message waits on.
    let flushed = alice.flush_outbox_at(start + 24 * HOUR + 60_000).await;
    assert!(flushed.error.is_none(), "{:?}", flushed.error);
    assert_eq!(alice.outbox_len().unwrap(), 1, "receipts outlived a day");

    // A week after the first refusal the message fails, with an event.
    let flushed = alice.flush_outbox_at(start + 7 * 24 * HOUR + 60_000).await;
    assert!(flushed.error.is_none(), "{:?}", flushed.error);
    let events = flushed.events;
    assert_eq!(alice.outbox_len().unwrap(), 0, "rows outlived a week");
    assert!(
        matches!(&events[..], [Event::Failed { id, .. }] if *id == message.id),
        "{events:?}"
    );
    let history = alice.history("bob").unwrap();
    let failed = history.iter().find(|m| m.id == message.id).unwrap();
    assert_eq!(failed.state, DeliveryState::Failed);
    relay.shutdown().await;
}

/// Review finding 5: the relay refusing our prekey refill on connect (here: its stock cap is
/// below what a refill needs) is about the connection, not the message being sent; it must
/// not be parked with a made-up reason and a running give-up clock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refusal_while_connecting_parks_no_row() {
    let tmp = tempfile::tempdir().unwrap();
    let relay_dir = tmp.path().join("relay");
    let relay = relay(&relay_dir, |c| c.max_one_time_prekeys = 110).await;
    let mut alice = init(tmp.path(), "alice", &relay).await;
    let _bob = init(tmp.path(), "bob", &relay).await;
    alice.add_contact("bob").await.unwrap();
    let alice_key = alice.identity_key().as_bytes().to_vec();
    drop(alice);

    // 15 of alice's 100 one-time prekeys are left: her next connection refills 100, which
    // the relay refuses (too_many_prekeys).
    let db = rusqlite::Connection::open(relay_dir.join("relay.sqlite3")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    let deleted = db
        .execute(
            "DELETE FROM one_time_prekeys WHERE identity = ?1 AND id NOT IN \
             (SELECT id FROM one_time_prekeys WHERE identity = ?1 LIMIT 15)",
            [&alice_key],
        )
        .unwrap();
    assert_eq!(deleted, 85);

    let mut alice = Client::open(&tmp.path().join("alice"), b"pass").unwrap();
    let sent = alice.send_text_reporting("bob", "hello").await.unwrap();
    assert!(
        matches!(&sent.error, Some(hush_client::ClientError::Relay(e)) if e.code == hush_proto::relay::ErrorCode::TooManyPrekeys),
        "{:?}",
        sent.error
    );
    assert_eq!(sent.entry.state, DeliveryState::Queued);
    assert_eq!(
        sent.entry.failure, None,
        "a connect refusal blamed on the row"
    );
    let history = alice.history("bob").unwrap();
    assert_eq!(history[0].failure, None);
    assert_eq!(alice.outbox_len().unwrap(), 1);
    relay.shutdown().await;
}

/// Review finding 3: a long-running client (TUI, rpc) that receives nothing still retries a
/// parked row once it comes due, so a mailbox that frees up is noticed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_pumping_client_retries_a_parked_row_when_due() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = relay(&tmp.path().join("relay"), |c| c.mailbox_max_messages = 1).await;
    let mut alice = init(tmp.path(), "alice", &relay).await;
    let mut bob = init(tmp.path(), "bob", &relay).await;
    let mut carol = init(tmp.path(), "carol", &relay).await;
    carol.send_text("bob", "fill").await.unwrap();
    let parked = alice.send_text("bob", "later").await.unwrap();
    assert_eq!(parked.state, DeliveryState::Queued);

    alice.pump(Duration::from_millis(200)).await.unwrap();
    // Bob makes room; alice only pumps, and nothing arrives for her.
    assert_eq!(texts(&recv(&mut bob).await), ["fill"]);
    let deadline =
        tokio::time::Instant::now() + hush_client::client::RETRY_FIRST + Duration::from_secs(5);
    let mut state = DeliveryState::Queued;
    while state == DeliveryState::Queued && tokio::time::Instant::now() < deadline {
        alice.pump(Duration::from_millis(500)).await.unwrap();
        state = alice.history("bob").unwrap()[0].state;
    }
    assert_eq!(
        state,
        DeliveryState::OnRelay,
        "an idle client never retried"
    );
    assert_eq!(texts(&recv(&mut bob).await), ["later"]);
    relay.shutdown().await;
}

/// Review finding 2: receipts waiting in the outbox are bounded across recipients, not only
/// per recipient: three identities with full mailboxes, each writing to the victim, cost
/// at most `RECEIPTS_QUEUED_MAX` rows in all.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn receipts_to_many_full_mailboxes_are_capped_in_all() {
    const MAILBOX: u32 = 45;
    let tmp = tempfile::tempdir().unwrap();
    let relay = relay(&tmp.path().join("relay"), |c| {
        c.mailbox_max_messages = MAILBOX;
        c.send_rate = 10_000.0;
        c.send_burst = 10_000.0;
    })
    .await;
    let mut victim = init(tmp.path(), "victim", &relay).await;
    let mut friend = init(tmp.path(), "friend", &relay).await;
    for m in 0..3 {
        let name = format!("mallory{m}");
        let mut mallory = init(tmp.path(), &name, &relay).await;
        for n in 0..MAILBOX {
            friend.send_text(&name, &format!("fill {n}")).await.unwrap();
        }
        // 90 each, in two mailboxfuls: 270 receipts, fewer than 101 per recipient.
        for batch in 0..2 {
            for n in 0..MAILBOX {
                let entry = mallory
                    .send_text("victim", &format!("{batch}/{n}"))
                    .await
                    .unwrap();
                assert_eq!(entry.state, DeliveryState::OnRelay);
            }
            assert_eq!(texts(&recv(&mut victim).await).len(), MAILBOX as usize);
        }
    }
    let queued = victim.outbox_len().unwrap();
    assert!(
        queued <= hush_client::client::RECEIPTS_QUEUED_MAX,
        "{queued} receipts queued"
    );
    relay.shutdown().await;
}
