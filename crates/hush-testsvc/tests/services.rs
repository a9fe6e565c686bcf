//! Self-tests against the real services (skipped with one line when they are absent, failing
//! when `HUSH_REQUIRE_SERVICES=1`).

#![allow(clippy::unwrap_used)]

use std::io::{BufRead, BufReader};
use std::net::TcpStream;
use std::time::Duration;

fn db_exists(admin_url: &str, name: &str) -> bool {
    let mut admin = postgres::Client::connect(admin_url, postgres::NoTls).unwrap();
    let row = admin
        .query_one(
            "SELECT count(*) FROM pg_database WHERE datname = $1",
            &[&name],
        )
        .unwrap();
    row.get::<_, i64>(0) == 1
}

#[test]
fn postgres_db_is_fresh_and_dropped() {
    let Some(db) = hush_testsvc::postgres() else {
        return;
    };
    let name = db.name().to_owned();
    let admin_url = db.admin_url().to_owned();
    assert!(name.starts_with("hush_t_"));
    assert!(db.url().ends_with(&format!("/{name}")));
    {
        let mut client = postgres::Client::connect(db.url(), postgres::NoTls).unwrap();
        let row = client.query_one("SELECT current_database()", &[]).unwrap();
        assert_eq!(row.get::<_, String>(0), name);
        client
            .batch_execute("CREATE TABLE t (x integer); INSERT INTO t VALUES (1)")
            .unwrap();
        // The connection stays open: DROP .. WITH (FORCE) must end it.
        assert!(db_exists(&admin_url, &name));
        drop(db);
        assert!(client.query("SELECT 1", &[]).is_err());
    }
    assert!(!db_exists(&admin_url, &name));
}

#[test]
fn two_databases_at_once_are_distinct() {
    let (Some(a), Some(b)) = (hush_testsvc::postgres(), hush_testsvc::postgres()) else {
        return;
    };
    assert_ne!(a.name(), b.name());
}

#[test]
fn nats_answers_and_prefixes_are_unique() {
    let Some(a) = hush_testsvc::nats() else {
        return;
    };
    let Some(b) = hush_testsvc::nats() else {
        return;
    };
    assert_eq!(a.url(), b.url());
    assert_ne!(a.subject_prefix(), b.subject_prefix());
    assert!(a.subject_prefix().starts_with("hush_t_"));
}

/// Connects like a client: TCP, read INFO, send CONNECT + PING, expect PONG.
fn nats_ping(port: u16) -> std::io::Result<()> {
    use std::io::Write;
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?);
    let mut line = String::new();
    reader.read_line(&mut line)?;
    if !line.starts_with("INFO ") {
        return Err(std::io::Error::other(format!("no INFO: {line:?}")));
    }
    stream.write_all(b"CONNECT {\"verbose\":false}\r\nPING\r\n")?;
    line.clear();
    reader.read_line(&mut line)?;
    if line.trim_end() != "PONG" {
        return Err(std::io::Error::other(format!("no PONG: {line:?}")));
    }
    Ok(())
}

#[test]
fn nats_server_stop_and_restart() {
    let Some(mut server) = hush_testsvc::NatsServer::start() else {
        return;
    };
    let port = server.port();
    assert_eq!(server.url(), format!("nats://127.0.0.1:{port}"));
    nats_ping(port).unwrap();
    server.stop();
    assert!(!server.is_running());
    assert!(nats_ping(port).is_err());
    server.restart();
    assert!(server.is_running());
    assert_eq!(server.port(), port);
    nats_ping(port).unwrap();
    // Restart while running works too.
    server.restart();
    nats_ping(port).unwrap();
    drop(server);
    assert!(nats_ping(port).is_err());
}

#[test]
fn private_postgres_stop_and_restart_keeps_data() {
    let Some(mut pg) = hush_testsvc::PrivatePostgres::start() else {
        return;
    };
    let admin = pg.admin_url();
    let db = pg.create_db();
    let mut client = postgres::Client::connect(db.url(), postgres::NoTls).unwrap();
    client
        .batch_execute("CREATE TABLE t (x integer); INSERT INTO t VALUES (42)")
        .unwrap();
    let fsync: String = client.query_one("SHOW fsync", &[]).unwrap().get(0);
    assert_eq!(fsync, "on");

    pg.stop();
    assert!(!pg.is_running());
    assert!(client.query("SELECT 1", &[]).is_err());
    assert!(postgres::Client::connect(&admin, postgres::NoTls).is_err());

    pg.restart();
    assert!(pg.is_running());
    assert_eq!(pg.admin_url(), admin);
    let mut client = postgres::Client::connect(db.url(), postgres::NoTls).unwrap();
    let x: i32 = client.query_one("SELECT x FROM t", &[]).unwrap().get(0);
    assert_eq!(x, 42);
    drop(client);
    let name = db.name().to_owned();
    drop(db);
    assert!(!db_exists(&admin, &name));
    drop(pg);
    assert!(postgres::Client::connect(&admin, postgres::NoTls).is_err());
}
