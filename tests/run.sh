#!/usr/bin/env bash
# The one test command: set up what is missing, check the formatting, then
# run every test of the workspace (unit tests of capgate-filters and capgate,
# and the end-to-end tests in tests/e2e that start the real binary against a
# loopback upstream), and the load harness's own parser tests.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tests/setup.sh
cargo fmt --all -- --check
cargo test --workspace --locked "$@"
PYTHONDONTWRITEBYTECODE=1 python3 -m unittest discover -s benches/load -p 'test_*.py'
