//! The route table: which configured upstream a normalised request path
//! belongs to, and the upstream URL it becomes.
//!
//! The upstream scheme, host and port always come from the route, never from
//! the request: a request can only choose a path under its route's upstream.

use crate::config::RouteSection;
use capgate_filters::authz::RouteFacts;
use capgate_filters::ucan::{HttpUrl, Scheme};
use http::HeaderName;

/// A compiled route.
#[derive(Debug)]
pub struct Route {
    pub name: String,
    /// Normalised prefix, starting and ending with `/`.
    pub prefix: String,
    pub host_match: Option<String>,
    pub upstream: HttpUrl,
    /// `host[:port]` for the upstream `Host` header.
    pub authority: String,
    pub credential: String,
    pub inject_header: HeaderName,
    /// The inject format split around `{token}`.
    pub inject_prefix: String,
    pub inject_suffix: String,
    pub strip_headers: Vec<HeaderName>,
    pub facts: RouteFacts,
}

impl Route {
    /// Compile a validated route section.
    pub fn compile(r: &RouteSection) -> Result<Route, String> {
        if !r.prefix.starts_with('/') || !r.prefix.ends_with('/') {
            return Err(format!("route {}: prefix must start and end with '/'", r.name));
        }
        let upstream = HttpUrl::parse(&r.upstream).map_err(|e| format!("route {}: upstream: {e}", r.name))?;
        let authority = if upstream.port == upstream.scheme.default_port() {
            upstream.host.clone()
        } else {
            format!("{}:{}", upstream.host, upstream.port)
        };
        let (inject_prefix, inject_suffix) = r
            .inject
            .format
            .split_once("{token}")
            .map(|(a, b)| (a.to_owned(), b.to_owned()))
            .ok_or_else(|| format!("route {}: inject.format lacks {{token}}", r.name))?;
        let header = |h: &str| HeaderName::from_bytes(h.as_bytes()).map_err(|_| format!("route {}: bad header {h:?}", r.name));
        Ok(Route {
            name: r.name.clone(),
            prefix: r.prefix.clone(),
            host_match: r.host.as_ref().map(|h| h.to_ascii_lowercase()),
            authority,
            credential: r.credential.clone(),
            inject_header: header(&r.inject.header)?,
            inject_prefix,
            inject_suffix,
            strip_headers: r.strip_headers.iter().map(|h| header(h)).collect::<Result<_, _>>()?,
            facts: RouteFacts { name: r.name.clone(), allow_writes: r.allow_writes, sensitive: r.sensitive },
            upstream,
        })
    }

    /// The upstream path for a normalised request path under this route.
    /// `path` must match the route (see [`RouteTable::find`]).
    pub fn upstream_path(&self, path: &str) -> String {
        // `/github/repos/x` with prefix `/github/` → rest `repos/x`.
        let rest = path.get(self.prefix.len()..).unwrap_or("");
        let base = self.upstream.path.trim_end_matches('/');
        let mut out = String::with_capacity(base.len() + 1 + rest.len());
        out.push_str(base);
        out.push('/');
        out.push_str(rest);
        out
    }

    pub fn scheme(&self) -> Scheme {
        self.upstream.scheme
    }

    /// `scheme://authority` + path: the URL capabilities and policies see.
    pub fn url_for(&self, upstream_path: &str) -> String {
        let mut s = String::with_capacity(16 + self.authority.len() + upstream_path.len());
        s.push_str(self.upstream.scheme.as_str());
        s.push_str("://");
        s.push_str(&self.authority);
        s.push_str(upstream_path);
        s
    }
}

/// Routes ordered by specificity.
pub struct RouteTable {
    routes: Vec<std::sync::Arc<Route>>,
}

impl RouteTable {
    pub fn new(routes: Vec<Route>) -> Self {
        let mut routes: Vec<_> = routes.into_iter().map(std::sync::Arc::new).collect();
        // Host-bound routes first, then longest prefix first.
        routes.sort_by(|a, b| b.host_match.is_some().cmp(&a.host_match.is_some()).then(b.prefix.len().cmp(&a.prefix.len())));
        RouteTable { routes }
    }

    /// The route for a normalised path (and optional request host). A path
    /// equal to a prefix without its trailing slash matches too.
    pub fn find(&self, path: &str, host: Option<&str>) -> Option<&std::sync::Arc<Route>> {
        let host = host.map(|h| h.split(':').next().unwrap_or(h));
        self.routes.iter().find(|r| {
            let host_ok = match (&r.host_match, host) {
                (None, _) => true,
                (Some(want), Some(got)) => want.eq_ignore_ascii_case(got),
                (Some(_), None) => false,
            };
            host_ok && (path.starts_with(&r.prefix) || path == &r.prefix[..r.prefix.len() - 1])
        })
    }

    pub fn iter(&self) -> impl Iterator<Item = &std::sync::Arc<Route>> {
        self.routes.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::InjectSection;

    fn section(name: &str, prefix: &str, upstream: &str) -> RouteSection {
        RouteSection {
            name: name.into(),
            prefix: prefix.into(),
            host: None,
            upstream: upstream.into(),
            credential: name.into(),
            inject: InjectSection::default(),
            strip_headers: vec![],
            allow_writes: false,
            sensitive: false,
        }
    }

    #[test]
    fn prefix_matching_and_upstream_urls() {
        let t = RouteTable::new(vec![
            Route::compile(&section("gh", "/github/", "https://api.github.com")).expect("route"),
            Route::compile(&section("oa", "/openai/", "https://api.openai.com/v1")).expect("route"),
            Route::compile(&section("ghx", "/github/extra/", "http://127.0.0.1:9000")).expect("route"),
        ]);
        let r = t.find("/github/repos/acme/app", None).expect("matches");
        assert_eq!(r.name, "gh");
        let p = r.upstream_path("/github/repos/acme/app");
        assert_eq!(p, "/repos/acme/app");
        assert_eq!(r.url_for(&p), "https://api.github.com/repos/acme/app");
        assert_eq!(t.find("/github/extra/x", None).map(|r| r.name.as_str()), Some("ghx"));
        let r = t.find("/openai/chat/completions", None).expect("matches");
        assert_eq!(r.upstream_path("/openai/chat/completions"), "/v1/chat/completions");
        assert_eq!(t.find("/github", None).map(|r| r.name.as_str()), Some("gh"));
        assert!(t.find("/githubx/repos", None).is_none());
        assert!(t.find("/", None).is_none());
        let r = t.find("/github/extra/x", None).expect("matches");
        assert_eq!(r.url_for(&r.upstream_path("/github/extra/x")), "http://127.0.0.1:9000/x");
    }
}
