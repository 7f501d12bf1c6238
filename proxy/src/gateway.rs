//! The pingora pipeline: capgate's [`ProxyHttp`] implementation.
//!
//! Each phase does one thing and delegates the logic to a module that owns it:
//!
//! | phase | what capgate does here |
//! |---|---|
//! | `request_filter` | Refuse with `503 audit_unavailable` while the audit chain cannot persist; then [`crate::admission`]: route, token, chain, revocation, capability, replay, Cedar (authz and risk), credential; then [`crate::step_up`] for high-stakes requests, then [`crate::budgets`] (`429 budget_exhausted`). A refusal is written here as JSON and the request ends. |
//! | `upstream_peer` | The route's upstream (never the request's host): TLS with SNI for `https`, resolved addresses cached for 30 s. |
//! | `upstream_request_filter` | [`crate::upstream_headers`]: strip hop-by-hop and credential-bearing headers, inject the vaulted credential, set `Host`, the path and the request id. |
//! | `response_filter` | [`crate::response_sanitize::plan`]: scrub header values, decide how the body is handled (sanitize, pass, refuse), drop `Content-Encoding`/`Content-Length` when the body may change; open [`crate::response_framing`] for a sanitized body. |
//! | `response_body_filter` | [`crate::response_sanitize::filter_chunk`]: decode and sanitize each chunk as it streams, and tell [`crate::response_framing`] how much it produced; a body that comes in several parts clears the cork. |
//! | downstream module (just before the head is written) | [`crate::response_framing`]: `Content-Length` when the whole body is already sanitized, otherwise chunked, corked ([`crate::response_cork`]) when the head leaves alone. |
//! | `fail_to_proxy` | Errors after admission (upstream unreachable, bad request) become JSON refusals too. |
//! | `logging` | Clear the cork (the response is written), then one audit event ([`crate::audit`]), metrics and one structured log line for every request, whatever its outcome. |

use crate::admission::{self, Authorization, RequestView};
use crate::refusal::Refusal;
use crate::response_cork::CorkCandidate;
use crate::response_framing::{ReplyFraming, ReplyFramingBuilder};
use crate::response_sanitize::UNSANITIZABLE_BODY;
use crate::routes::Route;
use crate::state::GatewayState;
use crate::vault::Secret;
use async_trait::async_trait;
use bytes::Bytes;
use capgate_filters::ucan::VerifiedChain;
use pingora::http::ResponseHeader;
use pingora::modules::http::HttpModules;
use pingora::prelude::*;
use pingora::proxy::{FailToProxy, ProxyHttp, Session};
use pingora::{ErrorSource, ErrorType};
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

pub const REQUEST_ID_HEADER: &str = "x-request-id";

