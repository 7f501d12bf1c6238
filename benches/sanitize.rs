//! Sanitizer throughput (criterion). Run with `cargo bench --bench sanitize`.
//!
//! - 1 MiB of clean JSON, pushed in 16 KiB chunks;
//! - 1 MiB of English prose in a chat-completion JSON body (natural text
//!   starts many more candidate prefixes than short JSON keys do);
//! - 1 MiB with a (generated, fake) secret every 4 KiB;
//! - 100-byte SSE chunks.

use capgate_filters::sanitize::Sanitizer;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};

fn clean_json(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 128);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(
            format!("{{\"id\":{i},\"name\":\"item {i}\",\"tags\":[\"alpha\",\"beta\"],\"price\":{}.99,\"ok\":true}},", i % 977).as_bytes(),
        );
        i += 1;
    }
    out.truncate(len);
    out
}

fn prose_json(len: usize) -> Vec<u8> {
    const TEXT: &str = "The service keeps a short list of the accounts that were created during the last \
        session. Before you deploy the new version, please check whether the database migration has \
        finished, because the basic settings and the bearer of each request depend on it. In short: \
        read the logs, ask the on-call engineer, and only then press the button that starts the rollout. \
        Secrets are never printed here; the keys live in the vault and are rotated every week.\\n";
    let mut out = Vec::with_capacity(len + 1024);
    let mut i = 0u64;
    while out.len() < len {
        out.extend_from_slice(
            format!(
                "{{\"id\":\"chatcmpl-{i}\",\"choices\":[{{\"index\":0,\"message\":{{\"role\":\"assistant\",\"content\":\"{TEXT}\"}}}}]}}\n"
            )
            .as_bytes(),
        );
        i += 1;
    }
    out.truncate(len);
    out
}

fn dense(len: usize) -> Vec<u8> {
    let mut out = clean_json(len);
    // A fake AWS key id and a fake Slack token, alternating every 4 KiB.
    let secrets: [&[u8]; 2] = [b"AKIAZ7XQ3MPL4TR2VW8N", b"xoxb-1111111111-2222222222-AbCdEfGhIjKlMnOpQrStUvWx"];
    let mut at = 2048;
    let mut k = 0;
    while at + 64 < len {
        let s = secrets[k % 2];
        out[at] = b' ';
        out[at + 1..at + 1 + s.len()].copy_from_slice(s);
        out[at + 1 + s.len()] = b' ';
        at += 4096;
        k += 1;
    }
    out
}

fn run(s: &Sanitizer, body: &[u8], chunk: usize) -> usize {
    let mut st = s.stream();
    let mut out = Vec::with_capacity(chunk + 256);
    let mut total = 0;
    for c in body.chunks(chunk) {
        out.clear();
        st.push(c, &mut out);
        total += out.len();
    }
    out.clear();
    st.finish(&mut out);
    total + out.len()
}

fn bench(c: &mut Criterion) {
    let s = Sanitizer::new(["vault-credential-value-0123456789"]).expect("sanitizer");
    let mib = 1024 * 1024;
    let mut g = c.benchmark_group("sanitize");
    g.throughput(Throughput::Bytes(mib as u64));
    let clean = clean_json(mib);
    g.bench_function(BenchmarkId::new("clean_json_1MiB", "16KiB chunks"), |b| b.iter(|| run(&s, &clean, 16 * 1024)));
    let prose = prose_json(mib);
    g.bench_function(BenchmarkId::new("prose_json_1MiB", "16KiB chunks"), |b| b.iter(|| run(&s, &prose, 16 * 1024)));
    let d = dense(mib);
    g.bench_function(BenchmarkId::new("secret_every_4KiB_1MiB", "16KiB chunks"), |b| b.iter(|| run(&s, &d, 16 * 1024)));
    g.bench_function(BenchmarkId::new("sse_100B_chunks_1MiB", "100B chunks"), |b| b.iter(|| run(&s, &clean, 100)));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
