//! Attacks on the real `hush-relay` process over real sockets: impersonation, forged
//! signatures, acking or fetching what is not yours, and hostile bytes (oversized frames,
//! garbage, wrong keys, unknown and malformed requests, slowloris, connection floods, fetch
//! floods, tampered ciphertext). In every hostile-input test a well-behaved client is connected
//! at the same time and must not notice anything.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use std::collections::HashSet;
use std::time::{Duration, Instant};

use common::*;
use hush_net::noise::client_handshake;
use hush_net::NetError;
use hush_proto::relay::{auth_message, register_message, ErrorCode, Reply, Request};
use hush_proto::{IdentityKeyPair, LocalPrekeys};
use rand_core::{OsRng, RngCore};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

// ---------------------------------------------------------------------------------------------
// Identity and authorization
// ---------------------------------------------------------------------------------------------

/// Run the Noise handshake with `noise`'s static key, then send the Hello that `hello` builds
/// from the handshake hash. Returns the reply's error code and whether the relay then closed.
async fn forged_hello(
    relay: &Relay,
    noise: &IdentityKeyPair,
    hello: impl FnOnce([u8; 32]) -> Request,
) -> (Result<Reply, ErrorCode>, bool) {
    let stream = TcpStream::connect(relay.addr).await.unwrap();
    let (reader, writer, hash) = client_handshake(stream, &noise.x25519_secret_bytes(), &relay.key)
        .await
        .unwrap();
    let mut raw = Raw { reader, writer };
    let (id, result) = raw.exchange(&hello(hash).encode(7)).await;
    assert_eq!(id, 7);
    // Whatever it says, the relay must not serve this channel any more.
    let _ = raw.writer.send(&Request::Subscribe.encode(8)).await;
    let closed = raw.closed_within(Duration::from_secs(3)).await;
    (result, closed)
}

/// A Hello is accepted only for the identity whose X25519 form is the Noise static key, signed
/// over this very handshake: claiming someone else's identity (with their real signature or
/// yours), signing with another key, or replaying a Hello from another channel is refused with
/// BadSignature, the channel is closed, and the victim's mailbox is untouched.
#[tokio::test]
async fn a_hello_for_another_identity_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start_with(dir.path(), None, true).await;
    let mut alice = User::new(&relay, "alice").await;
    let bob = User::new(&relay, "bob").await;
    let mallory = identity();
    let m = send(&mut alice.conn, bob.addr(), envelope(b"for bob only")).await;

    // Mallory's channel, Bob's identity, Bob's genuine signature over this channel.
    let (result, closed) = forged_hello(&relay, &mallory, |hash| Request::Hello {
        identity_key: bob.public(),
        signature: bob.id.sign(&auth_message(&hash)),
    })
    .await;
    assert_eq!(
        result,
        Err(ErrorCode::BadSignature),
        "channel not bound to the identity"
    );
    assert!(closed, "the impostor's channel stayed open");

    // Mallory's channel, Bob's identity, Mallory's signature.
    let (result, closed) = forged_hello(&relay, &mallory, |hash| Request::Hello {
        identity_key: bob.public(),
        signature: mallory.sign(&auth_message(&hash)),
    })
    .await;
    assert_eq!(result, Err(ErrorCode::BadSignature));
    assert!(closed);

    // Bob's channel key (stolen X25519 secret), Bob's identity, but signed by Mallory.
    let (result, closed) = forged_hello(&relay, &bob.id, |hash| Request::Hello {
        identity_key: bob.public(),
        signature: mallory.sign(&auth_message(&hash)),
    })
    .await;
    assert_eq!(
        result,
        Err(ErrorCode::BadSignature),
        "signature not verified"
    );
    assert!(closed);

    // A valid Hello replayed on another channel: the handshake hash differs.
    let stream = TcpStream::connect(relay.addr).await.unwrap();
    let (_r, _w, first_hash) = client_handshake(stream, &bob.id.x25519_secret_bytes(), &relay.key)
        .await
        .unwrap();
    let replayed = bob.id.sign(&auth_message(&first_hash));
    let (result, closed) = forged_hello(&relay, &bob.id, |_| Request::Hello {
        identity_key: bob.public(),
        signature: replayed,
    })
    .await;
    assert_eq!(
        result,
        Err(ErrorCode::BadSignature),
        "replayed Hello accepted"
    );
    assert!(closed);

    relay
        .wait_metrics(T, "4 bad hellos", |m| m.rejects("bad_hello") == 4)
        .await;
    // Bob's message is still there, for Bob.
    let mut bob = bob;
    subscribe(&mut bob.conn).await;
    let d = take(&mut bob.conn, 1, T).await;
    assert_eq!(
        (d[0].id, d[0].envelope.clone()),
        (m, envelope(b"for bob only"))
    );
}

