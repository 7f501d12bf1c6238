//! The `capgate` command line (clap derive). Every subcommand accepts
//! `--config PATH` (default `./config.toml`); the ones that need no config
//! simply do not read it.

use crate::config::Config;
use capgate_filters::ucan::mint::{mint, MintSpec};
use clap::{Args, Parser, Subcommand};
use std::io::Read;
use std::path::{Path, PathBuf};

#[derive(Parser)]
#[command(name = "capgate", version, about = "A capability gateway for AI agents: UCAN in, vaulted credential out.")]
pub struct Cli {
    /// The configuration file.
    #[arg(long, global = true, default_value = "config.toml", env = "CAPGATE_CONFIG")]
    pub config: PathBuf,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the gateway.
    Serve,
    /// Generate an Ed25519 key file (PKCS#8 PEM) and print its did:key.
    Keygen {
        #[arg(long)]
        out: PathBuf,
        /// Replace an existing file.
        #[arg(long)]
        force: bool,
    },
    /// Print the did:key of a key file.
    Did { file: PathBuf },
    /// Issue a UCAN 0.10 delegation or invocation.
    Mint(MintArgs),
    /// Manage sealed credentials.
    Vault {
        #[command(subcommand)]
        command: VaultCommand,
    },
    /// Validate the policy files offline.
    Policy {
        #[command(subcommand)]
        command: PolicyCommand,
    },
    /// Revoke a token CID or an issuer DID on a running gateway.
    Revoke {
        #[arg(long, conflicts_with = "did", required_unless_present = "did")]
        cid: Option<String>,
        #[arg(long)]
        did: Option<String>,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Grant a pending approval with a cosigner UCAN signed by an approver key.
    Approve {
        id: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// Deny a pending approval (signed by an approver key).
    Deny {
        id: String,
        #[command(flatten)]
        admin: AdminArgs,
    },
    /// The audit trail: verify, export, public key.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
}

/// How the CLI reaches the admin API.
#[derive(Args)]
pub struct AdminArgs {
    /// Key file of an operator or a tenant root (signs a short-lived admin UCAN).
    #[arg(long)]
    pub key: PathBuf,
    /// The admin listener (default: `server.admin_listen` of the config).
    #[arg(long)]
    pub admin: Option<String>,
}

#[derive(Subcommand)]
pub enum AuditCommand {
    /// Verify audit chains offline (no config needed). Exit 0 valid, 1 tampered, 2 usage or I/O error.
    Verify {
        /// An audit dir, a tenant dir, a chain dir or an export bundle.
        dir: PathBuf,
        /// The did:key that signs roots (default: the bundle's `pubkey` file).
        #[arg(long)]
        pubkey: Option<String>,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Print the did:key that signs audit roots.
    Pubkey,
    /// Copy one tenant's chains and the public key into a bundle that verifies on its own.
    Export {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(Args)]
pub struct MintArgs {
    /// The issuer's key file.
    #[arg(long)]
    pub key: PathBuf,
    /// The audience DID (the next holder, or the gateway for an invocation).
    #[arg(long, required_unless_present = "gateway", conflicts_with = "gateway")]
    pub aud: Option<String>,
    /// Address the token to this gateway (the DID of `server.identity_key` in the config).
    #[arg(long)]
    pub gateway: bool,
    /// Resource URL (repeatable; pairs with --can in order).
    #[arg(long = "with", required = true)]
    pub with: Vec<String>,
    /// Ability, e.g. http/GET or http/* (repeatable).
    #[arg(long = "can", required = true)]
    pub can: Vec<String>,
    /// Lifetime in seconds.
    #[arg(long, default_value_t = 60)]
    pub ttl: u64,
    /// Not-before, seconds from now (may be negative with a leading minus).
    #[arg(long, allow_hyphen_values = true)]
    pub nbf: Option<i64>,
    /// Nonce (default: random).
    #[arg(long, conflicts_with = "no_nonce")]
    pub nonce: Option<String>,
    /// Omit the nonce.
    #[arg(long)]
    pub no_nonce: bool,
    /// Proof tokens (repeatable): every token of the chain above this one.
    /// Those addressed to the issuer are referenced by CID; all of them form
    /// the `ucans` header value.
    #[arg(long = "proof")]
    pub proof: Vec<String>,
    /// Facts (`fct`) as a JSON object.
    #[arg(long)]
    pub facts: Option<String>,
    /// Print only the token.
    #[arg(long)]
    pub token_only: bool,
    /// Print {"token","ucans","cid"} as JSON.
    #[arg(long, conflicts_with = "token_only")]
    pub json: bool,
}

#[derive(Subcommand)]
pub enum VaultCommand {
    /// Store a credential read from standard input (never from arguments).
    Put {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: String,
    },
    /// List names and versions (never values).
    List {
        #[arg(long)]
        tenant: Option<String>,
    },
    /// Remove a credential.
    Rm {
        #[arg(long)]
        tenant: String,
        #[arg(long)]
        name: String,
    },
    /// Print a new random vault key (base64) for the key environment variable.
    Keygen,
}

#[derive(Subcommand)]
pub enum PolicyCommand {
    /// Parse and validate the policy directory against its schema.
    Check {
        /// The directory (default: `[policies] dir` of the config).
        dir: Option<PathBuf>,
    },
    /// Ask a running gateway to reload its policies (operators only).
    Reload {
        #[command(flatten)]
        admin: AdminArgs,
    },
}

/// Run the CLI; returns the process exit code.
pub fn run() -> i32 {
    let cli = Cli::parse();
    crate::telemetry::init();
    if let Command::Audit { command: AuditCommand::Verify { dir, pubkey, json } } = &cli.command {
        return audit_verify(dir, pubkey.as_deref(), *json);
    }
    match dispatch(cli) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("capgate: {e}");
            1
        }
    }
}

fn load_config(path: &Path) -> Result<Config, String> {
    Config::load(path).map_err(|e| e.to_string())
}

fn dispatch(cli: Cli) -> Result<(), String> {
    match cli.command {
        Command::Serve => crate::server::serve(&cli.config).map_err(|e| e.to_string()),
        Command::Keygen { out, force } => {
            if force && out.exists() {
                std::fs::remove_file(&out).map_err(|e| format!("{}: {e}", out.display()))?;
            }
            let k = crate::keys::generate(&out).map_err(|e| e.to_string())?;
            println!("{}", crate::keys::did_of(&k));
            Ok(())
        }
        Command::Did { file } => {
            let k = crate::keys::load(&file).map_err(|e| e.to_string())?;
            println!("{}", crate::keys::did_of(&k));
            Ok(())
        }
        Command::Mint(args) => mint_cmd(&cli.config, args),
        Command::Vault { command } => vault_cmd(&cli.config, command),
        Command::Audit { command: AuditCommand::Verify { .. } } => Ok(()),
        Command::Audit { command: AuditCommand::Pubkey } => {
            let cfg = load_config(&cli.config)?;
            let k = crate::keys::load(&cfg.audit.signing_key).map_err(|e| e.to_string())?;
            println!("{}", crate::keys::did_of(&k));
            Ok(())
        }
        Command::Audit { command: AuditCommand::Export { tenant, out } } => {
            let cfg = load_config(&cli.config)?;
            let src = cfg.audit.dir.join(&tenant);
            if !crate::config::valid_name(&tenant) || !src.is_dir() {
                return Err(format!("no audit chains for tenant {tenant:?} under {}", cfg.audit.dir.display()));
            }
            let k = crate::keys::load(&cfg.audit.signing_key).map_err(|e| e.to_string())?;
            copy_dir(&src, &out.join(&tenant))?;
            std::fs::write(out.join("pubkey"), format!("{}\n", crate::keys::did_of(&k))).map_err(|e| format!("{}: {e}", out.display()))?;
            println!("exported {tenant} to {}", out.display());
            Ok(())
        }
        Command::Revoke { cid, did, admin } => {
            let body = match (cid, did) {
                (Some(c), _) => serde_json::json!({ "cid": c }),
                (None, Some(d)) => serde_json::json!({ "did": d }),
                (None, None) => return Err("give --cid or --did".into()),
            };
            let (status, text) = admin_call(&cli.config, &admin, "POST", "/v1/revocations", Some(&body.to_string()))?;
            println!("{text}");
            if (200..300).contains(&status) {
                Ok(())
            } else {
                Err(format!("the gateway answered {status}"))
            }
        }
        Command::Approve { id, admin } => decide_cmd(&cli.config, &admin, &id, "grant"),
        Command::Deny { id, admin } => decide_cmd(&cli.config, &admin, &id, "deny"),
        Command::Policy { command: PolicyCommand::Reload { admin } } => {
            let (status, text) = admin_call(&cli.config, &admin, "POST", "/v1/policies/reload", None)?;
            println!("{text}");
            if status == 200 {
                Ok(())
            } else {
                Err(format!("the gateway answered {status}"))
            }
        }
        Command::Policy { command: PolicyCommand::Check { dir } } => {
            let dir = match dir {
                Some(d) => d,
                None => load_config(&cli.config)?.policies.dir,
            };
            let engine = crate::policies::load_authz(&dir).map_err(|e| e.to_string())?;
            println!("ok: {} policies validate against {}", engine.len(), dir.join(crate::policies::SCHEMA_FILE).display());
            let s = engine.slice_stats();
            println!(
                "slicing: {} indexed, {} guarded, {} evaluated on every request{}",
                s.indexed,
                s.guarded,
                s.unguarded,
                if s.never > 0 { format!(", {} that no request can satisfy", s.never) } else { String::new() }
            );
            Ok(())
        }
    }
}

/// Call the admin API with a fresh 60-second admin UCAN signed by `--key`.
fn admin_call(config: &Path, a: &AdminArgs, method: &str, path: &str, body: Option<&str>) -> Result<(u16, String), String> {
    let cfg = load_config(config)?;
    let token = short_token(&cfg, &a.key, crate::admin_auth::ADMIN_RESOURCE, "*", None)?;
    http_call(&cfg, a, method, path, &token, body)
}

/// A 60-second UCAN to this gateway from `key` for one capability.
fn short_token(cfg: &Config, key: &Path, with: &str, can: &str, facts: Option<serde_json::Value>) -> Result<String, String> {
    let gk = crate::keys::load(&cfg.server.identity_key).map_err(|e| e.to_string())?;
    let key = crate::keys::load(key).map_err(|e| e.to_string())?;
    Ok(mint(
        &key,
        &MintSpec {
            audience: crate::keys::did_of(&gk),
            capabilities: vec![(with.into(), can.into())],
            expires: unix_now() + 60,
            facts,
            ..Default::default()
        },
    ))
}

/// `capgate approve|deny ID`: read the approval as an approver, then sign
/// a cosigner bound to its digest and post it.
fn decide_cmd(config: &Path, a: &AdminArgs, id: &str, verb: &str) -> Result<(), String> {
    if !id.bytes().all(|b| b.is_ascii_hexdigit()) || id.is_empty() {
        return Err("the approval id is hex".into());
    }
    let cfg = load_config(config)?;
    let resource = format!("capgate:approval/{id}");
    let read = short_token(&cfg, &a.key, &resource, "approval/read", None)?;
    let (status, text) = http_call(&cfg, a, "GET", &format!("/v1/approvals/{id}"), &read, None)?;
    if status != 200 {
        return Err(format!("the gateway answered {status}: {text}"));
    }
    let approval: serde_json::Value = serde_json::from_str(&text).map_err(|e| format!("approval: {e}"))?;
    let digest = approval["digest"].as_str().ok_or("the approval has no digest")?;
    eprintln!("{verb}: {} for tenant {}", approval["action"].as_str().unwrap_or("?"), approval["tenant"].as_str().unwrap_or("?"));
    let cosigner = short_token(&cfg, &a.key, &resource, &format!("approval/{verb}"), Some(serde_json::json!({ "digest": digest })))?;
    let body = serde_json::json!({ "cosigner": cosigner }).to_string();
    let (status, text) = http_call(&cfg, a, "POST", &format!("/v1/approvals/{id}/{verb}"), &read, Some(&body))?;
    println!("{text}");
    if status == 200 {
        Ok(())
    } else {
        Err(format!("the gateway answered {status}"))
    }
}

fn http_call(cfg: &Config, a: &AdminArgs, method: &str, path: &str, token: &str, body: Option<&str>) -> Result<(u16, String), String> {
    use std::io::{Read, Write};
    let addr = a.admin.clone().unwrap_or(cfg.server.admin_listen.clone());
    let addr = addr.trim_start_matches("http://").trim_end_matches('/').to_owned();
    let mut s = std::net::TcpStream::connect(&addr).map_err(|e| format!("{addr}: {e}"))?;
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(30)));
    let body = body.unwrap_or("");
    write!(
        s,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {token}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .map_err(|e| format!("{addr}: {e}"))?;
    let mut resp = String::new();
    s.read_to_string(&mut resp).map_err(|e| format!("{addr}: {e}"))?;
    let status = resp.get(9..12).and_then(|c| c.parse().ok()).ok_or("the admin API sent no HTTP status")?;
    let text = resp.split_once("\r\n\r\n").map(|(_, b)| b.trim().to_owned()).unwrap_or_default();
    Ok((status, text))
}

fn copy_dir(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::create_dir_all(to).map_err(|e| format!("{}: {e}", to.display()))?;
    for e in std::fs::read_dir(from).map_err(|e| format!("{}: {e}", from.display()))?.flatten() {
        let p = e.path();
        let dest = to.join(e.file_name());
        if p.is_dir() {
            copy_dir(&p, &dest)?;
        } else {
            std::fs::copy(&p, &dest).map_err(|e| format!("{}: {e}", p.display()))?;
            // A live segment's copy ends at its last event, not in the
            // space the writer zero-filled ahead of it.
            if e.file_name().to_str().and_then(crate::audit::writer::segment_index).is_some() {
                crate::audit::writer::trim_unwritten(&dest)?;
            }
        }
    }
    Ok(())
}

/// `capgate audit verify`: exit 0 valid, 1 tampered, 2 usage or I/O error.
fn audit_verify(dir: &Path, pubkey: Option<&str>, json: bool) -> i32 {
    let did = match pubkey {
        Some(p) => p.to_owned(),
        None => match std::fs::read_to_string(dir.join("pubkey")) {
            Ok(s) => s.trim().to_owned(),
            Err(_) => {
                eprintln!("capgate: give --pubkey DID (no pubkey file in {})", dir.display());
                return 2;
            }
        },
    };
    let key = match capgate_filters::ucan::did::parse_did_key(&did) {
        Ok(k) => k,
        Err(e) => {
            eprintln!("capgate: --pubkey: {e}");
            return 2;
        }
    };
    let report = match crate::audit::verify::verify(dir, &key) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("capgate: {e}");
            return 2;
        }
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    } else {
        for c in &report.chains {
            match &c.failure {
                None => println!("ok       {} ({} events, {} roots) {}", c.chain, c.events, c.roots, c.dir.display()),
                Some(f) => println!("TAMPERED {} at seq {}: {} ({}) {}", c.chain, f.seq, f.kind, f.detail, c.dir.display()),
            }
            for w in &c.warnings {
                println!("  warning: {w}");
            }
            for n in &c.notes {
                println!("  note: {n}");
            }
        }
    }
    if report.ok {
        0
    } else {
        1
    }
}

