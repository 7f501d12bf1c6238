//! How a sanitized reply is framed on the wire: with its exact
//! `Content-Length` when capgate has sanitized the whole body before pingora
//! writes the head, chunked otherwise.
//!
//! A sanitized body may change length, so `response_filter` drops the
//! upstream's `Content-Length` and, on HTTP/1.1, asks for chunked framing.
//! pingora 0.9.1 flushes a chunked reply's head, every chunk and the last
//! chunk separately: three `sendto` where the upstream sent one.
//!
//! But pingora runs the body filters of every response task it has at hand
//! (the head, and the body parts read with it) before it writes any of them,
//! and runs its downstream modules' head filter just before the head is
//! written. So when the body's end came with the head, as it does for most
//! small JSON replies, capgate has the whole sanitized body by the time the
//! head leaves, and knows its length. [`ReplyFraming`] is that downstream
//! module: it then replaces the chunked framing by `Content-Length`, and
//! pingora writes head and body with one `sendto`, as the bare passthrough
//! does. On HTTP/2 and HTTP/1.0 the agent gets the length too.
//!
//! Otherwise (the body is still streaming, or it is a stream such as
//! server-sent events) the reply stays chunked, and when the head leaves
//! alone for a body of declared size, the agent's socket is corked
//! ([`crate::response_cork`]) so head and body still leave together.
//!
//! The gateway talks to the module through the session:
//! - `response_filter` opens it for a sanitized body ([`ReplyFraming::open`]);
//! - `response_body_filter` reports each sanitized part ([`ReplyFraming::sanitized`]);
//! - a refusal written by capgate closes it first ([`ReplyFraming::close`]),
//!   so the refusal's own head is never touched;
//! - `response_body_filter` and `logging` take the cork back ([`ReplyFraming::take_cork`]).

use crate::response_cork::{Cork, CorkCandidate};
use async_trait::async_trait;
use pingora::http::ResponseHeader;
use pingora::modules::http::{HttpModule, HttpModuleBuilder, Module};
use pingora::prelude::*;
use pingora::proxy::Session;
use std::any::Any;

/// The per-request module: what capgate has sanitized of the body so far,
/// until the head is written.
#[derive(Default)]
pub struct ReplyFraming {
    state: State,
    cork: Option<Cork>,
}

#[derive(Default)]
enum State {
    /// Not a sanitized reply, or its head is written: nothing to do.
    #[default]
    Idle,
    /// A sanitized reply whose head is not written yet.
    Open {
        /// Sanitized bytes handed to pingora so far.
        sent: usize,
        /// Body parts seen so far.
        parts: u32,
        /// The last part has been sanitized.
        whole: bool,
        /// Where to cork the head if it leaves alone (HTTP/1.1, declared length).
        cork: Option<CorkCandidate>,
    },
}

impl ReplyFraming {
    /// The module of this session, when the gateway registered it.
    pub fn of(session: &mut Session) -> Option<&mut ReplyFraming> {
        session.downstream_modules_ctx.get_mut::<ReplyFraming>()
    }

    /// A sanitized body follows. `cork`: where to cork the head if it has
    /// to leave before the body's end.
    pub fn open(&mut self, cork: Option<CorkCandidate>) {
        self.state = State::Open { sent: 0, parts: 0, whole: false, cork };
    }

    /// Capgate writes a head of its own (a refusal): leave it alone.
    pub fn close(&mut self) {
        self.state = State::Idle;
    }

    /// One body part has been sanitized into `len` bytes; `end`: it was the last.
    pub fn sanitized(&mut self, len: usize, end: bool) {
        if let State::Open { sent, parts, whole, .. } = &mut self.state {
            *sent += len;
            *parts += 1;
            *whole |= end;
        }
    }

    /// The cork set when the head left alone, if it is still set.
    pub fn take_cork(&mut self) -> Option<Cork> {
        self.cork.take()
    }

