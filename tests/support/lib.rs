//! Helpers for the workspace's end-to-end tests and benchmarks: an HTTP/3 client (quinn + h3),
//! real peers as child processes (ffmpeg with libsrt, srt-live-transmit, curl), and small
//! LL-HLS playlist readers. Nothing here mocks the system under test.

pub mod bench;
pub mod browser;
pub mod daemons;
pub mod h3client;
pub mod peers;
pub mod playlist;

pub use h3client::H3Client;
pub use peers::{ffmpeg_available, Child};

/// An edge config with every listener on a free loopback port and its own state directory.
pub fn loopback_config() -> conf::EdgeConfig {
    let mut config = conf::EdgeConfig::from_toml(LOOPBACK).expect("test config is valid");
    config.events.state_dir = state_dir();
    config
}

/// A fresh directory for one daemon's durable state (event spool and journal), under the
/// system's temporary directory.
pub fn state_dir() -> std::path::PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let dir = std::env::temp_dir().join(format!(
        "daihuo-state-{}-{nanos}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).expect("state directory");
    dir
}

/// [`loopback_config`] with viewer tokens required for cart and order events, signed with
/// `secret`.
pub fn user_tokens_config(secret: &str) -> conf::EdgeConfig {
    let mut config = loopback_config();
    config.events.user_tokens = true;
    config.events.user_secrets = vec![secret.into()];
    config
}

/// Seconds since the Unix epoch, now: what signed tokens' expiries count in.
pub fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// [`loopback_config`]'s TOML, for tests that add sections.
pub const LOOPBACK: &str = r#"
[srt]
listen = "127.0.0.1:0"
[https]
listen = "127.0.0.1:0"
[http3]
listen = "127.0.0.1:0"
[http]
listen = "127.0.0.1:0"
[admin]
listen = "127.0.0.1:0"
[transcode]
encoder = "off"
"#;

/// Polls `f` until it returns Some, for at most `secs` seconds (streams need real time to
/// start); panics after that.
pub async fn eventually<T>(secs: u64, mut f: impl AsyncFnMut() -> Option<T>) -> T {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {secs} s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}

/// Panics with a clear message when ffmpeg with libsrt is missing.
pub fn require_ffmpeg() {
    assert!(
        ffmpeg_available(),
        "ffmpeg with libsrt is required (make test-deps installs Debian's)"
    );
}
