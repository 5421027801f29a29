//! `daihuo-rehearsal`: a show-shaped load against any daihuo deployment, given its edges'
//! URLs. Viewers arrive on a ramp and play like hls.js in low-latency mode over HTTP/1.1,
//! HTTP/2 and HTTP/3; shoppers like, comment, add to cart and order; faults run on a
//! schedule; and the run ends with the field's service-level table. It talks to the
//! deployment only as its clients and operators do (HTTP, the journal, `/metrics`), never
//! through the daemons' code.

pub mod hls;
pub mod http;
pub mod report;
pub mod shop;
pub mod viewer;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{bail, Context, Result};
use clap::Parser;

use crate::http::{Conn, Net, Proto, Server};
use crate::report::{Cpu, Eventing, Faulted, Report};

/// Seconds of the run, and the wall clock, from one instant.
#[derive(Debug, Clone)]
pub struct Clock {
    start: Instant,
    epoch: f64,
}

impl Clock {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            epoch: SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0.0, |d| d.as_secs_f64()),
        }
    }

    /// Seconds since the run started.
    pub fn at(&self, t: Instant) -> f64 {
        if t >= self.start {
            t.duration_since(self.start).as_secs_f64()
        } else {
            -self.start.duration_since(t).as_secs_f64()
        }
    }

    /// Seconds since the Unix epoch.
    pub fn epoch(&self, t: Instant) -> f64 {
        self.epoch + self.at(t)
    }
}

/// Rehearse a live-commerce show against a daihuo deployment: viewers that play like hls.js
/// in low-latency mode, shoppers that like, comment, add to cart and order, faults on a
/// schedule, and the field's service-level table at the end.
///
/// Example, against `make run`'s single box:
///
///   daihuo-rehearsal --edge https://localhost:8443 --insecure --room demo \
///     --viewers 200 --ramp 60 --hold 60 --mix h1=1,h2=1,h3=1 \
///     --carts 20 --orders 5 --comments 5 --likes 50 \
///     --journal http://127.0.0.1:9100 --metrics http://127.0.0.1:9100/metrics \
///     --source 'srt://127.0.0.1:9000?streamid=#!::r=live/demo,m=publish'
#[derive(Debug, Clone, Parser)]
#[command(name = "daihuo-rehearsal", version, verbatim_doc_comment)]
pub struct Args {
    /// An edge's base URL (http://HOST:PORT or https://HOST:PORT); repeat for several edges,
    /// viewers and shoppers are spread over them.
    #[arg(long = "edge", required = true, value_name = "URL")]
    pub edges: Vec<String>,
    /// The room to watch and shop in.
    #[arg(long, default_value = "demo")]
    pub room: String,
    /// Viewers at the peak.
    #[arg(long, default_value_t = 50)]
    pub viewers: usize,
    /// Seconds from the first viewer to the peak (viewers arrive evenly over it).
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    pub ramp: f64,
    /// Seconds the peak is held after the ramp.
    #[arg(long, default_value_t = 20.0, value_name = "SECONDS")]
    pub hold: f64,
    /// The protocols' shares of viewers, e.g. `h1=2,h2=1,h3=1` (HTTP/3 and HTTP/2 need an
    /// https edge; over plain http, h2 is h2c).
    #[arg(long, default_value = "h1=1,h2=1,h3=1", value_name = "SHARES")]
    pub mix: String,
    /// The rendition every viewer plays (`720p`, ...); without it viewers are spread over
    /// the multivariant playlist's variants.
    #[arg(long)]
    pub rendition: Option<String>,
    /// Added to every viewer's URL (e.g. `token=...` for signed playback).
    #[arg(long, value_name = "QUERY")]
    pub query: Option<String>,
    /// A viewer that shows no frame within this many seconds of arriving has failed to play.
    #[arg(long, default_value_t = 10.0, value_name = "SECONDS")]
    pub first_frame_timeout: f64,
    /// Shoppers (each with its own user name and connection).
    #[arg(long, default_value_t = 20)]
    pub shoppers: usize,
    /// Likes per second, over all shoppers.
    #[arg(long, default_value_t = 0.0, value_name = "PER_SECOND")]
    pub likes: f64,
    /// Comments per second.
    #[arg(long, default_value_t = 0.0, value_name = "PER_SECOND")]
    pub comments: f64,
    /// Cart adds per second.
    #[arg(long, default_value_t = 0.0, value_name = "PER_SECOND")]
    pub carts: f64,
    /// Orders per second.
    #[arg(long, default_value_t = 0.0, value_name = "PER_SECOND")]
    pub orders: f64,
    /// Connections reading the room's comment feed (timing comments from post to display).
    #[arg(long, default_value_t = 2, value_name = "N")]
    pub feed_watchers: usize,
    /// A journal to check carts and orders in at the end: an admin listener's base URL
    /// (`GET /events?after=N`); repeat for every origin's.
    #[arg(long = "journal", value_name = "URL")]
    pub journals: Vec<String>,
    /// A server's Prometheus endpoint (full URL) whose `process_cpu_seconds_total` counts
    /// toward the CPU per viewer; repeat for every server process.
    #[arg(long = "metrics", value_name = "URL")]
    pub metrics: Vec<String>,
    /// A fault: at SECONDS into the run, `sh -c COMMAND` (kill an origin, reload, restart an
    /// edge); repeat for several. Recovery is measured from it.
    #[arg(long = "fault", value_name = "SECONDS=COMMAND")]
    pub faults: Vec<String>,
    /// Push a 720p30 test stream with a frame counter over SRT to this URL (ffmpeg) for the
    /// run; viewers start once the room plays.
    #[arg(long, value_name = "SRT_URL")]
    pub source: Option<String>,
    /// With `--source`: push this recording (MPEG-TS or MP4, H.264 and AAC) as it is
    /// (`-c copy`, looped) instead of encoding a test picture, so the encoder's CPU stays
    /// out of the measurement.
    #[arg(long, value_name = "FILE", requires = "source")]
    pub source_file: Option<PathBuf>,
    /// CA certificates (PEM) that sign the edges' certificates; the system's without it.
    #[arg(long, value_name = "FILE")]
    pub ca: Option<PathBuf>,
    /// Accept any certificate (a default single box's self-signed one).
    #[arg(long)]
    pub insecure: bool,
    /// Print the report as JSON on stdout (the progress line stays on stderr).
    #[arg(long)]
    pub json: bool,
    /// Exit with status 3 when a service level is missed or `--source` ended before the run.
    #[arg(long)]
    pub strict: bool,
}

