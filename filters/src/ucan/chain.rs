//! Chain verification: from an invocation back to a tenant root.
//!
//! A token is authorised when its issuer is a configured tenant root, or when
//! it has at least one proof that
//! - is addressed to it (`proof.aud == token.iss`),
//! - has a window that contains the token's window,
//! - is itself authorised, recursively, under the same tenant,
//!
//! and every capability of the token is covered by a capability of one of
//! those proofs (attenuation). The walk is bounded in depth and fan-out.

use super::cid::Cid;
use super::token::{parse_jwt_with_cid, ProofRef, Token, TokenError};
use super::Reason;
use std::collections::HashMap;
use std::sync::Arc;

/// The longest chain (tokens, invocation included) that is walked.
pub const MAX_CHAIN_LEN: usize = 8;
/// The most proofs one token may reference.
pub const MAX_PROOFS_PER_TOKEN: usize = 8;
/// The most proofs the `ucans` header may carry.
pub const MAX_HEADER_PROOFS: usize = 16;

/// A verified chain: the invocation plus everything it rests on.
#[derive(Debug)]
pub struct VerifiedChain {
    pub invocation: Arc<Token>,
    /// The tenant whose root authorised the chain.
    pub tenant: Arc<str>,
    /// The root DID the chain ends at.
    pub root: String,
    /// Every token of the chain, invocation first.
    pub links: Vec<Arc<Token>>,
    /// Longest path from the invocation to the root, in tokens.
    pub length: usize,
}

impl VerifiedChain {
    /// The agent: the invocation's issuer.
    pub fn agent(&self) -> &str {
        &self.invocation.issuer
    }
}

/// Proofs supplied with a request, addressable by CID.
pub struct ProofPool<'a> {
    by_cid: Vec<(Cid, &'a str)>,
}

impl<'a> ProofPool<'a> {
    /// Split a `ucans` header value (comma-separated JWTs).
    pub fn from_header(header: Option<&'a str>) -> Result<Self, TokenError> {
        let mut by_cid = Vec::new();
        if let Some(h) = header {
            for jwt in h.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                if by_cid.len() == MAX_HEADER_PROOFS {
                    return Err(TokenError::new(Reason::TokenMalformed, "the ucans header carries too many proofs"));
                }
                by_cid.push((Cid::of(jwt.as_bytes()), jwt));
            }
        }
        Ok(ProofPool { by_cid })
    }

    fn get(&self, cid: &Cid) -> Option<&'a str> {
        self.by_cid.iter().find(|(c, _)| c == cid).map(|(_, j)| *j)
    }
}

/// How tokens are looked up (through the verifier's signature cache).
pub trait TokenSource {
    fn token(&self, jwt: &str, cid: Cid) -> Result<Arc<Token>, TokenError>;
}

/// A plain source with no cache.
pub struct Uncached;

impl TokenSource for Uncached {
    fn token(&self, jwt: &str, cid: Cid) -> Result<Arc<Token>, TokenError> {
        parse_jwt_with_cid(jwt, cid).map(Arc::new)
    }
}

/// Time parameters for window checks.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    pub now: u64,
    pub skew: u64,
}

impl Clock {
    /// Is the token currently valid?
    pub fn check(&self, t: &Token) -> Result<(), TokenError> {
        if self.now >= t.expires.saturating_add(self.skew) {
            return Err(TokenError::new(Reason::Expired, "a token of the chain has expired"));
        }
        if let Some(nbf) = t.not_before {
            if nbf > self.now.saturating_add(self.skew) {
                return Err(TokenError::new(Reason::NotYetValid, "a token of the chain is not valid yet"));
            }
        }
        Ok(())
    }
}

struct Walk<'a, S: TokenSource> {
    roots: &'a HashMap<String, Arc<str>>,
    pool: &'a ProofPool<'a>,
    source: &'a S,
    clock: Clock,
    links: Vec<Arc<Token>>,
    visited: usize,
}

