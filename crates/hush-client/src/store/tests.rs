//! Round trips, secrecy at rest, passphrase and lock checks.

use super::*;

fn fast() -> KdfParams {
    KdfParams {
        m_cost: 256,
        t_cost: 1,
        p_cost: 1,
    }
}

#[test]
fn values_round_trip_and_nothing_is_readable_at_rest() {
    let dir = tempfile::tempdir().unwrap();
    {
        let mut store = Store::create(dir.path(), b"pw", fast()).unwrap();
        let tx = store.tx().unwrap();
        tx.put("contact", "bob", &"the secret value").unwrap();
        tx.add_message("bob", b"m1", &"hello plaintext").unwrap();
        tx.commit().unwrap();
    }
    let raw = std::fs::read(dir.path().join(DATABASE_FILE)).unwrap();
    let wal = std::fs::read(dir.path().join("profile.sqlite3-wal")).unwrap_or_default();
    for needle in [&b"secret value"[..], b"hello plaintext", b"bob"] {
        assert!(!raw.windows(needle.len()).any(|w| w == needle));
        assert!(!wal.windows(needle.len()).any(|w| w == needle));
    }
    let mut store = Store::open(dir.path(), b"pw").unwrap();
    let tx = store.tx().unwrap();
    assert_eq!(
        tx.get::<String>("contact", "bob").unwrap().unwrap(),
        "the secret value"
    );
    assert_eq!(tx.messages::<String>("bob").unwrap().len(), 1);
    assert!(tx.add_message("bob", b"m1", &"dup").unwrap().is_none());
}

#[test]
fn wrong_passphrase_and_second_process_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::create(dir.path(), b"right", fast()).unwrap();
    assert!(matches!(
        Store::open(dir.path(), b"right"),
        Err(StoreError::Locked(_))
    ));
    drop(store);
    assert!(matches!(
        Store::open(dir.path(), b"wrong"),
        Err(StoreError::WrongPassphrase(_))
    ));
    assert!(Store::open(dir.path(), b"right").is_ok());
}
