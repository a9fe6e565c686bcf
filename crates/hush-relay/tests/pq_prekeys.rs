//! `hush-v2` PQ prekeys on the real `hush-relay` process over real sockets: publishing (only
//! after Register, every key signed by the connected identity and a valid ML-KEM-768 key, the
//! last-resort id bit right, the stock capped), fetching (one-time keys popped once each, then
//! the last-resort key repeatedly, in bundles that verify as `hush-v2`), the metrics, and
//! `hush-v2` first messages passing through. Every refused request stores nothing.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod common;

use common::*;
use hush_net::Connection;
use hush_proto::envelope::ENVELOPE_VERSION_PQ;
use hush_proto::pq::{PqPrekey, PqPrekeyPair, LAST_RESORT_ID_BIT};
use hush_proto::relay::{ErrorCode, Reply, Request};
use hush_proto::{IdentityKeyPair, PrekeyBundle, Profile};
use rand_core::OsRng;

/// Cheap to test against: a small stock and a generous publish budget.
const CONFIG: &str = "max_one_time_pq_prekeys = 50\npublish_burst = 1000.0\n";

const LR: u32 = LAST_RESORT_ID_BIT;

/// A PQ prekey `id` signed by `signer`.
fn pq(signer: &IdentityKeyPair, id: u32) -> PqPrekey {
    PqPrekeyPair::generate(&mut OsRng, signer, id, 1_700_000_000).public()
}

fn publish_request(last_resort: Option<PqPrekey>, one_time: Vec<PqPrekey>) -> Request {
    Request::PublishPqPrekeys {
        last_resort,
        one_time,
    }
}

async fn publish_pq(
    conn: &mut Connection,
    last_resort: Option<PqPrekey>,
    one_time: Vec<PqPrekey>,
) -> Result<Reply, hush_net::NetError> {
    conn.request(&publish_request(last_resort, one_time)).await
}

async fn fetch(conn: &mut Connection, name: &str) -> PrekeyBundle {
    match conn
        .request(&Request::FetchBundle { name: name.into() })
        .await
        .unwrap()
    {
        Reply::Bundle(bundle) => bundle,
        other => panic!("expected a bundle, got {other:?}"),
    }
}

/// The PQ prekey id in `name`'s next bundle, if any.
async fn next_pq_id(conn: &mut Connection, name: &str) -> Option<u32> {
    fetch(conn, name).await.pq_prekey.map(|key| key.id)
}

async fn start() -> (tempfile::TempDir, Relay) {
    let dir = tempfile::tempdir().unwrap();
    let relay = Relay::start_with(dir.path(), Some(CONFIG), true).await;
    (dir, relay)
}

/// After a refused publish, `victim` still has no PQ prekey at all: its bundle is version 1
/// and the relay counts no PQ prekeys.
async fn nothing_stored(relay: &Relay, fetcher: &mut Connection, victim: &str) {
    assert_eq!(next_pq_id(fetcher, victim).await, None);
    let metrics = relay.scrape().await;
    assert_eq!(metrics.get("hush_pq_one_time_prekeys"), 0);
    assert_eq!(metrics.get("hush_pq_last_resort_prekeys"), 0);
}