/// Signatures made by another identity are refused: a signed prekey signed by someone else,
/// and a registration signed by someone else or for another name. Nothing changes.
#[tokio::test]
async fn signatures_by_another_identity_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(dir.path()).await;
    let mut alice = User::new(&relay, "alice").await;
    let bob = User::new(&relay, "bob").await;
    let mut reader = User::new(&relay, "reader").await;

    // Alice publishes a signed prekey carrying Bob's signature over it.
    let mut forged = LocalPrekeys::new(&mut OsRng, &alice.id, 1_800_000_000)
        .current_signed()
        .unwrap();
    forged.signature = bob.id.sign(forged.public_key.as_bytes());
    let result = alice
        .conn
        .request(&Request::PublishPrekeys {
            signed_prekey: forged,
            one_time: vec![],
        })
        .await;
    assert_eq!(code(result), ErrorCode::BadSignature);
    // Bob's genuine signed prekey published as Alice's: also not Alice's signature.
    let bobs = LocalPrekeys::new(&mut OsRng, &bob.id, 1_800_000_000)
        .current_signed()
        .unwrap();
    let result = alice
        .conn
        .request(&Request::PublishPrekeys {
            signed_prekey: bobs,
            one_time: vec![],
        })
        .await;
    assert_eq!(code(result), ErrorCode::BadSignature);
    // Alice's bundle still carries her own, valid signed prekey.
    let Reply::Bundle(bundle) = reader
        .conn
        .request(&Request::FetchBundle {
            name: "alice".into(),
        })
        .await
        .unwrap()
    else {
        panic!("no bundle")
    };
    assert_ne!(bundle.signed_prekey.public_key, forged.public_key);
    assert_ne!(bundle.signed_prekey.public_key, bobs.public_key);
    bundle
        .verify(hush_proto::Profile::V1)
        .expect("alice's bundle still verifies");

    // Registration signed by another identity, or for another name.
    let carol = identity();
    let mut conn = connect(&relay, &carol).await;
    let result = conn
        .request(&Request::Register {
            name: "carol".into(),
            signature: bob.id.sign(&register_message("carol")),
        })
        .await;
    assert_eq!(code(result), ErrorCode::BadSignature);
    let result = conn
        .request(&Request::Register {
            name: "carol".into(),
            signature: carol.sign(&register_message("carole")),
        })
        .await;
    assert_eq!(code(result), ErrorCode::BadSignature);
    // The name is still free for its rightful owner.
    register(&mut conn, &carol, "carol").await;
}

/// Acking message ids of someone else's mailbox deletes nothing, and subscribing shows only
/// your own mailbox; the rightful recipient still gets everything.
#[tokio::test]
async fn acking_someone_elses_messages_removes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(dir.path()).await;
    let mut alice = User::new(&relay, "alice").await;
    let mut bob = User::new(&relay, "bob").await;
    let mut mallory = User::new(&relay, "mallory").await;
    let m1 = send(&mut alice.conn, bob.addr(), envelope(b"one")).await;
    let m2 = send(&mut alice.conn, bob.addr(), envelope(b"two")).await;

    assert_eq!(ack(&mut mallory.conn, vec![m1, m2]).await, 0);
    let guesses: Vec<u64> = (0..200).chain([u64::MAX, i64::MAX as u64]).collect();
    assert_eq!(ack(&mut mallory.conn, guesses).await, 0);
    // The sender cannot delete them either.
    assert_eq!(ack(&mut alice.conn, vec![m1, m2]).await, 0);
    subscribe(&mut mallory.conn).await;
    let stolen = drain(&mut mallory.conn, Duration::from_millis(300)).await;
    assert!(stolen.is_empty(), "mallory received bob's mail: {stolen:?}");

    subscribe(&mut bob.conn).await;
    let d = take(&mut bob.conn, 2, T).await;
    assert_eq!((d[0].id, d[1].id), (m1, m2));
    assert_eq!(ack(&mut bob.conn, vec![m1, m2]).await, 2);
}

