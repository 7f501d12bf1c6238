//! Logging: `tracing` as JSON lines on stderr, filtered by `RUST_LOG`
//! (default `info`). pingora's own `log` records are bridged into it.
//! Log fields are chosen by capgate: tokens, secrets and agent header values
//! are never logged (paths and queries are not either; see `request_summary`).

/// pingora logs request heads (with `Authorization`) at debug and raw
/// upstream bytes (with the injected credential) at trace. These directives
/// are appended last, so `RUST_LOG` can never turn those on.
const PINNED: [&str; 3] = ["pingora_core=info", "pingora_proxy=info", "pingora=info"];

pub fn init() {
    let base = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned());
    let mut filter = tracing_subscriber::EnvFilter::try_new(&base).unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    for d in PINNED {
        if let Ok(d) = d.parse() {
            filter = filter.add_directive(d);
        }
    }
    let _ = tracing_subscriber::fmt().json().with_env_filter(filter).with_writer(std::io::stderr).try_init();
}