/// Parses `h1=2,h2=1,h3=1` into each protocol's share.
pub fn parse_mix(mix: &str) -> Result<Vec<(Proto, f64)>> {
    let mut out = Vec::new();
    for part in mix.split(',').filter(|p| !p.is_empty()) {
        let (name, share) = part.split_once('=').unwrap_or((part, "1"));
        let proto = match name.trim() {
            "h1" | "http1" | "http/1.1" => Proto::H1,
            "h2" | "http2" => Proto::H2,
            "h3" | "http3" => Proto::H3,
            other => bail!("--mix: unknown protocol {other:?} (h1, h2 or h3)"),
        };
        let share: f64 = share
            .trim()
            .parse()
            .with_context(|| format!("--mix: {share:?} is not a number"))?;
        if share < 0.0 || !share.is_finite() {
            bail!("--mix: a share must be zero or more");
        }
        out.push((proto, share));
    }
    let total: f64 = out.iter().map(|(_, s)| s).sum();
    if total <= 0.0 {
        bail!("--mix: no protocol has a share");
    }
    Ok(out)
}

/// The protocol of viewer `i` of `n`: shares filled in order, spread evenly over the ramp.
fn proto_of(mix: &[(Proto, f64)], i: usize) -> Proto {
    let total: f64 = mix.iter().map(|(_, s)| s).sum();
    // A low-discrepancy walk over [0, 1): every prefix of viewers has the mix's shares.
    let x = (i as f64 * 0.618_033_988_749_895).fract() * total;
    let mut acc = 0.0;
    for (proto, share) in mix {
        acc += share;
        if x < acc {
            return *proto;
        }
    }
    mix.last().map_or(Proto::H1, |(p, _)| *p)
}

