//! Tests of the PostgreSQL store against a real server (each in its own fresh database):
//! migrations, SQLite-equivalent results for the same ops, the cross-node ordering property,
//! recovery from a dropped connection, and atomic prekey pops across stores.
//!
//! Needs PostgreSQL at `HUSH_TEST_POSTGRES` (default
//! `postgres://postgres@127.0.0.1:5432/postgres`); without it each test prints one line and
//! passes, unless `HUSH_REQUIRE_SERVICES=1`.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Instant;

use hush_proto::relay::GroupCommit;

use crate::store::GroupQuota;
use hush_proto::{IdentityKeyPair, OneTimePrekey, SignedPrekey, X25519PublicKey};
use postgres::NoTls;
use rand_core::{OsRng, RngCore};

use super::*;

const DEFAULT_ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// A fresh database `hush_t_<pid>_<hex>`, dropped (`WITH (FORCE)`) with this value.
pub(super) struct TestDb {
    admin_url: String,
    name: String,
    url: String,
}

impl TestDb {
    /// `None` (after one line on stderr) when PostgreSQL is unreachable and not required.
    pub(super) fn create() -> Option<Self> {
        let admin_url =
            std::env::var("HUSH_TEST_POSTGRES").unwrap_or_else(|_| DEFAULT_ADMIN_URL.to_owned());
        let required = std::env::var("HUSH_REQUIRE_SERVICES").is_ok_and(|v| v == "1");
        let mut admin = match admin_client(&admin_url) {
            Ok(client) => client,
            Err(err) if required => panic!(
                "HUSH_REQUIRE_SERVICES=1 but PostgreSQL (HUSH_TEST_POSTGRES) is unreachable: {err}"
            ),
            Err(_) => {
                eprintln!(
                    "skipped: needs PostgreSQL (HUSH_TEST_POSTGRES, default {DEFAULT_ADMIN_URL}); \
                     HUSH_REQUIRE_SERVICES=1 makes this fail"
                );
                return None;
            }
        };
        let name = format!("hush_t_{}_{:016x}", std::process::id(), OsRng.next_u64());
        admin
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .unwrap();
        let url = with_dbname(&admin_url, &name);
        Some(Self {
            admin_url,
            name,
            url,
        })
    }

    /// A plain client on the test database (for checks and tampering).
    fn raw(&self) -> Client {
        admin_client(&self.url).unwrap()
    }

    fn store(&self) -> PostgresStore {
        PostgresStore::connect(&self.url).unwrap()
    }

