//! The `group` scenario end to end: the real `hush-loadgen` binary against the real
//! `hush-relay` binary, a small group for one second: every stored group message reaches
//! every other member exactly once.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::Command;

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

fn run_group(senders: &str) -> serde_json::Value {
    let out = Command::new(LOADGEN)
        .arg("--relay-bin")
        .arg(relay_binary())
        .args([
            "--threads",
            "2",
            "group",
            "--members",
            "8",
            "--senders",
            senders,
        ])
        .args(["--duration", "1", "--warmup", "0.2", "--rate", "200"])
        .args(["--ack-interval-ms", "20", "--drain", "5"])
        .output()
        .expect("run hush-loadgen");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "hush-loadgen failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let last = stdout.lines().last().expect("a JSON line");
    serde_json::from_str(last).expect("the last line is JSON")
}

fn check(v: &serde_json::Value) {
    let relay = &v["relay"];
    let n = |k: &str| {
        relay[k]
            .as_u64()
            .unwrap_or_else(|| panic!("{k} in {relay}"))
    };
    assert_eq!(v["scenario"], "group");
    assert_eq!(n("fanout"), 7);
    // Loose: CI machines may be slow; what matters is that nothing is lost or doubled.
    assert!(n("stored") >= 20, "stored {}", n("stored"));
    assert_eq!(n("stored"), n("sent"));
    assert_eq!(n("losses"), 0, "{relay}");
    assert_eq!(n("duplicates"), 0, "{relay}");
    assert_eq!(n("unconfirmed_deliveries"), 0, "{relay}");
    assert_eq!(n("malformed"), 0, "{relay}");
    assert_eq!(n("delivered_unique"), n("stored") * 7);
    assert_eq!(n("expected_deliveries"), n("stored") * 7);
    // Every member but the creator got the creating commit's Welcome and acked it.
    assert_eq!(n("setup_deliveries_acked"), 7);
    assert_eq!(relay["drained"], true);
    assert!(relay["delivered_member_msgs_per_s"].as_f64().unwrap() > 0.0);
    assert!(relay["latency"]["samples"].as_u64().unwrap() > 0);
}

#[test]
fn one_sender_reaches_every_member_once() {
    check(&run_group("one"));
}

#[test]
fn every_member_sending_reaches_every_other_member_once() {
    check(&run_group("all"));
}
