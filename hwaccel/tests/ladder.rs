//! The default ladder on a real 1080p30 source with B-frames, made at test time by the ffmpeg
//! CLI (libx264), demuxed by `codec::ingest::Demuxer`, checked by `ffprobe` decoding every
//! rendition. Needs `ffmpeg` and `ffprobe` on PATH.

use std::collections::BTreeSet;
use std::process::Command;
use std::time::{Duration, Instant};

use codec::ingest::{Demuxer, MediaEvent};
use codec::{Frame, TrackConfig};
use hwaccel::{default_ladder, plan, BackendKind, Ladder, LadderOptions, LadderOutput};

const SECONDS: u32 = 3;
const FPS: u32 = 30;

fn make_source(dir: &std::path::Path) -> Vec<u8> {
    let path = dir.join("source.ts");
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-f", "lavfi", "-i"])
        .arg(format!("testsrc2=size=1920x1080:rate={FPS}"))
        .args(["-t", &SECONDS.to_string()])
        .args([
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-bf",
            "2",
            "-g",
            "30",
        ])
        .args(["-pix_fmt", "yuv420p", "-f", "mpegts", "-y"])
        .arg(&path)
        .status()
        .expect("ffmpeg on PATH");
    assert!(status.success(), "ffmpeg failed to make the source");
    std::fs::read(&path).expect("read source")
}

fn demux(ts: &[u8]) -> (TrackConfig, Vec<Frame>) {
    let mut demuxer = Demuxer::new();
    let mut events = Vec::new();
    demuxer.push(ts, &mut events);
    demuxer.finish(&mut events);
    let mut config = None;
    let mut frames = Vec::new();
    for event in events {
        match event {
            MediaEvent::Track { config: c, .. } if matches!(c, TrackConfig::H264 { .. }) => {
                config.get_or_insert(c);
            }
            MediaEvent::Frame { frame, .. } if config.is_some() => frames.push(frame),
            _ => {}
        }
    }
    (config.expect("an h.264 track"), frames)
}

/// Writes a rung as an Annex B elementary stream (parameter sets before every IDR).
fn write_annexb(path: &std::path::Path, config: &TrackConfig, frames: &[&Frame]) {
    let TrackConfig::H264 { sps, pps, .. } = config else {
        panic!("video config")
    };
    let mut out = Vec::new();
    for f in frames {
        if f.keyframe {
            for ps in [sps, pps] {
                out.extend_from_slice(&[0, 0, 0, 1]);
                out.extend_from_slice(ps);
            }
        }
        let mut rest = &f.data[..];
        while rest.len() >= 4 {
            let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            out.extend_from_slice(&[0, 0, 0, 1]);
            out.extend_from_slice(&rest[4..4 + len]);
            rest = &rest[4 + len..];
        }
    }
    std::fs::write(path, out).expect("write rung");
}

#[test]
fn default_ladder_is_idr_aligned_and_decodable() {
    let dir = tempfile::tempdir().expect("temp dir");
    let (source_config, source) = demux(&make_source(dir.path()));
    assert_eq!(source.len(), (SECONDS * FPS) as usize);
    assert!(source.iter().any(|f| f.cts != 0), "source has B-frames");
    // The first picture of each 1 s slot of the timeline (and the very first one).
    let mut pts: Vec<u64> = source.iter().map(|f| f.pts() as u64).collect();
    pts.sort_unstable();
    let slot = |t: u64| t / 90_000;
    let slot_starts: BTreeSet<u64> = pts
        .iter()
        .enumerate()
        .filter(|&(i, &t)| i == 0 || slot(t) != slot(pts[i - 1]))
        .map(|(_, &t)| t)
        .collect();
    assert!(slot_starts.len() >= SECONDS as usize, "{slot_starts:?}");

    let mut rungs = default_ladder();
    for r in &mut rungs {
        r.preset = "ultrafast".into();
    }
    let rungs = plan(&rungs, 1920, 1080);
    let options = LadderOptions {
        backend: BackendKind::Software,
        segment_target: Duration::from_secs(1),
        threads: 2,
    };
    let mut ladder = Ladder::new(&source_config, rungs, options).expect("ladder");
    let started = Instant::now();
    let mut out = Vec::new();
    for f in &source {
        ladder.push(f, &mut out).expect("push");
    }
    ladder.finish(&mut out).expect("finish");
    let elapsed = started.elapsed();
    println!(
        "ladder: {} source frames, 3 rungs, {:.1} fps ({:.2?})",
        source.len(),
        source.len() as f64 / elapsed.as_secs_f64(),
        elapsed
    );

    let expected = [
        ("1080p", 1920, 1080),
        ("720p", 1280, 720),
        ("480p", 854, 480),
    ];
    let mut idr_sets = Vec::new();
    for (name, width, height) in expected {
        let configs: Vec<&TrackConfig> = out
            .iter()
            .filter_map(|o| match o {
                LadderOutput::Track { rung, config } if rung == name => Some(config),
                _ => None,
            })
            .collect();
        assert_eq!(configs.len(), 1, "{name}: one track config");
        let TrackConfig::H264 {
            width: w,
            height: h,
            ..
        } = configs[0]
        else {
            panic!("{name}: video config")
        };
        assert_eq!((*w, *h), (width, height), "{name}");
        let frames: Vec<&Frame> = out
            .iter()
            .filter_map(|o| match o {
                LadderOutput::Frame { rung, frame } if rung == name => Some(frame),
                _ => None,
            })
            .collect();
        assert_eq!(frames.len(), source.len(), "{name}: frame count");
        assert!(frames[0].keyframe, "{name}: starts with an idr");
        assert!(
            frames.windows(2).all(|p| p[0].dts <= p[1].dts),
            "{name}: dts order"
        );
        let idrs: BTreeSet<u64> = frames
            .iter()
            .filter(|f| f.keyframe)
            .map(|f| f.dts)
            .collect();
        assert_eq!(
            idrs, slot_starts,
            "{name}: an idr at the start of every 1 s slot"
        );
        idr_sets.push(idrs);

        let path = dir.path().join(format!("{name}.h264"));
        write_annexb(&path, configs[0], &frames);
        let probe = Command::new("ffprobe")
            .args(["-v", "error", "-count_frames", "-select_streams", "v:0"])
            .args([
                "-show_entries",
                "stream=width,height,nb_read_frames",
                "-of",
                "csv=p=0",
            ])
            .arg(&path)
            .output()
            .expect("ffprobe on PATH");
        let stderr = String::from_utf8_lossy(&probe.stderr);
        assert!(
            probe.status.success() && stderr.trim().is_empty(),
            "{name}: {stderr}"
        );
        assert_eq!(
            String::from_utf8_lossy(&probe.stdout).trim(),
            format!("{width},{height},{}", source.len()),
            "{name}: ffprobe"
        );
    }
    assert!(
        idr_sets.windows(2).all(|p| p[0] == p[1]),
        "idrs at identical dts: {idr_sets:?}"
    );
    assert!(!out
        .iter()
        .any(|o| matches!(o, LadderOutput::Fallback { .. })));
}
