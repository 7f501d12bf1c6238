//! The audit chain through the real proxy: receipts, tampering, crashes,
//! tenants, fail-closed.

use crate::harness::*;
use capgate_filters::ucan::mint::{mint, MintSpec};
use std::path::{Path, PathBuf};

/// Some allowed and denied traffic for tenant acme (and unauthenticated).
fn traffic(g: &Gateway) -> Vec<String> {
    let up = g.upstream.url();
    let deleg = g.delegation(&up, "http/*");
    let mut used = vec![deleg.clone()];
    for i in 0..6 {
        let inv = g.invocation(&up, "http/GET", &deleg);
        assert_eq!(call(g, "GET", &format!("/svc/item/{i}?secret=q{i}"), Some(&inv), Some(&deleg)).status, 200);
        used.push(inv);
    }
    let del = g.invocation(&up, "http/DELETE", &deleg);
    assert_eq!(call(g, "DELETE", "/ro/item/1", Some(&del), Some(&deleg)).status, 403);
    used.push(del);
    assert_eq!(call(g, "GET", "/svc/x", Some("garbage-token-value"), None).status, 401);
    assert_eq!(call(g, "GET", "/nowhere", None, None).status, 404);
    used
}

fn acme_chain(g: &Gateway) -> PathBuf {
    let tenant = g.audit_dir().join("acme");

    std::fs::read_dir(&tenant).expect("tenant dir").flatten().next().expect("chain dir").path()
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read").flatten() {
        if e.path().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
        }
    }
}

fn segment(dir: &Path) -> PathBuf {
    dir.join("segment-000001.jsonl")
}

fn failure(v: &serde_json::Value) -> (String, u64) {
    let f = v["chains"].as_array().and_then(|c| c.iter().find_map(|c| c["failure"].as_object().cloned())).expect("a failure");
    (f["kind"].as_str().unwrap_or("").to_owned(), f["seq"].as_u64().unwrap_or(0))
}

#[test]
fn every_request_leaves_a_receipt_with_no_secret_in_it() {
    let mut g = Gateway::start(GatewayOpts::default());
    let used = traffic(&g);
    g.stop();
    let (code, report) = g.verify_audit(&g.audit_dir());
    assert_eq!(code, 0, "{report}");
    let text = std::fs::read_to_string(segment(&acme_chain(&g))).expect("segment");
    let events: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).expect("json")).collect();
    assert_eq!(events.len(), 7, "6 allowed + 1 denied for acme");
    assert_eq!(events[0]["decision"], "allow");
    assert_eq!(events[0]["path"], "/svc/item/0", "the query is dropped");
    assert_eq!(events[6]["decision"], "deny");
    assert_eq!(events[6]["reason"], "policy_denied");
    assert_eq!(events[6]["policy_ids"][0], "delete-forbidden");
    assert!(events[0]["token_cid"].as_str().is_some_and(|c| c.starts_with("bafkrei")));
    assert_eq!(events[0]["upstream_status"], 200);
    // Unauthenticated refusals are on their own chain.
    let unauth = g.audit_dir().join("_unauthenticated");
    let all: String = walk(&unauth).iter().map(|p| std::fs::read_to_string(p).unwrap_or_default()).collect();
    assert!(all.contains("\"reason\":\"token_malformed\"") && all.contains("\"reason\":\"no_route\""));
    // Nothing secret anywhere in the audit trail.
    let everything: String = walk(&g.audit_dir()).iter().map(|p| std::fs::read_to_string(p).unwrap_or_default()).collect();
    for secret in used.iter().map(String::as_str).chain(["upstream-secret-0123456789", "garbage-token-value", "secret=q"]) {
        assert!(!everything.contains(secret), "the audit trail holds a secret");
    }
    // A final root was signed at shutdown.
    let roots = std::fs::read_to_string(acme_chain(&g).join("roots.jsonl")).expect("roots");
    assert!(roots.lines().last().is_some_and(|l| l.contains("\"seq\":7")), "{roots}");
}

/// A tampering case: its name, what it does to a copy of the chain, and the
/// failure kind and sequence number the verifier must report.
type Tamper<'a> = (&'a str, Box<dyn Fn(&Path) + 'a>, &'a str, u64);

fn walk(d: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
        if e.path().is_dir() {
            out.extend(walk(&e.path()));
        } else {
            out.push(e.path());
        }
    }
    out
}

