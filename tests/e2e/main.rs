//! daihuo's end-to-end tests: the real daemons (in-process or as processes) with real peers
//! (ffmpeg with libsrt, srt-live-transmit, curl, openssl, an HTTP/3 client, the Tansu Kafka
//! broker, systemd's tools). One test binary with a module per scenario, so `make test` links
//! the stack once instead of once per file. Helpers are in `tests/support` (the `daihuo`
//! library, which the benchmarks share).
//!
//! Run one scenario with `cargo test -p daihuo --test e2e -- tiers::`.

mod browser;
mod events;
mod hardening;
mod hostile_peers;
mod kafka;
mod operations;
mod package;
mod rehearsal;
mod security;
mod single_box;
mod socket;
#[path = "../support/tansu.rs"]
mod tansu;
mod tiers;
mod transcode;
