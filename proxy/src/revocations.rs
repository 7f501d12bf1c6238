//! The in-memory revocation index, checked on every request (cached chains
//! included) against every link of the chain: a revoked token CID anywhere
//! in the chain, or a revoked issuer DID of any link, denies with
//! `401 revoked`. A revocation takes effect on the very next request: the
//! index is swapped atomically when one is added. The durable copy lives in
//! the [`crate::state_store`].

use crate::state_store::{Revocation, RevokedKind};
use arc_swap::ArcSwap;
use capgate_filters::fast_hash::FastMap;
use capgate_filters::ucan::{Cid, VerifiedChain};

#[derive(Default)]
struct Index {
    /// CID → tenants it is revoked for (`*` = all).
    cids: FastMap<Cid, Vec<String>>,
    dids: FastMap<String, Vec<String>>,
}

pub struct RevocationSet {
    index: ArcSwap<Index>,
}

fn applies(tenants: &[String], tenant: &str) -> bool {
    tenants.iter().any(|t| t == "*" || t == tenant)
}

impl RevocationSet {
    pub fn new(list: &[Revocation]) -> Self {
        let s = RevocationSet { index: ArcSwap::from_pointee(Index::default()) };
        for r in list {
            s.add(r);
        }
        s
    }

    /// Add to the live index (the caller has persisted it).
    pub fn add(&self, r: &Revocation) {
        let old = self.index.load();
        let mut next = Index { cids: old.cids.clone(), dids: old.dids.clone() };
        match r.kind {
            RevokedKind::Cid => {
                if let Some(c) = Cid::parse(&r.value) {
                    next.cids.entry(c).or_default().push(r.tenant.clone());
                }
            }
            RevokedKind::Did => next.dids.entry(r.value.clone()).or_default().push(r.tenant.clone()),
        }
        self.index.store(std::sync::Arc::new(next));
    }

    /// True when any link of `chain` is revoked for its tenant.
    pub fn is_revoked(&self, chain: &VerifiedChain) -> bool {
        let ix = self.index.load();
        if ix.cids.is_empty() && ix.dids.is_empty() {
            return false;
        }
        chain.links.iter().any(|t| {
            ix.cids.get(&t.cid).is_some_and(|ts| applies(ts, &chain.tenant))
                || ix.dids.get(&t.issuer).is_some_and(|ts| applies(ts, &chain.tenant))
        })
    }
}
