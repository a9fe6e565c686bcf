//! Prekeys (classical and PQ): one-time pops, stock caps, last-resort keys, names.

use super::*;
use crate::store::PrekeyStock;
use hush_proto::pq::{PqPrekey, KEM_ENCAPSULATION_KEY_LEN, LAST_RESORT_ID_BIT};
use hush_proto::{OneTimePrekey, SignedPrekey, X25519PublicKey};

pub(super) fn fetch_pops_distinct_one_time_prekeys_then_none(b: &mut dyn Backend) {
    let store = b.store();
    let alice = ident(1);
    assert_eq!(
        one(store, register("alice", alice)),
        WriteResult::Registered
    );
    assert_eq!(
        one(store, publish(alice, 7, &[5, 3, 9], 100)),
        WriteResult::PrekeysStored {
            one_time_remaining: 3
        }
    );
    let mut seen = Vec::new();
    for _ in 0..3 {
        let fetched = bundle(one(store, fetch("alice")));
        assert_eq!(fetched.identity_key.as_bytes(), &alice);
        assert_eq!(fetched.signed_prekey, spk(7));
        let opk = fetched.one_time_prekey.unwrap();
        assert_eq!(opk, otp(opk.id));
        seen.push(opk.id);
    }
    // Lowest id first, each handed out once.
    assert_eq!(seen, vec![3, 5, 9]);
    let fetched = bundle(one(store, fetch("alice")));
    assert_eq!(fetched.one_time_prekey, None);
    assert_eq!(fetched.signed_prekey, spk(7));

    // Two fetches in one batch also get distinct keys.
    one(store, publish(alice, 7, &[1, 2], 100));
    let results = store.apply(&[fetch("alice"), fetch("alice")]).unwrap();
    let ids: Vec<u32> = results
        .into_iter()
        .map(|r| bundle(r).one_time_prekey.unwrap().id)
        .collect();
    assert_eq!(ids, vec![1, 2]);
}

pub(super) fn fetch_unknown_user_or_no_prekeys(b: &mut dyn Backend) {
    let store = b.store();
    assert_eq!(one(store, fetch("nobody")), WriteResult::UnknownUser);
    one(store, register("alice", ident(1)));
    assert_eq!(one(store, fetch("alice")), WriteResult::UnknownUser);
    // An identity without a name cannot store prekeys at all.
    assert_eq!(
        one(store, publish(ident(2), 1, &[1], 10)),
        WriteResult::NotRegistered
    );
    assert_eq!(one(store, fetch("bob")), WriteResult::UnknownUser);
    one(store, register("bob", ident(2)));
    assert_eq!(one(store, fetch("bob")), WriteResult::UnknownUser);
    one(store, publish(ident(2), 1, &[1], 10));
    assert_eq!(
        bundle(one(store, fetch("bob"))).one_time_prekey,
        Some(otp(1))
    );
}

pub(super) fn publish_replaces_signed_prekey_and_one_time_ids(b: &mut dyn Backend) {
    let store = b.store();
    let alice = ident(1);
    one(store, register("alice", alice));
    one(store, publish(alice, 1, &[1, 2], 10));
    // New signed prekey, id 2 replaced (not double-counted), id 3 added.
    let replacement = OneTimePrekey {
        id: 2,
        public_key: X25519PublicKey::from_bytes([0xEE; 32]),
    };
    let op = WriteOp::PublishPrekeys {
        identity: alice,
        signed_prekey: SignedPrekey {
            created_at: u64::MAX, // must round-trip exactly
            ..spk(2)
        },
        one_time: vec![replacement, otp(3)],
        max_stock: 10,
    };
    assert_eq!(
        one(store, op),
        WriteResult::PrekeysStored {
            one_time_remaining: 3
        }
    );
    let fetched = bundle(one(store, fetch("alice")));
    assert_eq!(fetched.signed_prekey.id, 2);
    assert_eq!(fetched.signed_prekey.created_at, u64::MAX);
    assert_eq!(fetched.one_time_prekey, Some(otp(1)));
    let fetched = bundle(one(store, fetch("alice")));
    assert_eq!(fetched.one_time_prekey, Some(replacement));
    // Replacing a held id did not count it twice in the metrics.
    check_prekey_totals(b);
}

