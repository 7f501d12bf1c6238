//! The load harness's bare hyper proxy: a reverse proxy written straight on
//! tokio and hyper, with no pingora in it, to tell pingora's cost from what
//! any proxy on this Rust stack pays. Like the pingora passthrough it runs
//! on tokio's work-stealing runtime, with two worker threads unless told
//! otherwise, serves HTTP/1.x and h2c on one port, streams bodies both
//! ways, and keeps its upstream connections alive in a shared pool
//! (hyper-util's client, up to 128 idle, as nginx's `keepalive 128`);
//! nothing else. Loopback only.
//! `bench-hyper-proxy LISTEN_PORT UPSTREAM_PORT [THREADS]`

use http_body_util::{Either, Full};
use hyper::body::{Bytes, Incoming};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};

type Reply = hyper::Response<Either<Incoming, Full<Bytes>>>;

fn main() {
    let listen: u16 = std::env::args().nth(1).and_then(|p| p.parse().ok()).unwrap_or(18096);
    let upstream_port: u16 = std::env::args().nth(2).and_then(|p| p.parse().ok()).unwrap_or(18081);
    let threads: usize = std::env::args().nth(3).and_then(|t| t.parse().ok()).filter(|&t| t > 0).unwrap_or(2);
    let upstream = format!("http://127.0.0.1:{upstream_port}");
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build().expect("runtime");
    rt.block_on(async move {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client: Client<HttpConnector, Incoming> = Client::builder(TokioExecutor::new()).pool_max_idle_per_host(128).build(connector);
        let listener = tokio::net::TcpListener::bind(("127.0.0.1", listen)).await.expect("bind 127.0.0.1");
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                continue;
            };
            let _ = stream.set_nodelay(true);
            let client = client.clone();
            let upstream = upstream.clone();
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: hyper::Request<Incoming>| forward(client.clone(), upstream.as_str(), req));
                let server = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
                let _ = server.serve_connection(TokioIo::new(stream), svc).await;
            });
        }
    });
}

/// Sends the agent's request on to the upstream under the same path and
/// returns its reply as it streams in; a request the upstream cannot take
/// gets a 502.
fn forward(
    client: Client<HttpConnector, Incoming>,
    upstream: &str,
    mut req: hyper::Request<Incoming>,
) -> impl std::future::Future<Output = Result<Reply, std::convert::Infallible>> + Send + 'static {
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let target = format!("{upstream}{path}").parse::<hyper::Uri>();
    async move {
        let sent = match target {
            Ok(uri) => {
                *req.uri_mut() = uri;
                // The upstream speaks HTTP/1.1 here whatever the agent spoke.
                *req.version_mut() = hyper::Version::HTTP_11;
                client.request(req).await.ok()
            }
            Err(_) => None,
        };
        Ok(match sent {
            Some(reply) => reply.map(Either::Left),
            None => {
                let mut bad = hyper::Response::new(Either::Right(Full::new(Bytes::from_static(b"bad gateway\n"))));
                *bad.status_mut() = hyper::StatusCode::BAD_GATEWAY;
                bad
            }
        })
    }
}
