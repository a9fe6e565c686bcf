//! A profile holding several addresses of one relay deployment, against real relays over
//! loopback: a dead address is passed over, the address that answered is tried first from then
//! on (also by the next run), a relay with another key is never used, and a profile made
//! before failover (one `relay` string) still opens.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use hush_client::{Client, ClientError, Event};

async fn relay(dir: &Path) -> hush_relay::RunningRelay {
    hush_relay::start(hush_relay::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data: dir.to_owned(),
        ..Default::default()
    })
    .await
    .unwrap()
}

/// An address where nothing listens: connecting is refused at once.
fn dead_address() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap()
}

/// A node that is down behind its address: it accepts TCP and hangs up at once. Counts the
/// connections it was offered, so a test can tell whether a client still tries it.
async fn hanging_up_node() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (addr, accepted)
}

async fn texts_received(client: &mut Client) -> Vec<String> {
    let mut texts = Vec::new();
    client
        .receive(Duration::from_millis(300), |e| {
            if let Event::Message(m) = e {
                texts.push(m.text.clone());
            }
        })
        .await
        .unwrap();
    texts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_send_and_receive_go_through_the_next_address_when_the_first_is_dead() {
    let tmp = tempfile::tempdir().unwrap();
    let live = relay(&tmp.path().join("relay")).await;
    let list = format!("{},{}", dead_address(), live.local_addr);

    let mut alice = Client::init(&tmp.path().join("alice"), b"pass", "alice", &list, None)
        .await
        .unwrap();
    let mut bob = Client::init(&tmp.path().join("bob"), b"pass", "bob", &list, None)
        .await
        .unwrap();
    assert_eq!(alice.relay(), live.local_addr.to_string());
    assert_eq!(
        alice.relays(),
        list.split(',').map(str::to_owned).collect::<Vec<_>>(),
        "the list keeps the user's order"
    );
    assert_eq!(alice.relay_key().unwrap(), live.public_key);

    alice.add_contact("bob").await.unwrap();
    alice
        .send_text("bob", "through the live node")
        .await
        .unwrap();
    assert_eq!(texts_received(&mut bob).await, ["through the live node"]);
    live.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_address_that_answered_is_tried_first_from_then_on_also_after_reopening() {
    let tmp = tempfile::tempdir().unwrap();
    let live = relay(&tmp.path().join("relay")).await;
    let (down, offered) = hanging_up_node().await;
    let list = format!("{down},{}", live.local_addr);

    let alice_dir = tmp.path().join("alice");
    let mut alice = Client::init(&alice_dir, b"pass", "alice", &list, None)
        .await
        .unwrap();
    let mut bob = Client::init(
        &tmp.path().join("bob"),
        b"pass",
        "bob",
        &live.local_addr.to_string(),
        None,
    )
    .await
    .unwrap();
    // init asked the first address for the key, then went on to the live one.
    assert_eq!(offered.load(Ordering::SeqCst), 1);

    alice.add_contact("bob").await.unwrap();
    alice.send_text("bob", "one").await.unwrap();
    drop(alice);
    // A new run (a new process, as each `hush` command is) starts at the live node too.
    let mut alice = Client::open(&alice_dir, b"pass").unwrap();
    assert_eq!(alice.relay(), live.local_addr.to_string());
    alice.send_text("bob", "two").await.unwrap();
    assert_eq!(
        offered.load(Ordering::SeqCst),
        1,
        "the dead node was tried again although the live one answered last"
    );
    assert_eq!(texts_received(&mut bob).await, ["one", "two"]);
    live.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_with_another_key_is_never_used_and_refused_as_a_key_change() {
    let tmp = tempfile::tempdir().unwrap();
    let genuine = relay(&tmp.path().join("genuine")).await;
    let impostor = relay(&tmp.path().join("impostor")).await;
    let genuine_addr = genuine.local_addr.to_string();
    let mut alice = Client::init(
        &tmp.path().join("alice"),
        b"pass",
        "alice",
        &genuine_addr,
        None,
    )
    .await
    .unwrap();
    let _bob = Client::init(&tmp.path().join("bob"), b"pass", "bob", &genuine_addr, None)
        .await
        .unwrap();
    alice.add_contact("bob").await.unwrap();

    // A dead node, then a relay with its own key: nothing is sent, the message stays queued.
    alice
        .set_relays(&format!("{},{}", dead_address(), impostor.local_addr))
        .unwrap();
    let sent = alice.send_text("bob", "for bob only").await;
    assert!(
        matches!(sent, Err(ClientError::RelayKeyChanged)),
        "expected RelayKeyChanged, got {sent:?}"
    );
    assert_eq!(alice.outbox_len().unwrap(), 1);
    assert_ne!(alice.relay(), impostor.local_addr.to_string());

    // With the genuine node after it, the impostor is passed over like a dead node (a node
    // hanging up mid-handshake looks the same) and the message goes to the genuine one.
    alice
        .set_relays(&format!("{},{genuine_addr}", impostor.local_addr))
        .unwrap();
    let flushed = alice.flush_outbox().await;
    assert!(flushed.error.is_none(), "{:?}", flushed.error);
    assert_eq!(alice.outbox_len().unwrap(), 0);
    assert_eq!(alice.relay(), genuine_addr);
    genuine.shutdown().await;
    impostor.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_profile_from_before_failover_with_one_relay_opens_and_works() {
    let tmp = tempfile::tempdir().unwrap();
    let live = relay(&tmp.path().join("relay")).await;
    let addr = live.local_addr.to_string();
    let alice_dir = tmp.path().join("alice");
    let alice = Client::init(&alice_dir, b"pass", "alice", &addr, None)
        .await
        .unwrap();
    let mut bob = Client::init(&tmp.path().join("bob"), b"pass", "bob", &addr, None)
        .await
        .unwrap();
    drop(alice);

    // Rewrite the profile's config as builds before failover stored it: no `relays`.
    {
        let mut store = hush_client::store::Store::open(&alice_dir, b"pass").unwrap();
        let tx = store.tx().unwrap();
        let mut config: serde_json::Value = tx.get("config", "self").unwrap().unwrap();
        assert!(config["relays"].is_array(), "{config}");
        config.as_object_mut().unwrap().remove("relays");
        assert_eq!(
            config.as_object().unwrap().keys().collect::<Vec<_>>(),
            ["name", "relay", "relay_key"]
        );
        tx.put("config", "self", &config).unwrap();
        tx.commit().unwrap();
    }

    let mut alice = Client::open(&alice_dir, b"pass").unwrap();
    assert_eq!(alice.relays(), std::slice::from_ref(&addr));
    alice.add_contact("bob").await.unwrap();
    alice.send_text("bob", "still here").await.unwrap();
    assert_eq!(texts_received(&mut bob).await, ["still here"]);
    live.shutdown().await;
}
