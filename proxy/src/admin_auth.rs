//! Admin API authentication: every admin endpoint except `/healthz`,
//! `/readyz` and `/metrics` needs `Authorization: Bearer <admin UCAN>`.
//!
//! The token is a UCAN addressed to the gateway with capability
//! `{with: "capgate:admin", can: "*"}` (or `admin/*`), rooted at a configured
//! operator DID (scope: every tenant) or at a tenant root (scope: that
//! tenant only). It is verified by the same chain verifier as agent tokens,
//! with its own roots, so delegated admin chains work too.

use crate::refusal::Refusal;
use capgate_filters::ucan::{Ability, Resource, Verifier, VerifierConfig};
use std::collections::HashMap;
use std::sync::Arc;

/// Who is calling, and what they may touch.
#[derive(Debug, Clone)]
pub struct AdminPrincipal {
    pub did: String,
    /// `*` for an operator, else the tenant id.
    pub scope: Arc<str>,
}

impl AdminPrincipal {
    pub fn is_operator(&self) -> bool {
        &*self.scope == "*"
    }
    pub fn may_touch(&self, tenant: &str) -> bool {
        self.is_operator() || &*self.scope == tenant
    }
}

pub struct AdminAuth {
    verifier: Verifier,
}

pub const ADMIN_RESOURCE: &str = "capgate:admin";

impl AdminAuth {
    pub fn new(gateway_did: &str, operators: &[String], tenant_roots: &HashMap<String, Arc<str>>) -> Self {
        let mut roots: HashMap<String, Arc<str>> = tenant_roots.clone();
        for op in operators {
            roots.insert(op.clone(), Arc::from("*"));
        }
        AdminAuth {
            verifier: Verifier::new(VerifierConfig {
                gateway_did: gateway_did.to_owned(),
                roots,
                max_lifetime_secs: 300,
                clock_skew_secs: 5,
                replay_protection: false,
                cache_capacity: 1024,
            }),
        }
    }

    pub fn authenticate(&self, authorization: Option<&str>, now: u64) -> Result<AdminPrincipal, Refusal> {
        let unauth = |why: &str| Refusal::new(401, "admin_unauthenticated", why.to_owned());
        let token = authorization
            .and_then(|h| h.strip_prefix("Bearer ").or_else(|| h.strip_prefix("bearer ")))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| unauth("send an admin UCAN as Authorization: Bearer <token>"))?;
        let v = self.verifier.verify(token, None, now).map_err(|e| Refusal::new(401, "admin_unauthenticated", e.detail))?;
        let granted = v.chain.invocation.capabilities.iter().any(|c| {
            matches!(&c.resource, Resource::Other(r) if r == ADMIN_RESOURCE)
                && matches!(&c.ability, Ability::Top | Ability::Other(_))
                && match &c.ability {
                    Ability::Other(a) => a == "admin/*",
                    _ => true,
                }
        });
        if !granted {
            return Err(Refusal::new(403, "admin_forbidden", "the token does not grant capgate:admin"));
        }
        Ok(AdminPrincipal { did: v.chain.agent().to_owned(), scope: v.chain.tenant.clone() })
    }
}
