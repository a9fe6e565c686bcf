//! Settings a database or an operator may change under the store: the default isolation
//! level, statement and lock timeouts, the message id sequence; and what errors may show.

use super::*;

/// Under a database default of REPEATABLE READ, batches from two stores still see each
/// other's commits (the snapshot would otherwise be taken while waiting for the write lock).
#[test]
fn repeatable_read_default_does_not_fail_batches() {
    let db = test_db!();
    db.raw()
        .batch_execute(&format!(
            "ALTER DATABASE {} SET default_transaction_isolation = 'repeatable read'",
            db.name
        ))
        .unwrap();
    let (a, b) = (Arc::new(db.store()), Arc::new(db.store()));
    let alice = ident(1);
    a.apply(&[register("alice", alice)]).unwrap();
    let threads: Vec<_> = [a, b]
        .into_iter()
        .map(|store| {
            std::thread::spawn(move || {
                let mut errors = Vec::new();
                for i in 0..100u64 {
                    if let Err(err) =
                        store.apply(&[enqueue_op(alice, b"x", i), enqueue_op(alice, b"yy", i)])
                    {
                        errors.push(err.to_string());
                    }
                }
                errors
            })
        })
        .collect();
    for thread in threads {
        let errors = thread.join().unwrap();
        assert!(
            errors.is_empty(),
            "{} failed: {:?}",
            errors.len(),
            errors.first()
        );
    }
    assert_eq!(db.store().totals().unwrap().messages, 400);
    check_counters(&db);
}

/// The writer session pins READ COMMITTED, no statement or lock timeout, and (PostgreSQL 14+)
/// a client connection check, whatever the database's defaults.
#[test]
fn writer_session_overrides_database_defaults() {
    let db = test_db!();
    db.raw()
        .batch_execute(&format!(
            "ALTER DATABASE {0} SET default_transaction_isolation = 'serializable';
             ALTER DATABASE {0} SET statement_timeout = '5s';
             ALTER DATABASE {0} SET lock_timeout = '5s'",
            db.name
        ))
        .unwrap();
    let store = db.store();
    let (isolation, statement, lock, check, version) = store
        .write(|db| {
            let row = db.query_one(
                "SELECT current_setting('transaction_isolation'),
                        current_setting('statement_timeout'), current_setting('lock_timeout'),
                        coalesce(current_setting('client_connection_check_interval', true), ''),
                        current_setting('server_version_num')::integer",
                &[],
            )?;
            Ok((
                row.get::<_, String>(0),
                row.get::<_, String>(1),
                row.get::<_, String>(2),
                row.get::<_, String>(3),
                row.get::<_, i32>(4),
            ))
        })
        .unwrap();
    assert_eq!(
        (isolation.as_str(), statement.as_str(), lock.as_str()),
        ("read committed", "0", "0")
    );
    if version >= 140_000 {
        assert_eq!(check, "10s");
    }
}

/// A message id sequence with a cache (or another increment) is refused with a clear error.
#[test]
fn a_cached_id_sequence_is_refused() {
    let db = test_db!();
    drop(db.store());
    db.raw()
        .batch_execute("ALTER SEQUENCE messages_id_seq CACHE 50")
        .unwrap();
    let err = PostgresStore::connect(&db.url).unwrap_err();
    assert!(
        err.0.contains("CACHE 50") && err.0.contains("CACHE 1"),
        "{err}"
    );
    db.raw()
        .batch_execute("ALTER SEQUENCE messages_id_seq CACHE 1 INCREMENT 2")
        .unwrap();
    let err = PostgresStore::connect(&db.url).unwrap_err();
    assert!(err.0.contains("INCREMENT 2"), "{err}");
    db.raw()
        .batch_execute("ALTER SEQUENCE messages_id_seq INCREMENT 1")
        .unwrap();
    drop(db.store());
}

/// A URL the parser rejects is not quoted in the error (it may hold a password).
#[test]
fn unparsable_url_error_hides_the_password() {
    for url in [
        "postgress://hush:S3CRET@127.0.0.1/db?sslmode",
        "postgress://hush:S3CRET@127.0.0.1/db?sslmode=disable",
        "host=h S3CRET=1",
        "postgres://hush:S3CRET@127.0.0.1/db?sslmode=bogus",
        "host=h password=S3CRET bogus",
    ] {
        let err = PostgresStore::connect(url).unwrap_err();
        assert!(!err.0.contains("S3CRET"), "{err}");
        assert!(err.0.contains("invalid PostgreSQL URL"), "{err}");
    }
}
