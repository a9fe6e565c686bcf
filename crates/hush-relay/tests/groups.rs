//! The relay as MLS delivery service and KeyPackage server, on the real `hush-relay` process
//! over real sockets, with three clients. Envelopes are opaque bytes framed as group envelopes
//! (`1 ‖ kind ‖ …`): the relay never parses MLS, and real MLS runs in the client's tests.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::Duration;

use common::*;
use hush_net::NetError;
use hush_proto::relay::{ErrorCode, GroupCommit, GroupId, Reply, Request};

const QUIET: Duration = Duration::from_millis(300);

fn gid() -> GroupId {
    GroupId::new(vec![0x61; 16]).unwrap()
}

fn commit(epoch: u64, added: &[[u8; 32]], removed: &[[u8; 32]], tag: u8) -> Request {
    Request::GroupCommit(GroupCommit {
        group_id: gid(),
        epoch,
        added: added.to_vec(),
        removed: removed.to_vec(),
        commit: vec![1, 4, tag, tag],
        welcome: (!added.is_empty()).then(|| vec![1, 5, tag]),
    })
}

fn group_send(envelope: Vec<u8>) -> Request {
    Request::GroupSend {
        group_id: gid(),
        envelope,
    }
}

fn sync(after_epoch: u64) -> Request {
    Request::GroupSync {
        group_id: gid(),
        after_epoch,
    }
}

fn is_stale(result: &Result<Reply, NetError>) -> bool {
    matches!(result, Err(NetError::Relay(e)) if e.code == ErrorCode::StaleEpoch)
}

#[tokio::test]
async fn key_packages_pop_once_then_the_last_resort_one() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start_with(dir.path(), Some("publish_burst = 100.0\n"), true).await;
    let mut alice = User::new(&relay, "alice").await;
    let mut bob = User::new(&relay, "bob").await;
    // A name is needed first.
    let stranger = identity();
    let mut conn = connect(&relay, &stranger).await;
    let publish = Request::PublishKeyPackages {
        last_resort: Some(vec![9; 300]),
        one_time: vec![vec![1; 300], vec![2; 300]],
    };
    assert_eq!(code(conn.request(&publish).await), ErrorCode::NotRegistered);
    assert_eq!(
        bob.conn.request(&publish).await.unwrap(),
        Reply::KeyPackagesStored {
            one_time_remaining: 2
        }
    );
    let fetch = Request::FetchKeyPackage { name: "bob".into() };
    for expected in [vec![1; 300], vec![2; 300], vec![9; 300], vec![9; 300]] {
        assert_eq!(
            alice.conn.request(&fetch).await.unwrap(),
            Reply::KeyPackage {
                identity: bob.addr(),
                key_package: expected
            }
        );
    }
    assert_eq!(
        code(
            alice
                .conn
                .request(&Request::FetchKeyPackage {
                    name: "nobody".into()
                })
                .await
        ),
        ErrorCode::UnknownUser
    );
}

