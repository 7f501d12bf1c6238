//! Test harness: a real upstream (hyper) on loopback that records what it
//! receives, and a real `capgate` binary started on ephemeral ports with its
//! own keys, vault and policies in a temporary directory.

use capgate_filters::ucan::did::did_key;
use capgate_filters::ucan::mint::{mint, MintSpec};
use ed25519_dalek::pkcs8::EncodePrivateKey;
use ed25519_dalek::SigningKey;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use std::io::Write;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub const BIN: &str = env!("CARGO_BIN_EXE_capgate");

pub fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs()
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// What the upstream saw.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub uri: String,
    pub headers: Vec<(String, String)>,
    #[allow(dead_code)]
    pub body: Vec<u8>,
}

impl Seen {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

/// A loopback HTTP/1.1 upstream that records requests and answers by path:
/// see [`respond`] for the canned responses the sanitizer tests use.
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Seen>>>,
    /// Set by a test to let `/sse` send its second event.
    pub go: Arc<std::sync::atomic::AtomicBool>,
    /// Set by `/sse` once the second event was sent.
    pub sent_second: Arc<std::sync::atomic::AtomicBool>,
    _rt: tokio::runtime::Runtime,
}

type BoxBody = http_body_util::combinators::BoxBody<Bytes, std::convert::Infallible>;

fn full(b: impl Into<Bytes>) -> BoxBody {
    use http_body_util::BodyExt as _;
    Full::new(b.into()).boxed()
}

/// Fake secrets used by the canned responses (generated shapes, not real credentials).
pub const FAKE_AWS_KEY: &str = "AKIAZ7XQ3MPL4TR2VW8N";
pub const FAKE_SLACK: &str = "xoxb-1111111111-2222222222-AbCdEfGhIjKlMnOpQrStUvWx";
pub const FAKE_STRIPE: &str = "sk_live_4eC39HqLyjWDarjtT1zdp7dcAbCd";

pub fn secrets_json() -> String {
    serde_json::json!({
        "aws": FAKE_AWS_KEY,
        "slack": FAKE_SLACK,
        "note": format!("pay with {FAKE_STRIPE} now"),
        "hidden": "a\u{200b}b\u{202e}c",
        "family": "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}",
    })
    .to_string()
}

fn compress(coding: &str, data: &[u8]) -> Vec<u8> {
    use std::io::Write as _;
    match coding {
        "gzip" => {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).expect("gzip");
            e.finish().expect("gzip")
        }
        "deflate" => {
            let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(data).expect("deflate");
            e.finish().expect("deflate")
        }
        "br" => {
            let mut out = Vec::new();
            {
                let mut w = brotli::CompressorWriter::new(&mut out, 4096, 5, 22);
                w.write_all(data).expect("br");
            }
            out
        }
        "zstd" => zstd::encode_all(data, 3).expect("zstd"),
        _ => data.to_vec(),
    }
}

/// How long the routes that send their head alone wait before the body:
/// long enough that the gateway reads the head alone.
pub const HEAD_ALONE_FOR: Duration = Duration::from_millis(50);

/// A body sent in two parts: `first` after `first_after`, `second` once a
/// test sets `go` (or after 10 s), with `sent_second` set just before it goes.
/// With no wait, `first` is ready before the response is returned, so hyper
/// writes it with the head (one write: the gateway reads them together).
fn second_part_on_go(
    first_after: Duration,
    first: Bytes,
    second: Bytes,
    go: Arc<std::sync::atomic::AtomicBool>,
    sent_second: Arc<std::sync::atomic::AtomicBool>,
) -> BoxBody {
    use http_body_util::BodyExt as _;
    use std::sync::atomic::Ordering;
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<hyper::body::Frame<Bytes>, std::convert::Infallible>>(2);
    let later = if first_after.is_zero() {
        let _ = tx.try_send(Ok(hyper::body::Frame::data(first)));
        None
    } else {
        Some(first)
    };
    tokio::spawn(async move {
        if let Some(first) = later {
            tokio::time::sleep(first_after).await;
            let _ = tx.send(Ok(hyper::body::Frame::data(first))).await;
        }
        for _ in 0..1000 {
            if go.load(Ordering::SeqCst) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        sent_second.store(true, Ordering::SeqCst);
        let _ = tx.send(Ok(hyper::body::Frame::data(second))).await;
    });
    http_body_util::StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx)).boxed()
}

