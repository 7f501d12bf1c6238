//! Building the upstream request head from the agent's.
//!
//! Removed: hop-by-hop headers (RFC 9110 §7.6.1, plus any named in
//! `Connection`), everything that carries the agent's credentials
//! (`Authorization`, `Proxy-*`, `Cookie`, `ucans`, capgate's own `capgate-*`
//! headers), headers that frameworks read as another method, URL or host
//! (`X-HTTP-Method-Override`, `X-Original-URL`, `X-Forwarded-Host`,
//! `Forwarded`, …) and the route's `strip_headers`. Then set: the route's
//! credential header from the vault, `Host`, the normalised path and query,
//! and the request id.
//!
//! A `Connection` listing never makes capgate remove a framing or content
//! header ([`protected`]). pingora 0.9.1 then applies its own rule to the
//! listing when it sends the request (pingora-proxy `proxy_common.rs`):
//! - it removes every listed header, these included;
//! - a listed `Content-Length` makes it send the body chunked, intact;
//! - a listing of `Host` or `X-Forwarded-*`, a malformed one or one of 10
//!   names or more fails the request, and the agent gets
//!   `400 bad_request`.

use crate::routes::Route;
use crate::vault::Secret;
use http::header::{self, GetAll, HeaderName, HeaderValue};
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
    // One pass over the names the agent sent (a handful), each checked
    // against the lists; only those present are removed. Looking every
    // listed name up instead cost two map lookups per name (pingora keeps a
    // second map for the names' case), present or not.
    let connection = req.headers.get_all(header::CONNECTION);
    let mut doomed: Vec<HeaderName> = Vec::new();
    for name in req.headers.keys() {
        if must_not_pass(name, route, &connection) {
            doomed.push(name.clone());
        }
    }
    for name in &doomed {
        req.remove_header(name);
    }

    req.insert_header(route.inject_header.clone(), credential_value(route, credential)?)?;
    req.insert_header(header::HOST, route.authority.as_str())?;
    // A `&'static str` name is taken as it is; a `HeaderName` would be copied
    // once more for its letter case.
    req.insert_header(crate::gateway::REQUEST_ID_HEADER, request_id)?;
    let uri: http::Uri = target.parse().map_err(|_| Error::explain(ErrorType::InternalError, "the upstream target is not a valid URI"))?;
    req.set_uri(uri);
    Ok(())
}

/// The injected header's value: the route's format around the credential,
/// marked sensitive. It is built in a buffer of exactly its size, which the
/// value then owns (no second copy of the secret).
fn credential_value(route: &Route, credential: &Secret) -> Result<HeaderValue> {
    let secret = credential.expose();
    let mut value = Vec::with_capacity(route.inject_prefix.len() + secret.len() + route.inject_suffix.len());
    value.extend_from_slice(route.inject_prefix.as_bytes());
    value.extend_from_slice(secret.as_bytes());
    value.extend_from_slice(route.inject_suffix.as_bytes());
    let mut hv = HeaderValue::from_maybe_shared(bytes::Bytes::from(value))
        .map_err(|_| Error::explain(ErrorType::InternalError, "the credential is not a valid header value"))?;
    hv.set_sensitive(true);
    Ok(hv)
}

/// Whether the agent's header `name` is removed (the module docs list why).
fn must_not_pass(name: &HeaderName, route: &Route, connection: &GetAll<'_, HeaderValue>) -> bool {
    let n = name.as_str();
    HOP_BY_HOP.contains(name)
        || CREDENTIAL_BEARING.contains(name)
        || OVERRIDES.contains(name)
        || n.starts_with("proxy-")
        || n.starts_with("capgate-")
        || *name == header::HOST
        || *name == route.inject_header
        || route.strip_headers.contains(name)
        || listed_in_connection(name, connection)
}

