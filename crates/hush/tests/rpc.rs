//! `hush rpc` end to end: the real `hush-relay` binary and real `hush` processes speaking JSON-RPC 2.0
//! over their stdin/stdout (messages, receipts, held notifications, errors, reconnecting).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::process::Command;
use tokio::time::{timeout, Instant};

mod common;
use common::rpc_proc::{RpcProc, PASS};
use common::RelayProcess;

/// Bound on every wait, so a hung process fails the test instead of hanging it.
const WAIT: Duration = Duration::from_secs(30);
const HUSH: &str = env!("CARGO_BIN_EXE_hush");

async fn start_relay(data: &Path, listen: SocketAddr) -> RelayProcess {
    RelayProcess::start(data, listen).await
}

async fn init(profile: &Path, name: &str, relay: SocketAddr) {
    let output = timeout(
        WAIT,
        Command::new(HUSH)
            .arg("--profile")
            .arg(profile)
            .args(["init", "--name", name, "--relay", &relay.to_string()])
            .env("HUSH_PASSPHRASE", PASS)
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("hush init timed out")
    .unwrap();
    assert!(
        output.status.success(),
        "hush init {name}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
}

struct World {
    _tmp: tempfile::TempDir,
    relay_data: PathBuf,
    relay: Option<RelayProcess>,
    addr: SocketAddr,
    alice: PathBuf,
    bob: PathBuf,
}

async fn world() -> World {
    let tmp = tempfile::tempdir().unwrap();
    let relay_data = tmp.path().join("relay");
    let relay = start_relay(&relay_data, "127.0.0.1:0".parse().unwrap()).await;
    let addr = relay.addr;
    let alice = tmp.path().join("alice");
    let bob = tmp.path().join("bob");
    init(&alice, "alice", addr).await;
    init(&bob, "bob", addr).await;
    World {
        _tmp: tmp,
        relay_data,
        relay: Some(relay),
        addr,
        alice,
        bob,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn messages_receipts_queries_and_errors() {
    let w = world().await;
    let mut bob = RpcProc::spawn(&w.bob, "bob");
    let mut alice = RpcProc::spawn(&w.alice, "alice");

    // Subscribe with params omitted.
    bob.send_line(r#"{"jsonrpc":"2.0","id":1,"method":"subscribe"}"#)
        .await;
    let r = bob.response().await;
    assert_eq!(r["id"], 1);
    assert_eq!(r["result"]["subscribed"], true, "{r}");
    assert_eq!(
        alice.result(1, "subscribe", json!({})).await["subscribed"],
        true
    );

    // alice -> bob, to a name she never added.
    let sent = alice
        .result(2, "send", json!({"to": "bob", "text": "hello bob"}))
        .await;
    assert_eq!(sent["to"], "bob");
    assert_eq!(sent["from"], Value::Null);
    assert_eq!(sent["text"], "hello bob");
    assert_eq!(sent["state"], "on relay");
    let id = sent["id"].as_str().unwrap().to_owned();
    assert_eq!(id.len(), 32);

    let message = bob.notification("message").await;
    assert_eq!(message["from"], "alice");
    assert_eq!(message["to"], Value::Null);
    assert_eq!(message["text"], "hello bob");
    assert_eq!(message["id"], id.as_str());
    assert_eq!(message["state"], "received");
    assert_eq!(message["verified"], false);

    // Bob's end-to-end receipt reaches alice.
    let delivered = alice.notification("delivered").await;
    assert_eq!(delivered["contact"], "bob");
    assert_eq!(delivered["ids"], json!([id]));
    let history = alice.result(3, "history", json!({"contact": "bob"})).await;
    assert_eq!(history.as_array().unwrap().len(), 1, "{history}");
    assert_eq!(history[0]["state"], "delivered");

    // A reply.
    let reply = bob
        .result(2, "send", json!({"to": "alice", "text": "hi alice ✓"}))
        .await;
    assert_eq!(reply["state"], "on relay");
    let message = alice.notification("message").await;
    assert_eq!(message["from"], "bob");
    assert_eq!(message["text"], "hi alice ✓");
    let delivered = bob.notification("delivered").await;
    assert_eq!(delivered["ids"], json!([reply["id"]]));

    // Contacts and history on bob's side; history can mark the conversation read.
    let contacts = bob.result(3, "contacts", json!({})).await;
    assert_eq!(contacts.as_array().unwrap().len(), 1, "{contacts}");
    assert_eq!(contacts[0]["name"], "alice");
    assert_eq!(contacts[0]["unread"], 1);
    assert_eq!(contacts[0]["key_changed"], false);
    let history = bob
        .result(4, "history", json!({"contact": "alice", "mark_read": true}))
        .await;
    let texts: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["hello bob", "hi alice ✓"]);
    assert_eq!(history[0]["from"], "alice");
    assert_eq!(history[1]["to"], "alice");
    assert_eq!(bob.result(5, "contacts", json!(null)).await[0]["unread"], 0);

    // Safety numbers agree on both sides; confirming marks verified.
    let bob_view = bob.result(6, "verify", json!({"contact": "alice"})).await;
    let alice_view = alice.result(4, "verify", json!({"contact": "bob"})).await;
    let digits = bob_view["safety_number"].as_str().unwrap();
    assert_eq!(digits.len(), 60);
    assert!(digits.bytes().all(|b| b.is_ascii_digit()));
    assert_eq!(alice_view["safety_number"], digits);
    assert_eq!(
        bob_view["grouped"]
            .as_str()
            .unwrap()
            .replace([' ', '\n'], ""),
        digits
    );
    assert_eq!(bob_view["qr_payload_hex"].as_str().unwrap().len(), 130);
    assert_eq!(bob_view["verified"], false);
    let confirmed = bob
        .result(7, "verify", json!({"contact": "alice", "confirm": true}))
        .await;
    assert_eq!(confirmed["verified"], true);
    assert_eq!(
        bob.result(8, "contacts", json!({})).await[0]["verified"],
        true
    );
    let trusted = bob.result(9, "trust", json!({"contact": "alice"})).await;
    assert_eq!(trusted["name"], "alice");
    assert_eq!(trusted["verified"], true);

    let me = bob.result(10, "whoami", json!({})).await;
    assert_eq!(me["name"], "bob");
    assert_eq!(me["relay"], w.addr.to_string());
    assert_eq!(me["relays"], json!([w.addr.to_string()]));
    assert_eq!(me["fingerprint"].as_str().unwrap().len(), 32);
    // No secret material in the answer.
    assert_eq!(me.as_object().unwrap().len(), 4);

    // `add` of a known contact with an unchanged key starts a fresh session.
    let added = alice.result(5, "add", json!({"contact": "bob"})).await;
    assert_eq!(added["name"], "bob");

    // --- errors; the process keeps serving after each -------------------------------------
    let e = bob.error(42, "frobnicate", json!({}), -32601).await;
    assert!(e["message"].as_str().unwrap().contains("frobnicate"));

    bob.send_line(r#"{"jsonrpc": "2.0", "id": 43, "method": "#)
        .await;
    let r = bob.response().await;
    assert_eq!(r["id"], Value::Null);
    assert_eq!(r["error"]["code"], -32700, "{r}");
    assert_eq!(bob.result(44, "whoami", json!({})).await["name"], "bob");

    bob.send_bytes(b"{\"jsonrpc\":\"2.0\",\"id\":45,\"method\":\"\xff\"}")
        .await;
    assert_eq!(bob.response().await["error"]["code"], -32700);

    for (line, id) in [
        (
            r#"[{"jsonrpc":"2.0","id":46,"method":"whoami"}]"#,
            json!(null),
        ),
        (r#""whoami""#, json!(null)),
        (r#"{"jsonrpc":"1.0","id":47,"method":"whoami"}"#, json!(47)),
        (r#"{"id":48,"method":"whoami"}"#, json!(48)),
        (r#"{"jsonrpc":"2.0","id":49}"#, json!(49)),
        (
            r#"{"jsonrpc":"2.0","id":[50],"method":"whoami"}"#,
            json!(null),
        ),
        (
            r#"{"jsonrpc":"2.0","id":51,"method":"whoami","params":"x"}"#,
            json!(51),
        ),
    ] {
        bob.send_line(line).await;
        let r = bob.response().await;
        assert_eq!(r["error"]["code"], -32600, "{line}: {r}");
        assert_eq!(r["id"], id, "{line}: {r}");
    }

    bob.error(52, "send", json!(["alice", "positional"]), -32602)
        .await;
    bob.error(53, "send", json!({"to": "alice"}), -32602).await;
    bob.error(54, "send", json!({"to": "alice", "txt": "typo"}), -32602)
        .await;
    bob.error(55, "whoami", json!({"extra": 1}), -32602).await;
    bob.error(56, "history", json!({"contact": 7}), -32602)
        .await;

    let e = bob
        .error(57, "send", json!({"to": "nobody", "text": "x"}), -32000)
        .await;
    assert_eq!(e["data"]["kind"], "unknown_user", "{e}");
    let e = bob
        .error(58, "history", json!({"contact": "nobody"}), -32000)
        .await;
    assert_eq!(e["data"]["kind"], "no_such_contact", "{e}");
    let e = bob
        .error(59, "add", json!({"contact": "bob"}), -32000)
        .await;
    assert_eq!(e["data"]["kind"], "invalid", "{e}");
    let e = bob
        .error(
            60,
            "send",
            json!({"to": "alice", "text": "x".repeat(100_000)}),
            -32000,
        )
        .await;
    assert_eq!(e["data"]["kind"], "encrypt", "{e}");

    // String ids are echoed; a line over the limit is refused without killing the process.
    let r = bob.call(json!("abc"), "whoami", json!({})).await;
    assert_eq!(r["result"]["name"], "bob");
    let huge = format!(
        r#"{{"jsonrpc":"2.0","id":61,"method":"send","params":{{"to":"alice","text":"{}"}}}}"#,
        "y".repeat(1_200_000)
    );
    bob.send_line(&huge).await;
    let r = bob.response().await;
    assert_eq!(r["error"]["code"], -32600, "{r}");
    assert_eq!(r["id"], Value::Null);

    // Notifications (no id) are executed but never answered, even when they fail; blank
    // lines are ignored.
    bob.send_line(r#"{"jsonrpc":"2.0","method":"whoami"}"#)
        .await;
    bob.send_line(r#"{"jsonrpc":"2.0","method":"no_such_method"}"#)
        .await;
    bob.send_line("").await;
    bob.send_line(
        r#"{"jsonrpc":"2.0","method":"send","params":{"to":"alice","text":"fire and forget"}}"#,
    )
    .await;
    let r = bob.call(json!(62), "whoami", json!({})).await;
    assert_eq!(r["result"]["name"], "bob");
    assert_eq!(
        alice.notification("message").await["text"],
        "fire and forget"
    );

    // Nothing else was sent to bob: at most the receipt for "fire and forget".
    assert!(
        bob.notifications.iter().all(|n| n["method"] == "delivered"),
        "{:?}",
        bob.notifications
    );

    // EOF: clean exit.
    assert!(bob.finish().await.success());
    assert!(alice.finish().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_are_held_until_subscribe() {
    let w = world().await;
    let mut bob = RpcProc::spawn(&w.bob, "bob");
    let mut alice = RpcProc::spawn(&w.alice, "alice");
    alice.result(1, "receive", json!({})).await;

    let mut ids = Vec::new();
    for (n, text) in ["while you were away", "and another"]
        .into_iter()
        .enumerate()
    {
        let sent = alice
            .result(2 + n as u64, "send", json!({"to": "bob", "text": text}))
            .await;
        ids.push(sent["id"].as_str().unwrap().to_owned());
    }
    // Bob's rpc processes (and acknowledges) deliveries before anyone subscribes: alice gets
    // both receipts.
    let mut confirmed = Vec::new();
    while confirmed.len() < ids.len() {
        let delivered = alice.notification("delivered").await;
        for id in delivered["ids"].as_array().unwrap() {
            confirmed.push(id.as_str().unwrap().to_owned());
        }
    }
    confirmed.sort();
    ids.sort();
    assert_eq!(confirmed, ids);

    // ...but told nobody yet.
    assert_eq!(bob.result(1, "whoami", json!({})).await["name"], "bob");
    assert!(bob.notifications.is_empty(), "{:?}", bob.notifications);

    // Subscribing answers first, then releases the held messages in order.
    bob.send_line(r#"{"jsonrpc":"2.0","id":2,"method":"receive","params":{}}"#)
        .await;
    let deadline = Instant::now() + WAIT;
    let r = bob.next_line(deadline).await;
    assert_eq!(
        r["id"], 2,
        "the response comes before held notifications: {r}"
    );
    assert_eq!(r["result"], json!({"subscribed": true, "dropped": 0}));
    let first = bob.next_line(deadline).await;
    let second = bob.next_line(deadline).await;
    assert_eq!(first["method"], "message");
    assert_eq!(first["params"]["text"], "while you were away");
    assert_eq!(second["params"]["text"], "and another");

    assert!(bob.finish().await.success());
    assert!(alice.finish().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keeps_receiving_after_the_relay_restarts() {
    let mut w = world().await;
    let mut bob = RpcProc::spawn(&w.bob, "bob");
    let mut alice = RpcProc::spawn(&w.alice, "alice");
    bob.result(1, "subscribe", json!({})).await;
    alice.result(1, "subscribe", json!({})).await;
    alice
        .result(2, "send", json!({"to": "bob", "text": "before"}))
        .await;
    assert_eq!(bob.notification("message").await["text"], "before");
    alice.notification("delivered").await;

    // The relay goes away; both notice and back off. It comes back on the same address.
    w.relay.take().unwrap().shutdown().await;
    bob.stderr_contains("retrying").await;
    alice.stderr_contains("retrying").await;
    // Local requests are still answered while the relay is away.
    let contacts = bob.result(10, "contacts", json!({})).await;
    assert_eq!(contacts[0]["name"], "alice");
    w.relay = Some(start_relay(&w.relay_data, w.addr).await);

    // A request reconnects before the next pump does: the new connection must still be
    // subscribed, or nothing would arrive.
    let sent = bob
        .result(2, "send", json!({"to": "alice", "text": "back online"}))
        .await;
    assert_eq!(sent["state"], "on relay", "{sent}");
    let sent = alice
        .result(3, "send", json!({"to": "bob", "text": "welcome back"}))
        .await;
    assert_eq!(sent["state"], "on relay", "{sent}");
    assert_eq!(bob.notification("message").await["text"], "welcome back");
    assert_eq!(alice.notification("message").await["text"], "back online");

    assert!(bob.finish().await.success());
    assert!(alice.finish().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_to_a_freed_name_is_reported_failed_and_receiving_goes_on() {
    let mut w = world().await;
    let carol_profile = w.relay_data.with_file_name("carol");
    init(&carol_profile, "carol", w.addr).await;
    let mut alice = RpcProc::spawn(&w.alice, "alice");
    alice.result(1, "subscribe", json!({})).await;
    let sent = alice
        .result(2, "send", json!({"to": "bob", "text": "hello bob"}))
        .await;
    assert_eq!(sent["state"], "on relay", "{sent}");

    // The operator frees bob's name; while the relay restarts, alice queues a message to him.
    let relay = w.relay.take().unwrap();
    assert!(relay.free_name(&w.relay_data, "bob").status.success());
    relay.shutdown().await;
    alice.stderr_contains("retrying").await;
    let queued = alice
        .result(3, "send", json!({"to": "bob", "text": "lost"}))
        .await;
    assert_eq!(queued["state"], "queued", "{queued}");
    w.relay = Some(start_relay(&w.relay_data, w.addr).await);

    // Reconnecting subscribes despite the undeliverable row, and reports it.
    let failed = alice.notification("failed").await;
    assert_eq!(failed["contact"], "bob");
    assert_eq!(failed["id"], queued["id"]);
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("no such recipient"),
        "{failed}"
    );
    let mut carol = RpcProc::spawn(&carol_profile, "carol");
    carol
        .result(1, "send", json!({"to": "alice", "text": "still reachable"}))
        .await;
    assert_eq!(
        alice.notification("message").await["text"],
        "still reachable"
    );
    let history = alice.result(4, "history", json!({"contact": "bob"})).await;
    let lost = history
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["text"] == "lost")
        .unwrap();
    assert_eq!(lost["state"], "failed", "{lost}");
    assert!(lost["failure"]
        .as_str()
        .unwrap()
        .contains("no such recipient"));

    // A new send to the freed name answers `failed` and notifies it like any other failure.
    let again = alice
        .result(5, "send", json!({"to": "bob", "text": "still there?"}))
        .await;
    assert_eq!(again["state"], "failed", "{again}");
    assert_eq!(alice.notification("failed").await["id"], again["id"]);

    assert!(carol.finish().await.success());
    assert!(alice.finish().await.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_notification_lost_to_a_crash_is_sent_after_the_next_subscribe() {
    let w = world().await;
    let mut alice = RpcProc::spawn(&w.alice, "alice");
    alice.result(1, "subscribe", json!({})).await;
    let mut bob = RpcProc::spawn(&w.bob, "bob");
    let sent = alice
        .result(2, "send", json!({"to": "bob", "text": "before the crash"}))
        .await;
    let id = sent["id"].as_str().unwrap().to_owned();
    // The receipt proves bob committed (and acknowledged) the message; nobody subscribed,
    // so its notification is only held in memory when bob's rpc is killed.
    let delivered = alice.notification("delivered").await;
    assert_eq!(delivered["ids"], json!([id]));
    bob.child.kill().await.unwrap();

    let mut bob = RpcProc::spawn(&w.bob, "bob");
    bob.result(1, "subscribe", json!({})).await;
    let message = bob.notification("message").await;
    assert_eq!(message["id"], id.as_str(), "{message}");
    assert_eq!(message["text"], "before the crash");
    assert!(bob.finish().await.success());

    // Written and flushed once: not repeated.
    let mut bob = RpcProc::spawn(&w.bob, "bob");
    bob.result(1, "subscribe", json!({})).await;
    assert_eq!(bob.result(2, "whoami", json!({})).await["name"], "bob");
    assert!(bob.notifications.is_empty(), "{:?}", bob.notifications);
    assert!(bob.finish().await.success());
    assert!(alice.finish().await.success());
}

/// Groups over rpc: create with a member, the member's `joined` notification, sending to
/// `#NAME` both ways with `group` on the messages, members with their states (a member who is
/// not a contact is announced), history of `#NAME`, removal announced to the removed member.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_create_send_members_and_remove() {
    let w = world().await;
    let carol = w._tmp.path().join("carol");
    init(&carol, "carol", w.addr).await;
    let mut alice = RpcProc::spawn(&w.alice, "alice");
    let mut bob = RpcProc::spawn(&w.bob, "bob");
    alice.result(1, "subscribe", json!({})).await;
    bob.result(1, "subscribe", json!({})).await;
    alice.result(2, "add", json!({"contact": "bob"})).await;
    alice.result(3, "add", json!({"contact": "carol"})).await;
    bob.result(2, "add", json!({"contact": "alice"})).await;

    // Wrong params are refused before anything happens.
    alice
        .error(
            4,
            "group.add",
            json!({"group": "team", "members": []}),
            -32602,
        )
        .await;
    alice
        .error(
            5,
            "group.create",
            json!({"group": "team", "member": ["bob"]}),
            -32602,
        )
        .await;
    alice.error(6, "group.nope", json!({}), -32601).await;
    let e = alice
        .error(7, "group.members", json!({"group": "team"}), -32000)
        .await;
    assert_eq!(e["data"]["kind"], "invalid", "{e}");

    let created = alice
        .result(
            8,
            "group.create",
            json!({"group": "#team", "members": ["bob"]}),
        )
        .await;
    assert_eq!(created["group"], "team");
    assert_eq!(created["member"], true);
    let states: Vec<(String, String)> = created["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap().to_owned(),
                m["state"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert!(
        states.contains(&("alice".into(), "you".into())),
        "{created}"
    );
    assert!(
        states.contains(&("bob".into(), "known".into())),
        "{created}"
    );

    let joined = bob.notification("group").await;
    assert_eq!(joined["group"], "team", "{joined}");
    assert_eq!(joined["change"], "joined", "{joined}");
    assert_eq!(joined["by"], "alice", "{joined}");

    // To the group and back.
    let sent = alice
        .result(9, "send", json!({"to": "#team", "text": "hello team"}))
        .await;
    assert_eq!(sent["group"], "team", "{sent}");
    assert_eq!(sent["state"], "on relay", "{sent}");
    let message = bob.notification("message").await;
    assert_eq!(message["group"], "team", "{message}");
    assert_eq!(message["from"], "alice", "{message}");
    assert_eq!(message["text"], "hello team");
    bob.result(3, "send", json!({"to": "#team", "text": "hi all"}))
        .await;
    let message = alice.notification("message").await;
    assert_eq!(message["group"], "team", "{message}");
    assert_eq!(message["from"], "bob", "{message}");

    let history = bob
        .result(4, "history", json!({"contact": "#team", "mark_read": true}))
        .await;
    let texts: Vec<&str> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["hello team", "hi all"], "{history}");
    let members = bob
        .result(5, "group.members", json!({"group": "team"}))
        .await;
    assert_eq!(members["epoch"], created["epoch"], "{members}");
    assert_eq!(
        members["epoch_authenticator"], created["epoch_authenticator"],
        "both see the same group state"
    );
    assert_eq!(members["unread"], 0, "{members}");

    // carol is added; bob has no contact for her: said so, with her fingerprint.
    alice
        .result(
            10,
            "group.add",
            json!({"group": "team", "members": ["carol"]}),
        )
        .await;
    let mut seen = Vec::new();
    while !(seen.iter().any(|c: &Value| c["change"] == "added")
        && seen.iter().any(|c: &Value| c["change"] == "not_a_contact"))
    {
        let change = bob.notification("group").await;
        assert_eq!(change["group"], "team", "{change}");
        seen.push(change);
    }
    let added = seen.iter().find(|c| c["change"] == "added").unwrap();
    assert_eq!(added["by"], "alice");
    assert_eq!(added["members"], json!(["carol"]));
    let stranger = seen
        .iter()
        .find(|c| c["change"] == "not_a_contact")
        .unwrap();
    assert_eq!(stranger["member"], "carol");
    assert!(stranger["fingerprint"]
        .as_str()
        .is_some_and(|f| !f.is_empty()));
    let members = bob
        .result(6, "group.members", json!({"group": "team"}))
        .await;
    let carol_state = members["members"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["name"] == "carol")
        .map(|m| m["state"].clone());
    assert_eq!(carol_state, Some(json!("not_a_contact")), "{members}");

    // bob is removed: told so, and the group stays listed as gone.
    let after = alice
        .result(
            11,
            "group.remove",
            json!({"group": "team", "members": ["bob"]}),
        )
        .await;
    assert!(
        after["members"]
            .as_array()
            .unwrap()
            .iter()
            .all(|m| m["name"] != "bob"),
        "{after}"
    );
    let removed = bob.notification("group").await;
    assert_eq!(removed["change"], "you_were_removed", "{removed}");
    assert_eq!(removed["by"], "alice");
    let list = bob.result(7, "group.list", json!({})).await;
    assert_eq!(list.as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list[0]["member"], false, "{list}");
    let e = bob
        .error(
            8,
            "send",
            json!({"to": "#team", "text": "still here?"}),
            -32000,
        )
        .await;
    assert_eq!(e["data"]["kind"], "invalid", "{e}");

    let left = alice.result(12, "group.list", json!({})).await;
    assert_eq!(left[0]["member"], true);
    let gone = alice
        .result(13, "group.leave", json!({"group": "team"}))
        .await;
    assert_eq!(gone["member"], false, "{gone}");
    assert!(alice.finish().await.success());
    assert!(bob.finish().await.success());
}

/// A request does not wait out the wait for a delivery (200 ms): a line on stdin ends it.
/// Forty requests, each sent right after the previous answer, take far less than forty waits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_answered_without_waiting_for_the_receive_step() {
    let w = world().await;
    let mut alice = RpcProc::spawn(&w.alice, "alice");
    alice.result(1, "subscribe", json!({})).await;
    // Connected to the relay (so the loop waits for deliveries, not out a back-off).
    let sent = alice
        .result(2, "send", json!({"to": "bob", "text": "hi"}))
        .await;
    assert_eq!(sent["state"], "on relay", "{sent}");
    let started = std::time::Instant::now();
    for id in 3..43 {
        alice.result(id, "whoami", json!({})).await;
    }
    let took = started.elapsed();
    // Waiting out each 200 ms step would take about 8 s; answered at once, well under 1 s.
    assert!(
        took < Duration::from_secs(4),
        "40 requests took {took:?}: requests wait for the receive step"
    );
    assert!(alice.finish().await.success());
    drop(w);
}
