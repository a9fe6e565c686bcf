//! End-to-end tests of the real `hush-relay` process over real sockets: delivery and acks,
//! crash safety under SIGKILL, graceful SIGTERM, mailbox quotas, TTL expiry, and a slow
//! reader. Each test starts its own relay on a temporary data directory and kills it at the
//! end (also on panic).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::{Duration, Instant};

use common::*;
use hush_net::{NoiseReader, NoiseWriter};
use hush_proto::relay::{ErrorCode, Reply, Request, ServerMessage};

/// Two users talk: offline messages wait in the mailbox and are delivered on subscribe, online
/// ones are pushed live, an ack deletes, and an unacked message is delivered again on the next
/// connection (at-least-once).
#[tokio::test]
async fn messages_flow_offline_and_live_and_acks_delete() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(dir.path()).await;
    let mut alice = User::new(&relay, "alice").await;
    let mut bob = User::new(&relay, "bob").await;

    // Bob is connected but not subscribed: alice's message waits for him.
    let m1 = send(&mut alice.conn, bob.addr(), envelope(b"offline hello")).await;
    assert!(
        bob.conn
            .next_delivery(Duration::from_millis(300))
            .await
            .unwrap()
            .is_none(),
        "nothing is pushed before Subscribe"
    );
    // Bob comes online on a fresh connection and gets it.
    bob.reconnect(&relay).await;
    subscribe(&mut bob.conn).await;
    let d = take(&mut bob.conn, 1, T).await;
    assert_eq!(d[0].id, m1);
    assert_eq!(d[0].envelope, envelope(b"offline hello"));
    assert_eq!(
        d[0].sender,
        alice.addr(),
        "sender is the authenticated identity"
    );

    // Online: pushed live, in order.
    let m2 = send(&mut alice.conn, bob.addr(), envelope(b"live 1")).await;
    let m3 = send(&mut alice.conn, bob.addr(), envelope(b"live 2")).await;
    assert!(m1 < m2 && m2 < m3, "ids increase");
    let d = take(&mut bob.conn, 2, T).await;
    assert_eq!((d[0].id, d[1].id), (m2, m3));
    assert_eq!(d[0].envelope, envelope(b"live 1"));
    assert_eq!(d[1].envelope, envelope(b"live 2"));

    // And the other way round, while both are subscribed.
    subscribe(&mut alice.conn).await;
    let r1 = send(&mut bob.conn, alice.addr(), envelope(b"reply")).await;
    let d = take(&mut alice.conn, 1, T).await;
    assert_eq!((d[0].id, d[0].sender), (r1, bob.addr()));
    assert_eq!(ack(&mut alice.conn, vec![r1]).await, 1);

    // Bob acks m1 and m2 but not m3, then reconnects: only m3 comes again.
    assert_eq!(ack(&mut bob.conn, vec![m1, m2]).await, 2);
    assert_eq!(ack(&mut bob.conn, vec![m1]).await, 0, "already deleted");
    bob.reconnect(&relay).await;
    subscribe(&mut bob.conn).await;
    let again = drain(&mut bob.conn, Duration::from_millis(500)).await;
    let ids: Vec<u64> = again.iter().map(|d| d.id).collect();
    assert_eq!(
        ids,
        vec![m3],
        "acked messages stay deleted, the unacked one returns"
    );
    assert_eq!(again[0].envelope, envelope(b"live 2"));

    // Once everything is acked, a new connection gets nothing.
    assert_eq!(ack(&mut bob.conn, vec![m3]).await, 1);
    bob.reconnect(&relay).await;
    subscribe(&mut bob.conn).await;
    let none = drain(&mut bob.conn, Duration::from_millis(500)).await;
    assert!(none.is_empty(), "re-delivered after ack: {none:?}");
    let none = drain(&mut alice.conn, Duration::from_millis(100)).await;
    assert!(none.is_empty(), "alice got extra deliveries: {none:?}");
}

/// A per-test envelope: its index, recoverable from the bytes, plus filler.
fn numbered(i: u32, len: usize) -> Vec<u8> {
    envelope_of_len(&i.to_be_bytes(), len)
}