/// Names: first come, first served; one name per identity; re-registering your own name is
/// harmless; invalid names are refused.
#[tokio::test]
async fn names_are_first_come_first_served_and_one_per_identity() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(dir.path()).await;
    let mut alice = User::new(&relay, "alice").await;
    let mallory = identity();
    let mut conn = connect(&relay, &mallory).await;
    assert_eq!(conn.registered_name, None);

    let taken = conn
        .request(&Request::Register {
            name: "alice".into(),
            signature: mallory.sign(&register_message("alice")),
        })
        .await;
    assert_eq!(code(taken), ErrorCode::NameTaken);
    let second = alice
        .conn
        .request(&Request::Register {
            name: "alice2".into(),
            signature: alice.id.sign(&register_message("alice2")),
        })
        .await;
    assert_eq!(code(second), ErrorCode::AlreadyRegistered);
    register(&mut alice.conn, &alice.id, "alice").await;
    for bad in ["Alice", "-x", "a b", ""] {
        let result = conn
            .request(&Request::Register {
                name: bad.into(),
                signature: mallory.sign(&register_message(bad)),
            })
            .await;
        assert_eq!(code(result), ErrorCode::InvalidName, "name {bad:?}");
    }
    // "alice" still resolves to Alice, and alice2 to nobody.
    let Reply::Bundle(bundle) = conn
        .request(&Request::FetchBundle {
            name: "alice".into(),
        })
        .await
        .unwrap()
    else {
        panic!("no bundle")
    };
    assert_eq!(bundle.identity_key, alice.public());
    let result = conn
        .request(&Request::FetchBundle {
            name: "alice2".into(),
        })
        .await;
    assert_eq!(code(result), ErrorCode::UnknownUser);
    // The Welcome of a new connection reports the one name.
    alice.reconnect(&relay).await;
}

/// A client whose Register reply was lost retries on a new connection with the same identity:
/// the relay already reports the name in the Welcome and a second Register succeeds (so
/// `hush init` can finish), while the name stays refused to every other identity.
#[tokio::test]
async fn a_register_retried_after_a_lost_reply_succeeds_for_the_same_key_only() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(dir.path()).await;
    let alice = identity();
    let mut first = connect(&relay, &alice).await;
    first
        .request(&Request::Register {
            name: "alice".into(),
            signature: alice.sign(&register_message("alice")),
        })
        .await
        .unwrap();
    drop(first);

    let mut retry = connect(&relay, &alice).await;
    assert_eq!(retry.registered_name.as_deref(), Some("alice"));
    register(&mut retry, &alice, "alice").await;
    register(&mut retry, &alice, "alice").await;

    let mallory = identity();
    let mut conn = connect(&relay, &mallory).await;
    let taken = conn
        .request(&Request::Register {
            name: "alice".into(),
            signature: mallory.sign(&register_message("alice")),
        })
        .await;
    assert_eq!(code(taken), ErrorCode::NameTaken);
    let who = retry
        .request(&Request::WhoIs {
            identity: addr_of(&alice),
        })
        .await
        .unwrap();
    assert_eq!(
        who,
        Reply::Name {
            name: "alice".into()
        }
    );
}

