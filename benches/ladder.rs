//! Transcoding ladder throughput: one 1080p30 H.264 source in, three libx264 renditions out.
//!
//! Measures daihuo's in-process ladder (`hwaccel::Ladder`, software backend: one decode, one
//! bicubic scale per rung cascaded from the next larger rung, one libx264 encode per rung,
//! IDRs every 2 s) fed the video frames of a 1080p30 H.264 + AAC transport stream. The timed
//! region is the whole job: demuxing the stream (read into memory before), `Ladder::new`
//! (decoder and encoder setup), every `Ladder::push` and `Ladder::finish`. In the same run,
//! on the same file, the ffmpeg CLI encodes the same ladder with the same scaling topology,
//! each rung scaled from the one above it:
//! `ffmpeg -i in.ts -filter_complex "[0:v]split=2[s0][c0];[c0]scale=1280:720,split=2[s1][c1];[c1]scale=854:480[s2]"`
//! with one output per rung (`-c:v libx264 -preset P -b:v 4500k -maxrate 5400k -bufsize 5400k
//! -bf 0 -tune zerolatency -g 60 -sc_threshold 0 ... -f null /dev/null`), timed as a whole
//! process (reading the file, demux and encoder setup included). For each x264 preset it reports frames per
//! second (wall clock, best of 3) for both, the ratio, and CPU seconds (user + system) per
//! minute of input: daihuo's from `/proc/self/stat` utime + stime, ffmpeg's from the cutime +
//! cstime of this process (children that were waited for).
//!
//! Run with `make bench` or `cargo bench -p daihuo --bench ladder`. `LADDER_SECONDS` sets the
//! input length (default 60), `LADDER_PRESETS` the presets (default `ultrafast,veryfast`),
//! `LADDER_THREADS` the decoder and encoder threads on both sides (default 0: automatic).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use codec::ingest::{Demuxer, MediaEvent};
use codec::{Frame, TrackConfig};
use hwaccel::{BackendKind, Ladder, LadderOptions, LadderOutput, RungSpec};

const ROUNDS: usize = 3;
/// The source's keyframe interval (`daihuo::peers::ffmpeg_source`: 2 s at 30 fps), which is
/// also the ladder's segment target: both sides put an IDR every 60 frames.
const GOP: u32 = 60;

/// Wall-clock time and CPU seconds (user + system) of one run.
#[derive(Clone, Copy)]
struct Run {
    wall: Duration,
    cpu: f64,
}

fn main() {
    let seconds: u32 = daihuo::bench::env_or("LADDER_SECONDS", 60);
    let threads: usize = daihuo::bench::env_or("LADDER_THREADS", 0);
    let presets = std::env::var("LADDER_PRESETS").unwrap_or_else(|_| "ultrafast,veryfast".into());
    let tick = clock_ticks_per_second();

    // `_dir` holds the temporary directory (and the input) until the end.
    let (_dir, input) = daihuo::bench::input_1080p(seconds);
    let ts = std::fs::read(&input).expect("read input");
    let (config, frames) = demux(&ts);
    let TrackConfig::H264 { width, height, .. } = config else {
        unreachable!("demux returns the H.264 track")
    };
    let rungs = hwaccel::plan(&hwaccel::default_ladder(), width, height);
    let ladder: Vec<String> = rungs
        .iter()
        .map(|r| format!("{}x{} {}k", r.width, r.height, r.bitrate / 1000))
        .collect();
    println!(
        "input: {width}x{height} 30 fps H.264 + AAC, {seconds} s, {} video frames; ladder {}; \
         threads {}; best of {ROUNDS}",
        frames.len(),
        ladder.join(", "),
        if threads == 0 {
            "auto".into()
        } else {
            threads.to_string()
        },
    );
    println!(
        "{:<10} {:>10} {:>10} {:>7} {:>17} {:>17}",
        "preset", "daihuo fps", "ffmpeg fps", "ratio", "daihuo CPU s/min", "ffmpeg CPU s/min"
    );
    for preset in presets.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let rungs: Vec<RungSpec> = rungs
            .iter()
            .map(|r| RungSpec {
                preset: preset.to_string(),
                ..r.clone()
            })
            .collect();
        // Alternate the two sides so that background load hits both alike.
        let (mut ours, mut theirs) = (Vec::new(), Vec::new());
        for _ in 0..ROUNDS {
            ours.push(transcode(&ts, frames.len(), &rungs, threads, tick));
            theirs.push(ffmpeg_ladder(&input, &rungs, threads, tick));
        }
        let (ours, theirs) = (best(&ours), best(&theirs));
        let fps = |run: Run| frames.len() as f64 / run.wall.as_secs_f64();
        let per_minute = |run: Run| run.cpu * 60.0 / f64::from(seconds);
        println!(
            "{:<10} {:>10.1} {:>10.1} {:>6.2}x {:>17.1} {:>17.1}",
            preset,
            fps(ours),
            fps(theirs),
            fps(ours) / fps(theirs),
            per_minute(ours),
            per_minute(theirs),
        );
    }
}

