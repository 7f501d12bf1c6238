//! Ed25519 key files: PKCS#8 PEM, exactly what `openssl genpkey -algorithm
//! ed25519` writes, so keys move freely between capgate and other tools.

use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey};
use ed25519_dalek::SigningKey;
use std::io::Write;
use std::path::Path;

/// Why a key file could not be used. Never includes key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read key file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("key file {path} is not an Ed25519 PKCS#8 PEM private key")]
    Format { path: String },
    #[error("cannot write key file {path}: {source}")]
    Write { path: String, source: std::io::Error },
    #[error("key file {path} exists already (refusing to overwrite)")]
    Exists { path: String },
}

/// Load a signing key from a PKCS#8 PEM file.
pub fn load(path: &Path) -> Result<SigningKey, KeyError> {
    let text = zeroize::Zeroizing::new(
        std::fs::read_to_string(path).map_err(|source| KeyError::Read { path: path.display().to_string(), source })?,
    );
    SigningKey::from_pkcs8_pem(&text).map_err(|_| KeyError::Format { path: path.display().to_string() })
}

/// Generate a key and write it to `path` with mode 0600. Never overwrites.
pub fn generate(path: &Path) -> Result<SigningKey, KeyError> {
    let key = SigningKey::generate(&mut rand::rngs::OsRng);
    write(path, &key)?;
    Ok(key)
}

/// Write `key` to a new file at `path` (mode 0600).
pub fn write(path: &Path, key: &SigningKey) -> Result<(), KeyError> {
    let p = path.display().to_string();
    let pem = key.to_pkcs8_pem(ed25519_dalek::pkcs8::spki::der::pem::LineEnding::LF).map_err(|_| KeyError::Format { path: p.clone() })?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|source| KeyError::Write { path: p.clone(), source })?;
    }
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|source| match source.kind() {
        std::io::ErrorKind::AlreadyExists => KeyError::Exists { path: p.clone() },
        _ => KeyError::Write { path: p.clone(), source },
    })?;
    f.write_all(pem.as_bytes()).and_then(|_| f.sync_all()).map_err(|source| KeyError::Write { path: p, source })
}

/// The did:key of a signing key.
pub fn did_of(key: &SigningKey) -> String {
    capgate_filters::ucan::did::did_key(&key.verifying_key())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_no_overwrite() {
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("k.pem");
        let k = generate(&p).expect("generate");
        assert_eq!(load(&p).expect("load").to_bytes(), k.to_bytes());
        assert!(matches!(generate(&p), Err(KeyError::Exists { .. })));
        let text = std::fs::read_to_string(&p).expect("read");
        assert!(text.starts_with("-----BEGIN PRIVATE KEY-----"));
        std::fs::write(dir.path().join("bad.pem"), "nope").expect("write");
        assert!(matches!(load(&dir.path().join("bad.pem")), Err(KeyError::Format { .. })));
    }

    #[test]
    fn reads_openssl_genpkey_output() {
        // Written by `openssl genpkey -algorithm ed25519` (a throwaway test key).
        let pem =
            "-----BEGIN PRIVATE KEY-----\nMC4CAQAwBQYDK2VwBCIEIPpMPpUpYTHvfEQi6dmv7wZc24nXDtvMxl2J7D/Ufuki\n-----END PRIVATE KEY-----\n";
        let dir = tempfile::tempdir().expect("tempdir");
        let p = dir.path().join("o.pem");
        std::fs::write(&p, pem).expect("write");
        let k = load(&p).expect("openssl key loads");
        assert!(did_of(&k).starts_with("did:key:z6Mk"));
    }
}
