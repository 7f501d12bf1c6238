//! Revocation, the authenticated admin API and live policy reload, through
//! the real binary.

use crate::harness::*;
use capgate_filters::ucan::mint::{mint, MintSpec};
use capgate_filters::ucan::Cid;

#[test]
fn a_revoked_cid_is_refused_on_the_next_request_even_when_cached() {
    let g = Gateway::start(GatewayOpts { replay_protection: false, ..Default::default() });
    let up = g.upstream.url();
    let deleg = g.delegation(&up, "http/*");
    let inv = g.invocation(&up, "http/GET", &deleg);
    assert_eq!(call(&g, "GET", "/svc/a", Some(&inv), Some(&deleg)).status, 200);
    assert_eq!(call(&g, "GET", "/svc/a", Some(&inv), Some(&deleg)).status, 200, "now cached");
    let cid = Cid::of(deleg.as_bytes()).to_string();
    let r = g.admin("POST", "/v1/revocations", Some(&g.admin_token(&g.operator_key)), Some(serde_json::json!({"cid": cid})));
    assert_eq!(r.status, 201, "{}", r.text);
    assert_refused(&call(&g, "GET", "/svc/a", Some(&inv), Some(&deleg)), 401, "revoked");
    // Every chain through the revoked delegation is dead, fresh tokens too.
    assert_refused(&call(&g, "GET", "/svc/a", Some(&g.invocation(&up, "http/GET", &deleg)), Some(&deleg)), 401, "revoked");
    // Listed, and persisted across a restart.
    let list = g.admin("GET", "/v1/revocations", Some(&g.admin_token(&g.operator_key)), None);
    assert!(list.text.contains(&cid), "{}", list.text);
}

#[test]
fn revoking_the_delegating_did_kills_its_children_and_survives_restart() {
    let mut g = Gateway::start(GatewayOpts::default());
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
            capabilities: vec![(up.clone(), "http/*".into())],
            expires: now() + 600,
            proofs: vec![d1.clone()],
            ..Default::default()
        },
    );
    let ucans = format!("{d1},{d2}");
    assert_eq!(call(&g, "GET", "/svc/a", Some(&g.invocation(&up, "http/GET", &d2)), Some(&ucans)).status, 200);
    // The CLI revokes the middle DID with a tenant-root admin token.
    let root_pem = g.dir.path().join("root.pem");
    write_key(&root_pem, &g.root_key);
    let admin = format!("127.0.0.1:{}", g.admin_port);
    let out = g.cli(&["revoke", "--did", &did(&mid), "--key", root_pem.to_str().expect("utf8"), "--admin", &admin], None);
    assert!(out.status.success(), "{} {}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_refused(&call(&g, "GET", "/svc/a", Some(&g.invocation(&up, "http/GET", &d2)), Some(&ucans)), 401, "revoked");
    // A chain that does not pass through it still works.
    let direct = g.delegation(&up, "http/*");
    assert_eq!(call(&g, "GET", "/svc/a", Some(&g.invocation(&up, "http/GET", &direct)), Some(&direct)).status, 200);
    g.stop();
    g.spawn();
    assert_refused(&call(&g, "GET", "/svc/a", Some(&g.invocation(&up, "http/GET", &d2)), Some(&ucans)), 401, "revoked");
}

