//! One audit event (criterion), in its two halves: rendering its canonical
//! JSON (RFC 8785) members on the proxy thread, then sealing it on the chain
//! writer (the writer's members stitched in, the SHA-256 link, the stored
//! line appended to the segment buffer).
//! Run with `cargo bench --bench audit_seal`.

use capgate::audit::canonical::render;
use capgate::audit::record::{genesis, seal_rendered_into, RequestEvent};
use criterion::{criterion_group, criterion_main, Criterion};

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
        policy_ids: vec!["reads-allowed".to_owned()].into(),
        upstream_status: Some(200),
        bytes_in: 0,
        bytes_out: 1834,
        redactions: vec![("github_pat".into(), 1)],
        duration_us: 412,
        ..Default::default()
    };
    let chain = "acme:6f1c2e";
    let prev = genesis(chain);
    // On the proxy thread: the event's canonical members, once.
    c.bench_function("audit_render_event", |b| b.iter(|| render(&ev)));
    // On the chain writer: stitched, hashed and appended to one reused buffer.
    let rendered = render(&ev);
    let mut buf = Vec::with_capacity(4096);
    c.bench_function("audit_seal_event", |b| {
        b.iter(|| {
            buf.clear();
            seal_rendered_into(&rendered, 42, "2026-11-25T01:00:00.000000Z", chain, &prev, &mut buf).len()
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
