//! Prometheus metrics, served on the admin listener's `/metrics`.
//!
//! Label values are bounded: route names come from config, methods are
//! folded to a fixed set, decisions and reasons are fixed codes. No DID, path
//! or token ever becomes a label.

use prometheus::{Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

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
                .buckets(vec![
                    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
            &["route", "decision"],
        )?;
        let ucan_cache = IntCounterVec::new(
            Opts::new("capgate_ucan_cache_total", "Verified-chain cache lookups by result (hit, miss)."),
            &["result"],
        )?;
        let policies_loaded = IntGauge::new("capgate_policies_loaded", "Policies in the active authorization set.")?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        registry.register(Box::new(ucan_cache.clone()))?;
        registry.register(Box::new(policies_loaded.clone()))?;
        Ok(Metrics { registry, requests, duration, ucan_cache, policies_loaded })
    }

    /// The text exposition.
    pub fn render(&self) -> Vec<u8> {
        let mut buf = Vec::with_capacity(8192);
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        buf
    }
}
