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

/// An ffmpeg command encoding `seconds` of a synthetic 30 fps picture (H.264 High, 2
/// B-frames, a keyframe every 2 s exactly) and a 48 kHz tone (AAC); the caller adds the
/// output (`-f mpegts URL_OR_FILE`) and, for a live push, `-re` comes first.
pub fn ffmpeg_source(
    width: u32,
    height: u32,
    seconds: u32,
    bitrate: &str,
    realtime: bool,
) -> Command {
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-y"]);
    if realtime {
        cmd.arg("-re");
    }
    let picture = format!("testsrc2=size={width}x{height}:rate=30");
    cmd.args(["-f", "lavfi", "-i", &picture])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args(["-t", &seconds.to_string()])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "superfast",
            "-profile:v",
            "high",
        ])
        .args([
            "-bf",
            "2",
            "-g",
            "60",
            "-keyint_min",
            "60",
            "-sc_threshold",
            "0",
        ])
        .args(["-b:v", bitrate, "-c:a", "aac", "-b:a", "96k"]);
    cmd
}

/// An ffmpeg command that publishes [`ffmpeg_source`] in real time to `url` (3 Mbit/s).
pub fn ffmpeg_push(width: u32, height: u32, seconds: u32, url: &str) -> Command {
    let mut cmd = ffmpeg_source(width, height, seconds, "3M", true);
    cmd.args(["-f", "mpegts", url]);
    cmd
}

/// [`ffmpeg_push`] of a picture that carries its capture time: each frame, as it enters the
/// encoder, gets the wall clock in milliseconds since the epoch written across the top
/// twentieth of the picture as 42 black/white blocks (bit k in block k of 44), which a player
/// reads back from the frame it shows (`tests/browser/player.html` with `clock`).
pub fn ffmpeg_clock_push(width: u32, height: u32, seconds: u32, url: &str) -> Command {
    let cmd = ffmpeg_push(width, height, seconds, url);
    let h = (height / 20).max(2);
    // The frame's timestamp becomes the wall clock (ms) for the boxes' `enable`, then goes
    // back to counting from zero for the encoder.
    let mut filter = format!(
        "settb=1/1000,setpts=RTCTIME/1000,drawbox=x=0:y=0:w={width}:h={h}:color=black:t=fill"
    );
    for k in 0..42u32 {
        let x = k * width / 44;
        let w = (k + 1) * width / 44 - x;
        filter.push_str(&format!(
            ",drawbox=x={x}:y=0:w={w}:h={h}:color=white:t=fill:enable='mod(floor(t*1000/{}),2)'",
            1u64 << k
        ));
    }
    filter.push_str(",setpts=PTS-STARTPTS");
    // The filter goes before the output URL ffmpeg_push added last.
    let args: Vec<_> = cmd.get_args().map(std::ffi::OsStr::to_owned).collect();
    let (output, head) = args.split_last().expect("ffmpeg_push names an output");
    let mut clocked = Command::new(cmd.get_program());
    clocked.args(head).args(["-vf", &filter]).arg(output);
    clocked
}

/// GETs `url` with curl (HTTP/2 over TLS when `https://`, trusting any certificate) and
/// returns (status, body).
pub fn curl(url: &str) -> std::io::Result<(u16, Vec<u8>)> {
    let (status, body) = curl_with(url, "%{http_code}")?;
    Ok((status.parse().unwrap_or(0), body))
}

/// The HTTP version curl negotiated for `url` (`2` for HTTP/2).
pub fn curl_http_version(url: &str) -> std::io::Result<String> {
    curl_with(url, "%{http_version}").map(|(version, _)| version)
}

/// The status and the response head (names lower-cased, as HTTP/2 sends them) of curl with
/// `args` on `url` (HTTP/2 over TLS when `https://`, trusting any certificate); the body is
/// discarded.
pub fn curl_headers(url: &str, args: &[&str]) -> std::io::Result<(u16, String)> {
    let out = Command::new("curl")
        .args([
            "-sS",
            "-k",
            "--http2",
            "--max-time",
            "20",
            "-o",
            "/dev/null",
            "-D",
            "-",
        ])
        .args(args)
        .arg(url)
        .output()?;
    let head = String::from_utf8_lossy(&out.stdout).to_ascii_lowercase();
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok());
    Ok((status.unwrap_or(0), head))
}

/// Runs curl on `url`; returns what `--write-out FORMAT` printed (after the body) and the body.
fn curl_with(url: &str, format: &str) -> std::io::Result<(String, Vec<u8>)> {
    let out = Command::new("curl")
        .args(["-sS", "-k", "--http2", "--max-time", "20", "-o", "-"])
        .args(["-w", &format!("\n{format}")])
        .arg(url)
        .output()?;
    let mut body = out.stdout;
    let split = body.iter().rposition(|b| *b == b'\n').unwrap_or(0);
    let written = String::from_utf8_lossy(&body[split..]).trim().to_string();
    body.truncate(split);
    Ok((written, body))
}
