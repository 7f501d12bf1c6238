//! The response side of the pipeline: decide how a proxied response body is
//! handled (`response_filter`), then transform it chunk by chunk
//! (`response_body_filter`).
//!
//! - Text bodies (see `capgate_filters::sanitize::content_type`) are decoded
//!   when compressed (gzip, deflate, br, zstd), sanitized as a stream, and
//!   sent unencoded, without `Content-Length` (chunked on HTTP/1.1, frames on h2).
//! - A text body in a coding capgate cannot decode is never forwarded: the
//!   response becomes `502 unsanitizable_encoding`.
//! - Other bodies follow `[sanitize] binary`: passed (counted and logged) or
//!   refused with `502 binary_blocked`.
//! - Header values are scanned with the same catalogue.
//! - A body that fails to decode ([`UNSANITIZABLE_BODY`]) is never forwarded:
//!   before the response's head has left, the agent gets `502
//!   unsanitizable_body`; after it, the response is cut off (no last chunk,
//!   or a reset HTTP/2 stream).
//! - A declared empty body (`Content-Length: 0`) is passed as it is: there
//!   is nothing in it to sanitize, decode or block.

use crate::config::BinaryPolicy;
use crate::refusal::Refusal;
use bytes::Bytes;
use capgate_filters::sanitize::content_type::{classify, BodyKind};
use capgate_filters::sanitize::decode::{Decoder, Encoding};
use capgate_filters::sanitize::{SanitizeCounts, SanitizeStream, Sanitizer};
use capgate_filters::scratch::with_scratch;
use http::header::{self, HeaderName, HeaderValue};
use pingora::http::ResponseHeader;
use pingora::prelude::*;
use pingora::ErrorType;
use std::sync::Arc;

/// The error code of a body that could not be decoded.
pub const UNSANITIZABLE_BODY: &str = "unsanitizable_body";

/// How the body of one response is handled.
pub enum BodyHandling {
    /// Not decided yet, or nothing to do (no body).
    None,
    /// Binary passed through unchanged.
    Pass,
    /// Sanitized as it streams.
    Sanitize { decoder: Option<Box<Decoder>>, stream: Box<SanitizeStream<Arc<Sanitizer>>> },
    /// The upstream body is dropped and this JSON body sent instead.
    Replace(Option<Bytes>),
}

