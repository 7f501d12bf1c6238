//! The admin listener (loopback by default, never the agent port):
//! `/healthz` (the process is up), `/readyz` (policies, vault and routes are
//! loaded, so requests can be decided), `/metrics` (Prometheus text) and
//! `/v1/audit/pubkey` (the did:key that signs audit roots).

use crate::state::GatewayState;
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

#[async_trait]
impl ServeHttp for AdminApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let path = session.req_header().uri.path().to_owned();
        match path.as_str() {
            "/healthz" => respond(StatusCode::OK, "text/plain", b"ok\n".to_vec()),
            "/readyz" if !self.state.auditor.healthy() => respond(
                StatusCode::SERVICE_UNAVAILABLE,
                "application/json",
                br#"{"ready":false,"reason":"audit_unavailable"}"#.to_vec(),
            ),
            "/readyz" => {
                let body = format!(
                    "{{\"ready\":true,\"gateway_did\":\"{}\",\"policies\":{}}}\n",
                    self.state.gateway_did,
                    self.state.policies.load().len()
                );
                respond(StatusCode::OK, "application/json", body.into_bytes())
            }
            "/metrics" => {
                self.state.metrics.audit_healthy.set(i64::from(self.state.auditor.healthy()));
                respond(StatusCode::OK, "text/plain; version=0.0.4", self.state.metrics.render())
            }
            "/v1/audit/pubkey" => {
                let body = format!("{{\"key\":\"{}\",\"instance\":\"{}\"}}\n", self.state.auditor.pubkey_did, self.state.auditor.instance);
                respond(StatusCode::OK, "application/json", body.into_bytes())
            }
            _ => respond(
                StatusCode::NOT_FOUND,
                "application/json",
                br#"{"error":"not_found","reason":"no such admin endpoint","request_id":""}"#.to_vec(),
            ),
        }
    }
}
