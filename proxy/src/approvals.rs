//! Step-up approvals: a risky request waits for a human cosigner.
//!
//! - A request that the risk policies flag gets an approval request bound to
//!   its digest: SHA-256 over a domain tag and the length-prefixed tenant,
//!   agent DID, method, normalised upstream URL (with query) and the SHA-256
//!   of the body. An identical retry finds the same pending approval.
//! - An approver grants it with a cosigner UCAN: signed by one of the
//!   tenant's `approvers`, addressed to the gateway, with capability
//!   `{with: "capgate:approval/<id>", can: "approval/grant"}` (or
//!   `approval/deny`) and `fct: {"digest": "<request digest>"}`.
//! - The agent retries with `capgate-approval: <id>`; the approval is
//!   consumed (single-use) only if the digest of the retry matches and it
//!   has not expired. Approvals are kept in the state store and survive a
//!   restart.

use crate::refusal::Refusal;
use crate::state_store::StateStore;
use capgate_filters::ucan::{Ability, Cid, Resource};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Granted,
    Denied,
    Used,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RiskReason {
    pub id: String,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    pub id: String,
    pub tenant: String,
    pub agent: String,
    pub digest: String,
    /// `METHOD url`
    pub action: String,
    pub tier: String,
    pub reasons: Vec<RiskReason>,
    pub created: u64,
    pub expires_at: u64,
    pub status: Status,
    pub cosigner_cid: Option<String>,
    pub approver: Option<String>,
}

/// The request digest an approval is bound to.
pub fn request_digest(tenant: &str, agent: &str, method: &str, url: &str, body: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b"capgate-approval-v1\0");
    for part in [tenant.as_bytes(), agent.as_bytes(), method.as_bytes(), url.as_bytes()] {
        h.update((part.len() as u64).to_be_bytes());
        h.update(part);
    }
    h.update(Sha256::digest(body));
    crate::audit::record::hex(&h.finalize())
}

/// Approvals in memory, written through to the state store.
pub struct ApprovalBook {
    store: Arc<dyn StateStore>,
    live: Mutex<HashMap<String, Approval>>,
}

fn refusal(status: u16, code: &'static str, why: &str) -> Refusal {
    Refusal::new(status, code, why.to_owned())
}

impl ApprovalBook {
    pub fn load(store: Arc<dyn StateStore>) -> Result<Self, String> {
        let live = store.approvals()?.into_iter().map(|a| (a.id.clone(), a)).collect();
        Ok(ApprovalBook { store, live: Mutex::new(live) })
    }

