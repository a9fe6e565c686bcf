//! `hush recv` delivers every committed message to its consumer at least once: a run killed
//! after committing a message but before printing it leaves it for the next run.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

mod common;
use common::RelayProcess;

const HUSH: &str = env!("CARGO_BIN_EXE_hush");
const PASS: &str = "test passphrase";

fn hush(profile: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(HUSH);
    cmd.arg("--profile")
        .arg(profile)
        .args(args)
        .env("HUSH_PASSPHRASE", PASS)
        .stdin(Stdio::null());
    cmd
}

async fn run(profile: &Path, args: &[&str]) -> Output {
    let mut cmd = hush(profile, args);
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

async fn init(root: &Path, relay: &str, name: &str) -> PathBuf {
    let profile = root.join(name);
    let o = run(&profile, &["init", "--name", name, "--relay", relay]).await;
    assert!(
        o.status.success(),
        "init {name}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    profile
}

/// Whether some thread of `pid` sleeps in a pipe write (its stdout pipe is full).
fn blocked_in_pipe_write(pid: u32) -> bool {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks.flatten().any(|task| {
        std::fs::read_to_string(task.path().join("wchan")).is_ok_and(|w| w.contains("pipe_w"))
    })
}

/// Message ids (with counts) of the complete JSON lines in `out`; a line cut by the kill is
/// not a message the consumer got.
fn message_ids(out: &[u8]) -> HashMap<String, usize> {
    let mut ids = HashMap::new();
    let text = String::from_utf8_lossy(out);
    let complete = match text.rfind('\n') {
        Some(end) => &text[..end],
        None => "",
    };
    for line in complete.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(id) = v["id"].as_str() {
            *ids.entry(id.to_owned()).or_insert(0) += 1;
        }
    }
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recv_killed_between_commit_and_print_shows_the_message_on_the_next_run() {
    let tmp = tempfile::tempdir().unwrap();
    let relay =
        RelayProcess::start(&tmp.path().join("relay"), "127.0.0.1:0".parse().unwrap()).await;
    let addr = relay.addr.to_string();
    let alice = init(tmp.path(), &addr, "alice").await;
    let bob = init(tmp.path(), &addr, "bob").await;

    // Four 30 KB messages: a pipe holds 64 KB, so printing the third blocks.
    let mut sent = Vec::new();
    for i in 0..4 {
        let text = format!("{i} {}", "x".repeat(30_000));
        let o = run(&alice, &["send", "bob", &text]).await;
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let out = String::from_utf8_lossy(&o.stdout).into_owned();
        sent.push(out.trim().strip_prefix("sent ").unwrap().to_owned());
    }

    // A consumer that stops reading: recv commits the third message, then blocks printing it.
    let mut recv = hush(&bob, &["recv", "--json", "--wait", "60"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while !blocked_in_pipe_write(recv.id()) && start.elapsed() < Duration::from_secs(20) {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // Give a kernel without wchan the same chance to reach the blocked print.
    tokio::time::sleep(Duration::from_millis(500)).await;
    recv.kill().unwrap();
    recv.wait().unwrap();
    let mut first = Vec::new();
    recv.stdout.take().unwrap().read_to_end(&mut first).unwrap();
    let first = message_ids(&first);
    assert!(
        first.len() < sent.len(),
        "the killed run printed everything: {first:?}"
    );

    let o = run(&bob, &["recv", "--json"]).await;
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let second = message_ids(&o.stdout);
    for (id, n) in &second {
        assert_eq!(*n, 1, "{id} printed {n} times by one run");
    }
    for id in &sent {
        assert!(
            first.contains_key(id) || second.contains_key(id),
            "message {id} was committed but never printed (first run {first:?}, second {second:?})"
        );
    }
    // Emitted once and flushed: a third run has nothing to repeat.
    let o = run(&bob, &["recv", "--json"]).await;
    assert!(o.status.success());
    assert!(
        message_ids(&o.stdout).is_empty(),
        "{}",
        String::from_utf8_lossy(&o.stdout)
    );
    relay.shutdown().await;
}