/// Each bundle fetch pops a different one-time prekey, lowest id first, until there are none;
/// then bundles still come, without one, until the owner publishes more.
#[tokio::test]
async fn bundle_fetches_pop_distinct_one_time_prekeys_until_none() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start(dir.path()).await;
    let alice = identity();
    let mut alice_conn = connect(&relay, &alice).await;
    register(&mut alice_conn, &alice, "alice").await;
    let (prekeys, published) = publish(&mut alice_conn, &alice, 5).await;
    let mut bob = User::new(&relay, "bob").await;
    let mut carol = User::new(&relay, "carol").await;

    let mut popped = Vec::new();
    for i in 0..7 {
        // Alternate fetchers: the stock is shared, not per fetcher.
        let conn = if i % 2 == 0 {
            &mut bob.conn
        } else {
            &mut carol.conn
        };
        let Reply::Bundle(bundle) = conn
            .request(&Request::FetchBundle {
                name: "alice".into(),
            })
            .await
            .unwrap()
        else {
            panic!("no bundle")
        };
        assert_eq!(bundle.identity_key, alice.public_key());
        assert_eq!(bundle.signed_prekey, prekeys.current_signed().unwrap());
        bundle
            .clone()
            .verify(hush_proto::Profile::V1)
            .expect("bundle verifies");
        popped.push(bundle.one_time_prekey);
    }
    let expected: Vec<_> = published.iter().copied().map(Some).collect();
    assert_eq!(&popped[..5], &expected[..], "distinct, in id order");
    assert_eq!(
        &popped[5..],
        &[None, None],
        "none left, bundles still served"
    );
    let ids: HashSet<u32> = popped.iter().flatten().map(|k| k.id).collect();
    assert_eq!(ids.len(), 5);

    // A refill is served again.
    let mut prekeys = prekeys;
    let more = prekeys.generate_one_time(&mut OsRng, 1);
    let reply = alice_conn
        .request(&Request::PublishPrekeys {
            signed_prekey: prekeys.current_signed().unwrap(),
            one_time: more.clone(),
        })
        .await
        .unwrap();
    assert_eq!(
        reply,
        Reply::PrekeysStored {
            one_time_remaining: 1
        }
    );
    let Reply::Bundle(bundle) = bob
        .conn
        .request(&Request::FetchBundle {
            name: "alice".into(),
        })
        .await
        .unwrap()
    else {
        panic!("no bundle")
    };
    assert_eq!(bundle.one_time_prekey, Some(more[0]));
}

/// Sending to an identity that never registered is refused (UnknownUser) and stores nothing;
/// so is an envelope that is not hush-v1 (Malformed).
#[tokio::test]
async fn sending_to_an_unregistered_identity_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start_with(dir.path(), None, true).await;
    let mut alice = User::new(&relay, "alice").await;
    let bob = User::new(&relay, "bob").await;
    // Connected but unregistered.
    let ghost = identity();
    let _ghost_conn = connect(&relay, &ghost).await;

    for to in [addr_of(&ghost), addr_of(&identity()), [0u8; 32]] {
        let result = alice
            .conn
            .request(&Request::Send {
                recipient: to,
                envelope: envelope(b"x"),
            })
            .await;
        assert_eq!(code(result), ErrorCode::UnknownUser);
    }
    let result = alice
        .conn
        .request(&Request::Send {
            recipient: bob.addr(),
            envelope: vec![0x07, 0x02, 1, 2, 3],
        })
        .await;
    assert_eq!(code(result), ErrorCode::Malformed);
    let m = relay.scrape().await;
    assert_eq!(m.get("hush_mailbox_messages"), 0, "something was stored");
    assert_eq!(m.get("hush_envelopes_stored_total"), 0);
}

// ---------------------------------------------------------------------------------------------
// Hostile bytes. Each test keeps a well-behaved subscribed client ("bystander") connected and
// checks it before and after the attack.
// ---------------------------------------------------------------------------------------------

