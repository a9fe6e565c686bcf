//! Engine tests with openmls's in-memory provider: membership changes, forward and
//! post-compromise boundaries, concurrency, delayed, replayed, reordered and tampered
//! messages, and KeyPackages substituted by the relay.

use hush_proto::{GroupEnvelope, IdentityKeyPair};
use openmls::prelude::{Ciphersuite, KeyPackage, Lifetime, MlsMessageOut};
use openmls_rust_crypto::OpenMlsRustCrypto;
use openmls_traits::OpenMlsProvider;
use rand_core::OsRng;

use super::config::{self, CIPHERSUITE};
use super::engine::{self, process};
use super::{GroupError, IdentitySigner, Incoming, MemberId};

pub(super) struct User {
    pub name: String,
    pub key: IdentityKeyPair,
    pub p: OpenMlsRustCrypto,
}

impl User {
    pub fn new(name: &str) -> Self {
        Self {
            name: name.into(),
            key: IdentityKeyPair::generate(&mut OsRng),
            p: OpenMlsRustCrypto::default(),
        }
    }
    pub fn id(&self) -> MemberId {
        MemberId::new(&self.name, *self.key.public_key().as_bytes()).unwrap()
    }
    pub fn signer(&self) -> IdentitySigner<'_> {
        IdentitySigner::new(&self.key)
    }
    pub fn kp(&self) -> Vec<u8> {
        engine::new_key_package(&self.p, &self.signer(), &self.id(), false).unwrap()
    }
    pub fn candidate(&self) -> (MemberId, Vec<u8>) {
        (self.id(), self.kp())
    }
    fn recv(&self, gid: &[u8], bytes: &[u8]) -> Result<Incoming, GroupError> {
        process(&self.p, gid, &GroupEnvelope::from_bytes(bytes).unwrap())
    }
    fn join(&self, welcome: &[u8]) -> engine::Joined {
        engine::join(&self.p, &GroupEnvelope::from_bytes(welcome).unwrap()).unwrap()
    }
    fn send(&self, gid: &[u8], text: &str) -> Vec<u8> {
        engine::encrypt(&self.p, &self.signer(), gid, text.as_bytes()).unwrap()
    }
    fn read(&self, gid: &[u8], bytes: &[u8]) -> (MemberId, String) {
        match self.recv(gid, bytes).unwrap() {
            Incoming::Application {
                sender, plaintext, ..
            } => (sender, String::from_utf8(plaintext.to_vec()).unwrap()),
            other => panic!("expected an application message, got {other:?}"),
        }
    }
    fn epoch(&self, gid: &[u8]) -> u64 {
        engine::epoch(&self.p, gid).unwrap()
    }
    fn auth(&self, gid: &[u8]) -> Vec<u8> {
        engine::epoch_authenticator(&self.p, gid).unwrap()
    }
    /// Every stored value, to check that a refused message changed nothing.
    fn snapshot(&self) -> std::collections::HashMap<Vec<u8>, Vec<u8>> {
        self.p.storage().values.read().unwrap().clone()
    }
}

const GID: [u8; 16] = *b"group-id-16bytes";

/// `creator` makes a group and adds `others` in one commit; everyone joins.
fn group_of(creator: &User, others: &[&User]) -> Vec<u8> {
    engine::create_group(
        &creator.p,
        &creator.signer(),
        &creator.id(),
        GID,
        "Book club",
    )
    .unwrap();
    if !others.is_empty() {
        let c: Vec<_> = others.iter().map(|u| u.candidate()).collect();
        let out = engine::add_members(&creator.p, &creator.signer(), &GID, &c).unwrap();
        engine::merge_own_commit(&creator.p, &GID).unwrap();
        let welcome = out.welcome.unwrap();
        for u in others {
            let joined = u.join(&welcome);
            assert_eq!(joined.name, "Book club");
            assert_eq!(joined.inviter, creator.id());
            assert_eq!(joined.group_id, GID.to_vec());
        }
    }
    GID.to_vec()
}

fn assert_converged(gid: &[u8], users: &[&User]) {
    let e = users[0].epoch(gid);
    let a = users[0].auth(gid);
    for u in users {
        assert_eq!(u.epoch(gid), e, "{} epoch", u.name);
        assert_eq!(u.auth(gid), a, "{} epoch authenticator", u.name);
    }
}

#[test]
fn the_ciphersuite_is_the_wire_contracts() {
    assert_eq!(CIPHERSUITE as u16, hush_proto::group::CIPHERSUITE);
}