#[test]
fn the_tamper_matrix() {
    let mut g = Gateway::start(GatewayOpts::default());
    traffic(&g);
    g.stop();
    let original = acme_chain(&g);
    let lines: Vec<String> = std::fs::read_to_string(segment(&original)).expect("segment").lines().map(str::to_owned).collect();
    let cases: Vec<Tamper> = vec![
        (
            "edit a field",
            Box::new(|d: &Path| {
                let mut l = lines.clone();
                l[2] = l[2].replace("\"decision\":\"allow\"", "\"decision\":\"deny\"");
                std::fs::write(segment(d), l.join("\n") + "\n").expect("write");
            }),
            "edited",
            3,
        ),
        (
            "delete a line",
            Box::new(|d: &Path| {
                let mut l = lines.clone();
                l.remove(3);
                std::fs::write(segment(d), l.join("\n") + "\n").expect("write");
            }),
            "missing",
            4,
        ),
        (
            "swap two lines",
            Box::new(|d: &Path| {
                let mut l = lines.clone();
                l.swap(1, 2);
                std::fs::write(segment(d), l.join("\n") + "\n").expect("write");
            }),
            "reordered",
            2,
        ),
        (
            "insert a forged line with a recomputed hash",
            Box::new(|d: &Path| {
                let mut l = lines.clone();
                let prev: serde_json::Value = serde_json::from_str(&l[3]).expect("json");
                let mut forged: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&l[4]).expect("json");
                forged.insert("request_id".into(), "forged".into());
                forged.insert("prev".into(), prev["hash"].clone());
                let canon = {
                    let mut m = forged.clone();
                    m.remove("hash");
                    serde_jcs::to_vec(&serde_json::Value::Object(m)).expect("jcs")
                };
                let mut h = <sha2::Sha256 as sha2::Digest>::new();
                sha2::Digest::update(&mut h, prev["hash"].as_str().expect("hash").as_bytes());
                sha2::Digest::update(&mut h, &canon);
                let hex: String = sha2::Digest::finalize(h).iter().map(|b| format!("{b:02x}")).collect();
                forged.insert("hash".into(), hex.into());
                l.insert(4, serde_json::Value::Object(forged).to_string());
                std::fs::write(segment(d), l.join("\n") + "\n").expect("write");
            }),
            "inserted",
            5,
        ),
        (
            "truncate",
            Box::new(|d: &Path| {
                std::fs::write(segment(d), lines[..5].join("\n") + "\n").expect("write");
            }),
            "missing",
            6,
        ),
        (
            "flip a signature byte",
            Box::new(|d: &Path| {
                let roots = std::fs::read_to_string(d.join("roots.jsonl")).expect("roots");
                let mut r: Vec<serde_json::Value> = roots.lines().map(|l| serde_json::from_str(l).expect("json")).collect();
                let sig = r[0]["sig"].as_str().expect("sig").to_owned();
                let flipped = format!("{}{}", if sig.starts_with('A') { 'B' } else { 'A' }, &sig[1..]);
                r[0]["sig"] = flipped.into();
                let text: String = r.iter().map(|v| v.to_string() + "\n").collect();
                std::fs::write(d.join("roots.jsonl"), text).expect("write");
            }),
            "bad_root_signature",
            0,
        ),
    ];
    for (name, damage, kind, seq) in cases {
        let copy = tempfile::tempdir().expect("tmp");
        copy_dir(&original, copy.path());
        damage(copy.path());
        let (code, report) = g.verify_audit(copy.path());
        assert_eq!(code, 1, "{name}: {report}");
        let (k, s) = failure(&report);
        assert_eq!(k, kind, "{name}: {report}");
        if seq > 0 {
            assert_eq!(s, seq, "{name}: {report}");
        }
    }
    let (code, _) = g.verify_audit(&original);
    assert_eq!(code, 0, "the undamaged original still verifies");
    let out =
        std::process::Command::new(BIN).args(["audit", "verify", "/nonexistent-dir", "--pubkey", "did:key:z6Mk"]).output().expect("run");
    assert_eq!(out.status.code(), Some(2), "usage or I/O errors exit 2");
}

