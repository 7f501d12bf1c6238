//! Request-path normalisation, applied before any routing or matching.
//!
//! The normalised path is both what capabilities and policies are matched
//! against and what is sent upstream, so the upstream can never see a path
//! that differs from the one that was authorised.
//!
//! Rules:
//! - the path must be origin-form (`/…`); absolute-form (`http://host/…`),
//!   authority-form and `*` are refused;
//! - empty segments (`//`), which some stacks read as an authority, are refused;
//! - percent-encoded `/` (`%2F`), `\` (`%5C`) and NUL (`%00`) are refused, and so
//!   are raw `\`, controls, spaces and non-ASCII bytes;
//! - percent-encodings of unreserved characters are decoded (so `%2E%2E` is
//!   `..`), other percent-encodings are upper-cased;
//! - dot segments are resolved; a `..` that would climb above the root is refused.

/// Why a path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Not origin-form: absolute-form, authority-form or empty.
    NotOriginForm,
    /// An empty segment (`//`).
    EmptySegment,
    /// `%2F`, `%5C` or `%00`.
    EncodedSeparator,
    /// A byte that has no place in a path: controls, space, `\`, non-ASCII.
    BadByte,
    /// A malformed percent-encoding.
    BadPercent,
    /// `..` above the root.
    AboveRoot,
    /// A dot segment with parameters (`..;x`) or a double-encoded
    /// separator or dot (`%252e`, `%252f`, `%255c`), which some upstreams
    /// resolve after capgate has matched the path.
    Ambiguous,
}

impl PathError {
    /// A short explanation for error bodies. Never includes the input.
    pub fn explain(self) -> &'static str {
        match self {
            PathError::NotOriginForm => "the request target must be an origin-form path",
            PathError::EmptySegment => "the path contains an empty segment",
            PathError::EncodedSeparator => "the path contains an encoded '/', '\\' or NUL",
            PathError::BadByte => "the path contains a byte that is not allowed",
            PathError::BadPercent => "the path contains a malformed percent-encoding",
            PathError::AboveRoot => "the path climbs above the root",
            PathError::Ambiguous => "the path contains a parameterised dot segment or a double encoding",
        }
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

fn hex_val(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Normalise an origin-form path (without its query). Returns the normalised
/// path, which always starts with `/`. A trailing `/` is kept.
pub fn normalize_path(raw: &str) -> Result<String, PathError> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&b'/') {
        return Err(PathError::NotOriginForm);
    }
    if is_ambiguous(bytes) {
        return Err(PathError::Ambiguous);
    }
    // Fast path: already normal (the common case) — no '%', no dot segments, no '//'.
    if is_plain(bytes)? {
        return Ok(raw.to_owned());
    }
    // Decode unreserved percent-encodings segment by segment, then resolve dots.
    let mut segments: Vec<String> = Vec::with_capacity(8);
    let body = &raw[1..];
    let trailing_slash = body.ends_with('/') || body.is_empty();
    let mut parts: Vec<&str> = body.split('/').collect();
    if trailing_slash {
        parts.pop();
    }
    for part in parts {
        let seg = decode_segment(part)?;
        match seg.as_str() {
            "" => return Err(PathError::EmptySegment),
            "." => {}
            ".." => {
                if segments.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
            }
            _ => segments.push(seg),
        }
    }
    let mut out = String::with_capacity(raw.len());
    for seg in &segments {
        out.push('/');
        out.push_str(seg);
    }
    // A trailing dot segment names a directory, like a trailing slash.
    let ends_with_dot = raw.ends_with("/.") || raw.ends_with("/..");
    if out.is_empty() || trailing_slash || ends_with_dot {
        out.push('/');
    }
    Ok(out)
}

/// `..;`/`.;` segments and `%25` followed by an encoded dot or separator.
fn is_ambiguous(bytes: &[u8]) -> bool {
    for seg in bytes.split(|b| *b == b'/') {
        let head = seg.split(|b| *b == b';').next().unwrap_or(seg);
        if seg.contains(&b';') && (head.is_empty() || decode_dots(head)) {
            return true;
        }
    }
    bytes.windows(5).any(|w| {
        w[0] == b'%'
            && w[1] == b'2'
            && w[2] == b'5'
            && matches!((w[3], w[4].to_ascii_lowercase()), (b'2', b'e') | (b'2', b'f') | (b'5', b'c'))
    })
}

