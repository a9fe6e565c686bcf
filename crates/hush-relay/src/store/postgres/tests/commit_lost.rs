//! A connection that dies while a batch commits, through a TCP proxy between the store and the
//! server: after the COMMIT reached the server (its answer lost) the batch must never be
//! applied again (each writer gets an error); when the COMMIT never reached it, the batch is
//! known not applied and the writer retries its ops.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use postgres::config::Host;

use super::*;
use crate::metrics::Metrics;
use crate::presence::Presence;
use crate::writer::Writer;

/// Where the proxy cuts the connection of the transaction carrying [`MARKER`].
#[derive(Clone, Copy)]
enum Cut {
    /// Forward the COMMIT, let the server commit, then drop the connection (answer lost).
    AfterCommit,
    /// Drop the connection instead of forwarding the COMMIT.
    BeforeCommit,
}

/// Bytes of the envelope whose transaction gets cut (sent raw in a Bind message).
const MARKER: &[u8] = b"exactly-once-marker";

/// A simple-query message whose text ends with COMMIT (the store's commit round trip).
fn has_commit(data: &[u8]) -> bool {
    data.first() == Some(&b'Q') && contains(data, b"COMMIT\0")
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Forwards every connection to `upstream`; cuts the first transaction that carries
/// [`MARKER`] once (later connections pass untouched).
struct Proxy {
    port: u16,
    cuts: Arc<AtomicBool>,
}

impl Proxy {
    fn start(upstream: (String, u16), cut: Cut) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let armed = Arc::new(AtomicBool::new(true));
        let cuts = Arc::new(AtomicBool::new(false));
        let (armed2, cuts2) = (armed.clone(), cuts.clone());
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect((upstream.0.as_str(), upstream.1)) else {
                    continue;
                };
                let dead = Arc::new(AtomicBool::new(false));
                let (c2, s2, d2) = (
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    dead.clone(),
                );
                let (armed, cuts) = (armed2.clone(), cuts2.clone());
                std::thread::spawn(move || {
                    to_server(client, server, dead, armed, cuts, cut);
                });
                std::thread::spawn(move || to_client(s2, c2, d2));
            }
        });
        Self { port, cuts }
    }

    fn cut_happened(&self) -> bool {
        self.cuts.load(Ordering::SeqCst)
    }
}

