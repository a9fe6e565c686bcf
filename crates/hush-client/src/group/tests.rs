//! Engine tests with openmls's in-memory provider: membership changes, the boundaries of
//! who can read what, concurrent commits, catching up, delayed messages, leaves, last-resort
//! KeyPackages. Attacks are in `tests_attacks.rs`.

use hush_proto::{GroupEnvelope, IdentityKeyPair};
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
    pub fn recv(&self, gid: &[u8], bytes: &[u8]) -> Result<Incoming, GroupError> {
        process(&self.p, gid, &GroupEnvelope::from_bytes(bytes).unwrap())
    }
    pub fn join(&self, welcome: &[u8]) -> engine::Joined {
        engine::join(&self.p, &GroupEnvelope::from_bytes(welcome).unwrap()).unwrap()
    }
    pub fn send(&self, gid: &[u8], text: &str) -> Vec<u8> {
        engine::encrypt(&self.p, &self.signer(), gid, text.as_bytes()).unwrap()
    }
    pub fn read(&self, gid: &[u8], bytes: &[u8]) -> (MemberId, String) {
        match self.recv(gid, bytes).unwrap() {
            Incoming::Application {
                sender, plaintext, ..
            } => (sender, String::from_utf8(plaintext.to_vec()).unwrap()),
            other => panic!("expected an application message, got {other:?}"),
        }
    }
    pub fn epoch(&self, gid: &[u8]) -> u64 {
        engine::epoch(&self.p, gid).unwrap()
    }
    pub fn auth(&self, gid: &[u8]) -> Vec<u8> {
        engine::epoch_authenticator(&self.p, gid).unwrap()
    }
    /// Every stored value, to check that a refused message changed nothing.
    pub fn snapshot(&self) -> std::collections::HashMap<Vec<u8>, Vec<u8>> {
        self.p.storage().values.read().unwrap().clone()
    }
}

pub(super) const GID: [u8; 16] = *b"group-id-16bytes";

/// `creator` makes a group and adds `others` in one commit; everyone joins.
pub(super) fn group_of(creator: &User, others: &[&User]) -> Vec<u8> {
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

pub(super) fn assert_converged(gid: &[u8], users: &[&User]) {
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

#[test]
fn our_own_commit_coming_back_is_a_replay_and_is_merged_by_comparison() {
    let (a, b, c) = (User::new("alice"), User::new("bob"), User::new("carol"));
    let gid = group_of(&a, &[&b]);
    let out = engine::add_members(&a.p, &a.signer(), &gid, &[c.candidate()]).unwrap();
    // As after a crash: the relay's copy of our pending commit cannot be processed by us…
    let before = a.snapshot();
    assert_eq!(a.recv(&gid, &out.commit).unwrap_err(), GroupError::Replay);
    assert_eq!(a.snapshot(), before);
    // …the client recognises its bytes and merges.
    engine::merge_own_commit(&a.p, &gid).unwrap();
    b.recv(&gid, &out.commit).unwrap();
    c.join(&out.welcome.unwrap());
    assert_converged(&gid, &[&a, &b, &c]);
    assert!(matches!(
        a.recv(&gid, &out.commit).unwrap_err(),
        GroupError::TooOld { .. }
    ));
}

#[test]
fn a_joined_member_adds_with_the_same_configuration() {
    let (a, b, c) = (User::new("alice"), User::new("bob"), User::new("carol"));
    let gid = group_of(&a, &[&b]);
    // Bob joined from a Welcome; his Welcome for carol must carry the tree and the name too.
    let out = engine::add_members(&b.p, &b.signer(), &gid, &[c.candidate()]).unwrap();
    engine::merge_own_commit(&b.p, &gid).unwrap();
    a.recv(&gid, &out.commit).unwrap();
    let joined = c.join(&out.welcome.unwrap());
    assert_eq!(joined.inviter, b.id());
    assert_eq!(joined.name, "Book club");
    assert_converged(&gid, &[&a, &b, &c]);
    let m = c.send(&gid, "hi");
    assert_eq!(a.read(&gid, &m).1, "hi");
}

#[test]
fn a_replayed_welcome_does_not_rejoin_a_group_we_deleted() {
    // Review finding 7: the relay replays the Welcome that first added bob through his
    // last-resort KeyPackage, after bob was removed and deleted the group.
    let (a, b) = (User::new("alice"), User::new("bob"));
    let gid = group_of(&a, &[]);
    let lr = engine::new_key_package(&b.p, &b.signer(), &b.id(), true).unwrap();
    let first = engine::add_members(&a.p, &a.signer(), &gid, &[(b.id(), lr.clone())]).unwrap();
    engine::merge_own_commit(&a.p, &gid).unwrap();
    let first = GroupEnvelope::from_bytes(&first.welcome.unwrap()).unwrap();
    engine::join(&b.p, &first).unwrap();
    let out = engine::remove_members(&a.p, &a.signer(), &gid, &[b.id().identity]).unwrap();
    engine::merge_own_commit(&a.p, &gid).unwrap();
    b.recv(&gid, &out.commit).unwrap();
    let last = b.epoch(&gid);
    engine::delete_group(&b.p, &gid).unwrap();
    // Refused before anything is written.
    let err = engine::join_after(&b.p, &first, last).unwrap_err();
    assert!(matches!(err, GroupError::Invalid(_)), "{err:?}");
    assert_eq!(
        engine::epoch(&b.p, &gid).unwrap_err(),
        GroupError::UnknownGroup
    );
    // (Plain join cannot tell: the client must pass the last epoch it knew.)
    assert_eq!(engine::join(&b.p, &first).unwrap().epoch, 1);
    engine::delete_group(&b.p, &gid).unwrap();
    // A real re-add is a Welcome to a later epoch.
    let again = engine::add_members(&a.p, &a.signer(), &gid, &[(b.id(), lr)]).unwrap();
    engine::merge_own_commit(&a.p, &gid).unwrap();
    let again = GroupEnvelope::from_bytes(&again.welcome.unwrap()).unwrap();
    let joined = engine::join_after(&b.p, &again, last).unwrap();
    assert!(joined.epoch > last);
    assert_converged(&gid, &[&a, &b]);
}

#[test]
fn a_forgotten_key_package_cannot_be_joined_through() {
    // Review finding 7: a replaced last-resort KeyPackage's keys are deleted after a grace
    // period; a Welcome to it (e.g. replayed by the relay) then finds no key.
    let (a, b) = (User::new("alice"), User::new("bob"));
    let gid = group_of(&a, &[]);
    let old = engine::new_key_package(&b.p, &b.signer(), &b.id(), true).unwrap();
    let new = engine::new_key_package(&b.p, &b.signer(), &b.id(), true).unwrap();
    let out = engine::add_members(&a.p, &a.signer(), &gid, &[(b.id(), old.clone())]).unwrap();
    engine::discard_own_commit(&a.p, &gid).unwrap();
    assert!(engine::forget_key_package(&b.p, &old).unwrap());
    assert!(!engine::forget_key_package(&b.p, &old).unwrap());
    let welcome = GroupEnvelope::from_bytes(&out.welcome.unwrap()).unwrap();
    let err = engine::join(&b.p, &welcome).unwrap_err();
    assert!(matches!(err, GroupError::KeyPackage(_)), "{err:?}");
    // The current one still works.
    let out = engine::add_members(&a.p, &a.signer(), &gid, &[(b.id(), new)]).unwrap();
    engine::merge_own_commit(&a.p, &gid).unwrap();
    b.join(&out.welcome.unwrap());
    assert!(engine::forget_key_package(&b.p, b"garbage").is_err());
}
