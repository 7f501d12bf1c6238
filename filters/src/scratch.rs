//! A byte buffer each thread keeps for the request path's temporary work (a
//! decision-cache key, a sanitized body chunk), so that work allocates
//! nothing once the buffer has grown to its usual size.
//!
//! [`with_scratch`] takes the thread's buffer out for the length of one call
//! and puts it back afterwards, so nothing stays borrowed while the caller's
//! closure runs: a nested call (or a call while the thread is being torn
//! down) gets a fresh buffer instead. The buffer is handed out empty and
//! emptied again after use; one grown beyond [`KEPT_BYTES`] is dropped, so a
//! single large request does not pin its memory on the thread.

use std::cell::Cell;

/// The largest buffer a thread keeps between calls.
pub const KEPT_BYTES: usize = 128 * 1024;

thread_local! {
    static SCRATCH: Cell<Vec<u8>> = const { Cell::new(Vec::new()) };
}

/// Run `f` with this thread's scratch buffer, empty.
pub fn with_scratch<R>(f: impl FnOnce(&mut Vec<u8>) -> R) -> R {
    let mut buf = SCRATCH.try_with(Cell::take).unwrap_or_default();
    buf.clear();
    let r = f(&mut buf);
    buf.clear();
    if buf.capacity() <= KEPT_BYTES {
        // Fails only while the thread is being torn down; the buffer is then dropped.
        let _ = SCRATCH.try_with(|cell| cell.set(buf));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_buffer_is_reused_empty_and_nesting_gets_its_own() {
        let first = with_scratch(|b| {
            b.extend_from_slice(b"abc");
            b.as_ptr() as usize
        });
        let (again, nested) = with_scratch(|b| {
            assert!(b.is_empty(), "handed out empty");
            b.extend_from_slice(b"x");
            let outer = b.as_ptr() as usize;
            let nested = with_scratch(|n| {
                assert!(n.is_empty());
                n.extend_from_slice(b"y");
                n.as_ptr() as usize
            });
            assert_eq!(b.as_slice(), b"x", "the nested call did not touch the outer buffer");
            (outer, nested)
        });
        assert_eq!(again, first, "the same allocation is reused");
        assert_ne!(nested, again);
    }

    #[test]
    fn a_large_buffer_is_not_kept() {
        with_scratch(|b| b.reserve(KEPT_BYTES + 1));
        with_scratch(|b| assert!(b.capacity() <= KEPT_BYTES));
    }
}