    /// Frame the head about to be written. `end`: the head has no body.
    /// An informational head (1xx) is left alone: the framing is the final
    /// head's, and a 1xx carries no length.
    fn frame(&mut self, resp: &mut ResponseHeader, end: bool) -> Result<()> {
        if resp.status.is_informational() {
            return Ok(());
        }
        let State::Open { sent, parts, whole, cork } = std::mem::take(&mut self.state) else {
            return Ok(());
        };
        if whole || end {
            resp.remove_header(&http::header::TRANSFER_ENCODING);
            resp.insert_header(http::header::CONTENT_LENGTH, sent)?;
        } else if parts == 0 {
            // The head leaves before any body: hold it for the body.
            self.cork = cork.and_then(CorkCandidate::engage);
        }
        Ok(())
    }
}

#[async_trait]
impl HttpModule for ReplyFraming {
    async fn response_header_filter(&mut self, resp: &mut ResponseHeader, end_of_stream: bool) -> Result<()> {
        self.frame(resp, end_of_stream)
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn as_any_mut(&mut self) -> &mut dyn Any {
        self
    }
}

/// Registers [`ReplyFraming`] with pingora (`init_downstream_modules`).
pub struct ReplyFramingBuilder;

impl HttpModuleBuilder for ReplyFramingBuilder {
    fn init(&self) -> Module {
        Box::<ReplyFraming>::default()
    }
}

#[cfg(test)]
mod tests {
    use super::ReplyFraming;
    use pingora::http::ResponseHeader;

    fn chunked_head() -> ResponseHeader {
        let mut h = ResponseHeader::build(200, None).expect("head");
        h.insert_header("transfer-encoding", "chunked").expect("header");
        h
    }

    #[test]
    fn a_whole_body_gets_its_sanitized_length() {
        let mut f = ReplyFraming::default();
        f.open(None);
        f.sanitized(10, false);
        f.sanitized(7, true);
        let mut h = chunked_head();
        f.frame(&mut h, false).expect("frame");
        assert_eq!(h.headers.get("content-length").map(|v| v.as_bytes()), Some(&b"17"[..]));
        assert!(h.headers.get("transfer-encoding").is_none());
    }

    #[test]
    fn a_body_still_streaming_stays_chunked() {
        let mut f = ReplyFraming::default();
        f.open(None);
        f.sanitized(10, false);
        let mut h = chunked_head();
        f.frame(&mut h, false).expect("frame");
        assert!(h.headers.get("content-length").is_none());
        assert_eq!(h.headers.get("transfer-encoding").map(|v| v.as_bytes()), Some(&b"chunked"[..]));
    }

    #[test]
    fn a_head_without_a_body_gets_length_zero() {
        let mut f = ReplyFraming::default();
        f.open(None);
        let mut h = chunked_head();
        f.frame(&mut h, true).expect("frame");
        assert_eq!(h.headers.get("content-length").map(|v| v.as_bytes()), Some(&b"0"[..]));
    }

    #[test]
    fn an_informational_head_is_left_alone_and_the_final_head_framed() {
        let mut f = ReplyFraming::default();
        f.open(None);
        f.sanitized(9, true);
        let mut early = ResponseHeader::build(103, None).expect("head");
        f.frame(&mut early, false).expect("frame");
        assert!(early.headers.get("content-length").is_none());
        let mut h = chunked_head();
        f.frame(&mut h, false).expect("frame");
        assert_eq!(h.headers.get("content-length").map(|v| v.as_bytes()), Some(&b"9"[..]));
    }

    #[test]
    fn only_the_opened_head_is_framed_and_only_once() {
        // Closed (capgate writes a refusal of its own): untouched.
        let mut f = ReplyFraming::default();
        f.open(None);
        f.sanitized(5, true);
        f.close();
        let mut h = chunked_head();
        f.frame(&mut h, false).expect("frame");
        assert!(h.headers.get("content-length").is_none());
        // Never opened: untouched.
        let mut f = ReplyFraming::default();
        f.sanitized(5, true);
        f.frame(&mut h, false).expect("frame");
        assert!(h.headers.get("content-length").is_none());
        // A second head after the framed one: untouched.
        let mut f = ReplyFraming::default();
        f.open(None);
        f.sanitized(5, true);
        let mut first = chunked_head();
        f.frame(&mut first, false).expect("frame");
        let mut second = chunked_head();
        f.frame(&mut second, false).expect("frame");
        assert!(second.headers.get("content-length").is_none());
    }
}