pub(super) fn too_many_prekeys_changes_nothing(b: &mut dyn Backend) {
    let store = b.store();
    let alice = ident(1);
    one(store, register("alice", alice));
    assert_eq!(
        one(store, publish(alice, 1, &[1, 2, 3], 4)),
        WriteResult::PrekeysStored {
            one_time_remaining: 3
        }
    );
    // 3 held + 2 new > 4: refused, signed prekey not replaced either.
    assert_eq!(
        one(store, publish(alice, 2, &[4, 5], 4)),
        WriteResult::TooManyPrekeys
    );
    // Exactly filling the stock is fine; re-sending held ids does not count.
    assert_eq!(
        one(store, publish(alice, 1, &[3, 4], 4)),
        WriteResult::PrekeysStored {
            one_time_remaining: 4
        }
    );
    // A rotation without new one-time prekeys is allowed even above a lowered limit.
    assert_eq!(
        one(store, publish(alice, 3, &[], 2)),
        WriteResult::PrekeysStored {
            one_time_remaining: 4
        }
    );
    let fetched = bundle(one(store, fetch("alice")));
    assert_eq!(fetched.signed_prekey, spk(3));
    assert_eq!(fetched.one_time_prekey, Some(otp(1)));
    // A single publish larger than the stock.
    one(store, register("bob", ident(2)));
    assert_eq!(
        one(store, publish(ident(2), 1, &[1, 2, 3], 2)),
        WriteResult::TooManyPrekeys
    );
}

/// Prekeys are stored only for an identity that holds a name, and the expiry sweep removes
/// those of identities without one (stored by an older relay, or a name freed later).
pub(super) fn prekeys_need_a_name_and_nameless_ones_expire(b: &mut dyn Backend) {
    let store = b.store();
    let (alice, ghost) = (ident(1), ident(2));
    assert_eq!(
        one(store, publish(ghost, 1, &[1, 2], 10)),
        WriteResult::NotRegistered
    );
    one(store, register("alice", alice));
    one(store, publish(alice, 1, &[1, 2], 10));
    // A row left by an older relay that accepted keys without a name.
    b.exec(&format!(
        "INSERT INTO signed_prekeys (identity, id, created_at, public, signature)
         VALUES ({ghost}, 1, 0, {zero32}, {zero64});
         INSERT INTO one_time_prekeys (identity, id, public) VALUES ({ghost}, 1, {zero32});",
        ghost = b.blob(&ghost),
        zero32 = b.blob(&[0; 32]),
        zero64 = b.blob(&[0; 64]),
    ));
    one(store, WriteOp::Expire { before_ms: 0 });
    let count = |table: &str, who: IdentityBytes| -> i64 {
        b.query_ints(&format!(
            "SELECT count(*) FROM {table} WHERE identity = {}",
            b.blob(&who)
        ))[0]
    };
    assert_eq!(count("signed_prekeys", ghost), 0);
    assert_eq!(count("one_time_prekeys", ghost), 0);
    assert_eq!(count("signed_prekeys", alice), 1);
    assert_eq!(count("one_time_prekeys", alice), 2);
    // The ghost's cascaded one-time prekey left the metrics' total too.
    check_prekey_totals(b);
}

/// A PQ prekey as the store sees it (signatures are checked by the handler, not here).
pub(crate) fn pq(id: u32) -> PqPrekey {
    PqPrekey {
        id,
        encapsulation_key: Box::new([(id % 251) as u8; KEM_ENCAPSULATION_KEY_LEN]),
        signature: [(id % 13) as u8; 64],
    }
}

pub(crate) const LR: u32 = LAST_RESORT_ID_BIT;

