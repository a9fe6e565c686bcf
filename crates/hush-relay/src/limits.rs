//! Per-connection token buckets, so one client's burst of sends or bundle fetches cannot
//! starve others or drain someone's one-time prekeys; and connection counters per key (source
//! address, identity), so one host or one identity cannot hold every connection slot.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Instant;

/// Open connections per key, with a cap checked on acquire.
#[derive(Debug)]
pub struct ConnectionCounter<K: Eq + Hash + Clone> {
    counts: Arc<Mutex<HashMap<K, usize>>>,
}

impl<K: Eq + Hash + Clone> Default for ConnectionCounter<K> {
    fn default() -> Self {
        Self {
            counts: Arc::default(),
        }
    }
}

impl<K: Eq + Hash + Clone> ConnectionCounter<K> {
    /// Count one more connection of `key`, unless it already has `max`. The count drops when
    /// the guard does, so no exit path can leak a slot.
    pub fn try_acquire(&self, key: K, max: usize) -> Option<CounterGuard<K>> {
        // The map holds only counts, so a panic elsewhere cannot leave it inconsistent.
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        let count = counts.entry(key.clone()).or_insert(0);
        if *count >= max {
            if *count == 0 {
                counts.remove(&key);
            }
            return None;
        }
        *count += 1;
        Some(CounterGuard {
            counts: Arc::clone(&self.counts),
            key,
        })
    }

    /// Connections of `key` open now.
    pub fn count(&self, key: &K) -> usize {
        let counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        counts.get(key).copied().unwrap_or(0)
    }
}

/// One counted connection; releases its slot when dropped.
#[derive(Debug)]
pub struct CounterGuard<K: Eq + Hash + Clone> {
    counts: Arc<Mutex<HashMap<K, usize>>>,
    key: K,
}

impl<K: Eq + Hash + Clone> Drop for CounterGuard<K> {
    fn drop(&mut self) {
        let mut counts = self.counts.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = counts.get_mut(&self.key) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.key);
            }
        }
    }
}

/// The key a connection is counted under for the per-source cap: the IPv4 address, or the /64
/// prefix of an IPv6 address (one host usually holds a whole /64, so counting single IPv6
/// addresses would cap nothing).
pub fn source_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(bits.into())
        }
        v4 => v4,
    }
}

/// A token bucket: `rate` tokens per second, at most `burst` stored.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: f64, burst: f64, now: Instant) -> Self {
        Self {
            rate,
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Charge `tokens` more for work already done (a fan-out to many mailboxes), going into
    /// debt down to `-burst` at most: the next requests wait until it is paid back.
    pub fn charge(&mut self, tokens: f64, now: Instant) {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        self.tokens = (self.tokens - tokens.max(0.0)).max(-self.burst);
    }

    /// Take one token if available.
    pub fn try_take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn counter_caps_per_key_and_releases_on_drop() {
        let counter = ConnectionCounter::default();
        let a1 = counter.try_acquire("a", 2).unwrap();
        let _a2 = counter.try_acquire("a", 2).unwrap();
        assert!(counter.try_acquire("a", 2).is_none());
        let _b = counter.try_acquire("b", 2).unwrap();
        drop(a1);
        assert_eq!(counter.count(&"a"), 1);
        assert!(counter.try_acquire("a", 2).is_some());
        assert!(counter.try_acquire("c", 0).is_none());
        assert_eq!(counter.count(&"c"), 0);
    }

    #[test]
    fn ipv6_sources_are_counted_per_64_and_mapped_ipv4_as_ipv4() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::9".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(source_key(a), source_key(b));
        assert_ne!(source_key(a), source_key(c));
        let mapped: IpAddr = "::ffff:192.0.2.7".parse().unwrap();
        assert_eq!(source_key(mapped), "192.0.2.7".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn a_charge_puts_the_bucket_in_debt_until_refilled() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 5.0, t0);
        assert!(b.try_take(t0));
        b.charge(100.0, t0);
        // In debt down to -burst: nothing for 1 s at 10 tokens/s (−5 → +5 needs 1 s).
        assert!(!b.try_take(t0 + Duration::from_millis(500)));
        assert!(b.try_take(t0 + Duration::from_millis(1100)));
    }

    #[test]
    fn bucket_allows_burst_then_refills_at_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10.0, 3.0, t0);
        assert!(b.try_take(t0) && b.try_take(t0) && b.try_take(t0));
        assert!(!b.try_take(t0));
        assert!(!b.try_take(t0 + Duration::from_millis(50)));
        assert!(b.try_take(t0 + Duration::from_millis(150)));
        // Never more than the burst, however long idle.
        let later = t0 + Duration::from_secs(100);
        assert!((0..3).all(|_| b.try_take(later)));
        assert!(!b.try_take(later));
    }
}