#[test]
fn the_admin_api_is_authenticated_and_tenant_scoped() {
    let g = Gateway::start(GatewayOpts::default());
    for (m, p) in [("GET", "/v1/revocations"), ("POST", "/v1/revocations"), ("POST", "/v1/policies/reload"), ("GET", "/v1/audit/pubkey")] {
        let r = g.admin(m, p, None, None);
        assert_eq!((r.status, r.error()), (401, "admin_unauthenticated"), "{m} {p}: {}", r.text);
    }
    // An agent's key is no admin, nor is a token without capgate:admin.
    let r = g.admin("GET", "/v1/revocations", Some(&g.admin_token(&g.agent_key)), None);
    assert_eq!(r.status, 401, "{}", r.text);
    let wrong_cap = mint(
        &g.root_key,
        &MintSpec {
            audience: g.gateway_did(),
            capabilities: vec![(g.upstream.url(), "http/GET".into())],
            expires: now() + 60,
            ..Default::default()
        },
    );
    assert_eq!(g.admin("GET", "/v1/revocations", Some(&wrong_cap), None).error(), "admin_forbidden");
    // Tenant "other" revokes in its own tenant; acme's admin cannot see it or act for other.
    let other_admin = g.admin_token(&g.other_root_key);
    let victim = did(&new_key());
    let r = g.admin("POST", "/v1/revocations", Some(&other_admin), Some(serde_json::json!({"did": victim})));
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json["revoked"]["tenant"], "other");
    let acme_admin = g.admin_token(&g.root_key);
    let list = g.admin("GET", "/v1/revocations", Some(&acme_admin), None);
    assert_eq!(list.status, 200);
    assert!(!list.text.contains(&victim), "cross-tenant listing: {}", list.text);
    let r = g.admin("POST", "/v1/revocations", Some(&acme_admin), Some(serde_json::json!({"did": victim, "tenant": "other"})));
    assert_eq!((r.status, r.error()), (403, "admin_forbidden"), "{}", r.text);
    assert_eq!(g.admin("POST", "/v1/policies/reload", Some(&acme_admin), None).error(), "admin_forbidden");
    // Open endpoints stay open.
    assert_eq!(g.admin("GET", "/healthz", None, None).status, 200);
    assert_eq!(g.admin("GET", "/metrics", None, None).status, 200);
}