/// True when a segment is `.` or `..`, possibly percent-encoded.
fn decode_dots(seg: &[u8]) -> bool {
    let s = String::from_utf8_lossy(seg).to_ascii_lowercase().replace("%2e", ".");
    s == "." || s == ".."
}

/// Validate bytes; `Ok(true)` when the path needs no rewriting at all.
fn is_plain(bytes: &[u8]) -> Result<bool, PathError> {
    let mut plain = true;
    let mut prev_slash = false;
    let mut seg_start = 0usize;
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'/' => {
                if prev_slash {
                    return Err(PathError::EmptySegment);
                }
                let seg = &bytes[seg_start..i];
                if seg == b"." || seg == b".." {
                    plain = false;
                }
                prev_slash = true;
                seg_start = i + 1;
                continue;
            }
            b'%' => plain = false,
            b'\\' => return Err(PathError::BadByte),
            0x21..=0x7e => {}
            _ => return Err(PathError::BadByte),
        }
        prev_slash = false;
    }
    let seg = &bytes[seg_start..];
    if seg == b"." || seg == b".." {
        plain = false;
    }
    Ok(plain)
}

fn decode_segment(part: &str) -> Result<String, PathError> {
    let b = part.as_bytes();
    let mut out = String::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let (h, l) = match (b.get(i + 1).copied().and_then(hex_val), b.get(i + 2).copied().and_then(hex_val)) {
                (Some(h), Some(l)) => (h, l),
                _ => return Err(PathError::BadPercent),
            };
            let v = h << 4 | l;
            match v {
                b'/' | b'\\' | 0 => return Err(PathError::EncodedSeparator),
                v if is_unreserved(v) => out.push(v as char),
                v => {
                    const HEX: &[u8; 16] = b"0123456789ABCDEF";
                    out.push('%');
                    out.push(HEX[(v >> 4) as usize] as char);
                    out.push(HEX[(v & 15) as usize] as char);
                }
            }
            i += 3;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    Ok(out)
}

