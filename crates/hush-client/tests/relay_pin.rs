//! The relay's static key is pinned in the profile at `init` (trust on first use). A different
//! relay answering at the same address later — a stolen DNS name, a hijacked port, an operator
//! who lost the key — is refused before anything is sent to it: the message stays queued and
//! the impostor stores nothing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::time::Duration;

use hush_client::{Client, ClientError};

async fn relay_at(dir: &Path, listen: std::net::SocketAddr) -> hush_relay::RunningRelay {
    hush_relay::start(hush_relay::Config {
        listen,
        data: dir.to_owned(),
        ..Default::default()
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_with_another_key_at_the_pinned_address_is_refused_and_gets_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let genuine = relay_at(&tmp.path().join("genuine"), "127.0.0.1:0".parse().unwrap()).await;
    let addr = genuine.local_addr;
    let mut alice = Client::init(
        &tmp.path().join("alice"),
        b"pass",
        "alice",
        &addr.to_string(),
        None,
    )
    .await
    .unwrap();
    let bob = Client::init(
        &tmp.path().join("bob"),
        b"pass",
        "bob",
        &addr.to_string(),
        None,
    )
    .await
    .unwrap();
    alice.add_contact("bob").await.unwrap();
    drop(alice);
    drop(bob);
    genuine.shutdown().await;

    // Another relay (its own fresh key) takes over the address.
    let impostor = relay_at(&tmp.path().join("impostor"), addr).await;
    let mut alice = Client::open(&tmp.path().join("alice"), b"pass").unwrap();
    let sent = alice.send_text("bob", "for bob only").await;
    assert!(
        matches!(sent, Err(ClientError::RelayKeyChanged)),
        "expected RelayKeyChanged, got {sent:?}"
    );
    assert_eq!(alice.outbox_len().unwrap(), 1, "the message stays queued");
    let received = alice.receive(Duration::from_millis(200), |_| {}).await;
    assert!(matches!(received, Err(ClientError::RelayKeyChanged)));
    // Bob is refused the same way and hears nothing from the impostor.
    let mut bob = Client::open(&tmp.path().join("bob"), b"pass").unwrap();
    let mut events = 0;
    let bob_received = bob
        .receive(Duration::from_millis(200), |_| events += 1)
        .await;
    assert!(matches!(bob_received, Err(ClientError::RelayKeyChanged)));
    assert_eq!(events, 0);
    impostor.shutdown().await;
}