#[test]
fn kill_9_under_load_then_restart_continues_the_chain() {
    let mut g = Gateway::start(GatewayOpts::default());
    let up = g.upstream.url();
    let deleg = g.delegation(&up, "http/*");
    let tokens: Vec<String> = (0..300).map(|_| g.invocation(&up, "http/GET", &deleg)).collect();
    let url = g.url("/svc/load");
    let d2 = deleg.clone();
    let load = std::thread::spawn(move || {
        let client = reqwest::blocking::Client::new();
        for t in tokens {
            let _ = client.get(&url).header("authorization", format!("Bearer {t}")).header("ucans", &d2).send();
        }
    });
    std::thread::sleep(std::time::Duration::from_millis(150));
    g.crash();
    let _ = load.join();
    // The crashed gateway's files verify as they are: the zero-filled space
    // ahead of the live segment's last event holds nothing.
    let chain = acme_chain(&g);
    let seg = std::fs::read(segment(&chain)).expect("segment");
    let end = seg.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
    assert!(end < seg.len(), "the live segment was zero-filled ahead of its events");
    let (code, report) = g.verify_audit(&g.audit_dir());
    assert_eq!(code, 0, "{report}");
    // An export of it ends each segment at its last event.
    let bundle = tempfile::tempdir().expect("tmp");
    let out = g.cli(&["audit", "export", "--tenant", "acme", "--out", bundle.path().to_str().expect("utf8")], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let exported = walk(bundle.path()).into_iter().find(|p| p.to_string_lossy().ends_with("segment-000001.jsonl")).expect("exported");
    assert_eq!(std::fs::read(&exported).expect("read"), seg[..end]);
    // Simulate a write torn by the crash: cut off where the next commit goes.
    let f = std::fs::OpenOptions::new().write(true).open(segment(&chain)).expect("segment");
    std::os::unix::fs::FileExt::write_all_at(&f, b"{\"seq\":99999,\"tenant\":\"acme\",\"decis", end as u64).expect("torn write");
    drop(f);
    g.spawn();
    for _ in 0..3 {
        assert_eq!(call(&g, "GET", "/svc/after", Some(&g.invocation(&up, "http/GET", &deleg)), Some(&deleg)).status, 200);
    }
    g.stop();
    let (code, report) = g.verify_audit(&g.audit_dir());
    assert_eq!(code, 0, "{report}");
    let notes = report.to_string();
    assert!(notes.contains("torn tail"), "the truncation is reported: {report}");
    let moved: Vec<PathBuf> = walk(&chain).into_iter().filter(|p| p.to_string_lossy().contains("torn-")).collect();
    assert_eq!(moved.len(), 1, "the torn bytes were moved aside");
    assert_eq!(std::fs::read(&moved[0]).expect("torn"), b"{\"seq\":99999,\"tenant\":\"acme\",\"decis");
}

#[test]
fn tenants_have_separate_chains_and_exports() {
    let mut g = Gateway::start(GatewayOpts::default());
    let up = g.upstream.url();
    traffic(&g);
    // Tenant "other": its own root, same route.
    let agent = new_key();
    let d = mint(
        &g.other_root_key,
        &MintSpec { audience: did(&agent), capabilities: vec![(up.clone(), "http/*".into())], expires: now() + 600, ..Default::default() },
    );
    let inv = mint(
        &agent,
        &MintSpec {
            audience: g.gateway_did(),
            capabilities: vec![(up.clone(), "http/GET".into())],
            expires: now() + 30,
            nonce: Some(nonce()),
            proofs: vec![d.clone()],
            ..Default::default()
        },
    );
    // "other" has no credential for the route: a 502, still audited on its chain.
    assert_eq!(call(&g, "GET", "/svc/o", Some(&inv), Some(&d)).status, 502);
    g.stop();
    let bundle = tempfile::tempdir().expect("tmp");
    let out = g.cli(&["audit", "export", "--tenant", "other", "--out", bundle.path().to_str().expect("utf8")], None);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let texts: String = walk(bundle.path())
        .iter()
        .filter(|p| p.to_string_lossy().contains("segment-"))
        .map(|p| std::fs::read_to_string(p).unwrap_or_default())
        .collect();
    assert_eq!(texts.lines().count(), 1);
    assert!(texts.lines().all(|l| l.contains("\"tenant\":\"other\"")));
    // The bundle verifies on its own (pubkey file inside).
    let out = std::process::Command::new(BIN).args(["audit", "verify"]).arg(bundle.path()).output().expect("verify");
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    // Mixing acme's events into other's chain is caught.
    let other_chain = walk(bundle.path()).into_iter().find(|p| p.to_string_lossy().contains("segment-")).expect("segment");
    let acme_lines = std::fs::read_to_string(segment(&acme_chain(&g))).expect("acme");
    let mut mixed = std::fs::read_to_string(&other_chain).expect("other");
    mixed.push_str(acme_lines.lines().nth(1).expect("line"));
    mixed.push('\n');
    std::fs::write(&other_chain, mixed).expect("write");
    let (code, report) = g.verify_audit(bundle.path());
    assert_eq!(code, 1, "{report}");
    assert_eq!(failure(&report).0, "inserted");
}

#[test]
fn an_audit_trail_that_cannot_be_written_fails_closed() {
    let g = Gateway::start(GatewayOpts::default());
    let up = g.upstream.url();
    let deleg = g.delegation(&up, "http/*");
    assert_eq!(call(&g, "GET", "/svc/a", Some(&g.invocation(&up, "http/GET", &deleg)), Some(&deleg)).status, 200);
    // The chain's files vanish underneath the writer (as root, permissions
    // would not stop it, so removal stands in for an unwritable directory).
    std::fs::remove_dir_all(g.audit_dir().join("acme")).expect("remove");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let r = call(&g, "GET", "/svc/a", Some(&g.invocation(&up, "http/GET", &deleg)), Some(&deleg));
        if r.status == 503 {
            assert_refused(&r, 503, "audit_unavailable");
            break;
        }
        assert!(std::time::Instant::now() < deadline, "requests were still served: {}", r.text);
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // The refusal is counted in `logging`, just after the reply is sent.
    let line = r#"capgate_requests_total{decision="error",method="GET",reason="audit_unavailable",route="none"} 1"#;
    let m = g.metrics_with(line);
    assert!(m.contains("capgate_audit_healthy 0"), "{m}");
    assert!(m.lines().any(|l| l == line), "{m}");
    let ready = reqwest::blocking::get(format!("http://127.0.0.1:{}/readyz", g.admin_port)).expect("readyz");
    assert_eq!(ready.status(), 503);
}

/// The voluntary context switches of the gateway's audit writer threads.
fn audit_writer_wakeups(pid: u32) -> u64 {
    let mut total = 0;
    for t in std::fs::read_dir(format!("/proc/{pid}/task")).expect("/proc/<pid>/task").flatten() {
        let comm = std::fs::read_to_string(t.path().join("comm")).unwrap_or_default();
        if !comm.starts_with("audit-") {
            continue;
        }
        let status = std::fs::read_to_string(t.path().join("status")).unwrap_or_default();
        let n = status.lines().find_map(|l| l.strip_prefix("voluntary_ctxt_switches:")).and_then(|n| n.trim().parse::<u64>().ok());
        total += n.expect("voluntary_ctxt_switches");
    }
    total
}

/// A quiet gateway's audit writers park: over two idle seconds its two
/// chains (acme and unauthenticated) wake for their once-a-second check and
/// roots, not every 5-ms commit interval (about 800 times in all), and the
/// request that ends the quiet is still on the chain, which verifies.
#[test]
fn idle_audit_writers_park_and_the_next_request_is_still_recorded() {
    let mut g = Gateway::start(GatewayOpts::default());
    let up = g.upstream.url();
    let deleg = g.delegation(&up, "http/*");
    assert_eq!(call(&g, "GET", "/svc/a", Some(&g.invocation(&up, "http/GET", &deleg)), Some(&deleg)).status, 200);
    std::thread::sleep(std::time::Duration::from_millis(100));
    let pid = g.child.as_ref().expect("gateway process").id();
    let before = audit_writer_wakeups(pid);
    assert!(before > 0, "no audit writer threads found");
    std::thread::sleep(std::time::Duration::from_secs(2));
    let woke = audit_writer_wakeups(pid) - before;
    assert!(woke <= 20, "the idle audit writers woke {woke} times in 2 s");
    assert_eq!(call(&g, "GET", "/svc/b", Some(&g.invocation(&up, "http/GET", &deleg)), Some(&deleg)).status, 200);
    g.stop();
    let (code, report) = g.verify_audit(&g.audit_dir());
    assert_eq!(code, 0, "{report}");
    let text = std::fs::read_to_string(segment(&acme_chain(&g))).expect("segment");
    let paths: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).expect("json"))
        .filter_map(|e| e["path"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(paths, ["/svc/a", "/svc/b"]);
}

#[test]
fn audit_can_be_turned_off_for_benchmarks_and_says_so() {
    let mut g = Gateway::start(GatewayOpts { audit_disabled: true, ..GatewayOpts::default() });
    let up = g.upstream.url();
    let deleg = g.delegation(&up, "http/*");
    assert_eq!(call(&g, "GET", "/svc/a", Some(&g.invocation(&up, "http/GET", &deleg)), Some(&deleg)).status, 200);
    assert_refused(&call(&g, "GET", "/nowhere", None, None), 404, "no_route");
    let m = g.metrics();
    assert!(!m.contains(r#"capgate_audit_events_total{result="written"}"#), "{m}");
    g.stop();
    assert!(g.log().contains("requests are NOT audited"), "{}", g.log());
    let files = if g.audit_dir().exists() { walk(&g.audit_dir()) } else { Vec::new() };
    assert!(!files.iter().any(|p| p.to_string_lossy().contains("segment-")), "no events were written: {files:?}");
}
