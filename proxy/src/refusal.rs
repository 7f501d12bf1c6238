//! Refusals: the one JSON error shape every denial uses,
//! `{"error": CODE, "reason": TEXT, "request_id": ID}`.
//!
//! The reason text is always a fixed sentence chosen by capgate (or a list of
//! policy ids). It never contains a token, a secret or any value the agent sent.

use serde::Serialize;
use std::borrow::Cow;

/// A refusal, before it is written.
#[derive(Debug, Clone)]
pub struct Refusal {
    pub status: u16,
    pub code: &'static str,
    /// Most reasons are fixed sentences, held without a copy.
    pub reason: Cow<'static, str>,
    /// Extra fields some refusals carry (step-up: approval id, action, …).
    /// Boxed: rare, and it keeps `Result<_, Refusal>` small on the hot path.
    pub extra: Option<Box<serde_json::Map<String, serde_json::Value>>>,
    /// Seconds for a `Retry-After` header (429s).
    pub retry_after: Option<u64>,
}

impl Refusal {
    pub fn new(status: u16, code: &'static str, reason: impl Into<Cow<'static, str>>) -> Self {
        Refusal { status, code, reason: reason.into(), extra: None, retry_after: None }
    }

    /// The JSON body.
    pub fn body(&self, request_id: &str) -> Vec<u8> {
        #[derive(Serialize)]
        struct Body<'a> {
            error: &'a str,
            reason: &'a str,
            request_id: &'a str,
            #[serde(flatten, skip_serializing_if = "Option::is_none")]
            extra: Option<&'a serde_json::Map<String, serde_json::Value>>,
        }
        serde_json::to_vec(&Body { error: self.code, reason: &self.reason, request_id, extra: self.extra.as_deref() })
            .unwrap_or_else(|_| br#"{"error":"internal","reason":"serialisation failed","request_id":""}"#.to_vec())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_shape() {
        let r = Refusal::new(403, "policy_denied", "denied by policy \"x\"");
        let v: serde_json::Value = serde_json::from_slice(&r.body("abc")).expect("json");
        assert_eq!(v["error"], "policy_denied");
        assert_eq!(v["reason"], "denied by policy \"x\"");
        assert_eq!(v["request_id"], "abc");
        assert_eq!(v.as_object().map(|o| o.len()), Some(3));
    }
}