/// A frame length over 65 535 closes the connection before anything is buffered: from a raw
/// TCP client before the handshake, and injected into an authenticated channel. Both are
/// counted by reason.
#[tokio::test]
async fn an_oversized_frame_closes_the_connection_and_is_counted() {
    let (_dir, relay, mut bystander) = with_bystander(None).await;

    let mut raw = TcpStream::connect(relay.addr).await.unwrap();
    raw.write_all(&65_536u32.to_be_bytes()).await.unwrap();
    raw.write_all(&[0x42; 1024]).await.unwrap();
    assert!(tcp_closed_within(&mut raw, Duration::from_secs(3)).await);
    relay
        .wait_metrics(T, "handshake_failed", |m| {
            m.rejects("handshake_failed") == 1
        })
        .await;
    bystander.check().await;

    let proxy = Proxy::start(relay.addr, Tamper::None).await;
    let victim = identity();
    let mut conn = hush_net::connect(proxy.addr, &relay.key, &victim, T)
        .await
        .unwrap();
    ping(&mut conn).await;
    let mut bytes = u32::MAX.to_be_bytes().to_vec();
    bytes.extend_from_slice(&[0; 64]);
    proxy.inject(bytes);
    let result = tokio::time::timeout(T, conn.request(&Request::Ping))
        .await
        .unwrap();
    assert!(
        result.is_err(),
        "served after an oversized frame: {result:?}"
    );
    relay
        .wait_metrics(T, "frame_too_large", |m| m.rejects("frame_too_large") == 1)
        .await;
    bystander.check().await;
}

/// Garbage instead of a Noise handshake (an HTTP request; a random first message) is closed.
#[tokio::test]
async fn garbage_instead_of_a_handshake_is_closed() {
    let (_dir, relay, mut bystander) = with_bystander(None).await;

    let mut http = TcpStream::connect(relay.addr).await.unwrap();
    http.write_all(b"GET / HTTP/1.1\r\nHost: relay\r\n\r\n")
        .await
        .unwrap();
    assert!(tcp_closed_within(&mut http, Duration::from_secs(3)).await);

    let mut random = TcpStream::connect(relay.addr).await.unwrap();
    let mut junk = [0u8; 48];
    OsRng.fill_bytes(&mut junk);
    hush_net::frame::write_frame(&mut random, &junk)
        .await
        .unwrap();
    assert!(tcp_closed_within(&mut random, Duration::from_secs(3)).await);

    relay
        .wait_metrics(T, "2 failed handshakes", |m| {
            m.rejects("handshake_failed") == 2
        })
        .await;
    bystander.check().await;
}

/// A client that pins the wrong relay key gets an error and no channel; the relay carries on.
#[tokio::test]
async fn a_wrong_relay_key_fails_the_handshake() {
    let (_dir, relay, mut bystander) = with_bystander(None).await;
    let mut wrong = [0u8; 32];
    OsRng.fill_bytes(&mut wrong);
    let result = hush_net::connect(relay.addr, &wrong, &identity(), T).await;
    assert!(
        matches!(result, Err(NetError::KeyMismatch) | Err(NetError::Closed)),
        "connect with a wrong relay key: {:?}",
        result.as_ref().err()
    );
    relay
        .wait_metrics(T, "a failed handshake", |m| {
            m.rejects("handshake_failed") == 1
        })
        .await;
    bystander.check().await;
    // The relay's real key still works for a new client.
    let mut conn = connect(&relay, &identity()).await;
    ping(&mut conn).await;
}

/// After authentication: an unknown request type gets a typed UnknownRequest error for that
/// request id, and the connection keeps working.
#[tokio::test]
async fn an_unknown_request_type_gets_a_typed_error_and_the_connection_survives() {
    let (_dir, relay, mut bystander) = with_bystander(None).await;
    let mut raw = Raw::connect(&relay, &identity()).await;
    for kind in [0u8, 0x7f, 0xee, 0xff] {
        let mut bytes = Request::Ping.encode(41);
        bytes[9] = kind;
        assert_eq!(
            raw.exchange(&bytes).await,
            (41, Err(ErrorCode::UnknownRequest)),
            "type {kind}"
        );
    }
    assert_eq!(
        raw.exchange(&Request::Ping.encode(42)).await,
        (42, Ok(Reply::Pong))
    );
    assert_eq!(relay.scrape().await.rejects("unknown_request"), 4);
    bystander.check().await;
}

