//! Several real `hush-relay` processes sharing one PostgreSQL database (and one static key):
//! mail sent through one node reaches a subscriber on another, woken by the NATS doorbell
//! within a second, or without NATS by the periodic mailbox re-check; concurrent senders on
//! both nodes never make a subscriber miss or repeat a message; `/healthz` and `/readyz`
//! answer; a malformed payload on the bell subject changes nothing; `free-name` works on the
//! shared store.
//!
//! Needs PostgreSQL and NATS (see hush-testsvc); without them each test prints one `skipped:`
//! line and passes, unless `HUSH_REQUIRE_SERVICES=1`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use hush_net::NetError;
use hush_proto::relay::{ErrorCode, Reply, Request};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A GET on the metrics listener: (status code, body).
async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut stream = tokio::time::timeout(T, TcpStream::connect(addr))
        .await
        .unwrap()
        .unwrap();
    stream
        .write_all(format!("GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = Vec::new();
    tokio::time::timeout(T, stream.read_to_end(&mut response))
        .await
        .unwrap()
        .unwrap();
    let text = String::from_utf8(response).unwrap();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The TOML of one node: the shared store, and NATS if given.
fn node_config(store: &str, nats: Option<(&str, &str)>, recheck_ms: u64) -> String {
    let mut text = format!(
        "store = \"{store}\"\nmailbox_recheck_ms = {recheck_ms}\nsend_rate = 100000.0\nsend_burst = 100000.0\n"
    );
    if let Some((url, prefix)) = nats {
        text.push_str(&format!("nats = \"{url}\"\nnats_prefix = \"{prefix}\"\n"));
    }
    text
}

/// Two nodes on one store and one static key: A starts first, its key file is copied into B's
/// data directory before B starts.
async fn two_nodes(a_dir: &Path, b_dir: &Path, config: &str) -> (Relay, Relay) {
    let a = Relay::start_full(a_dir, Some(config), true, &[]).await;
    for file in ["relay.key", "relay.pub"] {
        std::fs::copy(a_dir.join(file), b_dir.join(file)).unwrap();
    }
    let b = Relay::start_full(b_dir, Some(config), true, &[]).await;
    assert_eq!(a.key, b.key, "both nodes must serve the same static key");
    (a, b)
}

/// Wait until both nodes report a NATS connection.
async fn nats_up(nodes: &[&Relay]) {
    for node in nodes {
        node.wait_metrics(T, "hush_nats_connected 1", |m| {
            m.get("hush_nats_connected") == 1
        })
        .await;
    }
}

/// `/healthz` 200 `ok`, `/readyz` 200 with `store=up nats=<nats>`.
async fn healthy(node: &Relay, nats: &str) {
    let addr = node.metrics.unwrap();
    let (status, body) = http_get(addr, "/healthz").await;
    assert_eq!((status, body.trim()), (200, "ok"));
    let (status, body) = http_get(addr, "/readyz").await;
    assert_eq!(status, 200, "readyz: {body}");
    assert_eq!(body.trim(), format!("store=up nats={nats}"));
}

/// Send one message from `from` (on one node) to `to` (subscribed on another) and return how
/// long it took from the send's reply to the delivery.
async fn cross(from: &mut User, to: &mut User, tag: &str, within: Duration) -> Duration {
    let id = send(&mut from.conn, to.addr(), envelope(tag.as_bytes())).await;
    let stored = Instant::now();
    let d = take(&mut to.conn, 1, within).await;
    let took = stored.elapsed();
    assert_eq!(d[0].id, id);
    assert_eq!(d[0].envelope, envelope(tag.as_bytes()));
    assert_eq!(ack(&mut to.conn, vec![id]).await, 1);
    took
}

fn percentile(sorted: &[Duration], p: usize) -> Duration {
    sorted[(sorted.len() * p / 100).min(sorted.len() - 1)]
}

/// The doorbell: a subscriber on node B gets mail sent through node A within a second, though
/// B re-reads mailboxes only every minute; senders on both nodes at once lose and repeat
/// nothing; a malformed bell disturbs neither node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_sent_via_one_node_reaches_a_subscriber_on_another_by_doorbell() {
    let Some(db) = hush_testsvc::postgres() else {
        return;
    };
    let Some(nats) = hush_testsvc::nats() else {
        return;
    };
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = node_config(db.url(), Some((nats.url(), nats.subject_prefix())), 60_000);
    let (a, b) = two_nodes(a_dir.path(), b_dir.path(), &config).await;
    nats_up(&[&a, &b]).await;
    healthy(&a, "up").await;
    healthy(&b, "up").await;

    let mut alice = User::new(&a, "alice").await;
    let carol = User::new(&b, "carol").await;
    let mut bob = User::new(&b, "bob").await;
    subscribe(&mut bob.conn).await;

    // The first bell may race B's subscription reaching the NATS server: allow it longer.
    cross(&mut alice, &mut bob, "warm-up", T).await;
    let mut latencies = Vec::new();
    for i in 0..20 {
        let took = cross(
            &mut alice,
            &mut bob,
            &format!("a to b {i}"),
            Duration::from_secs(1),
        )
        .await;
        latencies.push(took);
    }
    latencies.sort();
    eprintln!(
        "cross-node delivery by doorbell: p50 {:?}, p90 {:?}, max {:?} ({} messages)",
        percentile(&latencies, 50),
        percentile(&latencies, 90),
        latencies[latencies.len() - 1],
        latencies.len()
    );
    let mb = b.scrape().await;
    let ma = a.scrape().await;
    assert!(ma.get("hush_doorbells_published_total") >= 21, "{}", ma.0);
    assert!(mb.get("hush_doorbells_received_total") >= 21, "{}", mb.0);
    assert!(mb.get("hush_doorbell_wakeups_total") >= 21, "{}", mb.0);

    // Senders on both nodes at once: bob (on B) gets every message once, in id order.
    const EACH: u32 = 60;
    let bob_addr = bob.addr();
    let (mut alice_conn, mut carol_conn) = (alice.conn, carol.conn);
    let from_a = tokio::spawn(async move {
        let mut ids = Vec::new();
        for i in 0..EACH {
            ids.push(
                send(
                    &mut alice_conn,
                    bob_addr,
                    envelope(format!("a{i}").as_bytes()),
                )
                .await,
            );
        }
        (alice_conn, ids)
    });
    let from_b = tokio::spawn(async move {
        let mut ids = Vec::new();
        for i in 0..EACH {
            ids.push(
                send(
                    &mut carol_conn,
                    bob_addr,
                    envelope(format!("c{i}").as_bytes()),
                )
                .await,
            );
        }
        (carol_conn, ids)
    });
    let got = take(&mut bob.conn, 2 * EACH as usize, T).await;
    let (alice_conn, a_ids) = from_a.await.unwrap();
    let (_carol_conn, c_ids) = from_b.await.unwrap();
    alice.conn = alice_conn;
    let extra = drain(&mut bob.conn, Duration::from_millis(500)).await;
    assert!(extra.is_empty(), "delivered twice: {extra:?}");
    let ids: Vec<u64> = got.iter().map(|d| d.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "out of order: {ids:?}");
    let expected: HashSet<u64> = a_ids.iter().chain(&c_ids).copied().collect();
    assert_eq!(ids.iter().copied().collect::<HashSet<u64>>(), expected);
    assert_eq!(ack(&mut bob.conn, ids).await, 2 * EACH);

    // Hostile bells: wrong lengths, a random id with a ragged tail, a huge one. Each node counts
    // them as malformed and goes on.
    let client = async_nats::connect(nats.url()).await.unwrap();
    let subject = format!("{}.bell", nats.subject_prefix());
    let bad: Vec<Vec<u8>> = vec![
        vec![],
        vec![1; 15],
        vec![2; 17],
        vec![3; 16 + 31],
        vec![4; 16 + 33],
        vec![5; 200_001],
    ];
    for payload in &bad {
        client
            .publish(subject.clone(), payload.clone().into())
            .await
            .unwrap();
    }
    // A well-formed bell from a stranger naming bob: a harmless extra mailbox read.
    let mut stranger = vec![9u8; 16];
    stranger.extend_from_slice(&bob.addr());
    client.publish(subject, stranger.into()).await.unwrap();
    client.flush().await.unwrap();
    for node in [&a, &b] {
        node.wait_metrics(T, "6 malformed bells", |m| {
            m.get("hush_doorbells_malformed_total") == bad.len() as u64
        })
        .await;
    }
    let nothing = drain(&mut bob.conn, Duration::from_millis(300)).await;
    assert!(nothing.is_empty(), "a bell alone delivered {nothing:?}");
    let took = cross(
        &mut alice,
        &mut bob,
        "after bad bells",
        Duration::from_secs(1),
    )
    .await;
    eprintln!("after malformed bells: delivered in {took:?}");
    healthy(&a, "up").await;
    healthy(&b, "up").await;
    drop((a, b));
    drop(db);
}

/// Without NATS, a subscriber on node B still gets mail sent via node A, within
/// `mailbox_recheck_ms` plus a margin; `/readyz` says `nats=off`; `free-name` frees a name in
/// the shared database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_nats_the_mailbox_recheck_delivers_across_nodes() {
    const RECHECK_MS: u64 = 300;
    let Some(db) = hush_testsvc::postgres() else {
        return;
    };
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = node_config(db.url(), None, RECHECK_MS);
    let (a, b) = two_nodes(a_dir.path(), b_dir.path(), &config).await;
    healthy(&a, "off").await;
    healthy(&b, "off").await;

    let mut alice = User::new(&a, "alice").await;
    let mut bob = User::new(&b, "bob").await;
    subscribe(&mut bob.conn).await;
    let within = Duration::from_millis(RECHECK_MS + 1500);
    let mut latencies = Vec::new();
    for i in 0..5 {
        latencies.push(cross(&mut alice, &mut bob, &format!("recheck {i}"), within).await);
    }
    latencies.sort();
    eprintln!(
        "cross-node delivery by {RECHECK_MS} ms re-check: p50 {:?}, max {:?}",
        percentile(&latencies, 50),
        latencies[latencies.len() - 1]
    );
    let m = b.scrape().await;
    assert!(m.get("hush_mailbox_rechecks_total") >= 1, "{}", m.0);
    assert_eq!(m.get("hush_nats_connected"), 0);

    // free-name on the shared store, while both nodes run.
    let out = std::process::Command::new(RELAY_BIN)
        .args(["--store", db.url(), "free-name", "alice"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "free-name failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains(db.url()), "the URL was printed: {stderr}");
    let again = std::process::Command::new(RELAY_BIN)
        .args(["--store", db.url(), "free-name", "alice"])
        .output()
        .unwrap();
    assert_eq!(
        again.status.code(),
        Some(1),
        "a freed name is not registered"
    );
    drop((a, b));
    drop(db);
}

/// PostgreSQL stops under a running relay: sends are refused with `Internal` "storage
/// unavailable; retry later", `/readyz` says 503 `store=down` while `/healthz` stays 200, the
/// process keeps running; once PostgreSQL is back the relay serves again without a restart and
/// the subscriber's delivery task (which kept retrying its mailbox) delivers on the same
/// connection.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_survives_postgresql_going_away_and_serves_again_when_it_is_back() {
    let Some(mut pg) = tokio::task::block_in_place(hush_testsvc::PrivatePostgres::start) else {
        return;
    };
    let db = tokio::task::block_in_place(|| pg.create_db());
    let dir = tempfile::tempdir().unwrap();
    let config = node_config(db.url(), None, 300);
    let mut relay = Relay::start_full(dir.path(), Some(&config), true, &[]).await;
    let pid = relay.pid();
    let metrics = relay.metrics.unwrap();
    let mut alice = User::new(&relay, "alice").await;
    let mut bob = User::new(&relay, "bob").await;
    subscribe(&mut bob.conn).await;
    cross(&mut alice, &mut bob, "before the outage", T).await;

    tokio::task::block_in_place(|| pg.stop());
    let refused = alice
        .conn
        .request(&Request::Send {
            recipient: bob.addr(),
            envelope: envelope(b"during the outage"),
        })
        .await;
    match refused {
        Err(NetError::Relay(e)) => {
            assert_eq!(e.code, ErrorCode::Internal);
            assert_eq!(e.message, "storage unavailable; retry later");
        }
        other => panic!("a send without a store was answered {other:?}"),
    }
    let (status, body) = http_get(metrics, "/readyz").await;
    assert_eq!(
        (status, body.trim()),
        (503, "store=down nats=off"),
        "readyz during the outage"
    );
    assert_eq!(http_get(metrics, "/healthz").await.0, 200);
    // The subscriber's re-checks hit the dead store too, and are counted.
    relay
        .wait_metrics(T, "store errors", |m| m.get("hush_store_errors_total") >= 3)
        .await;
    assert!(
        relay.is_running(),
        "the relay exited when PostgreSQL went away"
    );
    tokio::task::block_in_place(|| pg.restart());

    // Serving again, same process, same connections: the first writes may meet connections
    // that died with the server and are replaced on the next use.
    let deadline = Instant::now() + T;
    let id = loop {
        match alice
            .conn
            .request(&Request::Send {
                recipient: bob.addr(),
                envelope: envelope(b"after the outage"),
            })
            .await
        {
            Ok(Reply::Stored { id }) => break id,
            Err(NetError::Relay(e)) if e.code == ErrorCode::Internal => {
                assert!(
                    Instant::now() < deadline,
                    "no write succeeded after the outage"
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            other => panic!("unexpected reply after the outage: {other:?}"),
        }
    };
    let d = take(&mut bob.conn, 1, T).await;
    assert_eq!(
        (d[0].id, d[0].envelope.clone()),
        (id, envelope(b"after the outage"))
    );
    let deadline = Instant::now() + T;
    loop {
        let (status, body) = http_get(metrics, "/readyz").await;
        if status == 200 {
            assert_eq!(body.trim(), "store=up nats=off");
            break;
        }
        assert!(Instant::now() < deadline, "never ready again: {body}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(relay.is_running());
    assert_eq!(relay.pid(), pid, "the same process serves again");
    drop(relay);
    tokio::task::block_in_place(move || drop(db));
}

/// NATS restarts under two nodes: meanwhile mail still arrives by mailbox re-check and failed
/// publishes are counted; `/readyz` stays 200 (`nats=down`: the store is what readiness needs);
/// afterwards both nodes reconnect by themselves and bells wake subscribers again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn doorbells_resume_after_nats_restarts() {
    const RECHECK_MS: u64 = 1000;
    let Some(db) = hush_testsvc::postgres() else {
        return;
    };
    let Some(mut nats) = tokio::task::block_in_place(hush_testsvc::NatsServer::start) else {
        return;
    };
    let (a_dir, b_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let config = node_config(db.url(), Some((nats.url(), "hush_restart")), RECHECK_MS);
    let (a, b) = two_nodes(a_dir.path(), b_dir.path(), &config).await;
    nats_up(&[&a, &b]).await;
    let mut alice = User::new(&a, "alice").await;
    let mut bob = User::new(&b, "bob").await;
    subscribe(&mut bob.conn).await;
    cross(&mut alice, &mut bob, "warm-up", T).await;

    tokio::task::block_in_place(|| nats.stop());
    for node in [&a, &b] {
        node.wait_metrics(T, "hush_nats_connected 0", |m| {
            m.get("hush_nats_connected") == 0
        })
        .await;
        let (status, body) = http_get(node.metrics.unwrap(), "/readyz").await;
        assert_eq!((status, body.trim()), (200, "store=up nats=down"));
    }
    let within = Duration::from_millis(RECHECK_MS + 1500);
    let took = cross(&mut alice, &mut bob, "while NATS is down", within).await;
    eprintln!("NATS down: delivered by re-check in {took:?}");
    let m = a.scrape().await;
    assert!(m.get("hush_doorbell_publish_errors_total") >= 1, "{}", m.0);

    tokio::task::block_in_place(|| nats.restart());
    nats_up(&[&a, &b]).await;
    // The first bell may race the re-subscription reaching the server.
    cross(&mut alice, &mut bob, "NATS back", T).await;
    let before = b.scrape().await.get("hush_doorbell_wakeups_total");
    let mut latencies = Vec::new();
    for i in 0..5 {
        latencies.push(
            cross(
                &mut alice,
                &mut bob,
                &format!("after restart {i}"),
                Duration::from_secs(1),
            )
            .await,
        );
    }
    let after = b.scrape().await.get("hush_doorbell_wakeups_total");
    assert!(
        after >= before + 5,
        "bells did not wake bob: {before} -> {after}"
    );
    latencies.sort();
    eprintln!(
        "after the NATS restart: max {:?} over 5 messages",
        latencies[latencies.len() - 1]
    );
    drop((a, b));
    drop(db);
}

/// NATS is down when the relay starts: it starts anyway (ready: `store=up nats=down`), keeps
/// trying in the background, and connects once NATS is up; its bells are then published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_starts_while_nats_is_down_and_connects_when_it_comes_up() {
    let Some(mut nats) = tokio::task::block_in_place(hush_testsvc::NatsServer::start) else {
        return;
    };
    tokio::task::block_in_place(|| nats.stop());
    let dir = tempfile::tempdir().unwrap();
    let config = format!("nats = \"{}\"\nnats_prefix = \"hush_late\"\n", nats.url());
    let relay = Relay::start_full(dir.path(), Some(&config), true, &[]).await;
    let addr = relay.metrics.unwrap();
    let (status, body) = http_get(addr, "/readyz").await;
    assert_eq!((status, body.trim()), (200, "store=up nats=down"));

    tokio::task::block_in_place(|| nats.restart());
    relay
        .wait_metrics(T, "hush_nats_connected 1", |m| {
            m.get("hush_nats_connected") == 1
        })
        .await;
    let (status, body) = http_get(addr, "/readyz").await;
    assert_eq!((status, body.trim()), (200, "store=up nats=up"));
    let mut alice = User::new(&relay, "alice").await;
    let to_self = alice.addr();
    send(&mut alice.conn, to_self, envelope(b"rings")).await;
    relay
        .wait_metrics(T, "a published bell", |m| {
            m.get("hush_doorbells_published_total") >= 1
        })
        .await;
}