/// Create, fan-out, a commit race from two connections, sync and retry, leave: three members.
#[tokio::test]
async fn three_members_create_send_race_sync_leave() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start_with(dir.path(), None, true).await;
    let mut alice = User::new(&relay, "alice").await;
    let mut bob = User::new(&relay, "bob").await;
    let mut carol = User::new(&relay, "carol").await;
    let mut dave = User::new(&relay, "dave").await;
    subscribe(&mut bob.conn).await;
    subscribe(&mut carol.conn).await;

    // alice creates the group at epoch 0 adding bob and carol: each gets the Welcome live.
    assert_eq!(
        alice
            .conn
            .request(&commit(0, &[bob.addr(), carol.addr()], &[], 0))
            .await
            .unwrap(),
        Reply::CommitAccepted { epoch: 1 }
    );
    for member in [&mut bob, &mut carol] {
        let got = take(&mut member.conn, 1, T).await;
        assert_eq!(got[0].envelope, vec![1, 5, 0]);
        assert_eq!(got[0].sender, alice.addr());
        ack(&mut member.conn, vec![got[0].id]).await;
    }

    // A group message is uploaded once and reaches both other members.
    let message = vec![1, 3, 0xAA, 0xBB, 0xCC];
    let Reply::Stored { id } = alice
        .conn
        .request(&group_send(message.clone()))
        .await
        .unwrap()
    else {
        panic!("group send not stored");
    };
    assert_ne!(id, 0);
    for member in [&mut bob, &mut carol] {
        let got = take(&mut member.conn, 1, T).await;
        assert_eq!(got[0].envelope, message);
        assert_eq!(got[0].sender, alice.addr());
        assert_eq!(ack(&mut member.conn, vec![got[0].id]).await, 1);
    }
    // Not a 1:1 envelope, not from a non-member.
    assert_eq!(
        code(alice.conn.request(&group_send(vec![1, 2, 3])).await),
        ErrorCode::Malformed
    );
    assert_eq!(
        code(dave.conn.request(&group_send(vec![1, 3, 3])).await),
        ErrorCode::NotGroupMember
    );

    // bob and carol commit for epoch 1 at the same time: exactly one wins.
    let (from_bob, from_carol) = (commit(1, &[], &[], 0xB), commit(1, &[], &[], 0xC));
    let (b, c) = tokio::join!(bob.conn.request(&from_bob), carol.conn.request(&from_carol));
    let accepted =
        |r: &Result<Reply, NetError>| matches!(r, Ok(Reply::CommitAccepted { epoch: 2 }));
    assert!(
        (accepted(&b) && is_stale(&c)) || (accepted(&c) && is_stale(&b)),
        "bob: {b:?}, carol: {c:?}"
    );
    let (winner_tag, loser) = if accepted(&b) {
        (0xB, &mut carol)
    } else {
        (0xC, &mut bob)
    };
    // The loser syncs: it gets the winning commit (and the group's epoch), then retries.
    let Reply::GroupCommits(synced) = loser.conn.request(&sync(1)).await.unwrap() else {
        panic!("sync failed");
    };
    assert_eq!(synced.current_epoch, 2);
    assert_eq!(synced.commits.len(), 1);
    assert_eq!(synced.commits[0].epoch, 1);
    assert_eq!(synced.commits[0].commit, vec![1, 4, winner_tag, winner_tag]);
    // ... and it was delivered too: a commit goes to every member but its committer.
    let got = take(&mut loser.conn, 1, T).await;
    assert_eq!(got[0].envelope, vec![1, 4, winner_tag, winner_tag]);
    ack(&mut loser.conn, vec![got[0].id]).await;
    assert_eq!(
        loser.conn.request(&commit(2, &[], &[], 0xD)).await.unwrap(),
        Reply::CommitAccepted { epoch: 3 }
    );
    // Sync from the start: every commit, oldest first.
    let Reply::GroupCommits(all) = alice.conn.request(&sync(0)).await.unwrap() else {
        panic!("sync failed");
    };
    let epochs: Vec<u64> = all.commits.iter().map(|c| c.epoch).collect();
    assert_eq!((all.current_epoch, epochs), (3, vec![0, 1, 2]));
    assert_eq!(
        code(dave.conn.request(&sync(0)).await),
        ErrorCode::NotGroupMember
    );

    // carol leaves: she gets no more group mail, and may not sync.
    for member in [&mut bob, &mut carol] {
        let pending = drain(&mut member.conn, QUIET).await;
        let ids = pending.iter().map(|d| d.id).collect();
        ack(&mut member.conn, ids).await;
    }
    assert_eq!(
        carol
            .conn
            .request(&Request::GroupLeave { group_id: gid() })
            .await
            .unwrap(),
        Reply::LeftGroup
    );
    assert!(matches!(
        alice.conn.request(&group_send(vec![1, 3, 7])).await,
        Ok(Reply::Stored { .. })
    ));
    assert_eq!(take(&mut bob.conn, 1, T).await[0].envelope, vec![1, 3, 7]);
    assert!(drain(&mut carol.conn, QUIET).await.is_empty());
    assert_eq!(
        code(carol.conn.request(&sync(0)).await),
        ErrorCode::NotGroupMember
    );

    let m = relay
        .wait_metrics(T, "group gauges", |m| m.get("hush_group_members") == 2)
        .await;
    assert_eq!(m.get("hush_groups"), 1);
    assert_eq!(m.get("hush_group_messages_stored_total"), 2);
    // Welcome ×2, message ×2, winning commit ×2, retried commit ×2, last message ×1.
    assert_eq!(m.get("hush_group_fan_out_total"), 9);
    assert_eq!(m.get("hush_group_skipped_full_total"), 0);
}

