//! Development conveniences, enabled by `[dev]` in the config. Never enable
//! them in production.
//!
//! - `bootstrap`: create missing key files (the identity key, the audit
//!   signing key, tenant `root_keys`), a vault key file when the key env var is unset, and a
//!   random credential for each route whose vault entry is missing, so the
//!   shipped `config.toml` runs on a fresh machine.
//! - `echo_upstream`: a loopback upstream that answers every request with a
//!   JSON description of what it received, to show what capgate forwards.

use crate::config::Config;
use crate::vault::seal::VaultKey;
use crate::vault::Vault;
use async_trait::async_trait;
use http::{Response, StatusCode};
use pingora::apps::http_app::ServeHttp;
use pingora::protocols::http::ServerSession;
use rand::RngCore;
use std::path::PathBuf;

/// What bootstrap created, for the start-up banner.
#[derive(Default)]
pub struct Bootstrapped {
    pub created: Vec<String>,
    pub vault_key_file: Option<PathBuf>,
}

/// The dev vault key file, next to the store.
pub fn dev_key_file(cfg: &Config) -> PathBuf {
    cfg.vault.path.with_file_name("dev-vault.key")
}

/// Create whatever the config needs and lacks. Sets the vault key env var
/// for this process from the dev key file when it is unset.
pub fn bootstrap(cfg: &Config) -> Result<Bootstrapped, String> {
    let mut out = Bootstrapped::default();
    let mut ensure_key = |p: &PathBuf| -> Result<(), String> {
        if !p.exists() {
            crate::keys::generate(p).map_err(|e| e.to_string())?;
            out.created.push(format!("key {}", p.display()));
        }
        Ok(())
    };
    ensure_key(&cfg.server.identity_key)?;
    ensure_key(&cfg.audit.signing_key)?;
    for t in &cfg.tenants {
        for p in t.root_keys.iter().chain(&t.approver_keys) {
            ensure_key(p)?;
        }
    }
    for p in &cfg.admin.operator_keys {
        ensure_key(p)?;
    }
    if std::env::var_os(&cfg.vault.key_env).is_none() {
        let f = dev_key_file(cfg);
        if !f.exists() {
            if let Some(dir) = f.parent() {
                std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
            }
            let key = VaultKey::generate_base64();
            write_private(&f, key.as_bytes()).map_err(|e| format!("{}: {e}", f.display()))?;
            out.created.push(format!("dev vault key {}", f.display()));
        }
        let key = std::fs::read_to_string(&f).map_err(|e| format!("{}: {e}", f.display()))?;
        // Single-threaded at this point: no other thread reads the environment yet.
        std::env::set_var(&cfg.vault.key_env, key.trim());
        out.vault_key_file = Some(f);
    }
    let mut vault = Vault::open(&cfg.vault.path, &cfg.vault.key_env).map_err(|e| e.to_string())?;
    for t in &cfg.tenants {
        for r in &cfg.routes {
            if vault.get(&t.id, &r.credential).is_none() {
                let mut raw = [0u8; 18];
                rand::rngs::OsRng.fill_bytes(&mut raw);
                let value = format!("dev-{}", raw.iter().map(|b| format!("{b:02x}")).collect::<String>());
                vault.put(&t.id, &r.credential, &value).map_err(|e| e.to_string())?;
                out.created.push(format!("dev credential {}/{}", t.id, r.credential));
            }
        }
    }
    Ok(out)
}

fn write_private(path: &std::path::Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    o.open(path)?.write_all(data)
}

/// The echo upstream.
pub struct EchoApp;

#[async_trait]
impl ServeHttp for EchoApp {
    async fn response(&self, session: &mut ServerSession) -> Response<Vec<u8>> {
        let mut body_len = 0usize;
        while let Ok(Some(chunk)) = session.read_request_body().await {
            body_len += chunk.len();
        }
        let req = session.req_header();
        let headers: serde_json::Map<String, serde_json::Value> = req
            .headers
            .iter()
            .map(|(k, v)| (k.as_str().to_owned(), serde_json::Value::String(String::from_utf8_lossy(v.as_bytes()).into())))
            .collect();
        let body = serde_json::json!({
            "echo": "capgate dev upstream",
            "method": req.method.as_str(),
            "path": req.uri.path(),
            "query": req.uri.query(),
            "headers": headers,
            "body_bytes": body_len,
        });
        let mut text = serde_json::to_vec_pretty(&body).unwrap_or_default();
        text.push(b'\n');
        crate::admin::respond(StatusCode::OK, "application/json", text)
    }
}
