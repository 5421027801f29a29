#!/usr/bin/env bash
# Printed by `make run` before the edge starts: how to push and where to play.
cat <<'TXT'

daihuo-edge single box (embedded origin), default ports:
  SRT ingest   udp [::]:9000      (IPv6 and IPv4)
  HTTPS        tcp [::]:8443      (self-signed certificate for localhost)
  HTTP/3       udp [::]:8443
  HTTP         tcp 127.0.0.1:8080
  metrics      http://127.0.0.1:9100/metrics  (/healthz, /readyz)

Push a test stream with ffmpeg (keyframe every 2 s = the segment target):
  ffmpeg -re -f lavfi -i testsrc2=size=1920x1080:rate=30 -f lavfi -i sine=frequency=440 \
    -c:v libx264 -preset veryfast -tune zerolatency -g 60 -b:v 4M -c:a aac -b:a 128k \
    -f mpegts 'srt://127.0.0.1:9000?streamid=#!::r=live/demo,m=publish'

OBS: Settings > Stream > Service "Custom", Server  srt://HOST:9000?streamid=#!::r=live/demo,m=publish
     (leave Stream Key empty); Output > Keyframe Interval 2 s; x264 tune zerolatency.

Watch in a browser (player, live comments, likes, add to cart, latency):
  http://127.0.0.1:8080/live/demo/        (every live room: http://127.0.0.1:8080/)

Play:
  ffplay -tls_verify 0 https://localhost:8443/live/demo/index.m3u8
  ffplay http://127.0.0.1:8080/live/demo/index.m3u8
  HTTP/3: the same https:// URL (Alt-Svc advertises h3 on udp 8443)

TXT
