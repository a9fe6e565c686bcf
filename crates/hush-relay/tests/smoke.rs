//! Smoke test: a relay in-process, two clients register, publish, exchange an envelope live
//! and offline, and ack.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::time::Duration;

use hush_proto::relay::{register_message, Reply, Request};
use hush_proto::{IdentityKeyPair, LocalPrekeys};
use rand_core::OsRng;

const T: Duration = Duration::from_secs(5);

async fn client(
    relay: &hush_relay::RunningRelay,
    name: &str,
) -> (IdentityKeyPair, hush_net::Connection) {
    let id = IdentityKeyPair::generate(&mut OsRng);
    let mut conn = hush_net::connect(relay.local_addr, &relay.public_key, &id, T)
        .await
        .unwrap();
    let reply = conn
        .request(&Request::Register {
            name: name.into(),
            signature: id.sign(&register_message(name)),
        })
        .await
        .unwrap();
    assert_eq!(reply, Reply::Registered);
    let mut prekeys = LocalPrekeys::new(&mut OsRng, &id, 1);
    let one_time = prekeys.generate_one_time(&mut OsRng, 5);
    let reply = conn
        .request(&Request::PublishPrekeys {
            signed_prekey: prekeys.current_signed().unwrap(),
            one_time,
        })
        .await
        .unwrap();
    assert_eq!(
        reply,
        Reply::PrekeysStored {
            one_time_remaining: 5
        }
    );
    (id, conn)
}

#[tokio::test]
async fn two_clients_exchange_envelopes_online_and_offline() {
    let dir = tempfile::tempdir().unwrap();
    let config = hush_relay::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data: dir.path().to_owned(),
        ..Default::default()
    };
    let relay = hush_relay::start(config).await.unwrap();
    let (_alice, mut a) = client(&relay, "alice").await;
    let (bob, mut b) = client(&relay, "bob").await;

    let Reply::Bundle(bundle) = a
        .request(&Request::FetchBundle { name: "bob".into() })
        .await
        .unwrap()
    else {
        panic!("expected a bundle")
    };
    assert_eq!(bundle.identity_key, bob.public_key());
    assert!(bundle.one_time_prekey.is_some());

    // Offline: bob is not subscribed yet.
    let reply = a
        .request(&Request::Send {
            recipient: *bob.public_key().as_bytes(),
            envelope: vec![1, 2, 3],
        })
        .await
        .unwrap();
    assert!(matches!(reply, Reply::Stored { .. }));
    assert_eq!(
        b.request(&Request::Subscribe).await.unwrap(),
        Reply::Subscribed
    );
    let d = b
        .next_delivery(T)
        .await
        .unwrap()
        .expect("pending message delivered");
    assert_eq!(d.envelope, vec![1, 2, 3]);

    // Online: pushed live.
    a.request(&Request::Send {
        recipient: *bob.public_key().as_bytes(),
        envelope: vec![1, 9],
    })
    .await
    .unwrap();
    let d2 = b
        .next_delivery(T)
        .await
        .unwrap()
        .expect("live message delivered");
    assert_eq!(d2.envelope, vec![1, 9]);
    let reply = b
        .request(&Request::Ack {
            ids: vec![d.id, d2.id],
        })
        .await
        .unwrap();
    assert_eq!(reply, Reply::Acked { removed: 2 });
    relay.shutdown().await;
}

#[tokio::test]
async fn relay_key_can_be_fetched_for_trust_on_first_use() {
    let dir = tempfile::tempdir().unwrap();
    let config = hush_relay::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data: dir.path().to_owned(),
        ..Default::default()
    };
    let relay = hush_relay::start(config).await.unwrap();
    let stream = tokio::net::TcpStream::connect(relay.local_addr)
        .await
        .unwrap();
    let key = hush_net::noise::fetch_relay_key(stream).await.unwrap();
    assert_eq!(key, relay.public_key);
    // Pinning the wrong key fails the handshake.
    let id = IdentityKeyPair::generate(&mut OsRng);
    let wrong = [7u8; 32];
    assert!(hush_net::connect(relay.local_addr, &wrong, &id, T)
        .await
        .is_err());
    relay.shutdown().await;
}

/// Many identities together cannot drain bob's one-time prekeys faster than his per-user
/// budget; past it they (and everyone) still get his bundle, with the signed prekey only.
#[tokio::test]
async fn one_users_one_time_prekeys_cannot_be_drained_by_many_connections() {
    let dir = tempfile::tempdir().unwrap();
    let config = hush_relay::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data: dir.path().to_owned(),
        per_user_fetch_rate: 0.001,
        per_user_fetch_burst: 2.0,
        ..Default::default()
    };
    let relay = hush_relay::start(config).await.unwrap();
    let (_bob, _b) = client(&relay, "bob").await;
    let mut outcomes = Vec::new();
    // Three different identities, one fetch each: the per-connection limit never triggers.
    for name in ["m1", "m2", "m3"] {
        let (_id, mut conn) = client(&relay, name).await;
        outcomes.push(
            conn.request(&Request::FetchBundle { name: "bob".into() })
                .await,
        );
    }
    let popped: Vec<bool> = outcomes
        .into_iter()
        .map(|o| match o {
            Ok(Reply::Bundle(b)) => b.one_time_prekey.is_some(),
            other => panic!("bundle not served: {other:?}"),
        })
        .collect();
    assert_eq!(popped, [true, true, false]);
    relay.shutdown().await;
}

/// Shutdown finishes promptly while clients reconnect the moment the relay drops them (as the
/// CLI and RPC clients do). A connection accepted just as shutdown was signalled used to
/// subscribe to a broadcast after the signal, stay open until its idle timeout and hold
/// shutdown forever (seen once as a hang of the rpc relay-restart test). That race is too narrow
/// to hit on demand here; the fix holds by construction (a `watch` is seen by late subscribers,
/// and connections still open after the grace period are aborted), and this test guards the
/// end result: 32 reconnecting clients, ten rounds, shutdown well inside its 10 s grace period.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_finishes_while_clients_keep_reconnecting() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;

    for round in 0..10 {
        let dir = tempfile::tempdir().unwrap();
        let relay = hush_relay::start(hush_relay::Config {
            listen: "127.0.0.1:0".parse().unwrap(),
            data: dir.path().to_owned(),
            ..Default::default()
        })
        .await
        .unwrap();
        let (addr, key) = (relay.local_addr, relay.public_key);
        let done = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for _ in 0..32 {
            let done = Arc::clone(&done);
            tasks.push(tokio::spawn(async move {
                let id = IdentityKeyPair::generate(&mut OsRng);
                while !done.load(Ordering::Relaxed) {
                    // Hold each connection until the relay closes it, then reconnect at once.
                    if let Ok(mut conn) = hush_net::connect(addr, &key, &id, T).await {
                        while !done.load(Ordering::Relaxed)
                            && conn.request(&Request::Ping).await.is_ok()
                        {
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    } else {
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }));
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        let started = std::time::Instant::now();
        let finished = tokio::time::timeout(Duration::from_secs(30), relay.shutdown()).await;
        done.store(true, Ordering::Relaxed);
        for task in tasks {
            task.abort();
        }
        assert!(finished.is_ok(), "round {round}: shutdown hung");
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "round {round}: shutdown took {:?}: a connection missed the signal",
            started.elapsed()
        );
    }
}
