//! A network attacker between alice and the relay (real sockets, in-process relay): every
//! frame-level attack after the handshake is rejected by the transport, the client reconnects,
//! and no message is lost or duplicated; nothing crossing loopback carries a plaintext or a
//! secret.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::time::Duration;

use hush_adversary::{Action, Count, Direction, NetworkAttacker};
use hush_client::{Client, DeliveryState};

const WAIT: Duration = Duration::from_millis(300);

async fn relay(dir: &Path) -> hush_relay::RunningRelay {
    hush_relay::start(hush_relay::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data: dir.to_owned(),
        ..Default::default()
    })
    .await
    .unwrap()
}

/// Incoming texts from `contact`, in history order.
fn incoming(client: &mut Client, contact: &str) -> Vec<String> {
    client
        .history(contact)
        .unwrap()
        .into_iter()
        .filter(|m| !m.outgoing)
        .map(|m| m.text)
        .collect()
}

fn outgoing(client: &mut Client, contact: &str) -> Vec<String> {
    client
        .history(contact)
        .unwrap()
        .into_iter()
        .filter(|m| m.outgoing)
        .map(|m| m.text)
        .collect()
}

/// Receive (retrying after network errors) until `done` holds or the attempts run out.
/// Returns how many calls failed.
async fn receive_until(client: &mut Client, mut done: impl FnMut(&mut Client) -> bool) -> usize {
    let mut failures = 0;
    for _ in 0..40 {
        if client.receive(WAIT, |_| {}).await.is_err() {
            failures += 1;
        }
        if done(client) {
            return failures;
        }
    }
    panic!("condition not reached after 40 receive calls ({failures} failed)");
}

/// Alice (through the attacker) and bob (direct) exchange messages while `action` hits one
/// frame in `direction` during alice's receive and one during her sends. Afterwards every
/// message is in the other's history exactly once and alice's are all delivered.
async fn scenario(direction: Direction, action: Action) {
    let tmp = tempfile::tempdir().unwrap();
    let relay = relay(&tmp.path().join("relay")).await;
    let (attacker, proxy) = NetworkAttacker::start(relay.local_addr).await.unwrap();
    let mut alice = Client::init(
        &tmp.path().join("alice"),
        b"alice pass",
        "alice",
        &proxy.to_string(),
        Some(relay.public_key),
    )
    .await
    .unwrap();
    let mut bob = Client::init(
        &tmp.path().join("bob"),
        b"bob pass",
        "bob",
        &relay.local_addr.to_string(),
        Some(relay.public_key),
    )
    .await
    .unwrap();
    // An established session first.
    alice.send_text("bob", "m0").await.unwrap();
    receive_until(&mut bob, |b| incoming(b, "alice") == ["m0"]).await;
    for i in 1..=3 {
        assert_eq!(
            bob.send_text("alice", &format!("b{i}"))
                .await
                .unwrap()
                .state,
            DeliveryState::OnRelay
        );
    }
    let connections_before = attacker.connections();

    // Attack alice's receive: the Subscribe reply and the pending deliveries travel
    // back to back, so a reorder really swaps two frames.
    attacker.set(direction, action, Count::Next(1));
    let mut failures = usize::from(alice.receive(WAIT, |_| {}).await.is_err());
    // Bob (not behind the attacker) and the relay are unaffected.
    assert_eq!(
        bob.send_text("alice", "b4").await.unwrap().state,
        DeliveryState::OnRelay
    );
    // Attack alice's sends.
    attacker.set(direction, action, Count::Next(1));
    let mut queued = 0;
    for i in 1..=4 {
        match alice.send_text("bob", &format!("m{i}")).await {
            Ok(entry) if entry.state == DeliveryState::Queued => queued += 1,
            Ok(_) => {}
            Err(_) => failures += 1,
        }
    }
    assert!(
        attacker.applied(direction) >= 1,
        "{action:?} on {direction:?} was never applied"
    );

    // The attack stops; everything recovers on later calls.
    attacker.pass_all();
    for _ in 0..5 {
        if alice.outbox_len().unwrap() == 0 {
            break;
        }
        let _ = alice.flush_outbox().await;
    }
    assert_eq!(
        alice.outbox_len().unwrap(),
        0,
        "alice's outbox did not drain"
    );
    let sent = outgoing(&mut alice, "bob");
    assert_eq!(sent, ["m0", "m1", "m2", "m3", "m4"]);
    receive_until(&mut bob, |b| incoming(b, "alice").len() >= sent.len()).await;
    failures += receive_until(&mut alice, |a| {
        let got = incoming(a, "bob");
        got.len() >= 4
            && a.history("bob")
                .unwrap()
                .iter()
                .filter(|m| m.outgoing)
                .all(|m| m.state == DeliveryState::Delivered)
    })
    .await;
    // Settle: anything duplicated by the attack is delivered (and discarded) by now.
    bob.receive(WAIT, |_| {}).await.unwrap();
    alice.receive(WAIT, |_| {}).await.unwrap();

    let mut at_bob = incoming(&mut bob, "alice");
    at_bob.sort();
    assert_eq!(
        at_bob, sent,
        "bob must see each of alice's messages exactly once"
    );
    let mut at_alice = incoming(&mut alice, "bob");
    at_alice.sort();
    assert_eq!(at_alice, ["b1", "b2", "b3", "b4"]);

    // The client never pipelines requests, so a client-to-relay reorder finds no second
    // frame to swap with and degrades to a short delay.
    let swapped =
        direction == Direction::RelayToClient || !matches!(action, Action::Reorder { .. });
    let rejected = !matches!(action, Action::Delay(_) | Action::Pass) && swapped;
    if rejected {
        // The tampered connection was torn down and alice opened a new one.
        assert!(
            attacker.connections() > connections_before,
            "{action:?} on {direction:?}: no reconnection"
        );
        assert!(
            failures + queued > 0,
            "{action:?} on {direction:?}: alice saw no error"
        );
    } else if matches!(action, Action::Delay(_)) {
        assert_eq!(failures + queued, 0, "a delay is not an error");
    }
    drop(attacker);
    relay.shutdown().await;
}

