//! Issuing UCAN 0.10.0 JWTs: how operators, orchestrators and tests make
//! delegations and invocations. The verifier never depends on this module.

use super::b64;
use super::cid::Cid;
use super::did::did_key;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{json, Map, Value};

/// What to put in a token.
#[derive(Debug, Clone, Default)]
pub struct MintSpec {
    pub audience: String,
    /// `(with, can)` pairs.
    pub capabilities: Vec<(String, String)>,
    /// Expiry, seconds since the Unix epoch.
    pub expires: u64,
    pub not_before: Option<u64>,
    pub nonce: Option<String>,
    /// Proof tokens (JWTs); referenced by CID.
    pub proofs: Vec<String>,
    pub facts: Option<Value>,
}

/// Sign a UCAN 0.10.0 JWT.
pub fn mint(key: &SigningKey, spec: &MintSpec) -> String {
    let mut cap: Map<String, Value> = Map::new();
    for (with, can) in &spec.capabilities {
        let entry = cap.entry(with.clone()).or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(abilities) = entry {
            abilities.insert(can.clone(), json!([{}]));
        }
    }
    let mut payload = Map::new();
    payload.insert("ucv".into(), json!("0.10.0"));
    payload.insert("iss".into(), json!(did_key(&key.verifying_key())));
    payload.insert("aud".into(), json!(spec.audience));
    payload.insert("exp".into(), json!(spec.expires));
    if let Some(nbf) = spec.not_before {
        payload.insert("nbf".into(), json!(nbf));
    }
    if let Some(nnc) = &spec.nonce {
        payload.insert("nnc".into(), json!(nnc));
    }
    if let Some(fct) = &spec.facts {
        payload.insert("fct".into(), fct.clone());
    }
    payload.insert("cap".into(), Value::Object(cap));
    let prf: Vec<Value> = spec.proofs.iter().map(|p| json!(Cid::of(p.as_bytes()).to_string())).collect();
    payload.insert("prf".into(), Value::Array(prf));
    sign_parts(key, br#"{"alg":"EdDSA","typ":"JWT"}"#, Value::Object(payload).to_string().as_bytes())
}

/// Sign arbitrary header and payload bytes. Exposed so tests can craft
/// tokens that are signed correctly but malformed in other ways.
pub fn sign_parts(key: &SigningKey, header: &[u8], payload: &[u8]) -> String {
    let mut out = b64::encode(header);
    out.push('.');
    out.push_str(&b64::encode(payload));
    let sig = key.sign(out.as_bytes());
    out.push('.');
    out.push_str(&b64::encode(&sig.to_bytes()));
    out
}
