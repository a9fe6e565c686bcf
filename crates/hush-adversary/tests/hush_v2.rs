//! Issue 9 on the client, against a real relay (in-process, real sockets) and a malicious
//! operator: fresh clients speak `hush-v2`; a `hush-v1` conversation from before keeps
//! working and moves to `hush-v2`; stripped PQ prekeys and `hush-v1` first messages in the
//! name of a `hush-v2` contact are refused loudly; a one-time PQ prekey opens one session
//! only; the last-resort PQ prekey serves every initiator.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use hush_adversary::MaliciousRelay;
use hush_client::store::Store;
use hush_client::{Client, ClientError, DeliveryState, Event};
use hush_proto::pq::LAST_RESORT_ID_BIT;
use hush_proto::relay::{Reply, Request};
use hush_proto::{
    ContentType, Envelope, IdentityKeyPair, IdentityPickle, MessageContent, Profile, Session,
};
use rand_core::OsRng;

const WAIT: Duration = Duration::from_millis(300);

struct World {
    _tmp: tempfile::TempDir,
    root: PathBuf,
    relay: hush_relay::RunningRelay,
    evil: MaliciousRelay,
}

async fn world() -> World {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().to_owned();
    let relay = hush_relay::start(hush_relay::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data: root.join("relay"),
        ..Default::default()
    })
    .await
    .unwrap();
    let evil = MaliciousRelay::open(&root.join("relay"));
    World {
        _tmp: tmp,
        root,
        relay,
        evil,
    }
}

impl World {
    async fn client(&self, name: &str) -> Client {
        Client::init(
            &self.root.join(name),
            b"pass",
            name,
            &self.relay.local_addr.to_string(),
            Some(self.relay.public_key),
        )
        .await
        .unwrap()
    }

    fn open(&self, name: &str) -> Client {
        Client::open(&self.root.join(name), b"pass").unwrap()
    }
}

async fn recv(client: &mut Client) -> Vec<Event> {
    let mut events = Vec::new();
    client
        .receive(WAIT, |e| events.push(e.clone()))
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

fn rejected(events: &[Event]) -> Vec<String> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Rejected { reason, .. } => Some(reason.clone()),
            _ => None,
        })
        .collect()
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

fn key(client: &Client) -> [u8; 32] {
    *client.identity_key().as_bytes()
}

fn profiles(client: &mut Client, contact: &str) -> (Option<Profile>, Profile) {
    let required = client.contact(contact).unwrap().unwrap().required;
    (client.session_profile(contact).unwrap(), required)
}

/// A closed profile's identity key pair, read through the store API (what anyone holding
/// the profile and its passphrase, or an old install of the same profile, has).
fn identity_of_profile(dir: &Path) -> IdentityKeyPair {
    let mut store = Store::open(dir, b"pass").unwrap();
    let pickle: IdentityPickle = store
        .tx()
        .unwrap()
        .get("identity", "self")
        .unwrap()
        .unwrap();
    IdentityKeyPair::from_pickle(&pickle).unwrap()
}

