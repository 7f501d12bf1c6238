//! Prometheus metrics, served on the admin listener's `/metrics`.
//!
//! Label values are bounded: route names come from config, methods are
//! folded to a fixed set, decisions and reasons are fixed codes. No DID, path
//! or token ever becomes a label.

use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

pub struct Metrics {
    pub registry: Registry,
    /// `capgate_requests_total{route,method,decision,reason}`
    pub requests: IntCounterVec,
    /// `capgate_request_duration_seconds{route,decision}`
    pub duration: HistogramVec,
    /// `capgate_ucan_cache_total{result}`: chain cache hits and misses.
    pub ucan_cache: IntCounterVec,
    /// `capgate_policies_loaded`: policies in the active authz set.
    pub policies_loaded: IntGauge,
    /// `capgate_redactions_total{kind}`: secrets redacted from responses, by format id.
    pub redactions: IntCounterVec,
    /// `capgate_redactions_verified_total`: redactions whose checksum verified.
    pub redactions_verified: IntCounter,
    /// `capgate_invisible_removed_total`: invisible characters removed.
    pub invisible_removed: IntCounter,
    /// `capgate_response_bodies_total{handling}`: sanitized, binary_pass, binary_blocked, unsanitizable.
    pub bodies: IntCounterVec,
    /// `capgate_audit_events_total{result}`: written, failed (a commit that failed), dropped (queue full), lost (unwritten at shutdown).
    pub audit_events: IntCounterVec,
    /// `capgate_audit_healthy`: 1 while every chain persists, 0 while requests are refused.
    pub audit_healthy: IntGauge,
    /// `capgate_policy_reloads_total{result}`: ok or error.
    pub policy_reloads: IntCounterVec,
    /// `capgate_vault_reloads_total{result}`: ok or error.
    pub vault_reloads: IntCounterVec,
}

/// Fold a method into a bounded label value.
pub fn method_label(m: &str) -> &'static str {
    match m {
        "GET" => "GET",
        "HEAD" => "HEAD",
        "OPTIONS" => "OPTIONS",
        "POST" => "POST",
        "PUT" => "PUT",
        "PATCH" => "PATCH",
        "DELETE" => "DELETE",
        _ => "OTHER",
    }
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new("capgate_requests_total", "Requests by route, method, decision and reason code."),
            &["route", "method", "decision", "reason"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new("capgate_request_duration_seconds", "Time from request head to the end of logging.")
                .buckets(vec![0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0]),
            &["route", "decision"],
        )?;
        let ucan_cache =
            IntCounterVec::new(Opts::new("capgate_ucan_cache_total", "Verified-chain cache lookups by result (hit, miss)."), &["result"])?;
        let policies_loaded = IntGauge::new("capgate_policies_loaded", "Policies in the active authorization set.")?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(ucan_cache.clone()))?;
        registry.register(Box::new(policies_loaded.clone()))?;
        let redactions = IntCounterVec::new(
            Opts::new("capgate_redactions_total", "Secrets redacted from responses, by format id (vault_credential for vault echoes)."),
            &["kind"],
        )?;
        let redactions_verified =
            IntCounter::new("capgate_redactions_verified_total", "Redacted secrets whose checksum verified (GitHub, npm).")?;
        let invisible_removed = IntCounter::new("capgate_invisible_removed_total", "Invisible Unicode characters removed from responses.")?;
        let bodies = IntCounterVec::new(
            Opts::new(
                "capgate_response_bodies_total",
                "Response bodies by handling: sanitized, binary_pass, binary_blocked, unsanitizable.",
            ),
            &["handling"],
        )?;
        registry.register(Box::new(redactions.clone()))?;
        registry.register(Box::new(redactions_verified.clone()))?;
        registry.register(Box::new(invisible_removed.clone()))?;
        registry.register(Box::new(bodies.clone()))?;
        let audit_events = IntCounterVec::new(
            Opts::new("capgate_audit_events_total", "Audit events by result: written, failed (commit attempts that failed), dropped (queue full), lost (unwritten at shutdown)."),
            &["result"],
        )?;
        let audit_healthy = IntGauge::new("capgate_audit_healthy", "1 while the audit chains persist; 0 while requests are refused.")?;
        registry.register(Box::new(audit_events.clone()))?;
        registry.register(Box::new(audit_healthy.clone()))?;
        let policy_reloads =
            IntCounterVec::new(Opts::new("capgate_policy_reloads_total", "Policy reloads by result: ok or error."), &["result"])?;
        registry.register(Box::new(policy_reloads.clone()))?;
        let vault_reloads =
            IntCounterVec::new(Opts::new("capgate_vault_reloads_total", "Vault reloads by result: ok or error."), &["result"])?;
        registry.register(Box::new(vault_reloads.clone()))?;
        Ok(Metrics {
            registry,
            requests,
            duration,
            ucan_cache,
            policies_loaded,
            redactions,
            redactions_verified,
            invisible_removed,
            bodies,
            audit_events,
            audit_healthy,
            policy_reloads,
            vault_reloads,
        })
    }

    /// The text exposition.
    pub fn render(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(8192);
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        buf
    }
}
