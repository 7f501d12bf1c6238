//! Live reload triggers for the policies and the vault: `SIGHUP` and a file
//! watch (modification times, polled every 2 s). `POST /v1/policies/reload`
//! on the admin API is a third trigger for the policies.
//!
//! - [`crate::state::GatewayState::reload_policies`] validates the new set and
//!   swaps it atomically, or keeps the old one and says why;
//! - [`crate::state::GatewayState::reload_vault`] re-opens the vault store
//!   (written by `capgate vault put`/`rm`) and swaps it with its sanitizers,
//!   or keeps the old credentials and says why.

use crate::state::GatewayState;
use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::sync::Arc;
use std::time::Duration;

pub struct LiveReloader {
    pub state: Arc<GatewayState>,
}

#[async_trait]
impl BackgroundService for LiveReloader {
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
                    let _ = self.state.reload_vault("SIGHUP");
                }
                _ = tick.tick() => {
                    self.state.reload_if_changed();
                    self.state.reload_vault_if_changed();
                }
            }
        }
    }
}