/// Make a closed profile look as a build before hush-v2 wrote it: contacts without a
/// required profile (legacy), and prekeys without any PQ prekey.
fn make_legacy(dir: &Path, contacts: &[(&str, [u8; 32])]) {
    let mut store = Store::open(dir, b"pass").unwrap();
    let tx = store.tx().unwrap();
    let mut prekeys: serde_json::Value = tx.get("prekeys", "self").unwrap().unwrap();
    let obj = prekeys.as_object_mut().unwrap();
    for field in [
        "pq_one_time",
        "pq_last_resort",
        "next_pq_one_time_id",
        "next_pq_last_resort_id",
    ] {
        obj.remove(field);
    }
    tx.put("prekeys", "self", &prekeys).unwrap();
    let names: Vec<String> = contacts.iter().map(|(n, _)| (*n).to_owned()).collect();
    tx.put("contact-list", "self", &names).unwrap();
    for (name, identity) in contacts {
        let key_hex = hex(identity);
        let contact = serde_json::json!({
            "name": name, "identity_key": key_hex, "verified": false,
            "changed_key": null, "unread": 0,
        });
        tx.put("contact", name, &contact).unwrap();
        tx.put("contact-by-key", &key_hex, name).unwrap();
    }
    tx.commit().unwrap();
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Fresh clients: every session is hush-v2 and every contact requires hush-v2.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fresh_clients_talk_hush_v2() {
    let w = world().await;
    let mut alice = w.client("alice").await;
    let mut bob = w.client("bob").await;
    alice.send_text("bob", "hello bob").await.unwrap();
    assert_eq!(texts(&recv(&mut bob).await), ["hello bob"]);
    bob.send_text("alice", "hello alice").await.unwrap();
    assert_eq!(texts(&recv(&mut alice).await), ["hello alice"]);
    assert_eq!(
        profiles(&mut alice, "bob"),
        (Some(Profile::V2), Profile::V2)
    );
    assert_eq!(
        profiles(&mut bob, "alice"),
        (Some(Profile::V2), Profile::V2)
    );
    // Each published a last-resort key and a stock of one-time PQ prekeys; alice's first
    // message popped one of bob's.
    let stock = w.evil.pq_one_time_prekeys(&key(&bob)).unwrap().len();
    assert_eq!(stock, hush_client::client::PQ_PREKEY_BATCH - 1);
    w.relay.shutdown().await;
}

/// A relay that strips the PQ prekey from bob's bundle: alice (bob is hush-v2 for her) and a
/// new contact both refuse it loudly; nothing is sent, the existing session goes on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_stripping_the_pq_prekey_of_a_hush_v2_contact_is_refused_loudly() {
    let mut w = world().await;
    let mut alice = w.client("alice").await;
    let mut bob = w.client("bob").await;
    alice.send_text("bob", "hello bob").await.unwrap();
    assert_eq!(texts(&recv(&mut bob).await), ["hello bob"]);
    let bob_key = key(&bob);
    drop(bob);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(w.evil.strip_pq_prekeys(&bob_key).unwrap() > 0);

    let refused = alice.add_contact("bob").await.unwrap_err();
    assert!(
        matches!(
            refused,
            ClientError::Downgrade {
                required: Profile::V2,
                offered: Profile::V1,
                ..
            }
        ),
        "{refused}"
    );
    assert!(
        refused.to_string().contains("DOWNGRADE REFUSED"),
        "{refused}"
    );
    let mut carol = w.client("carol").await;
    let refused = carol.send_text("bob", "hi from carol").await.unwrap_err();
    assert!(
        matches!(refused, ClientError::Downgrade { .. }),
        "{refused}"
    );
    assert!(carol.contacts().unwrap().is_empty());
    assert!(carol.history("bob").unwrap().is_empty());
    // Nothing reached bob's mailbox; alice still has her hush-v2 session and uses it.
    assert!(w.evil.mailbox(&bob_key).unwrap().is_empty());
    assert_eq!(
        profiles(&mut alice, "bob"),
        (Some(Profile::V2), Profile::V2)
    );
    let sent = alice.send_text("bob", "still hush-v2").await.unwrap();
    assert_eq!(sent.state, DeliveryState::OnRelay);
    let mut bob = w.open("bob");
    assert_eq!(texts(&recv(&mut bob).await), ["still hush-v2"]);
    w.relay.shutdown().await;
}

/// Whoever holds bob's identity key (an old install of his, or an attacker who broke it)
/// sends alice a hush-v1 first message in bob's name through the relay: refused loudly,
/// acked, nothing changed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hush_v1_first_message_in_the_name_of_a_hush_v2_contact_is_rejected() {
    let mut w = world().await;
    let mut alice = w.client("alice").await;
    let mut bob = w.client("bob").await;
    alice.send_text("bob", "hello bob").await.unwrap();
    assert_eq!(texts(&recv(&mut bob).await), ["hello bob"]);
    drop(bob);
    let bob_identity = identity_of_profile(&w.root.join("bob"));

    let mut conn = hush_net::connect(
        w.relay.local_addr.to_string().as_str(),
        &w.relay.public_key,
        &bob_identity,
        Duration::from_secs(10),
    )
    .await
    .unwrap();
    let Reply::Bundle(mut bundle) = conn
        .request(&Request::FetchBundle {
            name: "alice".into(),
        })
        .await
        .unwrap()
    else {
        panic!("no bundle")
    };
    assert!(bundle.pq_prekey.is_some());
    bundle.pq_prekey = None;
    let verified = bundle.verify(Profile::V1).unwrap();
    let mut session = Session::initiate(&mut OsRng, &bob_identity, &verified).unwrap();
    assert_eq!(session.profile(), Profile::V1);
    let content = MessageContent {
        id: [7; 16],
        sent_at_ms: now_ms(),
        content_type: ContentType::TEXT,
        body: b"a hush-v1 session, please".to_vec(),
    };
    let envelope = session
        .encrypt(&mut OsRng, &content.to_padded_bytes().unwrap())
        .unwrap();
    assert!(matches!(envelope, Envelope::Prekey(_)));
    conn.request(&Request::Send {
        recipient: key(&alice),
        envelope: envelope.to_bytes(),
    })
    .await
    .unwrap();

    let events = recv(&mut alice).await;
    assert!(texts(&events).is_empty(), "accepted: {events:?}");
    let reasons = rejected(&events);
    assert!(
        reasons.iter().any(|r| r.contains("DOWNGRADE REFUSED")),
        "not reported: {events:?}"
    );
    // Acked, nothing else changed: the hush-v2 session stays and works both ways.
    assert!(w.evil.mailbox(&key(&alice)).unwrap().is_empty());
    assert_eq!(
        profiles(&mut alice, "bob"),
        (Some(Profile::V2), Profile::V2)
    );
    drop(conn);
    let mut bob = w.open("bob");
    alice.send_text("bob", "after the attempt").await.unwrap();
    assert_eq!(texts(&recv(&mut bob).await), ["after the attempt"]);
    bob.send_text("alice", "bob here").await.unwrap();
    assert_eq!(texts(&recv(&mut alice).await), ["bob here"]);
    w.relay.shutdown().await;
}