pub(crate) fn publish_pq(
    identity: IdentityBytes,
    last_resort: Option<u32>,
    ids: &[u32],
    max: u32,
) -> WriteOp {
    WriteOp::PublishPqPrekeys {
        identity,
        last_resort: last_resort.map(pq),
        one_time: ids.iter().map(|&id| pq(id)).collect(),
        max_stock: max,
    }
}

pub(crate) fn pq_stored(n: u32) -> WriteResult {
    WriteResult::PqPrekeysStored {
        one_time_remaining: n,
    }
}

pub(crate) fn pq_id(result: WriteResult) -> Option<u32> {
    bundle(result).pq_prekey.map(|key| key.id)
}

/// One-time PQ prekeys are popped once each, lowest id first, in the same fetch as the
/// classical one-time prekey; then the last-resort key is served again and again.
pub(super) fn pq_one_time_prekeys_pop_once_then_last_resort_repeats(b: &mut dyn Backend) {
    let store = b.store();
    let alice = ident(1);
    one(store, register("alice", alice));
    one(store, publish(alice, 1, &[1, 2], 10));
    assert_eq!(
        one(store, publish_pq(alice, Some(LR | 7), &[4, 3], 10)),
        pq_stored(2)
    );
    let first = bundle(one(store, fetch("alice")));
    assert_eq!(first.one_time_prekey, Some(otp(1)));
    assert_eq!(first.pq_prekey, Some(pq(3)));
    assert_eq!(pq_id(one(store, fetch("alice"))), Some(4));
    for _ in 0..3 {
        let fetched = bundle(one(store, fetch("alice")));
        assert_eq!(fetched.pq_prekey, Some(pq(LR | 7)));
    }
    assert_eq!(b.rows("pq_one_time_prekeys"), 0);
    assert_eq!(b.rows("pq_last_resort_prekeys"), 1);
    // Two fetches in one batch get distinct one-time keys.
    one(store, publish_pq(alice, None, &[8, 9], 10));
    let ids: Vec<_> = store
        .apply(&[fetch("alice"), fetch("alice")])
        .unwrap()
        .into_iter()
        .map(pq_id)
        .collect();
    assert_eq!(ids, vec![Some(8), Some(9)]);
    check_prekey_totals(b);
    assert_eq!(
        store.prekey_stock().unwrap(),
        PrekeyStock {
            one_time: 0,
            pq_one_time: 0,
            pq_last_resort: 1
        }
    );
}

/// An identity that never published PQ prekeys gets a version-1 bundle (no PQ prekey); one
/// with only one-time PQ keys gets none once they are used up.
pub(super) fn bundles_without_pq_prekeys_stay_version_1(b: &mut dyn Backend) {
    let store = b.store();
    let (alice, bob) = (ident(1), ident(2));
    one(store, register("alice", alice));
    one(store, publish(alice, 1, &[1], 10));
    assert_eq!(pq_id(one(store, fetch("alice"))), None);
    one(store, register("bob", bob));
    one(store, publish(bob, 1, &[], 10));
    one(store, publish_pq(bob, None, &[5], 10));
    assert_eq!(pq_id(one(store, fetch("bob"))), Some(5));
    assert_eq!(pq_id(one(store, fetch("bob"))), None);
}

/// A new last-resort key replaces the old one; the stock cap counts only new one-time ids and
/// a refused publish changes nothing (not even the last-resort key).
pub(super) fn pq_last_resort_replaced_and_stock_capped(b: &mut dyn Backend) {
    let store = b.store();
    let alice = ident(1);
    one(store, register("alice", alice));
    one(store, publish(alice, 1, &[], 10));
    assert_eq!(
        one(store, publish_pq(alice, Some(LR | 1), &[1, 2, 3], 4)),
        pq_stored(3)
    );
    assert_eq!(
        one(store, publish_pq(alice, Some(LR | 2), &[4, 5], 4)),
        WriteResult::TooManyPrekeys
    );
    // Re-sending held ids does not count; exactly filling the stock is fine.
    assert_eq!(
        one(store, publish_pq(alice, None, &[3, 4], 4)),
        pq_stored(4)
    );
    check_prekey_totals(b);
    // A last-resort rotation alone is never refused for the stock.
    assert_eq!(
        one(store, publish_pq(alice, Some(LR | 2), &[], 1)),
        pq_stored(4)
    );
    for id in 1..=4 {
        assert_eq!(pq_id(one(store, fetch("alice"))), Some(id));
    }
    assert_eq!(pq_id(one(store, fetch("alice"))), Some(LR | 2));
    assert_eq!(
        one(store, publish_pq(ident(9), Some(LR), &[1], 4)),
        WriteResult::NotRegistered
    );
}

