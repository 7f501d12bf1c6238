//! Building the upstream request head from the agent's.
//!
//! Removed: hop-by-hop headers (RFC 9110 §7.6.1, plus any named in
//! `Connection`), everything that carries the agent's credentials
//! (`Authorization`, `Proxy-*`, `Cookie`, `ucans`, capgate's own `capgate-*`
//! headers), headers that frameworks read as another method, URL or host
//! (`X-HTTP-Method-Override`, `X-Original-URL`, `X-Forwarded-Host`,
//! `Forwarded`, …) and the route's `strip_headers`. A `Connection` listing
//! never removes framing headers (`Content-Length`, `Transfer-Encoding`). Then set: the route's credential
//! header from the vault, `Host`, the normalised path and query, and the
//! request id.

use crate::routes::Route;
use crate::vault::Secret;
use http::header::{self, HeaderName, HeaderValue};
use pingora::prelude::*;
use pingora::ErrorType;

const HOP_BY_HOP: [HeaderName; 7] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    header::PROXY_AUTHORIZATION,
    header::PROXY_AUTHENTICATE,
    header::TE,
    header::TRAILER,
    header::UPGRADE,
];

const CREDENTIAL_BEARING: [HeaderName; 4] =
    [header::AUTHORIZATION, header::COOKIE, HeaderName::from_static("ucans"), HeaderName::from_static("proxy-connection")];

/// Headers some upstream frameworks read as a different method, URL or host
/// than the one capgate authorised. They never reach the upstream.
const OVERRIDES: [HeaderName; 9] = [
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-http-method"),
    HeaderName::from_static("x-method-override"),
    HeaderName::from_static("x-original-url"),
    HeaderName::from_static("x-rewrite-url"),
    HeaderName::from_static("x-forwarded-host"),
    HeaderName::from_static("x-forwarded-prefix"),
    HeaderName::from_static("x-forwarded-proto"),
    header::FORWARDED,
];

/// Headers that a `Connection` listing may not remove: dropping them would
/// change how the body is framed or what it means.
fn protected(name: &HeaderName) -> bool {
    matches!(name.as_str(), "content-length" | "transfer-encoding" | "content-type" | "content-encoding" | "host")
}

pub fn rewrite(req: &mut RequestHeader, route: &Route, credential: &Secret, target: &str, request_id: &str) -> Result<()> {
    // Names listed in Connection are hop-by-hop too.
    let mut doomed: Vec<HeaderName> = Vec::new();
    for v in req.headers.get_all(header::CONNECTION) {
        if let Ok(s) = v.to_str() {
            doomed.extend(s.split(',').filter_map(|n| HeaderName::from_bytes(n.trim().as_bytes()).ok()).filter(|n| !protected(n)));
        }
    }
    for name in req.headers.keys() {
        let n = name.as_str();
        if n.starts_with("proxy-") || n.starts_with("capgate-") {
            doomed.push(name.clone());
        }
    }
    doomed.extend(HOP_BY_HOP.iter().cloned());
    doomed.extend(CREDENTIAL_BEARING.iter().cloned());
    doomed.extend(OVERRIDES.iter().cloned());
    doomed.extend(route.strip_headers.iter().cloned());
    doomed.push(route.inject_header.clone());
    doomed.push(header::HOST);
    for name in &doomed {
        req.remove_header(name);
    }

    let secret = credential.expose();
    let mut value = Vec::with_capacity(route.inject_prefix.len() + secret.len() + route.inject_suffix.len());
    value.extend_from_slice(route.inject_prefix.as_bytes());
    value.extend_from_slice(secret.as_bytes());
    value.extend_from_slice(route.inject_suffix.as_bytes());
    let mut hv = HeaderValue::from_bytes(&value)
        .map_err(|_| Error::explain(ErrorType::InternalError, "the credential is not a valid header value"))?;
    zeroize::Zeroize::zeroize(&mut value);
    hv.set_sensitive(true);
    req.insert_header(route.inject_header.clone(), hv)?;
    req.insert_header(header::HOST, route.authority.as_str())?;
    req.insert_header(HeaderName::from_static(crate::gateway::REQUEST_ID_HEADER), request_id)?;
    let uri: http::Uri = target.parse().map_err(|_| Error::explain(ErrorType::InternalError, "the upstream target is not a valid URI"))?;
    req.set_uri(uri);
    Ok(())
}
