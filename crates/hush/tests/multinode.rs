//! Several relay nodes on one PostgreSQL database and one NATS server, with real `hush`
//! clients on different nodes: mail crosses nodes both ways (1:1 and groups), and a PostgreSQL
//! restart loses nothing, needs no relay restart, and the client sends what the relay could
//! not take by itself. (The relay's side of NATS and PostgreSQL outages is tested in
//! crates/hush-relay/tests/multinode.rs.)
//!
//! Needs PostgreSQL and NATS (`HUSH_TEST_POSTGRES`, `HUSH_TEST_NATS`; see crates/hush-testsvc);
//! without them each test prints one `skipped:` line, and with `HUSH_REQUIRE_SERVICES=1` (set
//! by `.ci/run`) it fails instead.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use tokio::process::Command;

mod common;
use common::rpc_proc::{RpcProc, PASS};
use common::RelayProcess;

const HUSH: &str = env!("CARGO_BIN_EXE_hush");

/// One node's config: the shared store, the doorbell (if any) and how often a connected
/// client's mailbox is re-read without one.
fn node_config(store: &str, nats: Option<(&str, &str)>, recheck_ms: u64) -> String {
    let mut toml = format!("store = \"{store}\"\nmailbox_recheck_ms = {recheck_ms}\n");
    if let Some((url, prefix)) = nats {
        toml.push_str(&format!("nats = \"{url}\"\nnats_prefix = \"{prefix}\"\n"));
    }
    toml
}

/// Start `count` nodes on `root/node<i>` sharing the first node's static key, as an operator
/// copies `relay.key` to every node before its first start.
async fn start_nodes(root: &Path, count: usize, toml: &str) -> Vec<RelayProcess> {
    let mut nodes = Vec::new();
    for i in 0..count {
        let data = root.join(format!("node{i}"));
        if i > 0 {
            std::fs::create_dir_all(&data).unwrap();
            std::fs::copy(root.join("node0").join("relay.key"), data.join("relay.key")).unwrap();
        }
        let node =
            RelayProcess::start_with_config(&data, "127.0.0.1:0".parse().unwrap(), Some(toml))
                .await;
        if let Some(first) = nodes.first() {
            let first: &RelayProcess = first;
            assert_eq!(node.key_line, first.key_line, "every node presents one key");
        }
        nodes.push(node);
    }
    nodes
}

