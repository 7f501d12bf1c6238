//! Live policy reload triggers: `SIGHUP` and a file watch (the policy files'
//! modification times, polled every 2 s). `POST /v1/policies/reload` on the
//! admin API is the third. Each one calls
//! [`crate::state::GatewayState::reload_policies`], which validates the new
//! set and swaps it atomically, or keeps the old one and says why.

use crate::state::GatewayState;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::Arc;
use std::time::Duration;

pub struct PolicyReloader {
    pub state: Arc<GatewayState>,
}

#[async_trait]
impl BackgroundService for PolicyReloader {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::error!(error = %e, "SIGHUP reload unavailable");
                None
            }
        };
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => std::future::pending().await } } => {
                    let _ = self.state.reload_policies("SIGHUP");
                }
                _ = tick.tick() => self.state.reload_if_changed(),
            }
        }
    }
}