/// Per-request state shared across phases.
pub struct RequestCtx {
    pub request_id: String,
    pub started: Instant,
    pub route: Option<Arc<Route>>,
    /// The normalised request path, once known (for the audit record).
    pub path: Option<String>,
    pub chain: Option<Arc<VerifiedChain>>,
    pub upstream_target: String,
    pub credential: Option<Arc<Secret>>,
    /// The tenant's sanitizer, from the same vault snapshot as `credential`.
    pub sanitizer: Option<Arc<capgate_filters::sanitize::Sanitizer>>,
    /// The authz policies that decided; None before Cedar ran.
    pub policy_ids: Option<Arc<[String]>>,
    /// Set when capgate refused or failed the request: (status, code).
    pub refused: Option<(u16, &'static str)>,
    /// (cosigner CID, approver DID) when an approval released the request.
    pub cosigner: Option<(String, String)>,
    /// How the response body is handled.
    pub body: crate::response_sanitize::BodyHandling,
    /// Redactions in headers (body counts are read from the stream at the end).
    pub header_counts: capgate_filters::sanitize::SanitizeCounts,
}

/// The gateway service.
pub struct Gateway {
    pub state: Arc<GatewayState>,
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Clear the cork of the session's reply, if one is set.
fn release_cork(session: &mut Session) {
    if let Some(cork) = ReplyFraming::of(session).and_then(ReplyFraming::take_cork) {
        cork.release(session);
    }
}

/// Write a refusal as the whole response.
async fn write_refusal(session: &mut Session, ctx: &mut RequestCtx, refusal: &Refusal) -> Result<()> {
    ctx.refused = Some((refusal.status, refusal.code));
    if let Some(framing) = ReplyFraming::of(session) {
        framing.close();
    }
    let body = Bytes::from(refusal.body(&ctx.request_id));
    let mut resp = ResponseHeader::build(refusal.status, Some(4))?;
    resp.insert_header(http::header::CONTENT_TYPE, http::HeaderValue::from_static("application/json"))?;
    resp.insert_header(http::header::CONTENT_LENGTH, body.len().to_string())?;
    resp.insert_header(http::header::CACHE_CONTROL, http::HeaderValue::from_static("no-store"))?;
    resp.insert_header(REQUEST_ID_HEADER, ctx.request_id.as_str())?;
    if let Some(secs) = refusal.retry_after {
        resp.insert_header(http::header::RETRY_AFTER, secs.to_string())?;
    }
    session.set_keepalive(None);
    // A HEAD reply has no body. pingora drops it on HTTP/1.x, but on HTTP/2
    // DATA after a HEAD reply is a protocol error that resets the stream.
    if session.req_header().method == http::Method::HEAD {
        return session.write_response_header(Box::new(resp), true).await;
    }
    session.write_response_header(Box::new(resp), false).await?;
    session.write_response_body(Some(body), true).await?;
    Ok(())
}

#[async_trait]
impl ProxyHttp for Gateway {
    type CTX = RequestCtx;

    /// The one downstream module: [`ReplyFraming`]. (This replaces pingora's
    /// default, a response-compression module that is disabled.)
    fn init_downstream_modules(&self, modules: &mut HttpModules) {
        modules.add_module(Box::new(ReplyFramingBuilder));
    }

    fn new_ctx(&self) -> RequestCtx {
        RequestCtx {
            request_id: crate::request_id::next(),
            started: Instant::now(),
            route: None,
            path: None,
            chain: None,
            upstream_target: String::new(),
            credential: None,
            sanitizer: None,
            policy_ids: None,
            refused: None,
            cosigner: None,
            body: crate::response_sanitize::BodyHandling::None,
            header_counts: Default::default(),
        }
    }

    /// Admission. Returns `Ok(true)` when a refusal has been written.
    async fn request_filter(&self, session: &mut Session, ctx: &mut RequestCtx) -> Result<bool> {
        if !self.state.auditor.healthy() {
            self.state.metrics.audit_healthy.set(0);
            let r = Refusal::new(503, "audit_unavailable", "the audit trail cannot be written; requests are refused until it can");
            write_refusal(session, ctx, &r).await?;
            return Ok(true);
        }
        let decision = {
            let req = session.req_header();
            // Several `ucans` fields are one comma-separated list (RFC 9110 §5.3).
            let mut ucans_values = req.headers.get_all("ucans").iter();
            let joined;
            let mut ucans_valid = true;
            let ucans: Option<&str> = match (ucans_values.next(), ucans_values.next()) {
                (None, _) => None,
                (Some(one), None) => one.to_str().map_err(|_| ucans_valid = false).ok(),
                (Some(_), Some(_)) => {
                    let parts: Result<Vec<&str>, _> = req.headers.get_all("ucans").iter().map(|v| v.to_str()).collect();
                    ucans_valid = parts.is_ok();
                    joined = parts.map(|p| p.join(",")).unwrap_or_default();
                    Some(joined.as_str())
                }
            };
            let host = req.headers.get(http::header::HOST).and_then(|h| h.to_str().ok()).or(req.uri.host());
            let view = RequestView {
                method: req.method.as_str(),
                path: req.uri.path(),
                query: req.uri.query(),
                host,
                authorization: Authorization::of(req.headers.get_all(http::header::AUTHORIZATION).iter().map(|v| v.as_bytes())),
                ucans,
                ucans_valid,
                absolute_form: !session.is_http2() && (req.uri.authority().is_some() || req.raw_path().first() != Some(&b'/')),
                now: unix_now(),
            };
            admission::admit(&self.state, &view)
        };
        if let Some(hit) = decision.cache_hit {
            self.state.metrics.ucan_cache.with_label_values(&[if hit { "hit" } else { "miss" }]).inc();
        }
        ctx.route = decision.route;
        ctx.path = decision.path;
        ctx.chain = decision.chain;
        ctx.policy_ids = decision.policy_ids;
        match decision.result {
            Ok(admitted) => {
                ctx.upstream_target = admitted.upstream_target;
                ctx.credential = Some(admitted.credential);
                ctx.sanitizer = Some(admitted.sanitizer);
                if let Some(step) = &admitted.step_up {
                    if let Some(refusal) = crate::step_up::release(&self.state, session, ctx, step).await? {
                        write_refusal(session, ctx, &refusal).await?;
                        return Ok(true);
                    }
                }
                // Budgets count calls that are about to go upstream.
                let (route, chain) = (ctx.route.clone(), ctx.chain.clone());
                if let (Some(route), Some(chain)) = (route, chain) {
                    let method = session.req_header().method.as_str();
                    if let Err(refusal) = self.state.budgets.check(&route.name, method, &chain, unix_now()) {
                        write_refusal(session, ctx, &refusal).await?;
                        return Ok(true);
                    }
                }
                Ok(false)
            }
            Err(refusal) => {
                write_refusal(session, ctx, &refusal).await?;
                Ok(true)
            }
        }
    }

