//! Start-up failures: they must be loud, specific and leave nothing serving.

use crate::harness::*;
use std::process::Command;

fn serve_fails(g: &Gateway, key: &str) -> String {
    let out = Command::new(BIN).args(["serve", "--config"]).arg(&g.config_path).env("CAPGATE_VAULT_KEY", key).output().expect("run serve");
    assert!(!out.status.success(), "serve must fail");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_wrong_vault_key_is_refused_at_start() {
    let g = Gateway::prepare(GatewayOpts::default());
    let err = serve_fails(&g, "ISIjJCUmJygpKissLS4vMDEyMzQ1Njc4OTo7PD0+P0A=");
    assert!(err.contains("wrong vault key"), "{err}");
    let err = serve_fails(&g, "short");
    assert!(err.contains("CAPGATE_VAULT_KEY"), "{err}");
    assert!(!err.contains("short"), "the bad value is not echoed: {err}");
}

#[test]
fn a_bad_config_names_the_key() {
    let g = Gateway::prepare(GatewayOpts::default());
    let text = std::fs::read_to_string(&g.config_path).expect("read");
    std::fs::write(&g.config_path, text.replace("prefix = \"/svc/\"", "prefix = \"svc\"")).expect("write");
    let err = serve_fails(&g, &g.vault_key);
    assert!(err.contains("routes[0].prefix"), "{err}");
    std::fs::write(&g.config_path, text.replace("[ucan]", "[ucan]\nmax_lifetime = 3")).expect("write");
    let err = serve_fails(&g, &g.vault_key);
    assert!(err.contains("max_lifetime"), "{err}");
}

#[test]
fn vault_cli_lists_names_never_values() {
    let g = Gateway::prepare(GatewayOpts::default());
    let out = g.cli(&["vault", "list"], None);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(text.contains("acme\tsvc\tv1"), "{text}");
    assert!(!text.contains("upstream-secret"), "{text}");
    let store = std::fs::read_to_string(g.dir.path().join("vault.json")).expect("store");
    assert!(!store.contains("upstream-secret"), "plaintext never on disk");
    assert!(g.cli(&["vault", "rm", "--tenant", "acme", "--name", "svc"], None).status.success());
    let out = g.cli(&["vault", "list"], None);
    assert!(String::from_utf8_lossy(&out.stdout).trim().is_empty());
}

#[test]
fn keygen_did_and_mint_cli_round_trip() {
    let g = Gateway::start(GatewayOpts::default());
    let agent_pem = g.dir.path().join("agent.pem");
    let root_pem = g.dir.path().join("root.pem");
    write_key(&root_pem, &g.root_key);
    let out = g.cli(&["keygen", "--out", agent_pem.to_str().expect("utf8")], None);
    let agent = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(agent.starts_with("did:key:z6Mk"), "{agent}");
    let out = g.cli(&["did", agent_pem.to_str().expect("utf8")], None);
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), agent);
    let up = g.upstream.url();
    let out = g.cli(
        &[
            "mint",
            "--key",
            root_pem.to_str().expect("utf8"),
            "--aud",
            &agent,
            "--with",
            &up,
            "--can",
            "http/*",
            "--ttl",
            "600",
            "--token-only",
        ],
        None,
    );
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let deleg = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let with = format!("{up}/x");
    let out = g.cli(
        &["mint", "--key", agent_pem.to_str().expect("utf8"), "--gateway", "--with", &with, "--can", "http/GET", "--proof", &deleg],
        None,
    );
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut lines = text.lines();
    let token = lines.next().expect("token line");
    let ucans = lines.next().and_then(|l| l.strip_prefix("ucans: ")).expect("ucans line");
    assert_eq!(ucans, deleg);
    let r = call(&g, "GET", "/svc/x", Some(token), Some(ucans));
    assert_eq!(r.status, 200, "{}", r.text);
}
