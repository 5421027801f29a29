//! Packaging throughput: MPEG-TS bytes in, CMAF parts and LL-HLS playlists out.
//!
//! Measures daihuo's sans-IO path (demuxer, one segmenter per track, a media playlist rendered
//! after every part, as a live origin does) on a 1080p30 H.264 + AAC transport stream, and,
//! in the same run on the same file, `ffmpeg -c copy -bsf:a aac_adtstoasc -f hls
//! -hls_segment_type fmp4` (the filter ffmpeg 5.1 requires for ADTS input) writing to
//! tmpfs. Reports MB/s of input for both and the ratio. Run with `make bench` or
//! `cargo bench -p daihuo --bench packaging`; `PACKAGING_SECONDS` sets the input length.

use std::path::Path;
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
        .unwrap_or(30);
    let (dir, input) = daihuo::bench::input_1080p(seconds);
    let ts = std::fs::read(&input).expect("read input");
    let mb = ts.len() as f64 / 1e6;
    println!("input: 1080p30 H.264 + AAC, {seconds} s, {mb:.1} MB");

    let ours = best_of(|| package(&ts));
    let theirs = best_of(|| ffmpeg_hls(&input, dir.path()));
    let ours_mbps = mb / ours.as_secs_f64();
    let theirs_mbps = mb / theirs.as_secs_f64();
    println!(
        "daihuo codec: {:8.1} MB/s ({:.3} s, best of {ROUNDS})",
        ours_mbps,
        ours.as_secs_f64()
    );
    println!(
        "ffmpeg hls:   {:8.1} MB/s ({:.3} s, best of {ROUNDS})",
        theirs_mbps,
        theirs.as_secs_f64()
    );
    println!("ratio: {:.2}x ffmpeg", ours_mbps / theirs_mbps);
}

/// Demux, segment and package every track, rendering the media playlist after each part.
fn package(ts: &[u8]) {
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
                    std::hint::black_box(init);
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
                                std::hint::black_box(p.bytes);
                                playlist_bytes += playlist.render(SkipRequest::No, &[]).len();
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

fn ffmpeg_hls(input: &Path, dir: &Path) {
    let out = dir.join("hls");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).expect("output directory");
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

fn best_of(mut f: impl FnMut()) -> Duration {
    (0..ROUNDS)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed()
        })
        .min()
        .unwrap_or_default()
}
