//! Edge load: N LL-HLS viewers of a cached stream, served by `daihuo-edge` and, in the same
//! run, by nginx serving the same bytes from tmpfs.
//!
//! Set-up (not timed): the release `daihuo-edge` (built by this bench with `cargo build
//! --release`, so it matches the source) starts pinned to core 0 with `[transcode] encoder =
//! "off"`, `[log] level = "warn"` and a certificate generated here. ffmpeg publishes 12 s of
//! the 1080p30 8 Mbit/s test input over SRT in real time (`-re -c copy`) and the stream ends
//! (it stays served with `EXT-X-ENDLIST`). Every part and segment the media playlists list is
//! fetched once over plain HTTP, which puts it in the edge's object cache, and written under
//! the same URL path to a tmpfs directory that nginx 1.22 (Debian's nginx-light:
//! `worker_processes 1`, `sendfile on`, `access_log off`, pinned to core 0) serves. Both
//! servers' bytes are checked equal before any load.
//!
//! Measured: N viewers (`EDGE_LOAD_VIEWERS`, default 200), each one keep-alive connection
//! issuing one GET at a time, loop over every part and segment (cache hits on the edge; init
//! segments are left out because the edge re-reads them from its store every second, and
//! playlists because they are not cached objects) for `EDGE_LOAD_SECONDS` (default 10) of wall
//! clock. Runs: nginx over HTTP/1.1, the edge's plain HTTP listener over HTTP/1.1 (hyper's
//! client on both), and the edge over HTTP/3 (quinn + h3, one QUIC connection per viewer;
//! nginx 1.22 has no HTTP/3). Connections are opened before the timed window. The three runs
//! alternate for `EDGE_LOAD_ROUNDS` rounds (default 3); each round is printed, and the round
//! with the median requests per CPU-second gives the summary and the ratios. CPU is user +
//! system time from `/proc/PID/stat` (nginx: master and worker) over the window. The issue's
//! target, "at least nginx's HTTP/1.1 throughput per core on cache hits", is the ratio of
//! requests per server CPU-second.
//!
//! The load generator runs in this process on one thread pinned to core 1 (when there are two
//! cores), so on a two-core machine it can saturate before a server does: the table shows each
//! server's share of its core and the client's; read the raw requests/s with that in mind.
//! The bench reports and never asserts on speed; it panics only when a response is wrong (a
//! status other than 200 or a body of the wrong length). Run with `make bench` or
//! `cargo bench -p daihuo --bench edge_load`.

mod servers;
mod viewers;

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

use servers::{build_edge, clock_ticks_per_second, pin_self, start_edge, start_nginx};
use viewers::{cache_objects, measure, same_bytes, Measured, Target};

/// Seconds of 1080p published before the load starts.
const PUBLISH_SECONDS: u32 = 12;
/// The room published and viewed.
const ROOM: &str = "bench";
/// The core the servers run on; the load generator takes the other one.
const SERVER_CORE: &str = "0";
const CLIENT_CORE: &str = "1";

fn main() {
    let viewers: usize = env_or("EDGE_LOAD_VIEWERS", 200);
    let seconds: u64 = env_or("EDGE_LOAD_SECONDS", 10);
    let rounds: usize = env_or("EDGE_LOAD_ROUNDS", 3).max(1);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(e) = runtime.block_on(run(viewers, Duration::from_secs(seconds), rounds)) {
        panic!("edge_load: {e:#}");
    }
}

async fn run(viewers: usize, window: Duration, rounds: usize) -> Result<()> {
    let tick = clock_ticks_per_second()?;
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let edge_bin = build_edge()?;
    let work = tempfile::tempdir_in(daihuo::bench::tmpfs())?;
    let (_input_dir, input) = daihuo::bench::input_1080p(PUBLISH_SECONDS);

    let (edge, cert) = start_edge(&edge_bin, work.path()).await?;
    servers::publish(&input, edge.srt).await?;
    let objects = cache_objects(edge.http, &work.path().join("www")).await?;
    let total: usize = objects.iter().map(|o| o.len).sum();
    println!(
        "stream: {PUBLISH_SECONDS} s of 1080p30 8 Mbit/s H.264 + AAC; {} objects (parts and \
         segments), {:.1} MB, {:.0} kB mean",
        objects.len(),
        total as f64 / 1e6,
        total as f64 / objects.len() as f64 / 1e3,
    );
    let nginx = start_nginx(work.path()).await?;
    same_bytes(&objects, nginx.addr, edge.http).await?;

    if cores >= 2 {
        pin_self(CLIENT_CORE)?;
    } else {
        println!("one core only: servers and load generator share it");
    }
    println!(
        "{viewers} viewers, {rounds} rounds of {} s per server and protocol; servers on core \
         {SERVER_CORE}, load generator on core {}",
        window.as_secs(),
        if cores >= 2 { CLIENT_CORE } else { SERVER_CORE },
    );
    let objects = Arc::new(objects);
    let mut results = [
        Series::new(
            "nginx",
            "HTTP/1.1",
            Target::Http1(nginx.addr),
            nginx.pids()?,
        ),
        Series::new(
            "daihuo-edge",
            "HTTP/1.1",
            Target::Http1(edge.http),
            vec![edge.pid()],
        ),
        Series::new(
            "daihuo-edge",
            "HTTP/3",
            Target::Http3(edge.http3, cert),
            vec![edge.pid()],
        ),
    ];
    // Rounds alternate the servers, so a burst of other work on the machine hits all of them.
    for _ in 0..rounds {
        for s in &mut results {
            let m = measure(s.target.clone(), &s.pids, &objects, viewers, window, tick).await?;
            s.rounds.push(m);
        }
    }
    print_table(&results, viewers);

    let wrong: u64 = results
        .iter()
        .flat_map(|s| &s.rounds)
        .map(|m| m.load.wrong)
        .sum();
    if wrong > 0 {
        let shown: Vec<&String> = results
            .iter()
            .flat_map(|s| &s.rounds)
            .flat_map(|m| &m.load.shown)
            .collect();
        panic!("{wrong} wrong responses, e.g. {shown:?}");
    }
    Ok(())
}

