//! Replay protection: each `(issuer, nonce)` pair is accepted once while the
//! token that carried it could still be valid.
//!
//! Entries expire when the token's window (plus clock skew) ends, so memory
//! is bounded by the request rate times the maximum token lifetime. The set
//! is never size-capped: evicting a live nonce early would re-open it for
//! replay.
//!
//! The set is sharded; each shard is a hash map plus a min-heap of expiry
//! times. Every insertion first reclaims at most [`RECLAIM_PER_INSERT`]
//! expired entries of its shard, so the cleanup is spread evenly over the
//! requests: no request pays for a whole sweep (a general-purpose cache's
//! housekeeping put 0.1 % of insertions above 240 µs). An expired entry that
//! has not been reclaimed yet counts as absent, so when cleanup happens never
//! changes a decision.

use crate::fast_hash::FastMap;
use sha2::{Digest, Sha256};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Shards (a power of two): threads rarely contend for one lock.
const SHARDS: usize = 16;

/// Expired entries reclaimed by each insertion, at most. More than one, so
/// reclaiming keeps up with insertions (each entry expires exactly once)
/// after a burst.
const RECLAIM_PER_INSERT: usize = 4;

type Key = [u8; 32];

#[derive(Default)]
struct Shard {
    /// Key → when it stops being recorded.
    until: FastMap<Key, Instant>,
    /// Every recorded `(expiry, key)`, soonest first. A key recorded again
    /// after it expired has a stale older pair here; reclaiming checks the
    /// map before removing.
    expiries: BinaryHeap<Reverse<(Instant, Key)>>,
}

impl Shard {
    fn reclaim(&mut self, now: Instant, max: usize) {
        for _ in 0..max {
            let Some(&Reverse((at, key))) = self.expiries.peek() else { return };
            if at > now {
                return;
            }
            self.expiries.pop();
            // A stale pair: the key was recorded again and expires later.
            if self.until.get(&key) == Some(&at) {
                self.until.remove(&key);
            }
        }
    }
}

/// The set of nonces seen within their windows.
pub struct ReplayGuard {
    shards: Box<[Mutex<Shard>; SHARDS]>,
}

impl Default for ReplayGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplayGuard {
    pub fn new() -> Self {
        ReplayGuard { shards: Box::new(std::array::from_fn(|_| Mutex::new(Shard::default()))) }
    }

    /// Record `(issuer, nonce)`; `false` when it was already recorded and has
    /// not expired. `ttl` is how long the pair must stay recorded.
    pub fn first_use(&self, issuer: &str, nonce: &str, ttl: Duration) -> bool {
        self.first_use_at(issuer, nonce, ttl, Instant::now())
    }

    fn first_use_at(&self, issuer: &str, nonce: &str, ttl: Duration, now: Instant) -> bool {
        let mut h = Sha256::new();
        h.update((issuer.len() as u64).to_be_bytes());
        h.update(issuer.as_bytes());
        h.update(nonce.as_bytes());
        let key: Key = h.finalize().into();
        let mut shard = self.shard(usize::from(key[0]) % SHARDS);
        shard.reclaim(now, RECLAIM_PER_INSERT);
        if shard.until.get(&key).is_some_and(|u| *u > now) {
            return false;
        }
        let until = now + ttl;
        shard.until.insert(key, until);
        shard.expiries.push(Reverse((until, key)));
        true
    }

    /// A poisoned lock only means another request panicked mid-update; the
    /// shard is consistent at every step, so keep using it.
    fn shard(&self, i: usize) -> std::sync::MutexGuard<'_, Shard> {
        self.shards[i].lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Entries held, expired ones not yet reclaimed included.
    pub fn len(&self) -> usize {
        (0..SHARDS).map(|i| self.shard(i).until.len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_use() {
        let g = ReplayGuard::new();
        let ttl = Duration::from_secs(60);
        assert!(g.first_use("did:key:a", "n1", ttl));
        assert!(!g.first_use("did:key:a", "n1", ttl));
        assert!(g.first_use("did:key:a", "n2", ttl));
        assert!(g.first_use("did:key:b", "n1", ttl));
        // Length-prefixing keeps ("ab","c") and ("a","bc") apart.
        assert!(g.first_use("ab", "c", ttl));
        assert!(g.first_use("a", "bc", ttl));
    }

    #[test]
    fn expires() {
        let g = ReplayGuard::new();
        let t0 = Instant::now();
        let ttl = Duration::from_secs(55);
        assert!(g.first_use_at("i", "n", ttl, t0));
        assert!(!g.first_use_at("i", "n", ttl, t0 + ttl - Duration::from_millis(1)));
        assert!(g.first_use_at("i", "n", ttl, t0 + ttl), "accepted again once its window has ended");
        assert!(!g.first_use_at("i", "n", ttl, t0 + ttl + Duration::from_secs(1)));
    }

    /// Expired entries are reclaimed as insertions go on, a few per
    /// insertion, and a stale heap entry never removes a key that was
    /// recorded again (it would re-open that nonce).
    #[test]
    fn reclaiming_keeps_up_and_never_reopens_a_live_nonce() {
        let g = ReplayGuard::new();
        let t0 = Instant::now();
        let short = Duration::from_secs(1);
        for i in 0..10_000 {
            assert!(g.first_use_at("i", &format!("old-{i}"), short, t0));
        }
        // "old-7" expires, is used again with a long window; its first
        // expiry is still in the heap.
        let t1 = t0 + Duration::from_secs(2);
        assert!(g.first_use_at("i", "old-7", Duration::from_secs(600), t1));
        // Enough new insertions to reclaim every expired entry.
        for i in 0..10_000 {
            assert!(g.first_use_at("i", &format!("new-{i}"), Duration::from_secs(600), t1));
        }
        assert_eq!(g.len(), 10_001, "the 9,999 expired entries are gone, old-7 and the new ones stay");
        assert!(!g.first_use_at("i", "old-7", short, t1 + Duration::from_secs(3)), "old-7 is still recorded");
    }
}
