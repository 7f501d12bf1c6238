//! Admission: every check of the `request_filter` phase, in order, as one
//! synchronous function over the request head. It either admits the request
//! (with everything the later phases need) or returns the refusal.
//!
//! Order (DESIGN.md, "The request pipeline"):
//! 0. only upper-case GET, HEAD, OPTIONS, POST, PUT, PATCH, DELETE → else `405 method_not_allowed`
//!    (TRACE would reflect the injected credential; CONNECT tunnels);
//! 1. normalise the path → `400 bad_path`; match a route → `404 no_route`;
//! 2. take the bearer token → `401 token_missing` / `token_malformed`;
//! 3. verify the UCAN chain → `401 <reason>`; any revoked link (CID or issuer DID) → `401 revoked`;
//! 4. match the capability against method + upstream URL → `403 capability_mismatch`;
//! 5. replay → `401 replayed` / `401 nonce_missing`;
//! 6. Cedar → `403 policy_denied`, naming the policies; then the risk pass:
//!    a request a risk policy flags (and that a cosigner could release) is
//!    returned with [`StepUp`] for the gateway to bind to an approval;
//! 7. the vaulted credential for (tenant, route) → `502 credential_unavailable`.

use crate::refusal::Refusal;
use crate::routes::Route;
use crate::state::GatewayState;
use crate::vault::Secret;
use capgate_filters::authz::AuthzRequest;
use capgate_filters::normalize::normalize_path;
use capgate_filters::ucan::{Reason, VerifiedChain};
use std::sync::Arc;

/// The parts of a request head admission reads.
pub struct RequestView<'a> {
    pub method: &'a str,
    pub path: &'a str,
    pub query: Option<&'a str>,
    pub host: Option<&'a str>,
    pub authorization: Authorization<'a>,
    /// The `ucans` header values joined with commas (None when absent).
    pub ucans: Option<&'a str>,
    /// False when a `ucans` value was not visible ASCII.
    pub ucans_valid: bool,
    /// True when the request target was absolute-form or authority-form.
    pub absolute_form: bool,
    pub now: u64,
}

/// The request's `Authorization` headers, as far as admission reads them.
#[derive(Clone, Copy)]
pub enum Authorization<'a> {
    Missing,
    One(&'a [u8]),
    /// More than one: refused, whatever they hold.
    Several,
}

impl<'a> Authorization<'a> {
    /// From all of the request's `Authorization` values.
    pub fn of(mut values: impl Iterator<Item = &'a [u8]>) -> Self {
        match (values.next(), values.next()) {
            (None, _) => Authorization::Missing,
            (Some(one), None) => Authorization::One(one),
            (Some(_), Some(_)) => Authorization::Several,
        }
    }
}

/// What later phases need to forward an admitted request.
pub struct Admitted {
    pub chain: Arc<VerifiedChain>,
    /// Path and query to send upstream.
    pub upstream_target: String,
    pub credential: Arc<Secret>,
    /// The tenant's sanitizer from the same vault snapshot as `credential`.
    pub sanitizer: Arc<capgate_filters::sanitize::Sanitizer>,
    /// Set when the request is high-stakes and needs a cosigner before it may go.
    pub step_up: Option<StepUp>,
}

/// A high-stakes request: what the approver is shown and what binds the approval.
pub struct StepUp {
    /// The upstream URL with query (part of the digest).
    pub url: String,
    pub reasons: Vec<crate::approvals::RiskReason>,
    /// The authz policies that allow it once cosigned.
    pub policy_ids_if_cosigned: Arc<[String]>,
}

/// The outcome, with the route when one matched (for metrics and audit).
pub struct Decision {
    pub route: Option<Arc<Route>>,
    /// The normalised request path (no query), once it normalised.
    pub path: Option<String>,
    pub chain: Option<Arc<VerifiedChain>>,
    /// The authz policies that decided (also those of an admitted request);
    /// None before Cedar ran.
    pub policy_ids: Option<Arc<[String]>>,
    pub cache_hit: Option<bool>,
    pub result: Result<Admitted, Refusal>,
}

fn token_refusal(reason: Reason, detail: &'static str) -> Refusal {
    let status = match reason {
        Reason::CapabilityMismatch => 403,
        _ => 401,
    };
    Refusal::new(status, reason.code(), detail)
}

/// The bearer token from the `Authorization` values.
fn bearer(authorization: Authorization<'_>) -> Result<&str, Refusal> {
    let raw = match authorization {
        Authorization::Missing => {
            return Err(token_refusal(Reason::TokenMissing, "send the invocation UCAN as Authorization: Bearer <token>"))
        }
        Authorization::One(one) => one,
        Authorization::Several => return Err(token_refusal(Reason::TokenMalformed, "more than one Authorization header")),
    };
    let text = std::str::from_utf8(raw).map_err(|_| token_refusal(Reason::TokenMalformed, "the Authorization header is not ASCII"))?;
    let (scheme, token) = text.trim().split_once(' ').unwrap_or((text.trim(), ""));
    if !scheme.eq_ignore_ascii_case("bearer") {
        return Err(token_refusal(Reason::TokenMissing, "the Authorization header must use the Bearer scheme"));
    }
    let token = token.trim();
    if token.is_empty() {
        return Err(token_refusal(Reason::TokenMissing, "the Bearer token is empty"));
    }
    Ok(token)
}

