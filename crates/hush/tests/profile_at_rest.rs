//! The profile at rest, with the real `hush` binary: an empty passphrase needs an explicit
//! opt-in, and a row of the profile rolled back on disk (erasing a KEY CHANGED warning) is
//! refused as tampering instead of being shown as if nothing happened.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::process::{Command, Output, Stdio};

use rusqlite::types::Value;

mod common;
use common::RelayProcess;

const HUSH: &str = env!("CARGO_BIN_EXE_hush");
const PASS: &str = "test passphrase";

async fn run_env(profile: &Path, pass: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(HUSH);
    cmd.arg("--profile")
        .arg(profile)
        .args(args)
        .env("HUSH_PASSPHRASE", pass)
        .env_remove("HUSH_ALLOW_EMPTY_PASSPHRASE")
        .envs(env.iter().copied())
        .stdin(Stdio::null());
    tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap()
}

async fn run(profile: &Path, args: &[&str]) -> Output {
    run_env(profile, PASS, &[], args).await
}

fn out(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn err(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Every row of the `kv` table, all columns, keyed by the lookup key (column 0).
fn kv_rows(profile: &Path) -> Vec<Vec<Value>> {
    let conn = rusqlite::Connection::open(profile.join("profile.sqlite3")).unwrap();
    let mut stmt = conn.prepare("SELECT * FROM kv").unwrap();
    let n = stmt.column_count();
    let rows = stmt
        .query_map([], |r| (0..n).map(|i| r.get::<_, Value>(i)).collect())
        .unwrap();
    rows.map(|r| r.unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_empty_passphrase_needs_an_explicit_opt_in() {
    let tmp = tempfile::tempdir().unwrap();
    let relay =
        RelayProcess::start(&tmp.path().join("relay"), "127.0.0.1:0".parse().unwrap()).await;
    let addr = relay.addr.to_string();
    let init = ["init", "--name", "alice", "--relay", addr.as_str()];

    let alice = tmp.path().join("alice");
    let o = run_env(&alice, "", &[], &init).await;
    assert!(!o.status.success(), "an empty passphrase was accepted");
    assert!(err(&o).contains("empty passphrase"), "{}", err(&o));
    assert!(!alice.join("profile.sqlite3").exists());

    let mut flagged = init.to_vec();
    flagged.push("--allow-empty-passphrase");
    let o = run_env(&alice, "", &[], &flagged).await;
    assert!(o.status.success(), "{}", err(&o));
    assert!(run_env(&alice, "", &[], &["whoami"]).await.status.success());

    let bob = tmp.path().join("bob");
    let init = ["init", "--name", "bob", "--relay", addr.as_str()];
    let o = run_env(&bob, "", &[("HUSH_ALLOW_EMPTY_PASSPHRASE", "1")], &init).await;
    assert!(o.status.success(), "{}", err(&o));
    relay.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_contact_rolled_back_on_disk_to_erase_key_changed_is_refused_as_tampered() {
    let tmp = tempfile::tempdir().unwrap();
    let relay_dir = tmp.path().join("relay");
    let relay = RelayProcess::start(&relay_dir, "127.0.0.1:0".parse().unwrap()).await;
    let addr = relay.addr.to_string();
    let init = |name: &'static str| ["init", "--name", name, "--relay"];
    let alice = tmp.path().join("alice");
    let bob = tmp.path().join("bob");
    for (profile, name) in [(&alice, "alice"), (&bob, "bob")] {
        let mut args = init(name).to_vec();
        args.push(&addr);
        let o = run(profile, &args).await;
        assert!(o.status.success(), "{}", err(&o));
    }
    assert!(run(&alice, &["send", "bob", "hi"]).await.status.success());
    assert!(run(&bob, &["recv"]).await.status.success());
    let before = kv_rows(&alice);

    // bob's name goes to a new identity, which writes to alice: her profile records the
    // key change.
    assert!(relay.free_name(&relay_dir, "bob").status.success());
    let new_bob = tmp.path().join("bob-new");
    let mut args = init("bob").to_vec();
    args.push(&addr);
    assert!(run(&new_bob, &args).await.status.success());
    assert!(run(&new_bob, &["send", "alice", "trust me"])
        .await
        .status
        .success());
    assert!(run(&alice, &["recv"]).await.status.success());
    let o = run(&alice, &["contacts"]).await;
    assert!(out(&o).contains("KEY CHANGED"), "{}", out(&o));

    // Someone with write access puts back the older sealed rows that changed (bob's contact
    // record among them): the warning would vanish if they were accepted.
    let after = kv_rows(&alice);
    let changed: Vec<_> = before
        .iter()
        .filter(|old| after.iter().any(|new| new[0] == old[0] && new != *old))
        .collect();
    assert!(!changed.is_empty());
    let conn = rusqlite::Connection::open(alice.join("profile.sqlite3")).unwrap();
    for row in changed {
        let marks = vec!["?"; row.len()].join(", ");
        conn.execute(
            &format!("INSERT OR REPLACE INTO kv VALUES ({marks})"),
            rusqlite::params_from_iter(row.iter()),
        )
        .unwrap();
    }
    drop(conn);

    let o = run(&alice, &["contacts"]).await;
    assert!(
        !o.status.success(),
        "the rolled-back profile was accepted: {}",
        out(&o)
    );
    assert!(err(&o).contains("profile tampered"), "{}", err(&o));
    relay.shutdown().await;
}
