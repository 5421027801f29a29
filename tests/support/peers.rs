//! Real peers as child processes, killed when dropped.

use std::process::{Command, Stdio};

/// A child process, in a process group of its own, whose whole group is killed (and the
/// child reaped) when dropped: a failing test, or a shell pipeline such as
/// `ffmpeg | srt-live-transmit`, leaves nothing running.
pub struct Child(pub std::process::Child);

impl Child {
    pub fn spawn(cmd: &mut Command) -> std::io::Result<Self> {
        use std::os::unix::process::CommandExt;
        cmd.stdin(Stdio::null()).process_group(0).spawn().map(Child)
    }

    /// Waits for the process to exit on its own.
    pub fn wait(&mut self) -> std::io::Result<std::process::ExitStatus> {
        self.0.wait()
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let group = format!("-{}", self.0.id());
        let _ = Command::new("kill")
            .args(["-KILL", "--", &group])
            .stderr(Stdio::null())
            .status();
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Whether Debian's ffmpeg with libsrt is installed (`make test` installs it).
pub fn ffmpeg_available() -> bool {
    Command::new("ffmpeg")
        .arg("-protocols")
        .stderr(Stdio::null())
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .any(|l| l.trim() == "srt")
        })
        .unwrap_or(false)
}

/// An ffmpeg command that publishes a synthetic 30 fps H.264 (High, B-frames, keyframe every
/// 2 s) + AAC stream of `seconds` to `url` in real time.
pub fn ffmpeg_push(width: u32, height: u32, seconds: u32, url: &str) -> Command {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-re"])
        .args([
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc2=size={width}x{height}:rate=30"),
        ])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", &seconds.to_string()])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "superfast",
            "-profile:v",
            "high",
            "-bf",
            "2",
        ])
        .args([
            "-g",
            "60",
            "-keyint_min",
            "60",
            "-sc_threshold",
            "0",
            "-b:v",
            "3M",
        ])
        .args(["-c:a", "aac", "-b:a", "96k"])
        .args(["-f", "mpegts", url]);
    cmd
}

/// GETs `url` with curl (HTTP/2 over TLS when `https://`, trusting any certificate) and
/// returns (status, body).
pub fn curl(url: &str) -> std::io::Result<(u16, Vec<u8>)> {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-k",
            "--http2",
            "--max-time",
            "20",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
        ])
        .arg(url)
        .output()?;
    let mut body = out.stdout;
    let split = body.iter().rposition(|b| *b == b'\n').unwrap_or(0);
    let status = String::from_utf8_lossy(&body[split..])
        .trim()
        .parse()
        .unwrap_or(0);
    body.truncate(split);
    Ok((status, body))
}

/// The HTTP version curl negotiated for `url` (`2` for HTTP/2).
pub fn curl_http_version(url: &str) -> std::io::Result<String> {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-k",
            "--http2",
            "--max-time",
            "20",
            "-o",
            "/dev/null",
            "-w",
            "%{http_version}",
        ])
        .arg(url)
        .output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}
