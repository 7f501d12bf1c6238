//! The admin listener (loopback by default, never the agent port).
//!
//! Open: `/healthz` (the process is up), `/readyz` (policies, vault, routes
//! loaded and the audit trail writable) and `/metrics` (Prometheus text).
//! Everything else needs an admin UCAN ([`crate::admin_auth`]):
//! - `GET /v1/audit/pubkey`: the did:key that signs audit roots;
//! - `GET /v1/revocations`, `POST /v1/revocations` (`{"cid"}` or `{"did"}`):
//!   a tenant admin sees and revokes only within its tenant;
//! - `POST /v1/policies/reload` (operators only);
//! - `GET /v1/approvals` (pending, in scope), `GET /v1/approvals/<id>` (also
//!   for the tenant's approvers), `POST /v1/approvals/<id>/grant|deny` with
//!   `{"cosigner": <UCAN>}` — the approver's cosigner is the credential.

use crate::admin_auth::AdminPrincipal;
use crate::state::GatewayState;
use crate::state_store::{Revocation, RevokedKind};
use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use std::sync::Arc;

pub struct AdminApp {
    pub state: Arc<GatewayState>,
}

pub fn respond(status: StatusCode, content_type: &str, body: Vec<u8>) -> Response<Vec<u8>> {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    let len = r.body().len();
    let h = r.headers_mut();
    if let Ok(v) = content_type.parse() {
        h.insert(http::header::CONTENT_TYPE, v);
    }
    h.insert(http::header::CONTENT_LENGTH, len.into());
    h.insert(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"));
    r
}

fn json(status: StatusCode, v: serde_json::Value) -> Response<Vec<u8>> {
    let mut body = serde_json::to_vec(&v).unwrap_or_default();
    body.push(b'\n');
    respond(status, "application/json", body)
}

fn refuse(r: &crate::refusal::Refusal) -> Response<Vec<u8>> {
    let status = StatusCode::from_u16(r.status).unwrap_or(StatusCode::FORBIDDEN);
    respond(status, "application/json", r.body(&crate::request_id::next()))
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// The most an admin request body may hold.
const MAX_ADMIN_BODY: usize = 16 * 1024;

async fn read_body(session: &mut ServerSession) -> Option<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        match session.read_request_body().await {
            Ok(Some(chunk)) => {
                body.extend_from_slice(&chunk);
                if body.len() > MAX_ADMIN_BODY {
                    return None;
                }
            }
            Ok(None) => return Some(body),
            Err(_) => return None,
        }
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct RevokeBody {
    #[serde(default)]
    cid: Option<String>,
    #[serde(default)]
    did: Option<String>,
    /// Operators may scope a revocation to one tenant (default: every tenant).
    #[serde(default)]
    tenant: Option<String>,
}

impl AdminApp {
    async fn revoke(&self, session: &mut ServerSession, who: &AdminPrincipal) -> Response<Vec<u8>> {
        let bad = |why: &str| refuse(&crate::refusal::Refusal::new(400, "bad_request", why.to_owned()));
        let Some(body) = read_body(session).await else {
            return bad("the body is unreadable or too large");
        };
        let Ok(req) = serde_json::from_slice::<RevokeBody>(&body) else {
            return bad("expected {\"cid\": CID} or {\"did\": DID}");
        };
        let (kind, value) = match (req.cid, req.did) {
            (Some(c), None) if capgate_filters::ucan::Cid::parse(&c).is_some() => (RevokedKind::Cid, c),
            (None, Some(d)) if capgate_filters::ucan::did::parse_did_key(&d).is_ok() => (RevokedKind::Did, d),
            _ => return bad("give exactly one of a valid cid or an Ed25519 did:key"),
        };
        let tenant = match (req.tenant, who.is_operator()) {
            (Some(t), true) => t,
            (None, true) => "*".to_owned(),
            (Some(t), false) if who.may_touch(&t) => t,
            (None, false) => who.scope.to_string(),
            (Some(_), false) => {
                return refuse(&crate::refusal::Refusal::new(403, "admin_forbidden", "a tenant admin may only revoke within its tenant"))
            }
        };
        let r = Revocation { kind, value, tenant, by: who.did.clone(), at: unix_now() };
        match self.state.store.add_revocation(r.clone()) {
            Ok(new) => {
                self.state.revocations.add(&r);
                tracing::warn!(kind = ?r.kind, tenant = %r.tenant, by = %r.by, "revocation added");
                json(if new { StatusCode::CREATED } else { StatusCode::OK }, serde_json::json!({"revoked": r, "new": new}))
            }
            Err(e) => {
                tracing::error!(error = %e, "revocation could not be persisted");
                refuse(&crate::refusal::Refusal::new(503, "state_unavailable", "the revocation could not be persisted"))
            }
        }
    }
}

impl AdminApp {
    /// `GET /v1/approvals/<id>` (an admin of its tenant, or one of its
    /// approvers), `POST /v1/approvals/<id>/grant|deny` (the cosigner UCAN in
    /// the body is the credential).
    async fn approval_endpoint(&self, session: &mut ServerSession, method: &str, rest: &str, auth: Option<&str>) -> Response<Vec<u8>> {
        let now = unix_now();
        let (id, action) = rest.split_once('/').map(|(a, b)| (a, Some(b))).unwrap_or((rest, None));
        let Some(approval) = self.state.approvals.get(id) else {
            return refuse(&crate::refusal::Refusal::new(404, "approval_not_found", "no such approval"));
        };
        match (method, action) {
            ("GET", None) => {
                let token = auth.and_then(|h| h.strip_prefix("Bearer ")).unwrap_or("");
                let as_approver = crate::approvals::ApprovalBook::approver_may_read(
                    &approval,
                    token,
                    &self.state.gateway_did,
                    &self.state.approvers,
                    now,
                );
                let as_admin = self.state.admin_auth.authenticate(auth, now).map(|w| w.may_touch(&approval.tenant)).unwrap_or(false);
                if as_approver || as_admin {
                    json(StatusCode::OK, serde_json::to_value(&approval).unwrap_or_default())
                } else {
                    refuse(&crate::refusal::Refusal::new(403, "admin_forbidden", "neither an admin nor an approver of this tenant"))
                }
            }
            ("POST", Some(verb @ ("grant" | "deny"))) => {
                #[derive(serde::Deserialize)]
                #[serde(deny_unknown_fields)]
                struct Body {
                    cosigner: String,
                }
                let Some(b) = read_body(session).await.and_then(|b| serde_json::from_slice::<Body>(&b).ok()) else {
                    return refuse(&crate::refusal::Refusal::new(400, "bad_request", "expected {\"cosigner\": <UCAN>}"));
                };
                let verb = if verb == "grant" { "approval/grant" } else { "approval/deny" };
                match self.state.approvals.decide(id, &b.cosigner, verb, &self.state.gateway_did, &self.state.approvers, now) {
                    Ok(a) => json(StatusCode::OK, serde_json::to_value(&a).unwrap_or_default()),
                    Err(r) => refuse(&r),
                }
            }
            _ => respond(
                StatusCode::NOT_FOUND,
                "application/json",
                br#"{"error":"not_found","reason":"no such admin endpoint","request_id":""}"#.to_vec(),
            ),
        }
    }
}

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_owned();
        let method = session.req_header().method.as_str().to_owned();
        match path.as_str() {
            "/healthz" => return respond(StatusCode::OK, "text/plain", b"ok\n".to_vec()),
            "/readyz" if !self.state.auditor.healthy() => {
                return respond(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "application/json",
                    br#"{"ready":false,"reason":"audit_unavailable"}"#.to_vec(),
                )
            }
            "/readyz" => {
                let body = format!(
                    "{{\"ready\":true,\"gateway_did\":\"{}\",\"policies\":{}}}\n",
                    self.state.gateway_did,
                    self.state.policies.load().len()
                );
                return respond(StatusCode::OK, "application/json", body.into_bytes());
            }
            "/metrics" => {
                self.state.metrics.audit_healthy.set(i64::from(self.state.auditor.healthy()));
                return respond(StatusCode::OK, "text/plain; version=0.0.4", self.state.metrics.render());
            }
            _ => {}
        }
        let auth = session.req_header().headers.get(http::header::AUTHORIZATION).and_then(|v| v.to_str().ok()).map(str::to_owned);
        if let Some(rest) = path.strip_prefix("/v1/approvals/") {
            return self.approval_endpoint(session, &method, rest, auth.as_deref()).await;
        }
        let who = match self.state.admin_auth.authenticate(auth.as_deref(), unix_now()) {
            Ok(p) => p,
            Err(r) => return refuse(&r),
        };
        match (method.as_str(), path.as_str()) {
            ("GET", "/v1/audit/pubkey") => {
                json(StatusCode::OK, serde_json::json!({"key": self.state.auditor.pubkey_did, "instance": self.state.auditor.instance}))
            }
            ("GET", "/v1/revocations") => match self.state.store.revocations() {
                Ok(list) => {
                    let visible: Vec<_> = list.into_iter().filter(|r| who.is_operator() || r.tenant == *who.scope).collect();
                    json(StatusCode::OK, serde_json::json!({ "revocations": visible }))
                }
                Err(_) => refuse(&crate::refusal::Refusal::new(503, "state_unavailable", "revocations could not be read")),
            },
            ("POST", "/v1/revocations") => self.revoke(session, &who).await,
            ("GET", "/v1/approvals") => {
                json(StatusCode::OK, serde_json::json!({ "approvals": self.state.approvals.pending(&who.scope, unix_now()) }))
            }
            ("POST", "/v1/policies/reload") if who.is_operator() => match self.state.reload_policies("admin api") {
                Ok(n) => json(StatusCode::OK, serde_json::json!({"reloaded": true, "policies": n})),
                Err(e) => json(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    serde_json::json!({"error": "policy_invalid", "reason": e, "request_id": crate::request_id::next()}),
                ),
            },
            ("POST", "/v1/policies/reload") => {
                refuse(&crate::refusal::Refusal::new(403, "admin_forbidden", "only operators may reload policies"))
            }
            _ => respond(
                StatusCode::NOT_FOUND,
                "application/json",
                br#"{"error":"not_found","reason":"no such admin endpoint","request_id":""}"#.to_vec(),
            ),
        }
    }
}
