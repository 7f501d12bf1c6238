//! # capgate
//!
//! A capability gateway for AI agents, built on pingora. An agent presents a
//! short-lived UCAN; capgate verifies the chain, asks Cedar, swaps the token
//! for the real credential from its encrypted vault and proxies the call.
//!
//! The pure decision logic lives in the `capgate-filters` crate; this crate
//! owns configuration, I/O and the pingora wiring:
//!
//! - [`config`]: `config.toml` and its validation;
//! - [`state`]: everything built once at start and shared by requests;
//! - [`gateway`]: the pingora phases, one concern each;
//! - [`admission`], [`step_up`]: the `request_filter` checks in order, and approvals for risky calls;
//! - [`upstream_headers`]: what the upstream receives;
//! - [`response_sanitize`]: what the agent receives (secrets and invisible Unicode removed);
//!   [`response_framing`]: `Content-Length` for a body sanitized whole before its head leaves;
//!   [`response_cork`]: a small sanitized response leaves in one segment;
//! - [`routes`], [`resolve`]: where a request goes;
//! - [`vault`]: sealed credentials;
//! - [`policies`], [`reload`]: loading the Cedar files, and reloading them live;
//! - [`refusal`]: the JSON error contract;
//! - [`audit`]: the hash-chained, signed audit trail and its verifier;
//! - [`metrics`], [`admin`], [`admin_auth`]: Prometheus and the authenticated admin listener;
//! - [`budgets`]: call budgets per delegation and rate per agent;
//! - [`approvals`], [`revocations`], [`state_store`]: step-up approvals, revocation and the governance state seam;
//! - [`keys`]: PKCS#8 key files; [`cli`]: the `capgate` command;
//! - [`dev`]: development bootstrap and the echo upstream;
//! - start-up: [`server`]; [`agent_listener`]: a deadline on a new agent connection's first bytes.

pub mod admin;
pub mod admin_auth;
pub mod admission;
pub mod agent_listener;
pub mod approvals;
pub mod audit;
pub mod budgets;
pub mod cli;
pub mod config;
pub mod dev;
pub mod gateway;
pub mod keys;
pub mod metrics;
pub mod policies;
pub mod refusal;
pub mod reload;
pub mod request_id;
pub mod resolve;
pub mod response_cork;
pub mod response_framing;
pub mod response_sanitize;
pub mod revocations;
pub mod routes;
pub mod server;
pub mod state;
pub mod state_store;
pub mod step_up;
pub mod telemetry;
pub mod upstream_headers;
pub mod vault;