#[tokio::test]
async fn published_pq_prekeys_are_served_in_v2_bundles_one_time_once_then_last_resort() {
    let (_dir, relay) = start().await;
    let mut alice = User::new(&relay, "alice").await;
    let mut bob = User::new(&relay, "bob").await;
    let last_resort = pq(&alice.id, LR | 1);
    let one_time = vec![pq(&alice.id, 11), pq(&alice.id, 12)];
    assert_eq!(
        publish_pq(&mut alice.conn, Some(last_resort.clone()), one_time.clone())
            .await
            .unwrap(),
        Reply::PqPrekeysStored {
            one_time_remaining: 2
        }
    );
    let metrics = relay.scrape().await;
    assert_eq!(metrics.get("hush_pq_one_time_prekeys"), 2);
    assert_eq!(metrics.get("hush_pq_last_resort_prekeys"), 1);
    // alice and bob each published 5 classical one-time prekeys.
    assert_eq!(metrics.get("hush_one_time_prekeys"), 10);

    let mut served = Vec::new();
    for _ in 0..2 {
        let bundle = fetch(&mut bob.conn, "alice").await;
        assert!(bundle.one_time_prekey.is_some());
        let key = bundle.pq_prekey.clone().expect("a hush-v2 bundle");
        assert!(!key.is_last_resort());
        assert!(one_time.contains(&key));
        assert!(bundle.verify(Profile::V2).is_ok());
        served.push(key.id);
    }
    served.sort_unstable();
    assert_eq!(served, vec![11, 12], "each one-time PQ prekey served once");
    // The stock is empty: the last-resort key, again and again, and still a valid v2 bundle.
    for _ in 0..3 {
        let bundle = fetch(&mut bob.conn, "alice").await;
        assert_eq!(bundle.pq_prekey.as_ref(), Some(&last_resort));
        assert!(bundle.verify(Profile::V2).is_ok());
    }
    let metrics = relay.scrape().await;
    assert_eq!(metrics.get("hush_pq_one_time_prekeys"), 0);
    assert_eq!(metrics.get("hush_pq_last_resort_prekeys"), 1);
    // alice's 5 classical keys are all popped, bob's 5 remain.
    assert_eq!(metrics.get("hush_one_time_prekeys"), 5);

    // A new last-resort key replaces the old one; bob without PQ keys still gets version 1.
    let newer = pq(&alice.id, LR | 2);
    publish_pq(&mut alice.conn, Some(newer.clone()), vec![])
        .await
        .unwrap();
    assert_eq!(fetch(&mut bob.conn, "alice").await.pq_prekey, Some(newer));
    let bobs = fetch(&mut alice.conn, "bob").await;
    assert_eq!(bobs.pq_prekey, None);
    assert!(bobs.verify(Profile::V1).is_ok());

    // The keys survive a restart (they are in the database, not in memory).
    let mut relay = relay;
    relay.restart().await;
    let mut bob_again = connect(&relay, &bob.id).await;
    assert_eq!(next_pq_id(&mut bob_again, "alice").await, Some(LR | 2));
}

#[tokio::test]
async fn pq_prekeys_signed_by_another_identity_are_refused_and_nothing_is_stored() {
    let (_dir, relay) = start().await;
    let mut alice = User::new(&relay, "alice").await;
    let mut bob = User::new(&relay, "bob").await;
    let mallory = identity();
    // One key signed by someone else spoils the whole request, good keys included.
    let one_time = vec![pq(&alice.id, 1), pq(&mallory, 2)];
    let refused = publish_pq(&mut alice.conn, Some(pq(&alice.id, LR)), one_time).await;
    assert_eq!(code(refused), ErrorCode::BadSignature);
    let refused = publish_pq(&mut alice.conn, Some(pq(&mallory, LR)), vec![]).await;
    assert_eq!(code(refused), ErrorCode::BadSignature);
    nothing_stored(&relay, &mut bob.conn, "alice").await;
    assert_eq!(relay.scrape().await.rejects("bad_signature"), 2);
}

#[tokio::test]
async fn pq_prekeys_with_a_bad_signature_or_an_invalid_key_are_refused() {
    let (_dir, relay) = start().await;
    let mut alice = User::new(&relay, "alice").await;
    let mut bob = User::new(&relay, "bob").await;
    // A flipped signature bit.
    let mut forged = pq(&alice.id, 3);
    forged.signature[10] ^= 0x01;
    let refused = publish_pq(&mut alice.conn, None, vec![pq(&alice.id, 2), forged]).await;
    assert_eq!(code(refused), ErrorCode::BadSignature);
    // A key signed over a different id (the id is covered by the signature).
    let mut renumbered = pq(&alice.id, 4);
    renumbered.id = 5;
    let refused = publish_pq(&mut alice.conn, None, vec![renumbered]).await;
    assert_eq!(code(refused), ErrorCode::BadSignature);
    // Correctly signed, but not an ML-KEM-768 key: coefficients above the modulus (12 bits
    // of 0xFFF = 4095 > q = 3329). No initiator could encapsulate to it.
    let pair = PqPrekeyPair::generate(&mut OsRng, &alice.id, LR | 9, 0);
    let mut ek = *pair.encapsulation_key();
    ek[..3].copy_from_slice(&[0xFF, 0xFF, 0xFF]);
    let bad_modulus = PqPrekey {
        id: LR | 9,
        signature: alice
            .id
            .sign(&hush_proto::pq::pq_prekey_signed_bytes(LR | 9, &ek)),
        encapsulation_key: Box::new(ek),
    };
    let refused = publish_pq(&mut alice.conn, Some(bad_modulus), vec![]).await;
    assert_eq!(code(refused), ErrorCode::BadSignature);
    nothing_stored(&relay, &mut bob.conn, "alice").await;
}

