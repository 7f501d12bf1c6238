//! The token envelope: the one seam where wire formats are parsed.
//!
//! Both JWT encodings are read here into one version-neutral [`Token`]:
//! - UCAN 0.10.0: `ucv` in the payload, capabilities as a `cap` map
//!   (`{resource: {ability: [caveats]}}`), proofs as CIDs;
//! - UCAN 0.8.1 (what `@ucans/ucans` writes): `ucv` in the header,
//!   capabilities as an `att` array of `{with, can}`, proofs inline as JWTs
//!   (CIDs are accepted too).
//!
//! A future encoding (UCAN 1.0, DAG-CBOR + varsig) adds a parser here and
//! leaves the chain and capability logic untouched.
//!
//! Parsing is strict: canonical unpadded base64url, strict JSON with no
//! duplicate or unknown fields, `alg: EdDSA` only, issuers that are Ed25519
//! `did:key`s, and a signature checked as strictly as `verify_strict` does
//! ([`super::signature`]).

use super::b64;
use super::capability::{Capability, CapabilityError};
use super::cid::Cid;
use super::did::{parse_did_key, DidError, KeyCache};
use super::signature::IssuerKey;
use super::Reason;
use ed25519_dalek::Signature;
use serde::de::{self, MapAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::fmt;

/// The largest token accepted, in bytes. Tokens are short-lived single-action
/// grants; anything this large is an attack or a mistake.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;

/// Which wire format a token used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UcanVersion {
    V0_8,
    V0_10,
}

/// A reference to a proof.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProofRef {
    /// A content id to be resolved from the `ucans` header.
    Cid(Cid),
    /// A proof carried inline (UCAN 0.8.1).
    Inline(String),
}

/// A parsed token whose signature has been verified. Time, chain and
/// audience checks are the chain verifier's job.
#[derive(Debug, Clone)]
pub struct Token {
    pub cid: Cid,
    pub version: UcanVersion,
    pub issuer: String,
    pub audience: String,
    pub expires: u64,
    pub not_before: Option<u64>,
    pub nonce: Option<String>,
    pub capabilities: Vec<Capability>,
    pub proofs: Vec<ProofRef>,
    /// Facts (`fct`), kept as JSON for consumers such as approval binding.
    pub facts: Option<serde_json::Value>,
}

/// A refusal with its stable reason code and a fixed explanation. The
/// explanation never contains token content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenError {
    pub reason: Reason,
    pub detail: &'static str,
}

impl TokenError {
    pub(crate) fn new(reason: Reason, detail: &'static str) -> Self {
        TokenError { reason, detail }
    }
}

fn malformed(detail: &'static str) -> TokenError {
    TokenError::new(Reason::TokenMalformed, detail)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Header {
    alg: String,
    #[serde(default)]
    typ: Option<String>,
    #[serde(default)]
    ucv: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PayloadV010 {
    ucv: String,
    iss: String,
    aud: String,
    exp: Option<u64>,
    #[serde(default)]
    nbf: Option<u64>,
    #[serde(default)]
    nnc: Option<String>,
    #[serde(default)]
    fct: Option<serde_json::Value>,
    cap: StrictMap<StrictMap<Vec<serde_json::Value>>>,
    #[serde(default)]
    prf: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PayloadV08 {
    iss: String,
    aud: String,
    exp: Option<u64>,
    #[serde(default)]
    nbf: Option<u64>,
    #[serde(default)]
    nnc: Option<String>,
    #[serde(default)]
    fct: Option<serde_json::Value>,
    att: Vec<AttV08>,
    #[serde(default)]
    prf: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AttV08 {
    with: String,
    can: String,
    #[serde(default)]
    nb: Option<serde_json::Value>,
}

/// A JSON object read in order that refuses duplicate keys.
struct StrictMap<V>(Vec<(String, V)>);

impl<'de, V: Deserialize<'de>> Deserialize<'de> for StrictMap<V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V_<V>(std::marker::PhantomData<V>);
        impl<'de, V: Deserialize<'de>> Visitor<'de> for V_<V> {
            type Value = StrictMap<V>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut m: A) -> Result<Self::Value, A::Error> {
                let mut out: Vec<(String, V)> = Vec::new();
                while let Some((k, v)) = m.next_entry::<String, V>()? {
                    if out.iter().any(|(e, _)| *e == k) {
                        return Err(de::Error::custom("duplicate key"));
                    }
                    out.push((k, v));
                }
                Ok(StrictMap(out))
            }
        }
        d.deserialize_map(V_(std::marker::PhantomData))
    }
}

fn cap_error(e: CapabilityError) -> TokenError {
    match e {
        CapabilityError::BadUrl => malformed("a capability resource is not a valid URL"),
        CapabilityError::UrlExtras => malformed("a capability resource carries userinfo, a query or a fragment"),
        CapabilityError::BadAbility => malformed("a capability ability is malformed"),
    }
}

/// True when a caveat list grants without restriction (`[{}]` or empty
/// objects only). Caveats capgate cannot evaluate make a capability grant
/// nothing, so that an unknown restriction is never dropped silently.
fn caveats_unrestricted(caveats: &[serde_json::Value]) -> bool {
    !caveats.is_empty() && caveats.iter().all(|c| c.as_object().is_some_and(|o| o.is_empty()))
}

/// Parse a JWT-encoded UCAN and verify its signature.
pub fn parse_jwt(jwt: &str) -> Result<Token, TokenError> {
    parse_jwt_with_cid(jwt, Cid::of(jwt.as_bytes()))
}

