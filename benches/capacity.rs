//! Capacity: viewers per server core at the field's service levels, for HTTP/1.1, HTTP/2 and
//! HTTP/3, measured with the shipped `daihuo-rehearsal` against a release single-box
//! `daihuo-edge`, the load generator's CPU left out.
//!
//! Set-up: both release binaries are built by this bench (`cargo build --release`, so they
//! match the source). The edge starts pinned to core 0 with the ladder off (`[transcode]
//! encoder = "off"`: passthrough, one 720p rendition and its audio), `[log] level = "warn"`,
//! no per-address cap, and its generated certificate. ffmpeg makes 60 s of 720p30 H.264
//! (3 Mbit/s, a keyframe every 2 s) + AAC once; each rehearsal pushes it looped, as it is
//! (`--source-file`, `-c copy`), into a room of its own, so the encoder's CPU stays out.
//!
//! Measured: for each protocol in turn, `daihuo-rehearsal` pinned to core 1 (with its ffmpeg)
//! brings `CAPACITY_VIEWERS` viewers (default 400) over a 10 s ramp and holds them for
//! `CAPACITY_SECONDS` (default 20); they play like hls.js in low-latency mode (blocking
//! reloads, the hinted part, parts) over HTTPS (HTTP/1.1 or HTTP/2) or HTTP/3. The edge's CPU
//! comes from its `process_cpu_seconds_total` over the hold, so the rehearsal's own CPU is
//! not in it; it includes the edge's ingest and packaging of the stream. Viewers per core is
//! 1000 over the CPU milliseconds per second one viewer costs. The protocols alternate for
//! `CAPACITY_ROUNDS` rounds (default 2); the table gives each round and the median cost per
//! protocol (of an even count, the dearer middle one), with what the rehearsal judged of the
//! field's service levels (first frame, stalls, play success, latency). A figure counts only
//! where every level passed: at a level the edge cannot hold, the viewers per core it
//! reports is not capacity.
//!
//! The bench reports and never asserts on speed. Run with `cargo bench -p daihuo --bench
//! capacity` (or `make bench`).

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context, Result};
use daihuo::bench::{free_tcp, free_udp, release_binary, spawn_pinned};
use daihuo::Child;

const SERVER_CORE: &str = "0";
const CLIENT_CORE: &str = "1";
const PROTOCOLS: [(&str, &str); 3] = [("h1", "HTTP/1.1"), ("h2", "HTTP/2"), ("h3", "HTTP/3")];

/// One rehearsal's figures.
struct Run {
    proto: &'static str,
    viewers: u64,
    played: u64,
    stalls: u64,
    first_frame_p95_s: f64,
    latency_p95_s: f64,
    /// Server CPU milliseconds per second per viewer.
    cost_ms: f64,
    /// Service levels missed.
    missed: Vec<String>,
}

fn main() {
    let viewers: usize = daihuo::bench::env_or("CAPACITY_VIEWERS", 400);
    let hold: u64 = daihuo::bench::env_or("CAPACITY_SECONDS", 20);
    let rounds: usize = daihuo::bench::env_or("CAPACITY_ROUNDS", 2).max(1);
    if let Err(e) = run(viewers, hold, rounds) {
        panic!("capacity: {e:#}");
    }
}

fn run(viewers: usize, hold: u64, rounds: usize) -> Result<()> {
    let edge_bin = release_binary("edge-node", "daihuo-edge")?;
    let rehearsal = release_binary("rehearsal", "daihuo-rehearsal")?;
    let dir = tempfile::tempdir_in(daihuo::bench::tmpfs())?;
    let source = dir.path().join("source.ts");
    let status = daihuo::peers::ffmpeg_source(1280, 720, 60, "3M", false)
        .args(["-f", "mpegts"])
        .arg(&source)
        .status()
        .context("run ffmpeg")?;
    if !status.success() {
        bail!("ffmpeg could not make the source: {status}");
    }
    let edge = Edge::start(&edge_bin, dir.path())?;
    println!(
        "{viewers} viewers per rehearsal (10 s ramp, {hold} s hold), {rounds} rounds; the edge \
         on core {SERVER_CORE}, the rehearsal and its ffmpeg on core {CLIENT_CORE}; uptime: {}",
        uptime()
    );
    let mut runs = Vec::new();
    for round in 0..rounds {
        for (mix, proto) in PROTOCOLS {
            let room = format!("capacity-{round}-{mix}");
            let run = rehearse(&rehearsal, &edge, &source, &room, mix, viewers, hold)
                .with_context(|| format!("{proto}, round {}", round + 1))?;
            runs.push(Run { proto, ..run });
        }
    }
    print!("{}", table(&runs));
    println!("uptime at the end: {}", uptime());
    Ok(())
}

/// The running edge and where it listens.
struct Edge {
    _child: Child,
    tls: u16,
    admin: u16,
    srt: u16,
}

