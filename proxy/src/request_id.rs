//! Request ids: 128 bits, unique per process and across processes, cheap
//! (a random per-process prefix plus an atomic counter; no syscall per request).

use rand::RngCore;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::OnceLock;

static PREFIX: OnceLock<u64> = OnceLock::new();
static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A new request id: 32 lower-case hex characters.
pub fn next() -> String {
    let prefix = *PREFIX.get_or_init(|| rand::rngs::OsRng.next_u64());
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{prefix:016x}{n:016x}")
}

#[cfg(test)]
mod tests {
    #[test]
    fn unique_and_fixed_width() {
        let a = super::next();
        let b = super::next();
        assert_ne!(a, b);
        assert_eq!(a.len(), 32);
        assert!(a.bytes().all(|c| c.is_ascii_hexdigit()));
    }
}
