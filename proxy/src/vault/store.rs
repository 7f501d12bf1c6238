//! The embedded store: one JSON file of sealed entries, rewritten atomically
//! (write a temporary file, fsync, rename) under an exclusive lock file, so
//! concurrent `capgate vault` commands never lose a write and a crash never
//! leaves a half-written store. Only ciphertext is ever written.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("vault store {path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("vault store {path} is corrupt: {message}")]
    Corrupt { path: PathBuf, message: String },
}

/// One sealed credential.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealedEntry {
    pub tenant: String,
    pub name: String,
    pub version: u64,
    pub key_id: String,
    #[serde(with = "b64")]
    pub nonce: Vec<u8>,
    #[serde(with = "b64")]
    pub ciphertext: Vec<u8>,
    /// Unix seconds of the write.
    pub updated: u64,
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StoreFile {
    pub format: u32,
    pub entries: Vec<SealedEntry>,
}

mod b64 {
    use super::*;
    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&STANDARD.encode(v))
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        STANDARD.decode(s).map_err(serde::de::Error::custom)
    }
}

/// Read the store; a missing file is an empty store.
pub fn read(path: &Path) -> Result<StoreFile, StoreError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(StoreFile { format: 1, entries: vec![] }),
        Err(source) => return Err(StoreError::Io { path: path.to_owned(), source }),
    };
    let file: StoreFile = serde_json::from_str(&text).map_err(|e| StoreError::Corrupt { path: path.to_owned(), message: e.to_string() })?;
    if file.format != 1 {
        return Err(StoreError::Corrupt { path: path.to_owned(), message: format!("unknown format {}", file.format) });
    }
    Ok(file)
}

/// Run `f` on the store under an exclusive lock and write the result back atomically.
pub fn update<T>(path: &Path, f: impl FnOnce(&mut StoreFile) -> T) -> Result<T, StoreError> {
    let io = |source| StoreError::Io { path: path.to_owned(), source };
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io)?;
    }
    let lock_path = path.with_extension("lock");
    let lock = OpenOptions::new().create(true).truncate(false).write(true).open(&lock_path).map_err(io)?;
    lock.lock().map_err(io)?;
    let mut file = read(path)?;
    let out = f(&mut file);
    let tmp = path.with_extension("tmp");
    let json = serde_json::to_vec_pretty(&file).map_err(|e| StoreError::Corrupt { path: path.to_owned(), message: e.to_string() })?;
    {
        let mut opts = OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::OpenOptionsExt;
            opts.mode(0o600);
        }
        let mut t: File = opts.open(&tmp).map_err(io)?;
        t.write_all(&json).and_then(|_| t.sync_all()).map_err(io)?;
    }
    std::fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    drop(lock);
    Ok(out)
}
