//! Allowed calls, credential swapping, path confusion, Cedar, metrics.

use crate::harness::*;
use capgate_filters::ucan::mint::{mint, MintSpec};
use std::io::{Read, Write};

#[test]
fn two_link_chain_is_allowed_and_the_upstream_sees_only_the_vault_bearer() {
    let g = Gateway::start(GatewayOpts::default());
    let up = g.upstream.url();
    let deleg = g.delegation(&up, "http/*");
    let inv = g.invocation(&format!("{up}/repos/acme/app"), "http/GET", &deleg);
    let client = reqwest::blocking::Client::new();
    let r = send(
        client
            .get(g.url("/svc/repos/acme/app/issues?state=open"))
            .header("authorization", format!("Bearer {inv}"))
            .header("ucans", &deleg)
            .header("cookie", "session=agent-cookie")
            .header("proxy-authorization", "Basic agent-proxy")
            .header("x-api-key", "agent-api-key")
            .header("capgate-approval", "agent-thing"),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json["ok"], true);
    let seen = g.upstream.requests();
    assert_eq!(seen.len(), 1);
    let s = &seen[0];
    assert_eq!(s.method, "GET");
    assert_eq!(s.uri, "/repos/acme/app/issues?state=open");
    assert_eq!(s.header("authorization"), Some("Bearer upstream-secret-0123456789"));
    assert_eq!(s.header("host"), Some(g.upstream.addr.to_string().as_str()));
    for h in ["ucans", "cookie", "proxy-authorization", "x-api-key", "capgate-approval"] {
        assert_eq!(s.header(h), None, "{h} must not reach the upstream");
    }
    let all: String = s.headers.iter().map(|(k, v)| format!("{k}:{v}\n")).collect();
    assert!(!all.contains(&inv) && !all.contains(&deleg), "no UCAN reaches the upstream");
    assert_eq!(s.header("x-request-id").map(str::len), Some(32));
}

#[test]
fn three_link_chain_with_redelegation_is_allowed() {
    let g = Gateway::start(GatewayOpts::default());
    let up = g.upstream.url();
    let mid = new_key();
    let d1 = mint(
        &g.root_key,
        &MintSpec { audience: did(&mid), capabilities: vec![(up.clone(), "http/*".into())], expires: now() + 3600, ..Default::default() },
    );
    let d2 = mint(
        &mid,
        &MintSpec {
            audience: did(&g.agent_key),
            capabilities: vec![(format!("{up}/repos"), "http/POST".into())],
            expires: now() + 600,
            proofs: vec![d1.clone()],
            ..Default::default()
        },
    );
    let inv = g.invocation(&format!("{up}/repos/x"), "http/POST", &d2);
    let r = call(&g, "POST", "/svc/repos/x", Some(&inv), Some(&format!("{d1},{d2}")));
    assert_eq!(r.status, 200, "{}", r.text);
}

