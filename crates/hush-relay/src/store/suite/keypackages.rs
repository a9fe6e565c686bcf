//! MLS KeyPackages on the relay: one-time ones popped once each, oldest first, then the
//! last-resort one; a capped stock; a name needed; gone with the name.

use super::*;

fn kp(tag: u8) -> Vec<u8> {
    vec![0x4b, tag, tag, tag]
}

fn publish_kp(identity: IdentityBytes, last_resort: Option<u8>, tags: &[u8], max: u32) -> WriteOp {
    WriteOp::PublishKeyPackages {
        identity,
        last_resort: last_resort.map(kp),
        one_time: tags.iter().map(|&t| kp(t)).collect(),
        max_stock: max,
    }
}

fn fetch_kp(name: &str, pop_one_time: bool) -> WriteOp {
    WriteOp::FetchKeyPackage {
        name: name.to_owned(),
        pop_one_time,
    }
}

fn kp_stored(n: u32) -> WriteResult {
    WriteResult::KeyPackagesStored {
        one_time_remaining: n,
    }
}

fn served(result: WriteResult) -> (IdentityBytes, Vec<u8>) {
    match result {
        WriteResult::KeyPackage {
            identity,
            key_package,
        } => (identity, key_package),
        other => panic!("expected a KeyPackage, got {other:?}"),
    }
}

pub(super) fn one_time_key_packages_pop_once_oldest_first_then_last_resort_repeats(
    b: &mut dyn Backend,
) {
    let store = b.store();
    let alice = ident(1);
    one(store, register("alice", alice));
    assert_eq!(
        one(store, publish_kp(alice, Some(9), &[1, 2], 10)),
        kp_stored(2)
    );
    assert_eq!(served(one(store, fetch_kp("alice", true))), (alice, kp(1)));
    assert_eq!(served(one(store, fetch_kp("alice", true))), (alice, kp(2)));
    for _ in 0..3 {
        assert_eq!(served(one(store, fetch_kp("alice", true))), (alice, kp(9)));
    }
    assert_eq!(b.rows("key_packages_one_time"), 0);
    // A new last-resort KeyPackage replaces the old one.
    assert_eq!(
        one(store, publish_kp(alice, Some(8), &[], 10)),
        kp_stored(0)
    );
    assert_eq!(served(one(store, fetch_kp("alice", true))).1, kp(8));
    assert_eq!(b.rows("key_packages_last_resort"), 1);
    assert_eq!(one(store, fetch_kp("bob", true)), WriteResult::UnknownUser);
}

pub(super) fn key_packages_need_a_name_and_a_stock_within_the_cap(b: &mut dyn Backend) {
    let store = b.store();
    let alice = ident(1);
    assert_eq!(
        one(store, publish_kp(alice, Some(9), &[1], 10)),
        WriteResult::NotRegistered
    );
    one(store, register("alice", alice));
    // Registered but nothing published: nothing to serve.
    assert_eq!(
        one(store, fetch_kp("alice", true)),
        WriteResult::UnknownUser
    );
    assert_eq!(
        one(store, publish_kp(alice, None, &[1, 2], 3)),
        kp_stored(2)
    );
    // Two more would make 4 > 3: refused, and nothing of the request is stored.
    assert_eq!(
        one(store, publish_kp(alice, Some(9), &[3, 4], 3)),
        WriteResult::TooManyPrekeys
    );
    assert_eq!(b.rows("key_packages_one_time"), 2);
    assert_eq!(b.rows("key_packages_last_resort"), 0);
    // A last-resort rotation is never refused for the stock.
    assert_eq!(one(store, publish_kp(alice, Some(9), &[], 1)), kp_stored(2));
}

/// With the user's fetch budget spent, only the last-resort KeyPackage is served: the
/// one-time stock is not drained by a flood of fetches.
pub(super) fn spent_budget_serves_the_last_resort_key_package_only(b: &mut dyn Backend) {
    let store = b.store();
    let alice = ident(1);
    one(store, register("alice", alice));
    one(store, publish_kp(alice, None, &[1, 2], 10));
    assert_eq!(
        one(store, fetch_kp("alice", false)),
        WriteResult::KeyPackageBudgetSpent
    );
    assert_eq!(b.rows("key_packages_one_time"), 2);
    one(store, publish_kp(alice, Some(9), &[], 10));
    assert_eq!(served(one(store, fetch_kp("alice", false))).1, kp(9));
    assert_eq!(b.rows("key_packages_one_time"), 2);
}

/// Concurrent fetches (separate batches from several threads) never get the same one-time
/// KeyPackage.
pub(super) fn concurrent_fetches_pop_distinct_key_packages(b: &mut dyn Backend) {
    let store = b.store();
    let alice = ident(1);
    one(store, register("alice", alice));
    let tags: Vec<u8> = (1..=20).collect();
    one(store, publish_kp(alice, Some(99), &tags, 100));
    let mut got: Vec<Vec<u8>> = std::thread::scope(|scope| {
        let threads: Vec<_> = (0..4)
            .map(|_| {
                scope.spawn(move || {
                    (0..6)
                        .map(|_| served(one(store, fetch_kp("alice", true))).1)
                        .collect::<Vec<_>>()
                })
            })
            .collect();
        threads
            .into_iter()
            .flat_map(|t| t.join().unwrap())
            .collect()
    });
    got.sort();
    let last_resort = got.iter().filter(|k| **k == kp(99)).count();
    got.dedup();
    // 24 fetches of 20 one-time KeyPackages: each once, then the last-resort one 4 times.
    assert_eq!(last_resort, 4);
    assert_eq!(got.len(), 21);
    assert_eq!(b.rows("key_packages_one_time"), 0);
}

/// Freeing a name deletes its KeyPackages; the expiry sweep deletes any of nameless identities.
pub(super) fn key_packages_go_with_the_name(b: &mut dyn Backend) {
    let store = b.store();
    let (alice, ghost) = (ident(1), ident(2));
    one(store, register("alice", alice));
    one(store, publish_kp(alice, Some(9), &[1, 2], 10));
    b.tamper(&format!(
        "INSERT INTO key_packages_one_time (identity, key_package) VALUES ({ghost}, {kp});
         INSERT INTO key_packages_last_resort (identity, key_package) VALUES ({ghost}, {kp});",
        ghost = b.blob(&ghost),
        kp = b.blob(&[1]),
    ));
    one(store, WriteOp::Expire { before_ms: 0 });
    assert_eq!(b.rows("key_packages_one_time"), 2);
    assert_eq!(b.rows("key_packages_last_resort"), 1);
    assert_eq!(b.free_name("alice").unwrap(), Some(alice));
    assert_eq!(b.rows("key_packages_one_time"), 0);
    assert_eq!(b.rows("key_packages_last_resort"), 0);
}
