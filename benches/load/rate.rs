//! The load harness's constant-rate client, for the latency-overhead and soak
//! modes (wrk drives the closed-loop throughput runs).
//!
//! ```text
//! bench-rate ADDR PATH RATE SECONDS CONNECTIONS [none | reused|fresh ROOT.pem AGENT.pem GATEWAY.pem UPSTREAM_URL]
//! ```
//!
//! Each of CONNECTIONS keep-alive HTTP/1.1 connections sends its share of
//! RATE requests per second on a fixed schedule (request k of connection c is
//! due at `(k * CONNECTIONS + c) / RATE` seconds). A request's latency is
//! measured from its due time when the connection was still busy with the
//! previous response at that time (so a slow server is not hidden:
//! coordinated omission is accounted for), and from the moment it was sent
//! otherwise (so the client's timer granularity is not charged to the server).
//!
//! Tokens: `none` sends no credentials; `reused` sends one invocation per
//! connection, re-minted every 30 s (the server runs without replay
//! protection); `fresh` mints a new invocation with its own nonce for every
//! request, off the measured path. Minting is done here so a soak can run
//! longer than a token lives.
//!
//! Prints one JSON object: requests, ok (2xx), errors, p50/p99/p99.9/max in
//! microseconds, and the achieved rate. Loopback only.

use capgate_filters::ucan::did::did_key;
use capgate_filters::ucan::mint::{mint, MintSpec};
use ed25519_dalek::pkcs8::DecodePrivateKey;
use ed25519_dalek::SigningKey;
use http_body_util::{BodyExt, Empty};
use hyper::body::Bytes;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy, PartialEq)]
enum Mode {
    None,
    Reused,
    Fresh,
}

