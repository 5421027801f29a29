//! Segmenter + media playlist end to end, played by ffmpeg's HLS demuxer.

use std::process::Command;

use bytes::Bytes;

use super::*;
use crate::fmp4::tests::{h264_access_units, have, probe, run, TempDir};
use crate::{fmp4, Frame, TrackConfig};

#[test]
fn ffmpeg_plays_the_rendition() {
    if !have("ffmpeg") || !have("ffprobe") {
        eprintln!("skipped: ffmpeg/ffprobe not installed");
        return;
    }
    let dir = TempDir::new("hls-e2e");
    let raw = dir.0.join("x.264");
    run(Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x180:rate=30",
        ])
        .args(["-c:v", "libx264", "-bf", "0", "-g", "30", "-t", "5"])
        .args(["-bsf:v", "h264_metadata=aud=insert", "-f", "h264"])
        .arg(&raw));
    let data = std::fs::read(&raw).expect("read h264");
    let (sps, pps, aus) = h264_access_units(&data);
    assert_eq!(aus.len(), 150);
    let config = TrackConfig::H264 {
        width: 320,
        height: 180,
        profile: sps[1],
        constraints: sps[2],
        level: sps[3],
        sps: Bytes::from(sps),
        pps: Bytes::from(pps),
    };
    std::fs::write(
        dir.0.join("init.mp4"),
        fmp4::init_segment(&config).expect("init"),
    )
    .expect("write init");

    let mut segmenter = Segmenter::new(config, SegmenterOptions::default(), FirstMsn::Exactly(100));
    let mut playlist = MediaPlaylist::new(PlaylistOptions::default());
    let mut out = Vec::new();
    for (i, (keyframe, data)) in aus.into_iter().enumerate() {
        let frame = Frame {
            dts: (1 << 33) - 30_000 + i as u64 * 3000,
            cts: 0,
            keyframe,
            data,
        };
        segmenter.push(frame, &mut out);
    }
    segmenter.finish(&mut out);
    let mut segment = Vec::new();
    let mut parts = 0;
    for o in out {
        match o {
            SegmenterOutput::Part(p) => {
                std::fs::write(
                    dir.0.join(format!("part{}.{}.m4s", p.msn, p.index)),
                    &p.bytes,
                )
                .expect("write part");
                segment.extend_from_slice(&p.bytes);
                playlist.push_part(p.msn, p.index, p.duration, p.independent, 1_700_000_000_000);
                parts += 1;
            }
            SegmenterOutput::SegmentEnd { msn, duration } => {
                std::fs::write(
                    dir.0.join(format!("seg{msn}.m4s")),
                    std::mem::take(&mut segment),
                )
                .expect("write segment");
                playlist.end_segment(msn, duration);
            }
        }
    }
    // Keyframes every second from 1/3 s before the 33-bit wrap: the first segment ends at the
    // first keyframe of the next 2 s timeline slot (1 s in), then 2 s segments.
    assert_eq!(parts, 15);
    assert_eq!(playlist.last_part(), Some((102, 5)));
    playlist.set_ended();
    let text = playlist.render(SkipRequest::No, &[]);
    assert_eq!(text.matches("#EXTINF:2.00000,").count(), 2);
    assert_eq!(text.matches("#EXTINF:1.00000,").count(), 1);
    assert_eq!(text.matches("#EXTINF:").count(), 3);
    let m3u8 = dir.0.join("index.m3u8");
    std::fs::write(&m3u8, text).expect("write playlist");

    let (frames, errors) = probe(&m3u8);
    assert_eq!(errors, "", "decode errors");
    assert_eq!(frames, 150);
}

#[test]
fn passthrough_names_follow_picture_height() {
    use crate::TrackConfig;
    let v = TrackConfig::H264 {
        sps: bytes::Bytes::new(),
        pps: bytes::Bytes::new(),
        width: 1280,
        height: 720,
        profile: 100,
        constraints: 0,
        level: 31,
    };
    assert_eq!(super::passthrough_name(&v), "720p");
    let a = TrackConfig::Aac {
        asc: bytes::Bytes::new(),
        object_type: 2,
        sample_rate: 48_000,
        channels: 2,
    };
    assert_eq!(super::passthrough_name(&a), "audio");
    assert!(super::is_shared_audio(&a));
    assert!(!super::is_shared_audio(&v));
}
