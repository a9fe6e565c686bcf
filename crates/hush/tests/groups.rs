//! End-to-end tests of groups (MLS): real `hush` processes against the real `hush-relay`
//! binary over loopback, one relay per test.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

mod common;
use common::RelayProcess;

const HUSH: &str = env!("CARGO_BIN_EXE_hush");
const PASS: &str = "test passphrase";

struct Net {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    relay: String,
}

async fn net() -> (Net, RelayProcess) {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_owned();
    let relay = RelayProcess::start(&root.join("relay"), "127.0.0.1:0".parse().unwrap()).await;
    let addr = relay.addr.to_string();
    (
        Net {
            _tmp: tmp,
            root,
            relay: addr,
        },
        relay,
    )
}

fn command(profile: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new(HUSH);
    cmd.arg("--profile")
        .arg(profile)
        .args(args)
        .env("HUSH_PASSPHRASE", PASS)
        .stdin(Stdio::null());
    cmd
}

async fn run(profile: &Path, args: &[&str]) -> Output {
    let mut cmd = command(profile, args);
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

/// Run and require success; stdout.
async fn ok(profile: &Path, args: &[&str]) -> String {
    let o = run(profile, args).await;
    assert!(
        o.status.success(),
        "hush {args:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Profiles for `names`, each with every other one as a contact.
async fn people(net: &Net, names: &[&str]) -> Vec<PathBuf> {
    let mut profiles = Vec::new();
    for name in names {
        let profile = net.root.join(name);
        ok(&profile, &["init", "--name", name, "--relay", &net.relay]).await;
        profiles.push(profile);
    }
    for (i, profile) in profiles.iter().enumerate() {
        for (j, name) in names.iter().enumerate() {
            if i != j {
                ok(profile, &["add", name]).await;
            }
        }
    }
    profiles
}

/// `recv --json`, parsed.
async fn recv(profile: &Path) -> Vec<serde_json::Value> {
    ok(profile, &["recv", "--json"])
        .await
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn texts(lines: &[serde_json::Value]) -> Vec<String> {
    lines
        .iter()
        .filter(|l| l["text"].is_string())
        .map(|l| l["text"].as_str().unwrap().to_owned())
        .collect()
}

/// (epoch, epoch authenticator, member names) as `group members --json` shows them.
async fn state(profile: &Path, group: &str) -> (u64, String, Vec<String>) {
    let v: serde_json::Value = serde_json::from_str(
        ok(profile, &["group", "members", group, "--json"])
            .await
            .trim(),
    )
    .unwrap();
    let mut names: Vec<String> = v["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap().to_owned())
        .collect();
    names.sort();
    (
        v["epoch"].as_u64().unwrap(),
        v["epoch_authenticator"].as_str().unwrap().to_owned(),
        names,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_talk_a_new_member_cannot_read_the_past_a_removed_one_cannot_read_on() {
    let (net, relay) = net().await;
    let p = people(&net, &["alice", "bob", "carol", "dave"]).await;
    let (alice, bob, carol, dave) = (&p[0], &p[1], &p[2], &p[3]);

    ok(alice, &["group", "create", "team", "bob", "carol"]).await;
    let joined = recv(bob).await;
    assert!(
        joined
            .iter()
            .any(|l| l["event"] == "group" && l["change"] == "joined" && l["by"] == "alice"),
        "{joined:?}"
    );
    recv(carol).await;

    // Both ways: every member reads every other member.
    ok(alice, &["send", "#team", "before dave"]).await;
    ok(bob, &["send", "#team", "bob here"]).await;
    let got = recv(carol).await;
    assert_eq!(texts(&got), ["before dave", "bob here"]);
    let from_bob = got.iter().find(|l| l["text"] == "bob here").unwrap();
    assert_eq!(from_bob["group"], "team");
    assert_eq!(from_bob["from"], "bob");
    assert_eq!(texts(&recv(alice).await), ["bob here"]);
    assert_eq!(texts(&recv(bob).await), ["before dave"]);

    // A new member reads what comes after its Welcome, and nothing from before.
    ok(alice, &["group", "add", "team", "dave"]).await;
    ok(alice, &["send", "#team", "welcome dave"]).await;
    let got = recv(dave).await;
    assert_eq!(texts(&got), ["welcome dave"]);
    let history = ok(dave, &["history", "#team", "--json"]).await;
    assert!(!history.contains("before dave"), "{history}");

    // Carol, offline, is removed; the next message is not hers to read.
    ok(alice, &["group", "remove", "team", "carol"]).await;
    ok(bob, &["send", "#team", "after carol"]).await;
    let got = recv(carol).await;
    assert_eq!(texts(&got), ["welcome dave"], "nothing after her removal");
    assert!(
        got.iter()
            .any(|l| l["event"] == "group" && l["change"] == "you_were_removed"),
        "carol learns she was removed: {got:?}"
    );
    let o = run(carol, &["send", "#team", "still here?"]).await;
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no longer a member"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let list = ok(carol, &["group", "list"]).await;
    assert!(list.contains("removed by alice"), "{list}");

    // The others agree on the group.
    recv(alice).await;
    assert_eq!(texts(&recv(dave).await), ["after carol"]);
    let a = state(alice, "team").await;
    assert_eq!(a.2, ["alice", "bob", "dave"]);
    assert_eq!(state(bob, "team").await, a);
    assert_eq!(state(dave, "team").await, a);

    // Leaving: a remaining member commits it; the leaver's history stays.
    ok(dave, &["group", "leave", "team"]).await;
    recv(alice).await;
    recv(bob).await;
    let a = state(alice, "team").await;
    assert_eq!(a.2, ["alice", "bob"]);
    assert_eq!(state(bob, "team").await, a);
    assert!(ok(dave, &["history", "#team"])
        .await
        .contains("welcome dave"));

    // An invitation from someone who is not a contact is refused, visibly, and kept nowhere.
    let erin = net.root.join("erin");
    ok(&erin, &["init", "--name", "erin", "--relay", &net.relay]).await;
    ok(&erin, &["add", "alice"]).await;
    ok(&erin, &["group", "create", "club", "alice"]).await;
    let got = recv(alice).await;
    assert!(
        got.iter().any(|l| l["event"] == "rejected"
            && l["reason"]
                .as_str()
                .unwrap()
                .contains("not one of your contacts")),
        "{got:?}"
    );
    assert!(!ok(alice, &["group", "list"]).await.contains("club"));

    // The same through `hush rpc`: a group is listed, and its history read by `#NAME`.
    let input = [
        r##"{"jsonrpc":"2.0","id":1,"method":"group.members","params":{"group":"team"}}"##,
        r##"{"jsonrpc":"2.0","id":2,"method":"history","params":{"contact":"#team"}}"##,
        r##"{"jsonrpc":"2.0","id":3,"method":"send","params":{"to":"#team","text":"over rpc"}}"##,
    ]
    .join("\n");
    let mut cmd = command(alice, &["rpc"]);
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped());
    let out = tokio::task::spawn_blocking(move || {
        let mut child = cmd.spawn().unwrap();
        std::io::Write::write_all(&mut child.stdin.take().unwrap(), input.as_bytes()).unwrap();
        child.wait_with_output().unwrap()
    })
    .await
    .unwrap();
    let replies: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let reply = |id: u64| replies.iter().find(|r| r["id"] == id).unwrap()["result"].clone();
    assert_eq!(
        reply(1)["epoch"].as_u64(),
        Some(state(alice, "team").await.0)
    );
    assert!(reply(2).to_string().contains("after carol"));
    assert_eq!(reply(3)["state"], "on relay");
    assert_eq!(texts(&recv(bob).await), ["over rpc"]);
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_settle_on_one_epoch_and_an_offline_member_catches_up() {
    let (net, relay) = net().await;
    let p = people(&net, &["alice", "bob", "carol", "dave"]).await;
    let (alice, bob, carol, dave) = (&p[0], &p[1], &p[2], &p[3]);
    ok(alice, &["group", "create", "team", "bob", "carol"]).await;
    recv(bob).await;
    recv(carol).await;

    // Bob commits in the epoch alice's add has just left behind: the relay refuses it as
    // stale; bob syncs, processes alice's commit and builds his again on top of it.
    ok(alice, &["group", "add", "team", "dave"]).await;
    ok(bob, &["group", "remove", "team", "carol"]).await;
    // Two commits sent at the same instant: exactly one wins its epoch, the other retries.
    let (x, y) = tokio::join!(
        run(alice, &["group", "remove", "team", "dave"]),
        run(bob, &["group", "add", "team", "carol"])
    );
    assert!(x.status.success(), "{}", String::from_utf8_lossy(&x.stderr));
    assert!(y.status.success(), "{}", String::from_utf8_lossy(&y.stderr));
    for p in [alice, bob, carol, dave] {
        recv(p).await;
    }
    let a = state(alice, "team").await;
    assert_eq!(a.0, 5, "create, add, remove, and the two racing commits");
    assert_eq!(a.2, ["alice", "bob", "carol"]);
    assert_eq!(state(bob, "team").await, a);
    assert_eq!(state(carol, "team").await, a);

    // Carol stays offline across six epochs, with a message in each.
    let mut sent = Vec::new();
    for round in 0..3 {
        ok(alice, &["group", "add", "team", "dave"]).await;
        let text = format!("with dave {round}");
        ok(alice, &["send", "#team", &text]).await;
        sent.push(text);
        ok(alice, &["group", "remove", "team", "dave"]).await;
        let text = format!("without dave {round}");
        ok(bob, &["send", "#team", &text]).await;
        sent.push(text);
    }
    let got = recv(carol).await;
    assert_eq!(texts(&got), sent, "every message, in order");
    let a = state(alice, "team").await;
    assert_eq!(a.0, 11);
    assert_eq!(state(carol, "team").await, a);
    // Bob caught up through syncs before each of his sends: the mailbox copies of those
    // commits are acked silently (no rejection), and he is in the same state.
    let got = recv(bob).await;
    assert!(!got.iter().any(|l| l["event"] == "rejected"), "{got:?}");
    assert_eq!(state(bob, "team").await, a);
    relay.shutdown().await;
}
