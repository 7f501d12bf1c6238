//! The `capgate` binary. See `capgate --help`.

/// mimalloc instead of glibc malloc: the request path allocates small,
/// short-lived buffers on several threads (measured in the README).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(capgate::cli::run());
}