/// The canned responses, by request path.
async fn respond(
    seen: &Seen,
    go: Arc<std::sync::atomic::AtomicBool>,
    sent_second: Arc<std::sync::atomic::AtomicBool>,
) -> hyper::Response<BoxBody> {
    use http_body_util::BodyExt as _;
    let path = seen.uri.split('?').next().unwrap_or("");
    let json = |body: String| hyper::Response::builder().header("content-type", "application/json").body(full(body)).expect("response");
    match path {
        "/echo-auth" => json(format!(
            "{{\"you_sent\":\"{}\",\"token_only\":\"{}\"}}",
            seen.header("authorization").unwrap_or(""),
            seen.header("authorization").unwrap_or("").trim_start_matches("Bearer ")
        )),
        "/secrets" => json(secrets_json()),
        "/header-leak" => hyper::Response::builder()
            .header("content-type", "application/json")
            .header("x-debug-token", FAKE_SLACK)
            .body(full("{}"))
            .expect("response"),
        p if p.starts_with("/encoded/") => {
            let coding = &p["/encoded/".len()..];
            hyper::Response::builder()
                .header("content-type", "application/json")
                .header("content-encoding", coding)
                .body(full(compress(coding, secrets_json().as_bytes())))
                .expect("response")
        }
        "/corrupt-gzip" => hyper::Response::builder()
            .header("content-type", "application/json")
            .header("content-encoding", "gzip")
            .body(full(format!("not gzip at all, {FAKE_AWS_KEY}")))
            .expect("response"),
        "/empty-binary" => hyper::Response::builder().header("content-type", "image/png").body(full("")).expect("response"),
        "/empty-in-unknown-coding" => hyper::Response::builder()
            .header("content-type", "application/json")
            .header("content-encoding", "compress")
            .body(full(""))
            .expect("response"),
        "/binary" => hyper::Response::builder()
            .header("content-type", "image/png")
            .body(full([b"\x89PNG\r\n\x1a\n".as_slice(), FAKE_AWS_KEY.as_bytes(), &[0xff, 0xfe, 0x00]].concat()))
            .expect("response"),
        "/sse" => {
            let first = Bytes::from_static(b"data: {\"n\":1,\"text\":\"hello\"}\n\n");
            let second = Bytes::from(format!("data: {{\"n\":2,\"text\":\"key {FAKE_AWS_KEY}\"}}\n\n"));
            let body = second_part_on_go(Duration::ZERO, first, second, go, sent_second);
            hyper::Response::builder().header("content-type", "text/event-stream").body(body).expect("response")
        }
        "/length-in-parts" => {
            // A body of declared length in two parts, after the head.
            let first = Bytes::from_static(b"{\"part\":1,");
            let second = Bytes::from(format!("\"key\":\"{FAKE_AWS_KEY}\"}}"));
            let total = first.len() + second.len();
            let body = second_part_on_go(HEAD_ALONE_FOR, first, second, go, sent_second);
            hyper::Response::builder()
                .header("content-type", "application/json")
                .header("content-length", total)
                .body(body)
                .expect("response")
        }
        "/head-first" => {
            // The head alone, then the whole body of declared length.
            let body = secrets_json();
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<hyper::body::Frame<Bytes>, std::convert::Infallible>>(1);
            let len = body.len();
            tokio::spawn(async move {
                tokio::time::sleep(HEAD_ALONE_FOR).await;
                let _ = tx.send(Ok(hyper::body::Frame::data(Bytes::from(body)))).await;
            });
            hyper::Response::builder()
                .header("content-type", "application/json")
                .header("content-length", len)
                .body(http_body_util::StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx)).boxed())
                .expect("response")
        }
        "/dies-mid-body" => {
            // Declares more than it sends: after the second part the body
            // ends short, and the upstream drops the connection.
            let first = Bytes::from_static(b"{\"part\":1,");
            let second = Bytes::from_static(b"\"part\":2,");
            let declared = first.len() + second.len() + 100;
            let body = second_part_on_go(Duration::ZERO, first, second, go, sent_second);
            hyper::Response::builder()
                .header("content-type", "application/json")
                .header("content-length", declared)
                .body(body)
                .expect("response")
        }
        "/big" => {
            // 50 MiB of JSON lines with a fake secret every 64 KiB, streamed.
            let (tx, rx) = tokio::sync::mpsc::channel::<Result<hyper::body::Frame<Bytes>, std::convert::Infallible>>(2);
            tokio::spawn(async move {
                let filler = "x".repeat(64 * 1024 - 64);
                for i in 0..800u32 {
                    let chunk = format!("{{\"i\":{i:06},\"k\":\"{FAKE_AWS_KEY}\",\"f\":\"{filler}\"}}\n");
                    if tx.send(Ok(hyper::body::Frame::data(Bytes::from(chunk)))).await.is_err() {
                        return;
                    }
                }
            });
            let stream = http_body_util::StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
            hyper::Response::builder().header("content-type", "application/x-ndjson").body(stream.boxed()).expect("response")
        }
        _ => json("{\"ok\":true}".to_owned()),
    }
}

