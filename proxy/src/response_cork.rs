//! One segment for a small sanitized response: `TCP_CORK` on the agent's
//! socket while pingora writes it.
//!
//! A sanitized body may change length, so capgate sends it chunked, and
//! pingora flushes the head, every chunk and the last chunk separately. A
//! small JSON reply that the upstream sent in one segment would leave in
//! three, each a `sendto` that runs the loopback or NIC transmit path and
//! wakes the agent. pingora writes the head before any body byte is seen, so
//! capgate cannot restore `Content-Length`; it can ask the kernel to hold the
//! writes and send them together.
//!
//! When it applies: the body is sanitized and chunked (HTTP/1.1), and the
//! upstream declared a `Content-Length`, so the body has a known size and is
//! not a stream. Server-sent events and other chunked upstream bodies are never
//! corked.
//!
//! When it ends, whichever comes first:
//! - the body arrives in more than one part (a body chunk that is not the last
//!   one): the cork is cleared before that chunk is written, so a body that
//!   trickles in is forwarded as it comes;
//! - the response has been written: `logging` clears it first thing, which
//!   sends everything queued at once.
//!
//! While corked the kernel still sends every full segment at once, and never
//! holds a partial one for longer than 200 ms. Only the time at which the agent
//! sees the head of a slow upstream's response can move, never the time it has
//! the whole response. Linux only; elsewhere nothing is corked.

use pingora::proxy::Session;

/// A corked downstream socket. Clear it with [`Cork::release`] while the
/// session is alive (the descriptor belongs to the session).
#[derive(Debug)]
pub struct Cork {
    fd: i32,
}

impl Cork {
    /// Cork the agent's connection of `session`. `None` when it is not a
    /// plain HTTP/1.x connection over a socket or the option cannot be set.
    pub fn set(session: &Session) -> Option<Cork> {
        // The listener is TCP; an HTTP/1.x session's stream id is its socket's
        // descriptor. 0–2 would be the standard streams, never a connection.
        let fd = session.as_downstream().stream().map(|s| pingora::protocols::UniqueID::id(&**s))?;
        (fd > 2 && set_cork(fd, true)).then_some(Cork { fd })
    }

    /// Clear the cork: the kernel sends what is queued now.
    pub fn release(self) {
        set_cork(self.fd, false);
    }
}

#[cfg(target_os = "linux")]
fn set_cork(fd: i32, on: bool) -> bool {
    let value: libc::c_int = on.into();
    // SAFETY: `fd` is the socket of a live downstream session (the caller holds
    // the session for the duration of the call); setsockopt reads exactly
    // `size_of::<c_int>()` bytes from `value`, which outlives the call. A
    // descriptor that is not a TCP socket makes it fail (ENOTSOCK,
    // EOPNOTSUPP) and nothing changes.
    let rc = unsafe {
        libc::setsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_CORK,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    rc == 0
}

#[cfg(not(target_os = "linux"))]
fn set_cork(_fd: i32, _on: bool) -> bool {
    false
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::set_cork;
    use std::os::fd::AsRawFd;

    fn corked(fd: i32) -> bool {
        let mut v: libc::c_int = -1;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: reads at most `len` bytes into `v`, a live stack value.
        let rc = unsafe { libc::getsockopt(fd, libc::IPPROTO_TCP, libc::TCP_CORK, (&mut v as *mut libc::c_int).cast(), &mut len) };
        assert_eq!(rc, 0, "getsockopt");
        v != 0
    }

    #[test]
    fn sets_and_clears_the_option_on_a_tcp_socket() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let client = std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let fd = client.as_raw_fd();
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
        let (a, _b) = std::os::unix::net::UnixStream::pair().expect("pair");
        assert!(!set_cork(a.as_raw_fd(), true));
    }
}
