//! Packaging throughput: an MPEG-TS file in, CMAF files and LL-HLS playlists out.
//!
//! Both sides do the same job on the same 1080p30 H.264 + AAC transport stream in tmpfs,
//! timed the same way, as wall clock from start to the last file written: daihuo's sans-IO
//! path (the file read, the demuxer fed in SRT's 1316-byte payloads, one segmenter per
//! track, and, as a live origin does, a media playlist rendered after every part) writing
//! each track's init segment, every part and the playlist after every part to a tmpfs
//! directory; and `ffmpeg -c copy -bsf:a aac_adtstoasc -f hls -hls_segment_type fmp4` (the
//! filter ffmpeg 5.1 requires for ADTS input) reading the same file and writing its init,
//! segments and playlist to the same tmpfs, timed as a whole process (its start-up, measured
//! alone on a 1 s input, is printed beside it). Each media byte is written once on both
//! sides. Reports MB/s of input for both and the ratio. Run with `make bench` or
//! `cargo bench -p daihuo --bench packaging`; `PACKAGING_SECONDS` sets the input length
//! (default 60).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use codec::hls::playlist::{MediaPlaylist, PlaylistOptions};
use codec::hls::query::SkipRequest;
use codec::hls::segmenter::{FirstMsn, Segmenter, SegmenterOptions, SegmenterOutput};
use codec::ingest::{Demuxer, MediaEvent};

const ROUNDS: usize = 5;

fn main() {
    let seconds: u32 = std::env::var("PACKAGING_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let (dir, input) = daihuo::bench::input_1080p(seconds);
    let mb = std::fs::metadata(&input).expect("the input").len() as f64 / 1e6;
    println!("input: 1080p30 H.264 + AAC, {seconds} s, {mb:.1} MB, in tmpfs");

    // Alternate the two sides so that background load hits both alike.
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    // Each output directory is emptied before its run, outside the timed region.
    for _ in 0..ROUNDS {
        let out = fresh(dir.path(), "daihuo");
        ours.push(timed(|| package(&input, &out)));
        let out = fresh(dir.path(), "ffmpeg");
        theirs.push(timed(|| ffmpeg_hls(&input, &out)));
    }
    let (ours, theirs) = (min(&ours), min(&theirs));
    let (_short_dir, short) = daihuo::bench::input_1080p(1);
    let mut start_up = Vec::new();
    for _ in 0..ROUNDS {
        let out = fresh(dir.path(), "ffmpeg");
        start_up.push(timed(|| ffmpeg_hls(&short, &out)));
    }
    let start_up = min(&start_up);
    let ours_mbps = mb / ours.as_secs_f64();
    let theirs_mbps = mb / theirs.as_secs_f64();
    println!(
        "daihuo codec: {:8.1} MB/s ({:.3} s, best of {ROUNDS})",
        ours_mbps,
        ours.as_secs_f64()
    );
    println!(
        "ffmpeg hls:   {:8.1} MB/s ({:.3} s, best of {ROUNDS}; of which start-up and the \
         work of a 1 s input: {:.3} s)",
        theirs_mbps,
        theirs.as_secs_f64(),
        start_up.as_secs_f64()
    );
    let theirs_working = mb / theirs.saturating_sub(start_up).as_secs_f64().max(1e-6);
    println!(
        "ratio: {:.2}x ffmpeg ({:.2}x with its start-up and a 1 s input's work taken off its \
         time)",
        ours_mbps / theirs_mbps,
        ours_mbps / theirs_working
    );
}

/// An empty directory `name` under `dir`.
fn fresh(dir: &Path, name: &str) -> PathBuf {
    let out = dir.join(name);
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).expect("output directory");
    out
}

/// Reads `input`; demuxes, segments and packages every track into `out`: its init segment,
/// every part, and its media playlist rendered and written after each part.
fn package(input: &Path, out: &Path) {
    let ts = std::fs::read(input).expect("read the input");
    let write = |name: String, bytes: &[u8]| {
        std::fs::write(out.join(name), bytes).expect("write to tmpfs");
    };
    let mut demuxer = Demuxer::new();
    let mut events = Vec::new();
    let mut outputs = Vec::new();
    let mut tracks: Vec<(u16, Segmenter, MediaPlaylist)> = Vec::new();
    let mut parts = 0usize;
    let mut playlist_bytes = 0usize;
    // SRT delivers 1316-byte payloads: feed the same way.
    for chunk in ts.chunks(1316) {
        demuxer.push(chunk, &mut events);
        for event in events.drain(..) {
            match event {
                MediaEvent::Track { track, config } => {
                    let init = codec::fmp4::init_segment(&config).expect("init segment");
                    write(format!("init-{track}.mp4"), &init);
                    tracks.retain(|(t, _, _)| *t != track);
                    tracks.push((
                        track,
                        Segmenter::new(config, SegmenterOptions::default(), FirstMsn::Exactly(0)),
                        MediaPlaylist::new(PlaylistOptions::default()),
                    ));
                }
                MediaEvent::Frame { track, frame } => {
                    let Some((_, segmenter, playlist)) =
                        tracks.iter_mut().find(|(t, _, _)| *t == track)
                    else {
                        continue;
                    };
                    segmenter.push(frame, &mut outputs);
                    for out in outputs.drain(..) {
                        match out {
                            SegmenterOutput::Part(p) => {
                                parts += 1;
                                playlist.push_part(p.msn, p.index, p.duration, p.independent, 0);
                                write(format!("{track}-part{}.{}.m4s", p.msn, p.index), &p.bytes);
                                let text = playlist.render(SkipRequest::No, &[]);
                                playlist_bytes += text.len();
                                write(format!("{track}.m3u8"), text.as_bytes());
                            }
                            SegmenterOutput::SegmentEnd { msn, duration } => {
                                playlist.end_segment(msn, duration)
                            }
                        }
                    }
                }
                MediaEvent::Clock { .. } => {}
                MediaEvent::Warning(w) => panic!("clean input gave a warning: {w}"),
            }
        }
    }
    assert!(parts > 0 && playlist_bytes > 0);
}

fn ffmpeg_hls(input: &Path, out: &Path) {
    let status = Command::new("ffmpeg")
        .args(["-hide_banner", "-loglevel", "error", "-y", "-i"])
        .arg(input)
        .args(["-c", "copy", "-bsf:a", "aac_adtstoasc"])
        .args(["-f", "hls", "-hls_segment_type", "fmp4", "-hls_time", "2"])
        .args(["-hls_playlist_type", "event"])
        .arg(out.join("index.m3u8"))
        .status()
        .expect("run ffmpeg");
    assert!(status.success(), "ffmpeg failed");
}

fn timed(f: impl FnOnce()) -> Duration {
    let start = Instant::now();
    f();
    start.elapsed()
}

fn min(runs: &[Duration]) -> Duration {
    runs.iter().copied().min().unwrap_or_default()
}
