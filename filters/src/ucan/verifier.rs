//! The verifier: token caches, chain verification and per-request checks.
//!
//! Two caches (moka), both keyed by CID and living until the token expires:
//! - verified tokens, so a delegation's signature is checked once however
//!   many invocations rest on it;
//! - verified chains, so a repeated invocation skips the walk entirely. With
//!   replay protection on, an invocation is single-use, so its chain is not
//!   cached: a second use is refused as a replay anyway, and caching every
//!   fresh invocation would only spend memory and insert time.
//!
//! A third cache keeps decoded issuer `did:key`s (see [`KeyCache`]). It is
//! filled before a signature is checked, since it holds only a pure decoding
//! of the DID string and grants nothing; junk can only evict entries.
//!
//! Only tokens of chains that verified go in the token and chain caches (so nobody can fill the
//! cache with self-signed junk), for at most [`MAX_CACHE_TTL`]. A hit still runs the time checks on every
//! request; replay is checked by [`Verifier::consume_nonce`] and revocation by
//! the caller, on every request, cached or not.

use super::chain::{verify_chain, Clock, ProofPool, TokenSource, VerifiedChain};
use super::cid::Cid;
use super::did::KeyCache;
use super::replay::ReplayGuard;
use super::token::{parse_jwt_keyed, Token, TokenError};
use super::Reason;
use crate::fast_hash::FastState;
use moka::sync::Cache;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest a verified token or chain stays cached before it is verified again.
pub const MAX_CACHE_TTL: Duration = Duration::from_secs(3600);

/// Verifier settings.
#[derive(Debug, Clone)]
pub struct VerifierConfig {
    /// The gateway's own DID: the required audience of invocations.
    pub gateway_did: String,
    /// Trusted root DID → tenant id.
    pub roots: HashMap<String, Arc<str>>,
    /// The furthest ahead an invocation's `exp` may be.
    pub max_lifetime_secs: u64,
    pub clock_skew_secs: u64,
    pub replay_protection: bool,
    /// Entries per cache.
    pub cache_capacity: u64,
}

/// A successful verification.
pub struct Verified {
    pub chain: Arc<VerifiedChain>,
    pub cache_hit: bool,
}

struct Ttl<T>(T, Duration);

impl<T: Clone> Clone for Ttl<T> {
    fn clone(&self) -> Self {
        Ttl(self.0.clone(), self.1)
    }
}

struct UntilExpiry;

impl<T> moka::Expiry<Cid, Ttl<T>> for UntilExpiry {
    fn expire_after_create(&self, _k: &Cid, v: &Ttl<T>, _c: Instant) -> Option<Duration> {
        Some(v.1)
    }
}

/// Verifies UCAN invocations for the gateway.
pub struct Verifier {
    cfg: VerifierConfig,
    tokens: Cache<Cid, Ttl<Arc<Token>>, FastState>,
    chains: Cache<Cid, Ttl<Arc<VerifiedChain>>, FastState>,
    /// Decoded issuer keys: with a fresh invocation per request the token
    /// caches miss, but the agent's key is the same every time.
    keys: KeyCache,
    replay: ReplayGuard,
}

struct CachedSource<'a> {
    v: &'a Verifier,
}

impl TokenSource for CachedSource<'_> {
    fn token(&self, jwt: &str, cid: Cid) -> Result<Arc<Token>, TokenError> {
        if let Some(t) = self.v.tokens.get(&cid) {
            return Ok(t.0);
        }
        Ok(Arc::new(parse_jwt_keyed(jwt, cid, Some(&self.v.keys))?))
    }
}

impl Verifier {
    pub fn new(cfg: VerifierConfig) -> Self {
        let cap = cfg.cache_capacity.max(1);
        Verifier {
            tokens: Cache::builder().max_capacity(cap).expire_after(UntilExpiry).build_with_hasher(FastState::default()),
            chains: Cache::builder().max_capacity(cap).expire_after(UntilExpiry).build_with_hasher(FastState::default()),
            keys: KeyCache::new(cap),
            replay: ReplayGuard::new(),
            cfg,
        }
    }

    pub fn config(&self) -> &VerifierConfig {
        &self.cfg
    }

    /// How long a cache entry for `t` may live: until it expires, at most [`MAX_CACHE_TTL`].
    fn ttl(&self, t: &Token, now: u64) -> Duration {
        Duration::from_secs(t.expires.saturating_sub(now).saturating_add(self.cfg.clock_skew_secs)).min(MAX_CACHE_TTL)
    }

