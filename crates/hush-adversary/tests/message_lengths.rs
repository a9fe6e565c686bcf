//! What a relay operator learns from envelope sizes: every text of up to 98 bytes is padded to
//! the same 128-byte plaintext, so the stored envelopes of "ok" and of a 98-byte text are the
//! same size, and so is a delivery receipt; only crossing a Padmé bucket changes the size.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use hush_adversary::MaliciousRelay;
use hush_client::Client;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stored_envelopes_of_short_texts_all_have_one_size() {
    let tmp = tempfile::tempdir().unwrap();
    let relay_dir = tmp.path().join("relay");
    let relay = hush_relay::start(hush_relay::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data: relay_dir.clone(),
        ..Default::default()
    })
    .await
    .unwrap();
    let init = |name: &'static str| {
        let dir = tmp.path().join(name);
        let addr = relay.local_addr.to_string();
        let key = relay.public_key;
        async move {
            Client::init(&dir, b"pass", name, &addr, Some(key))
                .await
                .unwrap()
        }
    };
    let mut alice = init("alice").await;
    let mut bob = init("bob").await;
    let mut evil = MaliciousRelay::open(&relay_dir);
    let bob_key = *bob.identity_key().as_bytes();
    let texts = ["ok", &"x".repeat(40), &"y".repeat(98), &"z".repeat(99)];

    // First messages (prekey envelopes, before bob replies).
    for text in texts {
        alice.send_text("bob", text).await.unwrap();
    }
    let first: Vec<usize> = evil
        .mailbox(&bob_key)
        .unwrap()
        .iter()
        .map(|e| e.envelope.len())
        .collect();
    assert_eq!(first.len(), 4);
    assert!(
        first[..3].iter().all(|&l| l == first[0]),
        "short texts leak their length: {first:?}"
    );
    assert!(first[3] > first[0], "99 bytes crosses the first bucket");

    // After a reply: ordinary envelopes.
    bob.receive(Duration::from_millis(300), |_| {})
        .await
        .unwrap();
    bob.send_text("alice", "ack").await.unwrap();
    alice
        .receive(Duration::from_millis(300), |_| {})
        .await
        .unwrap();
    for text in texts {
        alice.send_text("bob", text).await.unwrap();
    }
    let later: Vec<usize> = evil
        .mailbox(&bob_key)
        .unwrap()
        .iter()
        .map(|e| e.envelope.len())
        .collect();
    // Bob's receive acked the first four. Alice's receipt for "ack" comes first, and a receipt
    // is as long as a short text: the relay cannot tell them apart by size.
    assert_eq!(later.len(), 5, "{later:?}");
    assert!(
        later[..4].iter().all(|&l| l == later[0]),
        "short texts or receipts leak their length: {later:?}"
    );
    assert!(
        later[0] < first[0],
        "ordinary envelopes carry no X3DH header"
    );
    assert!(later[4] > later[0]);
    relay.shutdown().await;
}
