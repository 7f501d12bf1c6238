//! Capabilities for HTTP: a resource (`with`, an upstream URL) and an ability
//! (`can`, `http/<METHOD>`, `http/*` or `*`).
//!
//! A resource covers the same origin and every path-segment descendant of its
//! path. Hosts compare case-insensitively; default ports are made explicit;
//! paths are normalised with [`crate::normalize`] before they are stored.
//! Abilities compare case-insensitively, as the UCAN specs require.

use crate::normalize::{normalize_path, path_covers};

/// Why a capability could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapabilityError {
    #[error("the resource URL is malformed")]
    BadUrl,
    #[error("the resource URL carries userinfo, a query or a fragment")]
    UrlExtras,
    #[error("the ability is malformed")]
    BadAbility,
}

/// `http` or `https`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// A normalised HTTP(S) URL without query or fragment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpUrl {
    pub scheme: Scheme,
    /// Lower-case host; IPv6 literals keep their brackets.
    pub host: String,
    pub port: u16,
    /// Normalised path, starting with `/`.
    pub path: String,
}

impl HttpUrl {
    /// Parse and normalise `scheme://host[:port][/path]`.
    pub fn parse(url: &str) -> Result<Self, CapabilityError> {
        let (scheme, rest) = if let Some(r) = strip_prefix_ci(url, "https://") {
            (Scheme::Https, r)
        } else if let Some(r) = strip_prefix_ci(url, "http://") {
            (Scheme::Http, r)
        } else {
            return Err(CapabilityError::BadUrl);
        };
        if rest.contains(['?', '#']) {
            return Err(CapabilityError::UrlExtras);
        }
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err(CapabilityError::UrlExtras);
        }
        let (host, port) = split_host_port(authority)?;
        let port = port.unwrap_or(scheme.default_port());
        let path = normalize_path(path).map_err(|_| CapabilityError::BadUrl)?;
        Ok(HttpUrl { scheme, host: host.to_ascii_lowercase(), port, path })
    }

    /// True when this resource covers the given request target.
    pub fn covers(&self, scheme: Scheme, host: &str, port: u16, path: &str) -> bool {
        self.scheme == scheme && self.port == port && self.host.eq_ignore_ascii_case(host) && path_covers(&self.path, path)
    }

    /// True when this resource covers `other` (same origin, path descendant).
    pub fn covers_url(&self, other: &HttpUrl) -> bool {
        self.covers(other.scheme, &other.host, other.port, &other.path)
    }
}

impl std::fmt::Display for HttpUrl {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}", self.scheme.as_str(), self.host)?;
        if self.port != self.scheme.default_port() {
            write!(f, ":{}", self.port)?;
        }
        f.write_str(&self.path)
    }
}

fn strip_prefix_ci<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    if s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes()) {
        Some(&s[prefix.len()..])
    } else {
        None
    }
}

fn split_host_port(authority: &str) -> Result<(&str, Option<u16>), CapabilityError> {
    let (host, port) = if authority.starts_with('[') {
        let end = authority.find(']').ok_or(CapabilityError::BadUrl)?;
        let host = &authority[..=end];
        match &authority[end + 1..] {
            "" => (host, None),
            p => (host, Some(p.strip_prefix(':').ok_or(CapabilityError::BadUrl)?)),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let valid_host =
        !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'[' | b']' | b':' | b'_'));
    if !valid_host {
        return Err(CapabilityError::BadUrl);
    }
    let port = match port {
        None => None,
        Some(p) => Some(p.parse::<u16>().ok().filter(|p| *p != 0).ok_or(CapabilityError::BadUrl)?),
    };
    Ok((host, port))
}

/// What a capability lets its holder do.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Ability {
    /// `*`: every ability.
    Top,
    /// `http/*`: every HTTP method.
    AnyHttp,
    /// `http/<METHOD>`, method upper-cased.
    Http(String),
    /// Any other ability, lower-cased. It never grants an HTTP call.
    Other(String),
}

impl Ability {
    pub fn parse(can: &str) -> Result<Self, CapabilityError> {
        if can == "*" {
            return Ok(Ability::Top);
        }
        let (ns, seg) = can.split_once('/').ok_or(CapabilityError::BadAbility)?;
        if ns.is_empty() || seg.is_empty() || !can.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(CapabilityError::BadAbility);
        }
        if ns.eq_ignore_ascii_case("http") {
            if seg == "*" {
                return Ok(Ability::AnyHttp);
            }
            if !seg.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(CapabilityError::BadAbility);
            }
            return Ok(Ability::Http(seg.to_ascii_uppercase()));
        }
        Ok(Ability::Other(can.to_ascii_lowercase()))
    }

    /// True when `self` is equal to or broader than `other`.
    pub fn covers(&self, other: &Ability) -> bool {
        match (self, other) {
            (Ability::Top, _) => true,
            (Ability::AnyHttp, Ability::AnyHttp | Ability::Http(_)) => true,
            (Ability::Http(a), Ability::Http(b)) => a == b,
            (Ability::Other(a), Ability::Other(b)) => a == b,
            _ => false,
        }
    }

    /// True when this ability allows the HTTP `method` (upper-case).
    pub fn allows_method(&self, method: &str) -> bool {
        match self {
            Ability::Top | Ability::AnyHttp => true,
            // Methods are case-sensitive (RFC 9110 §9.1); abilities are stored upper-case.
            Ability::Http(m) => m == method,
            Ability::Other(_) => false,
        }
    }
}