/// After authentication: malformed requests get Malformed for their request id (or 0 when the
/// id itself is cut off), and the connection keeps working.
#[tokio::test]
async fn malformed_requests_get_typed_errors_and_the_connection_survives() {
    let (_dir, relay, mut bystander) = with_bystander(None).await;
    let mut raw = Raw::connect(&relay, &identity()).await;

    let mut ack_short = Request::Ack { ids: vec![1] }.encode(51);
    ack_short[11] = 3; // claims 3 ids, carries 1
    let mut long_name = Request::FetchBundle { name: "a".into() }.encode(52);
    long_name[10] = 40; // name length over the maximum
    long_name.extend_from_slice(&[b'a'; 39]);
    let short_recipient = Request::Send {
        recipient: [1; 32],
        envelope: vec![],
    }
    .encode(53)[..20]
        .to_vec();
    let mut trailing = Request::Ping.encode(54);
    trailing.push(0);
    let mut bad_utf8 = Request::FetchBundle { name: "ab".into() }.encode(55);
    bad_utf8[11] = 0xff;
    let cases: Vec<(&str, Vec<u8>, u64)> = vec![
        ("ack count beyond the data", ack_short, 51),
        ("name too long", long_name, 52),
        ("truncated send", short_recipient, 53),
        ("trailing bytes", trailing, 54),
        ("name not UTF-8", bad_utf8, 55),
        ("empty message", vec![], 0),
        ("id cut off", Request::Ping.encode(56)[..5].to_vec(), 0),
    ];
    for (what, bytes, id) in cases {
        assert_eq!(
            raw.exchange(&bytes).await,
            (id, Err(ErrorCode::Malformed)),
            "{what}"
        );
    }
    assert_eq!(
        raw.exchange(&Request::Ping.encode(57)).await,
        (57, Ok(Reply::Pong))
    );
    bystander.check().await;
}

/// After authentication: a wrong relay-protocol version byte gets UnsupportedVersion, and the
/// connection keeps working.
#[tokio::test]
async fn a_wrong_protocol_version_gets_a_typed_error_and_the_connection_survives() {
    let (_dir, relay, mut bystander) = with_bystander(None).await;
    let mut raw = Raw::connect(&relay, &identity()).await;
    for version in [0u8, 2, 9, 0xff] {
        let mut bytes = Request::Ping.encode(61);
        bytes[0] = version;
        let (_, result) = raw.exchange(&bytes).await;
        assert_eq!(
            result,
            Err(ErrorCode::UnsupportedVersion),
            "version {version}"
        );
    }
    assert_eq!(
        raw.exchange(&Request::Ping.encode(62)).await,
        (62, Ok(Reply::Pong))
    );
    assert_eq!(relay.scrape().await.rejects("unsupported_version"), 4);
    bystander.check().await;
}

/// A request before Hello gets NotAuthenticated and the channel is closed; a second Hello on an
/// authenticated channel is refused without closing it.
#[tokio::test]
async fn a_request_before_hello_is_refused_and_closed() {
    let (_dir, relay, mut bystander) = with_bystander(None).await;
    let me = identity();
    for request in [
        Request::Ping,
        Request::Subscribe,
        Request::Register {
            name: "sneaky".into(),
            signature: me.sign(&register_message("sneaky")),
        },
    ] {
        let stream = TcpStream::connect(relay.addr).await.unwrap();
        let (reader, writer, _) = client_handshake(stream, &me.x25519_secret_bytes(), &relay.key)
            .await
            .unwrap();
        let mut raw = Raw { reader, writer };
        assert_eq!(
            raw.exchange(&request.encode(3)).await,
            (3, Err(ErrorCode::NotAuthenticated)),
            "{request:?}"
        );
        assert!(
            raw.closed_within(Duration::from_secs(3)).await,
            "channel left open after {request:?}"
        );
    }
    relay
        .wait_metrics(T, "3 unauthenticated", |m| {
            m.rejects("not_authenticated") == 3
        })
        .await;
    // The name was not taken by the unauthenticated Register.
    let mut conn = connect(&relay, &me).await;
    register(&mut conn, &me, "sneaky").await;
    // A second Hello is refused, the channel survives.
    let again = Request::Hello {
        identity_key: me.public_key(),
        signature: [0; 64],
    };
    assert_eq!(
        code(conn.request(&again).await),
        ErrorCode::NotAuthenticated
    );
    ping(&mut conn).await;
    bystander.check().await;
}

