//! Which response bodies are text the sanitizer reads.

/// How a body is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    /// Sanitized.
    Text,
    /// Not text: follows the configured binary policy.
    Binary,
}

/// Classify a `Content-Type` value. A missing type is treated as text, so an
/// unlabelled body is never passed unsanitized.
pub fn classify(content_type: Option<&str>) -> BodyKind {
    let Some(ct) = content_type else {
        return BodyKind::Text;
    };
    let essence = lowercase(ct.split(';').next().unwrap_or("").trim());
    let (ty, sub) = essence.split_once('/').unwrap_or((&essence, ""));
    let text = ty == "text"
        || sub == "json"
        || sub.ends_with("+json")
        || sub == "x-ndjson"
        || sub == "ndjson"
        || sub == "jsonl"
        || sub == "xml"
        || sub.ends_with("+xml")
        || sub == "javascript"
        || sub == "x-javascript"
        || sub == "ecmascript"
        || sub == "x-www-form-urlencoded"
        || sub == "graphql-response+json"
        || essence.is_empty();
    if text {
        BodyKind::Text
    } else {
        BodyKind::Binary
    }
}

/// `s` in ASCII lower case, copied only when it has an upper-case letter
/// (media types and codings almost never do; this runs on every response).
pub(crate) fn lowercase(s: &str) -> std::borrow::Cow<'_, str> {
    if s.bytes().any(|b| b.is_ascii_uppercase()) {
        std::borrow::Cow::Owned(s.to_ascii_lowercase())
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classification() {
        for t in [
            "application/json",
            "application/json; charset=utf-8",
            "application/vnd.github+json",
            "text/plain",
            "text/event-stream",
            "application/x-ndjson",
            "application/xml",
            "application/atom+xml",
            "application/javascript",
            "application/x-www-form-urlencoded",
            "TEXT/HTML",
        ] {
            assert_eq!(classify(Some(t)), BodyKind::Text, "{t}");
        }
        assert_eq!(classify(None), BodyKind::Text);
        for t in ["image/png", "application/octet-stream", "application/pdf", "audio/mpeg", "application/zip"] {
            assert_eq!(classify(Some(t)), BodyKind::Binary, "{t}");
        }
    }
}