/// One server and protocol: what to load, whose CPU to count, every round's figures.
struct Series {
    server: &'static str,
    proto: &'static str,
    target: Arc<Target>,
    /// The server's processes.
    pids: Vec<u32>,
    rounds: Vec<Measured>,
}

impl Series {
    fn new(server: &'static str, proto: &'static str, target: Target, pids: Vec<u32>) -> Self {
        Self {
            server,
            proto,
            target: Arc::new(target),
            pids,
            rounds: Vec::new(),
        }
    }

    /// The round with the median requests per CPU-second (the lower one of an even count).
    fn median(&self) -> Option<&Measured> {
        let mut sorted: Vec<&Measured> = self.rounds.iter().collect();
        sorted.sort_by(|a, b| per_cpu(a).total_cmp(&per_cpu(b)));
        sorted.get(sorted.len().saturating_sub(1) / 2).copied()
    }
}

fn print_table(results: &[Series], viewers: usize) {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "\n{:<12} {:<8} {:<6} {:>8} {:>8} {:>7} {:>6} {:>13} {:>10} {:>7} {:>6}",
        "server",
        "proto",
        "round",
        "req/s",
        "MB/s",
        "CPU s",
        "core%",
        "CPU ms/view-s",
        "req/CPU-s",
        "client%",
        "errors"
    );
    let row = |out: &mut String, s: &Series, round: &str, m: &Measured| {
        let _ = writeln!(
            out,
            "{:<12} {:<8} {:<6} {:>8.0} {:>8.1} {:>7.2} {:>6.0} {:>13.2} {:>10.0} {:>7.0} {:>6}",
            s.server,
            s.proto,
            round,
            m.load.requests as f64 / m.wall,
            m.load.bytes as f64 / 1e6 / m.wall,
            m.server_cpu,
            100.0 * m.server_cpu / m.wall,
            1e3 * m.server_cpu / (viewers as f64 * m.wall),
            per_cpu(m),
            100.0 * m.client_cpu / m.wall,
            m.load.wrong + m.load.failed,
        );
    };
    for s in results {
        for (i, m) in s.rounds.iter().enumerate() {
            row(&mut out, s, &(i + 1).to_string(), m);
        }
    }
    let _ = writeln!(out, "median round (by req/CPU-s):");
    for s in results {
        if let Some(m) = s.median() {
            row(&mut out, s, "median", m);
        }
    }
    let nginx = results
        .iter()
        .find(|s| s.server == "nginx" && s.proto == "HTTP/1.1")
        .and_then(Series::median);
    if let Some(base) = nginx {
        for s in results.iter().filter(|s| s.server != "nginx") {
            let Some(m) = s.median() else { continue };
            let _ = writeln!(
                out,
                "ratio {} {} / nginx HTTP/1.1: {:.2}x requests per CPU-second (throughput per \
                 core), {:.2}x requests/s",
                s.server,
                s.proto,
                per_cpu(m) / per_cpu(base),
                (m.load.requests as f64 / m.wall) / (base.load.requests as f64 / base.wall),
            );
        }
    }
    for s in results {
        for m in s.rounds.iter().filter(|m| m.load.failed + m.load.wrong > 0) {
            let _ = writeln!(
                out,
                "{} {}: {} requests failed in transport, {} wrong responses: {:?}",
                s.server, s.proto, m.load.failed, m.load.wrong, m.load.shown
            );
        }
    }
    print!("{out}");
}

/// Requests per server CPU-second.
fn per_cpu(m: &Measured) -> f64 {
    m.load.requests as f64 / m.server_cpu.max(f64::EPSILON)
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}