/// A member whose mailbox is full is skipped; the others still get the message.
#[tokio::test]
async fn a_full_mailbox_does_not_block_the_group() {
    let dir = tempfile::tempdir().unwrap();
    let config = "mailbox_max_messages = 1\nmax_group_members = 3\n";
    let relay = Relay::start_with(dir.path(), Some(config), true).await;
    let mut alice = User::new(&relay, "alice").await;
    let mut bob = User::new(&relay, "bob").await;
    let carol = User::new(&relay, "carol").await;
    let dave = User::new(&relay, "dave").await;
    // A new group starts at epoch 0; a commit must be framed as one.
    assert_eq!(
        code(alice.conn.request(&commit(5, &[bob.addr()], &[], 0)).await),
        ErrorCode::UnknownGroup
    );
    let Request::GroupCommit(mut not_a_commit) = commit(0, &[], &[], 0) else {
        unreachable!()
    };
    not_a_commit.commit = vec![1, 3, 0];
    assert_eq!(
        code(
            alice
                .conn
                .request(&Request::GroupCommit(not_a_commit))
                .await
        ),
        ErrorCode::Malformed
    );
    assert_eq!(
        alice
            .conn
            .request(&commit(0, &[bob.addr(), carol.addr()], &[], 0))
            .await
            .unwrap(),
        Reply::CommitAccepted { epoch: 1 }
    );
    // Both mailboxes hold the Welcome (full at 1); bob fetches and acks his.
    subscribe(&mut bob.conn).await;
    let welcome = take(&mut bob.conn, 1, T).await;
    ack(&mut bob.conn, vec![welcome[0].id]).await;
    assert!(matches!(
        alice.conn.request(&group_send(vec![1, 3, 1])).await,
        Ok(Reply::Stored { .. })
    ));
    assert_eq!(take(&mut bob.conn, 1, T).await[0].envelope, vec![1, 3, 1]);
    let m = relay
        .wait_metrics(T, "a skipped member", |m| {
            m.get("hush_group_skipped_full_total") == 1
        })
        .await;
    assert_eq!(m.get("hush_group_fan_out_total"), 3);
    // A fourth member is beyond max_group_members = 3.
    assert_eq!(
        code(alice.conn.request(&commit(1, &[dave.addr()], &[], 1)).await),
        ErrorCode::GroupFull
    );
    drop(carol);
}

/// Group sends and commits take tokens from the same per-connection send limit as 1:1 sends,
/// one each however many members they reach.
#[tokio::test]
async fn group_requests_share_the_send_rate_limit() {
    let dir = tempfile::tempdir().unwrap();
    let config = "send_rate = 0.001\nsend_burst = 3.0\n";
    let relay = Relay::start_with(dir.path(), Some(config), true).await;
    let mut alice = User::new(&relay, "alice").await;
    let bob = User::new(&relay, "bob").await;
    send(&mut alice.conn, bob.addr(), envelope(b"1:1")).await;
    assert_eq!(
        alice
            .conn
            .request(&commit(0, &[bob.addr()], &[], 0))
            .await
            .unwrap(),
        Reply::CommitAccepted { epoch: 1 }
    );
    assert!(matches!(
        alice.conn.request(&group_send(vec![1, 3, 1])).await,
        Ok(Reply::Stored { .. })
    ));
    assert_eq!(
        code(alice.conn.request(&group_send(vec![1, 3, 2])).await),
        ErrorCode::RateLimited
    );
    assert_eq!(
        code(alice.conn.request(&commit(1, &[], &[], 1)).await),
        ErrorCode::RateLimited
    );
}

