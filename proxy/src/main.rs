//! The `capgate` binary. See `capgate --help`.

/// mimalloc instead of glibc malloc: the request path allocates small,
/// short-lived buffers on several threads (measured in the README: +24 %
/// throughput). It is built with `no_thp`: asking for transparent huge pages
/// on its arena cost 13 MiB of RSS at start and ~18 MiB under load, for no
/// throughput. On a host with THP set to `always`, also set
/// `MIMALLOC_ALLOW_THP=0`.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    std::process::exit(capgate::cli::run());
}
