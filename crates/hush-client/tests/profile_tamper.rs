//! A profile edited on disk by someone without the passphrase, with a real relay and real
//! files: the prekeys row rolled back to bring a used one-time prekey back is refused.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

use std::path::Path;
use std::time::Duration;

use hush_client::Client;
use rusqlite::types::Value;

/// Every row of the `kv` table, all columns (column 0 is the lookup key).
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
async fn a_prekeys_row_rolled_back_to_bring_back_a_used_one_time_prekey_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let relay = hush_relay::start(hush_relay::Config {
        listen: "127.0.0.1:0".parse().unwrap(),
        data: tmp.path().join("relay"),
        ..Default::default()
    })
    .await
    .unwrap();
    let addr = relay.local_addr.to_string();
    let bob_dir = tmp.path().join("bob");
    let mut alice = Client::init(&tmp.path().join("alice"), b"pass", "alice", &addr, None)
        .await
        .unwrap();
    let bob = Client::init(&bob_dir, b"pass", "bob", &addr, None)
        .await
        .unwrap();
    drop(bob);
    let before = kv_rows(&bob_dir);

    // alice's first message uses one of bob's one-time prekeys; receiving it deletes the secret.
    alice.send_text("bob", "first").await.unwrap();
    let mut bob = Client::open(&bob_dir, b"pass").unwrap();
    let mut texts = Vec::new();
    bob.receive(Duration::from_millis(300), |e| {
        if let hush_client::Event::Message(m) = e {
            texts.push(m.text.clone());
        }
    })
    .await
    .unwrap();
    assert_eq!(texts, ["first"]);
    drop(bob);

    // Put back every older row that changed: the prekeys row, with the used secret in it.
    let after = kv_rows(&bob_dir);
    let changed: Vec<_> = before
        .iter()
        .filter(|old| after.iter().any(|new| new[0] == old[0] && new != *old))
        .collect();
    // Identity, config and prekeys existed before; only the prekeys changed.
    assert_eq!(changed.len(), 1);
    let conn = rusqlite::Connection::open(bob_dir.join("profile.sqlite3")).unwrap();
    for row in changed {
        let marks = vec!["?"; row.len()].join(", ");
        conn.execute(
            &format!("INSERT OR REPLACE INTO kv VALUES ({marks})"),
            rusqlite::params_from_iter(row.iter()),
        )
        .unwrap();
    }
    drop(conn);

    match Client::open(&bob_dir, b"pass") {
        Err(e) => assert!(e.to_string().contains("profile tampered"), "{e}"),
        Ok(_) => panic!("a rolled-back prekeys row was accepted"),
    }
}