#[test]
fn three_members_talk_and_agree_on_the_epoch() {
    let (a, b, c) = (User::new("alice"), User::new("bob"), User::new("carol"));
    let gid = group_of(&a, &[&b, &c]);
    assert_converged(&gid, &[&a, &b, &c]);
    let mut names: Vec<_> = engine::members(&c.p, &gid).unwrap();
    names.sort();
    let mut want = vec![a.id(), b.id(), c.id()];
    want.sort();
    assert_eq!(names, want);
    for (from, to) in [(&a, &b), (&b, &c), (&c, &a), (&a, &c)] {
        let m = from.send(&gid, "hello");
        assert_eq!(to.read(&gid, &m), (from.id(), "hello".into()));
    }
}

#[test]
fn five_members_add_and_remove_and_a_removed_member_cannot_read_on() {
    let users: Vec<User> = ["alice", "bob", "carol", "dave", "erin"]
        .into_iter()
        .map(User::new)
        .collect();
    let [a, b, c, d, e] = &users[..] else {
        unreachable!()
    };
    let gid = group_of(a, &[b, c]);
    // Add two more, one commit.
    let out =
        engine::add_members(&a.p, &a.signer(), &gid, &[d.candidate(), e.candidate()]).unwrap();
    engine::merge_own_commit(&a.p, &gid).unwrap();
    for u in [b, c] {
        match u.recv(&gid, &out.commit).unwrap() {
            Incoming::Commit {
                committer,
                added,
                removed,
                we_were_removed,
                new_epoch,
            } => {
                assert_eq!(committer, a.id());
                assert_eq!(added, vec![d.id(), e.id()]);
                assert!(removed.is_empty() && !we_were_removed);
                assert_eq!(new_epoch, 2);
            }
            other => panic!("{other:?}"),
        }
    }
    let w = out.welcome.unwrap();
    d.join(&w);
    e.join(&w);
    assert_converged(&gid, &[a, b, c, d, e]);
    let hi = e.send(&gid, "hi all");
    for u in [a, b, c, d] {
        assert_eq!(u.read(&gid, &hi).1, "hi all");
    }
    // Remove erin.
    let out = engine::remove_members(&a.p, &a.signer(), &gid, &[e.id().identity]).unwrap();
    assert_eq!(out.removed, vec![e.id().identity]);
    engine::merge_own_commit(&a.p, &gid).unwrap();
    let secret = a.send(&gid, "after erin");
    // Before learning of her removal, erin cannot open it (it is from the next epoch)…
    assert_eq!(
        e.recv(&gid, &secret).unwrap_err(),
        GroupError::FutureEpoch { have: 2, got: 3 }
    );
    for u in [b, c, d, e] {
        match u.recv(&gid, &out.commit).unwrap() {
            Incoming::Commit {
                removed,
                we_were_removed,
                ..
            } => {
                assert_eq!(removed, vec![e.id()]);
                assert_eq!(we_were_removed, u.name == "erin");
            }
            other => panic!("{other:?}"),
        }
    }
    // …nor after: she is out of the group and can no longer send either.
    assert_eq!(e.recv(&gid, &secret).unwrap_err(), GroupError::NotAMember);
    assert!(!engine::is_active(&e.p, &gid).unwrap());
    assert_eq!(
        engine::encrypt(&e.p, &e.signer(), &gid, b"x").unwrap_err(),
        GroupError::NotAMember
    );
    for u in [b, c, d] {
        assert_eq!(u.read(&gid, &secret).1, "after erin");
    }
    assert_converged(&gid, &[a, b, c, d]);
    assert_eq!(engine::members(&b.p, &gid).unwrap().len(), 4);
}

#[test]
fn a_new_member_cannot_read_messages_from_before_it_joined() {
    let (a, b, c) = (User::new("alice"), User::new("bob"), User::new("carol"));
    let gid = group_of(&a, &[&b]);
    let before = a.send(&gid, "before carol");
    let out = engine::add_members(&a.p, &a.signer(), &gid, &[c.candidate()]).unwrap();
    engine::merge_own_commit(&a.p, &gid).unwrap();
    c.join(&out.welcome.unwrap());
    let err = c.recv(&gid, &before).unwrap_err();
    assert!(
        matches!(err, GroupError::TooOld { have: 2, got: 1 }),
        "{err:?}"
    );
    // Bob, a member then, still reads it after processing the add (one epoch back).
    b.recv(&gid, &out.commit).unwrap();
    assert_eq!(b.read(&gid, &before).1, "before carol");
}

