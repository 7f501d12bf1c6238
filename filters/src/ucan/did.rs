//! `did:key` identifiers for Ed25519 keys (multicodec `0xed`, base58btc).
//!
//! Only Ed25519 is accepted. Any other key type is refused with a reason that
//! names what was found, never with a generic failure.
//!
//! Decoding a `did:key` (base58, then decompressing the curve point) costs
//! about 3.6 µs, a tenth of a signature check, and an agent signs every
//! invocation with the same key; [`KeyCache`] keeps decoded keys, each with
//! its own strict-verification check already made ([`IssuerKey`]). It caches
//! a pure function of the DID string, so it grants nothing: a key is trusted
//! only through the chain that names it.

use super::signature::IssuerKey;
use crate::fast_hash::FastState;
use ed25519_dalek::VerifyingKey;

/// The multicodec varint prefix of an Ed25519 public key.
const ED25519_PREFIX: [u8; 2] = [0xed, 0x01];
const DID_KEY_PREFIX: &str = "did:key:z";

/// Why a DID could not be turned into a verifying key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DidError {
    #[error("not a did:key with a base58btc multibase value")]
    NotDidKey,
    #[error("did:key is not valid base58btc")]
    BadEncoding,
    #[error("did:key is not an Ed25519 key (multicodec prefix {0:#04x})")]
    UnsupportedKeyType(u8),
    #[error("did:key does not hold a valid Ed25519 public key")]
    BadKey,
}

/// Parse an Ed25519 `did:key` into its verifying key.
pub fn parse_did_key(did: &str) -> Result<VerifyingKey, DidError> {
    let encoded = did.strip_prefix(DID_KEY_PREFIX).ok_or(DidError::NotDidKey)?;
    let bytes = bs58::decode(encoded).into_vec().map_err(|_| DidError::BadEncoding)?;
    if bytes.len() < 2 || bytes[..2] != ED25519_PREFIX {
        return Err(DidError::UnsupportedKeyType(bytes.first().copied().unwrap_or(0)));
    }
    let key: [u8; 32] = bytes[2..].try_into().map_err(|_| DidError::BadKey)?;
    VerifyingKey::from_bytes(&key).map_err(|_| DidError::BadKey)
}

/// Decoded `did:key`s by DID, bounded in entries. Only successful decodings
/// are kept; an evicted key is decoded again.
pub struct KeyCache {
    keys: moka::sync::Cache<Box<str>, IssuerKey, FastState>,
}

impl KeyCache {
    pub fn new(capacity: u64) -> Self {
        KeyCache { keys: moka::sync::Cache::builder().max_capacity(capacity.max(1)).build_with_hasher(FastState::default()) }
    }

    /// [`parse_did_key`], through the cache.
    pub fn parse(&self, did: &str) -> Result<IssuerKey, DidError> {
        if let Some(key) = self.keys.get(did) {
            return Ok(key);
        }
        let key = IssuerKey::new(parse_did_key(did)?);
        self.keys.insert(did.into(), key);
        Ok(key)
    }
}

/// The `did:key` of an Ed25519 verifying key.
pub fn did_key(key: &VerifyingKey) -> String {
    let mut bytes = Vec::with_capacity(34);
    bytes.extend_from_slice(&ED25519_PREFIX);
    bytes.extend_from_slice(key.as_bytes());
    format!("{DID_KEY_PREFIX}{}", bs58::encode(bytes).into_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    #[test]
    fn the_key_cache_decodes_as_parse_did_key_does() {
        let cache = KeyCache::new(2);
        let keys: Vec<_> = (0..5).map(|_| SigningKey::generate(&mut rand::rngs::OsRng).verifying_key()).collect();
        for _ in 0..3 {
            for k in &keys {
                let did = did_key(k);
                assert_eq!(cache.parse(&did), Ok(IssuerKey::new(*k)));
                assert_eq!(cache.parse(&did), parse_did_key(&did).map(IssuerKey::new));
            }
        }
        for bad in ["did:web:example.com", "did:key:z0OIl", "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme"] {
            assert!(parse_did_key(bad).is_err());
            assert_eq!(cache.parse(bad), parse_did_key(bad).map(IssuerKey::new));
            assert_eq!(cache.parse(bad), parse_did_key(bad).map(IssuerKey::new), "a failure is not cached as a success");
        }
    }

    #[test]
    fn round_trip() {
        let key = SigningKey::generate(&mut rand::rngs::OsRng).verifying_key();
        let did = did_key(&key);
        assert!(did.starts_with("did:key:z6Mk"), "{did}");
        assert_eq!(parse_did_key(&did), Ok(key));
    }

    #[test]
    fn known_vector() {
        // From the did:key method specification's Ed25519 test vectors.
        let did = "did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp";
        let key = parse_did_key(did).expect("spec vector parses");
        assert_eq!(did_key(&key), did);
    }

    #[test]
    fn rejects_other_keys() {
        // secp256k1 did:key (multicodec 0xe7).
        let k1 = "did:key:zQ3shokFTS3brHcDQrn82RUDfCZESWL1ZdCEJwekUDPQiYBme";
        assert!(matches!(parse_did_key(k1), Err(DidError::UnsupportedKeyType(0xe7))));
        assert_eq!(parse_did_key("did:web:example.com"), Err(DidError::NotDidKey));
        assert_eq!(parse_did_key("did:key:z0OIl"), Err(DidError::BadEncoding));
    }
}
