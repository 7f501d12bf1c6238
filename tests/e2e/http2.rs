//! HTTP/2 with prior knowledge (h2c) on the agent listener: the same
//! pipeline as HTTP/1.1, from curl and from an HTTP/2 client that
//! multiplexes many requests on one connection.

use crate::harness::*;
use std::io::Read;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

fn h2_client() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().http2_prior_knowledge().timeout(Duration::from_secs(30)).build().expect("client")
}

/// A GET over HTTP/2 with a fresh token for the whole upstream.
fn h2_get(g: &Gateway, client: &reqwest::blocking::Client, path: &str) -> reqwest::blocking::Response {
    let up = g.upstream.url();
    let deleg = g.delegation(&up, "http/GET");
    let inv = g.invocation(&up, "http/GET", &deleg);
    client.get(g.url(path)).header("authorization", format!("Bearer {inv}")).header("ucans", deleg).send().expect("request")
}

/// Established TCP connections whose local port is `port` (the gateway's
/// side of its agent connections), from /proc/net/tcp.
fn established_to(port: u16) -> usize {
    let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp");
    let local = format!(":{port:04X}");
    table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .filter(|f| f.len() > 3 && f[1].ends_with(&local) && f[3] == "01")
        .count()
}

#[test]
fn curl_over_h2c_is_admitted_sanitized_and_refused_like_http1() {
    let g = Gateway::start(GatewayOpts::default());
    let up = g.upstream.url();
    let deleg = g.delegation(&up, "http/GET");
    let inv = g.invocation(&up, "http/GET", &deleg);
    let curl = |auth: Option<&str>| {
        let mut c = std::process::Command::new("curl");
        c.args(["-s", "--http2-prior-knowledge", "-w", "\n%{http_version} %{http_code}"]);
        if let Some(t) = auth {
            c.args(["-H", &format!("authorization: Bearer {t}"), "-H", &format!("ucans: {deleg}")]);
        }
        let out = c.arg(g.url("/svc/secrets")).output().expect("run curl");
        let text = String::from_utf8_lossy(&out.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').expect("curl's status line");
        (body.to_owned(), status.to_owned())
    };

    let (body, status) = curl(Some(&inv));
    assert_eq!(status, "2 200", "served as HTTP/2: {body}");
    let v: serde_json::Value = serde_json::from_str(&body).expect("JSON");
    assert_eq!(v["aws"], "[REDACTED:aws_access_key_id]");
    assert_eq!(v["hidden"], "abc", "invisible characters stripped");
    let seen = g.upstream.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("authorization"), Some("Bearer upstream-secret-0123456789"), "the vaulted credential, not the UCAN");
    assert_eq!(seen[0].header("host"), Some(&up["http://".len()..]), "the upstream's authority, not the gateway's");
    assert!(seen[0].header("ucans").is_none());

    // Refusals over HTTP/2 are the same JSON with the same reason codes.
    let over_h2 = |(text, status): (String, String)| -> Reply {
        let code = status.strip_prefix("2 ").unwrap_or_else(|| panic!("not served as HTTP/2: {status}"));
        Reply { status: code.parse().expect("status"), json: serde_json::from_str(&text).unwrap_or_default(), text }
    };
    assert_refused(&over_h2(curl(Some(&inv))), 401, "replayed");
    assert_refused(&over_h2(curl(None)), 401, "token_missing");
    assert_eq!(g.upstream.requests().len(), 1, "refused requests never reach the upstream");
}