struct Minter {
    agent: SigningKey,
    gateway_did: String,
    upstream: String,
    delegation: String,
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl Minter {
    fn invocation(&self, nonce: String) -> String {
        mint(
            &self.agent,
            &MintSpec {
                audience: self.gateway_did.clone(),
                capabilities: vec![(self.upstream.clone(), "http/GET".into())],
                expires: now_secs() + 55,
                nonce: Some(nonce),
                proofs: vec![self.delegation.clone()],
                ..Default::default()
            },
        )
    }
}

/// Bad arguments or key files: say which, exit 2 (no panic, no backtrace).
fn die(msg: &str) -> ! {
    eprintln!("bench-rate: {msg}");
    std::process::exit(2)
}

fn key(p: &str) -> SigningKey {
    SigningKey::read_pkcs8_pem_file(p).unwrap_or_else(|e| die(&format!("{p}: not a PKCS#8 Ed25519 key: {e}")))
}

/// Argument `i`, parsed, or exit 2 naming it.
fn arg<T: std::str::FromStr>(a: &[String], i: usize, name: &str, usage: &str) -> T {
    a.get(i).and_then(|v| v.parse().ok()).unwrap_or_else(|| die(&format!("{name} is missing or not a number; {usage}")))
}

#[derive(Default)]
struct Tally {
    latencies_us: Vec<u32>,
    ok: u64,
    errors: u64,
}

/// When requests are due: request `k` of connection `conn` is due at
/// `start + (k * conns + conn) / rate`, until `end`.
#[derive(Clone, Copy)]
struct Schedule {
    conns: u64,
    rate: f64,
    start: Instant,
    end: Instant,
}

async fn connection(addr: String, path: Arc<str>, conn: u64, schedule: Schedule, mode: Mode, minter: Option<Arc<Minter>>) -> Tally {
    let Schedule { conns, rate, start, end } = schedule;
    let mut tally = Tally::default();
    let mut sender = None;
    let mut k: u64 = 0;
    let mut prev_done = start;
    let mut token: Option<(String, Instant)> = None;
    loop {
        let due = start + Duration::from_secs_f64((k * conns + conn) as f64 / rate);
        if due >= end {
            break;
        }
        k += 1;
        // Prepare the credentials before the request is due (off the clock).
        let auth = match (&mode, &minter) {
            (Mode::Fresh, Some(m)) => Some(m.invocation(format!("c{conn}-{k}-{}", now_secs()))),
            (Mode::Reused, Some(m)) => {
                if token.as_ref().is_none_or(|(_, at)| at.elapsed() > Duration::from_secs(30)) {
                    token = Some((m.invocation(format!("c{conn}-{}", now_secs())), Instant::now()));
                }
                token.as_ref().map(|(t, _)| t.clone())
            }
            _ => None,
        };
        tokio::time::sleep_until(due.into()).await;
        if sender.is_none() {
            match tokio::net::TcpStream::connect(&addr).await {
                Ok(s) => {
                    let _ = s.set_nodelay(true);
                    match hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(s)).await {
                        Ok((tx, c)) => {
                            tokio::spawn(c);
                            sender = Some(tx);
                        }
                        Err(_) => {
                            tally.errors += 1;
                            continue;
                        }
                    }
                }
                Err(_) => {
                    tally.errors += 1;
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            }
        }
        let Some(tx) = sender.as_mut() else { continue };
        let mut req = hyper::Request::builder().method("GET").uri(&*path).header("host", "127.0.0.1");
        if let (Some(t), Some(m)) = (&auth, &minter) {
            req = req.header("authorization", format!("Bearer {t}")).header("ucans", m.delegation.as_str());
        }
        let Ok(req) = req.body(Empty::<Bytes>::new()) else {
            tally.errors += 1;
            continue;
        };
        let sent = Instant::now();
        let began = if prev_done > due { due } else { sent };
        let result = match tx.send_request(req).await {
            Ok(resp) => {
                let status = resp.status();
                match resp.into_body().collect().await {
                    Ok(_) => Ok(status),
                    Err(_) => Err(()),
                }
            }
            Err(_) => Err(()),
        };
        let done = Instant::now();
        prev_done = done;
        match result {
            Ok(s) if s.is_success() => {
                tally.ok += 1;
                tally.latencies_us.push(u32::try_from(done.duration_since(began).as_micros()).unwrap_or(u32::MAX));
            }
            Ok(_) => tally.errors += 1,
            Err(()) => {
                tally.errors += 1;
                sender = None;
            }
        }
    }
    tally
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let idx = ((p / 100.0) * (sorted.len() - 1) as f64).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

fn main() {
    let a: Vec<String> = std::env::args().collect();
    let usage = "usage: bench-rate ADDR PATH RATE SECONDS CONNECTIONS [none | reused|fresh ROOT.pem AGENT.pem GATEWAY.pem UPSTREAM_URL]";
    if a.len() < 6 {
        die(usage);
    }
    let addr = a[1].clone();
    let path: Arc<str> = a[2].as_str().into();
    let rate: f64 = arg(&a, 3, "RATE", usage);
    let secs: f64 = arg(&a, 4, "SECONDS", usage);
    let conns: u64 = arg(&a, 5, "CONNECTIONS", usage);
    let mode = match a.get(6).map(String::as_str) {
        None | Some("none") => Mode::None,
        Some("reused") => Mode::Reused,
        Some("fresh") => Mode::Fresh,
        Some(other) => die(&format!("unknown token mode {other}; {usage}")),
    };
    let minter = if mode == Mode::None {
        None
    } else {
        if a.len() != 11 {
            die(usage);
        }
        let (root, agent, gateway) = (key(&a[7]), key(&a[8]), key(&a[9]));
        let upstream = a[10].clone();
        let delegation = mint(
            &root,
            &MintSpec {
                audience: did_key(&agent.verifying_key()),
                capabilities: vec![(upstream.clone(), "http/*".into())],
                expires: now_secs() + secs as u64 + 3600,
                ..Default::default()
            },
        );
        Some(Arc::new(Minter { agent, gateway_did: did_key(&gateway.verifying_key()), upstream, delegation }))
    };
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
    let tallies = rt.block_on(async {
        let start = Instant::now() + Duration::from_millis(100);
        let end = start + Duration::from_secs_f64(secs);
        let tasks: Vec<_> = (0..conns)
            .map(|c| tokio::spawn(connection(addr.clone(), path.clone(), c, Schedule { conns, rate, start, end }, mode, minter.clone())))
            .collect();
        let mut out = Vec::new();
        for t in tasks {
            if let Ok(tally) = t.await {
                out.push(tally);
            }
        }
        out
    });
    let mut all: Vec<u32> = tallies.iter().flat_map(|t| t.latencies_us.iter().copied()).collect();
    all.sort_unstable();
    let ok: u64 = tallies.iter().map(|t| t.ok).sum();
    let errors: u64 = tallies.iter().map(|t| t.errors).sum();
    println!(
        "{{\"requests\":{},\"ok\":{ok},\"errors\":{errors},\"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{},\"rps\":{:.1}}}",
        ok + errors,
        percentile(&all, 50.0),
        percentile(&all, 99.0),
        percentile(&all, 99.9),
        all.last().copied().unwrap_or(0),
        ok as f64 / secs
    );
}