fn unix_now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn mint_cmd(config: &Path, a: MintArgs) -> Result<(), String> {
    if a.with.len() != a.can.len() {
        return Err("give --with and --can the same number of times (they pair in order)".into());
    }
    let key = crate::keys::load(&a.key).map_err(|e| e.to_string())?;
    let audience = match (a.aud, a.gateway) {
        (Some(aud), _) => aud,
        (None, true) => {
            let cfg = load_config(config)?;
            let gk = crate::keys::load(&cfg.server.identity_key).map_err(|e| e.to_string())?;
            crate::keys::did_of(&gk)
        }
        (None, false) => return Err("give --aud DID or --gateway".into()),
    };
    let now = unix_now();
    let nonce = if a.no_nonce {
        None
    } else {
        Some(a.nonce.unwrap_or_else(|| {
            let mut b = [0u8; 12];
            rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut b);
            capgate_filters::ucan::b64::encode(&b)
        }))
    };
    let facts = match a.facts {
        Some(f) => Some(serde_json::from_str::<serde_json::Value>(&f).map_err(|e| format!("--facts: {e}"))?),
        None => None,
    };
    let issuer = crate::keys::did_of(&key);
    // Only proofs addressed to the issuer are referenced; all travel in `ucans`.
    let mut direct = Vec::new();
    for p in &a.proof {
        let t = capgate_filters::ucan::token::parse_jwt(p)
            .map_err(|e| format!("--proof: not a valid UCAN ({}): {}", e.reason.code(), e.detail))?;
        if t.audience == issuer {
            direct.push(p.clone());
        }
    }
    if !a.proof.is_empty() && direct.is_empty() {
        return Err("--proof: none of the proofs is addressed to the issuer's DID".into());
    }
    let spec = MintSpec {
        audience,
        capabilities: a.with.into_iter().zip(a.can).collect(),
        expires: now + a.ttl,
        not_before: a.nbf.map(|d| now.saturating_add_signed(d)),
        nonce,
        proofs: direct,
        facts,
    };
    let token = mint(&key, &spec);
    let ucans = a.proof.join(",");
    if a.json {
        let cid = capgate_filters::ucan::Cid::of(token.as_bytes()).to_string();
        println!("{}", serde_json::json!({"token": token, "ucans": ucans, "cid": cid}));
    } else {
        println!("{token}");
        if !a.token_only && !ucans.is_empty() {
            println!("ucans: {ucans}");
        }
    }
    Ok(())
}