    /// Kill every other session on the test database, as a server restart would.
    fn terminate_sessions(&self) -> i64 {
        let mut admin = admin_client(&self.admin_url).unwrap();
        admin
            .query(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
                 WHERE datname = $1 AND pid <> pg_backend_pid()",
                &[&self.name],
            )
            .unwrap()
            .len() as i64
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut admin) = admin_client(&self.admin_url) {
            let _ = admin.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

fn admin_client(url: &str) -> Result<Client, postgres::Error> {
    let mut config = Config::from_str(url)?;
    config.connect_timeout(Duration::from_secs(3));
    config.connect(NoTls)
}

/// `url` with its database name replaced by `name` (URL or key=value form).
fn with_dbname(url: &str, name: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return format!("{url} dbname={name}");
    };
    let (authority, tail) = match rest.find('/') {
        Some(slash) => rest.split_at(slash),
        None => match rest.find('?') {
            Some(q) => rest.split_at(q),
            None => (rest, ""),
        },
    };
    let query = tail.find('?').map_or("", |q| &tail[q..]);
    format!("{scheme}://{authority}/{name}{query}")
}

/// A fresh [`TestDb`], or return from the test (skipped) when PostgreSQL is unreachable.
macro_rules! test_db {
    () => {
        match TestDb::create() {
            Some(db) => db,
            None => return,
        }
    };
}

mod commit_lost;
mod equivalence;
mod hardening;

/// A valid Ed25519 identity key derived from a one-byte seed.
pub(super) fn ident(n: u8) -> IdentityBytes {
    *IdentityKeyPair::from_seed(&[n; 32]).public_key().as_bytes()
}

pub(super) fn register(name: &str, identity: IdentityBytes) -> WriteOp {
    WriteOp::Register {
        name: name.to_owned(),
        identity,
        signature: vec![1; 64],
    }
}

pub(super) fn publish(
    identity: IdentityBytes,
    spk_id: u32,
    ids: &[u32],
    max_stock: u32,
) -> WriteOp {
    WriteOp::PublishPrekeys {
        identity,
        signed_prekey: SignedPrekey {
            id: spk_id,
            created_at: u64::MAX - u64::from(spk_id),
            public_key: X25519PublicKey::from_bytes([spk_id as u8; 32]),
            signature: [0xA5; 64],
        },
        one_time: ids
            .iter()
            .map(|&id| OneTimePrekey {
                id,
                public_key: X25519PublicKey::from_bytes([(id as u8).wrapping_add(100); 32]),
            })
            .collect(),
        max_stock,
    }
}

pub(super) fn fetch(name: &str, pop_one_time: bool) -> WriteOp {
    WriteOp::FetchBundle {
        name: name.to_owned(),
        pop_one_time,
    }
}

#[allow(clippy::too_many_arguments)]
pub(super) fn enqueue(
    recipient: IdentityBytes,
    sender: IdentityBytes,
    envelope: &[u8],
    at: u64,
    max_messages: u32,
    max_bytes: u64,
    max_total_bytes: u64,
    max_sender_bytes: u64,
) -> WriteOp {
    WriteOp::Enqueue {
        recipient,
        sender,
        envelope: envelope.to_vec(),
        received_at_ms: at,
        max_messages,
        max_bytes,
        max_total_bytes,
        max_sender_bytes,
    }
}

/// An enqueue with generous quotas.
pub(super) fn enqueue_op(recipient: IdentityBytes, envelope: &[u8], at: u64) -> WriteOp {
    enqueue(
        recipient,
        ident(99),
        envelope,
        at,
        1_000_000,
        1 << 40,
        1 << 50,
        1 << 50,
    )
}

pub(super) fn stored(result: &WriteResult) -> MessageId {
    match result {
        WriteResult::Stored(id) => *id,
        other => panic!("expected Stored, got {other:?}"),
    }
}

/// The counters agree with the rows they summarise (as the SQLite suite's `check_counters`).
pub(super) fn check_counters(db: &TestDb) {
    let mut raw = db.raw();
    let one = |raw: &mut Client, sql: &str| -> Vec<(Vec<u8>, i64, i64)> {
        raw.query(sql, &[])
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1), r.get(2)))
            .collect()
    };
    assert_eq!(
        one(
            &mut raw,
            "SELECT recipient, messages, bytes FROM mailbox_usage ORDER BY recipient"
        ),
        one(
            &mut raw,
            "SELECT m.recipient, count(*),
                    sum(octet_length(m.envelope) + coalesce(octet_length(b.envelope), 0))::bigint
             FROM messages AS m LEFT JOIN group_blobs AS b ON b.id = m.blob
             GROUP BY m.recipient ORDER BY m.recipient"
        )
    );
    let totals = raw
        .query_one("SELECT messages, bytes FROM mailbox_totals", &[])
        .unwrap();
    let actual = raw
        .query_one(
            "SELECT (SELECT count(*) FROM messages),
                    (SELECT coalesce(sum(octet_length(envelope)), 0) FROM messages)
                  + (SELECT coalesce(sum(octet_length(envelope)), 0) FROM group_blobs)
                  + (SELECT coalesce(sum(octet_length(envelope)), 0) FROM group_commits)",
            &[],
        )
        .unwrap();
    assert_eq!(
        (totals.get::<_, i64>(0), totals.get::<_, i64>(1)),
        (actual.get::<_, i64>(0), actual.get::<_, i64>(1))
    );
    let senders = |raw: &mut Client, sql: &str| -> Vec<(Vec<u8>, i64)> {
        raw.query(sql, &[])
            .unwrap()
            .iter()
            .map(|r| (r.get(0), r.get(1)))
            .collect()
    };
    assert_eq!(
        senders(
            &mut raw,
            "SELECT sender, bytes FROM sender_usage ORDER BY sender"
        ),
        senders(
            &mut raw,
            "SELECT sender, sum(len)::bigint FROM (
                 SELECT sender, octet_length(envelope) AS len FROM messages WHERE blob IS NULL
                 UNION ALL SELECT sender, octet_length(envelope) FROM group_blobs
                 UNION ALL SELECT sender, octet_length(envelope) FROM group_commits) AS s
             GROUP BY sender HAVING sum(len) > 0 ORDER BY sender"
        )
    );
    let bad_refs: i64 = raw
        .query_one(
            "SELECT count(*) FROM group_blobs AS b
             WHERE b.refs <> (SELECT count(*) FROM messages WHERE blob = b.id) OR b.refs = 0",
            &[],
        )
        .unwrap()
        .get(0);
    assert_eq!(bad_refs, 0);
    let row = raw
        .query_one(
            "SELECT t.one_time = (SELECT count(*) FROM one_time_prekeys),
                    t.pq_one_time = (SELECT count(*) FROM pq_one_time_prekeys),
                    t.pq_last_resort = (SELECT count(*) FROM pq_last_resort_prekeys),
                    g.groups = (SELECT count(*) FROM groups),
                    g.members = (SELECT count(*) FROM group_members)
             FROM prekey_totals AS t, group_totals AS g",
            &[],
        )
        .unwrap();
    for i in 0..5 {
        assert!(row.get::<_, bool>(i), "trigger-kept total {i} is off");
    }
}