    fn lock(&self) -> Result<std::sync::MutexGuard<'_, HashMap<String, Approval>>, Refusal> {
        self.live.lock().map_err(|_| refusal(503, "state_unavailable", "approval state is unavailable"))
    }

    fn persist(&self, a: &Approval, now: u64) -> Result<(), Refusal> {
        self.store.put_approval(a, now).map_err(|e| {
            tracing::error!(error = %e, "approval could not be persisted");
            refusal(503, "state_unavailable", "the approval could not be persisted")
        })
    }

    /// The pending approval for this digest, or a new one.
    #[allow(clippy::too_many_arguments)]
    pub fn request(
        &self,
        tenant: &str,
        agent: &str,
        digest: &str,
        action: String,
        tier: &str,
        reasons: Vec<RiskReason>,
        ttl: u64,
        now: u64,
    ) -> Result<Approval, Refusal> {
        let mut live = self.lock()?;
        if let Some(a) = live.values().find(|a| a.digest == digest && a.status == Status::Pending && a.expires_at > now) {
            return Ok(a.clone());
        }
        let mut raw = [0u8; 16];
        rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut raw);
        let a = Approval {
            id: crate::audit::record::hex(&raw),
            tenant: tenant.to_owned(),
            agent: agent.to_owned(),
            digest: digest.to_owned(),
            action,
            tier: tier.to_owned(),
            reasons,
            created: now,
            expires_at: now + ttl,
            status: Status::Pending,
            cosigner_cid: None,
            approver: None,
        };
        self.persist(&a, now)?;
        live.insert(a.id.clone(), a.clone());
        Ok(a)
    }

    pub fn get(&self, id: &str) -> Option<Approval> {
        self.live.lock().ok()?.get(id).cloned()
    }

    /// Pending approvals visible to `scope` (`*` = all tenants).
    pub fn pending(&self, scope: &str, now: u64) -> Vec<Approval> {
        let Ok(live) = self.live.lock() else {
            return Vec::new();
        };
        let mut v: Vec<Approval> = live
            .values()
            .filter(|a| a.status == Status::Pending && a.expires_at > now && (scope == "*" || a.tenant == scope))
            .cloned()
            .collect();
        v.sort_by_key(|a| a.created);
        v
    }

    /// Apply a cosigner UCAN that grants or denies approval `id`.
    pub fn decide(
        &self,
        id: &str,
        cosigner: &str,
        verb: &str,
        gateway_did: &str,
        approvers: &HashMap<String, Vec<String>>,
        now: u64,
    ) -> Result<Approval, Refusal> {
        let token = capgate_filters::ucan::token::parse_jwt(cosigner).map_err(|e| Refusal::new(401, "cosigner_invalid", e.detail))?;
        let mut live = self.lock()?;
        let a = live.get_mut(id).ok_or_else(|| refusal(404, "approval_not_found", "no such approval"))?;
        if a.status != Status::Pending || a.expires_at <= now {
            return Err(refusal(409, "approval_closed", "the approval is no longer pending"));
        }
        if !approvers.get(&a.tenant).is_some_and(|list| list.contains(&token.issuer)) {
            return Err(refusal(403, "cosigner_not_approver", "the cosigner is not an approver of this tenant"));
        }
        if token.audience != gateway_did {
            return Err(refusal(401, "cosigner_invalid", "the cosigner is not addressed to this gateway"));
        }
        if token.expires <= now || token.not_before.is_some_and(|n| n > now + 5) {
            return Err(refusal(401, "cosigner_invalid", "the cosigner is expired or not yet valid"));
        }
        let resource = format!("capgate:approval/{id}");
        let verb = token.capabilities.iter().find_map(|c| match (&c.resource, &c.ability) {
            (Resource::Other(r), Ability::Other(ab)) if *r == resource && ab == verb => Some(ab.clone()),
            _ => None,
        });
        let Some(verb) = verb else {
            return Err(refusal(403, "cosigner_invalid", "the cosigner does not name this approval"));
        };
        let digest_ok = token.facts.as_ref().is_some_and(|f| {
            let one = |v: &serde_json::Value| v.get("digest").and_then(|d| d.as_str()) == Some(a.digest.as_str());
            one(f) || f.as_array().is_some_and(|arr| arr.iter().any(one))
        });
        if !digest_ok {
            return Err(refusal(403, "cosigner_invalid", "the cosigner's facts do not carry this request's digest"));
        }
        a.status = if verb == "approval/grant" { Status::Granted } else { Status::Denied };
        a.cosigner_cid = Some(Cid::of(cosigner.as_bytes()).to_string());
        a.approver = Some(token.issuer.clone());
        let out = a.clone();
        self.persist(&out, now)?;
        tracing::warn!(approval = %id, approver = %token.issuer, status = ?out.status, "approval decided");
        Ok(out)
    }

    /// True when `token` is an approver's UCAN that may read approval `a`
    /// (`capgate:approval/<id>` with `approval/read`, `grant` or `deny`).
    pub fn approver_may_read(a: &Approval, token: &str, gateway_did: &str, approvers: &HashMap<String, Vec<String>>, now: u64) -> bool {
        let Ok(t) = capgate_filters::ucan::token::parse_jwt(token) else {
            return false;
        };
        let resource = format!("capgate:approval/{}", a.id);
        approvers.get(&a.tenant).is_some_and(|l| l.contains(&t.issuer))
            && t.audience == gateway_did
            && t.expires > now
            && t.capabilities.iter().any(|c| {
                matches!((&c.resource, &c.ability),
                (Resource::Other(r), Ability::Other(ab)) if *r == resource && ab.starts_with("approval/"))
            })
    }

    /// Use a granted approval for a retry with this digest (single use).
    pub fn consume(&self, id: &str, tenant: &str, digest: &str, now: u64) -> Result<Approval, &'static str> {
        let mut live = self.live.lock().map_err(|_| "approval state is unavailable")?;
        let a = live.get_mut(id).ok_or("no such approval")?;
        if a.tenant != tenant || a.digest != digest {
            return Err("the approval was granted for a different request");
        }
        if a.expires_at <= now {
            return Err("the approval has expired");
        }
        match a.status {
            Status::Granted => {}
            Status::Used => return Err("the approval was already used"),
            Status::Denied => return Err("the approval was denied"),
            Status::Pending => return Err("the approval is still pending"),
        }
        a.status = Status::Used;
        let out = a.clone();
        self.store.put_approval(&out, now).map_err(|_| "the approval could not be persisted")?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_bind_every_part() {
        let base = request_digest("t", "a", "DELETE", "https://x/repos/a", b"");
        assert_ne!(base, request_digest("t", "a", "DELETE", "https://x/repos/b", b""));
        assert_ne!(base, request_digest("t", "a", "DELETE", "https://x/repos/a", b"x"));
        assert_ne!(base, request_digest("t", "b", "DELETE", "https://x/repos/a", b""));
        assert_ne!(base, request_digest("u", "a", "DELETE", "https://x/repos/a", b""));
        assert_ne!(request_digest("ab", "c", "M", "u", b""), request_digest("a", "bc", "M", "u", b""));
    }
}
