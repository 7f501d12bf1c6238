//! Replay protection: each `(issuer, nonce)` pair is accepted once while the
//! token that carried it could still be valid.
//!
//! Entries expire on their own when the token's window (plus clock skew)
//! ends, so memory is bounded by the request rate times the maximum token
//! lifetime. The map is never size-capped: evicting a live nonce early would
//! re-open it for replay.

use moka::sync::Cache;
use sha2::{Digest, Sha256};
use std::time::{Duration, Instant};

struct UntilExpiry;

impl moka::Expiry<[u8; 32], Duration> for UntilExpiry {
    fn expire_after_create(&self, _key: &[u8; 32], ttl: &Duration, _created: Instant) -> Option<Duration> {
        Some(*ttl)
    }
}

/// The set of nonces seen within their windows.
pub struct ReplayGuard {
    seen: Cache<[u8; 32], Duration>,
}

impl Default for ReplayGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl ReplayGuard {
    pub fn new() -> Self {
        ReplayGuard { seen: Cache::builder().expire_after(UntilExpiry).build() }
    }

    /// Record `(issuer, nonce)`; `false` when it was already recorded and has
    /// not expired. `ttl` is how long the pair must stay recorded.
    pub fn first_use(&self, issuer: &str, nonce: &str, ttl: Duration) -> bool {
        let mut h = Sha256::new();
        h.update((issuer.len() as u64).to_be_bytes());
        h.update(issuer.as_bytes());
        h.update(nonce.as_bytes());
        let key: [u8; 32] = h.finalize().into();
        self.seen.entry(key).or_insert(ttl).is_fresh()
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
        assert!(g.first_use("i", "n", Duration::from_millis(20)));
        std::thread::sleep(Duration::from_millis(60));
        assert!(g.first_use("i", "n", Duration::from_millis(20)));
    }
}
