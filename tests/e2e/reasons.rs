//! Every token reason code, produced by a crafted token through the real
//! pipeline, asserting status and code.

use crate::harness::*;
use capgate_filters::ucan::b64;
use capgate_filters::ucan::mint::{mint, sign_parts, MintSpec};

fn spec(g: &Gateway, with: &str, can: &str, proof: &str) -> MintSpec {
    MintSpec {
        audience: g.gateway_did(),
        capabilities: vec![(with.into(), can.into())],
        expires: now() + 30,
        nonce: Some(nonce()),
        proofs: vec![proof.into()],
        ..Default::default()
    }
}

#[test]
fn each_reason_code_comes_from_the_pipeline() {
    let g = Gateway::start(GatewayOpts::default());
    let up = g.upstream.url();
    let deleg = g.delegation(&up, "http/*");
    let get = |t: &str, u: Option<&str>| call(&g, "GET", "/svc/x", Some(t), u);

    assert_refused(&call(&g, "GET", "/svc/x", None, None), 401, "token_missing");
    assert_refused(&get("garbage", None), 401, "token_malformed");
    assert_refused(&get("a.b.c", None), 401, "token_malformed");

    // A signature re-encoded with non-zero trailing bits: same bytes, other string.
    let good = g.invocation(&up, "http/GET", &deleg);
    let (head, sig) = good.rsplit_once('.').expect("jwt");
    let sig_bytes = b64::decode(sig.as_bytes()).expect("sig");
    let canonical = b64::encode(&sig_bytes);
    let last = canonical.as_bytes()[canonical.len() - 1];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let idx = alphabet.iter().position(|c| *c == last).expect("alphabet");
    let mut tweaked = canonical.clone().into_bytes();
    tweaked[canonical.len() - 1] = alphabet[idx | 1]; // 64 bytes → 2 spare bits
    let tweaked = String::from_utf8(tweaked).expect("ascii");
    assert_ne!(tweaked, canonical);
    assert_eq!(b64::decode(tweaked.as_bytes()), None, "strict decoding rejects it");
    assert_refused(&get(&format!("{head}.{tweaked}"), Some(&deleg)), 401, "bad_signature");
    // A flipped signature byte.
    let mut flipped = sig_bytes.clone();
    flipped[0] ^= 1;
    assert_refused(&get(&format!("{head}.{}", b64::encode(&flipped)), Some(&deleg)), 401, "bad_signature");
    // alg none / HS256.
    let payload = good.split('.').nth(1).expect("payload");
    let none_hdr = b64::encode(br#"{"alg":"none","typ":"JWT"}"#);
    assert_refused(&get(&format!("{none_hdr}.{payload}."), Some(&deleg)), 401, "bad_signature");
    let hs = b64::encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    assert_refused(&get(&format!("{hs}.{payload}.{sig}"), Some(&deleg)), 401, "bad_signature");

    let mut s = spec(&g, &up, "http/GET", &deleg);
    s.expires = now() - 60;
    assert_refused(&get(&mint(&g.agent_key, &s), Some(&deleg)), 401, "expired");
    let mut s = spec(&g, &up, "http/GET", &deleg);
    s.not_before = Some(now() + 20);
    assert_refused(&get(&mint(&g.agent_key, &s), Some(&deleg)), 401, "not_yet_valid");
    let mut s = spec(&g, &up, "http/GET", &deleg);
    s.expires = now() + 600;
    assert_refused(&get(&mint(&g.agent_key, &s), Some(&deleg)), 401, "lifetime_too_long");
    let mut s = spec(&g, &up, "http/GET", &deleg);
    s.audience = did(&new_key());
    assert_refused(&get(&mint(&g.agent_key, &s), Some(&deleg)), 401, "wrong_audience");
    // Proof missing from the ucans header.
    assert_refused(&get(&g.invocation(&up, "http/GET", &deleg), None), 401, "broken_chain");
    // Proof addressed to someone else.
    let stray = mint(
        &g.root_key,
        &MintSpec {
            audience: did(&new_key()),
            capabilities: vec![(up.clone(), "http/*".into())],
            expires: now() + 600,
            ..Default::default()
        },
    );
    assert_refused(&get(&g.invocation(&up, "http/GET", &stray), Some(&stray)), 401, "broken_chain");
    // A proof that expires before its child.
    let short = mint(
        &g.root_key,
        &MintSpec {
            audience: did(&g.agent_key),
            capabilities: vec![(up.clone(), "http/*".into())],
            expires: now() + 10,
            ..Default::default()
        },
    );
    assert_refused(&get(&g.invocation(&up, "http/GET", &short), Some(&short)), 401, "broken_chain");
    // A child that widens its parent: parent grants GET on /repos, child claims http/* on the host.
    let narrow = g.delegation(&format!("{up}/repos"), "http/GET");
    assert_refused(&get(&g.invocation(&up, "http/*", &narrow), Some(&narrow)), 401, "escalation");
    assert_refused(&get(&g.invocation(&format!("{up}/repos"), "http/POST", &narrow), Some(&narrow)), 401, "escalation");
    // A root no tenant trusts.
    let rogue = new_key();
    let rogue_deleg = mint(
        &rogue,
        &MintSpec {
            audience: did(&g.agent_key),
            capabilities: vec![(up.clone(), "http/*".into())],
            expires: now() + 600,
            ..Default::default()
        },
    );
    assert_refused(&get(&g.invocation(&up, "http/GET", &rogue_deleg), Some(&rogue_deleg)), 401, "untrusted_root");
    // No nonce while replay protection is on.
    let mut s = spec(&g, &up, "http/GET", &deleg);
    s.nonce = None;
    assert_refused(&get(&mint(&g.agent_key, &s), Some(&deleg)), 401, "nonce_missing");
    // Replay.
    let once = g.invocation(&up, "http/GET", &deleg);
    assert_eq!(get(&once, Some(&deleg)).status, 200);
    assert_refused(&get(&once, Some(&deleg)), 401, "replayed");
    // Capability for another method.
    assert_refused(&get(&g.invocation(&up, "http/POST", &deleg), Some(&deleg)), 403, "capability_mismatch");
    // Strict JSON: a duplicate key in the capability map is malformed even when signed.
    let dup = format!(
        r#"{{"ucv":"0.10.0","iss":"{}","aud":"{}","exp":{},"nnc":"x","cap":{{"{up}":{{"http/GET":[{{}}]}},"{up}":{{"http/GET":[{{}}]}}}},"prf":[]}}"#,
        did(&g.agent_key),
        g.gateway_did(),
        now() + 30
    );
    let t = sign_parts(&g.agent_key, br#"{"alg":"EdDSA","typ":"JWT"}"#, dup.as_bytes());
    assert_refused(&get(&t, None), 401, "token_malformed");

    assert_eq!(g.upstream.requests().len(), 1, "only the one valid call reached the upstream");
}

#[test]
fn replay_protection_off_reuses_cached_chains() {
    let g = Gateway::start(GatewayOpts { replay_protection: false, ..Default::default() });
    let up = g.upstream.url();
    let deleg = g.delegation(&up, "http/*");
    let inv = g.invocation(&up, "http/GET", &deleg);
    for _ in 0..3 {
        assert_eq!(call(&g, "GET", "/svc/x", Some(&inv), Some(&deleg)).status, 200);
    }
    // Without the proofs header a cached chain still verifies (its proofs are
    // fixed by CID), but a cache hit still checks capabilities.
    assert_refused(&call(&g, "POST", "/svc/x", Some(&inv), Some(&deleg)), 403, "capability_mismatch");
    let m = g.metrics_with(r#"capgate_ucan_cache_total{result="hit"} 3"#);
    assert!(m.contains(r#"capgate_ucan_cache_total{result="hit"} 3"#), "{m}");
}

/// Signatures that satisfy the plain (cofactorless) Ed25519 equation but not
/// strict verification, through the real pipeline: each is `401
/// bad_signature`, and nothing reaches the upstream.
#[test]
fn signatures_only_plain_ed25519_accepts_are_refused() {
    use curve25519_dalek::constants::{ED25519_BASEPOINT_POINT as B, EIGHT_TORSION};
    use curve25519_dalek::scalar::Scalar;
    use ed25519_dalek::{Signature, Verifier, VerifyingKey};
    use sha2::{Digest, Sha512};

    let g = Gateway::start(GatewayOpts::default());
    let up = g.upstream.url();
    let deleg = g.delegation(&up, "http/*");
    let get = |t: &str, u: Option<&str>| call(&g, "GET", "/svc/x", Some(t), u);
    let with_signature = |input: &str, r: [u8; 32], s: Scalar| {
        let mut sig = [0u8; 64];
        sig[..32].copy_from_slice(&r);
        sig[32..].copy_from_slice(s.as_bytes());
        (format!("{input}.{}", b64::encode(&sig)), Signature::from_bytes(&sig))
    };
    let identity = EIGHT_TORSION[0].compress().to_bytes();

    // 1. The agent itself signs with R = the identity point: s = k·a, where
    //    k = SHA-512(R ‖ A ‖ input) and a is the agent's secret scalar.
    let good = g.invocation(&up, "http/GET", &deleg);
    let (input, _) = good.rsplit_once('.').expect("jwt");
    let agent = g.agent_key.verifying_key();
    let expanded = Sha512::digest(g.agent_key.to_bytes());
    let mut a = [0u8; 32];
    a.copy_from_slice(&expanded[..32]);
    a[0] &= 248;
    a[31] &= 127;
    a[31] |= 64;
    let a = Scalar::from_bytes_mod_order(a);
    assert_eq!((B * a).compress().to_bytes(), agent.to_bytes());
    let k = Scalar::from_bytes_mod_order_wide(
        &Sha512::new().chain_update(identity).chain_update(agent.as_bytes()).chain_update(input).finalize().into(),
    );
    let (token, sig) = with_signature(input, identity, k * a);
    assert!(agent.verify(input.as_bytes(), &sig).is_ok(), "the premise: the plain check accepts it");
    assert_refused(&get(&token, Some(&deleg)), 401, "bad_signature");

    // 2. A root delegates to a key of small order (the identity point). For
    //    such a key anyone can make R = [s]B for any s and any payload.
    let weak = VerifyingKey::from_bytes(&identity).expect("the identity is a valid encoding");
    let weak_did = capgate_filters::ucan::did::did_key(&weak);
    let weak_deleg = mint(
        &g.root_key,
        &MintSpec {
            audience: weak_did.clone(),
            capabilities: vec![(up.clone(), "http/*".into())],
            expires: now() + 600,
            ..Default::default()
        },
    );
    let payload = format!(
        r#"{{"ucv":"0.10.0","iss":"{weak_did}","aud":"{}","exp":{},"nnc":"{}","cap":{{"{up}":{{"http/GET":[{{}}]}}}},"prf":["{}"]}}"#,
        g.gateway_did(),
        now() + 30,
        nonce(),
        capgate_filters::ucan::Cid::of(weak_deleg.as_bytes())
    );
    let input = format!("{}.{}", b64::encode(br#"{"alg":"EdDSA","typ":"JWT"}"#), b64::encode(payload.as_bytes()));
    let s = Scalar::from_bytes_mod_order([9; 32]);
    let (forged, sig) = with_signature(&input, (B * s).compress().to_bytes(), s);
    assert!(weak.verify(input.as_bytes(), &sig).is_ok(), "the premise: the plain check accepts the forgery");
    assert_refused(&get(&forged, Some(&weak_deleg)), 401, "bad_signature");

    assert!(g.upstream.requests().is_empty(), "nothing reached the upstream");
}