/// [`parse_jwt`] for a caller that has already computed the token's CID.
pub fn parse_jwt_with_cid(jwt: &str, cid: Cid) -> Result<Token, TokenError> {
    parse_jwt_keyed(jwt, cid, None)
}

/// [`parse_jwt_with_cid`], decoding the issuer's `did:key` through `keys`.
pub fn parse_jwt_keyed(jwt: &str, cid: Cid, keys: Option<&KeyCache>) -> Result<Token, TokenError> {
    if jwt.len() > MAX_TOKEN_LEN {
        return Err(malformed("the token is too large"));
    }
    let mut parts = jwt.splitn(4, '.');
    let (h, p, s) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) => (h, p, s),
        _ => return Err(malformed("a JWT has exactly three dot-separated parts")),
    };
    let header_bytes = b64::decode(h.as_bytes()).ok_or_else(|| malformed("the header is not canonical base64url"))?;
    let header: Header = serde_json::from_slice(&header_bytes).map_err(|_| malformed("the header is not a valid UCAN JWT header"))?;
    if header.alg != "EdDSA" {
        return Err(TokenError::new(Reason::BadSignature, "unsupported signature algorithm: only EdDSA is accepted"));
    }
    if header.typ.as_deref().is_some_and(|t| t != "JWT") {
        return Err(malformed("the header typ must be JWT"));
    }
    if header.ucv.is_none() && header.typ.is_none() {
        return Err(malformed("a UCAN 0.10 header must carry typ JWT"));
    }
    let payload_bytes = b64::decode(p.as_bytes()).ok_or_else(|| malformed("the payload is not canonical base64url"))?;
    let sig_bytes =
        b64::decode(s.as_bytes()).ok_or_else(|| TokenError::new(Reason::BadSignature, "the signature is not canonical base64url"))?;
    let signature =
        Signature::from_slice(&sig_bytes).map_err(|_| TokenError::new(Reason::BadSignature, "the signature is not 64 bytes"))?;

    let (version, iss, aud, exp, nbf, nnc, fct, capabilities, prf) = match header.ucv.as_deref() {
        None => {
            let pl: PayloadV010 =
                serde_json::from_slice(&payload_bytes).map_err(|_| malformed("the payload is not a valid UCAN 0.10 payload"))?;
            if pl.ucv != "0.10.0" {
                return Err(malformed("unsupported UCAN version"));
            }
            let mut caps = Vec::new();
            for (with, abilities) in pl.cap.0 {
                for (can, caveats) in abilities.0 {
                    let cap = Capability::parse(&with, &can).map_err(cap_error)?;
                    if caveats_unrestricted(&caveats) {
                        caps.push(cap);
                    } else if caveats.is_empty() {
                        return Err(malformed("a capability has an empty caveat list"));
                    }
                }
            }
            (UcanVersion::V0_10, pl.iss, pl.aud, pl.exp, pl.nbf, pl.nnc, pl.fct, caps, pl.prf)
        }
        Some(v) if v.starts_with("0.8.") => {
            let pl: PayloadV08 =
                serde_json::from_slice(&payload_bytes).map_err(|_| malformed("the payload is not a valid UCAN 0.8 payload"))?;
            let mut caps = Vec::with_capacity(pl.att.len());
            for att in pl.att {
                let cap = Capability::parse(&att.with, &att.can).map_err(cap_error)?;
                let unrestricted = match &att.nb {
                    None => true,
                    Some(v) => v.as_object().is_some_and(|o| o.is_empty()),
                };
                if unrestricted {
                    caps.push(cap);
                }
            }
            (UcanVersion::V0_8, pl.iss, pl.aud, pl.exp, pl.nbf, pl.nnc, pl.fct, caps, pl.prf)
        }
        Some(_) => return Err(malformed("unsupported UCAN version")),
    };
    let expires = exp.ok_or_else(|| malformed("exp is required"))?;
    if let Some(n) = nbf {
        if n > expires {
            return Err(malformed("nbf is after exp"));
        }
    }
    let issuer_key: Result<IssuerKey, DidError> = match keys {
        Some(cache) => cache.parse(&iss),
        None => parse_did_key(&iss).map(IssuerKey::new),
    };
    let issuer_key = issuer_key.map_err(|e| match e {
        DidError::UnsupportedKeyType(_) => TokenError::new(Reason::BadSignature, "the issuer is not an Ed25519 did:key"),
        _ => malformed("the issuer is not a valid did:key"),
    })?;
    if !aud.starts_with("did:") {
        return Err(malformed("the audience is not a DID"));
    }
    let signing_input_len = h.len() + 1 + p.len();
    issuer_key
        .verify_strict(&jwt.as_bytes()[..signing_input_len], &signature)
        .map_err(|_| TokenError::new(Reason::BadSignature, "the signature does not verify"))?;

    let mut proofs = Vec::with_capacity(prf.len());
    for p in prf {
        if p.contains('.') && version == UcanVersion::V0_10 {
            return Err(malformed("UCAN 0.10 proofs must be CIDs"));
        }
        if p.contains('.') {
            proofs.push(ProofRef::Inline(p));
        } else {
            proofs.push(ProofRef::Cid(Cid::parse(&p).ok_or_else(|| malformed("a proof is not a valid CID"))?));
        }
    }
    Ok(Token { cid, version, issuer: iss, audience: aud, expires, not_before: nbf, nonce: nnc, capabilities, proofs, facts: fct })
}
