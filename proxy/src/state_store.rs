//! The state-store seam: governance state that must survive a restart
//! (revocations today; approvals and budget counters go through the same
//! trait). The embedded default is one JSON file, rewritten atomically
//! (temporary file, fsync, rename) under a lock; a shared backend for
//! several replicas implements [`StateStore`] without touching callers.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What a revocation names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RevokedKind {
    /// A token CID: that token, wherever it appears in a chain.
    Cid,
    /// An issuer DID: every token it issued, so every chain through it.
    Did,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    pub kind: RevokedKind,
    pub value: String,
    /// The tenant whose chains this applies to; `*` for an operator's revocation.
    pub tenant: String,
    /// Who revoked it (the admin token's issuer DID).
    pub by: String,
    /// Unix seconds.
    pub at: u64,
}

/// Governance state behind one seam.
pub trait StateStore: Send + Sync {
    fn revocations(&self) -> Result<Vec<Revocation>, String>;
    /// Persist a revocation; `false` when it was already there.
    fn add_revocation(&self, r: Revocation) -> Result<bool, String>;
    fn approvals(&self) -> Result<Vec<crate::approvals::Approval>, String>;
    /// Insert or replace an approval (by id). Approvals that ended more than
    /// a day before `now` are pruned.
    fn put_approval(&self, a: &crate::approvals::Approval, now: u64) -> Result<(), String>;
    /// Add one to `key` and return the new count. The counter may be
    /// forgotten after `expires_at` (Unix seconds).
    fn incr_counter(&self, key: &str, expires_at: u64) -> Result<u64, String>;
}

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileState {
    format: u32,
    #[serde(default)]
    revocations: Vec<Revocation>,
    #[serde(default)]
    approvals: Vec<crate::approvals::Approval>,
}

/// The embedded store: a JSON file.
pub struct FileStore {
    path: PathBuf,
    lock: Mutex<()>,
    /// Budget counters: in memory in the embedded store (see `budgets`).
    counters: Mutex<std::collections::HashMap<String, (u64, u64)>>,
}

impl FileStore {
    pub fn open(path: &Path) -> Result<Self, String> {
        let s = FileStore { path: path.to_owned(), lock: Mutex::new(()), counters: Mutex::default() };
        s.read()?;
        Ok(s)
    }

    fn read(&self) -> Result<FileState, String> {
        match std::fs::read_to_string(&self.path) {
            Ok(t) => serde_json::from_str(&t).map_err(|e| format!("{}: {e}", self.path.display())),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(FileState { format: 1, ..Default::default() }),
            Err(e) => Err(format!("{}: {e}", self.path.display())),
        }
    }

    fn write(&self, st: &FileState) -> Result<(), String> {
        use std::io::Write;
        let err = |e: std::io::Error| format!("{}: {e}", self.path.display());
        if let Some(d) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(d).map_err(err)?;
        }
        let tmp = self.path.with_extension("tmp");
        let mut f = std::fs::File::create(&tmp).map_err(err)?;
        f.write_all(&serde_json::to_vec_pretty(st).map_err(|e| e.to_string())?).map_err(err)?;
        f.sync_all().map_err(err)?;
        std::fs::rename(&tmp, &self.path).map_err(err)
    }
}

impl StateStore for FileStore {
    fn revocations(&self) -> Result<Vec<Revocation>, String> {
        let _g = self.lock.lock().map_err(|_| "state lock poisoned".to_owned())?;
        Ok(self.read()?.revocations)
    }

    fn add_revocation(&self, r: Revocation) -> Result<bool, String> {
        let _g = self.lock.lock().map_err(|_| "state lock poisoned".to_owned())?;
        let mut st = self.read()?;
        if st.revocations.iter().any(|x| x.kind == r.kind && x.value == r.value && x.tenant == r.tenant) {
            return Ok(false);
        }
        st.format = 1;
        st.revocations.push(r);
        self.write(&st)?;
        Ok(true)
    }

    fn approvals(&self) -> Result<Vec<crate::approvals::Approval>, String> {
        let _g = self.lock.lock().map_err(|_| "state lock poisoned".to_owned())?;
        Ok(self.read()?.approvals)
    }

    fn incr_counter(&self, key: &str, expires_at: u64) -> Result<u64, String> {
        let mut c = self.counters.lock().map_err(|_| "counter lock poisoned".to_owned())?;
        if c.len() > 100_000 {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
            c.retain(|_, (_, exp)| *exp > now);
        }
        let e = c.entry(key.to_owned()).or_insert((0, expires_at));
        e.0 += 1;
        Ok(e.0)
    }

    fn put_approval(&self, a: &crate::approvals::Approval, now: u64) -> Result<(), String> {
        let _g = self.lock.lock().map_err(|_| "state lock poisoned".to_owned())?;
        let mut st = self.read()?;
        st.format = 1;
        st.approvals.retain(|x| x.id != a.id && x.expires_at + 86_400 > now);
        st.approvals.push(a.clone());
        self.write(&st)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revocations_persist() {
        let d = tempfile::tempdir().expect("tmp");
        let p = d.path().join("state.json");
        let s = FileStore::open(&p).expect("open");
        let r = Revocation { kind: RevokedKind::Did, value: "did:key:z6Mk1".into(), tenant: "acme".into(), by: "op".into(), at: 1 };
        assert!(s.add_revocation(r.clone()).expect("add"));
        assert!(!s.add_revocation(r.clone()).expect("dup"));
        let s2 = FileStore::open(&p).expect("reopen");
        assert_eq!(s2.revocations().expect("list"), vec![r]);
    }
}
