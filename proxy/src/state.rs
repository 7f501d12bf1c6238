//! The gateway's shared state, built once from the configuration: identity,
//! route table, UCAN verifier, policy engine, vault and metrics. Everything a
//! request needs is here, pre-parsed; requests only read it.

use crate::config::Config;
use crate::metrics::Metrics;
use crate::routes::{Route, RouteTable};
use crate::vault::Vault;
use arc_swap::ArcSwap;
use capgate_filters::authz::PolicyEngine;
use capgate_filters::fast_hash::{FastMap, FastState};
use capgate_filters::sanitize::Sanitizer;
use capgate_filters::ucan::{Verifier, VerifierConfig};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

/// The credentials a request may use and how their echoes are redacted.
pub struct CredentialSet {
    pub vault: Vault,
    /// Response sanitizers by tenant: the catalogue plus that tenant's vault
    /// credentials (and their encodings) as literals.
    pub sanitizers: FastMap<String, Arc<Sanitizer>>,
}

impl CredentialSet {
    fn build(tenants: &[String], vault: Vault) -> Result<CredentialSet, StartError> {
        let mut sanitizers = FastMap::default();
        for t in tenants {
            let literals: Vec<&str> = vault.secrets().filter(|(tenant, _, _)| tenant == t).map(|(_, _, s)| s.expose()).collect();
            let s = Sanitizer::new(literals).map_err(StartError::Sanitizer)?;
            sanitizers.insert(t.clone(), Arc::new(s));
        }
        Ok(CredentialSet { vault, sanitizers })
    }

    /// The tenant's credential `name` and the tenant's sanitizer.
    pub fn get(&self, tenant: &str, name: &str) -> Option<(Arc<crate::vault::Secret>, Arc<Sanitizer>)> {
        Some((self.vault.get(tenant, name)?, self.sanitizers.get(tenant)?.clone()))
    }
}

pub struct GatewayState {
    pub gateway_did: String,
    pub routes: RouteTable,
    pub verifier: Verifier,
    pub policies: ArcSwap<PolicyEngine>,
    /// The risk set: an allowed request that satisfies any of these needs a cosigner.
    pub risk: ArcSwap<PolicyEngine>,
    pub approvals: crate::approvals::ApprovalBook,
    /// Tenant → approver DIDs.
    pub approvers: HashMap<String, Vec<String>>,
    pub step_up: crate::config::StepUpSection,
    pub budgets: crate::budgets::Budgets,
    /// The opened vault and the sanitizers built from it, swapped as one so a
    /// request's credential and its response's redaction come from the same
    /// snapshot.
    pub credentials: ArcSwap<CredentialSet>,
    pub metrics: Metrics,
    pub connect_timeout: Duration,
    pub read_timeout: Duration,
    pub binary_policy: crate::config::BinaryPolicy,
    pub auditor: crate::audit::Auditor,
    pub store: Arc<dyn crate::state_store::StateStore>,
    pub revocations: crate::revocations::RevocationSet,
    pub admin_auth: crate::admin_auth::AdminAuth,
    pub policies_dir: std::path::PathBuf,
    policy_stamp: std::sync::Mutex<Option<std::time::SystemTime>>,
    vault_stamp: std::sync::Mutex<Option<(std::time::SystemTime, u64)>>,
    tenant_ids: Vec<String>,
    /// Resolved upstream addresses by `host:port`, refreshed every 30 s.
    pub dns: moka::sync::Cache<String, std::net::SocketAddr, FastState>,
}