#[test]
fn two_commits_in_one_epoch_the_relay_takes_one_and_everyone_converges() {
    let users: Vec<User> = ["alice", "bob", "carol", "dave"]
        .into_iter()
        .map(User::new)
        .collect();
    let [a, b, c, d] = &users[..] else {
        unreachable!()
    };
    let gid = group_of(a, &[b, c]);
    let epoch = a.epoch(&gid);
    let from_a = engine::add_members(&a.p, &a.signer(), &gid, &[d.candidate()]).unwrap();
    let from_b = engine::remove_members(&b.p, &b.signer(), &gid, &[c.id().identity]).unwrap();
    assert_eq!((from_a.epoch, from_b.epoch), (epoch, epoch));
    // While its commit is pending, bob sends nothing else.
    assert_eq!(
        engine::encrypt(&b.p, &b.signer(), &gid, b"x").unwrap_err(),
        GroupError::PendingCommit
    );
    // The relay accepts alice's (first for this epoch) and answers bob StaleEpoch.
    engine::merge_own_commit(&a.p, &gid).unwrap();
    engine::discard_own_commit(&b.p, &gid).unwrap();
    assert_eq!(b.epoch(&gid), epoch);
    b.recv(&gid, &from_a.commit).unwrap();
    c.recv(&gid, &from_a.commit).unwrap();
    d.join(&from_a.welcome.unwrap());
    assert_converged(&gid, &[a, b, c, d]);
    // Bob's losing commit, should anyone see it, is refused as stale.
    let before = c.snapshot();
    assert!(matches!(
        c.recv(&gid, &from_b.commit).unwrap_err(),
        GroupError::TooOld { .. }
    ));
    assert_eq!(c.snapshot(), before);
    // Bob retries in the new epoch; it is accepted and everyone follows.
    let retry = engine::remove_members(&b.p, &b.signer(), &gid, &[c.id().identity]).unwrap();
    assert_eq!(retry.epoch, epoch + 1);
    engine::merge_own_commit(&b.p, &gid).unwrap();
    for u in [a, c, d] {
        u.recv(&gid, &retry.commit).unwrap();
    }
    assert_converged(&gid, &[a, b, d]);
}

#[test]
fn processing_the_winning_commit_replaces_our_pending_one() {
    let (a, b, c) = (User::new("alice"), User::new("bob"), User::new("carol"));
    let gid = group_of(&a, &[&b]);
    let from_a = engine::add_members(&a.p, &a.signer(), &gid, &[c.candidate()]).unwrap();
    let _from_b = engine::remove_members(&b.p, &b.signer(), &gid, &[a.id().identity]).unwrap();
    engine::merge_own_commit(&a.p, &gid).unwrap();
    // Bob processes alice's commit before handling his StaleEpoch reply.
    b.recv(&gid, &from_a.commit).unwrap();
    engine::discard_own_commit(&b.p, &gid).unwrap();
    engine::merge_own_commit(&b.p, &gid).unwrap(); // nothing pending: harmless
    c.join(&from_a.welcome.unwrap());
    assert_converged(&gid, &[&a, &b, &c]);
    assert_eq!(engine::members(&b.p, &gid).unwrap().len(), 3);
}

/// Alice adds and removes `helper` until `n` commits have passed; returns the commits.
fn churn(a: &User, gid: &[u8], helper: &User, n: usize) -> Vec<Vec<u8>> {
    let mut commits = Vec::new();
    for _ in 0..n {
        let present = engine::members(&a.p, gid).unwrap().contains(&helper.id());
        let out = if !present {
            engine::add_members(&a.p, &a.signer(), gid, &[helper.candidate()]).unwrap()
        } else {
            engine::remove_members(&a.p, &a.signer(), gid, &[helper.id().identity]).unwrap()
        };
        engine::merge_own_commit(&a.p, gid).unwrap();
        commits.push(out.commit);
    }
    commits
}

#[test]
fn a_member_six_epochs_behind_catches_up_in_order() {
    let (a, b, h) = (User::new("alice"), User::new("bob"), User::new("helper"));
    let gid = group_of(&a, &[&b]);
    let start = b.epoch(&gid);
    let commits = churn(&a, &gid, &h, 6);
    let last = commits.last().unwrap();
    // Out of order: the last commit is from the future.
    assert_eq!(
        b.recv(&gid, last).unwrap_err(),
        GroupError::FutureEpoch {
            have: start,
            got: start + 5
        }
    );
    for (i, c) in commits.iter().enumerate() {
        match b.recv(&gid, c).unwrap() {
            Incoming::Commit { new_epoch, .. } => assert_eq!(new_epoch, start + 1 + i as u64),
            other => panic!("{other:?}"),
        }
    }
    assert_converged(&gid, &[&a, &b]);
    let m = a.send(&gid, "caught up");
    assert_eq!(b.read(&gid, &m).1, "caught up");
}