fn number_of(envelope: &[u8]) -> u32 {
    u32::from_be_bytes(envelope[2..6].try_into().unwrap())
}

/// Pipeline `count` sends to `to` on a split connection, as fast as the socket allows. Returns
/// when all are written or the connection breaks. Request id `i + 1` carries envelope `i`.
fn spawn_sender(
    mut writer: NoiseWriter,
    to: [u8; 32],
    count: u32,
    len: usize,
) -> tokio::task::JoinHandle<NoiseWriter> {
    tokio::spawn(async move {
        for i in 0..count {
            let request = Request::Send {
                recipient: to,
                envelope: numbered(i, len),
            };
            if writer
                .send(&request.encode(u64::from(i) + 1))
                .await
                .is_err()
            {
                break;
            }
        }
        writer
    })
}

/// Read replies to a [`spawn_sender`] stream: envelope number → relay id for each `Stored`.
/// Calls `on_count` once when `trigger` replies have arrived; stops at `count` replies or when
/// the connection ends (the relay died or shut down).
async fn collect_stored(
    reader: &mut NoiseReader,
    count: u32,
    trigger: usize,
    mut on_count: impl FnMut(),
) -> BTreeMap<u32, u64> {
    let mut stored = BTreeMap::new();
    let mut triggered = false;
    while stored.len() < count as usize {
        let frame = match tokio::time::timeout(T, reader.recv()).await {
            Ok(Ok(Some(frame))) => frame,
            Ok(Ok(None)) | Ok(Err(_)) => break,
            Err(_) => panic!("relay neither replied nor closed"),
        };
        match ServerMessage::decode(&frame).unwrap() {
            ServerMessage::Response {
                request_id,
                result: Ok(Reply::Stored { id }),
            } => {
                let i = u32::try_from(request_id - 1).unwrap();
                assert!(
                    stored.insert(i, id).is_none(),
                    "two replies to request {request_id}"
                );
            }
            other => panic!("unexpected message in the send stream: {other:?}"),
        }
        if !triggered && stored.len() >= trigger {
            triggered = true;
            on_count();
        }
    }
    stored
}

/// Fetch the whole mailbox on a new connection: every delivery until `quiet` passes without
/// one (after at least `at_least` have come).
async fn fetch_all(
    user: &mut User,
    relay: &Relay,
    at_least: usize,
) -> Vec<hush_proto::relay::Delivery> {
    user.reconnect(relay).await;
    subscribe(&mut user.conn).await;
    let mut all = take(&mut user.conn, at_least, Duration::from_secs(30)).await;
    all.extend(drain(&mut user.conn, Duration::from_millis(700)).await);
    all
}

/// What a recipient must see after a crash or restart: every envelope acked as `Stored` (per
/// sender: envelope number → relay id), under the id its sender was given, and nothing twice.
fn check_after_restart(
    delivered: &[hush_proto::relay::Delivery],
    stored: &[([u8; 32], &BTreeMap<u32, u64>)],
    sent: u32,
    len: usize,
) {
    let mut ids = HashSet::new();
    let mut seen: HashMap<([u8; 32], u32), u64> = HashMap::new();
    for d in delivered {
        assert!(
            ids.insert(d.id),
            "relay message id {} delivered twice",
            d.id
        );
        let n = number_of(&d.envelope);
        assert!(n < sent, "an envelope nobody sent: {}", short(&d.envelope));
        assert_eq!(d.envelope, numbered(n, len), "envelope {n} corrupted");
        assert!(
            stored.iter().any(|(sender, _)| *sender == d.sender),
            "unknown sender"
        );
        if let Some(first) = seen.insert((d.sender, n), d.id) {
            panic!("envelope {n} delivered twice, as ids {first} and {}", d.id);
        }
    }
    assert!(
        delivered.windows(2).all(|w| w[0].id < w[1].id),
        "deliveries out of id order"
    );
    for (sender, acked) in stored {
        let lost: Vec<u32> = acked
            .keys()
            .filter(|n| !seen.contains_key(&(*sender, **n)))
            .copied()
            .collect();
        assert!(
            lost.is_empty(),
            "{} envelopes acked as Stored were lost, e.g. {:?}",
            lost.len(),
            &lost[..lost.len().min(10)]
        );
        for (n, id) in acked.iter() {
            assert_eq!(
                seen[&(*sender, *n)],
                *id,
                "envelope {n} came back under another id"
            );
        }
    }
}