#[tokio::test]
async fn pq_prekey_of_the_wrong_length_is_malformed() {
    let (_dir, relay) = start().await;
    let alice = User::new(&relay, "alice").await;
    let mut bob = User::new(&relay, "bob").await;
    let mut raw = Raw::connect(&relay, &alice.id).await;
    let good = publish_request(None, vec![pq(&alice.id, 1)]).encode(5);
    // One byte short (an encapsulation key of 1 183 bytes) and one byte long.
    let mut short = good.clone();
    short.pop();
    let mut long = good.clone();
    long.push(0);
    for bytes in [short, long] {
        let (id, result) = raw.exchange(&bytes).await;
        assert_eq!((id, result), (5, Err(ErrorCode::Malformed)));
    }
    // 41 one-time keys in one request: more than the per-request cap.
    let many: Vec<_> = (0..40).map(|i| pq(&alice.id, i)).collect();
    let mut bytes = publish_request(None, many).encode(6);
    let count_at = 1 + 8 + 1 + 1;
    bytes[count_at..count_at + 2].copy_from_slice(&41u16.to_be_bytes());
    let extra = publish_request(None, vec![pq(&alice.id, 40)]).encode(0);
    bytes.extend_from_slice(&extra[count_at + 2..]);
    let (id, result) = raw.exchange(&bytes).await;
    assert_eq!((id, result), (6, Err(ErrorCode::Malformed)));
    // The well-formed request still works on the same channel.
    let (_, result) = raw.exchange(&good).await;
    assert_eq!(
        result,
        Ok(Reply::PqPrekeysStored {
            one_time_remaining: 1
        })
    );
    assert_eq!(next_pq_id(&mut bob.conn, "alice").await, Some(1));
}

#[tokio::test]
async fn last_resort_id_bit_must_match_the_key_kind() {
    let (_dir, relay) = start().await;
    let mut alice = User::new(&relay, "alice").await;
    let mut bob = User::new(&relay, "bob").await;
    // A last-resort key without the bit (properly signed over that id).
    let refused = publish_pq(&mut alice.conn, Some(pq(&alice.id, 7)), vec![]).await;
    assert_eq!(code(refused), ErrorCode::Malformed);
    // A one-time key with the bit: it would never be deleted by the owner's client.
    let one_time = vec![pq(&alice.id, 1), pq(&alice.id, LR | 2)];
    let refused = publish_pq(&mut alice.conn, None, one_time).await;
    assert_eq!(code(refused), ErrorCode::Malformed);
    nothing_stored(&relay, &mut bob.conn, "alice").await;
}

#[tokio::test]
async fn one_time_pq_prekey_stock_is_capped_per_identity() {
    let (_dir, relay) = start().await;
    let mut alice = User::new(&relay, "alice").await;
    let mut bob = User::new(&relay, "bob").await;
    let keys: Vec<_> = (0..60).map(|i| pq(&alice.id, i)).collect();
    let stored = publish_pq(&mut alice.conn, None, keys[..40].to_vec()).await;
    assert_eq!(
        stored.unwrap(),
        Reply::PqPrekeysStored {
            one_time_remaining: 40
        }
    );
    // 40 + 20 > 50: refused as a whole, and the last-resort key in it is not stored either.
    let refused = publish_pq(
        &mut alice.conn,
        Some(pq(&alice.id, LR)),
        keys[40..].to_vec(),
    )
    .await;
    assert_eq!(code(refused), ErrorCode::TooManyPrekeys);
    assert_eq!(relay.scrape().await.get("hush_pq_last_resort_prekeys"), 0);
    // Exactly filling the stock is allowed; re-sent ids are not counted twice.
    let stored = publish_pq(&mut alice.conn, None, keys[35..50].to_vec()).await;
    assert_eq!(
        stored.unwrap(),
        Reply::PqPrekeysStored {
            one_time_remaining: 50
        }
    );
    let refused = publish_pq(&mut alice.conn, None, keys[50..51].to_vec()).await;
    assert_eq!(code(refused), ErrorCode::TooManyPrekeys);
    // A last-resort rotation alone is never refused for the stock.
    publish_pq(&mut alice.conn, Some(pq(&alice.id, LR)), vec![])
        .await
        .unwrap();
    assert_eq!(relay.scrape().await.get("hush_pq_one_time_prekeys"), 50);
    assert_eq!(next_pq_id(&mut bob.conn, "alice").await, Some(0));
}