#[test]
fn a_message_from_a_past_epoch_opens_up_to_max_past_epochs_and_not_beyond() {
    let (a, b, c, h) = (
        User::new("alice"),
        User::new("bob"),
        User::new("carol"),
        User::new("helper"),
    );
    let gid = group_of(&a, &[&b, &c]);
    let one_back = b.send(&gid, "one epoch back");
    let commits = churn(&a, &gid, &h, 1);
    c.recv(&gid, &commits[0]).unwrap();
    assert_eq!(c.read(&gid, &one_back), (b.id(), "one epoch back".into()));

    b.recv(&gid, &commits[0]).unwrap();
    let five_back = b.send(&gid, "five back");
    let six_back_sender = b.send(&gid, "six back");
    let commits = churn(&a, &gid, &h, config::MAX_PAST_EPOCHS);
    for cm in &commits {
        c.recv(&gid, cm).unwrap();
    }
    assert_eq!(c.read(&gid, &five_back).1, "five back");
    let more = churn(&a, &gid, &h, 1);
    c.recv(&gid, &more[0]).unwrap();
    let before = c.snapshot();
    assert!(matches!(
        c.recv(&gid, &six_back_sender).unwrap_err(),
        GroupError::TooOld { .. }
    ));
    assert_eq!(c.snapshot(), before);
}

#[test]
fn replayed_reordered_and_tampered_messages_are_refused_without_changing_state() {
    let (a, b) = (User::new("alice"), User::new("bob"));
    let gid = group_of(&a, &[&b]);
    let m: Vec<Vec<u8>> = (0..4).map(|i| a.send(&gid, &format!("m{i}"))).collect();
    // Reordered: within the out-of-order window, every message opens once.
    assert_eq!(b.read(&gid, &m[2]).1, "m2");
    assert_eq!(b.read(&gid, &m[0]).1, "m0");
    assert_eq!(b.read(&gid, &m[1]).1, "m1");
    // Replayed: refused, nothing changes.
    for r in [&m[0], &m[2]] {
        let before = b.snapshot();
        assert_eq!(b.recv(&gid, r).unwrap_err(), GroupError::Replay);
        assert_eq!(b.snapshot(), before);
    }
    // Every single-bit flip past the envelope header is refused and changes nothing.
    let before = b.snapshot();
    for i in (2..m[3].len()).step_by(7) {
        let mut t = m[3].clone();
        t[i] ^= 0x01;
        if let Ok(env) = GroupEnvelope::from_bytes(&t) {
            assert!(
                engine::process(&b.p, &gid, &env).is_err(),
                "flip at byte {i} accepted"
            );
        }
        assert_eq!(b.snapshot(), before, "flip at byte {i} changed state");
    }
    assert_eq!(b.read(&gid, &m[3]).1, "m3");
    // A tampered commit is refused too, and the real one still works.
    let h = User::new("helper");
    let out = engine::add_members(&a.p, &a.signer(), &gid, &[h.candidate()]).unwrap();
    engine::merge_own_commit(&a.p, &gid).unwrap();
    let mut t = out.commit.clone();
    let last = t.len() - 1;
    t[last] ^= 0x80;
    let before = b.snapshot();
    assert!(b.recv(&gid, &t).is_err());
    assert_eq!(b.snapshot(), before);
    b.recv(&gid, &out.commit).unwrap();
    // A replayed commit is stale.
    assert!(matches!(
        b.recv(&gid, &out.commit).unwrap_err(),
        GroupError::TooOld { .. }
    ));
    assert_converged(&gid, &[&a, &b]);
}

#[test]
fn envelope_kind_must_match_the_mls_content() {
    let (a, b, c) = (User::new("alice"), User::new("bob"), User::new("carol"));
    let gid = group_of(&a, &[&b]);
    let out = engine::add_members(&a.p, &a.signer(), &gid, &[c.candidate()]).unwrap();
    let commit = GroupEnvelope::from_bytes(&out.commit).unwrap();
    // A commit smuggled in a GroupSend envelope would bypass the relay's epoch ordering.
    let smuggled = GroupEnvelope::Message(commit.mls_bytes().to_vec());
    assert!(matches!(
        engine::process(&b.p, &gid, &smuggled).unwrap_err(),
        GroupError::Invalid(_)
    ));
    let msg = GroupEnvelope::from_bytes(&b.send(&gid, "x")).unwrap();
    let as_commit = GroupEnvelope::Commit(msg.mls_bytes().to_vec());
    assert!(matches!(
        engine::process(&a.p, &gid, &as_commit).unwrap_err(),
        GroupError::Invalid(_)
    ));
    assert_eq!(engine::group_id_of(&commit).unwrap(), gid);
    assert!(
        engine::group_id_of(&GroupEnvelope::from_bytes(&out.welcome.unwrap()).unwrap()).is_err()
    );
}

