#!/usr/bin/env bash
# Installs what `make deb` and tests/e2e/package.rs need to build .deb packages, idempotently:
# dpkg-dev (dpkg-shlibdeps resolves the `$auto` dependencies) and cargo-deb, pinned to a
# version whose rust-version (1.85) matches the workspace's.
set -euo pipefail

CARGO_DEB_VERSION=3.8.0

if ! command -v dpkg-shlibdeps >/dev/null; then
  echo "installing: dpkg-dev"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends dpkg-dev
fi

CARGO="${CARGO:-cargo}"
if ! "$CARGO" deb --version >/dev/null 2>&1; then
  echo "installing: cargo-deb $CARGO_DEB_VERSION"
  # Its own target directory, not the caller's CARGO_TARGET_DIR (cargo install uses a
  # temporary one unless told otherwise).
  env -u CARGO_TARGET_DIR "$CARGO" install cargo-deb --version "$CARGO_DEB_VERSION" --locked
fi