/// The resource a capability names.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Resource {
    Http(HttpUrl),
    /// A non-HTTP resource, kept verbatim. It can be delegated but never
    /// grants an HTTP call.
    Other(String),
}

/// One capability: a resource and an ability.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Capability {
    pub resource: Resource,
    pub ability: Ability,
}

impl Capability {
    /// Parse a `with`/`can` pair.
    pub fn parse(with: &str, can: &str) -> Result<Self, CapabilityError> {
        let ability = Ability::parse(can)?;
        let lower = with.get(..8).map(|s| s.to_ascii_lowercase()).unwrap_or_default();
        let resource = if lower.starts_with("http://") || lower.starts_with("https://") {
            Resource::Http(HttpUrl::parse(with)?)
        } else {
            Resource::Other(with.to_owned())
        };
        Ok(Capability { resource, ability })
    }

    /// True when `self` is equal to or broader than `other` (attenuation).
    pub fn covers(&self, other: &Capability) -> bool {
        let resource_ok = match (&self.resource, &other.resource) {
            (Resource::Http(a), Resource::Http(b)) => a.covers_url(b),
            (Resource::Other(a), Resource::Other(b)) => a == b,
            _ => false,
        };
        resource_ok && self.ability.covers(&other.ability)
    }

    /// True when this capability allows `method` on the given target.
    pub fn allows(&self, method: &str, scheme: Scheme, host: &str, port: u16, path: &str) -> bool {
        match &self.resource {
            Resource::Http(url) => self.ability.allows_method(method) && url.covers(scheme, host, port, path),
            Resource::Other(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap(w: &str, c: &str) -> Capability {
        Capability::parse(w, c).expect("valid capability")
    }

    #[test]
    fn url_parsing_normalises() {
        let u = HttpUrl::parse("HTTPS://API.GitHub.com/repos/acme/./app").expect("parses");
        assert_eq!(u.to_string(), "https://api.github.com/repos/acme/app");
        assert_eq!(u.port, 443);
        let u = HttpUrl::parse("http://127.0.0.1:8081").expect("parses");
        assert_eq!((u.host.as_str(), u.port, u.path.as_str()), ("127.0.0.1", 8081, "/"));
        let u = HttpUrl::parse("http://[::1]:9/x").expect("parses");
        assert_eq!((u.host.as_str(), u.port), ("[::1]", 9));
        assert_eq!(HttpUrl::parse("https://user@evil.com/"), Err(CapabilityError::UrlExtras));
        assert_eq!(HttpUrl::parse("https://a.com/x?y=1"), Err(CapabilityError::UrlExtras));
        assert_eq!(HttpUrl::parse("https://a.com:0/"), Err(CapabilityError::BadUrl));
        assert_eq!(HttpUrl::parse("ftp://a.com/"), Err(CapabilityError::BadUrl));
        assert_eq!(HttpUrl::parse("https:///x"), Err(CapabilityError::BadUrl));
        assert_eq!(HttpUrl::parse("https://a.com/%2F"), Err(CapabilityError::BadUrl));
    }

    #[test]
    fn attenuation() {
        let parent = cap("https://api.github.com/repos/acme", "http/*");
        assert!(parent.covers(&cap("https://api.github.com/repos/acme/app", "http/GET")));
        assert!(parent.covers(&cap("https://API.GITHUB.COM:443/repos/acme/", "http/get")));
        assert!(!parent.covers(&cap("https://api.github.com/repos/acme2", "http/GET")));
        assert!(!parent.covers(&cap("http://api.github.com/repos/acme", "http/GET")));
        assert!(!parent.covers(&cap("https://api.github.com/repos", "http/GET")));
        assert!(!parent.covers(&cap("https://api.github.com/repos/acme", "*")));
        let get = cap("https://api.github.com/repos/acme", "http/GET");
        assert!(!get.covers(&cap("https://api.github.com/repos/acme", "http/*")));
        assert!(!get.covers(&cap("https://api.github.com/repos/acme", "http/POST")));
        assert!(cap("https://api.github.com/", "*").covers(&parent));
        assert!(!parent.covers(&cap("mailto:a@b.c", "http/GET")));
        assert!(cap("mailto:a@b.c", "msg/send").covers(&cap("mailto:a@b.c", "MSG/SEND")));
    }

    #[test]
    fn request_matching() {
        let c = cap("https://api.github.com/repos/acme/app", "http/GET");
        assert!(c.allows("GET", Scheme::Https, "api.github.com", 443, "/repos/acme/app/issues/1"));
        assert!(!c.allows("POST", Scheme::Https, "api.github.com", 443, "/repos/acme/app"));
        assert!(!c.allows("GET", Scheme::Https, "api.github.com", 443, "/repos/acme/app2"));
        assert!(!c.allows("GET", Scheme::Https, "evil.com", 443, "/repos/acme/app"));
        assert!(!c.allows("GET", Scheme::Https, "api.github.com", 8443, "/repos/acme/app"));
    }

    #[test]
    fn abilities() {
        assert_eq!(Ability::parse("HTTP/get"), Ok(Ability::Http("GET".into())));
        assert_eq!(Ability::parse("http/*"), Ok(Ability::AnyHttp));
        assert_eq!(Ability::parse("*"), Ok(Ability::Top));
        assert_eq!(Ability::parse("http"), Err(CapabilityError::BadAbility));
        assert_eq!(Ability::parse("http/"), Err(CapabilityError::BadAbility));
        assert_eq!(Ability::parse("http/GE T"), Err(CapabilityError::BadAbility));
    }
}