async fn hush(profile: &Path, args: &[&str]) -> String {
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new(HUSH)
            .arg("--profile")
            .arg(profile)
            .args(args)
            .env("HUSH_PASSPHRASE", PASS)
            .stdin(Stdio::null())
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("hush timed out")
    .unwrap();
    assert!(
        output.status.success(),
        "hush {args:?}: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

async fn init(root: &Path, name: &str, node: SocketAddr) -> PathBuf {
    let profile = root.join(name);
    hush(
        &profile,
        &["init", "--name", name, "--relay", &node.to_string()],
    )
    .await;
    profile
}

/// The texts of the messages `recv --json` shows.
async fn recv_texts(profile: &Path) -> Vec<String> {
    hush(profile, &["recv", "--json", "--wait", "1"])
        .await
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["text"].as_str().map(str::to_owned))
        .collect()
}

/// A `hush rpc` that has subscribed and is connected to its relay.
async fn connected_rpc(profile: &Path, name: &str) -> RpcProc {
    let mut rpc = RpcProc::spawn(profile, name);
    rpc.result(1, "subscribe", json!({})).await;
    let status = rpc.result(2, "status", json!({})).await;
    if status["connected"] != true {
        loop {
            let status = rpc.notification("status").await;
            if status["connected"] == true {
                break;
            }
        }
    }
    rpc
}

/// The next incoming message notification's text, and how long it took to come.
async fn next_message(rpc: &mut RpcProc) -> (String, Duration) {
    let started = Instant::now();
    let message = rpc.notification("message").await;
    (
        message["text"].as_str().unwrap().to_owned(),
        started.elapsed(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_carry_direct_and_group_mail_both_ways() {
    let Some(db) = hush_testsvc::postgres() else {
        return;
    };
    let Some(nats) = hush_testsvc::nats() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    // A re-check far beyond the waits below: only the doorbell can deliver this fast.
    let prefix = nats.subject_prefix();
    let toml = node_config(db.url(), Some((nats.url(), prefix)), 60_000);
    let nodes = start_nodes(tmp.path(), 3, &toml).await;
    let alice = init(tmp.path(), "alice", nodes[0].addr).await;
    let bob = init(tmp.path(), "bob", nodes[1].addr).await;
    let carol = init(tmp.path(), "carol", nodes[2].addr).await;
    // Everyone knows everyone (contacts are added through whichever node each one uses).
    for (profile, others) in [
        (&alice, ["bob", "carol"]),
        (&bob, ["alice", "carol"]),
        (&carol, ["alice", "bob"]),
    ] {
        for other in others {
            hush(profile, &["add", other]).await;
        }
    }

    // Bob stays connected to node 1; alice writes through node 0.
    let mut bob_rpc = connected_rpc(&bob, "bob").await;
    hush(&alice, &["send", "bob", "hello from node 0"]).await;
    let (text, took) = next_message(&mut bob_rpc).await;
    assert_eq!(text, "hello from node 0");
    assert!(
        took < Duration::from_secs(5),
        "cross-node delivery took {took:?}"
    );
    // And back: bob answers through node 1, alice reads on node 0.
    let sent = bob_rpc
        .result(3, "send", json!({"to": "alice", "text": "hi from node 1"}))
        .await;
    assert_eq!(sent["state"], "on relay", "{sent}");
    assert_eq!(recv_texts(&alice).await, ["hi from node 1"]);

    // A group spanning the three nodes: the commit's compare-and-set, the Welcome fan-out and
    // every message cross nodes.
    hush(&alice, &["group", "create", "team", "bob", "carol"]).await;
    let joined = bob_rpc.notification("group").await;
    assert_eq!(joined["change"], "joined", "{joined}");
    hush(&carol, &["recv", "--wait", "1"]).await;
    hush(&carol, &["send", "#team", "carol on node 2"]).await;
    let (text, took) = next_message(&mut bob_rpc).await;
    assert_eq!(text, "carol on node 2");
    assert!(
        took < Duration::from_secs(5),
        "group delivery took {took:?}"
    );
    bob_rpc
        .result(4, "send", json!({"to": "#team", "text": "bob on node 1"}))
        .await;
    assert_eq!(
        recv_texts(&alice).await,
        ["carol on node 2", "bob on node 1"]
    );
    assert_eq!(recv_texts(&carol).await, ["bob on node 1"]);
    bob_rpc.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_restart_loses_nothing_and_needs_no_relay_restart() {
    let Some(mut pg) = hush_testsvc::PrivatePostgres::start() else {
        return;
    };
    let Some(nats) = hush_testsvc::nats() else {
        return;
    };
    let tmp = tempfile::tempdir().unwrap();
    let prefix = nats.subject_prefix();
    let db = pg.create_db();
    let toml = node_config(db.url(), Some((nats.url(), prefix)), 2_000);
    let nodes = start_nodes(tmp.path(), 2, &toml).await;
    let alice = init(tmp.path(), "alice", nodes[0].addr).await;
    let bob = init(tmp.path(), "bob", nodes[1].addr).await;
    let mut alice_rpc = connected_rpc(&alice, "alice").await;
    let mut bob_rpc = connected_rpc(&bob, "bob").await;

    alice_rpc
        .result(10, "send", json!({"to": "bob", "text": "before"}))
        .await;
    assert_eq!(next_message(&mut bob_rpc).await.0, "before");

    // PostgreSQL stops: the relay cannot store, says so, and acknowledges nothing.
    pg.stop();
    let sent = alice_rpc
        .result(11, "send", json!({"to": "bob", "text": "during"}))
        .await;
    assert_eq!(sent["state"], "queued", "{sent}");
    assert!(sent["failure"].is_string(), "{sent}");

    // It comes back: the same relay processes store again, and alice's client retries the
    // queued message by itself.
    pg.restart();
    let (text, _) = next_message(&mut bob_rpc).await;
    assert_eq!(text, "during");
    alice_rpc
        .result(12, "send", json!({"to": "bob", "text": "after"}))
        .await;
    assert_eq!(next_message(&mut bob_rpc).await.0, "after");
    // Nothing bob already had came again.
    assert!(
        bob_rpc
            .notifications
            .iter()
            .all(|n| n["method"] != "message"),
        "{:?}",
        bob_rpc.notifications
    );
    alice_rpc.finish().await;
    bob_rpc.finish().await;
    drop(nodes);
}
