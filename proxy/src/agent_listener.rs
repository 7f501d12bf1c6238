//! The agent listener's entry point for each new TCP connection: it bounds
//! how long a connection may stay silent before it says which HTTP version
//! it speaks, then hands it to the proxy.
//!
//! With `server.h2c`, pingora tells HTTP/2 from HTTP/1.x by reading the
//! first 24 bytes of a new connection (the length of the HTTP/2 preface) and
//! putting them back. That read has no deadline in pingora 0.9.1, so a
//! connection that sends fewer bytes, or nothing, would hold its task and
//! descriptor for ever, where an HTTP/1.x connection is closed after the
//! 60 s keep-alive timeout. Here the same read runs first, under that same
//! deadline; the bytes stay buffered in the stream, so pingora's own read
//! then returns at once.

use crate::gateway::Gateway;
use async_trait::async_trait;
use pingora::apps::ServerApp;
use pingora::protocols::Stream;
use pingora::proxy::HttpProxy;
use pingora::server::ShutdownWatch;
use std::sync::Arc;
use std::time::Duration;

/// The HTTP/2 connection preface is this long (RFC 9113 §3.4).
const PREFACE_LEN: usize = 24;

/// The proxy behind a deadline on the first bytes of each connection.
pub struct AgentListener {
    proxy: Arc<HttpProxy<Gateway>>,
    first_bytes_timeout: Duration,
}

impl AgentListener {
    pub fn new(proxy: HttpProxy<Gateway>, first_bytes_timeout: Duration) -> AgentListener {
        AgentListener { proxy: Arc::new(proxy), first_bytes_timeout }
    }

    /// Whether pingora will read the preface: h2c on, and not a TLS stream
    /// (where ALPN decides).
    fn reads_preface(&self, stream: &Stream) -> bool {
        self.proxy.server_options.as_ref().is_some_and(|o| o.h2c) && stream.get_ssl_digest().is_none()
    }
}

#[async_trait]
impl ServerApp for AgentListener {
    async fn process_new(self: &Arc<Self>, mut stream: Stream, shutdown: &ShutdownWatch) -> Option<Stream> {
        if self.reads_preface(&stream) {
            let mut first = [0u8; PREFACE_LEN];
            match tokio::time::timeout(self.first_bytes_timeout, stream.try_peek(&mut first)).await {
                Ok(Ok(_)) => {}
                // Silent past the deadline, or closed before 24 bytes: drop it.
                Ok(Err(_)) | Err(_) => return None,
            }
        }
        self.proxy.process_new(stream, shutdown).await
    }

    async fn cleanup(&self) {
        self.proxy.cleanup().await
    }
}
