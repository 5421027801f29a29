//! The `daihuo-edge` command line: `check`, `--version`, argument errors.

#![allow(clippy::unwrap_used)]

use std::process::Command;

fn edge() -> Command {
    Command::new(env!("CARGO_BIN_EXE_daihuo-edge"))
}

#[test]
fn check_accepts_the_example_config() {
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../conf/examples/edge.toml");
    let out = edge()
        .args(["check", "--config", example])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).ends_with(": ok\n"));
}

#[test]
fn check_lists_every_error_with_its_key_path_and_fails() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.toml");
    std::fs::write(
        &path,
        "[hls]\npart_target_ms = 5000\nwindow_segments = 1\n[https]\nkey = \"/nope.pem\"\n",
    )
    .unwrap();
    let out = edge()
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    for key in ["hls.part_target_ms", "hls.window_segments", "https.cert"] {
        assert!(err.contains(key), "{key} missing from:\n{err}");
    }
    assert!(err.contains(path.to_str().unwrap()), "{err}");
}

#[test]
fn check_reports_unknown_keys_with_the_line() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edge.toml");
    std::fs::write(&path, "[srt]\nlisten = \"0.0.0.0:9000\"\nlatncy_ms = 50\n").unwrap();
    let out = edge()
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("latncy_ms") && err.contains("line 3"), "{err}");
}

#[test]
fn version_and_bad_arguments() {
    let out = edge().arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("daihuo-edge "));
    let out = edge().arg("--frobnicate").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("usage:"));
}

#[test]
fn missing_config_file_is_a_clear_error() {
    let out = edge()
        .args(["--config", "/nonexistent/edge.toml"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read /nonexistent/edge.toml"));
}
