//! At-least-once delivery to the consumer: a message committed but not handed over (a crash,
//! or a consumer that refused it) is emitted by the next receive, and then never again.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::time::Duration;

use hush_client::{Client, EmitError, Event, HistoryEntry};

async fn relay(dir: &Path) -> hush_relay::RunningRelay {
    hush_relay::start(hush_relay::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data: dir.to_owned(),
        ..Default::default()
    })
    .await
    .unwrap()
}

async fn init(dir: &Path, name: &str, relay: &hush_relay::RunningRelay) -> Client {
    Client::init(
        &dir.join(name),
        b"pass",
        name,
        &relay.local_addr.to_string(),
        None,
    )
    .await
    .unwrap()
}

fn texts(messages: &[HistoryEntry]) -> Vec<&str> {
    messages.iter().map(|m| m.text.as_str()).collect()
}

/// Messages emitted by one `receive_emitting` whose consumer accepts `accept` of them, then
/// refuses (like a closed stdout).
async fn receive_accepting(client: &mut Client, accept: usize) -> (Vec<String>, bool) {
    let mut got = Vec::new();
    let result = client
        .receive_emitting(Duration::from_millis(300), |event| {
            if let Event::Message(m) = event {
                if got.len() == accept {
                    return Err("consumer gone");
                }
                got.push(m.text.clone());
            }
            Ok(())
        })
        .await;
    let refused = match result {
        Ok(()) => false,
        Err(EmitError::Emit(_)) => true,
        Err(EmitError::Client(e)) => panic!("{e}"),
    };
    (got, refused)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committed_but_unemitted_messages_come_first_and_only_until_taken() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = relay(&tmp.path().join("relay")).await;
    let mut alice = init(tmp.path(), "alice", &relay).await;
    let mut bob = init(tmp.path(), "bob", &relay).await;
    for text in ["one", "two", "three"] {
        alice.send_text("bob", text).await.unwrap();
    }
    // A long-running consumer commits (and acks) them, then dies before handing them over.
    let mut committed = 0;
    for _ in 0..50 {
        let events = bob.pump(Duration::from_millis(200)).await.unwrap();
        committed += events
            .iter()
            .filter(|e| matches!(e, Event::Message(_)))
            .count();
        if committed == 3 {
            break;
        }
    }
    assert_eq!(committed, 3);
    drop(bob);

    let mut bob = Client::open(&tmp.path().join("bob"), b"pass").unwrap();
    assert_eq!(
        texts(&bob.unemitted_messages().unwrap()),
        ["one", "two", "three"]
    );
    // A consumer that refuses at once takes nothing.
    let (got, refused) = receive_accepting(&mut bob, 0).await;
    assert!(refused && got.is_empty());
    assert_eq!(bob.unemitted_messages().unwrap().len(), 3);
    // One that takes one message, then goes away, leaves the rest in order.
    let (got, refused) = receive_accepting(&mut bob, 1).await;
    assert!(refused);
    assert_eq!(got, ["one"]);
    assert_eq!(texts(&bob.unemitted_messages().unwrap()), ["two", "three"]);
    // The rest exactly once, then nothing.
    let (got, refused) = receive_accepting(&mut bob, usize::MAX).await;
    assert!(!refused);
    assert_eq!(got, ["two", "three"]);
    let (got, _) = receive_accepting(&mut bob, usize::MAX).await;
    assert!(got.is_empty(), "{got:?}");
    assert!(bob.unemitted_messages().unwrap().is_empty());
    // Still in history: the record only tracks what the consumer was given.
    assert_eq!(bob.history("alice").unwrap().len(), 3);
}