/// Demuxes `ts`, feeds every video frame through a fresh ladder and finishes it, all timed;
/// checks each rung encoded all `expected` frames.
fn transcode(ts: &[u8], expected: usize, rungs: &[RungSpec], threads: usize, tick: f64) -> Run {
    let (cpu, start) = (own_cpu(tick), Instant::now());
    let (config, frames) = demux(ts);
    let options = LadderOptions {
        backend: BackendKind::Software,
        segment_target: Duration::from_secs(2),
        threads,
    };
    let mut ladder = Ladder::new(&config, rungs.to_vec(), options).expect("open the ladder");
    let mut out = Vec::new();
    let mut counts = vec![0usize; rungs.len()];
    let mut count = |out: &mut Vec<LadderOutput>| {
        for output in out.drain(..) {
            match output {
                LadderOutput::Frame { rung, frame } => {
                    std::hint::black_box(frame);
                    let index = rungs.iter().position(|r| r.name == rung);
                    counts[index.expect("a known rung")] += 1;
                }
                LadderOutput::Track { .. } => {}
                LadderOutput::Fallback { rung, reason } => panic!("{rung} fell back: {reason}"),
            }
        }
    };
    for frame in &frames {
        ladder.push(frame, &mut out).expect("ladder push");
        count(&mut out);
    }
    ladder.finish(&mut out).expect("ladder finish");
    count(&mut out);
    let run = Run {
        wall: start.elapsed(),
        cpu: own_cpu(tick) - cpu,
    };
    assert!(
        counts.iter().all(|&n| n == expected),
        "every rung encodes every source frame: {counts:?} of {expected}"
    );
    run
}

/// The same ladder with the ffmpeg CLI: one decode, each rung scaled from the one above it
/// (the top one at the source's size unscaled, as the ladder does), one libx264 output per
/// rung with the encoder options the ladder gives libx264 (`hwaccel/src/encode.rs`).
fn ffmpeg_ladder(input: &Path, rungs: &[RungSpec], threads: usize, tick: f64) -> Run {
    let graph = cascade(rungs);
    let threads = threads.to_string();
    let mut cmd = Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-nostdin"])
        .args(["-threads", &threads, "-i"])
        .arg(input)
        .args(["-filter_complex", &graph]);
    let gop = GOP.to_string();
    for (i, rung) in rungs.iter().enumerate() {
        let (rate, peak) = (rung.bitrate.to_string(), rung.max_bitrate.to_string());
        cmd.args(["-map", &format!("[s{i}]"), "-an", "-c:v", "libx264"])
            .args(["-preset", &rung.preset, "-profile:v", &rung.profile])
            .args(["-tune", "zerolatency", "-bf", "0"])
            .args(["-b:v", &rate, "-maxrate", &peak, "-bufsize", &peak])
            .args(["-g", &gop, "-keyint_min", &gop, "-sc_threshold", "0"])
            .args(["-x264-params", "rc-lookahead=0:sync-lookahead=0"])
            .args(["-threads", &threads, "-f", "null", "/dev/null"]);
    }
    let (cpu, start) = (children_cpu(tick), Instant::now());
    let status = cmd.status().expect("run ffmpeg");
    let run = Run {
        wall: start.elapsed(),
        cpu: children_cpu(tick) - cpu,
    };
    assert!(status.success(), "ffmpeg failed: {cmd:?}");
    run
}

/// The filter graph of [`ffmpeg_ladder`]: `[s{i}]` is rung i's picture; each rung but the last
/// also feeds the next one's scale (`[c{i}]`).
fn cascade(rungs: &[RungSpec]) -> String {
    let mut graph = String::new();
    let mut from = "[0:v]".to_string();
    for (i, rung) in rungs.iter().enumerate() {
        if i > 0 {
            graph.push(';');
            graph.push_str(&format!("{from}scale={}:{},", rung.width, rung.height));
        } else {
            graph.push_str(&from);
        }
        if i + 1 < rungs.len() {
            graph.push_str(&format!("split=2[s{i}][c{i}]"));
            from = format!("[c{i}]");
        } else {
            graph.push_str(&format!("null[s{i}]"));
        }
    }
    graph
}

/// The H.264 track's configuration and all its frames, in decode order.
fn demux(ts: &[u8]) -> (TrackConfig, Vec<Frame>) {
    let mut demuxer = Demuxer::new();
    let mut events = Vec::new();
    demuxer.push(ts, &mut events);
    demuxer.finish(&mut events);
    let mut video: Option<(u16, TrackConfig)> = None;
    let mut frames = Vec::new();
    for event in events {
        match event {
            MediaEvent::Track { track, config } => {
                if matches!(config, TrackConfig::H264 { .. }) && video.is_none() {
                    video = Some((track, config));
                }
            }
            MediaEvent::Frame { track, frame } => {
                if video.as_ref().is_some_and(|(t, _)| *t == track) {
                    frames.push(frame);
                }
            }
            MediaEvent::Clock { .. } => {}
            MediaEvent::Warning(w) => panic!("clean input gave a warning: {w}"),
        }
    }
    let (_, config) = video.expect("the input has an H.264 track");
    (config, frames)
}

fn best(runs: &[Run]) -> Run {
    *runs
        .iter()
        .min_by_key(|r| r.wall)
        .expect("at least one round")
}

/// CPU seconds of this process (all threads): `/proc/self/stat` utime + stime.
fn own_cpu(tick: f64) -> f64 {
    stat_ticks(11, 12) / tick
}

/// CPU seconds of this process's waited-for children: `/proc/self/stat` cutime + cstime.
fn children_cpu(tick: f64) -> f64 {
    stat_ticks(13, 14) / tick
}

/// The sum of two `/proc/self/stat` fields, counted from field 3 (after the command name).
fn stat_ticks(a: usize, b: usize) -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("read /proc/self/stat");
    let (_, rest) = stat.rsplit_once(')').expect("stat has a command name");
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| fields[i].parse::<f64>().expect("a tick count");
    field(a) + field(b)
}

fn clock_ticks_per_second() -> f64 {
    let out = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .expect("run getconf");
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .expect("getconf CLK_TCK prints a number")
}
