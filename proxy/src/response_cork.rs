//! `TCP_CORK` on the agent's socket while pingora writes a sanitized reply
//! whose head leaves before its body.
//!
//! A sanitized body may change length. When capgate has the whole body
//! before the head is written, [`crate::response_framing`] gives the reply
//! its exact `Content-Length` and pingora writes it in one `sendto`.
//! Otherwise the reply is chunked, and pingora flushes the head, every chunk
//! and the last chunk separately: a small JSON reply that the upstream sent
//! in one segment, but whose head reached capgate alone, would leave in
//! three, each a `sendto` that runs the loopback or NIC transmit path and
//! wakes the agent. capgate asks the kernel to hold the writes and send them
//! together.
//!
//! When it applies: the body is sanitized and chunked (HTTP/1.1), the
//! upstream declared a `Content-Length` (the body has a known size and is
//! not a stream), and the head is written before any body part has arrived.
//! Server-sent events and other chunked upstream bodies are never corked.
//! [`CorkCandidate`] is taken in `response_filter` without a system call;
//! [`CorkCandidate::engage`] corks when the head is about to leave alone.
//!
//! When it ends, whichever comes first:
//! - the body arrives in more than one part (a body chunk that is not the last
//!   one): the cork is cleared before that chunk is written, so a body that
//!   trickles in is forwarded as it comes;
//! - the response has been written: `logging` clears it first thing, which
//!   sends everything queued at once.
//!
//! The socket: pingora's `UniqueID` of an HTTP/1.x stream is its descriptor.
//! That is how pingora builds it, not a documented promise, so capgate
//! touches the descriptor only after checking that its peer is this
//! session's client address (one `getpeername`); otherwise nothing is corked.
//!
//! While corked the kernel still sends every full segment at once, and never
//! holds a partial one for longer than 200 ms. What can move is the time at
//! which the agent sees the head of a slow upstream's response, and, when
//! the agent is still sending its request body after the upstream has
//! answered (`logging` runs once both directions are done), the time it has
//! the rest of a small reply, by at most those 200 ms. Linux only; elsewhere
//! nothing is corked.

use pingora::proxy::Session;

/// A corked downstream socket, cleared with [`Cork::release`] on the same
/// session (the descriptor belongs to it).
#[derive(Debug)]
pub struct Cork {
    fd: i32,
}

/// The agent's socket of a session, to be corked later in the same
/// response, within the session's own write ([`CorkCandidate::engage`]).
#[derive(Debug)]
pub struct CorkCandidate {
    fd: i32,
    client: std::net::SocketAddr,
}

impl CorkCandidate {
    /// The candidate of `session`, with no system call. `None` when it is
    /// not an HTTP/1.x connection from an IP address.
    pub fn of(session: &Session) -> Option<CorkCandidate> {
        // pingora names an HTTP/1.x stream by its socket's descriptor (its
        // `UniqueID`). That is how it is built, not a promise, so the
        // descriptor is used only once its peer is this session's client.
        let fd = stream_id(session)?;
        let client = *session.as_downstream().client_addr()?.as_inet()?;
        (fd > 2).then_some(CorkCandidate { fd, client })
    }

    /// Cork the socket, if its peer is still the session's client. Called
    /// only while the session that gave the candidate writes its head (from
    /// that session's own [`crate::response_framing::ReplyFraming`]), so the
    /// descriptor is the session's, open, for the call.
    pub(crate) fn engage(self) -> Option<Cork> {
        (peer_of(self.fd) == Some(self.client) && set_cork(self.fd, true)).then_some(Cork { fd: self.fd })
    }
}

impl Cork {
    /// Clear the cork: the kernel sends what is queued now. `session` must
    /// be the one the cork was set on, still open; if its stream is no longer
    /// the corked descriptor, nothing is touched.
    pub fn release(self, session: &Session) {
        if stream_id(session) == Some(self.fd) {
            set_cork(self.fd, false);
        }
    }
}

/// The id pingora gives the session's HTTP/1.x stream (its descriptor).
fn stream_id(session: &Session) -> Option<i32> {
    session.as_downstream().stream().map(|s| pingora::protocols::UniqueID::id(&**s))
}

/// The socket behind `fd`, borrowed for one call. `fd` must be open for the
/// call: [`Cork::release`] passes only the descriptor of the session it is
/// given, checked against that session's stream; [`CorkCandidate::engage`]
/// runs inside the write of the session it was taken from.
#[cfg(target_os = "linux")]
fn with_socket<T>(fd: i32, f: impl FnOnce(socket2::SockRef<'_>) -> T) -> T {
    // SAFETY: `fd` (> 2, checked by the callers) belongs to a live downstream
    // session for the whole call, and the borrow does not outlive the call.
    // A descriptor that is not a TCP socket makes the socket calls fail
    // (ENOTSOCK, EOPNOTSUPP); nothing is closed or changed.
    let fd = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    f(socket2::SockRef::from(&fd))
}

#[cfg(target_os = "linux")]
fn peer_of(fd: i32) -> Option<std::net::SocketAddr> {
    with_socket(fd, |s| s.peer_addr().ok()?.as_socket())
}

#[cfg(target_os = "linux")]
fn set_cork(fd: i32, on: bool) -> bool {
    with_socket(fd, |s| s.set_tcp_cork(on).is_ok())
}

#[cfg(not(target_os = "linux"))]
fn peer_of(_fd: i32) -> Option<std::net::SocketAddr> {
    None
}

#[cfg(not(target_os = "linux"))]
fn set_cork(_fd: i32, _on: bool) -> bool {
    false
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::{peer_of, set_cork};
    use std::os::fd::AsRawFd;

    fn corked(fd: i32) -> bool {
        super::with_socket(fd, |s| s.tcp_cork().expect("getsockopt"))
    }

    #[test]
    fn sets_and_clears_the_option_on_a_tcp_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let fd = client.as_raw_fd();
        assert_eq!(peer_of(fd), Some(listener.local_addr().expect("addr")));
        assert!(!corked(fd));
        assert!(set_cork(fd, true));
        assert!(corked(fd));
        assert!(set_cork(fd, false));
        assert!(!corked(fd));
    }

    #[test]
    fn refuses_what_is_not_a_tcp_socket() {
        let file = std::fs::File::open("/proc/self/stat").expect("open");
        assert!(!set_cork(file.as_raw_fd(), true));
        assert_eq!(peer_of(file.as_raw_fd()), None);
        let (a, _b) = std::os::unix::net::UnixStream::pair().expect("pair");
        assert!(!set_cork(a.as_raw_fd(), true));
        assert_eq!(peer_of(a.as_raw_fd()), None);
    }
}