    /// The route's upstream. The request never chooses the host.
    async fn upstream_peer(&self, _session: &mut Session, ctx: &mut RequestCtx) -> Result<Box<HttpPeer>> {
        let route = ctx.route.as_ref().ok_or_else(|| Error::explain(ErrorType::InternalError, "no route in context"))?;
        let up = &route.upstream;
        let addr = crate::resolve::upstream_addr(&self.state.dns, &up.host, up.port).await?;
        let tls = up.scheme == capgate_filters::ucan::Scheme::Https;
        // SNI is a TLS field: a plain-HTTP peer has none to copy.
        let sni = if tls { up.host.trim_start_matches('[').trim_end_matches(']').to_owned() } else { String::new() };
        let mut peer = HttpPeer::new(addr, tls, sni);
        peer.options.connection_timeout = Some(self.state.connect_timeout);
        peer.options.total_connection_timeout = Some(self.state.connect_timeout);
        peer.options.read_timeout = Some(self.state.read_timeout);
        peer.options.idle_timeout = Some(std::time::Duration::from_secs(60));
        Ok(Box::new(peer))
    }

    /// Rewrite the request for the upstream: strip, inject, target, Host, id.
    async fn upstream_request_filter(
        &self,
        _session: &mut Session,
        upstream_request: &mut RequestHeader,
        ctx: &mut RequestCtx,
    ) -> Result<()> {
        let (route, credential) = match (&ctx.route, &ctx.credential) {
            (Some(r), Some(c)) => (r, c),
            _ => return Err(Error::explain(ErrorType::InternalError, "request reached the upstream phase unadmitted")),
        };
        crate::upstream_headers::rewrite(upstream_request, route, credential, &ctx.upstream_target, &ctx.request_id)?;
        crate::response_sanitize::limit_accept_encoding(upstream_request)
    }

    /// Scrub headers and decide how the body is handled.
    async fn response_filter(&self, session: &mut Session, resp: &mut ResponseHeader, ctx: &mut RequestCtx) -> Result<()> {
        let sanitizer = ctx
            .sanitizer
            .clone()
            .ok_or_else(|| Error::explain(ErrorType::InternalError, "response for a request that was not admitted"))?;
        ctx.header_counts = crate::response_sanitize::scrub_headers(resp, &sanitizer)?;
        let method = session.req_header().method.as_str();
        let chunked_ok = !session.is_http2() && session.req_header().version == http::Version::HTTP_11;
        let known_length = resp.headers.contains_key(http::header::CONTENT_LENGTH);
        let (handling, refused) =
            crate::response_sanitize::plan(resp, method, chunked_ok, &sanitizer, self.state.binary_policy, &ctx.request_id)?;
        if let Some(code) = refused {
            ctx.refused = Some((502, code));
        }
        if matches!(handling, crate::response_sanitize::BodyHandling::Sanitize { .. }) {
            let cork = if chunked_ok && known_length { CorkCandidate::of(session) } else { None };
            if let Some(framing) = ReplyFraming::of(session) {
                framing.open(cork);
            }
        }
        ctx.body = handling;
        resp.insert_header(REQUEST_ID_HEADER, ctx.request_id.as_str())?;
        Ok(())
    }