#[test]
fn a_cedar_forbid_beats_a_permit() {
    let g = Gateway::start(GatewayOpts {
        extra_policy: Some(r#"@id("no-secrets-path") forbid (principal, action, resource) when { context.path like "/secrets*" };"#.into()),
        ..Default::default()
    });
    let up = g.upstream.url();
    let deleg = g.delegation(&up, "http/*");
    let ok = call(&g, "GET", "/svc/public", Some(&g.invocation(&up, "http/GET", &deleg)), Some(&deleg));
    assert_eq!(ok.status, 200, "{}", ok.text);
    let r = call(&g, "GET", "/svc/secrets/1", Some(&g.invocation(&up, "http/GET", &deleg)), Some(&deleg));
    assert_refused(&r, 403, "policy_denied");
    assert!(r.json["reason"].as_str().unwrap_or("").contains("no-secrets-path"), "{}", r.text);
    // Default policies: DELETE is forbidden even when the token grants it
    // (on a route without allow_writes not even a cosigner helps); writes
    // need a route that opts in.
    let r = call(&g, "DELETE", "/ro/x", Some(&g.invocation(&up, "http/DELETE", &deleg)), Some(&deleg));
    assert_refused(&r, 403, "policy_denied");
    assert!(r.text.contains("delete-forbidden"), "{}", r.text);
    let r = call(&g, "POST", "/ro/x", Some(&g.invocation(&up, "http/POST", &deleg)), Some(&deleg));
    assert_refused(&r, 403, "policy_denied");
    assert_eq!(g.upstream.requests().len(), 1, "only the allowed call reached the upstream");
}

#[test]
fn a_large_sliced_policy_set_decides_as_cedar_does() {
    // 300 policies pinned to routes that do not exist, two pinned to real
    // routes (by resource scope, and by tenant + method + context), and the
    // defaults: only the ones that can apply are evaluated, and they decide.
    let mut extra = String::new();
    for i in 0..300 {
        extra.push_str(&format!(
            "@id(\"gen-{i}\") forbid (principal, action, resource) when {{ context.route == \"r{i}\" && context.path like \"/generated/*\" }};\n"
        ));
    }
    extra.push_str(r#"@id("svc-secrets") forbid (principal, action, resource in Route::"svc") when { context.path like "/secrets*" };"#);
    extra.push_str(
        r#"@id("ro-query") forbid (principal in Tenant::"acme", action == Action::"http/GET", resource) when { context.route == "ro" && context.query == "deny=1" };"#,
    );
    let g = Gateway::start(GatewayOpts { extra_policy: Some(extra), ..Default::default() });
    let check = g.cli(&["policy", "check", &g.dir.path().join("policies").display().to_string()], None);
    let out = String::from_utf8_lossy(&check.stdout);
    assert!(check.status.success(), "{out}");
    assert!(out.contains("306 policies validate"), "{out}");
    assert!(out.contains("306 indexed, 0 guarded, 0 evaluated on every request"), "{out}");
    let up = g.upstream.url();
    let deleg = g.delegation(&up, "http/*");
    let get = |path: &str| call(&g, "GET", path, Some(&g.invocation(&up, "http/GET", &deleg)), Some(&deleg));
    let r = get("/svc/public");
    assert_eq!(r.status, 200, "{}", r.text);
    let r = get("/svc/secrets/1");
    assert_refused(&r, 403, "policy_denied");
    assert!(r.text.contains("svc-secrets"), "{}", r.text);
    let r = get("/ro/x?deny=1");
    assert_refused(&r, 403, "policy_denied");
    assert!(r.text.contains("ro-query"), "{}", r.text);
    let r = get("/ro/x?deny=0");
    assert_eq!(r.status, 200, "{}", r.text);
    let r = get("/svc/generated/1");
    assert_eq!(r.status, 200, "gen-* forbids are pinned to other routes: {}", r.text);
    assert_eq!(g.upstream.requests().len(), 3, "only the allowed calls reached the upstream");
}

#[test]
fn context_attributes_cannot_be_set_by_the_agent() {
    // A policy that would permit DELETE if the agent could claim a cosigner.
    let g = Gateway::start(GatewayOpts {
        extra_policy: Some(r#"@id("cosigned-delete") permit (principal, action, resource) when { context.cosigned };"#.into()),
        ..Default::default()
    });
    let up = g.upstream.url();
    let deleg = g.delegation(&up, "http/*");
    let inv = g.invocation(&up, "http/POST", &deleg);
    let client = reqwest::blocking::Client::new();
    let r = send(
        client
            .post(g.url("/ro/x?cosigned=true&tier=read"))
            .header("authorization", format!("Bearer {inv}"))
            .header("ucans", &deleg)
            .header("cosigned", "true")
            .header("x-capgate-cosigned", "true")
            .body(r#"{"cosigned":true,"context":{"cosigned":true}}"#),
    );
    assert_refused(&r, 403, "policy_denied");
    assert!(g.upstream.requests().is_empty());
}

#[test]
fn path_confusion_never_reaches_another_host_or_path() {
    let g = Gateway::start(GatewayOpts::default());
    let up = g.upstream.url();
    let deleg = g.delegation(&format!("{up}/repos/acme/app"), "http/*");
    let tok = || g.invocation(&format!("{up}/repos/acme/app"), "http/GET", &deleg);
    // Encoded separators, climbing above the capability, empty segments.
    for (path, code) in [
        ("/svc/repos/acme/app/..%2F..%2Fother", "bad_path"),
        ("/svc/repos/acme/app/%5c..%5cother", "bad_path"),
        ("/svc/repos/acme/app/%00", "bad_path"),
        ("/svc//evil.example/repos/acme/app", "bad_path"),
        ("/svc/repos/acme/app/../../other", "capability_mismatch"),
        ("/svc/repos/acme/app/%2e%2e/%2e%2e/other", "capability_mismatch"),
        ("/svc/repos/acme/app2", "capability_mismatch"),
        ("/svc/../../etc/passwd", "bad_path"),
        ("/svc/repos/acme/app/..;/..;/other", "bad_path"),
        ("/svc/repos/acme/app/%252e%252e/%252e%252e/other", "bad_path"),
        ("/svc/repos/acme/app/./x/../", "ok"),
    ] {
        let r = raw_get(&g, path, &tok(), &deleg);
        if code == "ok" {
            assert_eq!(r.status, 200, "{path}: {}", r.text);
            continue;
        }
        let status = if code == "bad_path" { 400 } else { 403 };
        assert_refused(&r, status, code);
    }
    // A capability for another host is useless here: the host comes from the route.
    let evil = g.delegation("https://evil.example", "http/*");
    let r = call(&g, "GET", "/svc/repos/acme/app", Some(&g.invocation("https://evil.example", "http/GET", &evil)), Some(&evil));
    assert_refused(&r, 403, "capability_mismatch");
    // A Host header pointing elsewhere does not move the request.
    let client = reqwest::blocking::Client::new();
    let r = send(
        client
            .get(g.url("/svc/repos/acme/app/@evil.example/x"))
            .header("host", "evil.example")
            .header("authorization", format!("Bearer {}", tok()))
            .header("ucans", &deleg),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    // Absolute-form request targets are refused (raw socket: clients normalise these).
    let mut s = std::net::TcpStream::connect(("127.0.0.1", g.port)).expect("connect");
    write!(
        s,
        "GET http://evil.example/svc/repos/acme/app HTTP/1.1\r\nHost: evil.example\r\nAuthorization: Bearer {}\r\nucans: {}\r\nConnection: close\r\n\r\n",
        tok(),
        deleg
    )
    .expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    assert!(resp.contains("\"bad_path\""), "{resp}");
    // Only the legitimate requests arrived, normalised, on the configured upstream.
    let seen = g.upstream.requests();
    let uris: Vec<&str> = seen.iter().map(|s| s.uri.as_str()).collect();
    assert_eq!(uris, ["/repos/acme/app/", "/repos/acme/app/@evil.example/x"]);
    for s in &seen {
        assert_eq!(s.header("host"), Some(g.upstream.addr.to_string().as_str()));
    }
}

/// A GET sent over a raw socket, so no client library normalises the path.
fn raw_get(g: &Gateway, path: &str, token: &str, ucans: &str) -> Reply {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", g.port)).expect("connect");
    write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {token}\r\nucans: {ucans}\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut resp = String::new();
    s.read_to_string(&mut resp).expect("read");
    let status = resp.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    let body = resp.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()).unwrap_or_default();
    let json = serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
    Reply { status, json, text: body }
}

#[test]
fn method_and_url_overrides_never_reach_the_upstream() {
    let g = Gateway::start(GatewayOpts::default());
    let up = g.upstream.url();
    let deleg = g.delegation(&up, "http/*");
    let client = reqwest::blocking::Client::new();
    let mut req = client
        .get(g.url("/svc/a"))
        .header("authorization", format!("Bearer {}", g.invocation(&up, "http/GET", &deleg)))
        .header("ucans", &deleg)
        .header("connection", "keep-alive, content-length, x-drop-me")
        .header("x-drop-me", "1");
    for h in ["x-http-method-override", "x-http-method", "x-method-override"] {
        req = req.header(h, "DELETE");
    }
    for h in ["x-original-url", "x-rewrite-url", "x-forwarded-prefix"] {
        req = req.header(h, "/admin");
    }
    req = req.header("x-forwarded-host", "evil.example").header("forwarded", "host=evil.example");
    assert_eq!(send(req).status, 200);
    let seen = g.upstream.requests();
    for h in [
        "x-http-method-override",
        "x-http-method",
        "x-method-override",
        "x-original-url",
        "x-rewrite-url",
        "x-forwarded-prefix",
        "x-forwarded-host",
        "forwarded",
        "x-drop-me",
    ] {
        assert_eq!(seen[0].header(h), None, "{h} reached the upstream");
    }
    // TRACE would reflect the injected credential; lower-case methods dodge policies.
    for m in ["TRACE", "get", "PROPFIND"] {
        let r = call(&g, m, "/svc/a", Some(&g.invocation(&up, "http/*", &deleg)), Some(&deleg));
        assert_refused(&r, 405, "method_not_allowed");
    }
    assert_eq!(g.upstream.requests().len(), 1);
}

/// A `Connection` listing as pingora 0.9.1 applies it after capgate's own
/// strip (upstream_headers.rs): every listed header is dropped, a listed
/// `Content-Length` re-frames the body as chunked without losing it, and a
/// listing that names `Host`, or ten names or more, is refused as JSON.
#[test]
fn connection_listings_drop_headers_keep_bodies_and_refuse_protected_names() {
    let g = Gateway::start(GatewayOpts::default());
    let up = g.upstream.url();
    let deleg = g.delegation(&up, "http/*");
    let client = reqwest::blocking::Client::new();
    let r = send(
        client
            .post(g.url("/svc/a"))
            .header("authorization", format!("Bearer {}", g.invocation(&up, "http/POST", &deleg)))
            .header("ucans", &deleg)
            .header("connection", "keep-alive, Content-Length, Content-Type")
            .header("content-type", "application/json")
            .body(r#"{"kept":true}"#),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let seen = g.upstream.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].body, br#"{"kept":true}"#);
    assert_eq!(seen[0].header("content-length"), None);
    assert_eq!(seen[0].header("transfer-encoding"), Some("chunked"));
    assert_eq!(seen[0].header("content-type"), None);
    for listing in ["keep-alive, Host", "x-forwarded-for", "a, b, c, d, e, f, g, h, i, j"] {
        let r = send(
            client
                .get(g.url("/svc/a"))
                .header("authorization", format!("Bearer {}", g.invocation(&up, "http/GET", &deleg)))
                .header("ucans", &deleg)
                .header("connection", listing),
        );
        assert_refused(&r, 400, "bad_request");
    }
    assert_eq!(g.upstream.requests().len(), 1, "a refused listing reached the upstream");
}

#[test]
fn unknown_route_and_missing_credential() {
    let g = Gateway::start(GatewayOpts { credential: None, ..Default::default() });
    assert_refused(&call(&g, "GET", "/nowhere", None, None), 404, "no_route");
    let up = g.upstream.url();
    let deleg = g.delegation(&up, "http/*");
    let r = call(&g, "GET", "/svc/x", Some(&g.invocation(&up, "http/GET", &deleg)), Some(&deleg));
    assert_refused(&r, 502, "credential_unavailable");
    assert!(g.upstream.requests().is_empty());
}

#[test]
fn a_credential_put_or_removed_while_running_is_used_without_a_restart() {
    let g = Gateway::start(GatewayOpts { credential: None, ..Default::default() });
    let echo = || call_echo(&g);
    assert_refused(&echo(), 502, "credential_unavailable");
    let vault = |args: &[&str], stdin: Option<&str>| {
        let out = g.cli(args, stdin);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    };
    // Each write is picked up by the file watch (2 s) and used on the next
    // request; the echo of the new value is redacted from the same snapshot.
    for value in ["rotated-credential-one-0123", "rotated-credential-two-4567"] {
        vault(&["vault", "put", "--tenant", "acme", "--name", "svc"], Some(&format!("{value}\n")));
        let r = eventually(|| {
            Some(echo()).filter(|r| {
                r.status == 200
                    && g.upstream.requests().last().and_then(|s| s.header("authorization").map(str::to_owned))
                        == Some(format!("Bearer {value}"))
            })
        });
        assert!(!r.text.contains(value), "{}", r.text);
        assert!(r.text.contains("\"token_only\":\"[REDACTED:vault_credential]\""), "{}", r.text);
    }
    let line = r#"capgate_vault_reloads_total{result="ok"} 2"#;
    let m = g.metrics_with(line);
    assert!(m.lines().any(|l| l == line), "{m}");
    // Removal: the next requests are refused, nothing reaches the upstream.
    vault(&["vault", "rm", "--tenant", "acme", "--name", "svc"], None);
    eventually(|| Some(echo()).filter(|r| r.status == 502));
    let seen = g.upstream.requests().len();
    assert_refused(&echo(), 502, "credential_unavailable");
    assert_eq!(g.upstream.requests().len(), seen);
    // A store that cannot be opened is refused; the previous snapshot serves on.
    vault(&["vault", "put", "--tenant", "acme", "--name", "svc"], Some("rotated-credential-three-89\n"));
    eventually(|| Some(echo()).filter(|r| r.status == 200));
    std::fs::write(g.dir.path().join("vault.json"), "{ not a vault").expect("corrupt the store");
    let m = g.metrics_with(r#"capgate_vault_reloads_total{result="error"} 1"#);
    assert!(m.contains(r#"capgate_vault_reloads_total{result="error"} 1"#), "{m}");
    assert_eq!(echo().status, 200);
    assert_eq!(
        g.upstream.requests().last().and_then(|s| s.header("authorization").map(str::to_owned)).as_deref(),
        Some("Bearer rotated-credential-three-89")
    );
    assert!(g.log().contains("vault reload refused"), "the refusal is logged");
    assert!(!g.log().contains("rotated-credential-"), "values never reach the log");
}

/// GET `/svc/echo-auth` (the upstream echoes the Authorization it received) with fresh tokens.
fn call_echo(g: &Gateway) -> Reply {
    let up = g.upstream.url();
    let deleg = g.delegation(&up, "http/GET");
    call(g, "GET", "/svc/echo-auth", Some(&g.invocation(&up, "http/GET", &deleg)), Some(&deleg))
}

/// Retry `f` every 100 ms for up to 10 s until it yields a value.
fn eventually<T>(mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "condition not reached within 10 s");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

#[test]
fn an_unreachable_upstream_is_a_json_502() {
    let g = Gateway::start(GatewayOpts::default());
    let text = std::fs::read_to_string(&g.config_path).expect("config");
    let dead = text.split("upstream = \"").nth(3).and_then(|s| s.split('"').next()).expect("dead upstream").to_owned();
    let deleg = g.delegation(&dead, "http/*");
    let r = call(&g, "GET", "/dead/x", Some(&g.invocation(&dead, "http/GET", &deleg)), Some(&deleg));
    assert_refused(&r, 502, "upstream_unavailable");
    let line = r#"capgate_requests_total{decision="error",method="GET",reason="upstream_unavailable",route="dead"} 1"#;
    let m = g.metrics_with(line);
    assert!(m.contains(r#"capgate_requests_total{decision="error",method="GET",reason="upstream_unavailable",route="dead"} 1"#), "{m}");
}

#[test]
fn metrics_count_decisions_with_bounded_labels() {
    let g = Gateway::start(GatewayOpts::default());
    let up = g.upstream.url();
    let deleg = g.delegation(&up, "http/*");
    let inv = g.invocation(&up, "http/GET", &deleg);
    assert_eq!(call(&g, "GET", "/svc/a", Some(&inv), Some(&deleg)).status, 200);
    assert_refused(&call(&g, "GET", "/svc/a", Some(&inv), Some(&deleg)), 401, "replayed");
    assert_refused(&call(&g, "GET", "/svc/a", None, None), 401, "token_missing");
    assert_refused(&call(&g, "GET", "/svc/a", None, None), 401, "token_missing");
    assert_refused(&call(&g, "GET", "/zzz", None, None), 404, "no_route");
    let m = g.metrics_with(r#"capgate_requests_total{decision="deny",method="GET",reason="no_route",route="none"} 1"#);
    let has = |line: &str| m.lines().any(|l| l == line);
    assert!(has(r#"capgate_requests_total{decision="allow",method="GET",reason="ok",route="svc"} 1"#), "{m}");
    assert!(has(r#"capgate_requests_total{decision="deny",method="GET",reason="replayed",route="svc"} 1"#), "{m}");
    assert!(has(r#"capgate_requests_total{decision="deny",method="GET",reason="token_missing",route="svc"} 2"#), "{m}");
    assert!(has(r#"capgate_requests_total{decision="deny",method="GET",reason="no_route",route="none"} 1"#), "{m}");
    // With replay protection on, single-use invocations are not cached: the
    // replayed one was verified again (and then refused as a replay).
    assert!(has(r#"capgate_ucan_cache_total{result="miss"} 2"#), "{m}");
    assert!(!m.contains(r#"capgate_ucan_cache_total{result="hit"}"#), "{m}");
    assert!(m.contains("capgate_request_duration_seconds_bucket"), "{m}");
    assert!(!m.contains("did:key") && !m.contains("/svc/a"), "no DIDs or paths as labels");
}

#[test]
fn secrets_never_appear_in_responses_or_logs() {
    let g = Gateway::start(GatewayOpts::default());
    let up = g.upstream.url();
    let deleg = g.delegation(&up, "http/*");
    let inv = g.invocation(&up, "http/GET", &deleg);
    let mut bodies = String::new();
    bodies += &call(&g, "GET", "/svc/a", Some(&inv), Some(&deleg)).text;
    bodies += &call(&g, "GET", "/svc/a", Some(&inv), Some(&deleg)).text;
    bodies += &call(&g, "GET", "/svc/a", Some("not-a-token-secret-value"), None).text;
    bodies += &call(&g, "DELETE", "/svc/a", Some(&g.invocation(&up, "http/DELETE", &deleg)), Some(&deleg)).text;
    std::thread::sleep(std::time::Duration::from_millis(200));
    let log = g.log();
    for secret in [inv.as_str(), deleg.as_str(), "upstream-secret-0123456789", "not-a-token-secret-value"] {
        assert!(!bodies.contains(secret), "response echoed a secret");
        assert!(!log.contains(secret), "log contains a secret");
    }
    assert!(log.contains("\"decision\":\"allow\"") && log.contains("\"reason\":\"replayed\""), "log lines exist");
}

/// How the agent listener reads requests. By default (`server.read_buffer_bytes
/// = 0`) an agent connection has no read buffer of its own: reads go straight
/// into pingora's request buffer. On one keep-alive connection a head larger
/// than that buffer's first 4 KiB is read whole, and a POST whose head and
/// body arrive in pieces reaches the upstream whole. Requests pipelined in
/// one write get pingora's default treatment (RFC 9112 §9.3.2 lets a server
/// close instead of pipelining): the first is answered, then the connection
/// closes, and the others never reach the upstream, so the client retries them.
#[test]
fn large_trickled_and_pipelined_requests() {
    let g = Gateway::start(GatewayOpts::default());
    let up = g.upstream.url();
    let deleg = g.delegation(&up, "http/*");
    let head = |method: &str, path: &str, extra: &str| {
        let can = format!("http/{method}");
        format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\nucans: {deleg}\r\n{extra}\r\n",
            g.invocation(&up, &can, &deleg)
        )
    };

    let (mut stream, mut r) = raw_connection(&g);
    let padding = "p".repeat(9 * 1024);
    let big = head("GET", "/svc/big", &format!("X-Padding: {padding}\r\n"));
    assert!(big.len() > 10 * 1024);
    stream.write_all(big.as_bytes()).expect("write");
    let (h, _) = read_reply(&mut r);
    assert!(h.starts_with("http/1.1 200"), "large head: {h}");

    let body = b"0123456789".repeat(3000);
    let post = head("POST", "/svc/upload", &format!("Content-Length: {}\r\n", body.len()));
    let (a, b) = post.as_bytes().split_at(post.len() / 2);
    for piece in [a, b, &body[..7000], &body[7000..]] {
        stream.write_all(piece).expect("write");
        std::thread::sleep(std::time::Duration::from_millis(30));
    }
    let (h, _) = read_reply(&mut r);
    assert!(h.starts_with("http/1.1 200"), "trickled POST on the same connection: {h}");

    let (mut stream, mut r) = raw_connection(&g);
    let batch: String = (0..3).map(|i| head("GET", &format!("/svc/p{i}"), "")).collect();
    stream.write_all(batch.as_bytes()).expect("write");
    let (h, _) = read_reply(&mut r);
    assert!(h.starts_with("http/1.1 200"), "first pipelined request: {h}");
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).expect("read to the close");
    assert!(rest.is_empty(), "nothing after the first reply: {}", String::from_utf8_lossy(&rest));

    let seen = g.upstream.requests();
    let uris: Vec<&str> = seen.iter().map(|s| s.uri.as_str()).collect();
    assert_eq!(uris, ["/big", "/upload", "/p0"]);
    assert_eq!(seen[0].header("x-padding"), Some(padding.as_str()));
    assert_eq!(seen[1].body, body);
}
