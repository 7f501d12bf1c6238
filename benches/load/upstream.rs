//! The load harness's upstream: a minimal keep-alive server, HTTP/1.1 or
//! HTTP/2 with prior knowledge (h2c) on the same port, that answers every
//! request with a tiny JSON body. Loopback only.
//! `bench-upstream PORT`

use http_body_util::Full;
use hyper::body::Bytes;

fn main() {
    let port: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(18081);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("bind 127.0.0.1");
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req: hyper::Request<hyper::body::Incoming>| async {
                    Ok::<_, std::convert::Infallible>(
                        hyper::Response::builder()
                            .header("content-type", "application/json")
                            .body(Full::new(Bytes::from_static(b"{\"ok\":true,\"n\":42}")))
                            .expect("response"),
                    )
                });
                let server = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new());
                let _ = server.serve_connection(hyper_util::rt::TokioIo::new(stream), svc).await;
            });
        }
    });
}