/// The relay serves bob's one-time PQ prekey to carol and then again to dave: bob opens
/// carol's session, deletes that key in the same commit, and refuses dave's first message.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_time_pq_prekey_served_twice_opens_one_session_only() {
    let mut w = world().await;
    let bob = w.client("bob").await;
    let bob_key = key(&bob);
    drop(bob);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut carol = w.client("carol").await;
    let mut dave = w.client("dave").await;
    let next = w.evil.pq_one_time_prekeys(&bob_key).unwrap().remove(0);
    carol.send_text("bob", "carol here").await.unwrap();
    assert!(!w
        .evil
        .pq_one_time_prekeys(&bob_key)
        .unwrap()
        .iter()
        .any(|k| k.id == next.id));
    w.evil
        .serve_pq_one_time_prekey_again(&bob_key, &next)
        .unwrap();
    dave.send_text("bob", "dave here").await.unwrap();
    let mailbox = w.evil.mailbox(&bob_key).unwrap();
    assert_eq!(mailbox.len(), 2);
    for row in &mailbox {
        let Envelope::Prekey(pre) = Envelope::from_bytes(&row.envelope).unwrap() else {
            panic!("a first message")
        };
        assert_eq!(pre.x3dh.pq.as_ref().unwrap().prekey_id, next.id);
    }

    let mut bob = w.open("bob");
    let events = recv(&mut bob).await;
    assert_eq!(texts(&events), ["carol here"]);
    let reasons = rejected(&events);
    assert!(
        reasons.iter().any(|r| r.contains("PQ prekey")),
        "not reported: {events:?}"
    );
    assert_eq!(
        bob.contacts()
            .unwrap()
            .into_iter()
            .map(|c| c.name)
            .collect::<Vec<_>>(),
        ["carol"]
    );
    // Carol's first message replayed (while bob is offline) is refused too.
    drop(bob);
    tokio::time::sleep(Duration::from_millis(200)).await;
    w.evil.replay(&w.evil.observed()[0].clone()).unwrap();
    let mut bob = w.open("bob");
    let events = recv(&mut bob).await;
    assert!(texts(&events).is_empty(), "accepted: {events:?}");
    assert_eq!(rejected(&events).len(), 1, "{events:?}");
    w.relay.shutdown().await;
}

/// With the one-time PQ prekeys withheld, several initiators get bob's last-resort key: all
/// their first messages open.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_last_resort_pq_prekey_serves_several_initiators() {
    let mut w = world().await;
    let bob = w.client("bob").await;
    let bob_key = key(&bob);
    drop(bob);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(w.evil.withhold_pq_one_time_prekeys(&bob_key).unwrap() > 0);
    let mut senders = Vec::new();
    for name in ["carol", "dave", "erin"] {
        let mut c = w.client(name).await;
        c.send_text("bob", &format!("{name} here")).await.unwrap();
        senders.push(c);
    }
    let mailbox = w.evil.mailbox(&bob_key).unwrap();
    let ids: Vec<u32> = mailbox
        .iter()
        .map(|row| {
            let Envelope::Prekey(pre) = Envelope::from_bytes(&row.envelope).unwrap() else {
                panic!("a first message")
            };
            pre.x3dh.pq.unwrap().prekey_id
        })
        .collect();
    assert_eq!(ids.len(), 3);
    assert!(ids
        .iter()
        .all(|id| *id == ids[0] && id & LAST_RESORT_ID_BIT != 0));
    let mut bob = w.open("bob");
    let mut got = texts(&recv(&mut bob).await);
    got.sort();
    assert_eq!(got, ["carol here", "dave here", "erin here"]);
    for (c, name) in senders.iter_mut().zip(["carol", "dave", "erin"]) {
        assert_eq!(profiles(&mut bob, name), (Some(Profile::V2), Profile::V2));
        bob.send_text(name, "hi").await.unwrap();
        assert_eq!(texts(&recv(c).await), ["hi"]);
    }
    w.relay.shutdown().await;
}