/// Over HTTP/2 as over HTTP/1.1: a reply sanitized whole before its head
/// leaves carries its sanitized length. One whose head came alone has none
/// (or the right one, when the gateway was too busy to read the head before
/// the body came).
#[test]
fn a_reply_sanitized_whole_carries_its_length_over_http2() {
    let g = Gateway::start(GatewayOpts::default());
    let client = h2_client();
    for path in ["/svc/secrets", "/svc/head-first"] {
        let r = h2_get(&g, &client, path);
        assert_eq!((r.version(), r.status().as_u16()), (reqwest::Version::HTTP_2, 200), "{path}");
        let length = r.headers().get("content-length").map(|v| v.to_str().expect("ascii").to_owned());
        let text = r.text().expect("body");
        assert!(text.contains("[REDACTED:aws_access_key_id]"), "{path}: {text}");
        match length {
            Some(n) => assert_eq!(n, text.len().to_string(), "{path}"),
            None => assert_eq!(path, "/svc/head-first", "a whole body must carry its length"),
        }
    }
}

#[test]
fn many_concurrent_streams_on_one_connection_each_get_their_own_decision() {
    let g = Gateway::start(GatewayOpts::default());
    let client = h2_client();
    let up = g.upstream.url();
    let deleg = g.delegation(&up, "http/GET");
    // 24 fresh invocations and one replayed: every stream is admitted,
    // refused and audited on its own.
    let mut tokens: Vec<String> = (0..24).map(|_| g.invocation(&up, "http/GET", &deleg)).collect();
    tokens.push(tokens[0].clone());
    let replies: Vec<(u16, reqwest::Version, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = tokens
            .iter()
            .map(|t| {
                let (client, deleg, url) = (&client, &deleg, g.url("/svc/echo-auth"));
                s.spawn(move || {
                    let r = client.get(url).header("authorization", format!("Bearer {t}")).header("ucans", deleg).send().expect("request");
                    (r.status().as_u16(), r.version(), r.text().expect("body"))
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().expect("thread")).collect()
    });
    assert!(replies.iter().all(|(_, v, _)| *v == reqwest::Version::HTTP_2));
    let ok: Vec<&String> = replies.iter().filter(|(s, _, _)| *s == 200).map(|(_, _, b)| b).collect();
    let replayed = replies.iter().filter(|(s, _, b)| *s == 401 && b.contains("\"replayed\"")).count();
    assert_eq!((ok.len(), replayed), (24, 1), "{replies:?}");
    for body in ok {
        let v: serde_json::Value = serde_json::from_str(body).expect("json");
        assert_eq!(v["you_sent"], "Bearer [REDACTED:bearer_token]", "{body}");
    }
    let seen = g.upstream.requests();
    assert_eq!(seen.len(), 24);
    let mut ids: Vec<&str> = seen.iter().filter_map(|s| s.header("x-request-id")).collect();
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 24, "one request id per stream");
    assert_eq!(established_to(g.port), 1, "all 25 streams shared one connection");
    let line = r#"capgate_requests_total{decision="allow",method="GET",reason="ok",route="svc"} 24"#;
    assert!(g.metrics_with(line).contains(line), "24 allowed");
}

#[test]
fn a_request_body_is_forwarded_over_http2() {
    let g = Gateway::start(GatewayOpts::default());
    let up = g.upstream.url();
    let deleg = g.delegation(&up, "http/POST");
    let inv = g.invocation(&format!("{up}/repos/x"), "http/POST", &deleg);
    // 288 KiB: past HTTP/2's initial 64 KiB flow-control window.
    let body = "{\"name\":\"x\"}".repeat(24 * 1024);
    let r = send(
        h2_client()
            .post(g.url("/svc/repos/x"))
            .header("authorization", format!("Bearer {inv}"))
            .header("ucans", deleg)
            .header("content-type", "application/json")
            .body(body.clone()),
    );
    assert_eq!(r.status, 200, "{}", r.text);
    let seen = g.upstream.requests();
    assert_eq!((seen[0].method.as_str(), seen[0].uri.as_str()), ("POST", "/repos/x"));
    assert_eq!(seen[0].body, body.as_bytes(), "the whole body, in order");
}

#[test]
fn sse_over_http2_flows_event_by_event() {
    let g = Gateway::start(GatewayOpts::default());
    let r = h2_get(&g, &h2_client(), "/svc/sse");
    assert_eq!((r.status().as_u16(), r.version()), (200, reqwest::Version::HTTP_2));
    assert_sse_flows_event_by_event(&g, r);
}

#[test]
fn with_h2c_off_the_listener_speaks_only_http1() {
    let g = Gateway::start(GatewayOpts { h2c: false, ..Default::default() });
    assert_eq!(g.get("/svc/hello").status(), 200, "HTTP/1.1 is served");
    let up = g.upstream.url();
    let deleg = g.delegation(&up, "http/GET");
    let inv = g.invocation(&up, "http/GET", &deleg);
    let r = h2_client().get(g.url("/svc/hello")).header("authorization", format!("Bearer {inv}")).header("ucans", deleg).send();
    assert!(r.is_err(), "an HTTP/2 preface is not answered as HTTP/2: {r:?}");
    assert_eq!(g.upstream.requests().len(), 1);
}

#[test]
fn a_refused_head_request_gets_its_status_without_a_body() {
    let g = Gateway::start(GatewayOpts::default());
    let r = h2_client().head(g.url("/svc/secrets")).send().expect("a reply, not a reset stream");
    assert_eq!((r.status().as_u16(), r.version()), (401, reqwest::Version::HTTP_2));
    assert!(r.headers().get("x-request-id").is_some());
    assert!(r.bytes().expect("no body").is_empty());
    let line = r#"capgate_requests_total{decision="deny",method="HEAD",reason="token_missing",route="svc"} 1"#;
    assert!(g.metrics_with(line).contains(line), "refused for the missing token");
}

#[test]
fn an_upstream_failing_mid_body_resets_the_stream() {
    let g = Gateway::start(GatewayOpts::default());
    let mut r = h2_get(&g, &h2_client(), "/svc/dies-mid-body");
    assert_eq!((r.status().as_u16(), r.version()), (200, reqwest::Version::HTTP_2));
    let mut first = [0u8; 10];
    r.read_exact(&mut first).expect("the first part");
    assert_eq!(&first, b"{\"part\":1,");
    g.upstream.go.store(true, Ordering::SeqCst);
    let mut rest = Vec::new();
    let end = r.read_to_end(&mut rest);
    assert!(end.is_err(), "the body ended as if complete: {:?}", String::from_utf8_lossy(&rest));
    assert!(!String::from_utf8_lossy(&rest).contains("upstream_unavailable"));
}

#[test]
fn a_silent_connection_is_closed_after_the_keepalive_timeout_not_held() {
    // Fewer bytes than the HTTP/2 preface, then nothing: the deadline on the
    // first bytes closes it (60 s by default; 1 s here).
    use std::io::{Read, Write};
    let g = Gateway::start(GatewayOpts { h2c_idle_timeout_secs: 1, ..Default::default() });
    let mut s = std::net::TcpStream::connect(("127.0.0.1", g.port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    s.write_all(b"GET / HTTP/1.0\r\n").expect("write");
    let t = Instant::now();
    let mut buf = Vec::new();
    let n = s.read_to_end(&mut buf).expect("closed by the gateway, not timed out here");
    assert_eq!(n, 0);
    assert!(t.elapsed() < Duration::from_secs(5), "closed after {:?}", t.elapsed());
}

#[test]
fn an_idle_http2_connection_is_closed_after_the_idle_timeout() {
    let g = Gateway::start(GatewayOpts { h2c_idle_timeout_secs: 1, ..Default::default() });
    let client = h2_client();
    assert_eq!(h2_get(&g, &client, "/svc/hello").status(), 200);
    assert_eq!(established_to(g.port), 1, "the client keeps its connection");
    let deadline = Instant::now() + Duration::from_secs(5);
    while established_to(g.port) > 0 {
        assert!(Instant::now() < deadline, "an idle HTTP/2 connection was still open after 5 s");
        std::thread::sleep(Duration::from_millis(100));
    }
    // The client notices and connects again for its next request.
    assert_eq!(h2_get(&g, &client, "/svc/hello").status(), 200);
}
