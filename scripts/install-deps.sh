#!/usr/bin/env bash
# Installs the Debian 12 packages daihuo needs, idempotently (only what is missing).
#   scripts/install-deps.sh build   # to build: pkg-config, clang, FFmpeg 5.1 dev libraries,
#                                   # OpenSSL's (the Kafka sink's TLS and SASL)
#   scripts/install-deps.sh run     # to build and try it: the above plus the ffmpeg CLI to push
#   scripts/install-deps.sh test    # to build and test: the above plus srt-tools, curl, openssl
#                                   # and chromium (the browser tests)
#   scripts/install-deps.sh bench   # to benchmark: the above plus nginx-light (the edge_load peer)
#                                   # and redis-server (the events peer)
set -euo pipefail

build_pkgs=(pkg-config clang libavcodec-dev libavformat-dev libavutil-dev libswscale-dev libavfilter-dev libssl-dev)
test_pkgs=(ffmpeg srt-tools curl openssl systemd chromium)
bench_pkgs=(nginx-light redis-server)

case "${1:-build}" in
  build) want=("${build_pkgs[@]}") ;;
  run) want=("${build_pkgs[@]}" ffmpeg) ;;
  test) want=("${build_pkgs[@]}" "${test_pkgs[@]}") ;;
  bench) want=("${build_pkgs[@]}" "${test_pkgs[@]}" "${bench_pkgs[@]}") ;;
  *) echo "usage: $0 build|run|test|bench" >&2; exit 2 ;;
esac

missing=()
for p in "${want[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing: ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
