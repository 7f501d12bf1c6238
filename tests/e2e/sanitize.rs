//! The response sanitizer through the real proxy, from a real upstream.

use crate::harness::*;
use std::io::Read;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

#[test]
fn a_json_body_with_secrets_is_redacted_and_stays_json() {
    let g = Gateway::start(GatewayOpts::default());
    let r = g.get("/svc/secrets");
    assert_eq!(r.status(), 200);
    let length = r.headers().get("content-length").map(|v| v.to_str().expect("ascii").to_owned());
    let text = r.text().expect("body");
    assert_eq!(length, Some(text.len().to_string()), "the sanitized body's own length, not the upstream's");
    assert_ne!(text.len(), secrets_json().len());
    let v: serde_json::Value = serde_json::from_str(&text).expect("valid JSON");
    assert_eq!(v["aws"], "[REDACTED:aws_access_key_id]");
    assert_eq!(v["slack"], "[REDACTED:slack_token]");
    assert_eq!(v["note"], "pay with [REDACTED:stripe_live_secret] now");
    assert_eq!(v["hidden"], "abc");
    assert_eq!(v["family"], "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}", "emoji survive");
    for s in [FAKE_AWS_KEY, FAKE_SLACK, FAKE_STRIPE] {
        assert!(!text.contains(s));
    }
    let m = g.metrics_with(r#"capgate_redactions_total{kind="aws_access_key_id"} 1"#);
    assert!(m.contains(r#"capgate_redactions_total{kind="aws_access_key_id"} 1"#), "{m}");
    assert!(m.contains(r#"capgate_redactions_total{kind="slack_token"} 1"#), "{m}");
    assert!(m.contains("capgate_invisible_removed_total 2"), "{m}");
    assert!(m.contains(r#"capgate_response_bodies_total{handling="sanitized"} 1"#), "{m}");
    let log = g.log();
    assert!(log.contains("aws_access_key_id=1") && !log.contains(FAKE_AWS_KEY), "counts, never the match, in the log");
}

#[test]
fn the_injected_bearer_echoed_back_is_redacted() {
    let g = Gateway::start(GatewayOpts::default());
    let text = g.get("/svc/echo-auth").text().expect("body");
    assert!(!text.contains("upstream-secret-0123456789"), "{text}");
    let v: serde_json::Value = serde_json::from_str(&text).expect("json");
    assert_eq!(v["you_sent"], "Bearer [REDACTED:bearer_token]");
    assert_eq!(v["token_only"], "[REDACTED:vault_credential]", "a bare echo of the credential matches no format but is redacted");
    assert_eq!(g.upstream.requests()[0].header("authorization"), Some("Bearer upstream-secret-0123456789"));
}

#[test]
fn compressed_bodies_are_decoded_sanitized_and_sent_plain() {
    let g = Gateway::start(GatewayOpts::default());
    for coding in ["gzip", "br", "zstd", "deflate"] {
        let r = g.get(&format!("/svc/encoded/{coding}"));
        assert_eq!(r.status(), 200, "{coding}");
        assert!(r.headers().get("content-encoding").is_none(), "{coding}: sent unencoded");
        let v: serde_json::Value = serde_json::from_str(&r.text().expect("body")).expect("json");
        assert_eq!(v["aws"], "[REDACTED:aws_access_key_id]", "{coding}");
    }
    // The upstream was asked only for codings capgate decodes.
    for s in g.upstream.requests() {
        assert_eq!(s.header("accept-encoding"), Some("gzip, br, zstd, deflate"));
    }
}

#[test]
fn an_unknown_encoding_is_refused() {
    let g = Gateway::start(GatewayOpts::default());
    let r = g.get("/svc/encoded/compress");
    assert_eq!(r.status(), 502);
    let v: serde_json::Value = serde_json::from_str(&r.text().expect("body")).expect("json");
    assert_eq!(v["error"], "unsanitizable_encoding");
    assert_eq!(v["request_id"].as_str().map(str::len), Some(32));
}

/// A body that fails to decode before any of the reply has left becomes a
/// refusal, with its own length, and nothing of the upstream's body.
#[test]
fn a_body_that_cannot_be_decoded_is_refused_before_the_head_leaves() {
    let g = Gateway::start(GatewayOpts::default());
    let r = g.get("/svc/corrupt-gzip");
    let length = r.headers().get("content-length").map(|v| v.to_str().expect("ascii").to_owned());
    let status = r.status().as_u16();
    let text = r.text().expect("body");
    let reply = Reply { status, json: serde_json::from_str(&text).unwrap_or_default(), text };
    assert_refused(&reply, 502, "unsanitizable_body");
    assert_eq!(length, Some(reply.text.len().to_string()));
    assert!(!reply.text.contains(FAKE_AWS_KEY));
    let line = r#"capgate_requests_total{decision="error",method="GET",reason="unsanitizable_body",route="svc"} 1"#;
    let m = g.metrics_with(line);
    assert!(m.contains(line), "recorded as an unsanitizable body: {m}");
    assert!(m.contains(r#"capgate_response_bodies_total{handling="unsanitizable"} 1"#), "{m}");
}

/// A declared empty body has nothing to sanitize, decode or block: it is
/// passed with its length, even in a coding capgate cannot decode or as a
/// binary type while binary bodies are blocked (a refusal body could not
/// be sent: the upstream's response ends with its head).
#[test]
fn a_declared_empty_body_is_passed_as_it_is() {
    let g = Gateway::start(GatewayOpts { binary_block: true, ..Default::default() });
    for path in ["/svc/empty-binary", "/svc/empty-in-unknown-coding"] {
        let r = g.get(path);
        assert_eq!(r.status(), 200, "{path}");
        assert_eq!(r.headers().get("content-length").map(|v| v.as_bytes()), Some(&b"0"[..]), "{path}");
        assert!(r.bytes().expect("body").is_empty(), "{path}");
    }
}

#[test]
fn response_header_values_are_scanned() {
    let g = Gateway::start(GatewayOpts::default());
    let r = g.get("/svc/header-leak");
    assert_eq!(r.headers().get("x-debug-token").and_then(|v| v.to_str().ok()), Some("[REDACTED:slack_token]"));
}

#[test]
fn binary_bodies_pass_untouched_or_are_blocked() {
    let g = Gateway::start(GatewayOpts::default());
    let body = g.get("/svc/binary").bytes().expect("body");
    assert!(body.windows(FAKE_AWS_KEY.len()).any(|w| w == FAKE_AWS_KEY.as_bytes()), "binary passes untouched");
    assert!(body.ends_with(&[0xff, 0xfe, 0x00]));
    let m = g.metrics_with(r#"capgate_response_bodies_total{handling="binary_pass"} 1"#);
    assert!(m.contains(r#"capgate_response_bodies_total{handling="binary_pass"} 1"#), "{m}");

    let g = Gateway::start(GatewayOpts { binary_block: true, ..Default::default() });
    let r = g.get("/svc/binary");
    assert_eq!(r.status(), 502);
    let v: serde_json::Value = serde_json::from_str(&r.text().expect("body")).expect("json");
    assert_eq!(v["error"], "binary_blocked");
}

#[test]
fn sse_events_flow_one_by_one() {
    let g = Gateway::start(GatewayOpts::default());
    let r = g.get("/svc/sse");
    assert_eq!(r.status(), 200);
    assert_sse_flows_event_by_event(&g, r);
}

#[test]
fn a_50_mib_body_streams_with_flat_memory() {
    let g = Gateway::start(GatewayOpts::default());
    // Warm up so allocator pools exist before the baseline.
    let _ = g.get("/svc/secrets").text();
    let before = g.rss_kib();
    let mut r = g.get("/svc/big");
    let mut total = 0usize;
    let mut redacted = 0usize;
    let mut peak = before;
    let mut buf = vec![0u8; 256 * 1024];
    let mut carry = String::new();
    loop {
        let n = r.read(&mut buf).expect("read");
        if n == 0 {
            break;
        }
        total += n;
        carry.push_str(&String::from_utf8_lossy(&buf[..n]));
        let cut = carry.rfind('\n').map(|i| i + 1).unwrap_or(0);
        redacted += carry[..cut].matches("[REDACTED:aws_access_key_id]").count();
        assert!(!carry[..cut].contains(FAKE_AWS_KEY));
        carry.drain(..cut);
        peak = peak.max(g.rss_kib());
    }
    assert_eq!(redacted, 800);
    assert!(total > 50 * 1000 * 1000, "{total} bytes");
    let growth_mib = (peak.saturating_sub(before)) / 1024;
    assert!(growth_mib < 24, "gateway RSS grew by {growth_mib} MiB while streaming 50 MiB");
}

#[test]
fn head_requests_stay_correct() {
    let g = Gateway::start(GatewayOpts::default());
    let up = g.upstream.url();
    let deleg = g.delegation(&up, "http/*");
    let client = reqwest::blocking::Client::builder().timeout(Duration::from_secs(10)).build().expect("client");
    for _ in 0..2 {
        let r = client
            .head(g.url("/svc/secrets"))
            .header("authorization", format!("Bearer {}", g.invocation(&up, "http/HEAD", &deleg)))
            .header("ucans", &deleg)
            .send()
            .expect("HEAD completes");
        assert_eq!(r.status(), 200);
        assert!(r.bytes().expect("empty").is_empty());
    }
    // The keep-alive connection is still usable afterwards.
    let r = client
        .get(g.url("/svc/secrets"))
        .header("authorization", format!("Bearer {}", g.invocation(&up, "http/GET", &deleg)))
        .header("ucans", &deleg)
        .send()
        .expect("GET after HEAD");
    assert!(r.text().expect("body").contains("[REDACTED:aws_access_key_id]"));
}

/// Both framings of a sanitized reply keep the agent's connection alive:
/// a `Content-Length` when the whole body came with the head, chunks when
/// the head came alone (or a length, when the gateway was too busy to read
/// the head before the body came).
#[test]
fn sanitized_responses_keep_the_connection_alive() {
    let g = Gateway::start(GatewayOpts::default());
    let up = g.upstream.url();
    let deleg = g.delegation(&up, "http/*");
    let (stream, mut r) = raw_connection(&g);
    for (i, path) in ["/svc/secrets", "/svc/head-first", "/svc/secrets", "/svc/head-first"].into_iter().enumerate() {
        let tok = g.invocation(&up, "http/GET", &deleg);
        write_get(&stream, path, &tok, &deleg);
        let (head, body) = if path == "/svc/secrets" { read_sized(&mut r) } else { read_reply(&mut r) };
        assert!(head.starts_with("http/1.1 200"), "request {i}: {head}");
        assert!(!head.contains("connection: close"), "request {i}: {head}");
        assert!(String::from_utf8_lossy(&body).contains("[REDACTED:aws_access_key_id]"));
    }
}

/// Data segments this socket has received (Linux `tcp_info`).
fn data_segments_in(s: &std::net::TcpStream) -> u32 {
    use std::os::fd::AsRawFd;
    // SAFETY: an all-zero tcp_info is a valid value (plain integers).
    let mut info: libc::tcp_info = unsafe { std::mem::zeroed() };
    let mut len = std::mem::size_of::<libc::tcp_info>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `info`, which outlives the call.
    let rc =
        unsafe { libc::getsockopt(s.as_raw_fd(), libc::IPPROTO_TCP, libc::TCP_INFO, (&mut info as *mut libc::tcp_info).cast(), &mut len) };
    assert_eq!(rc, 0, "getsockopt(TCP_INFO)");
    info.tcpi_data_segs_in
}

/// Five sanitized replies of `path` on one keep-alive connection, in order:
/// the data segments each took to reach the client and whether it was
/// chunked; and how long each took, sorted.
fn segments_per_reply(g: &Gateway, path: &str) -> (Vec<(u32, bool)>, Vec<Duration>) {
    let up = g.upstream.url();
    let deleg = g.delegation(&up, "http/*");
    let (stream, mut r) = raw_connection(g);
    let (mut segments, mut elapsed) = (Vec::new(), Vec::new());
    for i in 0..5 {
        let tok = g.invocation(&up, "http/GET", &deleg);
        let before = data_segments_in(&stream);
        let t0 = Instant::now();
        write_get(&stream, path, &tok, &deleg);
        let (head, body) = read_reply(&mut r);
        elapsed.push(t0.elapsed());
        assert!(head.starts_with("http/1.1 200"), "request {i}: {head}");
        let v: serde_json::Value = serde_json::from_slice(&body).expect("the reply is JSON");
        assert_eq!(v["aws"], "[REDACTED:aws_access_key_id]");
        segments.push((data_segments_in(&stream) - before, head.contains("transfer-encoding: chunked")));
    }
    elapsed.sort();
    (segments, elapsed)
}

/// A reply whose whole body came with the head is sanitized before pingora
/// writes the head, so it carries its exact `Content-Length` (the sanitized
/// length, checked by `read_sized`) and leaves in one segment, where chunked
/// framing costs three writes.
#[test]
fn a_reply_sanitized_whole_before_its_head_leaves_carries_its_length() {
    let g = Gateway::start(GatewayOpts::default());
    let (segments, _) = segments_per_reply(&g, "/svc/secrets");
    assert!(segments.iter().all(|&s| s == (1, false)), "(segments, chunked) per reply: {segments:?}");
}

/// A sanitized reply whose head came alone is chunked; for a body of known
/// length the head is corked, so head, chunk and last chunk leave in one
/// TCP segment instead of three. The cork is cleared once the reply is
/// written, so replies on a keep-alive connection are not held until the
/// kernel's 200 ms limit (the upstream sends the body 50 ms after its head).
#[test]
fn a_small_sanitized_reply_whose_head_came_alone_leaves_in_one_segment() {
    let g = Gateway::start(GatewayOpts::default());
    let (segments, elapsed) = segments_per_reply(&g, "/svc/head-first");
    // Uncorked, every chunked reply is 3 segments. A reply may be 2 when
    // the gateway stalls past the kernel's 200 ms timer between head and
    // end, or sized (1) when it stalls past the upstream's 50 ms before
    // reading the head (a busy CI machine); most must be chunked.
    let chunked = segments.iter().filter(|s| s.1).count();
    let single = segments.iter().filter(|s| s.0 == 1).count();
    assert!(segments.iter().all(|s| s.0 <= 2) && single >= 4 && chunked >= 3, "(segments, chunked) per reply: {segments:?}");
    assert!(elapsed[2] < HEAD_ALONE_FOR + Duration::from_millis(100), "replies were held back: {elapsed:?}");
}

/// A body of known length that arrives in parts is not held back: the head
/// comes alone and is corked, the cork is cleared before the first part is
/// written, so the head and that part reach the agent, as two segments,
/// while the upstream still holds the rest. Were the cork kept, both would
/// leave together, as one segment, only when the kernel's 200 ms timer fired.
#[test]
fn a_body_of_known_length_arriving_in_parts_is_not_held() {
    let g = Gateway::start(GatewayOpts::default());
    let up = g.upstream.url();
    let deleg = g.delegation(&up, "http/*");
    let (stream, mut r) = raw_connection(&g);
    let tok = g.invocation(&up, "http/GET", &deleg);
    let before = data_segments_in(&stream);
    write_get(&stream, "/svc/length-in-parts", &tok, &deleg);
    let head = read_head(&mut r);
    assert!(head.starts_with("http/1.1 200") && head.contains("transfer-encoding: chunked"), "{head}");
    let first = read_chunk(&mut r).expect("a first part");
    assert!(String::from_utf8_lossy(&first).contains("\"part\":1"), "{}", String::from_utf8_lossy(&first));
    assert!(!g.upstream.sent_second.load(Ordering::SeqCst), "the first part arrived only after the upstream sent the rest");
    assert_eq!(data_segments_in(&stream) - before, 2, "the head and the first part were held and sent together");
    g.upstream.go.store(true, Ordering::SeqCst);
    let body = [first, read_chunks(&mut r)].concat();
    let v: serde_json::Value = serde_json::from_slice(&body).expect("the reply is JSON");
    assert_eq!(v["key"], "[REDACTED:aws_access_key_id]");
}

/// An upstream that fails after capgate has sent the head can no longer be
/// answered with a refusal: the reply must end as broken (no last chunk, the
/// connection closed), never as a complete body with a refusal appended.
#[test]
fn an_upstream_failing_mid_body_leaves_the_reply_visibly_broken() {
    use std::io::Read;
    let g = Gateway::start(GatewayOpts::default());
    let up = g.upstream.url();
    let deleg = g.delegation(&up, "http/*");
    let (stream, mut r) = raw_connection(&g);
    let tok = g.invocation(&up, "http/GET", &deleg);
    write_get(&stream, "/svc/dies-mid-body", &tok, &deleg);
    let head = read_head(&mut r);
    assert!(head.starts_with("http/1.1 200") && head.contains("transfer-encoding: chunked"), "{head}");
    let first = read_chunk(&mut r).expect("a first part");
    assert_eq!(first, b"{\"part\":1,");
    g.upstream.go.store(true, Ordering::SeqCst);
    let mut rest = Vec::new();
    r.read_to_end(&mut rest).expect("the connection closes");
    let rest = String::from_utf8_lossy(&rest);
    assert!(!rest.ends_with("0\r\n\r\n"), "the reply was terminated as complete: {rest:?}");
    assert!(!rest.contains("upstream_unavailable"), "a refusal was appended to a 200 body: {rest:?}");
    let line = r#"capgate_requests_total{decision="error",method="GET",reason="upstream_unavailable",route="svc"} 1"#;
    assert!(g.metrics_with(line).contains(line), "recorded as an upstream failure");
}
