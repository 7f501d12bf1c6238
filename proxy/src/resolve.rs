//! Upstream address resolution. IP literals need no lookup; names are
//! resolved with the system resolver off the worker threads and cached for
//! 30 seconds, so DNS changes are followed without a lookup per request.

use pingora::prelude::*;
use pingora::ErrorType;
use std::net::{IpAddr, SocketAddr};

pub async fn upstream_addr(
    cache: &moka::sync::Cache<String, SocketAddr, capgate_filters::fast_hash::FastState>,
    host: &str,
    port: u16,
) -> Result<SocketAddr> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(SocketAddr::new(ip, port));
    }
    let key = format!("{bare}:{port}");
    if let Some(a) = cache.get(&key) {
        return Ok(a);
    }
    let addr = tokio::net::lookup_host(key.as_str())
        .await
        .ok()
        .and_then(|mut it| it.next())
        .ok_or_else(|| Error::explain(ErrorType::ConnectNoRoute, "upstream name did not resolve"))?;
    let mut e = addr;
    e.set_port(port);
    cache.insert(key, e);
    Ok(e)
}
