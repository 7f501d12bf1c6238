//! Starting the gateway: load the config, build the state, and run pingora
//! with three services: the agent-facing proxy, the admin listener and, in
//! development, the echo upstream.

use crate::admin::AdminApp;
use crate::agent_listener::AgentListener;
use crate::config::Config;
use crate::gateway::Gateway;
use crate::state::{GatewayState, StartError};
use pingora::listeners::{L4BufferSettings, ListenerConfig};
use pingora::server::configuration::ServerConf;
use pingora::server::Server;
use pingora::services::listening::Service;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Load everything and check it, without serving. Used by `serve` and by
/// tests of start-up failures.
pub fn prepare(config_path: &Path) -> Result<(Config, Arc<GatewayState>, Option<crate::dev::Bootstrapped>), StartError> {
    let cfg = Config::load(config_path)?;
    let boot = if cfg.dev.bootstrap { Some(crate::dev::bootstrap(&cfg).map_err(StartError::Dev)?) } else { None };
    let state = Arc::new(GatewayState::build(&cfg)?);
    Ok((cfg, state, boot))
}

/// Run until SIGTERM/SIGINT.
pub fn serve(config_path: &Path) -> Result<(), StartError> {
    let (cfg, state, boot) = prepare(config_path)?;
    let mut conf = ServerConf { threads: cfg.server.threads, work_stealing: cfg.server.work_stealing, ..ServerConf::default() };
    conf.grace_period_seconds = Some(0);
    conf.graceful_shutdown_timeout_seconds = Some(5);
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();

    let mut gateway = pingora::proxy::http_proxy(&server.configuration, Gateway { state: state.clone() });
    gateway.server_options = Some(agent_listener_options(&cfg));
    let mut proxy =
        Service::new("capgate proxy".to_owned(), AgentListener::new(gateway, Duration::from_secs(cfg.server.h2c_idle_timeout_secs)));
    // pingora's L4 write buffer default (one MSS) is kept; the read buffer
    // is sized by config (none by default) because every idle keep-alive
    // connection holds it.
    let buffers = L4BufferSettings::new(cfg.server.read_buffer_bytes, pingora::listeners::DEFAULT_L4_WRITE_BUFFER_SIZE);
    proxy.add_listener(ListenerConfig::tcp(cfg.server.listen.as_str()).l4_buffer(buffers));
    server.add_service(proxy);

    let mut admin = Service::new("capgate admin".to_owned(), AdminApp { state: state.clone() });
    admin.add_tcp(&cfg.server.admin_listen);
    server.add_service(admin);

    server.add_service(pingora::services::background::background_service(
        "capgate live reload",
        crate::reload::LiveReloader { state: state.clone() },
    ));

    if let Some(addr) = &cfg.dev.echo_upstream {
        let mut echo = Service::new("capgate dev echo upstream".to_owned(), crate::dev::EchoApp);
        echo.add_tcp(addr);
        server.add_service(echo);
    }

    print_banner(&cfg, &state, boot.as_ref());
    server.run(pingora::server::RunArgs::default());
    // Graceful shutdown: flush every audit chain and sign its final root.
    state.auditor.shutdown();
    tracing::info!("capgate stopped");
    Ok(())
}

/// How the agent listener speaks HTTP. With `server.h2c`, pingora reads the
/// first 24 bytes of each new connection and serves it as HTTP/2 when they
/// are the HTTP/2 preface (prior knowledge, RFC 9113 §3.3), as HTTP/1.x
/// otherwise ([`AgentListener`] puts a deadline on that read). pingora
/// bounds each HTTP/2 connection at 100 concurrent streams and 64 KiB of
/// decoded headers; an idle one is closed after `server.h2c_idle_timeout_secs`
/// (60 s by default, what pingora gives an idle HTTP/1.1 connection).
fn agent_listener_options(cfg: &Config) -> pingora::apps::HttpServerOptions {
    let mut opts = pingora::apps::HttpServerOptions::default();
    opts.h2c = cfg.server.h2c;
    opts.h2_idle_timeout = Some(Duration::from_secs(cfg.server.h2c_idle_timeout_secs));
    opts
}

fn print_banner(cfg: &Config, state: &GatewayState, boot: Option<&crate::dev::Bootstrapped>) {
    tracing::info!(
        listen = %cfg.server.listen,
        admin = %cfg.server.admin_listen,
        h2c = cfg.server.h2c,
        gateway_did = %state.gateway_did,
        routes = cfg.routes.len(),
        tenants = cfg.tenants.len(),
        policies = state.policies.load().len(),
        "capgate is serving"
    );
    let Some(boot) = boot else { return };
    for c in &boot.created {
        tracing::warn!(created = %c, "dev bootstrap");
    }
    if let Some(f) = &boot.vault_key_file {
        tracing::warn!(file = %f.display(), "dev mode: the vault key was read from a file next to the store; set {} in production", cfg.vault.key_env);
    }
    let cfgp = cfg.source.display();
    let root = cfg.tenants.first().and_then(|t| t.root_keys.first()).map(|p| p.display().to_string());
    let route = cfg.routes.first();
    if let (Some(root), Some(route)) = (root, route) {
        eprintln!(
            "\ncapgate is listening on http://{listen} (admin http://{admin})\n\
             gateway DID: {did}\n\n\
             Mint a token and call the '{name}' route:\n\
             \x20 capgate keygen --out state/agent.pem --force\n\
             \x20 AGENT=$(capgate did state/agent.pem)\n\
             \x20 DELEG=$(capgate mint --config {cfgp} --key {root} --aud $AGENT --with {up} --can 'http/*' --ttl 3600 --token-only)\n\
             \x20 TOKEN=$(capgate mint --config {cfgp} --key state/agent.pem --gateway --with {up}/hello --can http/GET --proof $DELEG --token-only)\n\
             \x20 curl -s -H \"Authorization: Bearer $TOKEN\" -H \"ucans: $DELEG\" http://{listen}{prefix}hello\n",
            listen = cfg.server.listen,
            admin = cfg.server.admin_listen,
            did = state.gateway_did,
            name = route.name,
            up = route.upstream.trim_end_matches('/'),
            prefix = route.prefix,
        );
    }
}
