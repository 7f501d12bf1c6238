//! UCAN verification for HTTP calls.
//!
//! - [`token`] parses a wire token into a version-neutral [`Token`] and checks
//!   its signature (the format seam), which [`signature`] verifies;
//! - [`chain`] walks proofs back to a tenant root, checking links, time
//!   windows and attenuation;
//! - [`capability`] decides what a capability covers;
//! - [`replay`] makes `(iss, nnc)` single-use within a token's window;
//! - [`verifier`] ties them together with the caches.
//!
//! Every refusal carries a stable [`Reason`] code that the proxy puts in its
//! JSON error body.

pub mod b64;
pub mod capability;
pub mod chain;
pub mod cid;
pub mod did;
pub mod mint;
pub mod replay;
pub mod signature;
pub mod token;
pub mod verifier;

pub use capability::{Ability, Capability, HttpUrl, Resource, Scheme};
pub use chain::VerifiedChain;
pub use cid::{Cid, CidText};
pub use token::{Token, TokenError};
pub use verifier::{Verified, Verifier, VerifierConfig};

/// Stable reason codes for token refusals.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    TokenMissing,
    TokenMalformed,
    BadSignature,
    Expired,
    NotYetValid,
    LifetimeTooLong,
    WrongAudience,
    BrokenChain,
    Escalation,
    UntrustedRoot,
    Replayed,
    NonceMissing,
    CapabilityMismatch,
}

impl Reason {
    /// The code as it appears in error bodies, logs and metrics.
    pub fn code(self) -> &'static str {
        match self {
            Reason::TokenMissing => "token_missing",
            Reason::TokenMalformed => "token_malformed",
            Reason::BadSignature => "bad_signature",
            Reason::Expired => "expired",
            Reason::NotYetValid => "not_yet_valid",
            Reason::LifetimeTooLong => "lifetime_too_long",
            Reason::WrongAudience => "wrong_audience",
            Reason::BrokenChain => "broken_chain",
            Reason::Escalation => "escalation",
            Reason::UntrustedRoot => "untrusted_root",
            Reason::Replayed => "replayed",
            Reason::NonceMissing => "nonce_missing",
            Reason::CapabilityMismatch => "capability_mismatch",
        }
    }
}
