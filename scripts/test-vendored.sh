#!/usr/bin/env bash
# Runs the unit tests of the vendored srt-protocol (its own workspace, outside ours; see
# vendor/README.md; its own Cargo.lock pins its test dependencies), in the workspace's target
# directory.
set -euo pipefail
cd "$(dirname "$0")/.."
CARGO="${CARGO:-cargo}"
target="${CARGO_TARGET_DIR:-$PWD/target}/vendored"
"$CARGO" test --locked --manifest-path vendor/srt-protocol/Cargo.toml --target-dir "$target" --lib
