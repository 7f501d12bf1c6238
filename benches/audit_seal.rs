//! Sealing one audit event (criterion): canonical JSON (RFC 8785), SHA-256
//! link and the stored line, as the chain writer does for every request.
//! Run with `cargo bench --bench audit_seal`.

use capgate::audit::record::{genesis, seal_event, RequestEvent};
use criterion::{criterion_group, criterion_main, Criterion};
use std::collections::BTreeMap;

fn bench(c: &mut Criterion) {
    let ev = RequestEvent {
        event: "request".into(),
        tenant: "acme".into(),
        request_id: "01JDQ3ZV9X7R8K2M4N6P8Q0S2T".into(),
        agent: Some("did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp".into()),
        token_cid: Some("bafkreihdwdcefgh4dqkjv67uzcmw7ojee6xedzdetojuzjevtenxquvyku".into()),
        route: Some("github".into()),
        method: "GET".into(),
        path: Some("/repos/acme/app/issues".into()),
        decision: "allow".into(),
        reason: "ok".into(),
        policy_ids: vec!["reads-allowed".into()],
        upstream_status: Some(200),
        bytes_in: 0,
        bytes_out: 1834,
        redactions: BTreeMap::from([("github_pat".to_owned(), 1)]),
        duration_us: 412,
        ..Default::default()
    };
    let chain = "acme:6f1c2e";
    let prev = genesis(chain);
    c.bench_function("audit_seal_event", |b| {
        b.iter(|| seal_event(&ev, 42, "2026-11-25T01:00:00.000000Z", chain, &prev).map(|(l, _)| l.len()))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