/// Run admission.
pub fn admit(state: &GatewayState, req: &RequestView<'_>) -> Decision {
    let mut d = Decision {
        route: None,
        path: None,
        chain: None,
        policy_ids: None,
        cache_hit: None,
        result: Err(Refusal::new(500, "internal", "admission did not run")),
    };
    match normalized_path(req) {
        Ok(path) => {
            d.result = admit_inner(state, req, &path, &mut d);
            d.path = Some(path);
        }
        Err(refusal) => d.result = Err(refusal),
    }
    d
}

/// Steps 0 and 1's first half: the method, the request target's form, and
/// the normalised path.
fn normalized_path(req: &RequestView<'_>) -> Result<String, Refusal> {
    if !matches!(req.method, "GET" | "HEAD" | "OPTIONS" | "POST" | "PUT" | "PATCH" | "DELETE") {
        return Err(Refusal::new(405, "method_not_allowed", "only GET, HEAD, OPTIONS, POST, PUT, PATCH and DELETE are proxied"));
    }
    if req.absolute_form {
        return Err(Refusal::new(400, "bad_path", "the request target must be an origin-form path"));
    }
    normalize_path(req.path).map_err(|e| Refusal::new(400, "bad_path", e.explain()))
}

fn admit_inner(state: &GatewayState, req: &RequestView<'_>, path: &str, d: &mut Decision) -> Result<Admitted, Refusal> {
    if req.query.is_some_and(|q| q.bytes().any(|b| !(0x21..0x7f).contains(&b) || b == b'#')) {
        return Err(Refusal::new(400, "bad_path", "the query contains a byte that is not allowed"));
    }
    let route = state.routes.find(path, req.host).ok_or_else(|| Refusal::new(404, "no_route", "no route matches this path"))?.clone();
    d.route = Some(route.clone());

    let token = bearer(req.authorization)?;
    if !req.ucans_valid {
        return Err(token_refusal(Reason::TokenMalformed, "the ucans header is not ASCII"));
    }
    let verified = state.verifier.verify(token, req.ucans, req.now).map_err(|e| token_refusal(e.reason, e.detail))?;
    d.cache_hit = Some(verified.cache_hit);
    let chain = verified.chain;
    d.chain = Some(chain.clone());

    if state.revocations.is_revoked(&chain) {
        return Err(Refusal::new(401, "revoked", "a token or issuer of this chain has been revoked"));
    }

    let upstream_path = route.upstream_path(path);
    let up = &route.upstream;
    let granted = chain.invocation.capabilities.iter().any(|c| c.allows(req.method, up.scheme, &up.host, up.port, &upstream_path));
    if !granted {
        return Err(token_refusal(Reason::CapabilityMismatch, "the token does not grant this method on this URL"));
    }
    state.verifier.consume_nonce(&chain, req.now).map_err(|e| token_refusal(e.reason, e.detail))?;

    let url = route.url_for(&upstream_path);
    let engine = state.policies.load();
    let mut areq = AuthzRequest {
        tenant: &chain.tenant,
        agent: chain.agent(),
        method: req.method,
        route: &route.facts,
        url: &url,
        host: &up.host,
        path: &upstream_path,
        query: req.query.unwrap_or(""),
        cosigned: false,
        chain_length: chain.length,
        token_ttl: chain.invocation.expires.saturating_sub(req.now),
        now: req.now,
    };
    let decision = engine.authorize(&areq);
    d.policy_ids = Some(decision.policy_ids.clone());
    // Risk pass: only `cosigned` (set here, never from the request) can
    // release a high-stakes request.
    let risk_engine = state.risk.load();
    let risk = risk_engine.authorize(&areq);
    let risky = risk.allowed || risk.evaluation_error;
    let mut step_up = None;
    if risky {
        areq.cosigned = true;
        let if_cosigned = engine.authorize(&areq);
        if if_cosigned.allowed {
            let reasons = if risk.evaluation_error && risk.policy_ids.is_empty() {
                vec![crate::approvals::RiskReason {
                    id: "risk-evaluation-error".into(),
                    reason: "a risk policy could not be evaluated".into(),
                }]
            } else {
                risk.policy_ids
                    .iter()
                    .map(|id| crate::approvals::RiskReason { id: id.clone(), reason: risk_engine.reason_of(id).unwrap_or("").to_owned() })
                    .collect()
            };
            let mut full = url.clone();
            if let Some(q) = req.query {
                full.push('?');
                full.push_str(q);
            }
            step_up = Some(StepUp { url: full, reasons, policy_ids_if_cosigned: if_cosigned.policy_ids.clone() });
        }
    }
    if !decision.allowed && step_up.is_none() {
        let reason = if decision.evaluation_error {
            "a policy could not be evaluated; denying".to_owned()
        } else if decision.policy_ids.is_empty() {
            "no policy permits this request".to_owned()
        } else {
            format!("denied by policy {}", decision.policy_ids.join(", "))
        };
        return Err(Refusal::new(403, "policy_denied", reason));
    }

    let (credential, sanitizer) = state
        .credentials
        .load()
        .get(&chain.tenant, &route.credential)
        .ok_or_else(|| Refusal::new(502, "credential_unavailable", "no credential is configured for this tenant and route"))?;

    let mut upstream_target = upstream_path;
    if let Some(q) = req.query {
        upstream_target.push('?');
        upstream_target.push_str(q);
    }
    Ok(Admitted { chain, upstream_target, credential, sanitizer, step_up })
}
