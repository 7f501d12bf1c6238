//! The hasher of the maps and caches a request looks up on its way through
//! (verifier and decision caches, revocations, the vault's open credentials,
//! the audit chains, the DNS cache).
//!
//! aHash with keys drawn at random once per process: as resistant to
//! collision flooding as std's SipHash-1-3 for a caller who cannot see the
//! keys, and a few times cheaper on the short keys used here (CIDs, DIDs,
//! tenant and credential names, decision-cache keys). Maps built once at
//! start and read only at start keep std's hasher.

/// The random-keyed hasher builder; `FastState::default()` draws new keys.
pub type FastState = ahash::RandomState;

/// A `HashMap` with [`FastState`].
pub type FastMap<K, V> = std::collections::HashMap<K, V, FastState>;