impl Upstream {
    pub fn start() -> Upstream {
        let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().expect("runtime");
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let go: Arc<std::sync::atomic::AtomicBool> = Arc::default();
        let sent_second: Arc<std::sync::atomic::AtomicBool> = Arc::default();
        let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind upstream");
        let addr = listener.local_addr().expect("addr");
        let (seen2, go2, sent2) = (seen.clone(), go.clone(), sent_second.clone());
        rt.spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (seen, go, sent) = (seen2.clone(), go2.clone(), sent2.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let (seen, go, sent) = (seen.clone(), go.clone(), sent.clone());
                        async move {
                            let (parts, body) = req.into_parts();
                            let body = body.collect().await.map(|b| b.to_bytes().to_vec()).unwrap_or_default();
                            let s = Seen {
                                method: parts.method.to_string(),
                                uri: parts.uri.to_string(),
                                headers: parts
                                    .headers
                                    .iter()
                                    .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v.as_bytes()).into()))
                                    .collect(),
                                body,
                            };
                            seen.lock().expect("lock").push(s.clone());
                            Ok::<_, std::convert::Infallible>(respond(&s, go, sent).await)
                        }
                    });
                    let io = hyper_util::rt::TokioIo::new(stream);
                    let _ = hyper::server::conn::http1::Builder::new().serve_connection(io, svc).await;
                });
            }
        });
        Upstream { addr, seen, go, sent_second, _rt: rt }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().expect("lock").clone()
    }
}

pub fn write_key(path: &Path, key: &SigningKey) {
    let pem = key.to_pkcs8_pem(Default::default()).expect("pem");
    std::fs::write(path, pem.as_bytes()).expect("write key");
}

pub fn new_key() -> SigningKey {
    SigningKey::generate(&mut rand::rngs::OsRng)
}

pub fn did(k: &SigningKey) -> String {
    did_key(&k.verifying_key())
}

/// Options for one gateway instance.
pub struct GatewayOpts {
    pub replay_protection: bool,
    pub extra_policy: Option<String>,
    pub vault_key: String,
    /// Credential stored for (tenant "acme", name "svc").
    pub credential: Option<String>,
    /// Use this identity key instead of a fresh one.
    pub gateway_key: Option<SigningKey>,
    /// More root DIDs for tenant "acme".
    pub extra_roots: Vec<String>,
    /// Use this upstream instead of a fresh one.
    pub upstream: Option<Upstream>,
    /// `[sanitize] binary = "block"`.
    pub binary_block: bool,
    /// `[step_up] hold_secs`.
    pub hold_secs: u64,
    /// Extra TOML appended to the config (e.g. `[[budgets]]`).
    pub extra_config: String,
    /// `[audit] enabled = false`.
    pub audit_disabled: bool,
    /// `[server] h2c`.
    pub h2c: bool,
    /// `[server] h2c_idle_timeout_secs`.
    pub h2c_idle_timeout_secs: u64,
}

