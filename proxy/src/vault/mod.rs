//! The credential vault: sealed per (tenant, name) in an embedded store,
//! opened once into memory, zeroized on drop.
//!
//! - [`seal`]: the key and XChaCha20-Poly1305 sealing;
//! - [`store`]: the on-disk file of sealed entries.
//!
//! [`Vault::open`] decrypts every entry at start, so a wrong key is a clear
//! start-up error rather than a failure on the first request. A running
//! gateway picks up `capgate vault put`/`rm` through [`Vault::reopen`]
//! (SIGHUP or the store's file watch): the new vault is opened in full with the
//! same key and swapped in only if every entry opens.

pub mod seal;
pub mod store;

use capgate_filters::fast_hash::FastMap;
use seal::{SealError, VaultKey};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use store::StoreError;
use zeroize::Zeroizing;

#[derive(Debug, thiserror::Error)]
pub enum VaultError {
    #[error(transparent)]
    Key(#[from] SealError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("vault entry {tenant}/{name} was sealed with key id {entry_key_id}, but the configured key has id {key_id}: wrong vault key")]
    WrongKey { tenant: String, name: String, entry_key_id: String, key_id: String },
    #[error("vault entry {tenant}/{name} failed to open: the key is wrong or the store was tampered with")]
    Tampered { tenant: String, name: String },
    #[error("vault entry {tenant}/{name} is not valid UTF-8 or contains control characters")]
    BadValue { tenant: String, name: String },
    #[error("no vault entry {tenant}/{name}")]
    NotFound { tenant: String, name: String },
}

/// A decrypted credential. Zeroized when the last reference drops.
pub struct Secret(Zeroizing<String>);

impl Secret {
    /// Wrap a plaintext (benchmarks and tests; the vault builds its own).
    pub fn new(value: String) -> Self {
        Secret(Zeroizing::new(value))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// Name and version of a stored entry (never its value).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo {
    pub tenant: String,
    pub name: String,
    pub version: u64,
    pub key_id: String,
    pub updated: u64,
}

/// The vault: its store path, key, and the opened credentials.
pub struct Vault {
    path: PathBuf,
    key: Arc<VaultKey>,
    /// tenant → name → secret; nested so lookups borrow and never allocate.
    open: FastMap<String, FastMap<String, Arc<Secret>>>,
}

/// Header values may not carry controls; checked on write and on open.
fn valid_value(v: &[u8]) -> bool {
    !v.is_empty() && v.iter().all(|b| (0x20..0x7f).contains(b) || *b == b'\t')
}

impl Vault {
    /// Open the store with the key from `key_env`, decrypting every entry.
    pub fn open(path: &Path, key_env: &str) -> Result<Self, VaultError> {
        Self::open_with_key(path, VaultKey::from_env(key_env)?)
    }

    pub fn open_with_key(path: &Path, key: VaultKey) -> Result<Self, VaultError> {
        Self::open_shared(path, Arc::new(key))
    }

    /// Re-read the store with the same key: a fresh, fully opened vault, or
    /// the reason it cannot be opened (this one stays valid either way).
    pub fn reopen(&self) -> Result<Self, VaultError> {
        Self::open_shared(&self.path, self.key.clone())
    }

    /// What identifies the store's current contents on disk (modification
    /// time and length; `None` when it does not exist). Writes replace the
    /// file by rename, so any write changes it.
    pub fn stamp(&self) -> Option<(std::time::SystemTime, u64)> {
        std::fs::metadata(&self.path).ok().and_then(|m| m.modified().ok().map(|t| (t, m.len())))
    }

    fn open_shared(path: &Path, key: Arc<VaultKey>) -> Result<Self, VaultError> {
        let file = store::read(path)?;
        let mut open: FastMap<String, FastMap<String, Arc<Secret>>> = FastMap::default();
        for e in file.entries {
            if e.key_id != key.id() {
                return Err(VaultError::WrongKey { tenant: e.tenant, name: e.name, entry_key_id: e.key_id, key_id: key.id().to_owned() });
            }
            let plain = key
                .open(&e.tenant, &e.name, e.version, &e.nonce, &e.ciphertext)
                .map_err(|_| VaultError::Tampered { tenant: e.tenant.clone(), name: e.name.clone() })?;
            if !valid_value(&plain) {
                return Err(VaultError::BadValue { tenant: e.tenant, name: e.name });
            }
            let s =
                String::from_utf8(plain.to_vec()).map_err(|_| VaultError::BadValue { tenant: e.tenant.clone(), name: e.name.clone() })?;
            open.entry(e.tenant).or_default().insert(e.name, Arc::new(Secret(Zeroizing::new(s))));
        }
        Ok(Vault { path: path.to_owned(), key, open })
    }

    /// The credential for (tenant, name), if any.
    pub fn get(&self, tenant: &str, name: &str) -> Option<Arc<Secret>> {
        self.open.get(tenant)?.get(name).cloned()
    }

    /// Every opened secret (for redaction of echoes).
    pub fn secrets(&self) -> impl Iterator<Item = (&str, &str, &Arc<Secret>)> {
        self.open.iter().flat_map(|(t, names)| names.iter().map(move |(n, s)| (t.as_str(), n.as_str(), s)))
    }