const FAST_SENDS: &str = "send_rate = 1000000.0\nsend_burst = 1000000.0\n";

/// SIGKILL in the middle of two concurrent pipelined streams of sends (so group commits hold
/// several writes): after a restart on the same data directory (same static key), every
/// envelope the relay had acknowledged as `Stored` is delivered, exactly once, under the id it
/// was acknowledged with; ids are not reused after the crash.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_loses_no_acknowledged_envelope() {
    const SENDS: u32 = 1500;
    const LEN: usize = 200;
    let dir = tempfile::tempdir().unwrap();
    let mut relay = Relay::start_with(dir.path(), Some(FAST_SENDS), false).await;
    let key_before = relay.key;
    let pub_before = relay.pub_file();
    let alice = User::new(&relay, "alice").await;
    let carol = User::new(&relay, "carol").await;
    let mut bob = User::new(&relay, "bob").await;
    let (alice_addr, carol_addr) = (alice.addr(), carol.addr());

    // Carol streams in the background; alice's reader kills the relay after 500 acks.
    let (mut carol_reader, carol_writer) = carol.conn.into_split();
    let carol_sender = spawn_sender(carol_writer, bob.addr(), SENDS, LEN);
    let carol_acks =
        tokio::spawn(
            async move { collect_stored(&mut carol_reader, SENDS, usize::MAX, || {}).await },
        );
    let (mut reader, writer) = alice.conn.into_split();
    let sender = spawn_sender(writer, bob.addr(), SENDS, LEN);
    let started = Instant::now();
    let alice_stored = collect_stored(&mut reader, SENDS, 500, || relay.kill()).await;
    let carol_stored = carol_acks.await.unwrap();
    let _ = sender.await;
    let _ = carol_sender.await;
    let acked = alice_stored.len() + carol_stored.len();
    eprintln!(
        "SIGKILL after 500 of alice's acks ({:?}): {} + {} of 2 x {SENDS} acked as Stored",
        started.elapsed(),
        alice_stored.len(),
        carol_stored.len()
    );
    assert!(alice_stored.len() >= 500);
    assert!(
        acked < 2 * SENDS as usize,
        "the relay was killed after the streams ended, not in the middle"
    );

    relay.restart().await;
    assert_eq!(
        relay.key, key_before,
        "the static key changed across a crash"
    );
    assert_eq!(
        relay.pub_file(),
        pub_before,
        "relay.pub changed across a crash"
    );

    let delivered = fetch_all(&mut bob, &relay, acked).await;
    eprintln!(
        "after restart: {} delivered ({acked} acked + {} committed but unacked)",
        delivered.len(),
        delivered.len() - acked
    );
    check_after_restart(
        &delivered,
        &[(alice_addr, &alice_stored), (carol_addr, &carol_stored)],
        SENDS,
        LEN,
    );

    // Ids keep increasing after the crash, so an ack can never hit a newer message.
    let max_id = delivered.iter().map(|d| d.id).max().unwrap();
    let to_self = bob.addr();
    let new_id = send(&mut bob.conn, to_self, envelope(b"after crash")).await;
    assert!(
        new_id > max_id,
        "id {new_id} reused after a crash (max before {max_id})"
    );
}