impl Edge {
    fn start(bin: &Path, dir: &Path) -> Result<Self> {
        let (srt, tls, http, admin) = (free_udp()?, free_tcp()?, free_tcp()?, free_tcp()?);
        let config = dir.join("edge.toml");
        std::fs::write(
            &config,
            format!(
                "[srt]\nlisten = \"127.0.0.1:{srt}\"\n\
                 [https]\nlisten = \"127.0.0.1:{tls}\"\n\
                 [http3]\nlisten = \"127.0.0.1:{tls}\"\n\
                 [http]\nlisten = \"127.0.0.1:{http}\"\n\
                 [admin]\nlisten = \"127.0.0.1:{admin}\"\n\
                 [transcode]\nencoder = \"off\"\nrungs = []\n\
                 [events]\nstate_dir = {:?}\n\
                 [limits]\nmax_connections_per_ip = 0\n\
                 [log]\nlevel = \"warn\"\n",
                dir.join("state").display().to_string(),
            ),
        )?;
        let child = spawn_pinned(SERVER_CORE, bin, &config, &dir.join("edge.log"))?;
        let ready = format!("http://127.0.0.1:{admin}/readyz");
        for _ in 0..100 {
            if daihuo::peers::curl(&ready).is_ok_and(|(status, _)| status == 200) {
                return Ok(Self {
                    _child: child,
                    tls,
                    admin,
                    srt,
                });
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let log = std::fs::read_to_string(dir.join("edge.log")).unwrap_or_default();
        bail!("the edge did not get ready:\n{log}")
    }
}

/// One rehearsal of `room` over `mix` (`h1`, `h2`, `h3`), its JSON report read.
fn rehearse(
    bin: &Path,
    edge: &Edge,
    source: &Path,
    room: &str,
    mix: &str,
    viewers: usize,
    hold: u64,
) -> Result<Run> {
    let output = Command::new("taskset")
        .args(["-c", CLIENT_CORE])
        .arg(bin)
        .args(["--edge", &format!("https://localhost:{}", edge.tls)])
        .args(["--insecure", "--room", room])
        .arg("--source")
        .arg(format!(
            "srt://127.0.0.1:{}?streamid=#!::r=live/{room},m=publish",
            edge.srt
        ))
        .arg("--source-file")
        .arg(source)
        .args(["--viewers", &viewers.to_string(), "--ramp", "10"])
        .args(["--hold", &hold.to_string(), "--mix", &format!("{mix}=1")])
        .args(["--feed-watchers", "0", "--shoppers", "0"])
        .arg("--metrics")
        .arg(format!("http://127.0.0.1:{}/metrics", edge.admin))
        .arg("--json")
        .output()
        .context("run daihuo-rehearsal")?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        bail!("daihuo-rehearsal failed: {}", stderr.trim_end());
    }
    let report: serde_json::Value =
        serde_json::from_slice(&output.stdout).with_context(|| format!("its report: {stderr}"))?;
    let all = &report["all"];
    let number = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    let missed = report["sla"]
        .as_array()
        .map(|rows| {
            rows.iter()
                .filter(|r| r["pass"] == false)
                .map(|r| format!("{} {}", r["what"].as_str().unwrap_or("?"), r["measured"]))
                .collect()
        })
        .unwrap_or_default();
    let mut missed: Vec<String> = missed;
    if let Some(ended) = report["source_ended"].as_str() {
        missed.push(format!("the source ended ({ended})"));
    }
    Ok(Run {
        proto: "",
        viewers: all["viewers"].as_u64().unwrap_or(0),
        played: all["played"].as_u64().unwrap_or(0),
        stalls: all["stalls"].as_u64().unwrap_or(0),
        first_frame_p95_s: number(&all["first_frame_p95_s"]),
        latency_p95_s: number(&all["latency_p95_s"]),
        cost_ms: report["cpu"]["per_viewer_ms_per_s"]
            .as_f64()
            .context("the report has no CPU per viewer")?,
        missed,
    })
}

fn table(runs: &[Run]) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{:<9} {:>7} {:>7} {:>7} {:>11} {:>12} {:>14} {:>14}  service levels",
        "protocol",
        "viewers",
        "played",
        "stalls",
        "first p95",
        "latency p95",
        "CPU ms/s/view",
        "viewers/core"
    );
    for r in runs {
        let _ = writeln!(
            out,
            "{:<9} {:>7} {:>7} {:>7} {:>8.0} ms {:>9.0} ms {:>14.3} {:>14.0}  {}",
            r.proto,
            r.viewers,
            r.played,
            r.stalls,
            r.first_frame_p95_s * 1000.0,
            r.latency_p95_s * 1000.0,
            r.cost_ms,
            1000.0 / r.cost_ms,
            if r.missed.is_empty() {
                "all met".to_string()
            } else {
                format!("missed: {}", r.missed.join("; "))
            }
        );
    }
    let median = |proto: &str| {
        let mut costs: Vec<f64> = runs
            .iter()
            .filter(|r| r.proto == proto && r.missed.is_empty())
            .map(|r| r.cost_ms)
            .collect();
        costs.sort_by(f64::total_cmp);
        // Of an even count, the dearer middle one.
        costs.get(costs.len() / 2).copied()
    };
    let _ = writeln!(out, "median over the rounds that met every level:");
    for (_, proto) in PROTOCOLS {
        match median(proto) {
            Some(cost) => {
                let _ = writeln!(
                    out,
                    "  {proto:<9} {cost:.3} ms/s per viewer: {:.0} viewers per core",
                    1000.0 / cost
                );
            }
            None => {
                let _ = writeln!(out, "  {proto:<9} no round met every level");
            }
        }
    }
    if let (Some(h1), Some(h2), Some(h3)) = (median("HTTP/1.1"), median("HTTP/2"), median("HTTP/3"))
    {
        let _ = writeln!(
            out,
            "viewers per core relative to HTTP/1.1: HTTP/2 {:.2}x, HTTP/3 {:.2}x",
            h1 / h2,
            h1 / h3
        );
    }
    out
}

fn uptime() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| {
            format!(
                "load {}",
                l.split_whitespace().take(3).collect::<Vec<_>>().join(" ")
            )
        })
        .unwrap_or_default()
}
