//! The engine on real profile files through [`HushProvider`]: state survives a reopen, a
//! dropped transaction leaves nothing, a deleted group leaves no row, and nothing about a
//! group is readable in the database file or its WAL.

use hush_proto::{GroupEnvelope, IdentityKeyPair};
use rand_core::OsRng;

use super::engine;
use super::{GroupError, HushProvider, IdentitySigner, Incoming, MemberId};
use crate::store::{KdfParams, Store, DATABASE_FILE};

const GID: [u8; 16] = *b"profile-group-id";
const NAME: &str = "Book club";

struct ProfileUser {
    name: &'static str,
    key: IdentityKeyPair,
    dir: tempfile::TempDir,
    store: Option<Store>,
}

impl ProfileUser {
    fn new(name: &'static str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let params = KdfParams {
            m_cost: 256,
            t_cost: 1,
            p_cost: 1,
        };
        let store = Store::create(dir.path(), b"pw", params).unwrap();
        Self {
            name,
            key: IdentityKeyPair::generate(&mut OsRng),
            dir,
            store: Some(store),
        }
    }

    fn id(&self) -> MemberId {
        MemberId::new(self.name, *self.key.public_key().as_bytes()).unwrap()
    }

    /// Run `f` in one profile transaction and commit it.
    fn with<R>(&mut self, f: impl FnOnce(&HushProvider, &IdentitySigner, &MemberId) -> R) -> R {
        let id = self.id();
        let signer = IdentitySigner::new(&self.key);
        let store = self.store.as_mut().unwrap();
        let tx = store.tx().unwrap();
        let r = {
            let p = HushProvider::new(&tx);
            f(&p, &signer, &id)
        };
        tx.commit().unwrap();
        r
    }

    fn reopen(&mut self) {
        self.store = None;
        self.store = Some(Store::open(self.dir.path(), b"pw").unwrap());
    }

    /// Rows in the profile's key-value table, read through a separate connection.
    fn kv_rows(&self) -> i64 {
        let conn = rusqlite::Connection::open(self.dir.path().join(DATABASE_FILE)).unwrap();
        conn.query_row("SELECT count(*) FROM kv", [], |r| r.get(0))
            .unwrap()
    }
}

fn env(bytes: &[u8]) -> GroupEnvelope {
    GroupEnvelope::from_bytes(bytes).unwrap()
}

/// Alice creates the group and adds bob; both committed.
fn pair() -> (ProfileUser, ProfileUser) {
    // Long names: a 3-byte needle could turn up by chance in 100 KB of ciphertext.
    let mut a = ProfileUser::new("alice-liddell");
    let mut b = ProfileUser::new("bob-the-builder");
    let kp = b.with(|p, s, me| engine::new_key_package(p, s, me, false).unwrap());
    let bob = b.id();
    let out = a.with(|p, s, me| {
        engine::create_group(p, s, me, GID, NAME).unwrap();
        let out = engine::add_members(p, s, &GID, &[(bob, kp)]).unwrap();
        engine::merge_own_commit(p, &GID).unwrap();
        out
    });
    let joined = b.with(|p, _, _| engine::join(p, &env(&out.welcome.unwrap())).unwrap());
    assert_eq!(joined.name, NAME);
    (a, b)
}

#[test]
fn group_state_round_trips_across_a_reopen() {
    let (mut a, mut b) = pair();
    a.reopen();
    b.reopen();
    let m = a.with(|p, s, _| engine::encrypt(p, s, &GID, b"after reopen").unwrap());
    let got = b.with(|p, _, _| engine::process(p, &GID, &env(&m)).unwrap());
    match got {
        Incoming::Application {
            sender, plaintext, ..
        } => {
            assert_eq!(sender, a.id());
            assert_eq!(plaintext.as_slice(), b"after reopen");
        }
        other => panic!("{other:?}"),
    }
    // The spent key stays spent across a reopen: a replay is refused.
    b.reopen();
    let replay = b.with(|p, _, _| engine::process(p, &GID, &env(&m)).unwrap_err());
    assert_eq!(replay, GroupError::Replay);
    let auth_a = a.with(|p, _, _| engine::epoch_authenticator(p, &GID).unwrap());
    let auth_b = b.with(|p, _, _| engine::epoch_authenticator(p, &GID).unwrap());
    assert_eq!(auth_a, auth_b);
    let members = b.with(|p, _, _| engine::members(p, &GID).unwrap());
    assert_eq!(members, vec![a.id(), b.id()]);
}