    /// Seal and store `value` as the next version of (tenant, name).
    pub fn put(&mut self, tenant: &str, name: &str, value: &str) -> Result<u64, VaultError> {
        if !valid_value(value.as_bytes()) {
            return Err(VaultError::BadValue { tenant: tenant.into(), name: name.into() });
        }
        let key = &*self.key;
        let version = store::update(&self.path, |file| {
            let version = file.entries.iter().filter(|e| e.tenant == tenant && e.name == name).map(|e| e.version).max().unwrap_or(0) + 1;
            let (nonce, ciphertext) = key.seal(tenant, name, version, value.as_bytes());
            file.entries.retain(|e| !(e.tenant == tenant && e.name == name));
            file.entries.push(store::SealedEntry {
                tenant: tenant.into(),
                name: name.into(),
                version,
                key_id: key.id().into(),
                nonce,
                ciphertext,
                updated: unix_now(),
            });
            version
        })?;
        self.open.entry(tenant.into()).or_default().insert(name.into(), Arc::new(Secret(Zeroizing::new(value.to_owned()))));
        Ok(version)
    }

    /// Remove (tenant, name).
    pub fn remove(&mut self, tenant: &str, name: &str) -> Result<(), VaultError> {
        let removed = store::update(&self.path, |file| {
            let before = file.entries.len();
            file.entries.retain(|e| !(e.tenant == tenant && e.name == name));
            before != file.entries.len()
        })?;
        if let Some(names) = self.open.get_mut(tenant) {
            names.remove(name);
        }
        if removed {
            Ok(())
        } else {
            Err(VaultError::NotFound { tenant: tenant.into(), name: name.into() })
        }
    }
}

/// List entries without opening them (needs no key).
pub fn list(path: &Path) -> Result<Vec<EntryInfo>, VaultError> {
    let mut out: Vec<EntryInfo> = store::read(path)?
        .entries
        .into_iter()
        .map(|e| EntryInfo { tenant: e.tenant, name: e.name, version: e.version, key_id: e.key_id, updated: e.updated })
        .collect();
    out.sort_by(|a, b| (&a.tenant, &a.name).cmp(&(&b.tenant, &b.name)));
    Ok(out)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_get_list_remove_and_wrong_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("vault.json");
        let mut v = Vault::open_with_key(&path, VaultKey::from_bytes(&[1; 32])).expect("empty vault");
        assert_eq!(v.put("acme", "github", "ghp_x").expect("put"), 1);
        assert_eq!(v.put("acme", "github", "ghp_y").expect("put"), 2);
        assert_eq!(v.get("acme", "github").map(|s| s.expose().to_owned()).as_deref(), Some("ghp_y"));
        assert!(v.get("other", "github").is_none());
        let text = std::fs::read_to_string(&path).expect("store");
        assert!(!text.contains("ghp_y"), "plaintext never reaches the store");
        let listed = list(&path).expect("list");
        assert_eq!((listed.len(), listed[0].version), (1, 2));
        let reopened = Vault::open_with_key(&path, VaultKey::from_bytes(&[1; 32])).expect("reopen");
        assert_eq!(reopened.get("acme", "github").map(|s| s.expose().to_owned()).as_deref(), Some("ghp_y"));
        let err = Vault::open_with_key(&path, VaultKey::from_bytes(&[2; 32])).err().expect("wrong key refused");
        assert!(matches!(err, VaultError::WrongKey { .. }), "{err}");
        assert!(v.put("acme", "bad", "a\nb").is_err(), "control characters refused");
        v.remove("acme", "github").expect("remove");
        assert!(v.get("acme", "github").is_none());
        assert!(matches!(v.remove("acme", "github"), Err(VaultError::NotFound { .. })));
    }

    #[test]
    fn reopen_sees_writes_by_another_process_and_keeps_the_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("vault.json");
        let serving = Vault::open_with_key(&path, VaultKey::from_bytes(&[7; 32])).expect("empty vault");
        let before = serving.stamp();
        // The CLI is another process with its own handle on the same store.
        let mut cli = Vault::open_with_key(&path, VaultKey::from_bytes(&[7; 32])).expect("cli");
        cli.put("acme", "github", "rotated-value").expect("put");
        assert_ne!(serving.stamp(), before, "a write changes the stamp");
        assert!(serving.get("acme", "github").is_none(), "the serving vault is a snapshot");
        let fresh = serving.reopen().expect("reopen");
        assert_eq!(fresh.get("acme", "github").map(|s| s.expose().to_owned()).as_deref(), Some("rotated-value"));
        // A corrupt store does not reopen: the caller keeps serving the old vault.
        std::fs::write(&path, "{ not json").expect("corrupt");
        assert!(matches!(fresh.reopen(), Err(VaultError::Store(_))), "a corrupt store is refused");
        assert_eq!(fresh.get("acme", "github").map(|s| s.expose().to_owned()).as_deref(), Some("rotated-value"));
    }
}