/// Parses `SECONDS=COMMAND`.
pub fn parse_fault(fault: &str) -> Result<(f64, String)> {
    let (at, command) = fault
        .split_once('=')
        .with_context(|| format!("--fault {fault:?}: SECONDS=COMMAND"))?;
    let at: f64 = at
        .trim()
        .parse()
        .with_context(|| format!("--fault {fault:?}: {at:?} is not a number of seconds"))?;
    if command.trim().is_empty() {
        bail!("--fault {fault:?}: no command");
    }
    Ok((at, command.to_string()))
}

/// The sum of `process_cpu_seconds_total` over `urls`.
async fn cpu_seconds(urls: &[(Arc<Server>, String)], net: &Arc<Net>) -> Result<f64> {
    let mut total = 0.0;
    for (server, path) in urls {
        let conn = Conn::open(Proto::H1, server, net, None).await?;
        let got = conn.get(path).await?;
        let text = String::from_utf8_lossy(&got.body);
        let line = text
            .lines()
            .find(|l| l.starts_with("process_cpu_seconds_total"))
            .with_context(|| format!("{}{path}: no process_cpu_seconds_total", server.url))?;
        total += line
            .split_whitespace()
            .nth(1)
            .and_then(|v| v.parse::<f64>().ok())
            .with_context(|| format!("{}{path}: {line:?}", server.url))?;
    }
    Ok(total)
}

/// Splits a full URL into its server and its path.
async fn server_and_path(url: &str) -> Result<(Arc<Server>, String)> {
    let uri: ::http::Uri = url.parse().with_context(|| format!("{url}: not a URL"))?;
    let path = uri
        .path_and_query()
        .map_or("/".to_string(), |p| p.to_string());
    let base = format!(
        "{}://{}",
        uri.scheme_str().unwrap_or("http"),
        uri.authority().map_or("", |a| a.as_str())
    );
    Ok((Arc::new(Server::resolve(&base).await?), path))
}

/// How `ffmpeg` ended (`exit status: 1`), once it has.
fn exited(ffmpeg: &mut tokio::process::Child) -> Option<std::process::ExitStatus> {
    ffmpeg.try_wait().ok().flatten()
}

/// The source: ffmpeg pushing `file` as it is (looped), or 720p30 with a frame counter and a
/// tone, over SRT.
fn start_source(url: &str, file: Option<&std::path::Path>) -> Result<tokio::process::Child> {
    let mut ffmpeg = tokio::process::Command::new("ffmpeg");
    ffmpeg.args(["-hide_banner", "-loglevel", "error", "-nostdin"]);
    match file {
        Some(file) => {
            ffmpeg
                .args(["-stream_loop", "-1", "-re", "-i"])
                .arg(file)
                .args(["-c", "copy"]);
        }
        None => {
            ffmpeg
                .args(["-re", "-f", "lavfi", "-i", "testsrc=size=1280x720:rate=30"])
                .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
                .args([
                    "-c:v",
                    "libx264",
                    "-preset",
                    "superfast",
                    "-tune",
                    "zerolatency",
                ])
                .args(["-g", "60", "-b:v", "3M", "-pix_fmt", "yuv420p"])
                .args(["-c:a", "aac", "-b:a", "128k"]);
        }
    }
    ffmpeg
        .args(["-f", "mpegts", url])
        .kill_on_drop(true)
        .spawn()
        .context("--source: cannot run ffmpeg")
}