#[test]
fn with_dbname_replaces_the_database() {
    assert_eq!(
        with_dbname("postgres://u:p@h:5/postgres?x=1", "d"),
        "postgres://u:p@h:5/d?x=1"
    );
    assert_eq!(with_dbname("postgres://h", "d"), "postgres://h/d");
    assert_eq!(with_dbname("host=h user=u", "d"), "host=h user=u dbname=d");
}

#[test]
fn migrations_are_idempotent_and_newer_versions_refused() {
    let db = test_db!();
    let store = db.store();
    let id = stored(&store.apply(&[enqueue_op(ident(1), b"kept", 5)]).unwrap()[0]);
    drop(store);
    // Connecting again (and twice at once) changes nothing and keeps the data.
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| PostgresStore::connect(&db.url));
        let b = s.spawn(|| PostgresStore::connect(&db.url));
        (a.join().unwrap().unwrap(), b.join().unwrap().unwrap())
    });
    let pending = b.pending(&ident(1), 0, 10, usize::MAX).unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        (pending[0].id, pending[0].envelope.as_slice()),
        (id, &b"kept"[..])
    );
    drop((a, b));
    let mut raw = db.raw();
    let versions: Vec<i32> = raw
        .query("SELECT version FROM hush_schema ORDER BY version", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>());

    // A version 1 database (before the batch tokens) is upgraded, its data kept.
    raw.batch_execute("DROP TABLE hush_batches; DELETE FROM hush_schema WHERE version > 1")
        .unwrap();
    let upgraded = PostgresStore::connect(&db.url).unwrap();
    assert_eq!(
        upgraded
            .pending(&ident(1), 0, 10, usize::MAX)
            .unwrap()
            .len(),
        1
    );
    upgraded
        .apply(&[enqueue_op(ident(1), b"after upgrade", 6)])
        .unwrap();
    drop(upgraded);
    let count: i64 = raw
        .query_one("SELECT count(*) FROM hush_batches", &[])
        .unwrap()
        .get(0);
    assert_eq!(count, 1);

    // A database from a newer relay is refused, naming both versions.
    raw.execute(
        "INSERT INTO hush_schema (version) VALUES ($1)",
        &[&(SCHEMA_VERSION + 1)],
    )
    .unwrap();
    let err = PostgresStore::connect(&db.url).unwrap_err();
    assert!(err.0.contains("newer"), "{err}");
    assert!(err.0.contains(&(SCHEMA_VERSION + 1).to_string()), "{err}");
    raw.execute(
        "DELETE FROM hush_schema WHERE version > $1",
        &[&SCHEMA_VERSION],
    )
    .unwrap();
    PostgresStore::connect(&db.url).unwrap();

    // Nodes starting at once on an empty database: one creates the schema, all connect.
    let fresh = test_db!();
    std::thread::scope(|s| {
        let starts: Vec<_> = (0..3)
            .map(|_| s.spawn(|| PostgresStore::connect(&fresh.url)))
            .collect();
        for start in starts {
            start.join().unwrap().unwrap();
        }
    });
    let rows = fresh
        .raw()
        .query("SELECT version FROM hush_schema", &[])
        .unwrap()
        .len();
    assert_eq!(rows, SCHEMA_VERSION as usize);

    // A database holding someone else's tables is not adopted.
    let other = test_db!();
    other
        .raw()
        .batch_execute("CREATE TABLE accounts (id integer)")
        .unwrap();
    let err = PostgresStore::connect(&other.url).unwrap_err();
    assert!(err.0.contains("not a hush relay database"), "{err}");
}