fn vault_cmd(config: &Path, cmd: VaultCommand) -> Result<(), String> {
    if let VaultCommand::Keygen = cmd {
        println!("{}", crate::vault::seal::VaultKey::generate_base64().as_str());
        return Ok(());
    }
    let cfg = load_config(config)?;
    match cmd {
        VaultCommand::Put { tenant, name } => {
            check_names(&cfg, &tenant, &name)?;
            let mut value = zeroize::Zeroizing::new(String::new());
            std::io::stdin().read_to_string(&mut value).map_err(|e| format!("reading stdin: {e}"))?;
            let trimmed = value.strip_suffix('\n').map(|v| v.strip_suffix('\r').unwrap_or(v)).unwrap_or(&value);
            if trimmed.is_empty() {
                return Err("no value on standard input".into());
            }
            let mut v = crate::vault::Vault::open(&cfg.vault.path, &cfg.vault.key_env).map_err(|e| e.to_string())?;
            let version = v.put(&tenant, &name, trimmed).map_err(|e| e.to_string())?;
            println!("stored {tenant}/{name} version {version}");
            Ok(())
        }
        VaultCommand::List { tenant } => {
            for e in crate::vault::list(&cfg.vault.path).map_err(|e| e.to_string())? {
                if tenant.as_ref().is_none_or(|t| *t == e.tenant) {
                    println!("{}\t{}\tv{}\tkey:{}\tupdated:{}", e.tenant, e.name, e.version, e.key_id, e.updated);
                }
            }
            Ok(())
        }
        VaultCommand::Rm { tenant, name } => {
            let mut v = crate::vault::Vault::open(&cfg.vault.path, &cfg.vault.key_env).map_err(|e| e.to_string())?;
            v.remove(&tenant, &name).map_err(|e| e.to_string())?;
            println!("removed {tenant}/{name}");
            Ok(())
        }
        VaultCommand::Keygen => Ok(()),
    }
}

fn check_names(cfg: &Config, tenant: &str, name: &str) -> Result<(), String> {
    if !crate::config::valid_name(tenant) || !crate::config::valid_name(name) {
        return Err("--tenant and --name must be 1-64 of [A-Za-z0-9_.-]".into());
    }
    if !cfg.tenants.iter().any(|t| t.id == tenant) {
        return Err(format!("tenant {tenant:?} is not in the config"));
    }
    Ok(())
}
