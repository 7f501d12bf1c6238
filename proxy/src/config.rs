//! `config.toml`: the gateway's configuration, parsed with serde
//! (`deny_unknown_fields`) and then validated. A bad config fails at start
//! with the key and the reason.
//!
//! Relative paths are resolved against the directory of the config file, so
//! `capgate serve --config /etc/capgate/config.toml` behaves the same from
//! any working directory.

use capgate_filters::ucan::{HttpUrl, Scheme};
use serde::Deserialize;
use std::collections::HashSet;
use std::path::{Path, PathBuf};

/// A configuration error: which key, and why.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("config {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config {path}: `{key}`: {reason}")]
    Invalid { path: PathBuf, key: String, reason: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerSection,
    #[serde(default)]
    pub ucan: UcanSection,
    #[serde(default)]
    pub tenants: Vec<TenantSection>,
    #[serde(default)]
    pub routes: Vec<RouteSection>,
    pub vault: VaultSection,
    #[serde(default)]
    pub policies: PoliciesSection,
    #[serde(default)]
    pub sanitize: SanitizeSection,
    pub audit: AuditSection,
    #[serde(default)]
    pub admin: AdminSection,
    #[serde(default)]
    pub step_up: StepUpSection,
    #[serde(default)]
    pub budgets: Vec<BudgetSection>,
    pub state: StateSection,
    #[serde(default)]
    pub dev: DevSection,
    /// Where the file was read from (not a TOML key).
    #[serde(skip)]
    pub source: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSection {
    #[serde(default = "default_listen")]
    pub listen: String,
    #[serde(default = "default_admin_listen")]
    pub admin_listen: String,
    /// Worker threads for the proxy service.
    #[serde(default = "default_threads")]
    pub threads: usize,
    /// Let idle worker threads steal tasks from busy ones (pingora's
    /// default). Off pins each connection to the thread that accepted it.
    #[serde(default = "default_true")]
    pub work_stealing: bool,
    /// The gateway's Ed25519 key (PKCS#8 PEM). Its did:key is the audience
    /// every invocation must name.
    pub identity_key: PathBuf,
    /// Seconds to wait for an upstream TCP/TLS connection.
    #[serde(default = "default_connect_timeout")]
    pub upstream_connect_timeout_secs: u64,
    /// Seconds an upstream read may stall.
    #[serde(default = "default_read_timeout")]
    pub upstream_read_timeout_secs: u64,
    /// Read buffer per agent connection, in bytes. 0 (the default): none,
    /// reads go straight into pingora's request, body and HTTP/2 frame
    /// buffers, which read into their own space anyway. pingora's own default
    /// is 64 KiB, held by every idle keep-alive connection for its lifetime.
    #[serde(default = "default_read_buffer")]
    pub read_buffer_bytes: usize,
    /// Serve HTTP/2 with prior knowledge (h2c) on the plaintext listener,
    /// next to HTTP/1.x: a connection that opens with the HTTP/2 preface is
    /// served as HTTP/2, any other as HTTP/1.
    #[serde(default = "default_true")]
    pub h2c: bool,
    /// With h2c, seconds a new agent connection may stay silent before its
    /// first bytes, and an HTTP/2 connection between streams, before it is
    /// closed. (Between HTTP/1.1 requests pingora waits 60 s.)
    #[serde(default = "default_h2c_idle_timeout")]
    pub h2c_idle_timeout_secs: u64,
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}
fn default_admin_listen() -> String {
    "127.0.0.1:9090".into()
}
fn default_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2)
}
fn default_connect_timeout() -> u64 {
    5
}
fn default_read_timeout() -> u64 {
    60
}
fn default_h2c_idle_timeout() -> u64 {
    60
}
fn default_read_buffer() -> usize {
    0
}