/// The `handling` label of `capgate_response_bodies_total`.
pub fn handling_label(h: &BodyHandling, refused: Option<&'static str>) -> Option<&'static str> {
    match (h, refused) {
        (BodyHandling::Sanitize { .. }, Some(UNSANITIZABLE_BODY)) => Some("unsanitizable"),
        (BodyHandling::Sanitize { .. }, _) => Some("sanitized"),
        (BodyHandling::Pass, _) => Some("binary_pass"),
        (BodyHandling::Replace(_), Some("binary_blocked")) => Some("binary_blocked"),
        (BodyHandling::Replace(_), _) => Some("unsanitizable"),
        (BodyHandling::None, Some("unsanitizable_encoding")) => Some("unsanitizable"),
        (BodyHandling::None, _) => None,
    }
}

/// Keep only codings capgate decodes in the agent's `Accept-Encoding`.
pub fn limit_accept_encoding(req: &mut RequestHeader) -> Result<()> {
    let Some(v) = req.headers.get(header::ACCEPT_ENCODING) else {
        return Ok(());
    };
    let wanted: Vec<&str> = v
        .to_str()
        .unwrap_or("")
        .split(',')
        .filter_map(|item| {
            let coding = item.split(';').next().unwrap_or("").trim();
            let q_zero = item.split(';').skip(1).any(|p| p.trim().replace(' ', "") == "q=0");
            let known = Encoding::parse(Some(coding)).is_ok_and(|e| e != Encoding::Identity);
            (known && !q_zero).then_some(coding)
        })
        .collect();
    if wanted.is_empty() {
        req.remove_header(&header::ACCEPT_ENCODING);
    } else {
        let joined = wanted.join(", ");
        req.insert_header(header::ACCEPT_ENCODING, joined)?;
    }
    Ok(())
}

/// Scan every header value; replace those that held a secret. Returns the counts.
pub fn scrub_headers(resp: &mut ResponseHeader, s: &Sanitizer) -> Result<SanitizeCounts> {
    let mut total = SanitizeCounts::default();
    // The usual case, without allocating: nothing in any value would change.
    if resp.headers.values().all(|v| s.leaves_unchanged(v.as_bytes())) {
        return Ok(total);
    }
    let names: Vec<HeaderName> = resp.headers.keys().cloned().collect();
    for name in names {
        let values: Vec<HeaderValue> = resp.headers.get_all(&name).iter().cloned().collect();
        let mut changed = false;
        let mut clean: Vec<Vec<u8>> = Vec::with_capacity(values.len());
        for v in &values {
            let (out, c) = s.sanitize_all(v.as_bytes());
            if out != v.as_bytes() {
                changed = true;
            }
            merge(&mut total, &c);
            clean.push(out);
        }
        if changed {
            resp.remove_header(&name);
            for v in clean {
                let hv = HeaderValue::from_bytes(&v).unwrap_or_else(|_| HeaderValue::from_static("[REDACTED:unrepresentable]"));
                resp.append_header(name.clone(), hv)?;
            }
        }
    }
    Ok(total)
}

/// Add `c` into `total`.
pub fn merge(total: &mut SanitizeCounts, c: &SanitizeCounts) {
    for (kind, n) in &c.by_kind {
        match total.by_kind.iter_mut().find(|(k, _)| k == kind) {
            Some((_, m)) => *m += n,
            None => total.by_kind.push((kind, *n)),
        }
    }
    total.vault_echoes += c.vault_echoes;
    total.verified += c.verified;
    total.invisible_removed += c.invisible_removed;
    total.invalid_utf8_replaced += c.invalid_utf8_replaced;
}

/// Turn the response into a refusal whose body replaces the upstream's.
fn replace_with(resp: &mut ResponseHeader, refusal: &Refusal, request_id: &str) -> Result<BodyHandling> {
    let body = Bytes::from(refusal.body(request_id));
    resp.set_status(refusal.status)?;
    let names: Vec<HeaderName> = resp.headers.keys().cloned().collect();
    for n in names {
        resp.remove_header(&n);
    }
    resp.insert_header(header::CONTENT_TYPE, HeaderValue::from_static("application/json"))?;
    resp.insert_header(header::CONTENT_LENGTH, body.len().to_string())?;
    resp.insert_header(header::CACHE_CONTROL, HeaderValue::from_static("no-store"))?;
    Ok(BodyHandling::Replace(Some(body)))
}

/// Decide the handling from the response head and adjust the head.
/// Returns the handling and, when the response became a refusal, its code.
pub fn plan(
    resp: &mut ResponseHeader,
    method: &str,
    chunked_ok: bool,
    sanitizer: &Arc<Sanitizer>,
    binary: BinaryPolicy,
    request_id: &str,
) -> Result<(BodyHandling, Option<&'static str>)> {
    let status = resp.status.as_u16();
    // A declared empty body: nothing to sanitize, decode or block. (pingora
    // ends such a response with its head, so a refusal body could not be
    // sent either.)
    if resp.headers.get(header::CONTENT_LENGTH).is_some_and(|v| v.as_bytes() == b"0") {
        return Ok((BodyHandling::None, None));
    }
    let no_body = method == "HEAD" || status == 204 || status == 304 || (100..200).contains(&status);
    let kind = classify(resp.headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()));
    if kind == BodyKind::Binary {
        if binary == BinaryPolicy::Block && !no_body {
            let r = Refusal::new(502, "binary_blocked", "the upstream sent a non-text body and binary bodies are blocked");
            return Ok((replace_with(resp, &r, request_id)?, Some("binary_blocked")));
        }
        return Ok((if no_body { BodyHandling::None } else { BodyHandling::Pass }, None));
    }
    let encoding = match Encoding::parse(resp.headers.get(header::CONTENT_ENCODING).map(|v| v.to_str().unwrap_or("\u{0}"))) {
        Ok(e) => e,
        Err(_) => {
            let r = Refusal::new(502, "unsanitizable_encoding", "the upstream body uses a content encoding capgate cannot decode");
            return Ok((replace_with(resp, &r, request_id)?, Some("unsanitizable_encoding")));
        }
    };
    // The body is sent decoded and may change length.
    resp.remove_header(&header::CONTENT_ENCODING);
    resp.remove_header(&header::CONTENT_LENGTH);
    resp.remove_header("content-md5");
    if no_body {
        return Ok((BodyHandling::None, None));
    }
    // Without a length, HTTP/1.1 needs chunked framing to keep the
    // connection alive (HTTP/1.0 falls back to close-delimited; h2 frames).
    if chunked_ok {
        resp.insert_header(header::TRANSFER_ENCODING, HeaderValue::from_static("chunked"))?;
    }
    let decoder = Decoder::new(encoding).map_err(|_| Error::explain(ErrorType::InternalError, "decoder"))?.map(Box::new);
    Ok((BodyHandling::Sanitize { decoder, stream: Box::new(SanitizeStream::new(sanitizer.clone())) }, None))
}