/// Why the gateway could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] crate::config::ConfigError),
    #[error("server.identity_key: {0}")]
    Identity(crate::keys::KeyError),
    #[error("tenants: {0}")]
    Roots(String),
    #[error("policies: {0}")]
    Policies(#[from] crate::policies::PolicyFilesError),
    #[error("vault: {0}")]
    Vault(#[from] crate::vault::VaultError),
    #[error("routes: {0}")]
    Routes(String),
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    #[error("dev bootstrap: {0}")]
    Dev(String),
    #[error("sanitizer: {0}")]
    Sanitizer(String),
    #[error("audit: {0}")]
    Audit(String),
    #[error("state: {0}")]
    State(String),
}

impl GatewayState {
    /// Re-read and validate the policy files; swap them in atomically only
    /// when they validate. The old set keeps serving otherwise.
    pub fn reload_policies(&self, trigger: &str) -> Result<usize, String> {
        match crate::policies::load_both(&self.policies_dir) {
            Ok((engine, risk)) => {
                let n = engine.len();
                let sliced = engine.slice_stats();
                self.policies.store(Arc::new(engine));
                self.risk.store(Arc::new(risk));
                self.metrics.policies_loaded.set(n as i64);
                self.metrics.policy_reloads.with_label_values(&["ok"]).inc();
                if let Ok(mut s) = self.policy_stamp.lock() {
                    *s = crate::policies::stamp(&self.policies_dir);
                }
                tracing::info!(
                    trigger,
                    policies = n,
                    indexed = sliced.indexed,
                    guarded = sliced.guarded,
                    unguarded = sliced.unguarded,
                    "policies reloaded"
                );
                Ok(n)
            }
            Err(e) => {
                self.metrics.policy_reloads.with_label_values(&["error"]).inc();
                if let Ok(mut s) = self.policy_stamp.lock() {
                    *s = crate::policies::stamp(&self.policies_dir);
                }
                tracing::error!(trigger, error = %e, "policy reload refused; the previous policies keep serving");
                Err(e.to_string())
            }
        }
    }

    /// Re-open the vault store (after `capgate vault put`/`rm` by another
    /// process) and swap it in with freshly built sanitizers, as one snapshot.
    /// When the store cannot be opened in full, the previous credentials keep
    /// serving and the error is logged (never a value) and counted.
    pub fn reload_vault(&self, trigger: &str) -> Result<usize, String> {
        let current = self.credentials.load();
        let stamp = current.vault.stamp();
        let next = current
            .vault
            .reopen()
            .map_err(|e| e.to_string())
            .and_then(|v| CredentialSet::build(&self.tenant_ids, v).map_err(|e| e.to_string()));
        if let Ok(mut s) = self.vault_stamp.lock() {
            *s = stamp;
        }
        match next {
            Ok(set) => {
                let n = set.vault.secrets().count();
                self.credentials.store(Arc::new(set));
                self.metrics.vault_reloads.with_label_values(&["ok"]).inc();
                tracing::info!(trigger, credentials = n, "vault reloaded");
                Ok(n)
            }
            Err(e) => {
                self.metrics.vault_reloads.with_label_values(&["error"]).inc();
                tracing::error!(trigger, error = %e, "vault reload refused; the previous credentials keep serving");
                Err(e)
            }
        }
    }

    /// Reload the vault when its store changed on disk since the last load.
    pub fn reload_vault_if_changed(&self) {
        let now = self.credentials.load().vault.stamp();
        let changed = self.vault_stamp.lock().map(|s| *s != now).unwrap_or(false);
        if changed {
            let _ = self.reload_vault("file watch");
        }
    }

    /// Reload when the policy files changed since the last load (file watch).
    pub fn reload_if_changed(&self) {
        let now = crate::policies::stamp(&self.policies_dir);
        let changed = self.policy_stamp.lock().map(|s| *s != now).unwrap_or(false);
        if changed {
            let _ = self.reload_policies("file watch");
        }
    }
}

impl GatewayState {
    pub fn build(cfg: &Config) -> Result<GatewayState, StartError> {
        let identity = crate::keys::load(&cfg.server.identity_key).map_err(StartError::Identity)?;
        let gateway_did = crate::keys::did_of(&identity);
        let mut roots: HashMap<String, Arc<str>> = HashMap::new();
        for t in &cfg.tenants {
            let id: Arc<str> = Arc::from(t.id.as_str());
            let mut dids = t.roots.clone();
            for p in &t.root_keys {
                let k = crate::keys::load(p).map_err(|e| StartError::Roots(format!("tenant {}: {e}", t.id)))?;
                dids.push(crate::keys::did_of(&k));
            }
            for d in dids {
                if let Some(other) = roots.insert(d.clone(), id.clone()) {
                    if *other != *id {
                        return Err(StartError::Roots(format!("{d} is a root of both {other} and {id}")));
                    }
                }
            }
        }
        let mut operators = cfg.admin.operators.clone();
        for p in &cfg.admin.operator_keys {
            let k = crate::keys::load(p).map_err(|e| StartError::Roots(format!("admin.operator_keys: {e}")))?;
            operators.push(crate::keys::did_of(&k));
        }
        let admin_auth = crate::admin_auth::AdminAuth::new(&gateway_did, &operators, &roots);
        let store: Arc<dyn crate::state_store::StateStore> =
            Arc::new(crate::state_store::FileStore::open(&cfg.state.path).map_err(StartError::State)?);
        let revocations = crate::revocations::RevocationSet::new(&store.revocations().map_err(StartError::State)?);
        let verifier = Verifier::new(VerifierConfig {
            gateway_did: gateway_did.clone(),
            roots,
            max_lifetime_secs: cfg.ucan.max_lifetime_secs,
            clock_skew_secs: cfg.ucan.clock_skew_secs,
            replay_protection: cfg.ucan.replay_protection,
            cache_capacity: cfg.ucan.cache_capacity,
        });
        let (policies, risk) = crate::policies::load_both(&cfg.policies.dir)?;
        let mut approvers = HashMap::new();
        for t in &cfg.tenants {
            let mut dids = t.approvers.clone();
            for p in &t.approver_keys {
                let k = crate::keys::load(p).map_err(|e| StartError::Roots(format!("tenant {} approver_keys: {e}", t.id)))?;
                dids.push(crate::keys::did_of(&k));
            }
            approvers.insert(t.id.clone(), dids);
        }
        let vault = Vault::open(&cfg.vault.path, &cfg.vault.key_env)?;
        let routes = cfg.routes.iter().map(Route::compile).collect::<Result<Vec<_>, _>>().map_err(StartError::Routes)?;
        let metrics = Metrics::new()?;
        metrics.policies_loaded.set(policies.len() as i64);
        let sliced = policies.slice_stats();
        tracing::info!(
            policies = sliced.policies,
            indexed = sliced.indexed,
            guarded = sliced.guarded,
            unguarded = sliced.unguarded,
            "policies loaded (indexed: looked at only for their route, tenant, agent, method or path; unguarded: evaluated on every request)"
        );
        let audit_key = crate::keys::load(&cfg.audit.signing_key).map_err(|e| StartError::Audit(e.to_string()))?;
        let instance = crate::audit::instance_id(&cfg.audit.dir, cfg.audit.instance.as_deref()).map_err(StartError::Audit)?;
        let tenants: Vec<String> = cfg.tenants.iter().map(|t| t.id.clone()).collect();
        let vault_stamp = vault.stamp();
        let credentials = CredentialSet::build(&tenants, vault)?;
        let auditor = if !cfg.audit.enabled {
            tracing::warn!("audit.enabled = false: requests are NOT audited (benchmarks only)");
            crate::audit::Auditor::disabled(&instance, crate::keys::did_of(&audit_key))
        } else {
            crate::audit::Auditor::open(
                &cfg.audit.dir,
                &instance,
                &tenants,
                crate::audit::writer::WriterSettings {
                    commit_interval: Duration::from_millis(cfg.audit.commit_interval_ms),
                    commit_events: cfg.audit.commit_events,
                    segment_bytes: cfg.audit.segment_bytes,
                    root_interval: Duration::from_secs(cfg.audit.root_interval_secs),
                    channel_capacity: cfg.audit.queue,
                    signing_key: Arc::new(audit_key),
                    idle_check: crate::audit::writer::IDLE_CHECK,
                },
                metrics.audit_events.clone(),
            )
            .map_err(StartError::Audit)?
        };
        metrics.audit_healthy.set(1);
        Ok(GatewayState {
            gateway_did,
            routes: RouteTable::new(routes),
            verifier,
            policies: ArcSwap::from_pointee(policies),
            risk: ArcSwap::from_pointee(risk),
            approvals: crate::approvals::ApprovalBook::load(store.clone()).map_err(StartError::State)?,
            approvers,
            step_up: cfg.step_up.clone(),
            budgets: crate::budgets::Budgets::new(&cfg.budgets, store.clone()).map_err(StartError::State)?,
            credentials: ArcSwap::from_pointee(credentials),
            vault_stamp: std::sync::Mutex::new(vault_stamp),
            binary_policy: cfg.sanitize.binary,
            auditor,
            store,
            revocations,
            admin_auth,
            policy_stamp: std::sync::Mutex::new(crate::policies::stamp(&cfg.policies.dir)),
            policies_dir: cfg.policies.dir.clone(),
            tenant_ids: tenants,
            metrics,
            connect_timeout: Duration::from_secs(cfg.server.upstream_connect_timeout_secs),
            read_timeout: Duration::from_secs(cfg.server.upstream_read_timeout_secs),
            dns: moka::sync::Cache::builder()
                .max_capacity(1024)
                .time_to_live(Duration::from_secs(30))
                .build_with_hasher(FastState::default()),
        })
    }
}