impl Default for ServerSection {
    fn default() -> Self {
        ServerSection {
            listen: default_listen(),
            admin_listen: default_admin_listen(),
            threads: default_threads(),
            work_stealing: true,
            identity_key: PathBuf::from("state/gateway.pem"),
            upstream_connect_timeout_secs: default_connect_timeout(),
            upstream_read_timeout_secs: default_read_timeout(),
            read_buffer_bytes: default_read_buffer(),
            h2c: true,
            h2c_idle_timeout_secs: default_h2c_idle_timeout(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UcanSection {
    #[serde(default = "default_max_lifetime")]
    pub max_lifetime_secs: u64,
    #[serde(default = "default_skew")]
    pub clock_skew_secs: u64,
    #[serde(default = "default_true")]
    pub replay_protection: bool,
    /// Verified tokens and chains kept in memory.
    #[serde(default = "default_cache_capacity")]
    pub cache_capacity: u64,
}

fn default_max_lifetime() -> u64 {
    60
}
fn default_skew() -> u64 {
    5
}
fn default_true() -> bool {
    true
}
fn default_cache_capacity() -> u64 {
    100_000
}

impl Default for UcanSection {
    fn default() -> Self {
        UcanSection {
            max_lifetime_secs: default_max_lifetime(),
            clock_skew_secs: default_skew(),
            replay_protection: true,
            cache_capacity: default_cache_capacity(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantSection {
    pub id: String,
    /// did:keys trusted as chain roots for this tenant.
    #[serde(default)]
    pub roots: Vec<String>,
    /// Key files whose did:keys are trusted as roots (convenient for
    /// development; production configs list DIDs in `roots`).
    #[serde(default)]
    pub root_keys: Vec<PathBuf>,
    /// did:keys whose cosigner UCANs may approve this tenant's risky requests.
    #[serde(default)]
    pub approvers: Vec<String>,
    /// Key files whose did:keys are approvers (development).
    #[serde(default)]
    pub approver_keys: Vec<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteSection {
    pub name: String,
    /// Path prefix, e.g. `/github/`.
    pub prefix: String,
    /// Only match requests whose `Host` is this (optional).
    #[serde(default)]
    pub host: Option<String>,
    /// Upstream base URL, e.g. `https://api.github.com`.
    pub upstream: String,
    /// Vault entry name, looked up under the request's tenant.
    pub credential: String,
    #[serde(default)]
    pub inject: InjectSection,
    /// Extra request headers to remove before forwarding.
    #[serde(default)]
    pub strip_headers: Vec<String>,
    /// Lets the default policy permit POST/PUT/PATCH on this route.
    #[serde(default)]
    pub allow_writes: bool,
    /// Marks the route as sensitive for policies.
    #[serde(default)]
    pub sensitive: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InjectSection {
    #[serde(default = "default_inject_header")]
    pub header: String,
    /// `{token}` is replaced by the credential.
    #[serde(default = "default_inject_format")]
    pub format: String,
}

fn default_inject_header() -> String {
    "Authorization".into()
}
fn default_inject_format() -> String {
    "Bearer {token}".into()
}

impl Default for InjectSection {
    fn default() -> Self {
        InjectSection { header: default_inject_header(), format: default_inject_format() }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VaultSection {
    pub path: PathBuf,
    #[serde(default = "default_key_env")]
    pub key_env: String,
}

fn default_key_env() -> String {
    "CAPGATE_VAULT_KEY".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoliciesSection {
    #[serde(default = "default_policies_dir")]
    pub dir: PathBuf,
}

fn default_policies_dir() -> PathBuf {
    PathBuf::from("policies")
}

impl Default for PoliciesSection {
    fn default() -> Self {
        PoliciesSection { dir: default_policies_dir() }
    }
}

/// Who may use the admin API beyond tenant roots.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    /// Operator did:keys: admin tokens rooted here act on every tenant.
    #[serde(default)]
    pub operators: Vec<String>,
    /// Key files whose did:keys are operators (development).
    #[serde(default)]
    pub operator_keys: Vec<PathBuf>,
}

/// A call budget for one route and ability.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BudgetSection {
    pub route: String,
    /// `http/<METHOD>` or `http/*`.
    pub ability: String,
    /// Calls per delegation within its lifetime.
    #[serde(default)]
    pub max_calls: Option<u64>,
    /// Token bucket per agent.
    #[serde(default)]
    pub rate_per_minute: Option<u64>,
    #[serde(default)]
    pub burst: Option<u64>,
}

/// Step-up approvals for risky requests.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepUpSection {
    /// Risky request bodies are buffered (to bind the approval) up to this
    /// size; larger ones get `413 step_up_body_too_large`. At most 65536.
    #[serde(default = "default_step_up_body")]
    pub body_limit_bytes: usize,
    /// How long an approval request stays open.
    #[serde(default = "default_approval_ttl")]
    pub approval_ttl_secs: u64,
    /// Hold a risky request open this long waiting for its approval
    /// (0 = answer `403 step_up_required` at once).
    #[serde(default)]
    pub hold_secs: u64,
}

fn default_step_up_body() -> usize {
    65_536
}
fn default_approval_ttl() -> u64 {
    600
}

impl Default for StepUpSection {
    fn default() -> Self {
        StepUpSection { body_limit_bytes: default_step_up_body(), approval_ttl_secs: default_approval_ttl(), hold_secs: 0 }
    }
}

/// Where governance state (revocations) is kept.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StateSection {
    pub path: PathBuf,
}

/// The audit chain. Required: capgate serves nothing unaudited.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditSection {
    /// `false` turns the audit trail off (for benchmarks; a warning is
    /// logged at start and nothing is audited). Default: on.
    #[serde(default = "default_true")]
    pub enabled: bool,
    /// Chains live in `dir/<tenant>/<instance>/`.
    pub dir: PathBuf,
    /// The Ed25519 key (PKCS#8 PEM) that signs roots. Never inside `dir`.
    pub signing_key: PathBuf,
    /// This gateway instance's id (default: a random id kept in `dir/instance`).
    #[serde(default)]
    pub instance: Option<String>,
    /// Seconds between signed roots (one is also written at shutdown).
    #[serde(default = "default_root_interval")]
    pub root_interval_secs: u64,
    /// Group commit: fsync at least this often, in milliseconds...
    #[serde(default = "default_commit_ms")]
    pub commit_interval_ms: u64,
    /// ...or after this many events, whichever comes first.
    #[serde(default = "default_commit_events")]
    pub commit_events: usize,
    /// Segment files rotate at this size.
    #[serde(default = "default_segment_bytes")]
    pub segment_bytes: u64,
    /// Events queued per chain before new requests are refused.
    #[serde(default = "default_audit_queue")]
    pub queue: usize,
}

fn default_root_interval() -> u64 {
    86_400
}
fn default_commit_ms() -> u64 {
    10
}
fn default_commit_events() -> usize {
    256
}
fn default_segment_bytes() -> u64 {
    64 * 1024 * 1024
}
fn default_audit_queue() -> usize {
    65_536
}

/// What happens to response bodies that are not text.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BinaryPolicy {
    /// Forward unchanged (the decision is counted and logged).
    #[default]
    Pass,
    /// Refuse with `502 binary_blocked`.
    Block,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SanitizeSection {
    #[serde(default)]
    pub binary: BinaryPolicy,
}

/// Development conveniences. Never enable these in production.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DevSection {
    /// On start, create missing key files (identity, `root_keys`), a dev
    /// vault key under the vault's directory when the key env var is unset,
    /// and a random credential for every route whose entry is missing.
    #[serde(default)]
    pub bootstrap: bool,
    /// Serve a loopback echo upstream on this address (shows what the
    /// upstream received).
    #[serde(default)]
    pub echo_upstream: Option<String>,
}

impl Config {
    /// Read, parse, resolve paths and validate.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        Self::parse(&text, path)
    }

    /// Parse `text` as if read from `path`.
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string() })?;
        cfg.source = path.to_owned();
        let base = path.parent().map(Path::to_owned).unwrap_or_default();
        let resolve = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        };
        resolve(&mut cfg.server.identity_key);
        resolve(&mut cfg.vault.path);
        resolve(&mut cfg.policies.dir);
        resolve(&mut cfg.audit.dir);
        resolve(&mut cfg.audit.signing_key);
        resolve(&mut cfg.state.path);
        cfg.admin.operator_keys.iter_mut().for_each(resolve);
        for t in &mut cfg.tenants {
            t.root_keys.iter_mut().for_each(resolve);
            t.approver_keys.iter_mut().for_each(resolve);
        }
        cfg.validate()?;
        Ok(cfg)
    }

    fn invalid(&self, key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
        ConfigError::Invalid { path: self.source.clone(), key: key.into(), reason: reason.into() }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        for (key, addr) in [("server.listen", &self.server.listen), ("server.admin_listen", &self.server.admin_listen)] {
            if addr.parse::<std::net::SocketAddr>().is_err() {
                return Err(self.invalid(key, "must be an IP:port socket address"));
            }
        }
        if self.server.listen == self.server.admin_listen {
            return Err(self.invalid("server.admin_listen", "must differ from server.listen"));
        }
        if self.server.threads == 0 {
            return Err(self.invalid("server.threads", "must be at least 1"));
        }
        if !(1..=3600).contains(&self.server.h2c_idle_timeout_secs) {
            return Err(self.invalid("server.h2c_idle_timeout_secs", "must be between 1 and 3600"));
        }
        if self.ucan.max_lifetime_secs == 0 {
            return Err(self.invalid("ucan.max_lifetime_secs", "must be at least 1"));
        }
        if self.tenants.is_empty() {
            return Err(self.invalid("tenants", "at least one [[tenants]] entry is required"));
        }
        let mut ids = HashSet::new();
        let mut roots = HashSet::new();
        for (i, t) in self.tenants.iter().enumerate() {
            if !valid_name(&t.id) || t.id.starts_with('_') {
                return Err(self.invalid(format!("tenants[{i}].id"), "must be 1-64 of [A-Za-z0-9_.-], not starting with '_'"));
            }
            if !ids.insert(&t.id) {
                return Err(self.invalid(format!("tenants[{i}].id"), "is used by another tenant"));
            }
            if t.roots.is_empty() && t.root_keys.is_empty() {
                return Err(self.invalid(format!("tenants[{i}].roots"), "a tenant needs at least one root"));
            }
            for (j, r) in t.roots.iter().enumerate() {
                if capgate_filters::ucan::did::parse_did_key(r).is_err() {
                    return Err(self.invalid(format!("tenants[{i}].roots[{j}]"), "is not an Ed25519 did:key"));
                }
                if !roots.insert(r.clone()) {
                    return Err(self.invalid(format!("tenants[{i}].roots[{j}]"), "is a root of another tenant too"));
                }
            }
        }
        if self.routes.is_empty() {
            return Err(self.invalid("routes", "at least one [[routes]] entry is required"));
        }
        let mut names = HashSet::new();
        let mut prefixes = HashSet::new();
        for (i, r) in self.routes.iter().enumerate() {
            let key = |k: &str| format!("routes[{i}].{k}");
            if !valid_name(&r.name) {
                return Err(self.invalid(key("name"), "must be 1-64 of [A-Za-z0-9_.-]"));
            }
            if !names.insert(&r.name) {
                return Err(self.invalid(key("name"), "is used by another route"));
            }
            if !r.prefix.starts_with('/') || !r.prefix.ends_with('/') {
                return Err(self.invalid(key("prefix"), "must start and end with '/'"));
            }
            if capgate_filters::normalize::normalize_path(&r.prefix).as_deref() != Ok(r.prefix.as_str()) {
                return Err(self.invalid(key("prefix"), "must be a normalised path"));
            }
            if !prefixes.insert((r.host.clone(), r.prefix.clone())) {
                return Err(self.invalid(key("prefix"), "another route has the same host and prefix"));
            }
            let url = HttpUrl::parse(&r.upstream)
                .map_err(|e| self.invalid(key("upstream"), format!("must be an http(s) URL without query: {e}")))?;
            if url.scheme == Scheme::Http && !is_loopback_host(&url.host) {
                return Err(self.invalid(key("upstream"), "plain http:// is only allowed for loopback upstreams"));
            }
            if !valid_name(&r.credential) {
                return Err(self.invalid(key("credential"), "must be 1-64 of [A-Za-z0-9_.-]"));
            }
            if http::HeaderName::from_bytes(r.inject.header.as_bytes()).is_err() {
                return Err(self.invalid(key("inject.header"), "is not a valid header name"));
            }
            if r.inject.format.matches("{token}").count() != 1 {
                return Err(self.invalid(key("inject.format"), "must contain `{token}` exactly once"));
            }
            for (j, h) in r.strip_headers.iter().enumerate() {
                if http::HeaderName::from_bytes(h.as_bytes()).is_err() {
                    return Err(self.invalid(format!("routes[{i}].strip_headers[{j}]"), "is not a valid header name"));
                }
            }
        }
        if let Some(addr) = &self.dev.echo_upstream {
            if addr.parse::<std::net::SocketAddr>().map(|a| a.ip().is_loopback()) != Ok(true) {
                return Err(self.invalid("dev.echo_upstream", "must be a loopback IP:port"));
            }
        }
        if self.audit.signing_key.starts_with(&self.audit.dir) {
            return Err(self.invalid("audit.signing_key", "must not be inside audit.dir"));
        }
        if self.audit.root_interval_secs == 0 || self.audit.commit_interval_ms == 0 || self.audit.commit_events == 0 {
            return Err(self.invalid("audit", "root_interval_secs, commit_interval_ms and commit_events must be at least 1"));
        }
        if self.audit.queue < 16 {
            return Err(self.invalid("audit.queue", "must be at least 16"));
        }
        if let Some(i) = &self.audit.instance {
            if !valid_name(i) {
                return Err(self.invalid("audit.instance", "must be 1-64 of [A-Za-z0-9_.-]"));
            }
        }
        for (i, b) in self.budgets.iter().enumerate() {
            if !self.routes.iter().any(|r| r.name == b.route) {
                return Err(self.invalid(format!("budgets[{i}].route"), "names no configured route"));
            }
            if capgate_filters::ucan::Ability::parse(&b.ability).is_err() {
                return Err(self.invalid(format!("budgets[{i}].ability"), "must be http/<METHOD> or http/*"));
            }
            if b.max_calls.is_none() && b.rate_per_minute.is_none() || b.rate_per_minute == Some(0) {
                return Err(self.invalid(format!("budgets[{i}]"), "needs max_calls or a non-zero rate_per_minute"));
            }
        }
        if self.step_up.body_limit_bytes > 65_536 {
            return Err(self.invalid("step_up.body_limit_bytes", "must be at most 65536"));
        }
        if self.step_up.approval_ttl_secs == 0 {
            return Err(self.invalid("step_up.approval_ttl_secs", "must be at least 1"));
        }
        for (i, t) in self.tenants.iter().enumerate() {
            for (j, a) in t.approvers.iter().enumerate() {
                if capgate_filters::ucan::did::parse_did_key(a).is_err() {
                    return Err(self.invalid(format!("tenants[{i}].approvers[{j}]"), "is not an Ed25519 did:key"));
                }
            }
        }
        for (j, op) in self.admin.operators.iter().enumerate() {
            if capgate_filters::ucan::did::parse_did_key(op).is_err() {
                return Err(self.invalid(format!("admin.operators[{j}]"), "is not an Ed25519 did:key"));
            }
        }
        if self.vault.key_env.is_empty() {
            return Err(self.invalid("vault.key_env", "must name an environment variable"));
        }
        Ok(())
    }
}

/// Names of tenants, routes and credentials.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'))
}

fn is_loopback_host(host: &str) -> bool {
    if host == "localhost" {
        return true;
    }
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.parse::<std::net::IpAddr>().map(|ip| ip.is_loopback()).unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
[server]
identity_key = "gw.pem"
[[tenants]]
id = "acme"
roots = ["did:key:z6MkiTBz1ymuepAQ4HEHYSF1H8quG5GLVVQR3djdX3mDooWp"]
[[routes]]
name = "github"
prefix = "/github/"
upstream = "https://api.github.com"
credential = "github"
[vault]
path = "vault.json"
[audit]
dir = "audit"
signing_key = "audit.pem"
[state]
path = "state.json"
"#;

    fn err(text: &str) -> String {
        Config::parse(text, Path::new("/etc/capgate/config.toml")).err().map(|e| e.to_string()).unwrap_or_default()
    }

    #[test]
    fn parses_defaults_and_resolves_paths() {
        let c = Config::parse(GOOD, Path::new("/etc/capgate/config.toml")).expect("valid");
        assert_eq!(c.server.listen, "127.0.0.1:8080");
        assert_eq!(c.server.admin_listen, "127.0.0.1:9090");
        assert!(c.server.h2c, "HTTP/2 with prior knowledge is on unless switched off");
        assert!(!Config::parse(&GOOD.replace("[server]", "[server]\nh2c = false"), Path::new("/c.toml")).expect("valid").server.h2c);
        assert_eq!(c.server.h2c_idle_timeout_secs, 60);
        assert_eq!(c.ucan.max_lifetime_secs, 60);
        assert_eq!(c.ucan.clock_skew_secs, 5);
        assert!(c.ucan.replay_protection);
        assert_eq!(c.vault.key_env, "CAPGATE_VAULT_KEY");
        assert_eq!(c.vault.path, Path::new("/etc/capgate/vault.json"));
        assert_eq!(c.policies.dir, Path::new("/etc/capgate/policies"));
        assert_eq!(c.routes[0].inject.header, "Authorization");
        assert_eq!(c.routes[0].inject.format, "Bearer {token}");
    }

    #[test]
    fn unknown_keys_and_bad_values_name_the_key() {
        assert!(err(&GOOD.replace("[server]", "[server]\nlisten_port = 1")).contains("listen_port"));
        assert!(err(&GOOD.replace("[server]", "[server]\nh2c_idle_timeout_secs = 0")).contains("server.h2c_idle_timeout_secs"));
        assert!(err(&GOOD.replace("/github/", "github")).contains("routes[0].prefix"));
        assert!(err(&GOOD.replace("https://api.github.com", "http://api.github.com")).contains("routes[0].upstream"));
        assert!(err(&GOOD.replace("did:key:z6Mk", "did:key:zQ3s")).contains("tenants[0].roots[0]"));
        assert!(err(&GOOD.replace("[vault]\npath = \"vault.json\"", "")).contains("vault"));
        assert!(err(&format!("{GOOD}\n[ucan]\nmax_lifetime_secs = \"60\"")).contains("max_lifetime_secs"));
        Config::parse(&GOOD.replace("https://api.github.com", "http://127.0.0.1:9"), Path::new("c.toml"))
            .expect("loopback http is allowed");
    }
}
