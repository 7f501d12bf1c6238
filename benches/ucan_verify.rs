//! UCAN verification (criterion): chains of 1–3 links, uncached (a fresh
//! verifier per iteration batch), cached (the same invocation again), and a
//! fresh invocation on known proofs (the replay-protected case); then the
//! parts of one uncached verification, and the replay set's insertion in a
//! steady state where entries expire as fast as they arrive.
//! Run with `cargo bench --bench ucan_verify`.

use capgate_filters::ucan::did::{did_key, parse_did_key};
use capgate_filters::ucan::mint::{mint, MintSpec};
use capgate_filters::ucan::replay::ReplayGuard;
use capgate_filters::ucan::signature::IssuerKey;
use capgate_filters::ucan::token::parse_jwt;
use capgate_filters::ucan::Cid;
use capgate_filters::ucan::{Verifier, VerifierConfig};
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion};
use ed25519_dalek::{Signer, SigningKey};
use std::collections::HashMap;
use std::sync::Arc;

const NOW: u64 = 1_800_000_000;
const UP: &str = "https://api.example.com";

fn key(n: u8) -> SigningKey {
    SigningKey::from_bytes(&[n; 32])
}

/// (invocation, ucans header, verifier config) for a chain of `links` tokens.
fn chain(links: usize) -> (String, String, VerifierConfig) {
    let gateway = key(1);
    let root = key(2);
    let mut issuer = root.clone();
    let mut proofs: Vec<String> = Vec::new();
    for i in 0..links - 1 {
        let next = key(10 + i as u8);
        let d = mint(
            &issuer,
            &MintSpec {
                audience: did_key(&next.verifying_key()),
                capabilities: vec![(UP.into(), "http/*".into())],
                expires: NOW + 3600 - i as u64,
                proofs: proofs.last().cloned().into_iter().collect(),
                ..Default::default()
            },
        );
        proofs.push(d);
        issuer = next;
    }
    let inv = mint(
        &issuer,
        &MintSpec {
            audience: did_key(&gateway.verifying_key()),
            capabilities: vec![(format!("{UP}/repos/acme"), "http/GET".into())],
            expires: NOW + 30,
            nonce: Some("n".into()),
            proofs: proofs.last().cloned().into_iter().collect(),
            ..Default::default()
        },
    );
    let cfg = VerifierConfig {
        gateway_did: did_key(&gateway.verifying_key()),
        roots: HashMap::from([(did_key(&root.verifying_key()), Arc::from("acme"))]),
        max_lifetime_secs: 60,
        clock_skew_secs: 5,
        replay_protection: false,
        cache_capacity: 10_000,
    };
    (inv, proofs.join(","), cfg)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("ucan_verify");
    for links in 1..=3 {
        let (inv, ucans, cfg) = chain(links);
        g.bench_function(BenchmarkId::new("uncached", format!("{links}-link")), |b| {
            b.iter_batched_ref(
                || Verifier::new(cfg.clone()),
                |v| v.verify(&inv, Some(&ucans), NOW).map(|x| x.cache_hit),
                BatchSize::SmallInput,
            )
        });
        let v = Verifier::new(cfg.clone());
        assert!(v.verify(&inv, Some(&ucans), NOW).is_ok(), "{links}-link chain verifies");
        g.bench_function(BenchmarkId::new("cached", format!("{links}-link")), |b| {
            b.iter(|| v.verify(&inv, Some(&ucans), NOW).map(|x| x.cache_hit))
        });
        // A fresh invocation per request (replay protection on: invocations
        // are never cached): its proofs and its issuer's key are known, its
        // own signature is checked.
        let v = Verifier::new(VerifierConfig { replay_protection: true, ..cfg.clone() });
        assert!(v.verify(&inv, Some(&ucans), NOW).is_ok_and(|x| !x.cache_hit));
        g.bench_function(BenchmarkId::new("fresh-invocation", format!("{links}-link")), |b| {
            b.iter(|| v.verify(&inv, Some(&ucans), NOW).map(|x| x.cache_hit))
        });
    }
    g.finish();

    // Where an uncached 1-link verification goes.
    let mut g = c.benchmark_group("ucan_verify_parts");
    let (inv, _, _) = chain(1);
    let signer = key(2);
    let did = did_key(&signer.verifying_key());
    let vk = signer.verifying_key();
    let msg = &inv.as_bytes()[..inv.rfind('.').unwrap_or(0)];
    let sig = signer.sign(msg);
    g.bench_function("cid", |b| b.iter(|| Cid::of(inv.as_bytes())));
    g.bench_function("parse_did_key", |b| b.iter(|| parse_did_key(&did).is_ok()));
    g.bench_function("ed25519_verify_strict", |b| b.iter(|| vk.verify_strict(msg, &sig).is_ok()));
    // The same acceptance, the key's small-order check made once (what the verifier uses).
    let issuer = IssuerKey::new(vk);
    g.bench_function("ed25519 strict, key checked once (IssuerKey)", |b| b.iter(|| issuer.verify_strict(msg, &sig).is_ok()));
    g.bench_function("parse_jwt (all of the above, decoding)", |b| b.iter(|| parse_jwt(&inv).is_ok()));
    // Nonces live 50 ms: the set stays at its steady size (about 50 ms of
    // insertions) and every insertion also pays its share of the cleanup.
    let replay = ReplayGuard::new();
    let mut n = 0u64;
    let mut nonce = String::new();
    g.bench_function("replay first_use (steady state, expiring)", |b| {
        b.iter(|| {
            use std::fmt::Write;
            nonce.clear();
            let _ = write!(nonce, "nonce-{n}");
            n += 1;
            replay.first_use("did:key:zAgent", &nonce, std::time::Duration::from_millis(50))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
