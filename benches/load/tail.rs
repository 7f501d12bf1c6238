//! Per-call tail of the two cache hits every request with a reused token
//! makes: the verified-chain cache (`Verifier::verify`) and the Cedar decision
//! cache (`PolicyEngine::authorize`). Criterion reports means; this reports
//! each call's own time (p50 to max), to tell whether a cache's inline
//! maintenance (moka runs its pending tasks on the calling thread every 64
//! reads, or when 300 ms have passed) ever stalls a request.
//!
//! ```text
//! cargo run --release --example bench-tail -- [CALLS_PER_THREAD] [THREADS]
//! ```
//!
//! THREADS threads (default 2, as the gateway's workers) each make
//! CALLS_PER_THREAD (default 2,000,000) rounds of: a cached verify of one of
//! 16 invocations (16 agents' connections), a cached authorize, and a control
//! window of plain arithmetic about as long as the verify. A pause that comes
//! from outside the code under test (the scheduler, the hypervisor) lands in
//! the control window as often as in a call of the same length; a pause of
//! the cache's own lands only in the cache's calls. So compare the counts
//! above each threshold, not the maxima alone.

use capgate_filters::authz::{AuthzRequest, PolicyEngine, RouteFacts};
use capgate_filters::ucan::did::did_key;
use capgate_filters::ucan::mint::{mint, MintSpec};
use capgate_filters::ucan::{Verifier, VerifierConfig};
use ed25519_dalek::SigningKey;
use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

const NOW: u64 = 1_800_000_000;
const UP: &str = "https://api.example.com";
const THRESHOLDS_NS: [u32; 4] = [10_000, 50_000, 200_000, 1_000_000];

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

/// Bad arguments: say which, exit 2.
fn arg(i: usize, name: &str, default: usize) -> usize {
    match std::env::args().nth(i) {
        None => default,
        Some(v) => v.parse().ok().filter(|n| *n > 0).unwrap_or_else(|| {
            eprintln!("bench-tail: {name} must be a positive number, not {v:?}; usage: bench-tail [CALLS_PER_THREAD] [THREADS]");
            std::process::exit(2)
        }),
    }
}

fn report(name: &str, mut v: Vec<u32>) {
    v.sort_unstable();
    let at = |q: f64| v[((q * (v.len() - 1) as f64) as usize).min(v.len() - 1)];
    let over: Vec<String> = THRESHOLDS_NS.iter().map(|t| format!("{}", v.iter().filter(|x| **x > *t).count())).collect();
    println!(
        "| {name} | {} | {} | {} | {} | {} | {} | {} |",
        v.len(),
        at(0.5),
        at(0.99),
        at(0.999),
        at(0.9999),
        v.last().copied().unwrap_or(0),
        over.join(" | ")
    );
}

fn main() {
    let calls = arg(1, "CALLS_PER_THREAD", 2_000_000);
    let threads = arg(2, "THREADS", 2);
    let (gateway, root, agent) = (key(1), key(2), key(10));
    let delegation = mint(
        &root,
        &MintSpec {
            audience: did_key(&agent.verifying_key()),
            capabilities: vec![(UP.into(), "http/*".into())],
            expires: NOW + 3600,
            ..Default::default()
        },
    );
    let invocations: Vec<String> = (0..16)
        .map(|i| {
            mint(
                &agent,
                &MintSpec {
                    audience: did_key(&gateway.verifying_key()),
                    capabilities: vec![(format!("{UP}/repos/acme"), "http/GET".into())],
                    expires: NOW + 30,
                    nonce: Some(format!("n{i}")),
                    proofs: vec![delegation.clone()],
                    ..Default::default()
                },
            )
        })
        .collect();
    let verifier = Verifier::new(VerifierConfig {
        gateway_did: did_key(&gateway.verifying_key()),
        roots: HashMap::from([(did_key(&root.verifying_key()), Arc::from("acme"))]),
        max_lifetime_secs: 60,
        clock_skew_secs: 5,
        replay_protection: false,
        cache_capacity: 10_000,
    });
    for inv in &invocations {
        if verifier.verify(inv, Some(&delegation), NOW).is_err() {
            eprintln!("bench-tail: a benchmark invocation did not verify");
            std::process::exit(1);
        }
    }
    let engine = match PolicyEngine::from_sources(
        include_str!("../../policies/schema.cedarschema"),
        &[("authz.cedar", include_str!("../../policies/authz.cedar"))],
    ) {
        Ok(e) => e,
        Err(e) => {
            eprintln!("bench-tail: the shipped policies do not load: {e}");
            std::process::exit(1);
        }
    };
    let shared = Arc::new((verifier, engine, invocations, delegation));
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let shared = shared.clone();
            std::thread::spawn(move || {
                let (verifier, engine, invocations, delegation) = &*shared;
                let route = RouteFacts { name: "github".into(), allow_writes: false, sensitive: false };
                let req = AuthzRequest {
                    tenant: "acme",
                    agent: "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp",
                    method: "GET",
                    route: &route,
                    url: "https://api.github.com/repos/acme/app/issues",
                    host: "api.github.com",
                    path: "/repos/acme/app/issues",
                    query: "",
                    cosigned: false,
                    chain_length: 2,
                    token_ttl: 30,
                    now: NOW,
                };
                let (mut verify, mut authorize, mut control) =
                    (Vec::with_capacity(calls), Vec::with_capacity(calls), Vec::with_capacity(calls));
                let mut misses = 0u64;
                for k in 0..calls {
                    let t0 = Instant::now();
                    let hit = verifier.verify(&invocations[(k + t) % invocations.len()], Some(delegation), NOW).is_ok_and(|v| v.cache_hit);
                    let t1 = Instant::now();
                    let allowed = engine.authorize(&req).allowed;
                    let t2 = Instant::now();
                    let mut h = k as u64;
                    for _ in 0..400 {
                        h = black_box(h.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407));
                    }
                    let t3 = Instant::now();
                    misses += u64::from(!(hit && allowed));
                    black_box(h);
                    let ns = |a: Instant, b: Instant| u32::try_from(b.duration_since(a).as_nanos()).unwrap_or(u32::MAX);
                    verify.push(ns(t0, t1));
                    authorize.push(ns(t1, t2));
                    control.push(ns(t2, t3));
                }
                (verify, authorize, control, misses)
            })
        })
        .collect();
    let (mut verify, mut authorize, mut control, mut misses) = (Vec::new(), Vec::new(), Vec::new(), 0);
    for w in workers {
        let Ok((v, a, c, m)) = w.join() else {
            eprintln!("bench-tail: a worker thread panicked");
            std::process::exit(1);
        };
        verify.extend(v);
        authorize.extend(a);
        control.extend(c);
        misses += m;
    }
    if misses > 0 {
        eprintln!("bench-tail: {misses} calls missed a cache or were refused; the figures would not be of cache hits");
        std::process::exit(1);
    }
    println!("{threads} threads × {calls} calls, times in ns");
    println!();
    println!("| call | calls | p50 | p99 | p99.9 | p99.99 | max | > 10 µs | > 50 µs | > 200 µs | > 1 ms |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    report("verify (chain cache hit)", verify);
    report("authorize (decision cache hit)", authorize);
    report("control (arithmetic)", control);
}
