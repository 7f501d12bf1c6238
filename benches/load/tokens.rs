//! Mints the load harness's tokens: `bench-tokens ROOT.pem AGENT.pem GATEWAY.pem UPSTREAM_URL N OUT`.
//! Line 1 of OUT is the delegation (the `ucans` header); then N invocations
//! for `GET UPSTREAM_URL/...`, each with its own nonce, valid 55 s. Nonces
//! carry the minting time in nanoseconds, so invocations minted by two runs
//! never share one (the instructions mode mints again on slow machines).

use capgate_filters::ucan::did::did_key;
use capgate_filters::ucan::mint::{mint, MintSpec};
use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::SigningKey;
use std::io::Write;

fn key(p: &str) -> SigningKey {
    SigningKey::read_pkcs8_pem_file(p).expect("PKCS#8 key file")
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    assert!(a.len() == 7, "usage: bench-tokens ROOT.pem AGENT.pem GATEWAY.pem UPSTREAM_URL N OUT");
    let (root, agent, gateway) = (key(&a[1]), key(&a[2]), key(&a[3]));
    let up = &a[4];
    let n: usize = a[5].parse().expect("N");
    let since_epoch = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock");
    let now = since_epoch.as_secs();
    let batch = since_epoch.as_nanos();
    let deleg = mint(
        &root,
        &MintSpec {
            audience: did_key(&agent.verifying_key()),
            capabilities: vec![(up.clone(), "http/*".into())],
            expires: now + 3600,
            ..Default::default()
        },
    );
    let mut out = std::io::BufWriter::new(std::fs::File::create(&a[6]).expect("out file"));
    writeln!(out, "{deleg}").expect("write");
    for i in 0..n {
        let inv = mint(
            &agent,
            &MintSpec {
                audience: did_key(&gateway.verifying_key()),
                capabilities: vec![(up.clone(), "http/GET".into())],
                expires: now + 55,
                nonce: Some(format!("n{batch:x}-{i}")),
                proofs: vec![deleg.clone()],
                ..Default::default()
            },
        );
        writeln!(out, "{inv}").expect("write");
    }
}