#[test]
fn a_dropped_transaction_leaves_no_mls_rows() {
    let mut a = ProfileUser::new("alice");
    let before = a.kv_rows();
    {
        let id = a.id();
        let signer = IdentitySigner::new(&a.key);
        let store = a.store.as_mut().unwrap();
        let tx = store.tx().unwrap();
        let p = HushProvider::new(&tx);
        engine::create_group(&p, &signer, &id, GID, NAME).unwrap();
        engine::new_key_package(&p, &signer, &id, true).unwrap();
        assert_eq!(engine::epoch(&p, &GID).unwrap(), 0);
        // Dropped without commit.
    }
    assert_eq!(a.kv_rows(), before);
    let err = a.with(|p, _, _| engine::epoch(p, &GID).unwrap_err());
    assert_eq!(err, GroupError::UnknownGroup);
    a.reopen();
    assert_eq!(a.kv_rows(), before);
}

#[test]
fn deleting_a_group_leaves_no_row_of_it() {
    let mut a = ProfileUser::new("alice");
    let mut b = ProfileUser::new("bob");
    let (a0, b0) = (a.kv_rows(), b.kv_rows());
    let kp = b.with(|p, s, me| engine::new_key_package(p, s, me, false).unwrap());
    let bob = b.id();
    let out = a.with(|p, s, me| {
        engine::create_group(p, s, me, GID, NAME).unwrap();
        let out = engine::add_members(p, s, &GID, &[(bob, kp)]).unwrap();
        engine::merge_own_commit(p, &GID).unwrap();
        out
    });
    b.with(|p, _, _| engine::join(p, &env(&out.welcome.unwrap())).unwrap());
    // Traffic both ways, and a pending proposal, so every kind of row exists.
    let m = a.with(|p, s, _| engine::encrypt(p, s, &GID, b"hello").unwrap());
    b.with(|p, _, _| engine::process(p, &GID, &env(&m)).unwrap());
    let bye = b.with(|p, s, _| engine::leave(p, s, &GID).unwrap());
    a.with(|p, _, _| engine::process(p, &GID, &env(&bye)).unwrap());
    assert!(a.kv_rows() > a0 && b.kv_rows() > b0);
    a.with(|p, _, _| engine::delete_group(p, &GID).unwrap());
    b.with(|p, _, _| engine::delete_group(p, &GID).unwrap());
    assert_eq!(a.kv_rows(), a0, "alice has rows left");
    assert_eq!(
        b.kv_rows(),
        b0,
        "bob has rows left (his KeyPackage was used)"
    );
    a.reopen();
    b.reopen();
    let err = a.with(|p, _, _| engine::epoch(p, &GID).unwrap_err());
    assert_eq!(err, GroupError::UnknownGroup);
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn nothing_about_a_group_is_in_clear_in_the_database_or_its_wal() {
    let (mut a, mut b) = pair();
    let m = a.with(|p, s, _| engine::encrypt(p, s, &GID, b"secret words").unwrap());
    b.with(|p, _, _| engine::process(p, &GID, &env(&m)).unwrap());
    let needles: Vec<(String, Vec<u8>)> = vec![
        ("group id".into(), GID.to_vec()),
        ("group id hex".into(), hex::encode(GID).into_bytes()),
        ("group name".into(), NAME.as_bytes().to_vec()),
        ("alice".into(), b"alice-liddell".to_vec()),
        ("bob".into(), b"bob-the-builder".to_vec()),
        ("alice key".into(), a.id().identity.to_vec()),
        ("bob key".into(), b.id().identity.to_vec()),
        (
            "alice key hex".into(),
            hex::encode(a.id().identity).into_bytes(),
        ),
        ("plaintext".into(), b"secret words".to_vec()),
    ];
    for u in [&mut a, &mut b] {
        u.store = None;
        let db = u.dir.path().join(DATABASE_FILE);
        let wal =
            std::fs::read(u.dir.path().join(format!("{DATABASE_FILE}-wal"))).unwrap_or_default();
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
        drop(conn);
        let raw = std::fs::read(&db).unwrap();
        assert!(raw.len() > 10_000, "the group state is in the file");
        for (what, n) in &needles {
            assert!(
                !contains(&raw, n),
                "{}: {what} in clear in the database",
                u.name
            );
            assert!(!contains(&wal, n), "{}: {what} in clear in the WAL", u.name);
        }
    }
}

impl ProfileUser {
    /// Every row of the key-value table, to compare byte for byte.
    fn kv_dump(&self) -> Vec<(Vec<u8>, i64, Vec<u8>)> {
        let conn = rusqlite::Connection::open(self.dir.path().join(DATABASE_FILE)).unwrap();
        let mut stmt = conn.prepare("SELECT k, gen, v FROM kv ORDER BY k").unwrap();
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap();
        rows.map(Result::unwrap).collect()
    }
}

#[test]
fn refused_messages_write_nothing_even_if_the_transaction_is_committed() {
    let (mut a, mut b) = pair();
    let m = a.with(|p, s, _| engine::encrypt(p, s, &GID, b"one").unwrap());
    b.with(|p, _, _| engine::process(p, &GID, &env(&m)).unwrap());
    let before = b.kv_dump();
    let mut tampered = m.clone();
    let last = tampered.len() - 1;
    tampered[last] ^= 1;
    for bad in [&m, &tampered] {
        // Committing the transaction after the error must change nothing at all.
        let err = b.with(|p, _, _| engine::process(p, &GID, &env(bad)).unwrap_err());
        assert!(
            matches!(err, GroupError::Replay | GroupError::Invalid(_)),
            "{err:?}"
        );
        assert_eq!(b.kv_dump(), before);
    }
    // A removed member's profile learns it, and refuses to send.
    let bob = b.id().identity;
    let out = a.with(|p, s, _| {
        let out = engine::remove_members(p, s, &GID, &[bob]).unwrap();
        engine::merge_own_commit(p, &GID).unwrap();
        out
    });
    let next = a.with(|p, s, _| engine::encrypt(p, s, &GID, b"bob is gone").unwrap());
    match b.with(|p, _, _| engine::process(p, &GID, &env(&out.commit)).unwrap()) {
        Incoming::Commit {
            we_were_removed, ..
        } => assert!(we_were_removed),
        other => panic!("{other:?}"),
    }
    b.reopen();
    let err = b.with(|p, _, _| engine::process(p, &GID, &env(&next)).unwrap_err());
    assert_eq!(err, GroupError::NotAMember);
    let err = b.with(|p, s, _| engine::encrypt(p, s, &GID, b"x").unwrap_err());
    assert_eq!(err, GroupError::NotAMember);
}

#[test]
fn a_one_time_key_package_is_gone_from_the_profile_once_a_welcome_used_it() {
    use openmls::prelude::{KeyPackageBundle, KeyPackageRef};
    use openmls_traits::storage::StorageProvider as _;
    use openmls_traits::OpenMlsProvider as _;
    // Review finding 7: the private keys of a used one-time KeyPackage must not stay on disk;
    // a last-resort one stays (it may serve more Welcomes).
    let mut a = ProfileUser::new("alice-liddell");
    let mut b = ProfileUser::new("bob-the-builder");
    let (one_time, last_resort) = b.with(|p, s, me| {
        (
            engine::new_key_package(p, s, me, false).unwrap(),
            engine::new_key_package(p, s, me, true).unwrap(),
        )
    });
    let bob = b.id();
    let refs: Vec<KeyPackageRef> = b.with(|p, _, me| {
        [&one_time, &last_resort]
            .iter()
            .map(|kp| {
                engine::verify_key_package(p, me, kp)
                    .unwrap()
                    .hash_ref(p.crypto())
                    .unwrap()
            })
            .collect()
    });
    let stored = |u: &mut ProfileUser, r: &KeyPackageRef| {
        u.with(|p, _, _| {
            p.storage()
                .key_package::<KeyPackageRef, KeyPackageBundle>(r)
                .unwrap()
                .is_some()
        })
    };
    assert!(stored(&mut b, &refs[0]) && stored(&mut b, &refs[1]));
    let rows = b.kv_rows();
    let out = a.with(|p, s, me| {
        engine::create_group(p, s, me, GID, NAME).unwrap();
        let out = engine::add_members(p, s, &GID, &[(bob, one_time)]).unwrap();
        engine::merge_own_commit(p, &GID).unwrap();
        out
    });
    b.with(|p, _, _| engine::join(p, &env(&out.welcome.unwrap())).unwrap());
    b.reopen();
    assert!(!stored(&mut b, &refs[0]), "used one-time KeyPackage kept");
    assert!(stored(&mut b, &refs[1]), "last-resort KeyPackage lost");
    assert!(b.kv_rows() > rows, "the group's own state is there");
}
