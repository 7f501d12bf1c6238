//! Cedar evaluation (criterion) with 10, 100 and 1,000 policies: the shipped
//! defaults plus generated per-route, per-path forbids that do not match the
//! request.
//! - `evaluate`: a decision-cache miss, as the gateway runs it: the policies
//!   that can apply are sliced out (see `policy_slice`) and Cedar evaluates
//!   those.
//! - `evaluate_unsliced`: Cedar evaluates every policy, the cost of a set
//!   whose policies cannot be sliced (conditions that do not start with a
//!   test on the route, tenant, agent, method or path).
//! - `inputs`: building the Cedar request and entities alone.
//! - `cached`: a decision-cache hit (the key is built and looked up).
//!
//! Run with `cargo bench --bench cedar`.

use capgate_filters::authz::{AuthzRequest, PolicyEngine, RouteFacts};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};

fn engine(n: usize) -> PolicyEngine {
    let schema = include_str!("../policies/schema.cedarschema");
    let authz = include_str!("../policies/authz.cedar");
    let mut extra = String::new();
    for i in 0..n.saturating_sub(4) {
        extra.push_str(&format!(
            "@id(\"gen-{i}\") forbid (principal, action, resource) when {{ context.path like \"/generated/{i}/*\" && context.route == \"r{i}\" }};\n"
        ));
    }
    PolicyEngine::from_sources(schema, &[("authz.cedar", authz), ("generated.cedar", &extra)]).expect("valid policies")
}

fn bench(c: &mut Criterion) {
    let route = RouteFacts { name: "github".into(), allow_writes: false, sensitive: false };
    let req = AuthzRequest {
        tenant: "acme",
        agent: "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp",
        method: "GET",
        route: &route,
        url: "https://api.github.com/repos/acme/app/issues",
        host: "api.github.com",
        path: "/repos/acme/app/issues",
        query: "state=open",
        cosigned: false,
        chain_length: 2,
        token_ttl: 30,
        now: 1_800_000_000,
    };
    let mut g = c.benchmark_group("cedar_authorize");
    for n in [10usize, 100, 1000] {
        let e = engine(n);
        assert!(e.authorize(&req).allowed, "the request is allowed with {n} policies");
        assert_eq!(e.evaluate(&req), e.evaluate_unsliced(&req));
        g.bench_function(BenchmarkId::new("evaluate", format!("{n}_policies")), |b| b.iter(|| e.evaluate(&req).allowed));
        g.bench_function(BenchmarkId::new("evaluate_unsliced", format!("{n}_policies")), |b| b.iter(|| e.evaluate_unsliced(&req).allowed));
        if n == 10 {
            g.bench_function("inputs", |b| b.iter(|| e.cedar_inputs(&req).is_ok()));
        }
        g.bench_function(BenchmarkId::new("cached", format!("{n}_policies")), |b| b.iter(|| e.authorize(&req).allowed));
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
