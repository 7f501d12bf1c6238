//! Interop: chains minted by the TypeScript reference implementation
//! (`@ucans/ucans` 0.12, UCAN 0.8.1 with inline proofs) verify through the
//! real gateway. `tests/setup.sh` installs the library.

use crate::harness::*;
use std::path::Path;
use std::process::Command;

struct Minted {
    root_did: String,
    invocation: String,
    proofs: Vec<String>,
    ucv: String,
}

fn mint_with_reference_library(gateway_did: &str, resource: &str, ability: &str) -> Minted {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop");
    assert!(
        dir.join("node_modules/@ucans/ucans").exists(),
        "@ucans/ucans is not installed: run `bash tests/setup.sh` (the README test command does)"
    );
    let out = Command::new("node")
        .arg("mint-chain.mjs")
        .args([gateway_did, resource, ability])
        .current_dir(&dir)
        .output()
        .expect("node must be installed (tests/setup.sh installs it)");
    assert!(out.status.success(), "mint-chain.mjs: {}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json line");
    let s = |k: &str| v[k].as_str().expect(k).to_owned();
    Minted {
        root_did: s("root_did"),
        invocation: s("invocation"),
        proofs: v["proofs"].as_array().expect("proofs").iter().map(|p| p.as_str().expect("jwt").to_owned()).collect(),
        ucv: s("ucv"),
    }
}

#[test]
fn a_chain_minted_by_ucans_ucans_is_allowed() {
    let upstream = Upstream::start();
    let gateway_key = new_key();
    let resource = format!("{}/repos/acme", upstream.url());
    let m = mint_with_reference_library(&did(&gateway_key), &resource, "http/GET");
    assert_eq!(m.ucv, "0.8.1", "the reference library writes UCAN 0.8.1");
    let g = Gateway::start(GatewayOpts {
        gateway_key: Some(gateway_key),
        extra_roots: vec![m.root_did.clone()],
        upstream: Some(upstream),
        ..Default::default()
    });
    // Proofs travel inline in 0.8.1; the ucans header is not needed.
    let r = call(&g, "GET", "/svc/repos/acme/issues", Some(&m.invocation), None);
    assert_eq!(r.status, 200, "{}", r.text);
    let seen = g.upstream.requests();
    assert_eq!(seen.len(), 1);
    assert_eq!(seen[0].header("authorization"), Some("Bearer upstream-secret-0123456789"));
    // The same token is single-use (it carries the library's nonce).
    assert_refused(&call(&g, "GET", "/svc/repos/acme/issues", Some(&m.invocation), None), 401, "replayed");
    // A chain from a root this gateway does not trust.
    let m2 = mint_with_reference_library(&g.gateway_did(), &resource, "http/GET");
    assert_refused(&call(&g, "GET", "/svc/repos/acme", Some(&m2.invocation), None), 401, "untrusted_root");
}

#[test]
fn reference_library_tokens_outside_their_grant_are_refused() {
    let upstream = Upstream::start();
    let gateway_key = new_key();
    let resource = format!("{}/repos/acme", upstream.url());
    let m = mint_with_reference_library(&did(&gateway_key), &resource, "http/GET");
    let g = Gateway::start(GatewayOpts {
        gateway_key: Some(gateway_key),
        extra_roots: vec![m.root_did.clone()],
        upstream: Some(upstream),
        ..Default::default()
    });
    let ucans = m.proofs.join(",");
    assert_refused(&call(&g, "GET", "/svc/repos/acme2", Some(&m.invocation), Some(&ucans)), 403, "capability_mismatch");
    assert_refused(&call(&g, "POST", "/svc/repos/acme", Some(&m.invocation), Some(&ucans)), 403, "capability_mismatch");
    assert!(g.upstream.requests().is_empty());
}