/// A KeyPackage built by hand (for substitution, expiry and ciphersuite tests).
fn custom_kp(signer_of: &User, name: &str, suite: Ciphersuite, lifetime: Lifetime) -> Vec<u8> {
    let id = MemberId {
        name: name.into(),
        identity: *signer_of.key.public_key().as_bytes(),
    };
    let bundle = KeyPackage::builder()
        .key_package_lifetime(lifetime)
        .leaf_node_capabilities(config::capabilities())
        .build(
            suite,
            &signer_of.p,
            &signer_of.signer(),
            id.credential_with_key(),
        )
        .unwrap();
    MlsMessageOut::from(bundle.key_package().clone())
        .to_bytes()
        .unwrap()
}

#[test]
fn add_members_refuses_a_key_package_substituted_by_the_relay() {
    let (a, carol, mallory) = (User::new("alice"), User::new("carol"), User::new("mallory"));
    let gid = group_of(&a, &[]);
    let fresh = Lifetime::new(config::KEY_PACKAGE_LIFETIME_SECS);
    let cases: Vec<(&str, Vec<u8>)> = vec![
        // A valid KeyPackage of another identity under the victim's name.
        (
            "mallory's key, carol's name",
            custom_kp(&mallory, "carol", CIPHERSUITE, fresh),
        ),
        // The victim's key under another name.
        (
            "carol's key, another name",
            custom_kp(&carol, "mallory", CIPHERSUITE, fresh),
        ),
        // Expired.
        (
            "expired",
            custom_kp(&carol, "carol", CIPHERSUITE, Lifetime::init(1_000, 2_000)),
        ),
        // Another ciphersuite.
        (
            "other ciphersuite",
            custom_kp(
                &carol,
                "carol",
                Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519,
                fresh,
            ),
        ),
        // Badly signed.
        ("bad signature", {
            let mut kp = carol.kp();
            let last = kp.len() - 1;
            kp[last] ^= 0x01;
            kp
        }),
        ("garbage", vec![0, 1, 2, 3]),
    ];
    for (what, kp) in cases {
        let before = a.snapshot();
        let err = engine::add_members(&a.p, &a.signer(), &gid, &[(carol.id(), kp)]).unwrap_err();
        assert!(matches!(err, GroupError::KeyPackage(_)), "{what}: {err:?}");
        assert_eq!(a.snapshot(), before, "{what}");
        assert_eq!(a.epoch(&gid), 0);
    }
    // The genuine one is accepted.
    engine::add_members(&a.p, &a.signer(), &gid, &[carol.candidate()]).unwrap();
}

#[test]
fn adding_a_name_or_key_twice_is_refused() {
    let (a, b) = (User::new("alice"), User::new("bob"));
    let gid = group_of(&a, &[&b]);
    let err = engine::add_members(&a.p, &a.signer(), &gid, &[b.candidate()]).unwrap_err();
    assert!(matches!(err, GroupError::Invalid(_)), "{err:?}");
}

#[test]
fn a_commit_forged_by_a_non_member_is_refused() {
    let (a, b, m, x) = (
        User::new("alice"),
        User::new("bob"),
        User::new("mallory"),
        User::new("x"),
    );
    let gid = group_of(&a, &[&b]);
    // The relay (mallory) builds a group with the same id and epoch and commits an add there.
    engine::create_group(&m.p, &m.signer(), &m.id(), GID, "Book club").unwrap();
    let forged = engine::add_members(&m.p, &m.signer(), &gid, &[x.candidate()]).unwrap();
    engine::merge_own_commit(&m.p, &gid).unwrap();
    let fake = m.send(&gid, "I am alice");
    let forged2 =
        engine::add_members(&m.p, &m.signer(), &gid, &[User::new("y").candidate()]).unwrap();
    assert_eq!(forged2.epoch, b.epoch(&gid));
    let before = b.snapshot();
    for f in [&forged.commit, &forged2.commit] {
        assert!(b.recv(&gid, f).is_err());
        assert_eq!(b.snapshot(), before);
    }
    // Nor can a forged application message pass.
    assert!(b.recv(&gid, &fake).is_err());
    assert_eq!(b.snapshot(), before);
    assert_eq!(engine::members(&b.p, &gid).unwrap().len(), 2);
}

