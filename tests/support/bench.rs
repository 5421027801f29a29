//! What the benchmarks share: their 1080p input, made by ffmpeg in memory; release builds of
//! the binaries they run as processes; free loopback ports.

use std::path::{Path, PathBuf};

/// Encodes `seconds` of 1080p30 H.264 (8 Mbit/s, B-frames) + AAC to an MPEG-TS file in a new
/// temporary directory on tmpfs (so neither side of a comparison reads a disk). Keep the
/// returned directory alive while the file is used.
pub fn input_1080p(seconds: u32) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir_in(tmpfs()).expect("temporary directory");
    let path = dir.path().join("in.ts");
    let status = crate::peers::ffmpeg_source(1920, 1080, seconds, "8M", false)
        .args(["-f", "mpegts"])
        .arg(&path)
        .status()
        .expect("run ffmpeg (make test-deps installs it)");
    assert!(status.success(), "ffmpeg could not make the input");
    (dir, path)
}

/// /dev/shm where it exists, else /tmp.
pub fn tmpfs() -> &'static Path {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm
    } else {
        Path::new("/tmp")
    }
}

/// Variables cargo sets for the crate it runs (besides `CARGO_PKG_*`).
const BENCH_RUN_ENV: &[&str] = &[
    "CARGO_MANIFEST_DIR",
    "CARGO_MANIFEST_PATH",
    "CARGO_CRATE_NAME",
    "CARGO_BIN_NAME",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_TARGET_TMPDIR",
    "CARGO_RUSTC_CURRENT_DIR",
    "OUT_DIR",
];

/// Builds the release binary `bin` of `package` into the running bench's target directory (a
/// no-op when it is fresh) and returns its path: a bench that runs a daemon as a process of
/// its own measures the source it was built from.
pub fn release_binary(package: &str, bin: &str) -> anyhow::Result<PathBuf> {
    use anyhow::{bail, Context};
    // target/release/deps/BENCH-HASH → target/release
    let exe = std::env::current_exe()?;
    let release = exe
        .parent()
        .and_then(Path::parent)
        .context("bench executable is not in target/PROFILE/deps")?;
    let target = release.parent().context("no target directory")?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
    let mut build = std::process::Command::new(cargo);
    // Drop what cargo set for this bench's own run: build scripts that watch these variables
    // (ring's watches CARGO_MANIFEST_DIR) would otherwise rebuild, here and in `make build`.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_") || BENCH_RUN_ENV.contains(&name.as_ref()) {
            build.env_remove(name.as_ref());
        }
    }
    let status = build
        .args(["build", "--release", "-p", package, "--bin", bin])
        .arg("--manifest-path")
        .arg(&manifest)
        .arg("--target-dir")
        .arg(target)
        .status()
        .context("run cargo build")?;
    if !status.success() {
        bail!("cargo build of {bin} failed: {status}");
    }
    let path = target.join("release").join(bin);
    if !path.is_file() {
        bail!("{} is missing after the build", path.display());
    }
    Ok(path)
}

/// A TCP port free on loopback now (bound, then released for the server to take).
pub fn free_tcp() -> anyhow::Result<u16> {
    unique(|| {
        Ok(std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port())
    })
}

/// A UDP port free on loopback now.
pub fn free_udp() -> anyhow::Result<u16> {
    unique(|| {
        Ok(std::net::UdpSocket::bind("127.0.0.1:0")?
            .local_addr()?
            .port())
    })
}

/// A port from `pick` not handed out before in this run: once released, the kernel may give
/// the same ephemeral port to the next `bind(0)`, and two listeners of one server would
/// then be configured on one port.
fn unique(pick: impl Fn() -> anyhow::Result<u16>) -> anyhow::Result<u16> {
    static GIVEN: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = pick()?;
        let mut given = GIVEN.lock().unwrap_or_else(|e| e.into_inner());
        if !given.contains(&port) {
            given.push(port);
            return Ok(port);
        }
    }
}

/// Runs the daemon `bin --config CONFIG` pinned to `core` (taskset), its output to `log`.
pub fn spawn_pinned(
    core: &str,
    bin: &Path,
    config: &Path,
    log: &Path,
) -> anyhow::Result<crate::Child> {
    use anyhow::Context;
    let out = std::fs::File::create(log)?;
    crate::Child::spawn(
        std::process::Command::new("taskset")
            .args(["-c", core])
            .arg(bin)
            .arg("--config")
            .arg(config)
            .stdout(out.try_clone()?)
            .stderr(out),
    )
    .with_context(|| format!("spawn taskset {}", bin.display()))
}

/// The environment variable `name` parsed, else `default` (a benchmark's knobs).
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}
