//! Edge load: N LL-HLS viewers of one stream, served by `daihuo-edge` and, in the same run,
//! by nginx serving the same bytes from tmpfs, over the same protocols where nginx has them.
//!
//! Set-up (not timed): the release `daihuo-edge` (built by this bench with `cargo build
//! --release`, so it matches the source) starts pinned to core 0 with `[transcode] encoder =
//! "off"`, `[log] level = "warn"` and a certificate generated here. ffmpeg publishes 12 s of
//! the 1080p30 8 Mbit/s test input over SRT in real time (`-re -c copy`) and the stream ends
//! (it stays served with `EXT-X-ENDLIST`). The request mix is what a low-latency player at
//! the live edge asks for: for each part of the video and the audio playlist, the blocking
//! reload that announces it (`?_HLS_msn=M&_HLS_part=P`; the stream has ended, so the edge
//! answers at once, from the render all viewers share) and the part itself. Every request is
//! made once over plain HTTP (which puts the parts in the edge's object cache) and written
//! under the same URL path to a tmpfs directory that nginx 1.22 (Debian's nginx-light:
//! `worker_processes 1`, `sendfile on`, `open_file_cache` on, `access_log off`, TLS 1.3 with
//! the same certificate, pinned to core 0) serves; nginx serves a playlist whatever its query.
//! Every server and protocol is checked to give the same bytes for every request before any
//! load.
//!
//! During the measurement the edge also ingests and packages a live stream (the same input
//! looped in real time into another room), as an edge at work does; nginx has no such work.
//! What that costs alone is measured first (no viewers) and printed; the figures include it.
//!
//! Measured: N viewers (`EDGE_LOAD_VIEWERS`, default 200), each one connection issuing one
//! request at a time, loop over the mix for `EDGE_LOAD_SECONDS` (default 10) of wall clock.
//! Runs: nginx and the edge over plain HTTP/1.1, HTTP/1.1 over TLS and HTTP/2 over TLS, and
//! the edge over HTTP/3 (nginx 1.22 has none); the clients are `daihuo-rehearsal`'s (hyper,
//! rustls, quinn and h3). Connections are opened before the timed window. The runs alternate
//! for `EDGE_LOAD_ROUNDS` rounds (default 3); each round is printed, and the round with the
//! median requests per CPU-second gives the summary and the ratios. CPU is user + system
//! time from `/proc/PID/stat` (nginx: master and worker) over the window. The target, "at
//! least nginx's throughput per core", is the ratio of requests (and bytes) per server
//! CPU-second on the same protocol.
//!
//! The load generator runs in this process, pinned to core 1 (when there are two cores), so
//! on a two-core machine it can saturate before a server does: the table shows each server's
//! share of its core and the client's; read the raw requests/s with that in mind. The bench
//! reports and never asserts on speed; it panics only when a response is wrong (a status
//! other than 200 or a body of the wrong length). Run with `make bench` or
//! `cargo bench -p daihuo --bench edge_load`.

mod servers;
mod viewers;

use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;

use rehearsal::http::{Net, Proto, Server};
use servers::{
    certificate, clock_ticks_per_second, cpu_ticks, pin_self, publish_live, start_edge, start_nginx,
};
use viewers::{cache_mix, measure, same_bytes, Measured, Target};

/// Seconds of 1080p published before the load starts.
const PUBLISH_SECONDS: u32 = 12;
/// The room published and viewed.
const ROOM: &str = "bench";
/// The room the edge ingests live during the measurement.
const LIVE_ROOM: &str = "live";
/// The core the servers run on; the load generator takes the other one.
const SERVER_CORE: &str = "0";
const CLIENT_CORE: &str = "1";