const FLIP: Action = Action::FlipBit { bit: 77 };
const TRUNCATE: Action = Action::Truncate { keep: 10 };
const DELAY: Action = Action::Delay(Duration::from_millis(700));
const REORDER: Action = Action::Reorder {
    max_hold: Duration::from_millis(500),
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_bit_client_to_relay() {
    scenario(Direction::ClientToRelay, FLIP).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flipped_bit_relay_to_client() {
    scenario(Direction::RelayToClient, FLIP).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_frame_client_to_relay() {
    scenario(Direction::ClientToRelay, TRUNCATE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_frame_relay_to_client() {
    scenario(Direction::RelayToClient, TRUNCATE).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_frame_client_to_relay() {
    scenario(Direction::ClientToRelay, Action::Replay).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_frame_relay_to_client() {
    scenario(Direction::RelayToClient, Action::Replay).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_frame_client_to_relay() {
    scenario(Direction::ClientToRelay, Action::Drop).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropped_frame_relay_to_client() {
    scenario(Direction::RelayToClient, Action::Drop).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_frame_client_to_relay() {
    scenario(Direction::ClientToRelay, DELAY).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delayed_frame_relay_to_client() {
    scenario(Direction::RelayToClient, DELAY).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reordered_frames_client_to_relay() {
    scenario(Direction::ClientToRelay, REORDER).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reordered_frames_relay_to_client() {
    scenario(Direction::RelayToClient, REORDER).await;
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn everything_crossing_loopback_contains_no_plaintext_or_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let relay_dir = tmp.path().join("relay");
    let relay = relay(&relay_dir).await;
    let (attacker, proxy) = NetworkAttacker::start(relay.local_addr).await.unwrap();
    let alice_pass: &[u8] = b"correct horse battery staple (alice)";
    let bob_pass: &[u8] = b"tr0ub4dor&3 bob's passphrase";
    // Both pin the relay key on first use, through the attacker.
    let mut alice = Client::init(
        &tmp.path().join("alice"),
        alice_pass,
        "alice",
        &proxy.to_string(),
        None,
    )
    .await
    .unwrap();
    let mut bob = Client::init(
        &tmp.path().join("bob"),
        bob_pass,
        "bob",
        &proxy.to_string(),
        None,
    )
    .await
    .unwrap();
    let plaintexts = [
        "Meet me at the old library at nine",
        "The launch code is 0451-ALPHA-SECRET",
        "Bring the blue folder, not the red one",
        "Confirmed: blue folder, nine o'clock",
    ];
    for (i, text) in plaintexts.iter().enumerate() {
        if i % 2 == 0 {
            alice.send_text("bob", text).await.unwrap();
            receive_until(&mut bob, |b| {
                incoming(b, "alice").contains(&text.to_string())
            })
            .await;
        } else {
            bob.send_text("alice", text).await.unwrap();
            receive_until(&mut alice, |a| {
                incoming(a, "bob").contains(&text.to_string())
            })
            .await;
        }
    }
    // Receipts flow back both ways.
    receive_until(&mut alice, |a| {
        a.history("bob")
            .unwrap()
            .iter()
            .filter(|m| m.outgoing)
            .all(|m| m.state == DeliveryState::Delivered)
    })
    .await;
    receive_until(&mut bob, |b| {
        b.history("alice")
            .unwrap()
            .iter()
            .filter(|m| m.outgoing)
            .all(|m| m.state == DeliveryState::Delivered)
    })
    .await;
    let relay_secret = std::fs::read(relay_dir.join("relay.key")).unwrap();
    assert_eq!(relay_secret.len(), 32);
    let relay_public = relay.public_key;
    drop(alice);
    drop(bob);
    relay.shutdown().await;

    let recorded = attacker.recorded();
    let transcripts = attacker.transcripts();
    assert!(
        transcripts.len() >= 2,
        "both clients went through the attacker"
    );
    assert!(
        recorded.len() > 1000,
        "suspiciously little traffic: {}",
        recorded.len()
    );
    for text in plaintexts {
        assert!(
            !contains(&recorded, text.as_bytes()),
            "plaintext on the wire: {text}"
        );
        // Not even a distinctive fragment.
        assert!(!contains(&recorded, &text.as_bytes()[..12]));
    }
    for pass in [alice_pass, bob_pass] {
        assert!(!contains(&recorded, pass), "a passphrase is on the wire");
    }
    assert!(
        !contains(&recorded, &relay_secret),
        "the relay's static secret is on the wire"
    );

    // Self-check: the scanner finds what is there. The relay's public key really crosses
    // loopback (the trust-on-first-use answer), and a planted needle is found anywhere.
    assert!(contains(&recorded, &relay_public));
    let mut planted = recorded.clone();
    let middle = planted.len() / 2;
    planted.splice(middle..middle, relay_secret.iter().copied());
    assert!(contains(&planted, &relay_secret));
    let mut planted = recorded;
    planted.splice(middle..middle, plaintexts[1].bytes());
    assert!(contains(&planted, plaintexts[1].as_bytes()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_reply_while_connecting_does_not_hang_the_client() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = relay(&tmp.path().join("relay")).await;
    let (attacker, proxy) = NetworkAttacker::start(relay.local_addr).await.unwrap();
    let alice = Client::init(
        &tmp.path().join("alice"),
        b"pass",
        "alice",
        &proxy.to_string(),
        Some(relay.public_key),
    )
    .await
    .unwrap();
    drop(alice);
    let mut alice = Client::open(&tmp.path().join("alice"), b"pass").unwrap();
    // On the next connection: Welcome passes, the reply to the prekey check is dropped.
    attacker.set(Direction::RelayToClient, Action::Drop, Count::EveryKth(2));
    let first = tokio::time::timeout(Duration::from_secs(40), alice.receive(WAIT, |_| {})).await;
    assert!(
        matches!(first, Ok(Err(_))),
        "the client hung or ignored the loss"
    );
    attacker.pass_all();
    alice.receive(WAIT, |_| {}).await.unwrap();
    drop(attacker);
    relay.shutdown().await;
}

/// Alice's `init` through a network attacker that cuts the Register reply (the second
/// relay-to-client frame, after the Welcome); the attacker passes everything afterwards.
struct LostRegister {
    tmp: tempfile::TempDir,
    relay: hush_relay::RunningRelay,
    attacker: NetworkAttacker,
    proxy: std::net::SocketAddr,
    profile: std::path::PathBuf,
    lost: Result<Client, hush_client::ClientError>,
}

async fn init_with_lost_register_reply() -> LostRegister {
    let tmp = tempfile::tempdir().unwrap();
    let relay = relay(&tmp.path().join("relay")).await;
    let (attacker, proxy) = NetworkAttacker::start(relay.local_addr).await.unwrap();
    let profile = tmp.path().join("alice");
    attacker.set(
        Direction::RelayToClient,
        Action::Truncate { keep: 0 },
        Count::EveryKth(2),
    );
    let lost = Client::init(
        &profile,
        b"pass",
        "alice",
        &proxy.to_string(),
        Some(relay.public_key),
    )
    .await;
    attacker.pass_all();
    LostRegister {
        tmp,
        relay,
        attacker,
        proxy,
        profile,
        lost,
    }
}

/// The relay commits alice's Register but the reply never reaches her (the attacker cuts the
/// connection in the middle of it: after the Welcome, the second relay-to-client frame).
/// `init` must keep the identity the name is now bound to, and running it again with the same
/// profile finishes the registration with that identity: alice is reachable afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_init_whose_register_reply_is_lost_is_finished_by_retrying_with_the_same_identity() {
    let LostRegister {
        tmp,
        relay,
        attacker,
        proxy,
        profile,
        lost,
    } = init_with_lost_register_reply().await;
    let Err(e) = lost else {
        panic!("init succeeded without a Register reply")
    };
    assert!(e.to_string().contains("not confirmed"), "{e}");
    // The relay did commit: the name is bound, and nobody else can take it.
    let mut bob = Client::init(
        &tmp.path().join("bob"),
        b"bob pass",
        "bob",
        &relay.local_addr.to_string(),
        Some(relay.public_key),
    )
    .await
    .unwrap();
    let squatter = Client::init(
        &tmp.path().join("squatter"),
        b"pass",
        "alice",
        &relay.local_addr.to_string(),
        Some(relay.public_key),
    )
    .await;
    assert!(
        matches!(squatter, Err(ref e) if e.to_string().contains("name is taken")),
        "the Register was not committed, so this test proves nothing: {:?}",
        squatter.err()
    );

    let mut alice = Client::init(
        &profile,
        b"pass",
        "alice",
        &proxy.to_string(),
        Some(relay.public_key),
    )
    .await
    .expect("retrying init with the same profile finishes the registration");
    bob.add_contact("alice").await.unwrap();
    bob.send_text("alice", "welcome").await.unwrap();
    receive_until(&mut alice, |a| incoming(a, "bob") == ["welcome"]).await;
    drop(attacker);
    relay.shutdown().await;
}

/// The same lost Register reply, but the user runs another command instead of `init`: the
/// first connection finishes the registration before publishing anything, and the profile
/// then works as if `init` had succeeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_register_reply_is_finished_by_the_next_command_that_connects() {
    let LostRegister {
        tmp,
        relay,
        attacker,
        proxy,
        profile,
        lost,
    } = init_with_lost_register_reply().await;
    assert!(lost.is_err(), "init succeeded without a Register reply");

    let mut alice = Client::open(&profile, b"pass").unwrap();
    alice.receive(WAIT, |_| {}).await.unwrap();
    let mut bob = Client::init(
        &tmp.path().join("bob"),
        b"bob pass",
        "bob",
        &relay.local_addr.to_string(),
        Some(relay.public_key),
    )
    .await
    .unwrap();
    bob.add_contact("alice").await.unwrap();
    bob.send_text("alice", "welcome").await.unwrap();
    receive_until(&mut alice, |a| incoming(a, "bob") == ["welcome"]).await;
    drop(alice);
    // Finished: a later init on the profile is refused as "already exists".
    let again = Client::init(
        &profile,
        b"pass",
        "alice",
        &proxy.to_string(),
        Some(relay.public_key),
    )
    .await;
    assert!(
        matches!(again, Err(ref e) if e.to_string().contains("already exists")),
        "{:?}",
        again.err()
    );
    drop(attacker);
    relay.shutdown().await;
}
