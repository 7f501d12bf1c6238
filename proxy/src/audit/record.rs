//! Audit records and how they are hashed and signed.
//!
//! - An event line is a JSON object. Its `hash` is
//!   `SHA-256(prev ‖ JCS(event without "hash"))`, where `prev` is the previous
//!   event's `hash` as 64 lower-case hex characters (ASCII) and JCS is the RFC
//!   8785 canonical JSON of every other field. Any field, known or not, is
//!   covered.
//! - The first event's `prev` is the genesis value
//!   `hex(SHA-256("capgate-audit-genesis-v1\0" ‖ chain))`, so a chain cannot
//!   be spliced under another chain id.
//! - A root line is `{chain, seq, head, ts, key, sig}`: `sig` is Ed25519 by
//!   the audit key over `"capgate-audit-root-v1\0" ‖ JCS({chain, seq, head, ts, key})`,
//!   base64url without padding; `key` is the signer's did:key.

use super::canonical::{seal_rendered, Rendered, Seal};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use std::borrow::Cow;

pub const GENESIS_TAG: &[u8] = b"capgate-audit-genesis-v1\0";
pub const ROOT_TAG: &[u8] = b"capgate-audit-root-v1\0";

/// The genesis `prev` of a chain.
pub fn genesis(chain: &str) -> String {
    let mut h = Sha256::new();
    h.update(GENESIS_TAG);
    h.update(chain.as_bytes());
    hex(&h.finalize())
}

pub fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[(b >> 4) as usize] as char);
        s.push(HEX[(b & 15) as usize] as char);
    }
    s
}

/// What one request left behind. Filled by the pipeline, borrowing what it
/// can from the request; `seq`, `ts`, `chain`, `prev` and `hash` are set by
/// the chain writer.
#[derive(Debug, Clone, Default, Serialize)]
pub struct RequestEvent<'a> {
    /// `request` for requests, `torn_tail` for a recovery note.
    pub event: Cow<'a, str>,
    pub tenant: Cow<'a, str>,
    pub request_id: Cow<'a, str>,
    pub agent: Option<Cow<'a, str>>,
    pub token_cid: Option<Cow<'a, str>>,
    pub cosigner_cid: Option<Cow<'a, str>>,
    /// The approver DID of the cosigner, when one released the request.
    pub approver: Option<Cow<'a, str>>,
    pub route: Option<Cow<'a, str>>,
    pub method: Cow<'a, str>,
    /// The normalised path without query; null when the path was refused.
    pub path: Option<Cow<'a, str>>,
    pub decision: Cow<'a, str>,
    pub reason: Cow<'a, str>,
    pub policy_ids: Cow<'a, [String]>,
    pub upstream_status: Option<u16>,
    pub bytes_in: u64,
    pub bytes_out: u64,
    /// Redactions by kind; each kind at most once. A JSON object.
    #[serde(serialize_with = "as_map")]
    pub redactions: Vec<(Cow<'a, str>, u64)>,
    pub duration_us: u64,
    /// Only on `torn_tail` events: how many bytes were moved aside, and where.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub torn_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub torn_file: Option<String>,
}

