//! # capgate-filters
//!
//! The pure, synchronous logic of the capgate gateway. Nothing in this crate
//! performs I/O, spawns tasks or depends on pingora or tokio, so every rule
//! here can be unit-tested, fuzzed and benchmarked without a network.
//!
//! - [`normalize`]: request-path normalisation that runs before any matching.
//! - [`ucan`]: UCAN envelope parsing, signature and chain verification,
//!   capability matching, replay protection and the verified-token cache.
//! - [`authz`]: the Cedar authorization model (schema, entities, context) and
//!   the evaluator that names the policies that decided.
//! - [`fast_hash`]: the hasher of the maps and caches on the request path.
//! - [`decision_cache`]: exact memoisation of Cedar decisions per policy set.
//! - [`policy_slice`]: per request, the policies that can apply (only those
//!   are evaluated).
//! - [`sanitize`]: the streaming response sanitizer (secrets, invisible Unicode).
//! - [`scratch`]: a per-thread buffer for the request path's temporary bytes.
//!
//! The proxy crate wires these into pingora's phases; see `proxy/src/gateway.rs`.

pub mod authz;
pub mod decision_cache;
pub mod fast_hash;
pub mod normalize;
pub mod policy_slice;
pub mod sanitize;
pub mod scratch;
pub mod ucan;