/// What sanitizing one chunk gave.
enum Sanitized {
    /// Bytes equal to the chunk's: it goes on as it is.
    Unchanged,
    /// Nothing to send yet (held back, or all removed).
    Nothing,
    Changed(Bytes),
}

/// Transform one body chunk in place.
pub fn filter_chunk(handling: &mut BodyHandling, body: &mut Option<Bytes>, end: bool) -> Result<()> {
    match handling {
        BodyHandling::None | BodyHandling::Pass => Ok(()),
        BodyHandling::Replace(json) => {
            *body = if end { json.take() } else { None };
            Ok(())
        }
        BodyHandling::Sanitize { decoder, stream } => {
            let chunk: &[u8] = body.as_deref().unwrap_or(&[]);
            let fail = |_| Error::explain(ErrorType::Custom(UNSANITIZABLE_BODY), "the upstream body could not be decoded");
            // The output goes to the thread's scratch buffer; a chunk that
            // comes out as it went in is sent as it is, with no copy.
            let sanitized = with_scratch(|out| -> Result<Sanitized> {
                out.reserve(chunk.len() + 64);
                match decoder {
                    Some(d) => {
                        let mut decoded = Vec::with_capacity(chunk.len() * 4);
                        d.push(chunk, &mut decoded).map_err(fail)?;
                        if end {
                            d.finish(&mut decoded).map_err(fail)?;
                            stream.push_last(&decoded, out);
                        } else {
                            stream.push(&decoded, out);
                        }
                    }
                    None if end => stream.push_last(chunk, out),
                    None => stream.push(chunk, out),
                }
                Ok(if out.is_empty() {
                    Sanitized::Nothing
                } else if out.as_slice() == chunk {
                    Sanitized::Unchanged
                } else {
                    Sanitized::Changed(Bytes::copy_from_slice(out))
                })
            })?;
            match sanitized {
                Sanitized::Unchanged => {}
                Sanitized::Nothing => *body = None,
                Sanitized::Changed(b) => *body = Some(b),
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sanitizing() -> BodyHandling {
        let s = Arc::new(Sanitizer::new(["vault-echo-secret-value-42"]).expect("sanitizer"));
        BodyHandling::Sanitize { decoder: None, stream: Box::new(SanitizeStream::new(s)) }
    }

    #[test]
    fn a_clean_chunk_goes_on_as_it_is_and_a_dirty_one_is_replaced() {
        let clean = Bytes::from_static(b"{\"ok\":true,\"items\":[1,2,3]}");
        let mut body = Some(clean.clone());
        filter_chunk(&mut sanitizing(), &mut body, true).expect("filters");
        let out = body.expect("a body");
        assert_eq!(out, clean);
        assert_eq!(out.as_ptr(), clean.as_ptr(), "the unchanged chunk is not copied");

        let mut body = Some(Bytes::from_static(b"{\"echo\":\"vault-echo-secret-value-42\",\"zw\":\"a\xe2\x80\x8bb\"}"));
        filter_chunk(&mut sanitizing(), &mut body, true).expect("filters");
        let out = String::from_utf8(body.expect("a body").to_vec()).expect("utf-8");
        assert!(!out.contains("vault-echo-secret-value-42") && out.contains("[REDACTED"), "{out}");
        assert!(out.contains("\"ab\""), "the zero-width space is removed: {out}");

        // Nothing produced (an empty last chunk) sends nothing.
        let mut body = Some(Bytes::new());
        filter_chunk(&mut sanitizing(), &mut body, true).expect("filters");
        assert!(body.is_none());
    }

    #[test]
    fn chunks_held_back_and_released_keep_every_byte() {
        // A chunk ending inside a possible secret is held back (not equal to
        // what came in), and released with the next.
        let mut h = sanitizing();
        let mut first = Some(Bytes::from_static(b"{\"a\":\"vault-echo-sec"));
        filter_chunk(&mut h, &mut first, false).expect("filters");
        let mut last = Some(Bytes::from_static(b"ret-value-42 and more\"}"));
        filter_chunk(&mut h, &mut last, true).expect("filters");
        let mut all = first.map(|b| b.to_vec()).unwrap_or_default();
        all.extend_from_slice(&last.expect("the rest"));
        let all = String::from_utf8(all).expect("utf-8");
        assert!(all.starts_with("{\"a\":\"") && all.ends_with(" and more\"}"), "{all}");
        assert!(!all.contains("vault-echo-secret-value-42"), "{all}");
    }
}