    /// How long a nonce must stay recorded: the whole window, uncapped.
    fn nonce_ttl(&self, t: &Token, now: u64) -> Duration {
        Duration::from_secs(t.expires.saturating_sub(now).saturating_add(self.cfg.clock_skew_secs))
    }

    fn clock(&self, now: u64) -> Clock {
        Clock { now, skew: self.cfg.clock_skew_secs }
    }

    /// Verify the invocation `token` with the proofs of the `ucans` header,
    /// at `now` (seconds since the Unix epoch).
    pub fn verify(&self, token: &str, ucans: Option<&str>, now: u64) -> Result<Verified, TokenError> {
        let cid = Cid::of(token.as_bytes());
        if let Some(hit) = self.chains.get(&cid) {
            self.check_invocation_time(&hit.0.invocation, now)?;
            return Ok(Verified { chain: hit.0, cache_hit: true });
        }
        let source = CachedSource { v: self };
        let invocation = source.token(token, cid)?;
        if invocation.audience != self.cfg.gateway_did {
            return Err(TokenError::new(Reason::WrongAudience, "the invocation is not addressed to this gateway"));
        }
        self.check_invocation_time(&invocation, now)?;
        let pool = ProofPool::from_header(ucans)?;
        let chain = Arc::new(verify_chain(invocation, &pool, &self.cfg.roots, &source, self.clock(now))?);
        for link in &chain.links[1..] {
            if !self.tokens.contains_key(&link.cid) {
                self.tokens.insert(link.cid, Ttl(link.clone(), self.ttl(link, now)));
            }
        }
        if !self.cfg.replay_protection {
            let ttl = self.ttl(&chain.invocation, now);
            self.chains.insert(cid, Ttl(chain.clone(), ttl));
        }
        Ok(Verified { chain, cache_hit: false })
    }

    fn check_invocation_time(&self, t: &Token, now: u64) -> Result<(), TokenError> {
        self.clock(now).check(t)?;
        if t.expires > now.saturating_add(self.cfg.max_lifetime_secs).saturating_add(self.cfg.clock_skew_secs) {
            return Err(TokenError::new(Reason::LifetimeTooLong, "the invocation lives longer than the gateway allows"));
        }
        Ok(())
    }