#[test]
fn a_broken_policy_is_refused_while_traffic_flows_and_a_good_one_takes_effect() {
    let g = Gateway::start(GatewayOpts::default());
    let up = g.upstream.url();
    let deleg = g.delegation(&up, "http/*");
    let authz = g.dir.path().join("policies/authz.cedar");
    let original = std::fs::read_to_string(&authz).expect("authz");
    std::fs::write(&authz, format!("{original}\npermit(principal, action, resource) when {{ context.nope }};")).expect("write");
    let op = g.admin_token(&g.operator_key);
    let r = g.admin("POST", "/v1/policies/reload", Some(&op), None);
    assert_eq!((r.status, r.error()), (422, "policy_invalid"), "{}", r.text);
    assert!(r.json["reason"].as_str().unwrap_or("").contains("nope"), "the parser's message: {}", r.text);
    assert_eq!(call(&g, "GET", "/svc/a", Some(&g.invocation(&up, "http/GET", &deleg)), Some(&deleg)).status, 200, "old set serves");
    // A good set that forbids reads under /svc/blocked takes effect (via the CLI here).
    std::fs::write(
        &authz,
        format!("{original}\n@id(\"no-blocked\") forbid(principal, action, resource) when {{ context.path like \"/blocked*\" }};"),
    )
    .expect("write");
    let op_pem = g.dir.path().join("op.pem");
    write_key(&op_pem, &g.operator_key);
    let out =
        g.cli(&["policy", "reload", "--key", op_pem.to_str().expect("utf8"), "--admin", &format!("127.0.0.1:{}", g.admin_port)], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let r = call(&g, "GET", "/svc/blocked/x", Some(&g.invocation(&up, "http/GET", &deleg)), Some(&deleg));
    assert_refused(&r, 403, "policy_denied");
    assert!(r.text.contains("no-blocked"));
    let m = g.metrics();
    assert!(
        m.contains(r#"capgate_policy_reloads_total{result="error"}"#) && m.contains(r#"capgate_policy_reloads_total{result="ok"}"#),
        "{m}"
    );
}

#[test]
fn sighup_and_the_file_watch_reload_policies() {
    let g = Gateway::start(GatewayOpts::default());
    let up = g.upstream.url();
    let deleg = g.delegation(&up, "http/*");
    let authz = g.dir.path().join("policies/authz.cedar");
    let original = std::fs::read_to_string(&authz).expect("authz");
    std::fs::write(&authz, format!("{original}\n@id(\"watch\") forbid(principal, action, resource) when {{ context.path like \"/w*\" }};"))
        .expect("write");
    let pid = g.child.as_ref().expect("running").id();
    let _ = std::process::Command::new("kill").args(["-HUP", &pid.to_string()]).status();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(8);
    loop {
        let r = call(&g, "GET", "/svc/w", Some(&g.invocation(&up, "http/GET", &deleg)), Some(&deleg));
        if r.status == 403 {
            assert!(r.text.contains("watch"));
            break;
        }
        assert!(std::time::Instant::now() < deadline, "policy change not picked up: {}", r.text);
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

fn approve_with_cli(g: &Gateway, key: &ed25519_dalek::SigningKey, id: &str, verb: &str) -> std::process::Output {
    let pem = g.dir.path().join(format!("k-{}.pem", rand::random::<u32>()));
    write_key(&pem, key);
    g.cli(&[verb, id, "--key", pem.to_str().expect("utf8"), "--admin", &format!("127.0.0.1:{}", g.admin_port)], None)
}

fn delete(g: &Gateway, path: &str, deleg: &str, approval: Option<&str>, body: Option<&str>) -> Reply {
    let up = g.upstream.url();
    let client = reqwest::blocking::Client::builder().timeout(std::time::Duration::from_secs(30)).build().expect("client");
    let mut req = client
        .delete(g.url(path))
        .header("authorization", format!("Bearer {}", g.invocation(&up, "http/DELETE", deleg)))
        .header("ucans", deleg);
    if let Some(a) = approval {
        req = req.header("capgate-approval", a);
    }
    if let Some(b) = body {
        req = req.body(b.to_owned());
    }
    send(req)
}

#[test]
fn a_risky_call_needs_a_cosigner_bound_to_the_exact_request() {
    let g = Gateway::start(GatewayOpts::default());
    let up = g.upstream.url();
    let deleg = g.delegation(&up, "http/*");
    let r = delete(&g, "/svc/repos/a", &deleg, None, None);
    assert_refused(&r, 403, "step_up_required");
    let id = r.json["approval_id"].as_str().expect("approval id").to_owned();
    assert_eq!(r.json["action"], format!("DELETE {up}/repos/a"));
    assert_eq!(r.json["tier"], "danger");
    assert!(r.json["reasons"]
        .as_array()
        .is_some_and(|a| a.iter().any(|x| x["id"] == "risk-delete" && x["reason"] == "DELETE removes data")));
    assert!(r.json["expires_at"].as_str().is_some_and(|t| t.ends_with('Z')));
    // An identical retry finds the same approval.
    assert_eq!(delete(&g, "/svc/repos/a", &deleg, None, None).json["approval_id"], id.as_str());
    // Not approved yet: the header alone does nothing.
    assert_refused(&delete(&g, "/svc/repos/a", &deleg, Some(&id), None), 403, "approval_invalid");
    // A cosigner that is not an approver is refused.
    let out = approve_with_cli(&g, &g.operator_key, &id, "approve");
    assert!(!out.status.success());
    // The approver grants it through the CLI.
    let out = approve_with_cli(&g, &g.approver_key, &id, "approve");
    assert!(out.status.success(), "{} {}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    // It cannot release another path, another body, or another agent.
    assert_refused(&delete(&g, "/svc/repos/b", &deleg, Some(&id), None), 403, "approval_invalid");
    assert_refused(&delete(&g, "/svc/repos/a", &deleg, Some(&id), Some("{\"force\":true}")), 403, "approval_invalid");
    let other_agent = new_key();
    let d2 = mint(
        &g.root_key,
        &MintSpec {
            audience: did(&other_agent),
            capabilities: vec![(up.clone(), "http/*".into())],
            expires: now() + 600,
            ..Default::default()
        },
    );
    let inv2 = mint(
        &other_agent,
        &MintSpec {
            audience: g.gateway_did(),
            capabilities: vec![(up.clone(), "http/DELETE".into())],
            expires: now() + 30,
            nonce: Some(nonce()),
            proofs: vec![d2.clone()],
            ..Default::default()
        },
    );
    let r = send(
        reqwest::blocking::Client::new()
            .delete(g.url("/svc/repos/a"))
            .header("authorization", format!("Bearer {inv2}"))
            .header("ucans", &d2)
            .header("capgate-approval", &id),
    );
    assert_refused(&r, 403, "approval_invalid");
    // Nor the same agent and request under another tenant's chain.
    let out = g.cli(&["vault", "put", "--tenant", "other", "--name", "svc"], Some("other-tenant-credential\n"));
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let pid = g.child.as_ref().map(|c| c.id()).expect("running");
    let _ = std::process::Command::new("kill").args(["-HUP", &pid.to_string()]).status();
    let m = g.metrics_with(r#"capgate_vault_reloads_total{result="ok"} 1"#);
    assert!(m.contains(r#"capgate_vault_reloads_total{result="ok"} 1"#), "SIGHUP reloads the vault: {m}");
    let d3 = mint(
        &g.other_root_key,
        &MintSpec {
            audience: did(&g.agent_key),
            capabilities: vec![(up.clone(), "http/*".into())],
            expires: now() + 600,
            ..Default::default()
        },
    );
    let r = delete(&g, "/svc/repos/a", &d3, Some(&id), None);
    assert_refused(&r, 403, "approval_invalid");
    assert!(g.upstream.requests().is_empty(), "nothing reached the upstream yet");
    // The matching retry passes, once.
    let r = delete(&g, "/svc/repos/a", &deleg, Some(&id), None);
    assert_eq!(r.status, 200, "{}", r.text);
    assert_refused(&delete(&g, "/svc/repos/a", &deleg, Some(&id), None), 403, "approval_invalid");
    assert_eq!(g.upstream.requests().len(), 1);
    // The log names the cosigner and the approver.
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(g.log().contains(&did(&g.approver_key)), "approver DID in the log");
}

#[test]
fn a_risky_body_is_bound_and_forwarded_and_oversized_ones_are_refused() {
    let g = Gateway::start(GatewayOpts::default());
    let up = g.upstream.url();
    let deleg = g.delegation(&up, "http/*");
    let body = "{\"purge\":\"all\"}";
    let r = delete(&g, "/svc/repos/c", &deleg, None, Some(body));
    let id = r.json["approval_id"].as_str().expect("approval id").to_owned();
    assert!(approve_with_cli(&g, &g.approver_key, &id, "approve").status.success());
    let r = delete(&g, "/svc/repos/c", &deleg, Some(&id), Some(body));
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(g.upstream.requests()[0].body, body.as_bytes(), "the buffered body was forwarded intact");
    let big = "x".repeat(70 * 1024);
    assert_refused(&delete(&g, "/svc/repos/c", &deleg, None, Some(&big)), 413, "step_up_body_too_large");
}

#[test]
fn a_denied_approval_stays_denied_and_survives_restart() {
    let mut g = Gateway::start(GatewayOpts::default());
    let up = g.upstream.url();
    let deleg = g.delegation(&up, "http/*");
    let id = delete(&g, "/svc/repos/d", &deleg, None, None).json["approval_id"].as_str().expect("id").to_owned();
    g.stop();
    g.spawn();
    // The pending approval survived the restart.
    assert_eq!(delete(&g, "/svc/repos/d", &deleg, None, None).json["approval_id"], id.as_str());
    assert!(approve_with_cli(&g, &g.approver_key, &id, "deny").status.success());
    assert_refused(&delete(&g, "/svc/repos/d", &deleg, Some(&id), None), 403, "approval_invalid");
}

#[test]
fn hold_mode_releases_a_waiting_request() {
    let g = Gateway::start(GatewayOpts { hold_secs: 15, ..Default::default() });
    let up = g.upstream.url();
    let deleg = g.delegation(&up, "http/*");
    let inv = g.invocation(&up, "http/DELETE", &deleg);
    let url = g.url("/svc/repos/h");
    let d2 = deleg.clone();
    let waiting = std::thread::spawn(move || {
        send(
            reqwest::blocking::Client::builder()
                .timeout(std::time::Duration::from_secs(30))
                .build()
                .expect("client")
                .delete(url)
                .header("authorization", format!("Bearer {inv}"))
                .header("ucans", d2),
        )
    });
    let op = g.admin_token(&g.operator_key);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let id = loop {
        let list = g.admin("GET", "/v1/approvals", Some(&op), None);
        if let Some(id) = list.json["approvals"].as_array().and_then(|a| a.first()).and_then(|a| a["id"].as_str()) {
            break id.to_owned();
        }
        assert!(std::time::Instant::now() < deadline, "no pending approval appeared");
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    assert!(!waiting.is_finished(), "the request is being held");
    assert!(approve_with_cli(&g, &g.approver_key, &id, "approve").status.success());
    let r = waiting.join().expect("thread");
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(g.upstream.requests().len(), 1);
}

#[test]
fn budgets_are_hit_at_exactly_max_calls_and_rates_refill() {
    let g = Gateway::start(GatewayOpts {
        extra_config: r#"
[[budgets]]
route = "svc"
ability = "http/POST"
max_calls = 3

[[budgets]]
route = "ro"
ability = "http/GET"
rate_per_minute = 60
burst = 2
"#
        .into(),
        ..Default::default()
    });
    let up = g.upstream.url();
    let deleg = g.delegation(&up, "http/*");
    for i in 0..3 {
        let r = call(&g, "POST", "/svc/things", Some(&g.invocation(&up, "http/POST", &deleg)), Some(&deleg));
        assert_eq!(r.status, 200, "call {i}: {}", r.text);
    }
    let client = reqwest::blocking::Client::new();
    let r = client
        .post(g.url("/svc/things"))
        .header("authorization", format!("Bearer {}", g.invocation(&up, "http/POST", &deleg)))
        .header("ucans", &deleg)
        .send()
        .expect("send");
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers().get("retry-after").and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok()).expect("Retry-After");
    assert!(retry > 0 && retry <= 3600);
    let v: serde_json::Value = serde_json::from_str(&r.text().expect("body")).expect("json");
    assert_eq!(v["error"], "budget_exhausted");
    // GETs on the same route are not counted; another delegation has its own budget.
    assert_eq!(call(&g, "GET", "/svc/things", Some(&g.invocation(&up, "http/GET", &deleg)), Some(&deleg)).status, 200);
    // (a different expiry makes it a different token, so a different CID)
    let fresh = mint(
        &g.root_key,
        &MintSpec {
            audience: did(&g.agent_key),
            capabilities: vec![(up.clone(), "http/*".into())],
            expires: now() + 1800,
            ..Default::default()
        },
    );
    assert_ne!(fresh, deleg);
    assert_eq!(call(&g, "POST", "/svc/things", Some(&g.invocation(&up, "http/POST", &fresh)), Some(&fresh)).status, 200);
    // The per-agent rate: a burst of 2, then 429 with Retry-After.
    assert_eq!(call(&g, "GET", "/ro/a", Some(&g.invocation(&up, "http/GET", &deleg)), Some(&deleg)).status, 200);
    assert_eq!(call(&g, "GET", "/ro/a", Some(&g.invocation(&up, "http/GET", &deleg)), Some(&deleg)).status, 200);
    assert_refused(&call(&g, "GET", "/ro/a", Some(&g.invocation(&up, "http/GET", &deleg)), Some(&deleg)), 429, "budget_exhausted");
    std::thread::sleep(std::time::Duration::from_millis(1100));
    assert_eq!(call(&g, "GET", "/ro/a", Some(&g.invocation(&up, "http/GET", &deleg)), Some(&deleg)).status, 200, "refilled");
}
