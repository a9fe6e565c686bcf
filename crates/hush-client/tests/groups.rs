//! Groups through the client library against a real in-process relay: what the receive path
//! does with group mail it must refuse.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::time::Duration;

use hush_client::{Client, Event};
use hush_proto::group::GroupEnvelope;
use hush_proto::relay::Delivery;

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

async fn recv(client: &mut Client) -> Vec<Event> {
    let mut events = Vec::new();
    client
        .receive(Duration::from_millis(300), |e| events.push(e.clone()))
        .await
        .unwrap();
    events
}

fn texts(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(m.text.clone()),
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_group_mail_is_a_visible_event_and_blocks_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = relay(&tmp.path().join("relay")).await;
    let mut alice = init(tmp.path(), "alice", &relay).await;
    let mut bob = init(tmp.path(), "bob", &relay).await;
    alice.add_contact("bob").await.unwrap();
    bob.add_contact("alice").await.unwrap();
    alice.group_create("team", &["bob".into()]).await.unwrap();
    let joined = recv(&mut bob).await;
    assert!(
        joined
            .iter()
            .any(|e| matches!(e, Event::Group { group, .. } if group == "team")),
        "{joined:?}"
    );
    let info = bob.group_info("team").unwrap();

    // Garbage framed as each kind of group envelope, as a relay could deliver it.
    let garbage = [
        GroupEnvelope::Message(vec![0u8; 64]).to_bytes(),
        GroupEnvelope::Commit(vec![7u8; 100]).to_bytes(),
        GroupEnvelope::Welcome(vec![1u8; 10]).to_bytes(),
        vec![1, 3],
    ];
    for (n, envelope) in garbage.into_iter().enumerate() {
        let delivery = Delivery {
            id: 1_000_000 + n as u64,
            sender: *alice.identity_key().as_bytes(),
            received_at_ms: 0,
            envelope,
        };
        let events = bob.process_delivery(&delivery).await.unwrap();
        assert!(
            matches!(events.as_slice(), [Event::Rejected { .. }]),
            "{events:?}"
        );
    }
    // Nothing changed, and the group goes on.
    assert_eq!(bob.group_info("team").unwrap(), info);
    alice.send_text("#team", "still fine").await.unwrap();
    assert_eq!(texts(&recv(&mut bob).await), ["still fine"]);
    bob.send_text("#team", "and back").await.unwrap();
    let events = recv(&mut alice).await;
    assert_eq!(texts(&events), ["and back"]);
    let Some(Event::Message(m)) = events.iter().find(|e| matches!(e, Event::Message(_))) else {
        panic!("no message")
    };
    assert_eq!(m.group.as_deref(), Some("team"));
    assert_eq!(m.contact, "bob");
    // Both see the same group.
    let a = alice.group_info("team").unwrap();
    let b = bob.group_info("team").unwrap();
    assert_eq!(a.epoch_authenticator, b.epoch_authenticator);
    assert_eq!(a.epoch, Some(1));
}

/// A member can make the relay accept garbage as a group's next commit (the relay cannot check
/// MLS). Every member refuses the same bytes, so every member skips that log entry: the next
/// honest commit still goes through, and the group goes on (it used to be frozen for good:
/// every commit got StaleEpoch behind the garbage).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_garbage_commit_the_relay_accepted_is_skipped_and_the_group_goes_on() {
    let tmp = tempfile::tempdir().unwrap();
    let relay_dir = tmp.path().join("relay");
    let relay = relay(&relay_dir).await;
    let mut alice = init(tmp.path(), "alice", &relay).await;
    let mut bob = init(tmp.path(), "bob", &relay).await;
    let mut carol = init(tmp.path(), "carol", &relay).await;
    for (client, others) in [
        (&mut alice, ["bob", "carol"]),
        (&mut bob, ["alice", "carol"]),
        (&mut carol, ["alice", "bob"]),
    ] {
        for other in others {
            client.add_contact(other).await.unwrap();
        }
    }
    alice
        .group_create("team", &["bob".into(), "carol".into()])
        .await
        .unwrap();
    recv(&mut bob).await;
    recv(&mut carol).await;

    // What the relay does when carol commits garbage for the current epoch: log it as that
    // epoch's winner and move on (written straight into its database here).
    let group_id = hex::decode(&bob.group_info("team").unwrap().id).unwrap();
    let db = rusqlite::Connection::open(relay_dir.join(hush_relay::server::DATABASE_FILE)).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    let epoch: i64 = db
        .query_row(
            "SELECT epoch FROM groups WHERE group_id = ?1",
            [&group_id],
            |r| r.get(0),
        )
        .unwrap();
    db.execute(
        "INSERT INTO group_commits (group_id, epoch, sender, envelope, received_at_ms)
         VALUES (?1, ?2, ?3, ?4, 0)",
        rusqlite::params![
            group_id,
            epoch,
            carol.identity_key().as_bytes().as_slice(),
            GroupEnvelope::Commit(vec![0xff; 40]).to_bytes()
        ],
    )
    .unwrap();
    db.execute(
        "UPDATE groups SET epoch = epoch + 1 WHERE group_id = ?1",
        [&group_id],
    )
    .unwrap();
    drop(db);

    // alice removes carol: her first try is stale, she syncs, skips the garbage, and wins.
    alice.group_remove("team", &["carol".into()]).await.unwrap();
    alice.send_text("#team", "after the garbage").await.unwrap();
    let events = recv(&mut bob).await;
    assert_eq!(texts(&events), ["after the garbage"], "{events:?}");
    let a = alice.group_info("team").unwrap();
    let b = bob.group_info("team").unwrap();
    assert_eq!(a.epoch, b.epoch);
    assert_eq!(a.epoch_authenticator, b.epoch_authenticator);
    // bob can commit too (his position is past the garbage as well).
    bob.group_remove("team", &["alice".into()]).await.unwrap();
}