/// Keep a bystander pinging every 250 ms (so it stays inside a 1 s idle timeout) while
/// `attack` runs, then check it fully.
async fn with_keepalive<F: std::future::Future>(bystander: &mut Bystander, attack: F) -> F::Output {
    tokio::pin!(attack);
    let mut ticker = tokio::time::interval(Duration::from_millis(250));
    loop {
        tokio::select! {
            out = &mut attack => {
                bystander.check().await;
                return out;
            }
            _ = ticker.tick() => ping(&mut bystander.user.conn).await,
        }
    }
}

/// Slowloris and idlers, with handshake_timeout_secs = 1 and idle_timeout_secs = 1: a TCP
/// client dribbling one byte per 300 ms, one that sends nothing, and one that completes the
/// handshake but never says Hello are all closed after about a second; an authenticated
/// client that goes silent is closed after the idle timeout.
#[tokio::test]
async fn slow_and_silent_clients_are_timed_out() {
    let config = "handshake_timeout_secs = 1\nidle_timeout_secs = 1\n";
    let (_dir, relay, mut bystander) = with_bystander(Some(config)).await;

    let dribbler = async {
        let mut stream = TcpStream::connect(relay.addr).await.unwrap();
        let start = Instant::now();
        let mut bytes = 48u32.to_be_bytes().to_vec();
        bytes.extend_from_slice(&[0x55; 48]);
        for byte in bytes {
            if stream.write_all(&[byte]).await.is_err() {
                return start.elapsed();
            }
            if tcp_closed_within(&mut stream, Duration::from_millis(300)).await {
                return start.elapsed();
            }
        }
        panic!("the dribbler sent a whole handshake message unhindered");
    };
    let silent = async {
        let mut stream = TcpStream::connect(relay.addr).await.unwrap();
        let start = Instant::now();
        assert!(tcp_closed_within(&mut stream, Duration::from_secs(5)).await);
        start.elapsed()
    };
    let no_hello = async {
        let me = identity();
        let stream = TcpStream::connect(relay.addr).await.unwrap();
        let start = Instant::now();
        let (reader, writer, _) = client_handshake(stream, &me.x25519_secret_bytes(), &relay.key)
            .await
            .unwrap();
        let mut raw = Raw { reader, writer };
        assert!(raw.closed_within(Duration::from_secs(5)).await);
        start.elapsed()
    };
    let idler = async {
        let mut raw = Raw::connect(&relay, &identity()).await;
        let start = Instant::now();
        assert!(raw.closed_within(Duration::from_secs(5)).await);
        start.elapsed()
    };
    let (dribbled, silent, no_hello, idle) = with_keepalive(&mut bystander, async {
        tokio::join!(dribbler, silent, no_hello, idler)
    })
    .await;
    eprintln!("closed after: dribbler {dribbled:?}, silent {silent:?}, no hello {no_hello:?}, idle {idle:?}");
    for (what, elapsed) in [
        ("dribbler", dribbled),
        ("silent", silent),
        ("no hello", no_hello),
        ("idle", idle),
    ] {
        assert!(
            elapsed >= Duration::from_millis(800) && elapsed <= Duration::from_secs(3),
            "{what} closed after {elapsed:?}, expected about 1 s"
        );
    }
    let m = relay.scrape().await;
    assert_eq!(m.rejects("handshake_timeout"), 3);
    assert_eq!(m.rejects("idle_timeout"), 1);
}