    /// Decode and sanitize the body as it streams.
    fn response_body_filter(
        &self,
        session: &mut Session,
        body: &mut Option<Bytes>,
        end_of_stream: bool,
        ctx: &mut RequestCtx,
    ) -> Result<Option<std::time::Duration>> {
        if !end_of_stream {
            release_cork(session);
        }
        if let Err(e) = crate::response_sanitize::filter_chunk(&mut ctx.body, body, end_of_stream) {
            ctx.refused = Some((502, UNSANITIZABLE_BODY));
            *body = None;
            return Err(e);
        }
        if let Some(framing) = ReplyFraming::of(session) {
            framing.sanitized(body.as_ref().map_or(0, |b| b.len()), end_of_stream);
        }
        Ok(None)
    }

    /// Errors after admission become JSON refusals.
    async fn fail_to_proxy(&self, session: &mut Session, e: &Error, ctx: &mut RequestCtx) -> FailToProxy {
        let refusal = match e.etype() {
            ErrorType::HTTPStatus(code) if (400..500).contains(code) => Refusal::new(*code, "bad_request", "the request could not be read"),
            ErrorType::Custom(UNSANITIZABLE_BODY) => {
                Refusal::new(502, UNSANITIZABLE_BODY, "the upstream body could not be decoded, so it was not forwarded")
            }
            _ => match e.esource() {
                ErrorSource::Upstream => Refusal::new(502, "upstream_unavailable", "the upstream could not be reached or failed"),
                ErrorSource::Downstream => match e.etype() {
                    // H2Error: the agent reset its HTTP/2 stream.
                    ErrorType::WriteError | ErrorType::ReadError | ErrorType::ConnectionClosed | ErrorType::H2Error => {
                        ctx.refused = Some((499, "client_closed"));
                        return FailToProxy { error_code: 0, can_reuse_downstream: false };
                    }
                    _ => Refusal::new(400, "bad_request", "the request could not be read"),
                },
                _ => Refusal::new(500, "internal", "the gateway failed to handle the request"),
            },
        };
        // Once the head is out, a refusal can no longer be sent: end the
        // reply as broken (HTTP/1.1: the connection closes without the last
        // chunk; HTTP/2: the stream is reset), never as a complete one.
        if session.response_written().is_some() {
            ctx.refused.get_or_insert((refusal.status, refusal.code));
            return FailToProxy { error_code: 0, can_reuse_downstream: false };
        }
        let code = refusal.status;
        if write_refusal(session, ctx, &refusal).await.is_err() {
            return FailToProxy { error_code: 0, can_reuse_downstream: false };
        }
        FailToProxy { error_code: code, can_reuse_downstream: false }
    }

    /// Never put the raw path, query or headers in pingora's error log.
    fn request_summary(&self, session: &Session, ctx: &RequestCtx) -> String {
        let route = ctx.route.as_ref().map(|r| r.name.as_str()).unwrap_or("-");
        format!("{} route={} request_id={}", session.req_header().method, route, ctx.request_id)
    }

