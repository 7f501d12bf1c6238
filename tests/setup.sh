#!/usr/bin/env bash
# Installs what building and testing capgate needs and a fresh machine may
# lack: cmake (pingora's zlib-ng build), rustfmt (the format check), and
# Node.js with the @ucans/ucans reference library for the interop test.
# Idempotent; safe to run every time.
set -euo pipefail
cd "$(dirname "$0")/.."

SUDO=""
if [ "$(id -u)" != 0 ] && command -v sudo >/dev/null 2>&1; then SUDO=sudo; fi
apt_install() {
  if command -v apt-get >/dev/null 2>&1; then
    $SUDO apt-get update -qq >/dev/null
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "$@" >/dev/null
  else
    echo "setup: please install: $*" >&2
    exit 1
  fi
}

command -v cmake >/dev/null 2>&1 || apt_install cmake
if ! cargo fmt --version >/dev/null 2>&1; then
  if command -v rustup >/dev/null 2>&1; then rustup component add rustfmt; else apt_install rustfmt; fi
fi
command -v node >/dev/null 2>&1 || apt_install nodejs npm
command -v python3 >/dev/null 2>&1 || apt_install python3
if [ -f tests/interop/package-lock.json ] && [ ! -d tests/interop/node_modules/@ucans/ucans ]; then
  (cd tests/interop && npm ci --no-audit --no-fund --loglevel=error)
fi