impl Default for GatewayOpts {
    fn default() -> Self {
        GatewayOpts {
            replay_protection: true,
            extra_policy: None,
            vault_key: "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=".into(),
            credential: Some("upstream-secret-0123456789".into()),
            gateway_key: None,
            extra_roots: Vec::new(),
            upstream: None,
            binary_block: false,
            hold_secs: 0,
            extra_config: String::new(),
            audit_disabled: false,
            h2c: true,
            h2c_idle_timeout_secs: 60,
        }
    }
}

pub struct Gateway {
    /// An approver of tenant acme.
    pub approver_key: SigningKey,
    /// An operator (admin API, every tenant).
    pub operator_key: SigningKey,
    pub audit_key: SigningKey,
    /// Root key of the second tenant, "other".
    pub other_root_key: SigningKey,
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub admin_port: u16,
    pub gateway_key: SigningKey,
    pub root_key: SigningKey,
    pub agent_key: SigningKey,
    pub upstream: Upstream,
    pub child: Option<Child>,
    pub config_path: PathBuf,
    pub vault_key: String,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        if let Some(c) = &mut self.child {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Gateway {
    /// Prepare config, keys, policies and vault, without starting.
    pub fn prepare(mut opts: GatewayOpts) -> Gateway {
        let dir = tempfile::tempdir().expect("tempdir");
        let upstream = opts.upstream.take().unwrap_or_else(Upstream::start);
        let (gateway_key, root_key, agent_key) = (opts.gateway_key.clone().unwrap_or_else(new_key), new_key(), new_key());
        write_key(&dir.path().join("gateway.pem"), &gateway_key);
        let audit_key = new_key();
        let other_root_key = new_key();
        let operator_key = new_key();
        let approver_key = new_key();
        write_key(&dir.path().join("audit-signing.pem"), &audit_key);
        let pdir = dir.path().join("policies");
        std::fs::create_dir_all(&pdir).expect("mkdir");
        let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
        std::fs::copy(repo.join("policies/schema.cedarschema"), pdir.join("schema.cedarschema")).expect("copy schema");
        std::fs::copy(repo.join("policies/risk.cedar"), pdir.join("risk.cedar")).expect("copy risk");
        let mut authz = std::fs::read_to_string(repo.join("policies/authz.cedar")).expect("read authz");
        if let Some(extra) = &opts.extra_policy {
            authz.push('\n');
            authz.push_str(extra);
        }
        std::fs::write(pdir.join("authz.cedar"), authz).expect("write authz");
        let (port, admin_port) = (free_port(), free_port());
        let config = format!(
            r#"
[server]
listen = "127.0.0.1:{port}"
admin_listen = "127.0.0.1:{admin_port}"
threads = 1
identity_key = "gateway.pem"
h2c = {h2c}
h2c_idle_timeout_secs = {h2c_idle}

[ucan]
max_lifetime_secs = 60
clock_skew_secs = 5
replay_protection = {replay}

[[tenants]]
id = "acme"
roots = ["{root}"{extra}]
approvers = ["{approver}"]

[[tenants]]
id = "other"
roots = ["{other}"]

[[routes]]
name = "svc"
prefix = "/svc/"
upstream = "{up}"
credential = "svc"
allow_writes = true
strip_headers = ["X-Api-Key"]

[[routes]]
name = "ro"
prefix = "/ro/"
upstream = "{up}/readonly"
credential = "svc"

[[routes]]
name = "dead"
prefix = "/dead/"
upstream = "http://127.0.0.1:{dead}"
credential = "svc"

[vault]
path = "vault.json"
key_env = "CAPGATE_VAULT_KEY"

[policies]
dir = "policies"

[sanitize]
binary = "{binary}"

[audit]
enabled = {audit_enabled}
dir = "audit"
signing_key = "audit-signing.pem"
root_interval_secs = 1
commit_interval_ms = 5

[admin]
operators = ["{operator}"]

[state]
path = "governance.json"

[step_up]
hold_secs = {hold}
approval_ttl_secs = 600
"#,
            replay = opts.replay_protection,
            root = did(&root_key),
            extra = opts.extra_roots.iter().map(|r| format!(", \"{r}\"")).collect::<String>(),
            other = did(&other_root_key),
            up = upstream.url(),
            dead = free_port(),
            binary = if opts.binary_block { "block" } else { "pass" },
            audit_enabled = !opts.audit_disabled,
            h2c = opts.h2c,
            h2c_idle = opts.h2c_idle_timeout_secs,
            operator = did(&operator_key),
            approver = did(&approver_key),
            hold = opts.hold_secs,
        );
        let config_path = dir.path().join("config.toml");
        std::fs::write(&config_path, format!("{config}\n{}\n", opts.extra_config)).expect("write config");
        let g = Gateway {
            approver_key,
            operator_key,
            audit_key,
            other_root_key,
            dir,
            port,
            admin_port,
            gateway_key,
            root_key,
            agent_key,
            upstream,
            child: None,
            config_path,
            vault_key: opts.vault_key.clone(),
        };
        if let Some(c) = &opts.credential {
            let out = g.cli(&["vault", "put", "--tenant", "acme", "--name", "svc"], Some(&format!("{c}\n")));
            assert!(out.status.success(), "vault put: {}", String::from_utf8_lossy(&out.stderr));
        }
        g
    }

    /// Run the capgate CLI against this gateway's config.
    pub fn cli(&self, args: &[&str], stdin: Option<&str>) -> std::process::Output {
        let mut cmd = Command::new(BIN);
        cmd.args(args)
            .arg("--config")
            .arg(&self.config_path)
            .env("CAPGATE_VAULT_KEY", &self.vault_key)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("spawn capgate");
        if let Some(s) = stdin {
            child.stdin.take().expect("stdin").write_all(s.as_bytes()).expect("write stdin");
        }
        drop(child.stdin.take());
        child.wait_with_output().expect("wait")
    }

    pub fn start(opts: GatewayOpts) -> Gateway {
        let mut g = Gateway::prepare(opts);
        g.spawn();
        g
    }

    /// Start (or restart) the serve process and wait until it is ready.
    pub fn spawn(&mut self) {
        let g = self;
        let log = std::fs::OpenOptions::new().create(true).append(true).open(g.dir.path().join("gateway.log")).expect("log file");
        let child = Command::new(BIN)
            .args(["serve", "--config"])
            .arg(&g.config_path)
            .env("CAPGATE_VAULT_KEY", &g.vault_key)
            .stdout(log.try_clone().expect("clone"))
            .stderr(log)
            .spawn()
            .expect("spawn serve");
        g.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(20);
        let client = reqwest::blocking::Client::new();
        loop {
            if let Ok(r) = client.get(format!("http://127.0.0.1:{}/readyz", g.admin_port)).send() {
                if r.status() == 200 {
                    break;
                }
            }
            if let Some(Ok(Some(status))) = g.child.as_mut().map(|c| c.try_wait()) {
                panic!("capgate exited early ({status}): {}", g.log());
            }
            assert!(Instant::now() < deadline, "capgate did not become ready: {}", g.log());
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM (graceful: audit chains are flushed and get a final root) and wait.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").args(["-TERM", &c.id().to_string()]).status();
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                if let Ok(Some(_)) = c.try_wait() {
                    break;
                }
                assert!(Instant::now() < deadline, "capgate did not stop on SIGTERM: {}", self.log());
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// SIGKILL: a crash.
    pub fn crash(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn audit_dir(&self) -> PathBuf {
        self.dir.path().join("audit")
    }

    /// An admin UCAN from `key` (operator or tenant root).
    pub fn admin_token(&self, key: &SigningKey) -> String {
        mint(
            key,
            &MintSpec {
                audience: self.gateway_did(),
                capabilities: vec![("capgate:admin".into(), "*".into())],
                expires: now() + 60,
                ..Default::default()
            },
        )
    }

    /// Call the admin API: (status, JSON).
    pub fn admin(&self, method: &str, path: &str, token: Option<&str>, body: Option<serde_json::Value>) -> Reply {
        let client = reqwest::blocking::Client::new();
        let mut req = client.request(method.parse().expect("method"), format!("http://127.0.0.1:{}{path}", self.admin_port));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if let Some(b) = body {
            req = req.header("content-type", "application/json").body(b.to_string());
        }
        send(req)
    }

    /// `capgate audit verify DIR --pubkey <audit key> --json`: (exit code, report).
    pub fn verify_audit(&self, dir: &Path) -> (i32, serde_json::Value) {
        let out = Command::new(BIN)
            .args(["audit", "verify"])
            .arg(dir)
            .args(["--pubkey", &did(&self.audit_key), "--json"])
            .output()
            .expect("run verify");
        let v = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
        (out.status.code().unwrap_or(-1), v)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("gateway.log")).unwrap_or_default()
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{}", self.port, path)
    }

    pub fn metrics(&self) -> String {
        reqwest::blocking::get(format!("http://127.0.0.1:{}/metrics", self.admin_port)).expect("metrics").text().expect("text")
    }

    /// Metrics once `line` appears (logging runs just after the response is
    /// sent, so a counter may lag the reply by a moment). Gives up after 5 s.
    pub fn metrics_with(&self, line: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            let m = self.metrics();
            if m.lines().any(|l| l == line) || Instant::now() > deadline {
                return m;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn gateway_did(&self) -> String {
        did(&self.gateway_key)
    }

    /// root → agent delegation of `with`/`can`, valid an hour.
    pub fn delegation(&self, with: &str, can: &str) -> String {
        mint(
            &self.root_key,
            &MintSpec {
                audience: did(&self.agent_key),
                capabilities: vec![(with.into(), can.into())],
                expires: now() + 3600,
                ..Default::default()
            },
        )
    }

    /// A GET through the gateway with a fresh token for the whole upstream.
    pub fn get(&self, path: &str) -> reqwest::blocking::Response {
        let up = self.upstream.url();
        let deleg = self.delegation(&up, "http/GET");
        let inv = self.invocation(&up, "http/GET", &deleg);
        reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("client")
            .get(self.url(path))
            .header("authorization", format!("Bearer {inv}"))
            .header("ucans", deleg)
            .header("accept-encoding", "gzip, br, zstd, deflate")
            .send()
            .expect("request")
    }

    /// The gateway's resident set size, in KiB.
    pub fn rss_kib(&self) -> u64 {
        let pid = self.child.as_ref().expect("running").id();
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("proc status");
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// agent → gateway invocation resting on `proof`.
    pub fn invocation(&self, with: &str, can: &str, proof: &str) -> String {
        mint(
            &self.agent_key,
            &MintSpec {
                audience: self.gateway_did(),
                capabilities: vec![(with.into(), can.into())],
                expires: now() + 30,
                nonce: Some(nonce()),
                proofs: vec![proof.into()],
                ..Default::default()
            },
        )
    }
}

pub fn nonce() -> String {
    use rand::RngCore;
    let mut b = [0u8; 12];
    rand::rngs::OsRng.fill_bytes(&mut b);
    capgate_filters::ucan::b64::encode(&b)
}

/// A parsed JSON refusal.
pub struct Reply {
    pub status: u16,
    pub json: serde_json::Value,
    pub text: String,
}

impl Reply {
    pub fn error(&self) -> &str {
        self.json["error"].as_str().unwrap_or("")
    }
}

pub fn send(req: reqwest::blocking::RequestBuilder) -> Reply {
    let r = req.send().expect("request");
    let status = r.status().as_u16();
    let text = r.text().expect("body");
    let json = serde_json::from_str(&text).unwrap_or(serde_json::Value::Null);
    Reply { status, json, text }
}

pub fn call(g: &Gateway, method: &str, path: &str, token: Option<&str>, ucans: Option<&str>) -> Reply {
    let client = reqwest::blocking::Client::new();
    let mut req = client.request(method.parse().expect("method"), g.url(path));
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    if let Some(u) = ucans {
        req = req.header("ucans", u);
    }
    send(req)
}

/// Assert a refusal's status and reason code, and that it has the full shape.
#[track_caller]
pub fn assert_refused(r: &Reply, status: u16, code: &str) {
    assert_eq!((r.status, r.error()), (status, code), "body: {}", r.text);
    assert!(r.json["reason"].as_str().is_some_and(|s| !s.is_empty()), "reason text: {}", r.text);
    assert_eq!(r.json["request_id"].as_str().map(str::len), Some(32), "request id: {}", r.text);
}

/// Read the `/sse` reply through the gateway: the first event must arrive on
/// its own, before the upstream sends the second (which it does once this
/// sets `go`); the second arrives sanitized.
#[track_caller]
pub fn assert_sse_flows_event_by_event(g: &Gateway, mut r: impl std::io::Read) {
    use std::sync::atomic::Ordering;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(5);
    while !String::from_utf8_lossy(&got).contains("\n\n") {
        assert!(Instant::now() < deadline, "the first event did not arrive on its own");
        let n = r.read(&mut buf).expect("read");
        assert!(n > 0, "stream ended early");
        got.extend_from_slice(&buf[..n]);
    }
    assert!(!g.upstream.sent_second.load(Ordering::SeqCst), "the first event arrived before the upstream sent the second");
    assert_eq!(String::from_utf8_lossy(&got), "data: {\"n\":1,\"text\":\"hello\"}\n\n");
    g.upstream.go.store(true, Ordering::SeqCst);
    r.read_to_end(&mut got).expect("rest");
    let all = String::from_utf8_lossy(&got);
    assert!(all.ends_with("data: {\"n\":2,\"text\":\"key [REDACTED:aws_access_key_id]\"}\n\n"), "{all}");
}

/// A raw keep-alive connection to the gateway: the stream (to write to and
/// inspect) and a buffered reader over a clone of it.
pub fn raw_connection(g: &Gateway) -> (std::net::TcpStream, std::io::BufReader<std::net::TcpStream>) {
    let stream = std::net::TcpStream::connect(("127.0.0.1", g.port)).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    let reader = std::io::BufReader::new(stream.try_clone().expect("clone"));
    (stream, reader)
}

/// Send a GET for `path` carrying `tok` and its proof on a raw connection.
pub fn write_get(mut w: &std::net::TcpStream, path: &str, tok: &str, deleg: &str) {
    use std::io::Write;
    write!(w, "GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {tok}\r\nucans: {deleg}\r\n\r\n").expect("write");
}

/// Read a response head, lower-cased, up to the empty line.
pub fn read_head(r: &mut impl std::io::BufRead) -> String {
    let mut head = String::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).expect("head line") == 0 {
            panic!("the connection closed before the end of a response head; read: {head:?}");
        }
        if line == "\r\n" {
            return head;
        }
        head.push_str(&line.to_ascii_lowercase());
    }
}

/// Read one chunk; `None` for the last (zero-length) chunk.
pub fn read_chunk(r: &mut impl std::io::BufRead) -> Option<Vec<u8>> {
    let mut size = String::new();
    r.read_line(&mut size).expect("chunk size");
    let n = usize::from_str_radix(size.trim(), 16).expect("hex size");
    let mut chunk = vec![0u8; n + 2];
    r.read_exact(&mut chunk).expect("chunk");
    chunk.truncate(n);
    (n > 0).then_some(chunk)
}

/// Read the remaining chunks of a body, to the last chunk.
pub fn read_chunks(r: &mut impl std::io::BufRead) -> Vec<u8> {
    let mut body = Vec::new();
    while let Some(chunk) = read_chunk(r) {
        body.extend_from_slice(&chunk);
    }
    body
}

/// The `content-length` of a lower-cased head.
pub fn content_length(head: &str) -> Option<usize> {
    head.lines().find_map(|l| l.strip_prefix("content-length: ")).and_then(|v| v.trim().parse().ok())
}

/// Read one HTTP/1.1 response that must be framed by its `Content-Length`:
/// the lower-cased head and the body.
pub fn read_sized(r: &mut impl std::io::BufRead) -> (String, Vec<u8>) {
    let (head, body) = read_reply(r);
    assert!(!head.contains("transfer-encoding") && content_length(&head).is_some(), "{head}");
    (head, body)
}

/// Read one HTTP/1.1 response, chunked or framed by its `Content-Length`.
pub fn read_reply(r: &mut impl std::io::BufRead) -> (String, Vec<u8>) {
    let head = read_head(r);
    if head.contains("transfer-encoding: chunked") {
        let body = read_chunks(r);
        return (head, body);
    }
    let n = content_length(&head).unwrap_or_else(|| panic!("neither chunked nor sized: {head}"));
    let mut body = vec![0u8; n];
    r.read_exact(&mut body).expect("body");
    (head, body)
}