/// Whether the agent's `Connection` headers name `name` (compared without
/// case, as header names are), unless it is [`protected`].
fn listed_in_connection(name: &HeaderName, connection: &GetAll<'_, HeaderValue>) -> bool {
    !protected(name)
        && connection.iter().any(|v| v.to_str().is_ok_and(|s| s.split(',').any(|listed| listed.trim().eq_ignore_ascii_case(name.as_str()))))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{InjectSection, RouteSection};

    /// The implementation before the one-pass rewrite (it looked every
    /// listed name up), kept as the oracle the new one must match.
    fn reference(req: &mut RequestHeader, route: &Route, credential: &Secret, target: &str, request_id: &str) -> Result<()> {
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
        let mut hv = HeaderValue::from_str(&format!("{}{}{}", route.inject_prefix, credential.expose(), route.inject_suffix))
            .map_err(|_| Error::explain(ErrorType::InternalError, "bad credential"))?;
        hv.set_sensitive(true);
        req.insert_header(route.inject_header.clone(), hv)?;
        req.insert_header(header::HOST, route.authority.as_str())?;
        req.insert_header(HeaderName::from_static(crate::gateway::REQUEST_ID_HEADER), request_id)?;
        req.set_uri(target.parse().map_err(|_| Error::explain(ErrorType::InternalError, "bad target"))?);
        Ok(())
    }

    fn route(inject: &str, strip: &[&str]) -> Route {
        Route::compile(&RouteSection {
            name: "r".into(),
            prefix: "/r/".into(),
            host: None,
            upstream: "http://127.0.0.1:9/".into(),
            credential: "c".into(),
            inject: InjectSection { header: inject.into(), format: "Token {token}".into() },
            strip_headers: strip.iter().map(|s| (*s).into()).collect(),
            allow_writes: false,
            sensitive: false,
        })
        .expect("route")
    }

    /// What reaches the upstream: the head's lines as pingora writes them
    /// (names in the agent's case), grouped by name with each name's values
    /// in their order (the order of different names is the map's and
    /// carries no meaning), and the URI.
    fn wire(req: &RequestHeader) -> (Vec<Vec<String>>, String) {
        let mut buf = Vec::new();
        req.header_to_h1_wire(&mut buf);
        let mut by_name = std::collections::BTreeMap::<String, Vec<String>>::new();
        for line in String::from_utf8(buf).expect("ASCII head").split("\r\n").filter(|l| !l.is_empty()) {
            let name = line.split(':').next().unwrap_or_default().to_ascii_lowercase();
            by_name.entry(name).or_default().push(line.to_owned());
        }
        (by_name.into_values().collect(), req.uri.to_string())
    }

    /// Names the agent might send: every listed kind, prefixed ones, the
    /// route's own, framing headers, ordinary ones, in mixed case.
    const POOL: [&str; 28] = [
        "Host",
        "Authorization",
        "ucans",
        "Cookie",
        "Proxy-Authorization",
        "proxy-connection",
        "Proxy-Foo",
        "Capgate-Approval",
        "capgate-x",
        "Connection",
        "Keep-Alive",
        "TE",
        "Trailer",
        "Upgrade",
        "X-HTTP-Method-Override",
        "x-http-method",
        "X-Method-Override",
        "X-Original-URL",
        "x-rewrite-url",
        "X-Forwarded-Host",
        "x-forwarded-prefix",
        "X-Forwarded-Proto",
        "Forwarded",
        "X-Api-Key",
        "X-Drop-Me",
        "Content-Type",
        "Accept",
        "User-Agent",
    ];
    const CONNECTION_VALUES: [&str; 7] = [
        "keep-alive",
        "close",
        "Keep-Alive, X-Drop-Me",
        " x-drop-me ,content-type, Accept",
        "content-length, transfer-encoding, host, content-encoding",
        "User-Agent,,bad name, x-drop-me;q",
        "upgrade",
    ];

    #[test]
    fn one_pass_rewrite_matches_the_lookup_of_every_listed_name() {
        let routes = [route("Authorization", &[]), route("X-Api-Key", &["X-Drop-Me", "accept"]), route("x-custom-auth", &["user-agent"])];
        let secret = Secret::new("s3cr3t-value".into());
        // xorshift: a fixed sequence of header sets, enough to reach every
        // name, every Connection listing and repeated headers.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for case in 0..3000 {
            let mut req = RequestHeader::build("GET", b"/r/a?b=c", None).expect("head");
            for _ in 0..(next() % 12) {
                let name = POOL[(next() % POOL.len() as u64) as usize];
                if name.eq_ignore_ascii_case("connection") {
                    let v = CONNECTION_VALUES[(next() % CONNECTION_VALUES.len() as u64) as usize];
                    req.append_header(name, v).expect("append");
                } else {
                    req.append_header(name, format!("v{}", next() % 3)).expect("append");
                }
            }
            let r = &routes[case % routes.len()];
            let (mut ours, mut theirs) = (req.clone(), req.clone());
            rewrite(&mut ours, r, &secret, "/a?b=c", "0123").expect("rewrite");
            reference(&mut theirs, r, &secret, "/a?b=c", "0123").expect("reference");
            assert_eq!(wire(&ours), wire(&theirs), "case {case}: {:?}", wire(&req).0);
        }
    }

    #[test]
    fn listed_and_credential_headers_are_removed_and_the_rest_kept() {
        let r = route("X-Api-Key", &["X-Strip"]);
        let mut req = RequestHeader::build("POST", b"/r/x", None).expect("head");
        for (k, v) in [
            ("Host", "agent.example"),
            ("Authorization", "Bearer agent-ucan"),
            ("Connection", "keep-alive, X-Listed, Content-Length"),
            ("X-Listed", "1"),
            ("Content-Length", "2"),
            ("X-Strip", "1"),
            ("X-Api-Key", "agent-key"),
            ("Proxy-Whatever", "1"),
            ("Accept", "application/json"),
        ] {
            req.append_header(k, v).expect("append");
        }
        rewrite(&mut req, &r, &Secret::new("k".into()), "/x", "id").expect("rewrite");
        let mut names: Vec<&str> = req.headers.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["accept", "content-length", "host", "x-api-key", "x-request-id"]);
        assert_eq!(req.headers["x-api-key"], "Token k");
        assert_eq!(req.headers["host"], "127.0.0.1:9");
    }
}