#[test]
fn a_member_leaves_by_proposal_and_another_commits_it() {
    let (a, b, c) = (User::new("alice"), User::new("bob"), User::new("carol"));
    let gid = group_of(&a, &[&b, &c]);
    let bye = engine::leave(&b.p, &b.signer(), &gid).unwrap();
    for u in [&a, &c] {
        match u.recv(&gid, &bye).unwrap() {
            Incoming::Proposal { sender, removes } => {
                assert_eq!(sender, b.id());
                assert_eq!(removes, vec![b.id()]);
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(engine::commit_pending_proposals(&b.p, &b.signer(), &gid).is_err()); // cannot remove self
    let out = engine::commit_pending_proposals(&a.p, &a.signer(), &gid)
        .unwrap()
        .unwrap();
    assert_eq!(out.removed, vec![b.id().identity]);
    engine::merge_own_commit(&a.p, &gid).unwrap();
    c.recv(&gid, &out.commit).unwrap();
    match b.recv(&gid, &out.commit).unwrap() {
        Incoming::Commit {
            we_were_removed, ..
        } => assert!(we_were_removed),
        other => panic!("{other:?}"),
    }
    assert_converged(&gid, &[&a, &c]);
    assert!(engine::commit_pending_proposals(&a.p, &a.signer(), &gid)
        .unwrap()
        .is_none());
}

#[test]
fn member_ids_and_group_names_are_checked() {
    let k = *IdentityKeyPair::generate(&mut OsRng)
        .public_key()
        .as_bytes();
    assert!(MemberId::new("bob", k).is_ok());
    assert!(MemberId::new("Bob", k).is_err());
    assert!(MemberId::new("", k).is_err());
    assert!(MemberId::new("bob", [0u8; 32]).is_err()); // small-order point
    assert!(config::check_group_name("Book club").is_ok());
    assert!(config::check_group_name("").is_err());
    assert!(config::check_group_name("a\nb").is_err());
    assert!(config::check_group_name(&"x".repeat(65)).is_err());
    let a = User::new("alice");
    let other = User::new("alice");
    // Our member id must carry our own key.
    assert!(engine::create_group(&a.p, &a.signer(), &other.id(), GID, "x").is_err());
    assert!(matches!(
        engine::create_group(&a.p, &a.signer(), &a.id(), GID, ""),
        Err(GroupError::Name(_))
    ));
    engine::create_group(&a.p, &a.signer(), &a.id(), GID, "Trip ✈").unwrap();
    assert_eq!(engine::name(&a.p, &GID).unwrap(), "Trip ✈");
    assert_eq!(
        engine::epoch(&a.p, b"unknown-group-id").unwrap_err(),
        GroupError::UnknownGroup
    );
}

#[test]
fn a_last_resort_key_package_survives_its_use_and_a_one_time_one_does_not() {
    let (a, b, c) = (User::new("alice"), User::new("bob"), User::new("carol"));
    let gid = group_of(&a, &[]);
    let lr = engine::new_key_package(&b.p, &b.signer(), &b.id(), true).unwrap();
    let out = engine::add_members(&a.p, &a.signer(), &gid, &[(b.id(), lr.clone())]).unwrap();
    engine::merge_own_commit(&a.p, &gid).unwrap();
    b.join(&out.welcome.unwrap());
    // A second group can use the same last-resort KeyPackage.
    let a2 = User::new("alice2");
    engine::create_group(&a2.p, &a2.signer(), &a2.id(), *b"another-group-16", "Two").unwrap();
    let out2 =
        engine::add_members(&a2.p, &a2.signer(), b"another-group-16", &[(b.id(), lr)]).unwrap();
    engine::merge_own_commit(&a2.p, b"another-group-16").unwrap();
    b.join(&out2.welcome.unwrap());
    // A one-time KeyPackage cannot be used twice.
    let ot = c.kp();
    let w1 = engine::add_members(&a.p, &a.signer(), &gid, &[(c.id(), ot.clone())]).unwrap();
    engine::merge_own_commit(&a.p, &gid).unwrap();
    c.join(&w1.welcome.unwrap());
    let out3 =
        engine::add_members(&a2.p, &a2.signer(), b"another-group-16", &[(c.id(), ot)]).unwrap();
    let err = engine::join(
        &c.p,
        &GroupEnvelope::from_bytes(&out3.welcome.unwrap()).unwrap(),
    )
    .unwrap_err();
    assert!(matches!(err, GroupError::KeyPackage(_)), "{err:?}");
}

#[test]
fn mls_signatures_are_plain_identity_signatures_in_a_disjoint_domain() {
    use openmls_traits::signatures::Signer as _;
    // The signer is the identity key: what it signs verifies under the member's IK.
    let u = User::new("alice");
    let payload = b"\x13MLS 1.0 LeafNodeTBS\x05hello";
    let sig: [u8; 64] = u.signer().sign(payload).unwrap().try_into().unwrap();
    assert!(u.key.public_key().verify(payload, &sig));
    // Every other identity-key signature in hush starts with "hush-" (PROTOCOL §13.1)…
    for ctx in [
        hush_proto::relay::AUTH_CONTEXT,
        hush_proto::relay::REGISTER_CONTEXT,
        hush_proto::pq::PQ_PREKEY_SIG_CONTEXT,
    ] {
        assert!(ctx.starts_with(b"hush-"), "{ctx:?}");
    }
    // …while MLS SignContent starts with its label's length byte, then "MLS 1.0 ".
    for label in [
        "LeafNodeTBS",
        "GroupInfoTBS",
        "KeyPackageTBS",
        "FramedContentTBS",
    ] {
        let l = format!("MLS 1.0 {label}");
        assert!((0x13..=0x18).contains(&l.len()), "{l}");
    }
    // A KeyPackage's leaf carries exactly the identity key.
    let kp = engine::verify_key_package(&u.p, &u.id(), &u.kp()).unwrap();
    assert_eq!(
        kp.leaf_node().signature_key().as_slice(),
        u.key.public_key().as_bytes()
    );
}

#[test]
fn a_self_update_rotates_our_leaf_and_everyone_follows() {
    let (a, b, c) = (User::new("alice"), User::new("bob"), User::new("carol"));
    let gid = group_of(&a, &[&b, &c]);
    let out = engine::self_update(&b.p, &b.signer(), &gid).unwrap();
    assert!(out.added.is_empty() && out.removed.is_empty() && out.welcome.is_none());
    engine::merge_own_commit(&b.p, &gid).unwrap();
    for u in [&a, &c] {
        match u.recv(&gid, &out.commit).unwrap() {
            Incoming::Commit { committer, .. } => assert_eq!(committer, b.id()),
            other => panic!("{other:?}"),
        }
    }
    assert_converged(&gid, &[&a, &b, &c]);
    // The member list (names and identity keys) is unchanged.
    assert_eq!(engine::members(&a.p, &gid).unwrap().len(), 3);
    let m = b.send(&gid, "fresh keys");
    assert_eq!(a.read(&gid, &m), (b.id(), "fresh keys".into()));
}

#[test]
fn a_key_package_without_hush_capabilities_is_refused() {
    let (a, carol) = (User::new("alice"), User::new("carol"));
    let gid = group_of(&a, &[]);
    let bundle = KeyPackage::builder()
        .build(
            CIPHERSUITE,
            &carol.p,
            &carol.signer(),
            carol.id().credential_with_key(),
        )
        .unwrap();
    let kp = MlsMessageOut::from(bundle.key_package().clone())
        .to_bytes()
        .unwrap();
    let err = engine::add_members(&a.p, &a.signer(), &gid, &[(carol.id(), kp)]).unwrap_err();
    assert!(matches!(err, GroupError::KeyPackage(_)), "{err:?}");
}

#[test]
fn garbage_and_mutations_never_panic_and_never_change_state() {
    use rand_core::RngCore;
    let (a, b, c) = (User::new("alice"), User::new("bob"), User::new("carol"));
    let gid = group_of(&a, &[&b]);
    let hello = a.send(&gid, "hello");
    let commit = engine::add_members(&a.p, &a.signer(), &gid, &[c.candidate()]).unwrap();
    engine::discard_own_commit(&a.p, &gid).unwrap();
    let samples = [
        hello,
        engine::leave(&a.p, &a.signer(), &gid).unwrap(),
        commit.commit,
    ];
    let before = b.snapshot();
    let mut rng = OsRng;
    for round in 0..600 {
        let mut bytes = samples[round % samples.len()].clone();
        match round % 3 {
            0 => {
                let i = 2 + (rng.next_u32() as usize) % (bytes.len() - 2);
                bytes[i] ^= (rng.next_u32() as u8) | 1; // always a change
            }
            1 => bytes.truncate(2 + (rng.next_u32() as usize) % (bytes.len() - 2)),
            _ => {
                let mut tail = vec![0u8; (rng.next_u32() % 64) as usize];
                rng.fill_bytes(&mut tail);
                bytes.truncate(2);
                bytes.extend(tail);
            }
        }
        let Ok(env) = GroupEnvelope::from_bytes(&bytes) else {
            continue;
        };
        let _ = engine::group_id_of(&env);
        assert!(engine::process(&b.p, &gid, &env).is_err(), "round {round}");
        let _ = engine::join(&c.p, &GroupEnvelope::Welcome(env.mls_bytes().to_vec()));
        let _ = engine::verify_key_package(&b.p, &a.id(), env.mls_bytes());
        assert_eq!(b.snapshot(), before, "round {round}");
    }
}

#[test]
fn a_welcome_is_refused_if_a_member_or_the_group_breaks_hush_rules() {
    use openmls::prelude::{MlsGroup, MlsGroupCreateConfig};
    let bob = User::new("bob");
    // A creator whose credential is not a valid relay name.
    let bad = User::new("x");
    let bad_id = MemberId {
        name: "Not A Name!".into(),
        identity: bad.id().identity,
    };
    let mut g = MlsGroup::new(
        &bad.p,
        &bad.signer(),
        &config::create_config("Trap").unwrap(),
        bad_id.credential_with_key(),
    )
    .unwrap();
    let kp = engine::verify_key_package(&bad.p, &bob.id(), &bob.kp()).unwrap();
    let (_, welcome, _) = g.add_members(&bad.p, &bad.signer(), &[kp]).unwrap();
    let err =
        engine::join(&bob.p, &GroupEnvelope::Welcome(welcome.to_bytes().unwrap())).unwrap_err();
    assert!(
        matches!(&err, GroupError::Invalid(m) if m.contains("relay name")),
        "{err:?}"
    );
    assert_eq!(
        engine::epoch(&bob.p, g.group_id().as_slice()).unwrap_err(),
        GroupError::UnknownGroup
    );

    // A group made without hush's configuration (no name extension, plaintext handshakes).
    let bob = User::new("bob");
    let other = User::new("other");
    let cfg = MlsGroupCreateConfig::builder()
        .ciphersuite(CIPHERSUITE)
        .capabilities(config::capabilities())
        .use_ratchet_tree_extension(true)
        .build();
    let mut g = MlsGroup::new(
        &other.p,
        &other.signer(),
        &cfg,
        other.id().credential_with_key(),
    )
    .unwrap();
    let kp = engine::verify_key_package(&other.p, &bob.id(), &bob.kp()).unwrap();
    let (_, welcome, _) = g.add_members(&other.p, &other.signer(), &[kp]).unwrap();
    let bytes = GroupEnvelope::Welcome(welcome.to_bytes().unwrap());
    let err = engine::join(&bob.p, &bytes).unwrap_err();
    assert!(
        matches!(&err, GroupError::Invalid(m) if m.contains("name extension")),
        "{err:?}"
    );
}

#[test]
fn a_loaded_group_stays_equal_to_its_storage() {
    let (a, b, c) = (User::new("alice"), User::new("bob"), User::new("carol"));
    let gid = group_of(&a, &[&b]);
    let mut la = engine::LoadedGroup::load(&a.p, &gid).unwrap();
    let mut lb = engine::LoadedGroup::load(&b.p, &gid).unwrap();
    for i in 0..5 {
        let m = la
            .encrypt(&a.p, &a.signer(), format!("m{i}").as_bytes())
            .unwrap();
        match lb
            .process(&b.p, &GroupEnvelope::from_bytes(&m).unwrap())
            .unwrap()
        {
            Incoming::Application { plaintext, .. } => {
                assert_eq!(plaintext.as_slice(), format!("m{i}").as_bytes())
            }
            other => panic!("{other:?}"),
        }
        // A replay through the loaded group is refused like through storage.
        let env = GroupEnvelope::from_bytes(&m).unwrap();
        assert_eq!(lb.process(&b.p, &env).unwrap_err(), GroupError::Replay);
        assert_eq!(b.recv(&gid, &m).unwrap_err(), GroupError::Replay);
    }
    let out = engine::add_members(&a.p, &a.signer(), &gid, &[c.candidate()]).unwrap();
    engine::merge_own_commit(&a.p, &gid).unwrap();
    lb.process(&b.p, &GroupEnvelope::from_bytes(&out.commit).unwrap())
        .unwrap();
    assert_eq!(lb.epoch(), b.epoch(&gid));
    c.join(&out.welcome.unwrap());
    // Messages written through the loaded group open for a member reading from storage.
    let mut la = engine::LoadedGroup::load(&a.p, &gid).unwrap();
    let m = la.encrypt(&a.p, &a.signer(), b"after").unwrap();
    assert_eq!(c.read(&gid, &m).1, "after");
    assert_eq!(b.read(&gid, &m).1, "after");
    assert_converged(&gid, &[&a, &b, &c]);
}