/// Profiles written before hush-v2: their hush-v1 conversation keeps working; on opening,
/// each gets a last-resort PQ prekey; once alice's check finds bob's bundle hush-v2, the
/// next message starts a hush-v2 session, bob adopts it, late hush-v1 messages still open,
/// and from then on bob is hush-v2 for alice for good (a stripped bundle is refused).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_legacy_hush_v1_conversation_keeps_working_and_moves_to_hush_v2() {
    let w = world().await;
    let alice = w.client("alice").await;
    let bob = w.client("bob").await;
    let (alice_key, bob_key) = (key(&alice), key(&bob));
    drop((alice, bob));
    tokio::time::sleep(Duration::from_millis(200)).await;
    make_legacy(&w.root.join("alice"), &[("bob", bob_key)]);
    make_legacy(&w.root.join("bob"), &[("alice", alice_key)]);
    // As an old relay (or old clients) would have them: no PQ prekeys at all.
    w.evil.strip_pq_prekeys(&alice_key).unwrap();
    w.evil.strip_pq_prekeys(&bob_key).unwrap();

    // Alice's profile gets a last-resort PQ prekey on open and publishes it when she
    // connects; the operator strips it again so that both stay hush-v1 for now.
    let mut alice = w.open("alice");
    assert!(recv(&mut alice).await.is_empty());
    assert!(w.evil.strip_pq_prekeys(&alice_key).unwrap() > 0);
    assert_eq!(profiles(&mut alice, "bob"), (None, Profile::V1));
    alice.add_contact("bob").await.unwrap();
    alice.send_text("bob", "v1 hello").await.unwrap();
    assert_eq!(
        profiles(&mut alice, "bob"),
        (Some(Profile::V1), Profile::V1)
    );

    // Bob opens (and publishes his new last-resort key), reads and answers on hush-v1: his
    // check of alice's bundle finds it hush-v1.
    let mut bob = w.open("bob");
    assert_eq!(texts(&recv(&mut bob).await), ["v1 hello"]);
    bob.send_text("alice", "v1 reply").await.unwrap();
    assert_eq!(
        profiles(&mut bob, "alice"),
        (Some(Profile::V1), Profile::V1)
    );
    assert_eq!(texts(&recv(&mut alice).await), ["v1 reply"]);

    // Alice checked bob's bundle when she added him: no new check within a day, so this
    // still goes on hush-v1 although bob now publishes a PQ prekey.
    alice.send_text("bob", "v1 again").await.unwrap();
    assert_eq!(
        profiles(&mut alice, "bob"),
        (Some(Profile::V1), Profile::V1)
    );
    assert_eq!(texts(&recv(&mut bob).await), ["v1 again"]);

    // A day later: the check finds bob's hush-v2 bundle; the next message starts hush-v2.
    let day = hush_client::client::UPGRADE_CHECK_INTERVAL.as_millis() as u64;
    alice
        .check_upgrade_at("bob", now_ms() + day + 1)
        .await
        .unwrap();
    assert_eq!(
        profiles(&mut alice, "bob"),
        (Some(Profile::V2), Profile::V2)
    );
    alice.send_text("bob", "first on v2").await.unwrap();
    // Bob, not having read it yet, still writes on hush-v1: it opens on alice's old session.
    bob.send_text("alice", "late v1").await.unwrap();
    assert_eq!(texts(&recv(&mut alice).await), ["late v1"]);
    assert_eq!(texts(&recv(&mut bob).await), ["first on v2"]);
    assert_eq!(
        profiles(&mut bob, "alice"),
        (Some(Profile::V2), Profile::V2)
    );
    bob.send_text("alice", "v2 reply").await.unwrap();
    assert_eq!(texts(&recv(&mut alice).await), ["v2 reply"]);
    let history: Vec<String> = alice
        .history("bob")
        .unwrap()
        .into_iter()
        .map(|m| m.text)
        .collect();
    assert_eq!(
        history,
        [
            "v1 hello",
            "v1 reply",
            "v1 again",
            "first on v2",
            "late v1",
            "v2 reply"
        ]
    );

    // hush-v2 for good, across a restart: a stripped bundle is now a refused downgrade.
    drop(alice);
    let mut alice = w.open("alice");
    assert_eq!(alice.contact("bob").unwrap().unwrap().required, Profile::V2);
    drop(bob);
    tokio::time::sleep(Duration::from_millis(200)).await;
    w.evil.strip_pq_prekeys(&bob_key).unwrap();
    let refused = alice.add_contact("bob").await.unwrap_err();
    assert!(
        matches!(refused, ClientError::Downgrade { .. }),
        "{refused}"
    );
    w.relay.shutdown().await;
}
