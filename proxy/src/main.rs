//! The `capgate` binary. See `capgate --help`.

fn main() {
    std::process::exit(capgate::cli::run());
}
