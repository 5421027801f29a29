#!/usr/bin/env bash
# Installs the Kafka-protocol broker the Kafka sink's test runs against, idempotently:
# Tansu 0.6.0 from crates.io (a debug build without debug info: about 5 minutes on 2 cores),
# kept when already installed.
set -euo pipefail

TANSU_VERSION=0.6.0
CARGO="${CARGO:-cargo}"

if command -v tansu >/dev/null && tansu --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
  exit 0
fi
if [ -x "$HOME/.cargo/bin/tansu" ] && "$HOME/.cargo/bin/tansu" --version 2>/dev/null | grep -q "$TANSU_VERSION"; then
  exit 0
fi
echo "installing: tansu $TANSU_VERSION (Kafka-protocol broker for tests/e2e/kafka.rs)"
env -u CARGO_TARGET_DIR CARGO_PROFILE_DEV_DEBUG=0 "$CARGO" install tansu \
  --version "$TANSU_VERSION" --locked --no-default-features --features dynostore --debug