/// With max_connections = 2 (the bystander holds one), a third client is not served while a
/// second one is connected, and is served as soon as that one leaves.
#[tokio::test]
async fn extra_connections_wait_until_a_slot_frees() {
    let (_dir, relay, mut bystander) = with_bystander(Some("max_connections = 2\n")).await;
    let hog = connect(&relay, &identity()).await;

    let (addr, key) = (relay.addr, relay.key);
    let third = tokio::spawn(async move {
        let me = identity();
        let mut conn = hush_net::connect(addr, &key, &me, Duration::from_secs(20))
            .await
            .unwrap();
        ping(&mut conn).await;
        Instant::now()
    });
    tokio::time::sleep(Duration::from_millis(1000)).await;
    assert!(!third.is_finished(), "a third connection was served");
    bystander.check().await;

    let left = Instant::now();
    drop(hog);
    let served = tokio::time::timeout(Duration::from_secs(5), third)
        .await
        .expect("the waiting client was not served after a slot freed")
        .unwrap();
    eprintln!("served {:?} after a slot freed", served - left);
    bystander.check().await;
}

/// With fetch_burst = 2 and a tiny fetch_rate, the third bundle fetch in a row on one
/// connection gets RateLimited and pops nothing: another client's fetch gets the next
/// one-time prekey.
#[tokio::test]
async fn bundle_fetches_are_rate_limited() {
    let config = "fetch_rate = 0.01\nfetch_burst = 2.0\n";
    let (_dir, relay, mut bystander) = with_bystander(Some(config)).await;
    let victim = identity();
    let mut victim_conn = connect(&relay, &victim).await;
    register(&mut victim_conn, &victim, "victim").await;
    let (_, published) = publish(&mut victim_conn, &victim, 5).await;

    let mut flooder = User::new(&relay, "flooder").await;
    let fetch = Request::FetchBundle {
        name: "victim".into(),
    };
    for expected in &published[..2] {
        match flooder.conn.request(&fetch).await.unwrap() {
            Reply::Bundle(b) => assert_eq!(b.one_time_prekey, Some(*expected)),
            other => panic!("{other:?}"),
        }
    }
    for _ in 0..3 {
        assert_eq!(
            code(flooder.conn.request(&fetch).await),
            ErrorCode::RateLimited
        );
    }
    ping(&mut flooder.conn).await;
    assert_eq!(relay.scrape().await.rejects("rate_limited"), 3);

    match bystander.user.conn.request(&fetch).await.unwrap() {
        Reply::Bundle(b) => assert_eq!(
            b.one_time_prekey,
            Some(published[2]),
            "a refused fetch popped a prekey"
        ),
        other => panic!("{other:?}"),
    }
    bystander.check().await;
}

/// A tampered Noise frame (one flipped bit, through a proxy) closes that connection and is
/// counted: in the handshake, in the Hello, and in a request after authentication.
#[tokio::test]
async fn a_tampered_frame_closes_the_connection_and_is_counted() {
    let (_dir, relay, mut bystander) = with_bystander(None).await;

    // Frame 1: the third handshake message.
    let proxy = Proxy::start(relay.addr, Tamper::FlipBitInFrame(1)).await;
    let result = hush_net::connect(proxy.addr, &relay.key, &identity(), T).await;
    assert!(
        result.is_err(),
        "authenticated through a tampered handshake"
    );
    relay
        .wait_metrics(T, "a failed handshake", |m| {
            m.rejects("handshake_failed") == 1
        })
        .await;
    bystander.check().await;

    // Frame 2: the Hello.
    let proxy = Proxy::start(relay.addr, Tamper::FlipBitInFrame(2)).await;
    let result = hush_net::connect(proxy.addr, &relay.key, &identity(), T).await;
    assert!(result.is_err(), "authenticated with a tampered Hello");
    relay
        .wait_metrics(T, "a noise failure", |m| m.rejects("noise_failure") == 1)
        .await;
    bystander.check().await;

    // Frame 3: the first request after the Hello.
    let proxy = Proxy::start(relay.addr, Tamper::FlipBitInFrame(3)).await;
    let mut conn = hush_net::connect(proxy.addr, &relay.key, &identity(), T)
        .await
        .unwrap();
    let result = tokio::time::timeout(T, conn.request(&Request::Ping))
        .await
        .unwrap();
    assert!(
        result.is_err(),
        "a tampered request was answered: {result:?}"
    );
    relay
        .wait_metrics(T, "two noise failures", |m| m.rejects("noise_failure") == 2)
        .await;
    bystander.check().await;
}