/// With the fetched user's budget spent, the last-resort key is served and the one-time stock
/// is left alone; without a last-resort key a one-time key is still served, so the bundle does
/// not look like a downgrade.
pub(super) fn budget_spent_serves_last_resort(b: &mut dyn Backend) {
    let store = b.store();
    let (alice, bob) = (ident(1), ident(2));
    for (name, who) in [("alice", alice), ("bob", bob)] {
        one(store, register(name, who));
        one(store, publish(who, 1, &[1], 10));
    }
    one(store, publish_pq(alice, Some(LR), &[1], 10));
    one(store, publish_pq(bob, None, &[1], 10));
    let unpopped = |name: &str| WriteOp::FetchBundle {
        name: name.to_owned(),
        pop_one_time: false,
    };
    let fetched = bundle(one(store, unpopped("alice")));
    assert_eq!(
        (fetched.one_time_prekey, fetched.pq_prekey.map(|k| k.id)),
        (None, Some(LR))
    );
    assert_eq!(pq_id(one(store, unpopped("bob"))), Some(1));
    assert_eq!(b.rows("pq_one_time_prekeys"), 1);
    assert_eq!(b.rows("one_time_prekeys"), 2);
    check_prekey_totals(b);
}

/// Freeing a name deletes the identity's PQ prekeys with its classical ones, and the expiry
/// sweep deletes PQ prekeys of identities without a name.
pub(super) fn pq_prekeys_go_with_the_name(b: &mut dyn Backend) {
    let store = b.store();
    let (alice, ghost) = (ident(1), ident(2));
    one(store, register("alice", alice));
    one(store, publish(alice, 1, &[1], 10));
    one(store, publish_pq(alice, Some(LR), &[1, 2], 10));
    b.tamper(&format!(
        "INSERT INTO pq_one_time_prekeys (identity, id, encapsulation_key, signature)
         VALUES ({ghost}, 1, {zero1184}, {zero64});
         INSERT INTO pq_last_resort_prekeys (identity, id, encapsulation_key, signature)
         VALUES ({ghost}, 2147483648, {zero1184}, {zero64});",
        ghost = b.blob(&ghost),
        zero1184 = b.blob(&[0; 1184]),
        zero64 = b.blob(&[0; 64]),
    ));
    one(store, WriteOp::Expire { before_ms: 0 });
    assert_eq!(b.rows("pq_one_time_prekeys"), 2);
    assert_eq!(b.rows("pq_last_resort_prekeys"), 1);
    assert_eq!(b.free_name("alice").unwrap(), Some(alice));
    assert_eq!(b.rows("pq_one_time_prekeys"), 0);
    assert_eq!(b.rows("pq_last_resort_prekeys"), 0);
    assert_eq!(b.rows("one_time_prekeys"), 0);
    check_prekey_totals(b);
}

/// A malformed PQ prekey row is an error naming the row, never a panic.
pub(super) fn malformed_pq_rows_are_errors(b: &mut dyn Backend) {
    let store = b.store();
    one(store, register("alice", ident(1)));
    one(store, publish(ident(1), 1, &[], 10));
    one(store, publish_pq(ident(1), Some(LR), &[], 10));
    b.tamper(&format!(
        "UPDATE pq_last_resort_prekeys SET encapsulation_key = {};",
        b.blob(&[1, 2])
    ));
    let err = store.apply(&[fetch("alice")]).unwrap_err();
    assert!(err.0.contains("last-resort PQ prekey"), "{err}");
}