/// Runs the rehearsal and returns its report.
pub async fn run(args: Args) -> Result<Report> {
    let mix = parse_mix(&args.mix)?;
    let faults: Vec<(f64, String)> = args
        .faults
        .iter()
        .map(|f| parse_fault(f))
        .collect::<Result<_>>()?;
    let net = Net::new(args.ca.as_deref(), args.insecure)?;
    let mut edges = Vec::new();
    for url in &args.edges {
        let mut server = Server::resolve(url).await?;
        if mix.iter().any(|(p, s)| *p == Proto::H3 && *s > 0.0) {
            if !server.https {
                bail!("{url}: HTTP/3 viewers need an https edge (or leave h3 out of --mix)");
            }
            // As a browser finds it: the port in the edge's Alt-Svc.
            let conn = Conn::open(Proto::H1, &Arc::new(server.clone()), &net, None).await?;
            let answer = conn.get(&format!("/live/{}/index.m3u8", args.room)).await?;
            if let Some(port) = answer.alt_svc.as_deref().and_then(http::alt_svc_h3_port) {
                server.h3_addr.set_port(port);
            }
        }
        edges.push(Arc::new(server));
    }
    let mut journals = Vec::new();
    for url in &args.journals {
        journals.push(Arc::new(Server::resolve(url).await?));
    }
    let mut metrics = Vec::new();
    for url in &args.metrics {
        metrics.push(server_and_path(url).await?);
    }

    let mut source = match &args.source {
        Some(url) => Some(start_source(url, args.source_file.as_deref())?),
        None => None,
    };
    if let Some(ffmpeg) = source.as_mut() {
        // Viewers come once the room plays, as they would to a show already on.
        let conn = Conn::open(Proto::H1, &edges[0], &net, None).await?;
        let top = format!("/live/{}/index.m3u8", args.room);
        let ready = Instant::now() + Duration::from_secs(30);
        loop {
            // A refused publish (the room is live already, a wrong key) ends ffmpeg; the
            // room may still play an earlier stream, which is not what is to be measured.
            if let Some(status) = exited(ffmpeg) {
                bail!(
                    "--source: ffmpeg {status} before {top} played (its messages are above: \
                     a room still live from another publisher refuses this one)"
                );
            }
            if let Ok(f) = conn.get(&top).await {
                if f.status == 200 {
                    break;
                }
            }
            if Instant::now() > ready {
                bail!(
                    "--source: {} did not play within 30 s of ffmpeg starting",
                    top
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        // The first parts of each rendition.
        tokio::time::sleep(Duration::from_secs(2)).await;
        if let Some(status) = exited(ffmpeg) {
            bail!("--source: ffmpeg {status} as {top} began to play (its messages are above)");
        }
    }

    let clock = Clock::new();
    let start = Instant::now();
    let peak = start + Duration::from_secs_f64(args.ramp.max(0.0));
    let end = peak + Duration::from_secs_f64(args.hold.max(0.0));
    let run_id = format!("{:x}", (clock.epoch * 1000.0) as u64);
    let live = Arc::new(viewer::Live::default());
    let ledger = Arc::new(shop::Ledger::default());

    // Viewers on the ramp.
    let mut viewers = tokio::task::JoinSet::new();
    for i in 0..args.viewers {
        let at = start + Duration::from_secs_f64(args.ramp * i as f64 / args.viewers.max(1) as f64);
        let plan = viewer::Plan {
            proto: proto_of(&mix, i),
            server: edges[i % edges.len()].clone(),
            room: args.room.clone(),
            choice: match &args.rendition {
                Some(r) => viewer::Choice::Named(r.clone()),
                None => viewer::Choice::Nth(i),
            },
            query: args.query.clone(),
            first_frame_timeout: Duration::from_secs_f64(args.first_frame_timeout),
            local: edges[i % edges.len()].client_address(u32::try_from(i).unwrap_or(0)),
        };
        let (net, clock, live) = (net.clone(), clock.clone(), live.clone());
        viewers.spawn(async move {
            tokio::time::sleep_until(at.into()).await;
            viewer::run(plan, net, clock, live, end).await
        });
    }

    // Shoppers and feed watchers.
    let rates = shop::Rates {
        like: args.likes,
        comment: args.comments,
        cart: args.carts,
        order: args.orders,
    };
    let shop_plan = Arc::new(shop::Plan {
        servers: edges.clone(),
        room: args.room.clone(),
        shoppers: args.shoppers,
        rates,
        proto: if edges[0].https { Proto::H2 } else { Proto::H1 },
        run_id: run_id.clone(),
        give_up: Duration::from_secs(30),
    });
    let shopping = tokio::spawn(shop::post(
        shop_plan,
        net.clone(),
        clock.clone(),
        ledger.clone(),
        end,
    ));
    let mut watchers = tokio::task::JoinSet::new();
    if rates.comment > 0.0 {
        for i in 0..args.feed_watchers {
            watchers.spawn(shop::watch(
                edges[i % edges.len()].clone(),
                net.clone(),
                args.room.clone(),
                clock.clone(),
                ledger.clone(),
                // Comments posted at the end get a moment to show.
                end + Duration::from_secs(2),
            ));
        }
    }

    // Faults on schedule.
    let mut faulting = tokio::task::JoinSet::new();
    for (at, command) in faults.clone() {
        let when = start + Duration::from_secs_f64(at);
        faulting.spawn(async move {
            tokio::time::sleep_until(when.into()).await;
            eprintln!("\n[{at:>5.1}s] fault: {command}");
            // Its output goes to stderr: stdout is the report's (`--json`).
            let status = tokio::process::Command::new("sh")
                .args(["-c", &command])
                .stdin(std::process::Stdio::null())
                .stdout(std::io::stderr())
                .status()
                .await;
            (at, command, status.ok().and_then(|s| s.code()))
        });
    }

    // CPU from the peak on (the whole run without a hold).
    let cpu_from = if args.hold > 0.0 { peak } else { start };
    let cpu_task = {
        let (metrics, net) = (metrics.clone(), net.clone());
        tokio::spawn(async move {
            if metrics.is_empty() {
                return None;
            }
            tokio::time::sleep_until(cpu_from.into()).await;
            let before = cpu_seconds(&metrics, &net).await.ok()?;
            tokio::time::sleep_until(end.into()).await;
            let after = cpu_seconds(&metrics, &net).await.ok()?;
            Some(after - before)
        })
    };

    // Progress, until the viewers are done.
    let progress = {
        let (live, ledger) = (live.clone(), ledger.clone());
        let total = args.viewers;
        tokio::spawn(async move {
            let mut every = tokio::time::interval(Duration::from_secs(1));
            let mut last_bytes = 0;
            loop {
                every.tick().await;
                let bytes = live.bytes.load(Ordering::Relaxed);
                eprint!(
                    "\r[{:>5.0}s] viewers {}/{} playing {} stalled {} failed {} | {:.1} MB/s | events acked {} failed {} | comments shown {}   ",
                    start.elapsed().as_secs_f64(),
                    live.started.load(Ordering::Relaxed),
                    total,
                    live.playing.load(Ordering::Relaxed),
                    live.stalled.load(Ordering::Relaxed),
                    live.failed.load(Ordering::Relaxed),
                    (bytes - last_bytes) as f64 / 1e6,
                    ledger.acked.load(Ordering::Relaxed),
                    ledger.failed.load(Ordering::Relaxed),
                    ledger.comment_latency.lock().map_or(0, |l| l.len()),
                );
                last_bytes = bytes;
            }
        })
    };

    let mut viewed = Vec::new();
    while let Some(v) = viewers.join_next().await {
        viewed.push(v.context("a viewer task")?);
    }
    let cpu = cpu_task.await.ok().flatten();
    let mut faulted = Vec::new();
    while let Some(f) = faulting.join_next().await {
        faulted.push(f.context("a fault task")?);
    }
    shopping.await.context("the shoppers")?;
    while watchers.join_next().await.is_some() {}
    progress.abort();
    eprintln!();
    // A source that ended early leaves figures of an ended stream: the report says so.
    let source_ended = source
        .as_mut()
        .and_then(exited)
        .map(|s| format!("ffmpeg {s}"));
    if let Some(mut s) = source.take() {
        let _ = s.kill().await;
    }

    let persisted = if journals.is_empty() {
        None
    } else {
        Some(shop::check_journals(&journals, &net, &run_id, &ledger).await?)
    };

    // The figures.
    let end_s = clock.at(end);
    let (all, protocols) = report::viewing(&viewed);
    let posted = ledger
        .posted
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let comment_latency = ledger
        .comment_latency
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let events: Vec<Eventing> = shop::Kind::ALL
        .iter()
        .filter(|k| posted.iter().any(|p| p.kind == **k))
        .map(|k| Eventing::of(*k, &posted))
        .collect();
    faulted.sort_by(|a, b| a.0.total_cmp(&b.0));
    let refs: Vec<&viewer::Viewed> = viewed.iter().collect();
    let faults = faulted
        .iter()
        .enumerate()
        .map(|(i, (at, command, exit))| {
            let next = faulted.get(i + 1).map_or(end_s, |f| f.0);
            let (v, e) = report::recovery(*at, next, end_s, &refs, &posted);
            Faulted {
                at_s: *at,
                command: command.clone(),
                exit: *exit,
                viewers_recovery_s: v,
                events_recovery_s: e,
                recovery_s: v.zip(e).map(|(v, e)| v.max(e)),
            }
        })
        .collect();
    let mut renditions: Vec<(String, usize)> = Vec::new();
    for v in &viewed {
        let name = v.rendition.clone().unwrap_or_else(|| "(none)".into());
        match renditions.iter_mut().find(|(r, _)| *r == name) {
            Some((_, n)) => *n += 1,
            None => renditions.push((name, 1)),
        }
    }
    let over_s = end.duration_since(cpu_from).as_secs_f64();
    let mean_viewers = if cpu_from == peak {
        all.played as f64
    } else {
        // Viewers on a ramp from zero: half the peak on average.
        all.played as f64 / 2.0
    };
    let cpu = cpu.map(|seconds| {
        let per_viewer =
            (mean_viewers > 0.0 && over_s > 0.0).then(|| seconds / over_s / mean_viewers * 1000.0);
        Cpu {
            seconds,
            over_s,
            mean_viewers,
            per_viewer_ms_per_s: per_viewer,
            viewers_per_core: per_viewer.filter(|v| *v > 0.0).map(|v| 1000.0 / v),
        }
    });
    let mut report = Report {
        edges: edges.iter().map(|e| e.url.clone()).collect(),
        room: args.room.clone(),
        duration_s: end_s,
        all,
        protocols,
        renditions,
        failures: viewed.iter().filter_map(|v| v.failed.clone()).collect(),
        events,
        comment_display_p50_s: report::percentile(&comment_latency, 50.0),
        comment_display_p95_s: report::percentile(&comment_latency, 95.0),
        comments_not_shown: if args.feed_watchers > 0 {
            ledger
                .comments_sent
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .len()
        } else {
            0
        },
        persisted,
        faults,
        cpu,
        source_ended,
        sla: Vec::new(),
    };
    report.judge();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_mix_gives_every_prefix_of_viewers_its_shares() {
        let mix = parse_mix("h1=2,h2=1,h3=1").unwrap();
        let first: Vec<Proto> = (0..100).map(|i| proto_of(&mix, i)).collect();
        let h1 = first.iter().filter(|p| **p == Proto::H1).count();
        let h3 = first.iter().filter(|p| **p == Proto::H3).count();
        assert!((45..=55).contains(&h1), "{h1}");
        assert!((20..=30).contains(&h3), "{h3}");
        assert!(parse_mix("h4=1").is_err());
        assert!(parse_mix("h1=0").is_err());
        assert_eq!(
            parse_fault("12.5=kill -9 1").unwrap(),
            (12.5, "kill -9 1".into())
        );
        assert!(parse_fault("soon=kill").is_err());
    }

    #[test]
    fn the_help_says_what_each_option_does() {
        use clap::CommandFactory;
        let help = Args::command().render_long_help().to_string();
        for option in [
            "--edge",
            "--viewers",
            "--ramp",
            "--mix",
            "--fault",
            "--journal",
            "--json",
        ] {
            assert!(help.contains(option), "{option} missing from --help");
        }
        assert!(help.contains("make run"), "the example is missing");
    }
}