fn to_server(
    mut client: TcpStream,
    mut server: TcpStream,
    dead: Arc<AtomicBool>,
    armed: Arc<AtomicBool>,
    cuts: Arc<AtomicBool>,
    cut: Cut,
) {
    let mut buf = vec![0u8; 65536];
    let mut marked = false;
    loop {
        let n = match client.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let data = &buf[..n];
        marked |= contains(data, MARKER);
        if has_commit(data) {
            if marked && armed.swap(false, Ordering::SeqCst) {
                // From now on nothing the server says reaches the client.
                dead.store(true, Ordering::SeqCst);
                cuts.store(true, Ordering::SeqCst);
                if let Cut::AfterCommit = cut {
                    let _ = server.write_all(data);
                    // Let the server commit before it can see the connection close.
                    std::thread::sleep(Duration::from_millis(300));
                }
                break;
            }
            marked = false;
        }
        if server.write_all(data).is_err() {
            break;
        }
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
}

fn to_client(mut server: TcpStream, mut client: TcpStream, dead: Arc<AtomicBool>) {
    let mut buf = vec![0u8; 65536];
    loop {
        let n = match server.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if dead.load(Ordering::SeqCst) || client.write_all(&buf[..n]).is_err() {
            break;
        }
    }
    let _ = client.shutdown(Shutdown::Both);
    let _ = server.shutdown(Shutdown::Both);
}

/// The server of `url` (TCP) and a key=value URL for the same database through `port`.
fn proxied(url: &str, port: u16) -> ((String, u16), String) {
    let config = Config::from_str(url).unwrap();
    let host = match config.get_hosts().first() {
        Some(Host::Tcp(host)) => host.clone(),
        _ => "127.0.0.1".to_owned(),
    };
    let upstream_port = config.get_ports().first().copied().unwrap_or(5432);
    let mut via = format!(
        "host=127.0.0.1 port={port} dbname={}",
        config.get_dbname().unwrap()
    );
    if let Some(user) = config.get_user() {
        via.push_str(&format!(" user={user}"));
    }
    if let Some(password) = config.get_password() {
        via.push_str(&format!(
            " password='{}'",
            String::from_utf8_lossy(password)
                .replace('\\', "\\\\")
                .replace('\'', "\\'")
        ));
    }
    ((host, upstream_port), via)
}

fn count(raw: &mut Client, sql: &str) -> i64 {
    raw.query_one(sql, &[]).unwrap().get(0)
}

/// The replies of a writer (on a store connected through a proxy cutting at `cut`) to the
/// batch [Enqueue with MARKER, FetchBundle popping one of alice's 3 one-time prekeys, bob's
/// one-time KeyPackage]; the counts are checked by the callers.
/// Also returns whether bob's live queue (subscribed here) was told to re-read his mailbox.
fn batch_through_cut(db: &TestDb, cut: Cut) -> (Vec<Result<WriteResult, StoreError>>, Proxy, bool) {
    let (alice, bob) = (ident(1), ident(2));
    db.store()
        .apply(&[
            register("alice", alice),
            register("bob", bob),
            publish(alice, 1, &[1, 2, 3], 100),
        ])
        .unwrap();
    let url = db.url.clone();
    let (upstream, _) = proxied(&url, 0);
    let proxy = Proxy::start(upstream, cut);
    let (_, via) = proxied(&url, proxy.port);
    let store: Arc<dyn Store> = Arc::new(PostgresStore::connect(&via).unwrap());
    let metrics = Arc::new(Metrics::default());
    let presence = Arc::new(Presence::new(metrics.clone()));
    let bob_queue = presence.subscribe(
        bob,
        crate::presence::QueueBounds {
            messages: 100,
            bytes: 1 << 20,
        },
    );
    let (writer, thread) = Writer::start(store, presence, metrics, 64, None).unwrap();

    // Hold the write lock so that the writer blocks on a first op while the three others
    // queue up behind it and then go in one batch.
    let mut holder = db.raw();
    holder
        .batch_execute(&format!(
            "BEGIN; SELECT pg_advisory_xact_lock({WRITE_LOCK})"
        ))
        .unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let ops = vec![
        enqueue_op(bob, MARKER, 1),
        fetch("alice", true),
        WriteOp::PublishKeyPackages {
            identity: bob,
            last_resort: None,
            one_time: vec![vec![0xBB; 8]],
            max_stock: 100,
        },
    ];
    let handles = rt.block_on(async {
        let w = writer.clone();
        let first = tokio::spawn(async move { w.write(WriteOp::Expire { before_ms: 0 }).await });
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut handles = vec![first];
        for op in ops {
            let w = writer.clone();
            handles.push(tokio::spawn(async move { w.write(op).await }));
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        handles
    });
    holder.batch_execute("COMMIT").unwrap();
    let replies = rt.block_on(async {
        let mut replies = Vec::new();
        for handle in handles {
            replies.push(handle.await.unwrap());
        }
        replies
    });
    drop(writer);
    thread.join().unwrap();
    // The first op normally commits alone; on a very slow machine it may have joined the
    // batch, which changes nothing below.
    (
        replies.into_iter().skip(1).collect(),
        proxy,
        bob_queue.take_overflow(),
    )
}

fn counts(db: &TestDb) -> (i64, i64, i64) {
    let mut raw = db.raw();
    (
        count(
            &mut raw,
            "SELECT count(*) FROM messages WHERE envelope = 'exactly-once-marker'::bytea",
        ),
        count(&mut raw, "SELECT count(*) FROM one_time_prekeys"),
        count(
            &mut raw,
            "SELECT count(*) FROM key_packages_one_time WHERE key_package = '\\xbbbbbbbbbbbbbbbb'",
        ),
    )
}

/// COMMIT reached the server and committed; its answer was lost. The batch is applied once
/// (not again op by op), and every writer of it gets an error.
#[test]
fn lost_commit_answer_applies_the_batch_exactly_once() {
    let db = test_db!();
    let (replies, proxy, bob_woken) = batch_through_cut(&db, Cut::AfterCommit);
    assert!(proxy.cut_happened());
    assert!(bob_woken, "the recipient must re-read its mailbox");
    assert_eq!(counts(&db), (1, 2, 1), "message, prekeys left, KeyPackage");
    for reply in &replies {
        assert!(reply.is_err(), "outcome unknown must fail: {replies:?}");
    }
    check_counters(&db);
}

/// The connection died before COMMIT reached the server: the token lookup shows nothing was
/// applied, so the writer retries each op and each is applied once.
#[test]
fn lost_connection_before_commit_is_retried_once() {
    let db = test_db!();
    let (replies, proxy, _) = batch_through_cut(&db, Cut::BeforeCommit);
    assert!(proxy.cut_happened());
    assert_eq!(counts(&db), (1, 2, 1), "message, prekeys left, KeyPackage");
    for reply in &replies {
        assert!(reply.is_ok(), "not applied, so retried: {replies:?}");
    }
    check_counters(&db);
}

/// The store itself says which case it is.
#[test]
fn apply_says_whether_the_outcome_is_known() {
    for (cut, unknown) in [(Cut::AfterCommit, true), (Cut::BeforeCommit, false)] {
        let db = test_db!();
        let ((upstream, _), url) = (proxied(&db.url, 0), db.url.clone());
        let proxy = Proxy::start(upstream, cut);
        let (_, via) = proxied(&url, proxy.port);
        let store = PostgresStore::connect(&via).unwrap();
        let err = store
            .apply(&[
                enqueue_op(ident(2), MARKER, 1),
                enqueue_op(ident(3), b"x", 1),
            ])
            .unwrap_err();
        assert!(proxy.cut_happened());
        assert_eq!(
            matches!(err, ApplyError::OutcomeUnknown(_)),
            unknown,
            "{err}"
        );
        let expected = if unknown { 1 } else { 0 };
        assert_eq!(counts(&db).0, expected);
        // The store goes on working (a fresh connection).
        store.apply(&[enqueue_op(ident(2), b"y", 2)]).unwrap();
        check_counters(&db);
    }
}

/// A transaction left aborted by a statement whose error was swallowed is not reported as
/// committed (COMMIT of an aborted transaction answers ROLLBACK, not an error).
#[test]
fn an_aborted_transaction_is_not_reported_committed() {
    let db = test_db!();
    let store = db.store();
    let result = store.write(|db| {
        db.execute(
            "INSERT INTO users (identity, name, signature, registered_at_ms)
             VALUES ($1, 'alice', '', 0)",
            &[&ident(1).as_slice()],
        )?;
        // Fails (identity length CHECK), aborting the transaction; the error is dropped.
        let _ = db.execute(
            "INSERT INTO users (identity, name, signature, registered_at_ms)
             VALUES ('\\x00', 'bob', '', 0)",
            &[],
        );
        Ok(())
    });
    assert!(
        matches!(result, Err(ApplyError::NotApplied(_))),
        "{result:?}"
    );
    assert_eq!(store.identity_of("alice").unwrap(), None);
    // The connection is usable afterwards.
    store.apply(&[register("carol", ident(3))]).unwrap();
}

/// Old batch tokens are pruned by later batches, a bounded number at a time.
#[test]
fn old_batch_tokens_are_pruned() {
    let db = test_db!();
    let store = db.store();
    let mut raw = db.raw();
    raw.batch_execute(
        "INSERT INTO hush_batches
         SELECT decode(lpad(to_hex(n), 32, '0'), 'hex'), 0 FROM generate_series(1, 20) AS n",
    )
    .unwrap();
    store.apply(&[register("alice", ident(1))]).unwrap();
    let left = |raw: &mut Client| -> i64 {
        raw.query_one("SELECT count(*) FROM hush_batches", &[])
            .unwrap()
            .get(0)
    };
    assert_eq!(left(&mut raw), 20 - 16 + 1);
    store.apply(&[register("bob", ident(2))]).unwrap();
    assert_eq!(left(&mut raw), 2);
}