/// SIGTERM while a client pipelines sends and another sits subscribed: the process exits with
/// status 0 within a few seconds, and after a restart everything acknowledged before is
/// delivered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_cleanly_and_keeps_acknowledged_envelopes() {
    const SENDS: u32 = 1000;
    const LEN: usize = 120;
    let dir = tempfile::tempdir().unwrap();
    let mut relay = Relay::start_with(dir.path(), Some(FAST_SENDS), false).await;
    let alice = User::new(&relay, "alice").await;
    let mut bob = User::new(&relay, "bob").await;
    let mut carol = User::new(&relay, "carol").await;
    let alice_addr = alice.addr();
    // Carol stays connected and subscribed: an idle client must not hold up shutdown.
    subscribe(&mut carol.conn).await;

    let (mut reader, writer) = alice.conn.into_split();
    let sender = spawn_sender(writer, bob.addr(), SENDS, LEN);
    let mut signalled = None;
    let stored = collect_stored(&mut reader, SENDS, 200, || {
        relay.sigterm();
        signalled = Some(Instant::now());
    })
    .await;
    let _ = sender.await;
    let signalled = signalled.expect("SIGTERM was sent");
    let status = relay
        .wait_exit(Duration::from_secs(5).saturating_sub(signalled.elapsed()))
        .await
        .expect("relay still running 5 s after SIGTERM");
    eprintln!(
        "SIGTERM after 200 acks: {} of {SENDS} acked; exit {status:?} {:?} after the signal",
        stored.len(),
        signalled.elapsed()
    );
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
    assert!(
        carol.conn.next_delivery(T).await.is_err(),
        "the subscribed client is disconnected"
    );

    relay.restart().await;
    let delivered = fetch_all(&mut bob, &relay, stored.len()).await;
    check_after_restart(&delivered, &[(alice_addr, &stored)], SENDS, LEN);
    carol.reconnect(&relay).await;
    ping(&mut carol.conn).await;
}

