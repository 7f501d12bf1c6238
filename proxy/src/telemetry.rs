//! Logging: `tracing` as JSON lines on stderr, filtered by `RUST_LOG`
//! (default `info`). pingora's own `log` records are bridged into it.
//! Log fields are chosen by capgate: tokens, secrets and agent header values
//! are never logged (paths and queries are not either; see `request_summary`).

pub fn init() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().json().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
