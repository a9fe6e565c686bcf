//! Identities are free, so every resource a client can make the relay hold is bounded per
//! identity and per source, and a drained resource degrades service instead of denying it:
//! connection caps per IP and per identity, one live subscription per identity, queues bounded
//! in bytes, PublishPrekeys only after Register and rate-limited, a global storage quota with a
//! per-sender share, bundles
//! without a one-time prekey once a user's fetch budget is spent, and a bounded metrics
//! endpoint. Each test runs the real `hush-relay` process with a bystander that must keep
//! working.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::time::{Duration, Instant};

use common::*;
use hush_net::NetError;
use hush_proto::envelope::Envelope;
use hush_proto::relay::{ErrorCode, Reply, Request, ServerMessage};
use hush_proto::{LocalPrekeys, Session};
use rand_core::OsRng;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// A connection attempt's typed refusal (panics if it was served or failed otherwise).
async fn refused_connect(relay: &Relay, id: &hush_proto::IdentityKeyPair) -> ErrorCode {
    match hush_net::connect(relay.addr, &relay.key, id, T).await {
        Err(NetError::Relay(e)) => e.code,
        Err(other) => panic!("connection failed without a typed error: {other}"),
        Ok(_) => panic!("connection was served"),
    }
}

/// Connect, retrying while a slot is still being released by a connection that just closed.
async fn connect_eventually(
    relay: &Relay,
    id: &hush_proto::IdentityKeyPair,
) -> hush_net::Connection {
    let deadline = Instant::now() + T;
    loop {
        match hush_net::connect(relay.addr, &relay.key, id, T).await {
            Ok(conn) => return conn,
            Err(e) if Instant::now() < deadline => {
                eprintln!("retrying connect: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("no slot freed: {e}"),
        }
    }
}

/// Whether the relay closes `raw` within `within`, reading past whatever it still sends.
async fn closed_after_draining(raw: &mut Raw, within: Duration) -> bool {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, raw.reader.recv()).await {
            Err(_) => return false,
            Ok(Ok(Some(_))) => continue,
            Ok(Ok(None)) | Ok(Err(_)) => return true,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Item 6: a drained user still gets sessions
// ---------------------------------------------------------------------------------------------

/// With a per-user fetch budget of 2, a flooder fetching bob's bundle every 100 ms keeps bob's
/// bucket empty. Another client's fetch still gets bob's bundle, without a one-time prekey,
/// starts a session from it and reaches bob; the flood pops no one-time prekey beyond the
/// budget.
#[tokio::test]
async fn a_drained_users_bundle_is_served_without_a_one_time_prekey() {
    let config = "per_user_fetch_rate = 0.01\nper_user_fetch_burst = 2.0\n";
    let (_dir, relay, mut bystander) = with_bystander(Some(config)).await;
    let mut bob = User::new(&relay, "bob").await; // 5 one-time prekeys
    let mut flooder = User::new(&relay, "flooder").await;
    let fetch = Request::FetchBundle { name: "bob".into() };

    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let flood = tokio::spawn(async move {
        let mut got = Vec::new();
        loop {
            got.push(match flooder.conn.request(&fetch).await {
                Ok(Reply::Bundle(b)) => Ok(b.one_time_prekey.is_some()),
                Err(NetError::Relay(e)) => Err(e.code),
                other => panic!("{other:?}"),
            });
            tokio::select! {
                _ = &mut stop_rx => return got,
                () = tokio::time::sleep(Duration::from_millis(100)) => {}
            }
        }
    });
    tokio::time::sleep(Duration::from_millis(600)).await;

    let reply = bystander
        .user
        .conn
        .request(&Request::FetchBundle { name: "bob".into() })
        .await;
    let bundle = match reply {
        Ok(Reply::Bundle(b)) => b,
        other => panic!("a drained user's bundle was refused: {other:?}"),
    };
    assert_eq!(bundle.one_time_prekey, None, "the budget was exceeded");
    let verified = bundle
        .verify(hush_proto::Profile::V1)
        .expect("bundle verifies");
    let mut session = Session::initiate(&mut OsRng, &bystander.user.id, &verified).unwrap();
    let first = session.encrypt(&mut OsRng, b"hello bob").unwrap();
    send(&mut bystander.user.conn, bob.addr(), first.to_bytes()).await;
    subscribe(&mut bob.conn).await;
    let d = take(&mut bob.conn, 1, T).await;
    match Envelope::from_bytes(&d[0].envelope).unwrap() {
        Envelope::Prekey(p) => assert_eq!(p.x3dh.one_time_prekey_id, None),
        other => panic!("expected a prekey envelope, got {other:?}"),
    }

    stop_tx.send(()).unwrap();
    let got = flood.await.unwrap();
    eprintln!("flooder fetched {} times", got.len());
    assert!(got.len() >= 5);
    assert_eq!(got[..2], [Ok(true), Ok(true)]);
    assert!(
        got[2..].iter().all(|r| matches!(r, Ok(false))),
        "the flooder got a one-time prekey or an error after the budget: {got:?}"
    );
    // Three of bob's five one-time prekeys are still there.
    let signed = LocalPrekeys::new(&mut OsRng, &bob.id, 1_700_000_000)
        .current_signed()
        .unwrap();
    let stock = bob
        .conn
        .request(&Request::PublishPrekeys {
            signed_prekey: signed,
            one_time: vec![],
        })
        .await
        .unwrap();
    assert_eq!(
        stock,
        Reply::PrekeysStored {
            one_time_remaining: 3
        }
    );
    bystander.check().await;
}

// ---------------------------------------------------------------------------------------------
// Item 5: identities are free
// ---------------------------------------------------------------------------------------------

/// With max_connections_per_ip = 3 (the bystander holds one), a fourth connection from the same
/// address is closed before the handshake and counted; once one leaves, a new one is served.
#[tokio::test]
async fn connections_per_source_address_are_capped() {
    let config = "max_connections_per_ip = 3\n";
    let (_dir, relay, mut bystander) = with_bystander(Some(config)).await;
    let first = connect(&relay, &identity()).await;
    let _second = connect(&relay, &identity()).await;

    let mut fourth = TcpStream::connect(relay.addr).await.unwrap();
    assert!(
        tcp_closed_within(&mut fourth, Duration::from_secs(3)).await,
        "a connection over the per-address cap was kept open"
    );
    relay
        .wait_metrics(T, "a per-ip refusal", |m| m.rejects("per_ip_limit") == 1)
        .await;
    bystander.check().await;

    drop(first);
    let mut again = connect_eventually(&relay, &identity()).await;
    ping(&mut again).await;
    bystander.check().await;
}

/// With max_connections_per_identity = 2, a third connection of one identity is refused with
/// TooManyConnections after its Hello; once one closes, the identity connects again. Other
/// identities are not affected.
#[tokio::test]
async fn connections_per_identity_are_capped() {
    let config = "max_connections_per_identity = 2\n";
    let (_dir, relay, mut bystander) = with_bystander(Some(config)).await;
    let bob = User::new(&relay, "bob").await;
    let second = connect(&relay, &bob.id).await;
    assert_eq!(
        refused_connect(&relay, &bob.id).await,
        ErrorCode::TooManyConnections
    );
    relay
        .wait_metrics(T, "an identity cap refusal", |m| {
            m.rejects("too_many_connections") == 1
        })
        .await;
    // Another identity still connects.
    let mut other = connect(&relay, &identity()).await;
    ping(&mut other).await;
    bystander.check().await;

    drop(second);
    let mut again = connect_eventually(&relay, &bob.id).await;
    ping(&mut again).await;
    bystander.check().await;
}

/// Each new Subscribe of an identity replaces its previous one: the older connections are
/// closed (counted as `subscription_replaced`), so many connections cannot each pin a
/// catch-up page and a live queue; the newest one gets the mail.
#[tokio::test]
async fn a_new_subscription_replaces_the_old_one() {
    let (_dir, relay, mut bystander) = with_bystander(None).await;
    let mut alice = User::new(&relay, "alice").await;
    let mut bob = User::new(&relay, "bob").await;
    let early = send(&mut alice.conn, bob.addr(), envelope(b"before")).await;

    let mut old = Vec::new();
    for _ in 0..4 {
        let mut raw = Raw::connect(&relay, &bob.id).await;
        raw.writer
            .send(&Request::Subscribe.encode(1))
            .await
            .unwrap();
        // Wait for the Subscribed reply (it may follow the pending delivery).
        loop {
            let frame = tokio::time::timeout(T, raw.reader.recv())
                .await
                .unwrap()
                .unwrap()
                .unwrap();
            if let ServerMessage::Response { result, .. } = ServerMessage::decode(&frame).unwrap() {
                assert_eq!(result, Ok(Reply::Subscribed));
                break;
            }
        }
        old.push(raw);
    }
    subscribe(&mut bob.conn).await;
    let late = send(&mut alice.conn, bob.addr(), envelope(b"after")).await;
    let d = take(&mut bob.conn, 2, T).await;
    assert_eq!((d[0].id, d[1].id), (early, late));

    for (i, raw) in old.iter_mut().enumerate() {
        assert!(
            closed_after_draining(raw, Duration::from_secs(3)).await,
            "replaced subscription {i} stayed open"
        );
    }
    relay
        .wait_metrics(T, "4 replaced subscriptions", |m| {
            m.rejects("subscription_replaced") == 4
        })
        .await;
    ping(&mut bob.conn).await;
    bystander.check().await;
}

/// A replaced subscription whose peer stopped reading (its socket full of mail) is closed
/// within seconds, not after the 300 s idle timeout: with max_connections_per_identity = 2,
/// the identity can open a new connection shortly after replacing the stalled one.
#[tokio::test]
async fn a_replaced_subscription_that_stopped_reading_is_closed_promptly() {
    let config = "max_connections_per_identity = 2\n";
    let (_dir, relay, mut bystander) = with_bystander(Some(config)).await;
    let mut alice = User::new(&relay, "alice").await;
    let bob = User::new(&relay, "bob").await;
    for i in 0..100u32 {
        let e = envelope_of_len(&i.to_be_bytes(), 60_000);
        send(&mut alice.conn, bob.addr(), e).await;
    }
    drop(bob.conn);
    let mut stalled = Raw::connect(&relay, &bob.id).await;
    stalled
        .writer
        .send(&Request::Subscribe.encode(1))
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut newer = connect(&relay, &bob.id).await;
    subscribe(&mut newer).await;
    let replaced = Instant::now();
    // The stalled connection still holds a slot until the relay gives up on it.
    let third = tokio::time::timeout(Duration::from_secs(6), async {
        loop {
            match hush_net::connect(relay.addr, &relay.key, &bob.id, T).await {
                Ok(conn) => return conn,
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    })
    .await
    .expect("the replaced, stalled connection kept its slot");
    eprintln!("slot freed {:?} after the replacement", replaced.elapsed());
    drop(third);
    drop(stalled);
    let d = take(&mut newer, 100, T).await;
    assert_eq!(d.len(), 100);
    bystander.check().await;
}

/// A subscriber that stops reading holds at most `outbound_queue_bytes` of frames in its
/// outbound queue, and `live_queue_bytes` of envelopes in its live queue and in its catch-up
/// page each (gauge `hush_queued_bytes`), not 128 frames, 256 live messages and a page of 256
/// envelopes of up to 64 KiB each; when it reads again it gets every message, nothing dropped.
#[tokio::test]
async fn queues_of_a_stalled_reader_are_bounded_in_bytes() {
    const CAP: u64 = 128 * 1024;
    let config = format!("outbound_queue_bytes = {CAP}\nlive_queue_bytes = {CAP}\n");
    let (_dir, relay, mut bystander) = with_bystander(Some(&config)).await;
    let mut alice = User::new(&relay, "alice").await;
    let bob = User::new(&relay, "bob").await;
    const LEN: usize = 60_000;
    for i in 0..100u32 {
        send(
            &mut alice.conn,
            bob.addr(),
            envelope_of_len(&i.to_be_bytes(), LEN),
        )
        .await;
    }
    let mut stalled = Raw::connect(&relay, &bob.id).await;
    stalled
        .writer
        .send(&Request::Subscribe.encode(1))
        .await
        .unwrap();
    // Half of the mail arrives live while the reader is stalled.
    for i in 100..200u32 {
        send(
            &mut alice.conn,
            bob.addr(),
            envelope_of_len(&i.to_be_bytes(), LEN),
        )
        .await;
    }
    let mut peak = 0;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        let m = relay.scrape().await;
        peak = peak.max(m.get("hush_queued_bytes"));
    }
    let pushed = relay.scrape().await.get("hush_envelopes_delivered_total");
    eprintln!("stalled reader: peak queued {peak} bytes, {pushed} envelopes handed to its socket");
    assert!(peak > 0, "the queued-bytes gauge never moved");
    // Outbound queue, live queue and the catch-up page: each at most CAP (the page ends with
    // the envelope that crosses it).
    assert!(
        peak <= 3 * CAP + LEN as u64,
        "queued {peak} bytes, more than the bounds"
    );
    assert!(
        pushed < 100,
        "{pushed} maximum-size envelopes were queued for a reader that reads nothing"
    );
    bystander.check().await;

    // Reading again, it gets all 200 in order.
    let mut ids = Vec::new();
    while ids.len() < 200 {
        let frame = tokio::time::timeout(T, stalled.reader.recv())
            .await
            .expect("deliveries stopped")
            .unwrap()
            .unwrap();
        if let ServerMessage::Deliver(d) = ServerMessage::decode(&frame).unwrap() {
            assert_eq!(d.envelope.len(), LEN);
            ids.push(u32::from_be_bytes(d.envelope[2..6].try_into().unwrap()));
        }
    }
    assert_eq!(ids, (0..200).collect::<Vec<_>>());
    bystander.check().await;
}

/// PublishPrekeys before Register is refused with NotRegistered and stores nothing; after it,
/// publishes are rate-limited (publish_burst = 2).
#[tokio::test]
async fn prekeys_need_a_name_first_and_are_rate_limited() {
    let config = "publish_rate = 0.01\npublish_burst = 2.0\n";
    let (_dir, relay, mut bystander) = with_bystander(Some(config)).await;
    let squatter = identity();
    let mut conn = connect(&relay, &squatter).await;
    let mut prekeys = LocalPrekeys::new(&mut OsRng, &squatter, 1_700_000_000);
    let publish = Request::PublishPrekeys {
        signed_prekey: prekeys.current_signed().unwrap(),
        one_time: prekeys.generate_one_time(&mut OsRng, 100),
    };
    assert_eq!(
        code(conn.request(&publish).await),
        ErrorCode::NotRegistered,
        "prekeys were accepted from an identity without a name"
    );
    register(&mut conn, &squatter, "squatter").await;
    // Nothing of the refused publish was stored.
    assert_eq!(
        code(
            bystander
                .user
                .conn
                .request(&Request::FetchBundle {
                    name: "squatter".into()
                })
                .await
        ),
        ErrorCode::UnknownUser
    );
    assert_eq!(
        conn.request(&publish).await.unwrap(),
        Reply::PrekeysStored {
            one_time_remaining: 100
        }
    );
    assert_eq!(code(conn.request(&publish).await), ErrorCode::RateLimited);
    ping(&mut conn).await;
    let m = relay.scrape().await;
    assert_eq!(m.rejects("not_registered"), 1);
    assert_eq!(m.rejects("rate_limited"), 1);
    bystander.check().await;
}

/// With storage_max_bytes = 40 000, four 10 000-byte envelopes to two recipients fill the
/// relay: the next send to anyone is refused with StorageFull (counted), although each mailbox
/// is far below its own quota; once a recipient acks, sending works again.
#[tokio::test]
async fn the_global_storage_quota_refuses_with_storage_full() {
    let config = "storage_max_bytes = 40000\n";
    let (_dir, relay, mut bystander) = with_bystander(Some(config)).await;
    let mut alice = User::new(&relay, "alice").await;
    let mut bob = User::new(&relay, "bob").await;
    let carol = User::new(&relay, "carol").await;
    for (to, tag) in [
        (bob.addr(), b"b1"),
        (bob.addr(), b"b2"),
        (bob.addr(), b"b3"),
    ] {
        send(&mut alice.conn, to, envelope_of_len(tag, 10_000)).await;
    }
    send(
        &mut alice.conn,
        carol.addr(),
        envelope_of_len(b"c1", 10_000),
    )
    .await;
    let refused = alice
        .conn
        .request(&Request::Send {
            recipient: carol.addr(),
            envelope: envelope_of_len(b"c2", 10_000),
        })
        .await;
    assert_eq!(code(refused), ErrorCode::StorageFull);
    let m = relay.scrape().await;
    assert_eq!(m.rejects("storage_full"), 1);
    assert_eq!(m.get("hush_mailbox_bytes"), 40_000);
    assert_eq!(m.get("hush_storage_max_bytes"), 40_000);
    ping(&mut bystander.user.conn).await;

    subscribe(&mut bob.conn).await;
    let d = take(&mut bob.conn, 3, T).await;
    assert_eq!(ack(&mut bob.conn, vec![d[0].id]).await, 1);
    send(
        &mut alice.conn,
        carol.addr(),
        envelope_of_len(b"c2", 10_000),
    )
    .await;
    assert_eq!(ack(&mut bob.conn, vec![d[1].id]).await, 1);
    bystander.check().await;
}

/// Send 1000-byte envelopes round-robin to `victims` until the relay refuses one (at most
/// `max` sends); returns the bytes stored and the refusal.
async fn fill_until_refused(
    from: &mut User,
    victims: &[[u8; 32]],
    max: usize,
) -> (usize, Option<hush_proto::relay::RelayError>) {
    let mut stored = 0;
    for i in 0..max {
        let recipient = victims[i % victims.len()];
        let envelope = envelope_of_len(format!("flood {i}").as_bytes(), 1000);
        match from
            .conn
            .request(&Request::Send {
                recipient,
                envelope,
            })
            .await
        {
            Ok(Reply::Stored { .. }) => stored += 1000,
            Err(NetError::Relay(e)) => return (stored, Some(e)),
            other => panic!("unexpected reply to a flood send: {other:?}"),
        }
    }
    (stored, None)
}

/// Review R1: names are free, so without a per-sender share one identity writing to many free
/// names filled the global quota and every user's Send got StorageFull. With
/// storage_max_bytes = 40 000 and sender_max_bytes = 10 000, four attacker identities flood
/// eight free names and never ack: three stop at their share, and the fourth at a quarter of it
/// once the relay is above 90 %. The bystander, with nothing stored, still sends: its message
/// is stored, delivered and acked. Once a victim's mail is fetched, its sender's share frees.
#[tokio::test]
async fn one_sender_cannot_fill_the_storage_quota_and_silence_everyone() {
    let config = "storage_max_bytes = 40000\nsender_max_bytes = 10000\n";
    let (_dir, relay, mut bystander) = with_bystander(Some(config)).await;
    let mut victims = Vec::new();
    for n in 0..8 {
        victims.push(User::new(&relay, &format!("victim{n}")).await);
    }
    let addrs: Vec<[u8; 32]> = victims.iter().map(User::addr).collect();
    let mut stored = Vec::new();
    let mut refusals = Vec::new();
    let mut attackers = Vec::new();
    for n in 0..4 {
        let mut attacker = User::new(&relay, &format!("attacker{n}")).await;
        let (bytes, refusal) = fill_until_refused(&mut attacker, &addrs, 60).await;
        stored.push(bytes);
        refusals.push(refusal);
        attackers.push(attacker);
    }
    // Before anything frees: the bystander's own Send must be stored and delivered.
    bystander.check().await;

    assert_eq!(
        stored,
        [10_000, 10_000, 10_000, 6_000],
        "bytes stored per attacker"
    );
    for refusal in refusals {
        let refusal = refusal.expect("an attacker was never refused");
        assert_eq!(refusal.code, ErrorCode::StorageFull);
        assert!(refusal.message.contains("share"), "{}", refusal.message);
    }
    let m = relay.scrape().await;
    assert_eq!(m.rejects("storage_full"), 4);
    assert_eq!(m.get("hush_mailbox_bytes"), 36_000);

    // Another light user writes to a flooded victim, who gets it (with the 7 flood messages
    // round-robin put in its mailbox).
    let mut dave = User::new(&relay, "dave").await;
    send(&mut dave.conn, addrs[0], envelope(b"from dave")).await;
    let victim = &mut victims[0];
    subscribe(&mut victim.conn).await;
    let d = take(&mut victim.conn, 8, T).await;
    assert!(d.iter().any(|m| m.envelope == envelope(b"from dave")));
    // The victim acks; attacker 0's share frees (2000 bytes of it were in that mailbox).
    let ids = d.iter().map(|m| m.id).collect();
    assert_eq!(ack(&mut victim.conn, ids).await, 8);
    let (again, _) = fill_until_refused(&mut attackers[0], &addrs, 1).await;
    assert_eq!(again, 1000, "an acked sender's share did not free");
    bystander.check().await;
}

// ---------------------------------------------------------------------------------------------
// Item 9: the metrics endpoint
// ---------------------------------------------------------------------------------------------

/// With metrics_max_connections = 2 and metrics_timeout_secs = 1, two idle metrics clients
/// hold both slots for about a second and are then closed; a scrape beyond the cap waits for a
/// slot instead of adding a task, and a flood of idle metrics connections does not disturb
/// clients of the relay.
#[tokio::test]
async fn metrics_connections_are_capped_and_timed_out() {
    let config = "metrics_max_connections = 2\nmetrics_timeout_secs = 1\n";
    let (_dir, relay, mut bystander) = with_bystander(Some(config)).await;
    let metrics = relay.metrics.unwrap();
    let mut idle = Vec::new();
    for _ in 0..2 {
        idle.push(TcpStream::connect(metrics).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let start = Instant::now();
    let m = scrape(metrics).await;
    let waited = start.elapsed();
    eprintln!("scrape beyond the cap answered after {waited:?}");
    assert!(m.get("hush_connections_open") >= 1);
    assert!(
        waited >= Duration::from_millis(700),
        "a scrape beyond the cap was served at once ({waited:?})"
    );
    assert!(waited <= Duration::from_secs(4), "scrape waited {waited:?}");
    for stream in &mut idle {
        assert!(tcp_closed_within(stream, Duration::from_secs(2)).await);
    }

    // A flood of idle metrics connections (fewer than the listen backlog, so the connects
    // complete): the relay keeps serving its clients, and the metrics endpoint recovers.
    let mut flood = Vec::new();
    for _ in 0..50 {
        let mut s = TcpStream::connect(metrics).await.unwrap();
        let _ = s.write_all(b"GET /metr").await;
        flood.push(s);
    }
    bystander.check().await;
    drop(flood);
    let m = scrape(metrics).await;
    assert!(m.get("hush_authenticated_total") >= 1);
    bystander.check().await;
}

/// CPU time (user + system, in clock ticks of 10 ms) the process has used so far.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Set the relay's soft limit of open files (`prlimit`, util-linux).
fn set_open_files(pid: u32, soft: &str) {
    let status = std::process::Command::new("prlimit")
        .arg(format!("--pid={pid}"))
        .arg(format!("--nofile={soft}:"))
        .status()
        .expect("prlimit runs");
    assert!(status.success(), "prlimit failed");
}

/// When the file table is full (EMFILE), a pending metrics connection makes every accept fail
/// at once. The metrics loop used to retry immediately and spin a core; it now pauses, growing
/// to a second. Measured as the relay's CPU time over 2 s with its open-file limit at the
/// number of files it has open; afterwards, with the limit restored, the relay serves its
/// clients and a scrape as before.
#[tokio::test]
async fn metrics_accept_errors_back_off_instead_of_spinning() {
    let config = "handshake_timeout_secs = 60\n";
    let (_dir, relay, mut bystander) = with_bystander(Some(config)).await;
    let pid = relay.pid();
    let open = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .count();
    set_open_files(pid, &(open + 2).to_string());
    // Fill the file table with connections that never finish a handshake.
    let mut hogs = Vec::new();
    for _ in 0..8 {
        hogs.push(TcpStream::connect(relay.addr).await.unwrap());
    }
    // Let the client accept loop take the last free descriptors first.
    tokio::time::sleep(Duration::from_millis(500)).await;
    let _pending = TcpStream::connect(relay.metrics.unwrap()).await.unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let used = cpu_ticks(pid) - before;
    eprintln!("relay used {used} ticks of CPU in 2 s with a full file table");
    set_open_files(pid, "1024");
    assert!(
        used < 20,
        "the relay used {}% of a core while accepts failed",
        used / 2
    );
    relay
        .wait_metrics(T, "failed metrics accepts", |m| {
            m.rejects("metrics_accept_failed") >= 1
        })
        .await;
    drop(hogs);
    bystander.check().await;
}