/// SIGTERM with a client that stopped reading (subscribed, its socket full of deliveries, and
/// still pipelining pings whose replies queue up behind them) still exits with status 0 within
/// a few seconds: a stalled peer must not hold the relay's shutdown hostage for the idle
/// timeout (300 s by default). Everything acknowledged is there after the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_exits_promptly_even_with_a_client_that_does_not_read() {
    const SENDS: u32 = 1000;
    const LEN: usize = 6000;
    let dir = tempfile::tempdir().unwrap();
    let mut relay = Relay::start_with(dir.path(), Some(FAST_SENDS), false).await;
    let alice = User::new(&relay, "alice").await;
    let mut bob = User::new(&relay, "bob").await;
    let alice_addr = alice.addr();
    subscribe(&mut bob.conn).await;
    // Bob stops reading; alice fills his socket.
    let (mut reader, writer) = alice.conn.into_split();
    let sender = spawn_sender(writer, bob.addr(), SENDS, LEN);
    let stored = collect_stored(&mut reader, SENDS, usize::MAX, || {}).await;
    let _ = sender.await;
    assert_eq!(stored.len(), SENDS as usize);
    // Bob pipelines pings: their replies fill his outbound queue behind the deliveries.
    let (_unread, mut bob_writer) = bob.conn.into_split();
    let pinger = tokio::spawn(async move {
        for i in 0..100_000u64 {
            if bob_writer.send(&Request::Ping.encode(i + 2)).await.is_err() {
                break;
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(500)).await;

    relay.sigterm();
    let signalled = Instant::now();
    let status = relay.wait_exit(Duration::from_secs(8)).await;
    eprintln!("exit {status:?} {:?} after SIGTERM", signalled.elapsed());
    let status = status.expect("relay still running 8 s after SIGTERM");
    assert!(status.success(), "exit status after SIGTERM: {status:?}");
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "shutdown took {:?}",
        signalled.elapsed()
    );
    pinger.abort();

    relay.restart().await;
    let mut bob = User {
        conn: connect(&relay, &bob.id).await,
        id: bob.id,
        name: bob.name,
    };
    let delivered = fetch_all(&mut bob, &relay, stored.len()).await;
    check_after_restart(&delivered, &[(alice_addr, &stored)], SENDS, LEN);
}

/// Mailbox quotas from the config file: the message quota refuses the 4th send with
/// MailboxFull and keeps the first 3; the byte quota refuses what would not fit but accepts a
/// smaller envelope that does; an ack frees room; other mailboxes are unaffected.
#[tokio::test]
async fn mailbox_quotas_refuse_beyond_the_limit_and_keep_what_fits() {
    let dir = tempfile::tempdir().unwrap();
    let config = "mailbox_max_messages = 3\nmailbox_max_bytes = 1000\n";
    let relay = Relay::start_with(dir.path(), Some(config), false).await;
    let mut alice = User::new(&relay, "alice").await;
    let mut bob = User::new(&relay, "bob").await;
    let mut carol = User::new(&relay, "carol").await;
    let mut dave = User::new(&relay, "dave").await;

    // Message quota.
    let mut kept = Vec::new();
    for i in 0..3u8 {
        kept.push(send(&mut alice.conn, bob.addr(), envelope(&[i])).await);
    }
    let full = alice
        .conn
        .request(&Request::Send {
            recipient: bob.addr(),
            envelope: envelope(&[3]),
        })
        .await;
    assert_eq!(code(full), ErrorCode::MailboxFull);
    // Bob's full mailbox does not stop anyone writing to carol.
    let to_carol = send(&mut alice.conn, carol.addr(), envelope(b"c")).await;
    subscribe(&mut bob.conn).await;
    let got = drain(&mut bob.conn, Duration::from_millis(500)).await;
    let ids: Vec<u64> = got.iter().map(|d| d.id).collect();
    assert_eq!(ids, kept, "exactly the first three are kept");
    for (i, d) in got.iter().enumerate() {
        assert_eq!(d.envelope, envelope(&[i as u8]));
    }
    // Acking one makes room for exactly one more.
    assert_eq!(ack(&mut bob.conn, vec![kept[0]]).await, 1);
    let again = send(&mut alice.conn, bob.addr(), envelope(&[4])).await;
    let live = take(&mut bob.conn, 1, T).await;
    assert_eq!(live[0].id, again);
    let full = alice
        .conn
        .request(&Request::Send {
            recipient: bob.addr(),
            envelope: envelope(&[5]),
        })
        .await;
    assert_eq!(code(full), ErrorCode::MailboxFull);

    // Byte quota (1000): 400 + 400 fit, another 400 does not, 150 still does.
    let a = send(&mut alice.conn, dave.addr(), envelope_of_len(b"a", 400)).await;
    let b = send(&mut alice.conn, dave.addr(), envelope_of_len(b"b", 400)).await;
    let over = alice
        .conn
        .request(&Request::Send {
            recipient: dave.addr(),
            envelope: envelope_of_len(b"x", 400),
        })
        .await;
    assert_eq!(code(over), ErrorCode::MailboxFull);
    let c = send(&mut alice.conn, dave.addr(), envelope_of_len(b"c", 150)).await;
    subscribe(&mut dave.conn).await;
    let got = drain(&mut dave.conn, Duration::from_millis(500)).await;
    assert_eq!(got.iter().map(|d| d.id).collect::<Vec<_>>(), vec![a, b, c]);
    assert_eq!(got[2].envelope, envelope_of_len(b"c", 150));
    // Acking the two large ones frees their bytes: two more of 400 fit again (950 bytes).
    assert_eq!(ack(&mut dave.conn, vec![a, b]).await, 2);
    send(&mut alice.conn, dave.addr(), envelope_of_len(b"d", 400)).await;
    send(&mut alice.conn, dave.addr(), envelope_of_len(b"e", 400)).await;

    subscribe(&mut carol.conn).await;
    assert_eq!(take(&mut carol.conn, 1, T).await[0].id, to_carol);
}

/// TTL from the config file: a message nobody fetches is deleted after message_ttl_secs by
/// the sweep every expiry_interval_secs, counted in hush_envelopes_expired_total, and a later
/// subscribe gets nothing; a message fetched in time is delivered.
#[tokio::test]
async fn unfetched_messages_expire_after_the_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let config = "message_ttl_secs = 1\nexpiry_interval_secs = 1\n";
    let relay = Relay::start_with(dir.path(), Some(config), true).await;
    let mut alice = User::new(&relay, "alice").await;
    let mut bob = User::new(&relay, "bob").await;
    let mut carol = User::new(&relay, "carol").await;

    // Carol is online: her message is pushed at once and acked.
    subscribe(&mut carol.conn).await;
    let to_carol = send(&mut alice.conn, carol.addr(), envelope(b"in time")).await;
    let d = take(&mut carol.conn, 1, T).await;
    assert_eq!(d[0].id, to_carol);
    assert_eq!(ack(&mut carol.conn, vec![to_carol]).await, 1);

    // Bob is not subscribed; his message should be gone within ~3 s.
    let sent = Instant::now();
    send(&mut alice.conn, bob.addr(), envelope(b"too late")).await;
    assert_eq!(relay.scrape().await.get("hush_mailbox_messages"), 1);
    let m = relay
        .wait_metrics(Duration::from_secs(6), "an expired envelope", |m| {
            m.get("hush_envelopes_expired_total") >= 1
        })
        .await;
    eprintln!("expired {:?} after sending", sent.elapsed());
    assert!(
        sent.elapsed() >= Duration::from_millis(900),
        "expired before its TTL ({:?})",
        sent.elapsed()
    );
    assert_eq!(m.get("hush_envelopes_expired_total"), 1);
    assert_eq!(m.get("hush_mailbox_messages"), 0);
    assert_eq!(m.get("hush_mailbox_bytes"), 0);
    subscribe(&mut bob.conn).await;
    let got = drain(&mut bob.conn, Duration::from_millis(700)).await;
    assert!(got.is_empty(), "an expired message was delivered: {got:?}");
}

