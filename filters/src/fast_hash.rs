//! The hasher of the maps and caches a request looks up on its way through
//! (verifier and decision caches, revocations, the vault's open credentials,
//! the audit chains, the DNS cache).
//!
//! aHash with keys drawn at random once per process: as resistant to
//! collision flooding as std's SipHash-1-3 for a caller who cannot see the
//! keys, and a few times cheaper on the short keys used here (CIDs, DIDs,
//! tenant and credential names, decision-cache keys). Maps read only off the
//! request path (start-up, reload, the admin API), and the trusted-roots map
//! that only an uncached chain reads, keep std's hasher.

/// The random-keyed hasher builder; `FastState::default()` draws new keys.
pub type FastState = ahash::RandomState;

/// A `HashMap` with [`FastState`].
pub type FastMap<K, V> = std::collections::HashMap<K, V, FastState>;

#[cfg(test)]
mod tests {
    use super::FastState;

    #[test]
    fn every_map_gets_its_own_random_keys() {
        // A fixed-key hasher would hash a key alike in every map and every
        // process, which is what lets chosen keys be made to collide.
        let key = "did:key:z6MkhaXgBZDvotDkL5257faiztiGiC2QtKLGpbnnEGta2doK";
        let hashes: Vec<u64> = (0..8).map(|_| FastState::default().hash_one(key)).collect();
        assert!(hashes.windows(2).all(|w| w[0] != w[1]), "{hashes:?}");
        let one = FastState::default();
        assert_eq!(one.hash_one(key), one.hash_one(key));
    }
}
