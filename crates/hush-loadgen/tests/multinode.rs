//! `hush-loadgen --nodes 3` end to end: the real binaries, three relay nodes sharing a fresh
//! PostgreSQL database and a NATS server, client 2k and 2k+1 on different nodes so every
//! message crosses nodes; then the same with the last node SIGKILLed mid-run. Nothing the
//! relay acked is lost, nothing is delivered again after its ack was confirmed.
//!
//! Needs PostgreSQL and NATS (`HUSH_TEST_POSTGRES`, `HUSH_TEST_NATS`); without them each test
//! prints one `skipped:` line and passes, unless `HUSH_REQUIRE_SERVICES=1`. Small on purpose
//! (60 clients, a few seconds): CI has two cores.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use serde_json::Value;

const LOADGEN: &str = env!("CARGO_BIN_EXE_hush-loadgen");

/// `hush-relay` next to `hush-loadgen`, built first if missing (as hush's own tests do).
fn relay_binary() -> PathBuf {
    let binary =
        Path::new(LOADGEN).with_file_name(format!("hush-relay{}", std::env::consts::EXE_SUFFIX));
    if !binary.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
        let mut build = Command::new(cargo);
        build.args(["build", "-p", "hush-relay", "--bin", "hush-relay"]);
        if binary.parent().and_then(Path::file_name) == Some("release".as_ref()) {
            build.arg("--release");
        }
        let status = build.status().expect("run cargo build -p hush-relay");
        assert!(status.success(), "cargo build -p hush-relay failed");
    }
    binary
}

/// Run `hush-loadgen --nodes 3` on a fresh database with `online_args`; `None` when the
/// services are absent (skipped).
fn run_three_nodes(online_args: &[&str]) -> Option<Value> {
    let db = hush_testsvc::postgres()?;
    let nats = hush_testsvc::nats()?;
    let started = Instant::now();
    let out = Command::new(LOADGEN)
        .arg("--relay-bin")
        .arg(relay_binary())
        .args(["--threads", "2", "--nodes", "3"])
        .args(["--store", db.url(), "--nats", nats.url()])
        .arg("--relay-set")
        .arg(format!("nats_prefix={}", nats.subject_prefix()))
        .arg("online")
        .args(["--clients", "60", "--warmup", "0.5", "--rate", "600"])
        .args(["--ack-interval-ms", "20", "--drain", "15"])
        .args(online_args)
        .output()
        .expect("run hush-loadgen");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "hush-loadgen failed:\n{stdout}\n{stderr}"
    );
    println!("{stdout}");
    eprintln!("hush-loadgen took {:.1} s", started.elapsed().as_secs_f64());
    let last = stdout.lines().last().expect("a JSON line");
    let v: Value = serde_json::from_str(last).expect("the last line is JSON");
    // The URL's password (none here) never reaches the output; the database is dropped when
    // `db` goes out of scope, after the relays have stopped.
    drop(db);
    Some(v)
}

fn n(v: &Value, key: &str) -> u64 {
    v[key]
        .as_u64()
        .unwrap_or_else(|| panic!("{key} missing in {v}"))
}

/// What must hold in every run: the protocol's guarantees and a shape that shows three
/// nodes did the work.
fn check_common(v: &Value) {
    let relay = &v["relay"];
    assert_eq!(v["scenario"], "online");
    assert_eq!(v["nodes"], 3);
    assert_eq!(v["store"], "postgres");
    assert_eq!(relay["cross_node"], true);
    assert_eq!(n(relay, "lost_acked"), 0, "{relay}");
    assert_eq!(n(relay, "losses"), 0, "{relay}");
    assert_eq!(n(relay, "redelivered_after_ack"), 0, "{relay}");
    assert_eq!(n(relay, "unexplained_duplicates"), 0, "{relay}");
    assert_eq!(n(relay, "unconfirmed_deliveries"), 0, "{relay}");
    assert_eq!(n(relay, "misrouted"), 0, "{relay}");
    assert_eq!(n(relay, "malformed"), 0, "{relay}");
    assert_eq!(relay["drained"], true, "{relay}");
    // Loose: CI machines are slow; what matters is that messages flowed.
    assert!(n(relay, "stored") >= 200, "stored {}", n(relay, "stored"));
    assert_eq!(n(relay, "delivered_unique"), n(relay, "stored"), "{relay}");
    let nodes = relay["nodes"].as_array().expect("per-node figures");
    assert_eq!(nodes.len(), 3);
    for node in nodes {
        assert_eq!(n(node, "clients"), 20, "{node}");
        assert!(node["cpu_cores"].as_f64().is_some(), "{node}");
        assert!(node["memory"]["sampled_peak_rss_mb"].as_f64().unwrap() > 0.0);
    }
    assert!(relay["relay_cpu_cores"].as_f64().unwrap() > 0.0);
    assert!(relay["latency"]["samples"].as_u64().unwrap() > 0);
}

#[test]
fn three_nodes_on_one_store_deliver_every_message_across_nodes() {
    let Some(v) = run_three_nodes(&["--duration", "3"]) else {
        return;
    };
    check_common(&v);
    let relay = &v["relay"];
    // No node died: nothing to re-send, nothing delivered twice.
    assert_eq!(n(relay, "duplicates"), 0, "{relay}");
    assert_eq!(n(relay, "reconnects"), 0, "{relay}");
    assert_eq!(n(relay, "resends"), 0, "{relay}");
    assert_eq!(relay["graceful_exit"], true, "{relay}");
}

#[test]
fn killing_a_node_mid_run_loses_nothing_acked() {
    let Some(v) = run_three_nodes(&["--duration", "4", "--kill-node", "1.5"]) else {
        return;
    };
    check_common(&v);
    let relay = &v["relay"];
    let nodes = relay["nodes"].as_array().unwrap();
    assert_eq!(nodes[2]["killed"], true);
    assert_eq!(nodes[0]["killed"], false);
    assert_eq!(nodes[1]["killed"], false);
    assert_eq!(relay["killed_node"], 2);
    let at = relay["killed_at_s"].as_f64().expect("killed_at_s");
    assert!((1.4..3.0).contains(&at), "killed at {at} s");
    // Every client of node 2 got back on elsewhere, subscribed again and kept receiving.
    assert_eq!(n(relay, "reconnect_failures"), 0, "{relay}");
    assert_eq!(n(relay, "reconnects"), 20, "{relay}");
    assert_eq!(n(relay, "resubscribed"), 20, "{relay}");
    assert!(n(relay, "delivered_after_kill") > 0, "{relay}");
    assert!(n(relay, "delivered_after_reconnect") > 0, "{relay}");
    // Every duplicate is explained: a re-sent copy, or a redelivery of an unacked id.
    assert_eq!(
        n(relay, "duplicates"),
        n(relay, "resent_duplicates") + n(relay, "redelivered_unacked"),
        "{relay}"
    );
}
