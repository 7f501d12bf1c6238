//! The Cedar decision cache.
//!
//! A Cedar decision is a pure function of the policy set and the inputs that
//! [`crate::authz::PolicyEngine`] builds from an [`AuthzRequest`]: the
//! entities and the context are derived from nothing else. So a decision can
//! be memoised under a key that holds every one of those inputs, exactly
//! (no hash of them: two different requests never share an entry).
//!
//! Two inputs change every second: `context.now` and `context.token_ttl`.
//! Keying on them would make almost every request a miss, so at load time the
//! policy set is inspected ([`ContextUse::of`]) and they join the key only if
//! some policy reads them. The inspection is conservative: any use of
//! `context` other than `context.<attr>` or `context has <attr>` counts as
//! reading every attribute.
//!
//! The cache belongs to one policy set (it lives inside the engine), so a
//! reload starts with an empty one and never serves a decision made by the
//! old set. It is bounded in entries; eviction only costs a re-evaluation.
//!
//! A lookup writes the key into the thread's scratch buffer
//! ([`crate::scratch`]), so a hit (the usual case: two lookups per request,
//! the authorization and the risk pass) allocates nothing; only a miss copies
//! the key into the cache.

use crate::authz::{AuthzDecision, AuthzRequest};
use crate::fast_hash::FastState;
use crate::scratch::with_scratch;
use cedar_policy::PolicySet;
use moka::sync::Cache;
use std::sync::Arc;

/// Which volatile context attributes a policy set reads.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ContextUse {
    pub now: bool,
    pub token_ttl: bool,
}

impl ContextUse {
    /// Inspect every policy of `set` (as Cedar's JSON form). A policy that
    /// cannot be rendered as JSON counts as reading everything.
    pub fn of(set: &PolicySet) -> ContextUse {
        let mut used = ContextUse::default();
        for p in set.policies() {
            match p.to_json() {
                Ok(json) => walk(&json, &mut used),
                Err(_) => used = ContextUse { now: true, token_ttl: true },
            }
        }
        used
    }

    fn mark(&mut self, attr: &str) {
        match attr {
            "now" => self.now = true,
            "token_ttl" => self.token_ttl = true,
            _ => {}
        }
    }
}

fn is_context_var(v: &serde_json::Value) -> bool {
    v.get("Var").and_then(|n| n.as_str()) == Some("context")
}

fn walk(v: &serde_json::Value, used: &mut ContextUse) {
    match v {
        serde_json::Value::Object(map) => {
            // `context.attr` is {".": {left, attr}}; `context has attr` is
            // {"has": {left, attr}}. Both name exactly one attribute.
            for op in [".", "has"] {
                if let Some(inner) = map.get(op) {
                    if let (Some(left), Some(attr)) = (inner.get("left"), inner.get("attr").and_then(|a| a.as_str())) {
                        if is_context_var(left) {
                            used.mark(attr);
                            return;
                        }
                    }
                }
            }
            if is_context_var(v) {
                // `context` used whole: it may depend on anything.
                *used = ContextUse { now: true, token_ttl: true };
                return;
            }
            for child in map.values() {
                walk(child, used);
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|c| walk(c, used)),
        _ => {}
    }
}

/// Memoised decisions of one policy set.
pub struct DecisionCache {
    uses: ContextUse,
    cache: Cache<Box<[u8]>, Arc<AuthzDecision>, FastState>,
}

impl DecisionCache {
    pub fn new(set: &PolicySet, capacity: u64) -> DecisionCache {
        DecisionCache {
            uses: ContextUse::of(set),
            cache: Cache::builder().max_capacity(capacity.max(1)).build_with_hasher(FastState::default()),
        }
    }

    /// What this set's policies read of the volatile context.
    pub fn context_use(&self) -> ContextUse {
        self.uses
    }

    /// The exact key of `r` (what [`Self::write_key`] writes), for tests.
    #[cfg(test)]
    pub(crate) fn key(&self, r: &AuthzRequest<'_>) -> Box<[u8]> {
        let mut k = Vec::new();
        self.write_key(r, &mut k);
        k.into_boxed_slice()
    }

    /// Write the exact key of `r` into `k`, replacing what it held: every
    /// input, each length-prefixed so that no two different requests encode
    /// alike.
    fn write_key(&self, r: &AuthzRequest<'_>, k: &mut Vec<u8>) {
        let strings = [r.tenant, r.agent, r.method, &r.route.name, r.url, r.host, r.path, r.query];
        k.clear();
        k.reserve(strings.iter().map(|s| s.len() + 4).sum::<usize>() + 25);
        for s in strings {
            k.extend_from_slice(&(s.len() as u32).to_le_bytes());
            k.extend_from_slice(s.as_bytes());
        }
        k.push(u8::from(r.route.allow_writes) | u8::from(r.route.sensitive) << 1 | u8::from(r.cosigned) << 2);
        k.extend_from_slice(&(r.chain_length as u64).to_le_bytes());
        if self.uses.token_ttl {
            k.extend_from_slice(&r.token_ttl.to_le_bytes());
        }
        if self.uses.now {
            k.extend_from_slice(&r.now.to_le_bytes());
        }
    }

    /// The cached decision for `r`, or on a miss its key, to insert under.
    fn lookup(&self, r: &AuthzRequest<'_>) -> Result<Arc<AuthzDecision>, Box<[u8]>> {
        with_scratch(|key| {
            self.write_key(r, key);
            self.cache.get(key.as_slice()).ok_or_else(|| Box::from(key.as_slice()))
        })
    }

    /// The cached decision for `r`, or `evaluate()`'s, which is then cached.
    pub fn get_or_evaluate(&self, r: &AuthzRequest<'_>, evaluate: impl FnOnce() -> AuthzDecision) -> Arc<AuthzDecision> {
        let key = match self.lookup(r) {
            Ok(hit) => return hit,
            Err(key) => key,
        };
        let d = Arc::new(evaluate());
        self.cache.insert(key, d.clone());
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn uses(src: &str) -> ContextUse {
        ContextUse::of(&PolicySet::from_str(src).expect("parses"))
    }

    #[test]
    fn finds_the_volatile_attributes_a_set_reads() {
        assert_eq!(uses(r#"permit(principal, action, resource) when { context.tier == "read" };"#), ContextUse::default());
        assert_eq!(uses(r#"forbid(principal, action, resource) when { context.now > 5 };"#), ContextUse { now: true, token_ttl: false });
        assert_eq!(
            uses(r#"forbid(principal, action, resource) when { context has token_ttl && context["token_ttl"] > 30 };"#),
            ContextUse { now: false, token_ttl: true }
        );
        // Nested deep inside other expressions.
        assert_eq!(
            uses(r#"permit(principal, action, resource) when { if context.cosigned then [1, context.now].contains(2) else false };"#),
            ContextUse { now: true, token_ttl: false }
        );
        // `context` used whole reads everything.
        assert_eq!(
            uses(r#"permit(principal, action, resource) when { context == {"now": 1} };"#),
            ContextUse { now: true, token_ttl: true }
        );
        // Attributes of other variables with the same name do not count.
        assert_eq!(uses(r#"permit(principal, action, resource) when { resource has now };"#), ContextUse::default());
    }
}
