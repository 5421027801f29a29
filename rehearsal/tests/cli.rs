//! The shipped binary's command line: `--help` says what it does, and bad arguments get a
//! clear error and a non-zero exit before anything runs.

use std::process::Command;

fn rehearsal() -> Command {
    Command::new(env!("CARGO_BIN_EXE_daihuo-rehearsal"))
}

#[test]
fn help_explains_and_bad_arguments_are_refused() {
    let help = rehearsal().arg("--help").output().expect("run --help");
    assert!(help.status.success());
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(text.contains("--edge <URL>"), "{text}");
    assert!(text.contains("service-level table"), "{text}");

    let no_edge = rehearsal().output().expect("run");
    assert!(!no_edge.status.success());
    assert!(String::from_utf8_lossy(&no_edge.stderr).contains("--edge"));

    let bad_mix = rehearsal()
        .args(["--edge", "http://127.0.0.1:9", "--mix", "h9=1"])
        .output()
        .expect("run");
    assert_eq!(bad_mix.status.code(), Some(1));
    let err = String::from_utf8_lossy(&bad_mix.stderr);
    assert!(err.contains("unknown protocol \"h9\""), "{err}");

    let plain_h3 = rehearsal()
        .args(["--edge", "http://127.0.0.1:9", "--mix", "h3=1"])
        .output()
        .expect("run");
    let err = String::from_utf8_lossy(&plain_h3.stderr);
    assert!(err.contains("HTTP/3 viewers need an https edge"), "{err}");
}
