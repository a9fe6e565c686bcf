//! `hush` with several relay addresses, as real processes against the real `hush-relay`:
//! `init --relay A,B` and every later command pass over a node that is down, the address that
//! answered is tried first by the next command, `relays set` changes the list, and a relay with
//! another key is refused, not used.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

mod common;
use common::RelayProcess;

const HUSH: &str = env!("CARGO_BIN_EXE_hush");
const PASS: &str = "test passphrase";

async fn hush(profile: &Path, args: &[&str]) -> Output {
    let mut cmd = Command::new(HUSH);
    cmd.arg("--profile")
        .arg(profile)
        .args(args)
        .env("HUSH_PASSPHRASE", PASS)
        .stdin(Stdio::null());
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: &Output, what: &str) -> String {
    assert!(
        o.status.success(),
        "{what}: {}\n{}{}",
        o.status,
        stdout(o),
        stderr(o)
    );
    stdout(o)
}

/// A relay node that is down behind its address: TCP is accepted and closed at once. Counts
/// the connections offered, so the test can see whether `hush` still tries it.
async fn node_that_is_down() -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let offered = Arc::new(AtomicUsize::new(0));
    let count = offered.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            count.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (addr, offered)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commands_pass_over_a_down_node_and_start_with_the_one_that_answered() {
    let tmp = tempfile::tempdir().unwrap();
    let relay =
        RelayProcess::start(&tmp.path().join("relay"), "127.0.0.1:0".parse().unwrap()).await;
    let (down, offered) = node_that_is_down().await;
    let live = relay.addr.to_string();
    let list = format!("{down},{live}");
    let alice = tmp.path().join("alice");
    let bob = tmp.path().join("bob");

    let out = ok(
        &hush(&alice, &["init", "--name", "alice", "--relay", &list]).await,
        "init alice",
    );
    assert!(
        out.contains(&format!("registered alice on {live}")),
        "{out}"
    );
    assert!(out.contains(&relay.key_line), "{out}");
    assert_eq!(
        offered.load(Ordering::SeqCst),
        1,
        "init tries the first first"
    );
    ok(
        &hush(&bob, &["init", "--name", "bob", "--relay", &live]).await,
        "init bob",
    );

    let out = ok(&hush(&alice, &["whoami"]).await, "whoami");
    assert!(out.contains(&format!("\nrelays {list}\n")), "{out}");
    assert!(out.contains(&format!("relay {live}\n")), "{out}");
    let out = ok(&hush(&alice, &["relays"]).await, "relays");
    assert_eq!(out, format!("{down}\n{live}\t(tried first)\n"));

    // Each command is a new process: it starts at the live node, never at the down one.
    let out = ok(
        &hush(&alice, &["send", "bob", "via the live node"]).await,
        "send",
    );
    assert!(out.starts_with("sent "), "{out}");
    let out = ok(&hush(&bob, &["recv", "--json"]).await, "recv");
    assert!(out.contains("via the live node"), "{out}");
    ok(&hush(&alice, &["recv"]).await, "recv alice");
    assert_eq!(
        offered.load(Ordering::SeqCst),
        1,
        "a later command went to the down node first"
    );

    // `relays set`: the new first is tried first; the list is kept as given.
    let reversed = format!("{live},{down}");
    let out = ok(&hush(&alice, &["relays", "set", &reversed]).await, "set");
    assert_eq!(out, format!("{live}\t(tried first)\n{down}\n"));
    ok(&hush(&alice, &["send", "bob", "after set"]).await, "send");
    assert_eq!(offered.load(Ordering::SeqCst), 1);

    for bad in ["", "nohost", &format!("{live},{live}")] {
        let o = hush(&alice, &["relays", "set", bad]).await;
        assert_eq!(
            o.status.code(),
            Some(1),
            "relays set {bad:?}: {}",
            stdout(&o)
        );
        assert!(stderr(&o).contains("relay address"), "{}", stderr(&o));
    }
    let out = ok(&hush(&alice, &["relays"]).await, "relays");
    assert_eq!(
        out,
        format!("{live}\t(tried first)\n{down}\n"),
        "a refused set changed it"
    );
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_with_another_key_in_the_list_is_refused_and_the_message_waits() {
    let tmp = tempfile::tempdir().unwrap();
    let relay =
        RelayProcess::start(&tmp.path().join("relay"), "127.0.0.1:0".parse().unwrap()).await;
    let impostor =
        RelayProcess::start(&tmp.path().join("impostor"), "127.0.0.1:0".parse().unwrap()).await;
    let (down, _) = node_that_is_down().await;
    let live = relay.addr.to_string();
    let alice = tmp.path().join("alice");
    let bob = tmp.path().join("bob");
    ok(
        &hush(&alice, &["init", "--name", "alice", "--relay", &live]).await,
        "init alice",
    );
    ok(
        &hush(&bob, &["init", "--name", "bob", "--relay", &live]).await,
        "init bob",
    );
    ok(&hush(&alice, &["add", "bob"]).await, "add");

    let list = format!("{down},{}", impostor.addr);
    ok(&hush(&alice, &["relays", "set", &list]).await, "set");
    let o = hush(&alice, &["send", "bob", "for bob only"]).await;
    assert_eq!(o.status.code(), Some(3), "queued, not sent: {}", stdout(&o));
    assert!(stdout(&o).contains("key has changed"), "{}", stdout(&o));
    let o = hush(&alice, &["recv"]).await;
    assert!(!o.status.success());
    assert!(stderr(&o).contains("key has changed"), "{}", stderr(&o));

    // Back on the genuine node, the queued message goes out.
    ok(&hush(&alice, &["relays", "set", &live]).await, "set");
    ok(&hush(&alice, &["recv"]).await, "recv flushes the outbox");
    let out = ok(&hush(&bob, &["recv", "--json"]).await, "recv bob");
    assert!(out.contains("for bob only"), "{out}");
    impostor.shutdown().await;
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_with_a_malformed_relay_list_creates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let profile = tmp.path().join("alice");
    for bad in ["127.0.0.1:1,", "127.0.0.1", "127.0.0.1:1,127.0.0.1:1"] {
        let o = hush(&profile, &["init", "--name", "alice", "--relay", bad]).await;
        assert_eq!(o.status.code(), Some(1), "init --relay {bad:?}");
        assert!(stderr(&o).contains("relay address"), "{}", stderr(&o));
        assert!(!profile.exists(), "init --relay {bad:?} left a profile");
    }
}