/// A recipient subscribes while a sender is streaming to it (300 already waiting, more
/// arriving): the relay hands over from the mailbox to live pushes without a gap or a
/// duplicate, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribing_mid_stream_hands_over_from_mailbox_to_live_exactly_once() {
    const SENDS: u32 = 1500;
    const LEN: usize = 100;
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start_with(dir.path(), Some(FAST_SENDS), false).await;
    let alice = User::new(&relay, "alice").await;
    let mut bob = User::new(&relay, "bob").await;

    let (mut reader, writer) = alice.conn.into_split();
    let sender = spawn_sender(writer, bob.addr(), SENDS, LEN);
    let (waiting_tx, waiting_rx) = tokio::sync::oneshot::channel();
    let acks = tokio::spawn(async move {
        let mut waiting = Some(waiting_tx);
        collect_stored(&mut reader, SENDS, 300, || {
            let _ = waiting.take().unwrap().send(());
        })
        .await
    });
    waiting_rx.await.unwrap();
    subscribe(&mut bob.conn).await;
    let got = take(&mut bob.conn, SENDS as usize, Duration::from_secs(30)).await;
    let stored = acks.await.unwrap();
    let _ = sender.await;
    assert_eq!(stored.len(), SENDS as usize);
    let extra = drain(&mut bob.conn, Duration::from_millis(500)).await;
    assert!(
        extra.is_empty(),
        "{} duplicate or extra deliveries",
        extra.len()
    );
    for (i, d) in got.iter().enumerate() {
        let n = number_of(&d.envelope);
        assert_eq!(
            n, i as u32,
            "delivery {i} is envelope {n}: out of order or duplicated"
        );
        assert_eq!(d.id, stored[&n]);
    }
}

/// A subscribed client that does not read while 2000 messages arrive (tiny outbound and live
/// queues, so its queues overflow and the relay must fall back to the mailbox) gets all of
/// them, in order, exactly once, when it starts reading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_gets_everything_in_order_exactly_once() {
    const SENDS: u32 = 2000;
    const LEN: usize = 6000;
    let dir = tempfile::tempdir().unwrap();
    let config = format!("{FAST_SENDS}outbound_queue = 8\nlive_queue = 8\n");
    let relay = Relay::start_with(dir.path(), Some(&config), true).await;
    let alice = User::new(&relay, "alice").await;
    let mut bob = User::new(&relay, "bob").await;
    subscribe(&mut bob.conn).await;
    // Bob now stops reading.

    let (mut reader, writer) = alice.conn.into_split();
    let sender = spawn_sender(writer, bob.addr(), SENDS, LEN);
    let stored = collect_stored(&mut reader, SENDS, usize::MAX, || {}).await;
    let _ = sender.await;
    assert_eq!(stored.len(), SENDS as usize, "every send stored");
    let pushed = relay.scrape().await.get("hush_envelopes_delivered_total");
    eprintln!("pushed to bob's connection while he was not reading: {pushed}");
    assert!(
        pushed < u64::from(SENDS),
        "the relay claims to have pushed all {SENDS} into a socket nobody reads"
    );

    let got = take(&mut bob.conn, SENDS as usize, Duration::from_secs(40)).await;
    let extra = drain(&mut bob.conn, Duration::from_millis(500)).await;
    assert!(
        extra.is_empty(),
        "{} duplicate or extra deliveries",
        extra.len()
    );
    for (i, d) in got.iter().enumerate() {
        let n = number_of(&d.envelope);
        assert_eq!(
            n, i as u32,
            "delivery {i} is envelope {n}: out of order or duplicated"
        );
        assert_eq!(d.id, stored[&n]);
        assert_eq!(d.envelope, numbered(n, LEN));
    }
    ping(&mut bob.conn).await;
}