/// Once a user's fetch budget (shared by bundles and KeyPackages) is spent, fetches get its
/// last-resort KeyPackage and its one-time stock stays for later.
#[tokio::test]
async fn a_spent_fetch_budget_serves_the_last_resort_key_package() {
    let dir = tempfile::tempdir().unwrap();
    let config = "per_user_fetch_rate = 0.001\nper_user_fetch_burst = 2.0\n";
    let relay = Relay::start_with(dir.path(), Some(config), true).await;
    let mut alice = User::new(&relay, "alice").await;
    let mut bob = User::new(&relay, "bob").await;
    let one_time: Vec<Vec<u8>> = (1..=5u8).map(|n| vec![n; 100]).collect();
    assert_eq!(
        bob.conn
            .request(&Request::PublishKeyPackages {
                last_resort: Some(vec![9; 100]),
                one_time,
            })
            .await
            .unwrap(),
        Reply::KeyPackagesStored {
            one_time_remaining: 5
        }
    );
    let fetch = Request::FetchKeyPackage { name: "bob".into() };
    let mut got = Vec::new();
    for _ in 0..4 {
        match alice.conn.request(&fetch).await.unwrap() {
            Reply::KeyPackage { key_package, .. } => got.push(key_package[0]),
            other => panic!("unexpected {other:?}"),
        }
    }
    // The first fetch starts the budget, the second spends it: then only the last-resort one.
    assert_eq!(got, vec![1, 2, 9, 9]);
    // A bundle fetch draws on the same budget: no one-time prekey either.
    let Reply::Bundle(bundle) = alice
        .conn
        .request(&Request::FetchBundle { name: "bob".into() })
        .await
        .unwrap()
    else {
        panic!("no bundle");
    };
    assert!(bundle.one_time_prekey.is_none());
}

/// Group mail goes only through GroupSend and GroupCommit (a commit or proposal sent as 1:1
/// mail would skip the per-group epoch order: a member could fork the group), and only from an
/// identity that holds a name (every stored byte belongs to someone named).
#[tokio::test]
async fn group_envelopes_are_refused_as_one_to_one_mail_and_from_nameless_identities() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(dir.path()).await;
    let mut alice = User::new(&relay, "alice").await;
    let bob = User::new(&relay, "bob").await;
    for envelope in [vec![1, 3, 1], vec![1, 4, 1], vec![1, 5, 1]] {
        let one_to_one = Request::Send {
            recipient: bob.addr(),
            envelope,
        };
        assert_eq!(
            code(alice.conn.request(&one_to_one).await),
            ErrorCode::Malformed
        );
    }
    let stranger = identity();
    let mut conn = connect(&relay, &stranger).await;
    assert_eq!(
        code(conn.request(&commit(0, &[bob.addr()], &[], 0)).await),
        ErrorCode::NotRegistered
    );
    assert_eq!(
        code(conn.request(&group_send(vec![1, 3, 1])).await),
        ErrorCode::NotRegistered
    );
}

/// A fan-out costs send tokens per 20 recipients, so a large group cannot multiply a sender's
/// rate limit into thousands of mailbox rows a second.
#[tokio::test]
async fn fan_out_costs_send_tokens_per_recipients() {
    let dir = tempfile::tempdir().unwrap();
    let config = "send_rate = 0.001\nsend_burst = 4.0\n";
    let relay = Relay::start_with(dir.path(), Some(config), true).await;
    let mut alice = User::new(&relay, "alice").await;
    let mut others = Vec::new();
    for n in 0..40 {
        others.push(User::new(&relay, &format!("m{n}")).await.addr());
    }
    // 1 token for the commit, 2 more for its 40 Welcomes: 1 left.
    assert_eq!(
        alice
            .conn
            .request(&commit(0, &others, &[], 0))
            .await
            .unwrap(),
        Reply::CommitAccepted { epoch: 1 }
    );
    assert!(matches!(
        alice.conn.request(&group_send(vec![1, 3, 1])).await,
        Ok(Reply::Stored { .. })
    ));
    // That message cost 1 + 2: the bucket is in debt.
    assert_eq!(
        code(alice.conn.request(&group_send(vec![1, 3, 2])).await),
        ErrorCode::RateLimited
    );
}