    /// With replay protection on, accept the invocation's `(iss, nnc)` once.
    pub fn consume_nonce(&self, chain: &VerifiedChain, now: u64) -> Result<(), TokenError> {
        if !self.cfg.replay_protection {
            return Ok(());
        }
        let inv = &chain.invocation;
        let nonce = match inv.nonce.as_deref() {
            Some(n) if !n.is_empty() => n,
            _ => return Err(TokenError::new(Reason::NonceMissing, "replay protection requires a nonce (nnc)")),
        };
        if self.replay.first_use(&inv.issuer, nonce, self.nonce_ttl(inv, now)) {
            Ok(())
        } else {
            Err(TokenError::new(Reason::Replayed, "this invocation's nonce was already used"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ucan::did::did_key;
    use crate::ucan::mint::{mint, MintSpec};
    use ed25519_dalek::SigningKey;

    const NOW: u64 = 1_800_000_000;

    struct World {
        gateway: SigningKey,
        root: SigningKey,
        agent: SigningKey,
        verifier: Verifier,
    }

    fn key() -> SigningKey {
        SigningKey::generate(&mut rand::rngs::OsRng)
    }

    fn did(k: &SigningKey) -> String {
        did_key(&k.verifying_key())
    }

    fn world() -> World {
        world_with(true)
    }

    fn world_with(replay_protection: bool) -> World {
        let (gateway, root, agent) = (key(), key(), key());
        let verifier = Verifier::new(VerifierConfig {
            gateway_did: did(&gateway),
            roots: HashMap::from([(did(&root), Arc::from("acme"))]),
            max_lifetime_secs: 60,
            clock_skew_secs: 5,
            replay_protection,
            cache_capacity: 100,
        });
        World { gateway, root, agent, verifier }
    }

    fn token(k: &SigningKey, aud: String, with: &str, can: &str, exp: u64, proofs: Vec<String>) -> String {
        mint(
            k,
            &MintSpec {
                audience: aud,
                capabilities: vec![(with.into(), can.into())],
                expires: exp,
                nonce: Some(format!("n{}", rand::random::<u64>())),
                proofs,
                ..Default::default()
            },
        )
    }

    #[test]
    fn valid_chain_then_cache_hit_that_still_checks_time() {
        let w = world_with(false);
        let d = token(&w.root, did(&w.agent), "https://api.example.com", "http/*", NOW + 3600, vec![]);
        let i = token(&w.agent, did(&w.gateway), "https://api.example.com/x", "http/GET", NOW + 30, vec![d.clone()]);
        let v = w.verifier.verify(&i, Some(&d), NOW).expect("valid");
        assert!(!v.cache_hit);
        assert_eq!(&*v.chain.tenant, "acme");
        assert_eq!(v.chain.length, 2);
        assert_eq!(v.chain.links.len(), 2);
        let v = w.verifier.verify(&i, None, NOW + 1).expect("cached");
        assert!(v.cache_hit);
        let e = w.verifier.verify(&i, Some(&d), NOW + 100).err().expect("expired even when cached");
        assert_eq!(e.reason, Reason::Expired);
    }

    #[test]
    fn with_replay_protection_invocations_are_not_cached_but_their_proofs_are() {
        let w = world();
        let d = token(&w.root, did(&w.agent), "https://api.example.com", "http/*", NOW + 3600, vec![]);
        let i = token(&w.agent, did(&w.gateway), "https://api.example.com/x", "http/GET", NOW + 30, vec![d.clone()]);
        let v = w.verifier.verify(&i, Some(&d), NOW).expect("valid");
        assert!(!v.cache_hit);
        w.verifier.chains.run_pending_tasks();
        w.verifier.tokens.run_pending_tasks();
        assert_eq!(w.verifier.chains.entry_count(), 0, "the single-use invocation is not cached");
        assert_eq!(w.verifier.tokens.entry_count(), 1, "its delegation is");
        assert!(!w.verifier.verify(&i, Some(&d), NOW + 1).expect("valid").cache_hit);
        w.verifier.consume_nonce(&v.chain, NOW).expect("first use");
        assert_eq!(w.verifier.consume_nonce(&v.chain, NOW).err().map(|e| e.reason), Some(Reason::Replayed));
    }

    #[test]
    fn refusals() {
        let w = world();
        let d = token(&w.root, did(&w.agent), "https://api.example.com/a", "http/GET", NOW + 3600, vec![]);
        let reason = |t: &str, u: Option<&str>| w.verifier.verify(t, u, NOW).err().map(|e| e.reason);
        let i = token(&w.agent, did(&w.agent), "https://api.example.com/a", "http/GET", NOW + 30, vec![d.clone()]);
        assert_eq!(reason(&i, Some(&d)), Some(Reason::WrongAudience));
        let i = token(&w.agent, did(&w.gateway), "https://api.example.com", "http/GET", NOW + 30, vec![d.clone()]);
        assert_eq!(reason(&i, Some(&d)), Some(Reason::Escalation));
        let i = token(&w.agent, did(&w.gateway), "https://api.example.com/a", "http/GET", NOW + 30, vec![d.clone()]);
        assert_eq!(reason(&i, None), Some(Reason::BrokenChain));
        let i = token(&w.agent, did(&w.gateway), "https://api.example.com/a", "http/GET", NOW + 600, vec![d.clone()]);
        assert_eq!(reason(&i, Some(&d)), Some(Reason::LifetimeTooLong));
        let rogue = token(&key(), did(&w.agent), "https://api.example.com", "http/*", NOW + 3600, vec![]);
        let i = token(&w.agent, did(&w.gateway), "https://api.example.com/a", "http/GET", NOW + 30, vec![rogue.clone()]);
        assert_eq!(reason(&i, Some(&rogue)), Some(Reason::UntrustedRoot));
        let i = token(&w.agent, did(&w.gateway), "https://api.example.com/a", "http/GET", NOW + 30, vec![]);
        assert_eq!(reason(&i, None), Some(Reason::UntrustedRoot));
        assert_eq!(reason("x.y.z", None), Some(Reason::TokenMalformed));
    }

    #[test]
    fn root_issued_invocation_is_a_one_link_chain() {
        let w = world();
        let i = token(&w.root, did(&w.gateway), "https://api.example.com/a", "http/GET", NOW + 30, vec![]);
        let v = w.verifier.verify(&i, None, NOW).expect("valid");
        assert_eq!(v.chain.length, 1);
        assert_eq!(v.chain.agent(), did(&w.root));
    }
}
