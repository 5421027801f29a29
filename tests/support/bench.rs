//! What the benchmarks share: their 1080p input, made by ffmpeg in memory.

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