/// Verify that `invocation` rests on a tenant root. Audience and the
/// invocation's own lifetime are checked by the caller.
pub fn verify_chain<S: TokenSource>(
    invocation: Arc<Token>,
    pool: &ProofPool<'_>,
    roots: &HashMap<String, Arc<str>>,
    source: &S,
    clock: Clock,
) -> Result<VerifiedChain, TokenError> {
    let mut walk = Walk { roots, pool, source, clock, links: vec![invocation.clone()], visited: 0 };
    let (tenant, root, length) = walk.authorise(&invocation, 1)?;
    Ok(VerifiedChain { invocation, tenant, root, links: walk.links, length })
}

impl<S: TokenSource> Walk<'_, S> {
    /// Returns (tenant, root DID, chain length from this token).
    fn authorise(&mut self, token: &Token, depth: usize) -> Result<(Arc<str>, String, usize), TokenError> {
        if let Some(tenant) = self.roots.get(&token.issuer) {
            return Ok((tenant.clone(), token.issuer.clone(), depth));
        }
        if token.proofs.is_empty() {
            return Err(TokenError::new(Reason::UntrustedRoot, "the chain does not start at a trusted tenant root"));
        }
        if depth >= MAX_CHAIN_LEN {
            return Err(TokenError::new(Reason::BrokenChain, "the chain is too long"));
        }
        if token.proofs.len() > MAX_PROOFS_PER_TOKEN {
            return Err(TokenError::new(Reason::TokenMalformed, "a token references too many proofs"));
        }
        let mut last_err = None;
        let mut valid: Vec<Arc<Token>> = Vec::with_capacity(token.proofs.len());
        let mut decided: Option<(Arc<str>, String, usize)> = None;
        for pref in &token.proofs {
            self.visited += 1;
            if self.visited > MAX_CHAIN_LEN * MAX_PROOFS_PER_TOKEN {
                return Err(TokenError::new(Reason::BrokenChain, "the proof graph is too large"));
            }
            let proof = match pref {
                ProofRef::Cid(cid) => match self.pool.get(cid) {
                    Some(jwt) => self.source.token(jwt, *cid)?,
                    None => {
                        last_err = Some(TokenError::new(Reason::BrokenChain, "a proof is missing from the ucans header"));
                        continue;
                    }
                },
                ProofRef::Inline(jwt) => self.source.token(jwt, super::cid::Cid::of(jwt.as_bytes()))?,
            };
            if proof.audience != token.issuer {
                last_err = Some(TokenError::new(Reason::BrokenChain, "a proof is not addressed to the token's issuer"));
                continue;
            }
            self.clock.check(&proof)?;
            let start = token.not_before.unwrap_or(self.clock.now);
            if proof.expires < token.expires || proof.not_before.is_some_and(|nbf| nbf > start) {
                last_err = Some(TokenError::new(Reason::BrokenChain, "a proof's time window does not contain its child's"));
                continue;
            }
            match self.authorise(&proof, depth + 1) {
                Ok(found) => {
                    if let Some((t, _, _)) = &decided {
                        if *t != found.0 {
                            return Err(TokenError::new(Reason::UntrustedRoot, "the proofs come from different tenants"));
                        }
                    }
                    if decided.as_ref().is_none_or(|d| found.2 > d.2) {
                        decided = Some(found);
                    }
                    valid.push(proof);
                }
                Err(e) => last_err = Some(e),
            }
        }
        let decided = match decided {
            Some(d) => d,
            None => return Err(last_err.unwrap_or(TokenError::new(Reason::BrokenChain, "no proof supports the token"))),
        };
        for cap in &token.capabilities {
            let covered = valid.iter().any(|p| p.capabilities.iter().any(|pc| pc.covers(cap)));
            if !covered {
                return Err(TokenError::new(Reason::Escalation, "a token claims more than its proofs delegate"));
            }
        }
        for p in valid {
            if !self.links.iter().any(|l| l.cid == p.cid) {
                self.links.push(p);
            }
        }
        Ok(decided)
    }
}
