//! The step-up phase of `request_filter`: a high-stakes request is bound to
//! an approval and goes upstream only with a granted, matching, unused one.
//!
//! 1. Buffer the body (up to `step_up.body_limit_bytes`, ≤ 64 KiB; pingora
//!    replays the buffer upstream) → `413 step_up_body_too_large` beyond.
//! 2. Digest tenant, agent, method, URL and body ([`crate::approvals`]).
//! 3. With `capgate-approval: <id>`: consume the approval → `cosigned`; a
//!    wrong, used, expired or denied one → `403 approval_invalid`.
//! 4. Without: open (or find) the approval; in hold mode wait for it up to
//!    `step_up.hold_secs`; else `403 step_up_required` with the approval id,
//!    action, tier, reasons and expiry.

use crate::admission::StepUp;
use crate::gateway::RequestCtx;
use crate::refusal::Refusal;
use crate::state::GatewayState;
use pingora::prelude::*;
use pingora::proxy::Session;
use std::time::Duration;

pub const APPROVAL_HEADER: &str = "capgate-approval";

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// `Ok(None)`: released (cosigned). `Ok(Some(r))`: refuse with `r`.
pub async fn release(state: &GatewayState, session: &mut Session, ctx: &mut RequestCtx, step: &StepUp) -> Result<Option<Refusal>> {
    let Some(chain) = ctx.chain.clone() else {
        return Ok(Some(Refusal::new(500, "internal", "step-up without a verified chain")));
    };
    // 1. The body, buffered for the digest and replayed upstream by pingora.
    let limit = state.step_up.body_limit_bytes;
    let mut body = Vec::new();
    if !session.as_mut().is_body_empty() {
        session.as_mut().enable_retry_buffering();
        while let Some(chunk) = session.read_request_body().await? {
            body.extend_from_slice(&chunk);
            if body.len() > limit {
                return Ok(Some(Refusal::new(
                    413,
                    "step_up_body_too_large",
                    format!("a request that needs approval may carry at most {limit} body bytes"),
                )));
            }
        }
    }
    let method = session.req_header().method.as_str().to_owned();
    let digest = crate::approvals::request_digest(&chain.tenant, chain.agent(), &method, &step.url, &body);
    let now = unix_now();
    // 3. A retry that names its approval.
    let named = session.req_header().headers.get(APPROVAL_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned);
    if let Some(id) = named {
        return match state.approvals.consume(&id, &chain.tenant, &digest, now) {
            Ok(a) => {
                ctx.cosigner = a.cosigner_cid.zip(a.approver);
                ctx.policy_ids = Some(step.policy_ids_if_cosigned.clone());
                Ok(None)
            }
            Err(why) => Ok(Some(Refusal::new(403, "approval_invalid", why))),
        };
    }
    // 4. Open (or find) the approval.
    let tier = "danger";
    let approval = match state.approvals.request(
        &chain.tenant,
        chain.agent(),
        &digest,
        format!("{method} {}", step.url),
        tier,
        step.reasons.clone(),
        state.step_up.approval_ttl_secs,
        now,
    ) {
        Ok(a) => a,
        Err(r) => return Ok(Some(r)),
    };
    if state.step_up.hold_secs > 0 {
        let deadline = std::time::Instant::now() + Duration::from_secs(state.step_up.hold_secs);
        while std::time::Instant::now() < deadline {
            match state.approvals.get(&approval.id).map(|a| a.status) {
                Some(crate::approvals::Status::Granted) => {
                    return match state.approvals.consume(&approval.id, &chain.tenant, &digest, unix_now()) {
                        Ok(a) => {
                            ctx.cosigner = a.cosigner_cid.zip(a.approver);
                            ctx.policy_ids = Some(step.policy_ids_if_cosigned.clone());
                            Ok(None)
                        }
                        Err(why) => Ok(Some(Refusal::new(403, "approval_invalid", why))),
                    };
                }
                Some(crate::approvals::Status::Denied) => {
                    return Ok(Some(Refusal::new(403, "step_up_denied", "an approver denied this request")));
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
    let mut r =
        Refusal::new(403, "step_up_required", "this request needs a cosigner; retry with the capgate-approval header once approved");
    let mut extra = serde_json::Map::new();
    extra.insert("approval_id".into(), approval.id.clone().into());
    extra.insert("action".into(), approval.action.clone().into());
    extra.insert("tier".into(), tier.into());
    extra.insert("reasons".into(), serde_json::to_value(&approval.reasons).unwrap_or_default());
    extra.insert("expires_at".into(), crate::audit::record::rfc3339(approval.expires_at, 0).into());
    r.extra = Some(Box::new(extra));
    Ok(Some(r))
}