/// The operator command `hush-relay free-name`, run against a live relay: the name becomes
/// free for a new identity, the old identity's bundle is gone, and a name that is not
/// registered gives exit 1 without touching anything.
#[tokio::test]
async fn free_name_lets_a_new_identity_register_the_name() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(dir.path()).await;
    let old_bob = User::new(&relay, "bob").await;
    let mut alice = User::new(&relay, "alice").await;

    // A second identity cannot take the name while it is registered.
    let new_bob = identity();
    let mut new_conn = connect(&relay, &new_bob).await;
    let taken = new_conn
        .request(&Request::Register {
            name: "bob".into(),
            signature: new_bob.sign(&hush_proto::relay::register_message("bob")),
        })
        .await;
    assert_eq!(code(taken), ErrorCode::NameTaken);

    let free = |name: &str| {
        std::process::Command::new(RELAY_BIN)
            .arg("free-name")
            .arg("--data")
            .arg(dir.path())
            .arg(name)
            .output()
            .unwrap()
    };
    let out = free("bob");
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(&hex::encode(old_bob.addr())),
        "the freed identity is named: {stdout}"
    );
    let again = free("bob");
    assert_eq!(again.status.code(), Some(1), "{again:?}");
    assert!(String::from_utf8_lossy(&again.stderr).contains("no user is registered"));

    // With the name free, nobody gets a bundle for it, then the new identity registers it.
    let gone = alice
        .conn
        .request(&Request::FetchBundle { name: "bob".into() })
        .await;
    assert_eq!(code(gone), ErrorCode::UnknownUser);
    register(&mut new_conn, &new_bob, "bob").await;
    publish(&mut new_conn, &new_bob, 3).await;
    let Reply::Bundle(bundle) = alice
        .conn
        .request(&Request::FetchBundle { name: "bob".into() })
        .await
        .unwrap()
    else {
        panic!("no bundle for the new bob")
    };
    assert_eq!(bundle.identity_key, new_bob.public_key());
    bundle
        .verify(hush_proto::Profile::V1)
        .expect("the new bundle verifies");
}

/// A storage failure while the relay looks a recipient up is the relay's problem, answered
/// `Internal` (retry later), never `UnknownUser`: clients take `UnknownUser` as "this person is
/// gone" and fail the message for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_recipient_lookup_is_internal_not_unknown_user() {
    let tmp = tempfile::tempdir().unwrap();
    let mut relay = Relay::start(tmp.path()).await;
    let bob = User::new(&relay, "bob").await;
    let bob_addr = bob.addr();
    drop(bob);
    // A fresh process: its cache of registered identities is empty, so it must ask the store.
    relay.restart().await;
    let mut alice = User::new(&relay, "alice").await;
    let db = rusqlite::Connection::open(relay.data.join("relay.sqlite3")).unwrap();
    db.busy_timeout(Duration::from_secs(5)).unwrap();
    db.execute_batch("ALTER TABLE users RENAME TO users_unreadable")
        .unwrap();
    let result = alice
        .conn
        .request(&Request::Send {
            recipient: bob_addr,
            envelope: envelope(b"for bob"),
        })
        .await;
    assert_eq!(code(result), ErrorCode::Internal);
}
