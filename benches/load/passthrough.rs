//! The load harness's bare pingora passthrough: the same pingora build as
//! capgate, one trivial `request_filter`, upstream keep-alive, and like
//! capgate's agent listener HTTP/1.x and h2c on the same port; nothing else.
//! `bench-passthrough LISTEN_PORT UPSTREAM_PORT THREADS [WORK_STEALING true|false]`

use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;

struct Pass {
    upstream: String,
}

#[async_trait]
impl ProxyHttp for Pass {
    type CTX = ();
    fn new_ctx(&self) {}
    async fn request_filter(&self, _s: &mut Session, _c: &mut ()) -> Result<bool> {
        Ok(false)
    }
    async fn upstream_peer(&self, _s: &mut Session, _c: &mut ()) -> Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream.as_str(), false, String::new())))
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let listen = args.get(1).cloned().unwrap_or_else(|| "18082".into());
    let upstream = format!("127.0.0.1:{}", args.get(2).cloned().unwrap_or_else(|| "18081".into()));
    let threads = args.get(3).and_then(|t| t.parse().ok()).unwrap_or(2);
    let work_stealing = args.get(4).map(|w| w != "false").unwrap_or(true);
    let conf = ServerConf { threads, work_stealing, ..ServerConf::default() };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut svc = pingora::proxy::http_proxy_service(&server.configuration, Pass { upstream });
    svc.add_tcp(&format!("127.0.0.1:{listen}"));
    if let Some(app) = svc.app_logic_mut() {
        let mut opts = pingora::apps::HttpServerOptions::default();
        opts.h2c = true;
        app.server_options = Some(opts);
    }
    server.add_service(svc);
    server.run_forever();
}