fn as_map<S: serde::Serializer>(entries: &[(Cow<'_, str>, u64)], s: S) -> Result<S::Ok, S::Error> {
    s.collect_map(entries.iter().map(|(k, v)| (k, v)))
}

/// Canonical bytes of a JSON object without its `hash` field.
pub fn canonical_without_hash(obj: &Map<String, Value>) -> Result<Vec<u8>, String> {
    let mut m = obj.clone();
    m.remove("hash");
    serde_jcs::to_vec(&Value::Object(m)).map_err(|e| e.to_string())
}

/// `hash` of an event object whose `prev` field is set.
pub fn event_hash(obj: &Map<String, Value>) -> Result<String, String> {
    let prev = obj.get("prev").and_then(Value::as_str).ok_or("event has no prev")?;
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(canonical_without_hash(obj)?);
    Ok(hex(&h.finalize()))
}

/// Append the full event line (seq, ts, chain, prev, hash added, and a
/// newline) to `out`, and return the event's hash.
///
/// The event was canonicalised once, on the proxy thread (see
/// [`super::canonical`]): the line is its canonical bytes with the writer's
/// members stitched in and `"hash"` appended as the last member (the line
/// itself need not be canonical; the verifier re-canonicalises without
/// `hash`).
pub fn seal_rendered_into(ev: &Rendered, seq: u64, ts: &str, chain: &str, prev: &str, out: &mut Vec<u8>) -> String {
    let start = out.len();
    seal_rendered(ev, &Seal { seq, ts, chain, prev }, out);
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(&out[start..]);
    let hash = hex(&h.finalize());
    // The canonical bytes end with the object's `}`: the hash goes before it.
    out.pop();
    out.extend_from_slice(b",\"hash\":\"");
    out.extend_from_slice(hash.as_bytes());
    out.extend_from_slice(b"\"}\n");
    hash
}

/// The full event line (without newline) and its hash, from an event not
/// yet rendered (tests).
#[cfg(test)]
pub fn seal_event(ev: &RequestEvent<'_>, seq: u64, ts: &str, chain: &str, prev: &str) -> (String, String) {
    let mut out = Vec::with_capacity(768);
    let hash = seal_rendered_into(&super::canonical::render(ev), seq, ts, chain, prev, &mut out);
    out.pop();
    (String::from_utf8(out).expect("canonical JSON is UTF-8"), hash)
}

/// A signed root.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Root {
    pub chain: String,
    pub seq: u64,
    pub head: String,
    pub ts: String,
    pub key: String,
    pub sig: String,
}

fn root_signing_input(chain: &str, seq: u64, head: &str, ts: &str, key: &str) -> Result<Vec<u8>, String> {
    let body = serde_json::json!({"chain": chain, "seq": seq, "head": head, "ts": ts, "key": key});
    let mut out = ROOT_TAG.to_vec();
    out.extend(serde_jcs::to_vec(&body).map_err(|e| e.to_string())?);
    Ok(out)
}

impl Root {
    pub fn sign(key: &SigningKey, chain: &str, seq: u64, head: &str, ts: &str) -> Result<Root, String> {
        let did = capgate_filters::ucan::did::did_key(&key.verifying_key());
        let input = root_signing_input(chain, seq, head, ts, &did)?;
        let sig = capgate_filters::ucan::b64::encode(&key.sign(&input).to_bytes());
        Ok(Root { chain: chain.into(), seq, head: head.into(), ts: ts.into(), key: did, sig })
    }

    /// True when `sig` is valid for `pubkey` and `key` names that key.
    pub fn verify(&self, pubkey: &VerifyingKey) -> bool {
        let did = capgate_filters::ucan::did::did_key(pubkey);
        if self.key != did {
            return false;
        }
        let Ok(input) = root_signing_input(&self.chain, self.seq, &self.head, &self.ts, &self.key) else {
            return false;
        };
        let Some(bytes) = capgate_filters::ucan::b64::decode(self.sig.as_bytes()) else {
            return false;
        };
        let Ok(sig) = Signature::from_slice(&bytes) else {
            return false;
        };
        pubkey.verify_strict(&input, &sig).is_ok()
    }
}

/// RFC 3339 UTC timestamp with microseconds.
pub fn rfc3339_now() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    rfc3339(now.as_secs(), now.subsec_micros())
}

/// Civil-from-days (Howard Hinnant's algorithm), no time-zone database needed.
pub fn rfc3339(secs: u64, micros: u32) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{micros:06}Z", rem / 3600, rem % 3600 / 60, rem % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339(1_795_552_986, 5), "2026-11-24T20:43:06.000005Z");
        assert_eq!(rfc3339(951_782_400, 0), "2000-02-29T00:00:00.000000Z");
    }

    #[test]
    fn hex_is_lower_case_and_two_digits_a_byte() {
        assert_eq!(hex(&[0x00, 0x0f, 0xab, 0xff]), "000fabff");
        assert_eq!(hex(&[]), "");
        let all: Vec<u8> = (0..=255).collect();
        let want: String = all.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex(&all), want);
    }

    #[test]
    fn hash_covers_every_field_and_roots_verify() {
        let ev = RequestEvent { event: "request".into(), tenant: "acme".into(), ..Default::default() };
        let (line, hash) = seal_event(&ev, 1, "2026-01-01T00:00:00.000000Z", "acme:i", &genesis("acme:i"));
        let mut obj: Map<String, Value> = serde_json::from_str(&line).expect("json");
        assert_eq!(event_hash(&obj).expect("hash"), hash);
        obj.insert("extra".into(), Value::from(1));
        assert_ne!(event_hash(&obj).expect("hash"), hash);
        assert_ne!(genesis("a"), genesis("b"));
        let k = SigningKey::from_bytes(&[9; 32]);
        let r = Root::sign(&k, "acme:i", 1, &hash, "2026-01-01T00:00:00.000000Z").expect("sign");
        assert!(r.verify(&k.verifying_key()));
        let mut bad = r.clone();
        bad.seq = 2;
        assert!(!bad.verify(&k.verifying_key()));
        assert!(!r.verify(&SigningKey::from_bytes(&[8; 32]).verifying_key()));
    }
}