#[test]
fn bad_url_and_unreachable_server_errors_hide_the_password() {
    let err = PostgresStore::connect("postgres://u:s3cret@127.0.0.1:1/db").unwrap_err();
    assert!(!err.0.contains("s3cret"), "{err}");
    let err = PostgresStore::connect("postgres://u:s3cret@127.0.0.1:99999/db").unwrap_err();
    assert!(!err.0.contains("s3cret"), "{err}");
    assert!(!format!("{:?}", err).contains("s3cret"));
}

/// A group commit op on group 7.
pub(super) fn commit_op(
    sender: IdentityBytes,
    epoch: u64,
    added: &[IdentityBytes],
    removed: &[IdentityBytes],
    quota: GroupQuota,
) -> WriteOp {
    WriteOp::GroupCommit {
        commit: GroupCommit {
            group_id: GroupId::new(vec![7; 16]).unwrap(),
            epoch,
            added: added.to_vec(),
            removed: removed.to_vec(),
            commit: vec![1, 4, epoch as u8, 9],
            welcome: (!added.is_empty()).then(|| vec![1, 5, epoch as u8, 9, 9]),
        },
        sender,
        received_at_ms: 1_000 + epoch,
        quota,
        max_members: 4,
        max_log: 2,
    }
}

/// `pending` stops after the message that reaches the byte bound (at least one), like SQLite.
#[test]
fn pending_byte_bound_and_group_sync() {
    let db = test_db!();
    let store = db.store();
    let to = ident(1);
    let ops: Vec<WriteOp> = (1..=5u8).map(|i| enqueue_op(to, &[i; 10], 1)).collect();
    store.apply(&ops).unwrap();
    let lens = |max| -> Vec<u8> {
        store
            .pending(&to, 0, 10, max)
            .unwrap()
            .iter()
            .map(|m| m.envelope[0])
            .collect()
    };
    assert_eq!(lens(0), vec![1]);
    assert_eq!(lens(10), vec![1]);
    assert_eq!(lens(11), vec![1, 2]);
    assert_eq!(lens(35), vec![1, 2, 3, 4]);
    assert_eq!(lens(usize::MAX), vec![1, 2, 3, 4, 5]);
    assert_eq!(store.pending(&to, 2, 2, usize::MAX).unwrap().len(), 2);
    assert!(store
        .pending(&to, u64::MAX, 2, usize::MAX)
        .unwrap()
        .is_empty());

    let q = GroupQuota {
        max_messages: 10,
        max_bytes: 1000,
        max_total_bytes: 10_000,
        max_sender_bytes: 10_000,
    };
    store
        .apply(&[
            register("a", ident(1)),
            register("b", ident(2)),
            commit_op(ident(1), 0, &[ident(2)], &[], q),
            commit_op(ident(2), 1, &[], &[], q),
        ])
        .unwrap();
    let gid = GroupId::new(vec![7; 16]).unwrap();
    match store
        .group_sync(&gid, &ident(2), 0, 10, usize::MAX)
        .unwrap()
    {
        SyncResult::Commits(c) => {
            assert_eq!(c.current_epoch, 2);
            assert_eq!(c.commits.len(), 2);
            assert_eq!(c.commits[1].sender, ident(2));
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(
        store.group_sync(&gid, &ident(3), 0, 10, 1).unwrap(),
        SyncResult::NotGroupMember
    );
    let other = GroupId::new(vec![8; 16]).unwrap();
    assert_eq!(
        store.group_sync(&other, &ident(2), 0, 10, 1).unwrap(),
        SyncResult::UnknownGroup
    );
}

/// A batch that fails part-way changes nothing, and its error names the constraint but holds
/// no bytes.
#[test]
fn failing_batch_changes_nothing() {
    let db = test_db!();
    let store = db.store();
    store.apply(&[register("alice", ident(1))]).unwrap();
    let err = store
        .apply(&[
            enqueue_op(ident(2), b"lost", 1),
            register("bob", ident(2)),
            WriteOp::PublishKeyPackages {
                identity: ident(1),
                last_resort: Some(vec![0xAB; 4000]),
                one_time: Vec::new(),
                max_stock: 10,
            },
        ])
        .unwrap_err()
        .not_applied();
    assert!(err.0.contains("key_package"), "{err}");
    assert!(!err.0.to_lowercase().contains("abab"), "{err}");
    assert!(store
        .pending(&ident(2), 0, 10, usize::MAX)
        .unwrap()
        .is_empty());
    assert_eq!(store.identity_of("bob").unwrap(), None);
    assert_eq!(store.totals().unwrap(), StoreTotals::default());
    assert_eq!(
        store.apply(&[register("bob", ident(2))]).unwrap(),
        vec![WriteResult::Registered]
    );
    // Malformed rows are errors naming the column, not panics.
    stored(&store.apply(&[enqueue_op(ident(2), b"x", 1)]).unwrap()[0]);
    check_counters(&db);
    db.raw()
        .batch_execute(
            "ALTER TABLE messages DROP CONSTRAINT messages_sender_check;
             UPDATE messages SET sender = '\\x03'",
        )
        .unwrap();
    let err = store.pending(&ident(2), 0, 10, usize::MAX).unwrap_err();
    assert!(err.0.contains("message sender"), "{err}");
}

/// Two stores on one database (two relay nodes) enqueue concurrently: every mailbox's ids
/// increase in commit order, so a reader polling `pending(after = cursor)` meanwhile misses
/// none.
#[test]
fn two_nodes_commit_ids_in_order_and_readers_miss_none() {
    let db = test_db!();
    let nodes = [Arc::new(db.store()), Arc::new(db.store())];
    let recipients: Vec<IdentityBytes> = (1..=4).map(ident).collect();
    let stop = Arc::new(AtomicBool::new(false));
    let deadline = Instant::now() + Duration::from_secs(3);
    let writers: Vec<_> = nodes
        .iter()
        .enumerate()
        .map(|(n, node)| {
            let node = Arc::clone(node);
            let recipients = recipients.clone();
            std::thread::spawn(move || {
                let mut written: Vec<(IdentityBytes, MessageId)> = Vec::new();
                let mut round = 0u32;
                while Instant::now() < deadline {
                    let ops: Vec<WriteOp> = (0..20)
                        .map(|i| {
                            let to = recipients[(i + n) % recipients.len()];
                            enqueue_op(to, &round.to_le_bytes(), 1)
                        })
                        .collect();
                    let results = node.apply(&ops).unwrap();
                    for (op, result) in ops.iter().zip(&results) {
                        if let WriteOp::Enqueue { recipient, .. } = op {
                            written.push((*recipient, stored(result)));
                        }
                    }
                    round += 1;
                }
                written
            })
        })
        .collect();
    // Readers on both nodes, one per recipient, following a cursor like delivery does.
    let readers: Vec<_> = recipients
        .iter()
        .enumerate()
        .map(|(i, who)| {
            let node = Arc::clone(&nodes[i % 2]);
            let (who, stop) = (*who, Arc::clone(&stop));
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                let mut cursor = 0;
                loop {
                    let done = stop.load(Ordering::SeqCst);
                    for m in node.pending(&who, cursor, 7, usize::MAX).unwrap() {
                        assert!(m.id > cursor, "ids out of order");
                        cursor = m.id;
                        seen.push(m.id);
                    }
                    if done {
                        // One final drain after the writers stopped.
                        loop {
                            let page = node.pending(&who, cursor, 1000, usize::MAX).unwrap();
                            let Some(last) = page.last() else { break };
                            cursor = last.id;
                            seen.extend(page.iter().map(|m| m.id));
                        }
                        return (who, seen);
                    }
                }
            })
        })
        .collect();
    let mut written: HashMap<IdentityBytes, Vec<MessageId>> = HashMap::new();
    for w in writers {
        for (who, id) in w.join().unwrap() {
            written.entry(who).or_default().push(id);
        }
    }
    stop.store(true, Ordering::SeqCst);
    let mut total = 0;
    for r in readers {
        let (who, seen) = r.join().unwrap();
        let mut want = written.remove(&who).unwrap();
        want.sort_unstable();
        total += want.len();
        assert!(seen.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(seen, want, "a reader missed or repeated ids");
    }
    assert!(total > 200, "only {total} messages written");
    assert_eq!(nodes[0].totals().unwrap().messages, total as u64);
    check_counters(&db);
}

/// The server drops every connection (as a restart does): the next calls reconnect by
/// themselves, retrying on a fresh connection, and nothing needs a restart.
#[test]
fn survives_the_server_dropping_its_connections() {
    let db = test_db!();
    let store = db.store();
    let who = ident(1);
    store.apply(&[enqueue_op(who, b"one", 1)]).unwrap();
    assert_eq!(store.pending(&who, 0, 10, usize::MAX).unwrap().len(), 1);
    for round in 0..3 {
        assert!(db.terminate_sessions() >= 1, "round {round}");
        // Give the server a moment to close the sockets.
        std::thread::sleep(Duration::from_millis(100));
        // A read retries on a fresh connection by itself.
        assert!(
            store.pending(&who, 0, 10, usize::MAX).is_ok(),
            "round {round}"
        );
        // So does a write: its transaction died before COMMIT was sent.
        store.apply(&[enqueue_op(who, b"two", 2)]).unwrap();
        assert_eq!(store.totals().unwrap().messages, round + 2);
    }
    assert_eq!(store.free_name("nobody").unwrap(), None);
    check_counters(&db);
}

/// Two stores pop one-time prekeys and KeyPackages concurrently: none is served twice, and all
/// are served.
#[test]
fn prekey_pops_are_atomic_across_stores() {
    let db = test_db!();
    let (a, b) = (Arc::new(db.store()), Arc::new(db.store()));
    let alice = ident(1);
    let ids: Vec<u32> = (0..200).collect();
    let results = a
        .apply(&[
            register("alice", alice),
            publish(alice, 1, &ids, 1000),
            WriteOp::PublishKeyPackages {
                identity: alice,
                last_resort: Some(vec![0xFF; 8]),
                one_time: (0..100u8).map(|i| vec![i; 8]).collect(),
                max_stock: 1000,
            },
        ])
        .unwrap();
    assert_eq!(
        results[1],
        WriteResult::PrekeysStored {
            one_time_remaining: 200
        }
    );
    let threads: Vec<_> = [a, b]
        .into_iter()
        .map(|store| {
            std::thread::spawn(move || {
                let mut prekeys = Vec::new();
                let mut packages = Vec::new();
                for _ in 0..15 {
                    let ops: Vec<WriteOp> = (0..8)
                        .flat_map(|_| {
                            [
                                fetch("alice", true),
                                WriteOp::FetchKeyPackage {
                                    name: "alice".to_owned(),
                                    pop_one_time: true,
                                },
                            ]
                        })
                        .collect();
                    for result in store.apply(&ops).unwrap() {
                        match result {
                            WriteResult::Bundle(b) => {
                                prekeys.extend(b.one_time_prekey.map(|k| k.id));
                            }
                            WriteResult::KeyPackage { key_package, .. } => {
                                packages.push(key_package[0]);
                            }
                            other => panic!("{other:?}"),
                        }
                    }
                }
                (prekeys, packages)
            })
        })
        .collect();
    let mut prekeys = Vec::new();
    let mut packages = Vec::new();
    for t in threads {
        let (p, k) = t.join().unwrap();
        prekeys.extend(p);
        packages.extend(k);
    }
    prekeys.sort_unstable();
    assert_eq!(prekeys, ids, "every one-time prekey served exactly once");
    // 240 fetches: the 100 one-time KeyPackages once each, then the last-resort one.
    let mut one_time: Vec<u8> = packages.iter().copied().filter(|&p| p != 0xFF).collect();
    one_time.sort_unstable();
    assert_eq!(one_time, (0..100u8).collect::<Vec<_>>());
    assert_eq!(packages.len(), 240);
    check_counters(&db);
}

#[test]
fn begin_statement_takes_the_write_lock() {
    assert!(BEGIN_LOCKED.ends_with(&format!("pg_advisory_xact_lock({WRITE_LOCK})")));
}

/// The store is built and used on `spawn_blocking` threads, as the relay does, and dropped
/// inside the runtime without a panic.
#[test]
fn usable_from_spawn_blocking_and_droppable_in_async_context() {
    let db = test_db!();
    let url = db.url.clone();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .build()
        .unwrap();
    runtime.block_on(async move {
        let store = tokio::task::spawn_blocking(move || PostgresStore::connect(&url).map(Arc::new))
            .await
            .unwrap()
            .unwrap();
        let s = Arc::clone(&store);
        let totals = tokio::task::spawn_blocking(move || {
            s.apply(&[enqueue_op(ident(1), b"x", 1)]).unwrap();
            s.totals()
        })
        .await
        .unwrap()
        .unwrap();
        assert_eq!(totals.messages, 1);
        drop(store);
    });
}

/// A batch waits while another writer holds the write lock, and goes on as soon as that
/// writer's session dies (a node killed mid-batch does not block the others).
#[test]
fn a_writer_dying_with_the_lock_releases_it() {
    let db = test_db!();
    let store = db.store();
    let mut holder = db.raw();
    holder.batch_execute(BEGIN_LOCKED).unwrap();
    let pid: i32 = holder
        .query_one("SELECT pg_backend_pid()", &[])
        .unwrap()
        .get(0);
    let started = Instant::now();
    let batch =
        std::thread::spawn(move || store.apply(&[enqueue_op(ident(1), b"x", 1)]).map(|_| store));
    std::thread::sleep(Duration::from_millis(500));
    assert!(!batch.is_finished(), "the batch must wait for the lock");
    admin_client(&db.admin_url)
        .unwrap()
        .query("SELECT pg_terminate_backend($1)", &[&pid])
        .unwrap();
    let store = batch.join().unwrap().unwrap();
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert_eq!(store.totals().unwrap().messages, 1);
}
