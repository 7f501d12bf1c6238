//! Loading the Cedar policy files from `[policies] dir`:
//! `schema.cedarschema` (the schema), `authz.cedar` (the authorization set)
//! and `risk.cedar` (the risk set for step-up). Validation happens here, at start, and the parsed engine is shared
//! by every request; nothing is parsed per request.

use capgate_filters::authz::{PolicyEngine, PolicyLoadError};
use std::path::Path;

pub const SCHEMA_FILE: &str = "schema.cedarschema";
pub const AUTHZ_FILE: &str = "authz.cedar";
pub const RISK_FILE: &str = "risk.cedar";

#[derive(Debug, thiserror::Error)]
pub enum PolicyFilesError {
    #[error("cannot read {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("{dir}: {source}")]
    Invalid { dir: String, source: PolicyLoadError },
}

fn read(dir: &Path, name: &str) -> Result<String, PolicyFilesError> {
    let p = dir.join(name);
    std::fs::read_to_string(&p).map_err(|source| PolicyFilesError::Read { path: p.display().to_string(), source })
}

/// The newest modification time of the policy files (for the file watch).
pub fn stamp(dir: &Path) -> Option<std::time::SystemTime> {
    [SCHEMA_FILE, AUTHZ_FILE, RISK_FILE].iter().filter_map(|f| std::fs::metadata(dir.join(f)).and_then(|m| m.modified()).ok()).max()
}

/// Read and validate the risk set in `dir` (same schema).
pub fn load_risk(dir: &Path) -> Result<PolicyEngine, PolicyFilesError> {
    let schema = read(dir, SCHEMA_FILE)?;
    let risk = read(dir, RISK_FILE)?;
    PolicyEngine::from_sources(&schema, &[(RISK_FILE, &risk)])
        .map_err(|source| PolicyFilesError::Invalid { dir: dir.display().to_string(), source })
}

/// Both sets, validated together: a reload swaps both or neither.
pub fn load_both(dir: &Path) -> Result<(PolicyEngine, PolicyEngine), PolicyFilesError> {
    Ok((load_authz(dir)?, load_risk(dir)?))
}

/// Read and validate the authorization set in `dir`.
pub fn load_authz(dir: &Path) -> Result<PolicyEngine, PolicyFilesError> {
    let schema = read(dir, SCHEMA_FILE)?;
    let authz = read(dir, AUTHZ_FILE)?;
    PolicyEngine::from_sources(&schema, &[(AUTHZ_FILE, &authz)])
        .map_err(|source| PolicyFilesError::Invalid { dir: dir.display().to_string(), source })
}
