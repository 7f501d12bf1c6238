//! Sealing credentials with XChaCha20-Poly1305.
//!
//! Each write uses a fresh random 192-bit nonce. The AAD binds a ciphertext
//! to its tenant, name and version, so a sealed value moved to another entry,
//! or replayed as another version, fails to open.
//!
//! The key comes from an environment variable (base64, 32 bytes), never from
//! the config file or the store. A key has an id (the first 8 bytes of
//! SHA-256 over a domain tag and the key, in hex) that is stored with every
//! entry, so a wrong key is reported as such instead of as corruption, and a
//! rotation can tell old entries from new ones.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use rand::RngCore;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// Why a key could not be loaded or a value opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("environment variable {0} is not set (it must hold the vault key: 32 bytes, base64)")]
    KeyMissing(String),
    #[error("environment variable {0} is not a base64-encoded 32-byte key")]
    KeyMalformed(String),
    #[error("a vault entry could not be opened: wrong key or tampered store")]
    Open,
}

/// The vault key and its id.
pub struct VaultKey {
    cipher: XChaCha20Poly1305,
    id: String,
}

impl VaultKey {
    /// Read the key from the environment variable `var`.
    pub fn from_env(var: &str) -> Result<Self, SealError> {
        let raw = Zeroizing::new(std::env::var(var).map_err(|_| SealError::KeyMissing(var.to_owned()))?);
        Self::from_base64(raw.trim()).map_err(|_| SealError::KeyMalformed(var.to_owned()))
    }

    /// Parse a base64 (standard alphabet) 32-byte key.
    pub fn from_base64(b64: &str) -> Result<Self, SealError> {
        let bytes = Zeroizing::new(STANDARD.decode(b64).map_err(|_| SealError::KeyMalformed(String::new()))?);
        let key: &[u8; 32] = bytes.as_slice().try_into().map_err(|_| SealError::KeyMalformed(String::new()))?;
        Ok(Self::from_bytes(key))
    }

    pub fn from_bytes(key: &[u8; 32]) -> Self {
        let mut h = Sha256::new();
        h.update(b"capgate vault key id v1\0");
        h.update(key);
        let digest = h.finalize();
        let id = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        VaultKey { cipher: XChaCha20Poly1305::new(key.into()), id }
    }

    /// A fresh random key, base64-encoded (for `capgate vault keygen` and dev bootstrap).
    pub fn generate_base64() -> Zeroizing<String> {
        let mut k = Zeroizing::new([0u8; 32]);
        rand::rngs::OsRng.fill_bytes(k.as_mut());
        Zeroizing::new(STANDARD.encode(k.as_ref()))
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// Seal `plaintext` for (tenant, name, version). Returns (nonce, ciphertext).
    pub fn seal(&self, tenant: &str, name: &str, version: u64, plaintext: &[u8]) -> (Vec<u8>, Vec<u8>) {
        let mut nonce = [0u8; 24];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        let aad = aad(tenant, name, version);
        let ct = self
            .cipher
            .encrypt(XNonce::from_slice(&nonce), Payload { msg: plaintext, aad: &aad })
            .unwrap_or_else(|_| unreachable!("XChaCha20-Poly1305 encryption cannot fail for in-memory buffers"));
        (nonce.to_vec(), ct)
    }

    /// Open a sealed value.
    pub fn open(&self, tenant: &str, name: &str, version: u64, nonce: &[u8], ct: &[u8]) -> Result<Zeroizing<Vec<u8>>, SealError> {
        if nonce.len() != 24 {
            return Err(SealError::Open);
        }
        let aad = aad(tenant, name, version);
        self.cipher.decrypt(XNonce::from_slice(nonce), Payload { msg: ct, aad: &aad }).map(Zeroizing::new).map_err(|_| SealError::Open)
    }
}

/// AAD = domain tag ‖ len(tenant) ‖ tenant ‖ len(name) ‖ name ‖ version (big-endian).
fn aad(tenant: &str, name: &str, version: u64) -> Vec<u8> {
    let mut a = Vec::with_capacity(32 + tenant.len() + name.len());
    a.extend_from_slice(b"capgate vault v1\0");
    a.extend_from_slice(&(tenant.len() as u32).to_be_bytes());
    a.extend_from_slice(tenant.as_bytes());
    a.extend_from_slice(&(name.len() as u32).to_be_bytes());
    a.extend_from_slice(name.as_bytes());
    a.extend_from_slice(&version.to_be_bytes());
    a
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_open_and_binding() {
        let k = VaultKey::from_bytes(&[7u8; 32]);
        let (n, ct) = k.seal("acme", "github", 1, b"secret");
        assert_eq!(k.open("acme", "github", 1, &n, &ct).expect("opens").as_slice(), b"secret");
        assert!(k.open("other", "github", 1, &n, &ct).is_err(), "tenant bound");
        assert!(k.open("acme", "gitlab", 1, &n, &ct).is_err(), "name bound");
        assert!(k.open("acme", "github", 2, &n, &ct).is_err(), "version bound");
        let (n2, _) = k.seal("acme", "github", 1, b"secret");
        assert_ne!(n, n2, "fresh nonce per write");
        let wrong = VaultKey::from_bytes(&[8u8; 32]);
        assert!(wrong.open("acme", "github", 1, &n, &ct).is_err());
        assert_ne!(wrong.id(), k.id());
    }

    #[test]
    fn key_parsing() {
        assert!(VaultKey::from_base64(&VaultKey::generate_base64()).is_ok());
        assert!(VaultKey::from_base64("c2hvcnQ=").is_err());
        assert!(VaultKey::from_base64("not base64!").is_err());
    }
}
