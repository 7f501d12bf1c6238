#!/usr/bin/env bash
# The one test command: set up what is missing, then run every test of the
# workspace (unit tests of capgate-filters and capgate, and the end-to-end
# tests in tests/e2e that start the real binary against a loopback upstream).
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/setup.sh
cargo test --workspace --locked "$@"
