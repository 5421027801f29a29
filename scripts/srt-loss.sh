#!/usr/bin/env bash
# SRT ingest on a lossy link, daihuo against libsrt, the same sender and the same loss:
#   scripts/srt-loss.sh RECEIVER LOSS_PCT LATENCY_MS [SECONDS] [EDGE_BINARY]
# RECEIVER is `daihuo` (a single-box daihuo-edge, EDGE_BINARY or target/release/daihuo-edge)
# or `libsrt` (Debian's srt-live-transmit). ffmpeg (libsrt) pushes SECONDS (default 20) of a
# 720p30 3 Mbit/s test stream, as it is, from network namespace daihuo-tx to daihuo-rx over a
# veth pair; nftables drops LOSS_PCT% of the UDP packets entering each namespace (netem is
# not available here). Prints the video frames that decode out of those sent and, for
# daihuo, its SRT counters for the stream. Needs root, iproute2, nftables, ffmpeg, curl.
set -euo pipefail
rx=$1 loss=$2 lat=$3 secs=${4:-20}
edge=${5:-$(cd "$(dirname "$0")/.." && pwd)/target/release/daihuo-edge}
work=$(mktemp -d /tmp/srt-loss.XXXXXX)
trap 'ip netns del daihuo-tx 2>/dev/null || true; ip netns del daihuo-rx 2>/dev/null || true; rm -rf "$work"' EXIT

ip netns add daihuo-tx
ip netns add daihuo-rx
ip link add daihuo-tx0 type veth peer name daihuo-rx0
ip link set daihuo-tx0 netns daihuo-tx
ip link set daihuo-rx0 netns daihuo-rx
ip -n daihuo-tx addr add 10.77.0.1/24 dev daihuo-tx0
ip -n daihuo-rx addr add 10.77.0.2/24 dev daihuo-rx0
for ns in daihuo-tx daihuo-rx; do
  ip -n $ns link set lo up
  ip -n $ns link set ${ns}0 up
  if [ "$loss" != 0 ]; then
    ip netns exec $ns nft add table inet lossy
    ip netns exec $ns nft add chain inet lossy input '{ type filter hook input priority 0; }'
    ip netns exec $ns nft add rule inet lossy input meta l4proto udp numgen random mod 100 '<' "$loss" drop
  fi
done

src=$work/src.ts
ffmpeg -hide_banner -loglevel error -f lavfi -i testsrc2=size=1280x720:rate=30 \
  -f lavfi -i sine=frequency=440:sample_rate=48000 -t "$secs" -c:v libx264 -preset veryfast \
  -g 60 -keyint_min 60 -sc_threshold 0 -b:v 3M -pix_fmt yuv420p -c:a aac -f mpegts "$src"
sent=$(ffprobe -v error -select_streams v:0 -count_packets -show_entries stream=nb_read_packets -of csv=p=0 "$src" | head -1)
frames() { ffmpeg -v quiet -i "$1" -map 0:v:0 -f null - -progress - 2>/dev/null | grep '^frame=' | tail -1 | cut -d= -f2; }
url="srt://10.77.0.2:9000?streamid=#!::r=live/demo,m=publish&latency=$((lat * 1000))"
rxns() { ip netns exec daihuo-rx "$@"; }

case $rx in
libsrt)
  rxns srt-live-transmit -q "srt://:9000?mode=listener&latency=$lat" file://con > "$work/out.ts" 2>/dev/null &
  pid=$!
  sleep 1
  ip netns exec daihuo-tx ffmpeg -hide_banner -loglevel error -re -i "$src" -c copy -f mpegts "$url" || true
  sleep 1
  kill $pid
  echo "libsrt loss=$loss% latency=${lat}ms: $(frames "$work/out.ts") of $sent frames"
  ;;
daihuo)
  cat > "$work/edge.toml" <<TOML
[srt]
listen = "10.77.0.2:9000"
latency_ms = $lat
[transcode]
encoder = "off"
rungs = []
[hls]
window_segments = 100
[log]
level = "info"
[events]
state_dir = "$work/state"
TOML
  rxns "$edge" --config "$work/edge.toml" > "$work/edge.log" 2>&1 &
  pid=$!
  for _ in $(seq 50); do rxns curl -sf http://127.0.0.1:9100/readyz > /dev/null && break; sleep 0.2; done
  # The stream's counters go when it ends: keep the last reading taken while it is live.
  ( while sleep 0.5; do
      rxns curl -s http://127.0.0.1:9100/metrics | grep -E '^daihuo_srt_(packets|rtt)' | grep 'stream="demo"' > "$work/m.new" || true
      [ -s "$work/m.new" ] && mv "$work/m.new" "$work/m.txt"
    done ) &
  sampler=$!
  ip netns exec daihuo-tx ffmpeg -hide_banner -loglevel error -re -i "$src" -c copy -f mpegts "$url" || true
  sleep 1
  kill $sampler
  base=http://127.0.0.1:8080/live/demo
  video=$(rxns curl -s $base/index.m3u8 | grep -v '^#' | head -1)
  rxns curl -s "$base/$video" > "$work/v.m3u8"
  dir=${video%/index.m3u8}
  init=$(grep -o 'init-[0-9a-f]*\.mp4' "$work/v.m3u8" | head -1 || true)
  : > "$work/v.mp4"
  if [ -n "$init" ]; then
    rxns curl -s "$base/$dir/$init" >> "$work/v.mp4"
    for s in $(grep '^seg' "$work/v.m3u8"); do rxns curl -s "$base/$dir/$s" >> "$work/v.mp4"; done
  fi
  counters=$(sed 's/{stream="demo"}//; s/daihuo_srt_//' "$work/m.txt" 2>/dev/null | tr '\n' ' ')
  kill $pid
  wait $pid 2>/dev/null || true
  echo "daihuo loss=$loss% latency=${lat}ms: $(frames "$work/v.mp4") of $sent frames | $counters"
  grep 'publish uplink' "$work/edge.log" || true
  ;;
*) echo "usage: $0 daihuo|libsrt LOSS_PCT LATENCY_MS [SECONDS] [EDGE_BINARY]" >&2; exit 2 ;;
esac