fn main() {
    let viewers: usize = daihuo::bench::env_or("EDGE_LOAD_VIEWERS", 200);
    let seconds: u64 = daihuo::bench::env_or("EDGE_LOAD_SECONDS", 10);
    let rounds: usize = daihuo::bench::env_or("EDGE_LOAD_ROUNDS", 3).max(1);
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
    let edge_bin = daihuo::bench::release_binary("edge-node", "daihuo-edge")?;
    let work = tempfile::tempdir_in(daihuo::bench::tmpfs())?;
    let (_input_dir, input) = daihuo::bench::input_1080p(PUBLISH_SECONDS);

    let cert = certificate(work.path())?;
    let net = Net::new(Some(&cert), false)?;
    let edge = start_edge(&edge_bin, work.path()).await?;
    servers::publish(&input, edge.srt).await?;
    let target = async |proto, url: String, h3: Option<std::net::SocketAddr>| -> Result<_> {
        let mut server = Server::resolve(&url).await?;
        if let Some(h3) = h3 {
            server.h3_addr = h3;
        }
        Ok(Arc::new(Target {
            proto,
            server: Arc::new(server),
            net: net.clone(),
        }))
    };
    let edge_plain = target(Proto::H1, format!("http://{}", edge.http), None).await?;
    let mix = cache_mix(&edge_plain, &work.path().join("www")).await?;
    let total: usize = mix.iter().map(|r| r.len).sum();
    println!(
        "stream: {PUBLISH_SECONDS} s of 1080p30 8 Mbit/s H.264 + AAC; a mix of {} requests \
         (a blocking playlist reload and a part, video and audio), {:.1} MB, {:.0} kB mean",
        mix.len(),
        total as f64 / 1e6,
        total as f64 / mix.len() as f64 / 1e3,
    );
    let nginx = start_nginx(work.path()).await?;
    let https = |addr: std::net::SocketAddr| format!("https://localhost:{}", addr.port());
    let series = [
        (
            "nginx",
            "HTTP/1.1",
            Proto::H1,
            format!("http://{}", nginx.addr),
            None,
        ),
        (
            "daihuo-edge",
            "HTTP/1.1",
            Proto::H1,
            format!("http://{}", edge.http),
            None,
        ),
        ("nginx", "HTTPS/1.1", Proto::H1, https(nginx.tls), None),
        (
            "daihuo-edge",
            "HTTPS/1.1",
            Proto::H1,
            https(edge.https),
            None,
        ),
        ("nginx", "HTTP/2", Proto::H2, https(nginx.tls), None),
        ("daihuo-edge", "HTTP/2", Proto::H2, https(edge.https), None),
        (
            "daihuo-edge",
            "HTTP/3",
            Proto::H3,
            https(edge.https),
            Some(edge.http3),
        ),
    ];
    let mut results = Vec::new();
    for (server, proto, p, url, h3) in series {
        let pids = match server {
            "nginx" => nginx.pids()?,
            _ => vec![edge.pid()],
        };
        results.push(Series::new(server, proto, target(p, url, h3).await?, pids));
    }
    let targets: Vec<&Target> = results.iter().map(|s| s.target.as_ref()).collect();
    same_bytes(&mix, &targets).await?;

    // The live stream the edge works on meanwhile, and what it costs alone.
    let _live = publish_live(&input, edge.srt, LIVE_ROOM)?;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = cpu_ticks(&[edge.pid()])?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let ingest = (cpu_ticks(&[edge.pid()])? - before) as f64 / tick / 5.0;
    println!(
        "the edge ingesting and packaging a live 1080p stream with no viewers: {:.1}% of a \
         core (included in its figures below)",
        100.0 * ingest
    );

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
    let mix = Arc::new(mix);
    // Rounds alternate the servers, so a burst of other work on the machine hits all of them.
    for _ in 0..rounds {
        for s in &mut results {
            let m = measure(&s.target, &s.pids, &mix, viewers, window, tick).await?;
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
    fn new(server: &'static str, proto: &'static str, target: Arc<Target>, pids: Vec<u32>) -> Self {
        Self {
            server,
            proto,
            target,
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
        "\n{:<12} {:<9} {:<6} {:>8} {:>8} {:>7} {:>6} {:>13} {:>10} {:>9} {:>7} {:>6}",
        "server",
        "proto",
        "round",
        "req/s",
        "MB/s",
        "CPU s",
        "core%",
        "CPU ms/view-s",
        "req/CPU-s",
        "MB/CPU-s",
        "client%",
        "errors"
    );
    let row = |out: &mut String, s: &Series, round: &str, m: &Measured| {
        let _ = writeln!(
            out,
            "{:<12} {:<9} {:<6} {:>8.0} {:>8.1} {:>7.2} {:>6.0} {:>13.2} {:>10.0} {:>9.0} {:>7.0} {:>6}",
            s.server,
            s.proto,
            round,
            m.load.requests as f64 / m.wall,
            m.load.bytes as f64 / 1e6 / m.wall,
            m.server_cpu,
            100.0 * m.server_cpu / m.wall,
            1e3 * m.server_cpu / (viewers as f64 * m.wall),
            per_cpu(m),
            bytes_per_cpu(m) / 1e6,
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
    let median = |server: &str, proto: &str| {
        results
            .iter()
            .find(|s| s.server == server && s.proto == proto)
            .and_then(Series::median)
    };
    let mut ratio = |what: String, m: Option<&Measured>, base: Option<&Measured>| {
        if let (Some(m), Some(base)) = (m, base) {
            let _ = writeln!(
                out,
                "ratio {what}: {:.2}x requests and {:.2}x bytes per CPU-second (throughput \
                 per core), {:.2}x requests/s",
                per_cpu(m) / per_cpu(base),
                bytes_per_cpu(m) / bytes_per_cpu(base),
                (m.load.requests as f64 / m.wall) / (base.load.requests as f64 / base.wall),
            );
        }
    };
    for proto in ["HTTP/1.1", "HTTPS/1.1", "HTTP/2"] {
        ratio(
            format!("daihuo-edge {proto} / nginx {proto}"),
            median("daihuo-edge", proto),
            median("nginx", proto),
        );
    }
    ratio(
        "daihuo-edge HTTP/3 / daihuo-edge HTTPS/1.1".into(),
        median("daihuo-edge", "HTTP/3"),
        median("daihuo-edge", "HTTPS/1.1"),
    );
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

/// Bytes per server CPU-second.
fn bytes_per_cpu(m: &Measured) -> f64 {
    m.load.bytes as f64 / m.server_cpu.max(f64::EPSILON)
}

/// Requests per server CPU-second.
fn per_cpu(m: &Measured) -> f64 {
    m.load.requests as f64 / m.server_cpu.max(f64::EPSILON)
}
