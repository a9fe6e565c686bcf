//! End-to-end tests of the `hush` binary: real client processes against the real `hush-relay`
//! binary over loopback, with SIGKILLs, wrong passphrases, locked profiles and key changes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

mod common;
use common::RelayProcess;

const HUSH: &str = env!("CARGO_BIN_EXE_hush");
const PASS: &str = "test passphrase";

struct Net {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    relay: String,
    relay_dir: PathBuf,
}

async fn net() -> (Net, RelayProcess) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_owned();
    let relay_dir = root.join("relay");
    let relay = RelayProcess::start(&relay_dir, "127.0.0.1:0".parse().unwrap()).await;
    let addr = relay.addr.to_string();
    (
        Net {
            _tmp: tmp,
            root,
            relay: addr,
            relay_dir,
        },
        relay,
    )
}

fn hush(profile: &Path, pass: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(HUSH);
    cmd.arg("--profile")
        .arg(profile)
        .args(args)
        .env("HUSH_PASSPHRASE", pass)
        .stdin(Stdio::null());
    cmd
}

async fn run(profile: &Path, args: &[&str]) -> Output {
    run_with(profile, PASS, args).await
}

async fn run_with(profile: &Path, pass: &str, args: &[&str]) -> Output {
    let mut cmd = hush(profile, pass, args);
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

async fn init(net: &Net, name: &str) -> PathBuf {
    let profile = net.root.join(name);
    let o = run(&profile, &["init", "--name", name, "--relay", &net.relay]).await;
    assert!(o.status.success(), "init {name}: {}", stderr(&o));
    profile
}

/// Texts in the JSON history with `contact`, counted.
async fn history_counts(profile: &Path, contact: &str) -> HashMap<String, usize> {
    let o = run(profile, &["history", contact, "--json"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let mut counts = HashMap::new();
    for line in stdout(&o).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        *counts
            .entry(v["text"].as_str().unwrap().to_owned())
            .or_insert(0) += 1;
    }
    counts
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offline_delivery_json_output_and_verification() {
    let (net, relay) = net().await;
    let alice = init(&net, "alice").await;
    let bob = init(&net, "bob").await;
    let o = run(&alice, &["send", "bob", "hello while you sleep"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(stdout(&o).starts_with("sent "));

    let o = run(&bob, &["recv", "--json"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let lines: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    let m = &lines[0];
    assert_eq!(m["from"], "alice");
    assert_eq!(m["text"], "hello while you sleep");
    assert_eq!(m["verified"], false);
    for field in ["id", "sent_at", "received_at"] {
        assert!(!m[field].is_null(), "{field} missing");
    }

    // Both sides print the same 60 digits; --confirm marks the contact verified.
    let a = run(&alice, &["verify", "bob"]).await;
    let b = run(&bob, &["verify", "alice"]).await;
    let digits = |o: &Output| -> String {
        stdout(o)
            .lines()
            .skip(1)
            .take(3)
            .collect::<String>()
            .replace(' ', "")
    };
    assert_eq!(digits(&a).len(), 60);
    assert_eq!(digits(&a), digits(&b));
    // Both name the session's profile: new sessions are hush-v2.
    for o in [&a, &b] {
        assert!(stdout(o).contains("session: hush-v2"), "{}", stdout(o));
    }
    assert!(run(&alice, &["verify", "bob", "--confirm"])
        .await
        .status
        .success());
    let o = run(&alice, &["contacts", "--json"]).await;
    let c: serde_json::Value = serde_json::from_str(stdout(&o).lines().next().unwrap()).unwrap();
    assert_eq!(c["name"], "bob");
    assert_eq!(c["verified"], true);
    assert_eq!(c["session"], "hush-v2");
    assert_eq!(c["required"], "hush-v2");
    let o = run(&alice, &["contacts"]).await;
    assert!(
        stdout(&o).starts_with("bob\tverified\t0 unread\thush-v2\n"),
        "{}",
        stdout(&o)
    );
    let o = run(&alice, &["whoami"]).await;
    assert!(stdout(&o).contains("name alice"));
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passphrase_is_refused_and_changes_nothing() {
    let (net, relay) = net().await;
    let alice = init(&net, "alice").await;
    let db = alice.join("profile.sqlite3");
    let before = std::fs::read(&db).unwrap();
    let o = run_with(&alice, "not the passphrase", &["whoami"]).await;
    assert!(!o.status.success());
    assert!(stderr(&o).contains("wrong passphrase"), "{}", stderr(&o));
    assert_eq!(std::fs::read(&db).unwrap(), before);
    assert!(run(&alice, &["whoami"]).await.status.success());
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_a_locked_profile_gets_a_clear_error() {
    let (net, relay) = net().await;
    let alice = init(&net, "alice").await;
    let mut holder = hush(&alice, PASS, &["recv", "--wait", "10"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the first process holds the lock (its first connection is made).
    let mut refused = None;
    for _ in 0..100 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let o = run(&alice, &["whoami"]).await;
        if !o.status.success() {
            refused = Some(stderr(&o));
            break;
        }
    }
    holder.kill().unwrap();
    let _ = holder.wait();
    let refused = refused.expect("the second process was never refused");
    assert!(
        refused.contains("in use by another hush process"),
        "{refused}"
    );
    assert!(run(&alice, &["whoami"]).await.status.success());
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_while_sending_and_receiving_shows_every_message_exactly_once() {
    let (net, relay) = net().await;
    let alice = init(&net, "alice").await;
    let bob = init(&net, "bob").await;
    assert!(run(&alice, &["add", "bob"]).await.status.success());

    let mut confirmed = Vec::new();
    let mut attempted = Vec::new();
    for i in 0..24u64 {
        let text = format!("message {i}");
        attempted.push(text.clone());
        let mut child = hush(&alice, PASS, &["send", "bob", &text])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        if i % 3 == 1 {
            // Kill at varying points of the send (before or after commit or relay ack).
            tokio::time::sleep(Duration::from_millis(20 + (i * 7) % 60)).await;
            let _ = child.kill();
            let _ = child.wait();
        } else {
            let out = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap())
                .await
                .unwrap();
            if out.status.success() {
                confirmed.push(text);
            }
        }
        if i % 4 == 2 {
            // The receiver is killed mid-receive too.
            let mut r = hush(&bob, PASS, &["recv", "--wait", "1"])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            tokio::time::sleep(Duration::from_millis(30 + (i * 11) % 80)).await;
            let _ = r.kill();
            let _ = r.wait();
        }
    }
    // Restart both: the sender's next connection flushes its outbox; the receiver drains.
    let o = run(&alice, &["recv"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&bob, &["recv"]).await;
    assert!(o.status.success(), "{}", stderr(&o));

    let received = history_counts(&bob, "alice").await;
    for text in &confirmed {
        assert_eq!(
            received.get(text),
            Some(&1),
            "{text} not shown exactly once"
        );
    }
    for (text, n) in &received {
        assert_eq!(*n, 1, "{text} shown {n} times");
        assert!(attempted.contains(text));
    }
    // Whatever alice committed, she eventually delivered: her history and bob's agree.
    let sent = history_counts(&alice, "bob").await;
    for text in sent.keys() {
        assert_eq!(
            received.get(text),
            Some(&1),
            "{text} committed by alice but lost"
        );
    }
    assert!(confirmed.len() >= 10);
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_key_is_shown_loudly_and_blocks_sending_until_trust() {
    let (net, relay) = net().await;
    let alice = init(&net, "alice").await;
    let bob = init(&net, "bob").await;
    assert!(run(&alice, &["send", "bob", "hi"]).await.status.success());
    assert!(run(&bob, &["recv"]).await.status.success());
    drop(bob);

    // The operator frees bob's name with the relay's own command, while the relay runs; a
    // new identity takes it.
    let freed = relay.free_name(&net.relay_dir, "bob");
    assert!(freed.status.success(), "{freed:?}");
    let new_bob = net.root.join("bob-new");
    let o = run(&new_bob, &["init", "--name", "bob", "--relay", &net.relay]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(run(&new_bob, &["send", "alice", "new phone, same bob"])
        .await
        .status
        .success());

    let o = run(&alice, &["recv"]).await;
    assert!(
        stdout(&o).contains("bob: new phone, same bob [KEY CHANGED"),
        "{}",
        stdout(&o)
    );
    assert!(
        stderr(&o).contains("identity key has CHANGED"),
        "{}",
        stderr(&o)
    );
    let o = run(&alice, &["send", "bob", "prove it"]).await;
    assert!(!o.status.success());
    assert!(stderr(&o).contains("hush trust bob"), "{}", stderr(&o));
    let o = run(&alice, &["contacts"]).await;
    assert!(stdout(&o).contains("KEY CHANGED"));
    let o = run(&alice, &["verify", "bob"]).await;
    assert!(stdout(&o).contains("CHANGED"));
    assert!(run(&alice, &["trust", "bob"]).await.status.success());
    let o = run(&alice, &["send", "bob", "welcome back"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&new_bob, &["recv"]).await;
    assert!(stdout(&o).contains("alice: welcome back"), "{}", stdout(&o));
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_relay_leaves_the_message_queued_for_the_next_command() {
    let (net, relay) = net().await;
    let alice = init(&net, "alice").await;
    let bob = init(&net, "bob").await;
    assert!(run(&alice, &["add", "bob"]).await.status.success());
    let addr = relay.addr;
    relay.shutdown().await;
    let o = run(&alice, &["send", "bob", "sent during the outage"]).await;
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(stdout(&o).contains("queued"), "{}", stdout(&o));
    let relay = RelayProcess::start(&net.relay_dir, addr).await;
    assert!(run(&alice, &["recv"]).await.status.success());
    let o = run(&bob, &["recv"]).await;
    assert!(
        stdout(&o).contains("alice: sent during the outage"),
        "{}",
        stdout(&o)
    );
    relay.shutdown().await;
}

/// Peer text that tries to drive the terminal: a forged header on a new line, a carriage return
/// and escape sequences that erase or hide the rest of the line (where "[unverified]" goes),
/// OSC 0 (window title) and OSC 52 (clipboard), a bidi override.
const HOSTILE_TEXT: &str = "hi\n bob: fake\rbob: overwritten\x1b[2K\x1b[8mhidden\x1b]0;title\x07\x1b]52;c;cm0gLXJmIH4K\x07\u{202e}txt.exe";

/// No byte a terminal acts on and no bidi control (our own `\n` and `\t` are fine).
fn assert_no_controls(out: &str) {
    for c in out.chars() {
        assert!(
            matches!(c, '\n' | '\t')
                || !(c.is_control()
                    || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')),
            "{c:?} reached the terminal in {out:?}"
        );
    }
}

/// Whether human-readable output is safe to print: no byte a terminal acts on (ESC, CR, BEL,
/// C1, DEL; our own `\n` and `\t` separators are fine), no bidi control, and exactly
/// `headers` lines that start like a message header (`NAME:` or `[time] NAME:`), so no line of
/// peer text passes for one.
fn assert_terminal_safe(out: &str, headers: usize) {
    assert_no_controls(out);
    let looks_like_header = |line: &str| {
        let line = line.trim_start();
        let line = match line.strip_prefix('[') {
            Some(rest) => rest.split_once("] ").map_or(rest, |(_, r)| r),
            None => line,
        };
        line.split_once(':').is_some_and(|(who, _)| {
            !who.is_empty()
                && who
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c))
        })
    };
    let forged: Vec<&str> = out.lines().filter(|l| looks_like_header(l)).collect();
    assert_eq!(
        forged.len(),
        headers,
        "header-like lines: {forged:#?} in {out}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peer_text_cannot_drive_the_terminal_but_json_keeps_it_exact() {
    let (net, _relay) = net().await;
    let alice = init(&net, "alice").await;
    let bob = init(&net, "bob").await;

    let o = run(&alice, &["send", "bob", HOSTILE_TEXT]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&bob, &["recv"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let shown = stdout(&o);
    assert_terminal_safe(&shown, 1);
    assert!(
        shown.lines().next().unwrap().starts_with("alice: hi"),
        "{shown}"
    );
    assert!(shown.contains("[unverified]"), "{shown}");
    assert_terminal_safe(&stderr(&o), 0);

    let o = run(&bob, &["history", "alice"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    assert_terminal_safe(&stdout(&o), 1);

    let o = run(&alice, &["send", "bob", HOSTILE_TEXT]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let o = run(&bob, &["recv", "--json"]).await;
    assert!(o.status.success(), "{}", stderr(&o));
    let v: serde_json::Value = serde_json::from_str(stdout(&o).trim()).unwrap();
    assert_eq!(v["text"], HOSTILE_TEXT);
    let o = run(&bob, &["history", "alice", "--json"]).await;
    let texts: Vec<serde_json::Value> = stdout(&o)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["text"].clone())
        .collect();
    assert_eq!(texts, [HOSTILE_TEXT, HOSTILE_TEXT]);

    let o = run(&bob, &["contacts"]).await;
    assert_terminal_safe(&stdout(&o), 0);
    assert!(stdout(&o).starts_with("alice\t"));
    // Error texts embed names (and the relay's words): printed through the same filter.
    let o = run(&bob, &["verify", "\x1b]0;title\x07\x1b[2Kalice"]).await;
    assert!(!o.status.success());
    assert!(stderr(&o).contains("no contact named"), "{}", stderr(&o));
    assert_no_controls(&stderr(&o));
}

/// Every entry of `dir` (names only), sorted; `None` if `dir` does not exist.
fn entries(dir: &Path) -> Option<Vec<String>> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .ok()?
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    Some(names)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn init_refuses_a_directory_that_is_not_a_profile_and_touches_nothing() {
    let (net, _relay) = net().await;
    init(&net, "bob").await;
    let dir = net.root.join("documents");
    std::fs::create_dir_all(dir.join("photos")).unwrap();
    std::fs::write(dir.join("thesis.txt"), "years of work").unwrap();
    // A free name and a taken one: neither may create or delete anything there.
    for name in ["bob", "alice"] {
        let o = run(&dir, &["init", "--name", name, "--relay", &net.relay]).await;
        assert!(!o.status.success(), "init {name} into {dir:?} succeeded");
        assert!(stderr(&o).contains("not a hush profile"), "{}", stderr(&o));
        assert_eq!(
            entries(&dir).unwrap(),
            ["photos", "thesis.txt"],
            "init {name}"
        );
        assert_eq!(
            std::fs::read_to_string(dir.join("thesis.txt")).unwrap(),
            "years of work"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_init_removes_only_what_it_created() {
    let (net, _relay) = net().await;
    init(&net, "bob").await;
    // An empty directory the user made stays; one init made (with its parents) goes.
    let empty = net.root.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let fresh = net.root.join("new").join("profile");
    for dir in [&empty, &fresh] {
        let o = run(dir, &["init", "--name", "bob", "--relay", &net.relay]).await;
        assert!(!o.status.success());
        assert!(stderr(&o).contains("name is taken"), "{}", stderr(&o));
    }
    assert_eq!(entries(&empty).unwrap(), Vec::<String>::new());
    assert_eq!(entries(&net.root.join("new")), None);
    // Nothing is left that would stop a retry with another name.
    for (dir, name) in [(&empty, "bobby"), (&fresh, "robert")] {
        let o = run(dir, &["init", "--name", name, "--relay", &net.relay]).await;
        assert!(o.status.success(), "{}", stderr(&o));
    }
}
