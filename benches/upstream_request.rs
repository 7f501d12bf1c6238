//! Building the upstream request head (criterion): header strip and
//! credential injection on a realistic agent request.
//! Run with `cargo bench --bench upstream_request`.

use capgate::config::{InjectSection, RouteSection};
use capgate::routes::Route;
use capgate::vault::Secret;
use criterion::{criterion_group, criterion_main, Criterion};
use pingora::http::RequestHeader;

fn bench(c: &mut Criterion) {
    let route = Route::compile(&RouteSection {
        name: "github".into(),
        prefix: "/github/".into(),
        host: None,
        upstream: "https://api.github.com".into(),
        credential: "github".into(),
        inject: InjectSection::default(),
        strip_headers: vec!["X-Api-Key".into()],
        allow_writes: false,
        sensitive: false,
    })
    .expect("route");
    let secret = Secret::new("ghp_benchmarkcredentialvalue0123456789".into());
    let mut base = RequestHeader::build("GET", b"/github/repos/acme/app/issues?state=open", None).expect("header");
    for (k, v) in [
        ("host", "127.0.0.1:8080"),
        ("authorization", "Bearer eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9.payload.signature"),
        ("ucans", "eyJhbGciOiJFZERTQSIsInR5cCI6IkpXVCJ9.delegation.signature"),
        ("user-agent", "openai-python/1.50.0"),
        ("accept", "application/json"),
        ("accept-encoding", "gzip, deflate, br"),
        ("content-type", "application/json"),
        ("x-api-key", "agent-key"),
        ("connection", "keep-alive"),
    ] {
        base.insert_header(k, v).expect("insert");
    }
    c.bench_function("upstream_request/strip_and_inject", |b| {
        b.iter_batched(
            || base.clone(),
            |mut h| {
                capgate::upstream_headers::rewrite(
                    &mut h,
                    &route,
                    &secret,
                    "/repos/acme/app/issues?state=open",
                    "0123456789abcdef0123456789abcdef",
                )
                .expect("rewrite");
                capgate::response_sanitize::limit_accept_encoding(&mut h).expect("accept-encoding");
                h
            },
            criterion::BatchSize::SmallInput,
        )
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