#[tokio::test]
async fn pq_prekeys_before_register_are_refused() {
    let (_dir, relay) = start().await;
    let mut bob = User::new(&relay, "bob").await;
    let nameless = identity();
    let mut conn = connect(&relay, &nameless).await;
    let refused = publish_pq(&mut conn, Some(pq(&nameless, LR)), vec![pq(&nameless, 1)]).await;
    assert_eq!(code(refused), ErrorCode::NotRegistered);
    let metrics = relay.scrape().await;
    assert_eq!(metrics.get("hush_pq_one_time_prekeys"), 0);
    assert_eq!(metrics.get("hush_pq_last_resort_prekeys"), 0);
    // Registered later (after classical prekeys), the same keys are accepted.
    register(&mut conn, &nameless, "late").await;
    publish(&mut conn, &nameless, 1).await;
    publish_pq(&mut conn, Some(pq(&nameless, LR)), vec![])
        .await
        .unwrap();
    assert_eq!(next_pq_id(&mut bob.conn, "late").await, Some(LR));
}

/// A `hush-v2` first message is envelope version 2: the relay stores and delivers it like any
/// other envelope (it only looks at the version byte).
#[tokio::test]
async fn hush_v2_first_messages_are_relayed() {
    let (_dir, relay) = start().await;
    let mut alice = User::new(&relay, "alice").await;
    let mut bob = User::new(&relay, "bob").await;
    let mut envelope = envelope(b"v2 first message");
    envelope[0] = ENVELOPE_VERSION_PQ;
    send(&mut alice.conn, bob.addr(), envelope.clone()).await;
    subscribe(&mut bob.conn).await;
    let got = take(&mut bob.conn, 1, T).await;
    assert_eq!(got[0].envelope, envelope);
    // Version 3 does not exist.
    let mut unknown = envelope;
    unknown[0] = 3;
    let refused = alice
        .conn
        .request(&Request::Send {
            recipient: bob.addr(),
            envelope: unknown,
        })
        .await;
    assert_eq!(code(refused), ErrorCode::Malformed);
}

/// The per-user fetch budget protects the one-time PQ prekeys as it does the classical ones:
/// past it, bundles carry the last-resort PQ prekey (still `hush-v2`) and the one-time stock is
/// left for honest initiators, however many fetches arrive.
#[tokio::test]
async fn a_fetch_flood_cannot_drain_one_time_pq_prekeys_past_the_budget() {
    let dir = tempfile::tempdir().unwrap();
    let config = format!("{CONFIG}per_user_fetch_burst = 2.0\nper_user_fetch_rate = 0.001\n");
    let relay = Relay::start_with(dir.path(), Some(&config), true).await;
    let mut alice = User::new(&relay, "alice").await;
    let one_time: Vec<_> = (1..=5).map(|i| pq(&alice.id, i)).collect();
    publish_pq(&mut alice.conn, Some(pq(&alice.id, LR)), one_time)
        .await
        .unwrap();
    let mut served = Vec::new();
    for _ in 0..3 {
        let mut flooder = connect(&relay, &identity()).await;
        for _ in 0..4 {
            let bundle = fetch(&mut flooder, "alice").await;
            assert!(bundle.clone().verify(Profile::V2).is_ok());
            served.push(bundle.pq_prekey.unwrap().id);
        }
    }
    assert_eq!(&served[..2], &[1, 2]);
    assert!(served[2..].iter().all(|&id| id == LR), "{served:?}");
    let metrics = relay.scrape().await;
    assert_eq!(metrics.get("hush_pq_one_time_prekeys"), 3);
    assert_eq!(
        metrics.get("hush_bundles_without_one_time_prekey_total"),
        10
    );
}