    /// Metrics and the access log line, for every request.
    async fn logging(&self, session: &mut Session, _e: Option<&Error>, ctx: &mut RequestCtx) {
        release_cork(session);
        let status = session.response_written().map(|r| r.status.as_u16()).unwrap_or(0);
        let (decision, reason) = match ctx.refused {
            Some((
                _,
                code @ ("upstream_unavailable" | "internal" | "client_closed" | "bad_request" | UNSANITIZABLE_BODY | "audit_unavailable"),
            )) => ("error", code),
            Some((_, "step_up_required")) => ("step_up", "step_up_required"),
            Some((_, code)) => ("deny", code),
            None => ("allow", "ok"),
        };
        let route = ctx.route.as_ref().map(|r| r.name.as_str()).unwrap_or("none");
        let method = crate::metrics::method_label(session.req_header().method.as_str());
        let m = &self.state.metrics;
        m.requests.with_label_values(&[route, method, decision, reason]).inc();
        let elapsed = ctx.started.elapsed();
        m.duration.with_label_values(&[route, decision]).observe(elapsed.as_secs_f64());
        let mut counts = std::mem::take(&mut ctx.header_counts);
        if let crate::response_sanitize::BodyHandling::Sanitize { stream, .. } = &ctx.body {
            crate::response_sanitize::merge(&mut counts, &stream.counts());
        }
        if let Some(h) = crate::response_sanitize::handling_label(&ctx.body, ctx.refused.map(|r| r.1)) {
            m.bodies.with_label_values(&[h]).inc();
        }
        for (kind, n) in &counts.by_kind {
            m.redactions.with_label_values(&[kind]).inc_by(*n);
        }
        if counts.vault_echoes > 0 {
            m.redactions.with_label_values(&["vault_credential"]).inc_by(counts.vault_echoes);
        }
        m.redactions_verified.inc_by(counts.verified);
        m.invisible_removed.inc_by(counts.invisible_removed);
        let redactions: String = counts
            .by_kind
            .iter()
            .map(|(k, n)| format!("{k}={n}"))
            .chain((counts.vault_echoes > 0).then(|| format!("vault_credential={}", counts.vault_echoes)))
            .collect::<Vec<_>>()
            .join(",");
        let chain = ctx.chain.as_ref();
        let token_cid = chain.map(|c| c.invocation.cid.text());
        use std::borrow::Cow::Borrowed;
        let mut audited_redactions: Vec<(std::borrow::Cow<'_, str>, u64)> =
            counts.by_kind.iter().map(|(k, n)| (Borrowed(*k), *n)).collect();
        if counts.vault_echoes > 0 {
            audited_redactions.push((Borrowed("vault_credential"), counts.vault_echoes));
        }
        self.state.auditor.record(&crate::audit::record::RequestEvent {
            event: Borrowed("request"),
            tenant: Borrowed(chain.map(|c| &*c.tenant).unwrap_or(crate::audit::UNAUTHENTICATED)),
            request_id: Borrowed(&ctx.request_id),
            agent: chain.map(|c| Borrowed(c.agent())),
            token_cid: token_cid.as_deref().map(Borrowed),
            cosigner_cid: ctx.cosigner.as_ref().map(|c| Borrowed(c.0.as_str())),
            approver: ctx.cosigner.as_ref().map(|c| Borrowed(c.1.as_str())),
            route: ctx.route.as_ref().map(|r| Borrowed(r.name.as_str())),
            method: Borrowed(method),
            path: ctx.path.as_deref().map(Borrowed),
            decision: Borrowed(decision),
            reason: Borrowed(reason),
            policy_ids: Borrowed(ctx.policy_ids.as_deref().unwrap_or_default()),
            upstream_status: if ctx.refused.is_none() && status > 0 { Some(status) } else { None },
            bytes_in: session.as_downstream().body_bytes_read() as u64,
            bytes_out: session.as_downstream().body_bytes_sent() as u64,
            redactions: audited_redactions,
            duration_us: elapsed.as_micros() as u64,
            torn_bytes: None,
            torn_file: None,
        });
        tracing::info!(
            request_id = %ctx.request_id,
            route,
            method,
            status,
            decision,
            reason,
            tenant = ctx.chain.as_ref().map(|c| &*c.tenant).unwrap_or("-"),
            agent = ctx.chain.as_ref().map(|c| c.agent()).unwrap_or("-"),
            token_cid = token_cid.as_deref().unwrap_or(""),
            policies = %ctx.policy_ids.as_deref().unwrap_or_default().join(","),
            redactions = %redactions,
            cosigner_cid = ctx.cosigner.as_ref().map(|c| c.0.as_str()).unwrap_or("-"),
            approver = ctx.cosigner.as_ref().map(|c| c.1.as_str()).unwrap_or("-"),
            invisible_removed = counts.invisible_removed,
            body = crate::response_sanitize::handling_label(&ctx.body, ctx.refused.map(|r| r.1)).unwrap_or("-"),
            duration_us = elapsed.as_micros() as u64,
            "request"
        );
    }
}