/// True when `path` equals `base` or is a path-segment descendant of it.
/// Both must be normalised. A trailing `/` on either side is ignored, so
/// `/repos/acme/app` covers `/repos/acme/app/issues` but never `/repos/acme/app2`.
pub fn path_covers(base: &str, path: &str) -> bool {
    let base = base.trim_end_matches('/');
    let path_t = path.trim_end_matches('/');
    if base.is_empty() {
        return true;
    }
    match path_t.strip_prefix(base) {
        Some("") => true,
        Some(rest) => rest.starts_with('/'),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_paths_pass_through() {
        for p in ["/", "/a", "/a/b/", "/repos/acme/app/issues/1", "/@scope/pkg", "/a.b/c..d/.e"] {
            assert_eq!(normalize_path(p).as_deref(), Ok(p), "{p}");
        }
    }

    #[test]
    fn dot_segments_resolve() {
        assert_eq!(normalize_path("/a/./b").as_deref(), Ok("/a/b"));
        assert_eq!(normalize_path("/a/../b").as_deref(), Ok("/b"));
        assert_eq!(normalize_path("/a/b/..").as_deref(), Ok("/a/"));
        assert_eq!(normalize_path("/a/%2e%2E/b").as_deref(), Ok("/b"));
        assert_eq!(normalize_path("/github/../gitlab/x").as_deref(), Ok("/gitlab/x"));
        assert_eq!(normalize_path("/.."), Err(PathError::AboveRoot));
        assert_eq!(normalize_path("/a/../../b"), Err(PathError::AboveRoot));
    }

    #[test]
    fn encodings_are_canonical() {
        assert_eq!(normalize_path("/a%41%7e").as_deref(), Ok("/aA~"));
        assert_eq!(normalize_path("/a%3a%20b").as_deref(), Ok("/a%3A%20b"));
        assert_eq!(normalize_path("/a%2Fb"), Err(PathError::EncodedSeparator));
        assert_eq!(normalize_path("/a%2fb"), Err(PathError::EncodedSeparator));
        assert_eq!(normalize_path("/a%5cb"), Err(PathError::EncodedSeparator));
        assert_eq!(normalize_path("/a%00"), Err(PathError::EncodedSeparator));
        assert_eq!(normalize_path("/a%zz"), Err(PathError::BadPercent));
        assert_eq!(normalize_path("/a%4"), Err(PathError::BadPercent));
    }

    #[test]
    fn authority_tricks_are_refused() {
        assert_eq!(normalize_path("//evil.example/x"), Err(PathError::EmptySegment));
        assert_eq!(normalize_path("/a//b"), Err(PathError::EmptySegment));
        assert_eq!(normalize_path("http://evil.example/x"), Err(PathError::NotOriginForm));
        assert_eq!(normalize_path("@evil.example"), Err(PathError::NotOriginForm));
        assert_eq!(normalize_path("*"), Err(PathError::NotOriginForm));
        assert_eq!(normalize_path(""), Err(PathError::NotOriginForm));
        assert_eq!(normalize_path("/a\\b"), Err(PathError::BadByte));
        assert_eq!(normalize_path("/a b"), Err(PathError::BadByte));
        assert_eq!(normalize_path("/a\u{e9}"), Err(PathError::BadByte));
        assert_eq!(normalize_path("/a\0"), Err(PathError::BadByte));
    }

    #[test]
    fn ambiguous_forms_are_refused() {
        assert_eq!(normalize_path("/a/..;/b"), Err(PathError::Ambiguous));
        assert_eq!(normalize_path("/a/..;x=1/b"), Err(PathError::Ambiguous));
        assert_eq!(normalize_path("/a/.;/b"), Err(PathError::Ambiguous));
        assert_eq!(normalize_path("/a/%2e%2e;/b"), Err(PathError::Ambiguous));
        assert_eq!(normalize_path("/a/;/b"), Err(PathError::Ambiguous));
        assert_eq!(normalize_path("/a/%252e%252e/b"), Err(PathError::Ambiguous));
        assert_eq!(normalize_path("/a/%252F"), Err(PathError::Ambiguous));
        assert_eq!(normalize_path("/a/%255c"), Err(PathError::Ambiguous));
        assert_eq!(normalize_path("/a;v=1/b").as_deref(), Ok("/a;v=1/b"), "matrix params on names are fine");
        assert_eq!(normalize_path("/100%25").as_deref(), Ok("/100%25"));
    }

    #[test]
    fn segment_containment() {
        assert!(path_covers("/repos/acme/app", "/repos/acme/app"));
        assert!(path_covers("/repos/acme/app", "/repos/acme/app/"));
        assert!(path_covers("/repos/acme/app/", "/repos/acme/app/issues/1"));
        assert!(!path_covers("/repos/acme/app", "/repos/acme/app2"));
        assert!(!path_covers("/repos/acme/app", "/repos/acme"));
        assert!(path_covers("/", "/anything"));
        assert!(path_covers("", "/anything"));
    }

    proptest::proptest! {
        /// Normalisation is idempotent, and its output has no dot segments,
        /// empty segments or encoded separators, whatever the input.
        #[test]
        fn normalised_paths_are_fixed_points(segs in proptest::collection::vec("(\\.|\\.\\.|%2[eEfF]|%5[cC]|%41|[a-z]{1,3}|)", 0..8)) {
            let raw = format!("/{}", segs.join("/"));
            if let Ok(p) = normalize_path(&raw) {
                proptest::prop_assert_eq!(normalize_path(&p), Ok(p.clone()));
                proptest::prop_assert!(p.starts_with('/'));
                for seg in p.split('/').skip(1) {
                    proptest::prop_assert!(seg != "." && seg != "..");
                }
                proptest::prop_assert!(!p.contains("//"));
                let lower = p.to_ascii_lowercase();
                proptest::prop_assert!(!lower.contains("%2f") && !lower.contains("%5c") && !lower.contains("%2e"));
            }
        }
    }
}
