//! Ladder tests on a synthetic source encoded here with libx264 (no external tools): IDR
//! alignment, copy rungs, fallback through the injected failure hook, shedding.

use std::time::Duration;

use bytes::Bytes;
use codec::{Frame, TrackConfig};
use ffmpeg_next::{format::Pixel, frame, picture};

use super::*;
use crate::encode::{EncoderSettings, VideoEncoder};

const TICKS_PER_FRAME: i64 = 3000;

/// A 30 fps 320x180 H.264 source: `frames` frames, an IDR every `gop` frames.
fn synthetic_source(frames: usize, gop: usize) -> (TrackConfig, Vec<Frame>) {
    let (w, h) = (320u32, 180u32);
    let settings = EncoderSettings {
        width: w,
        height: h,
        format: Pixel::YUV420P,
        bitrate: 400_000,
        max_bitrate: 500_000,
        profile: "high".into(),
        preset: "ultrafast".into(),
        threads: 1,
        frame_rate: (30, 1),
    };
    let mut enc = VideoEncoder::open(BackendKind::Software, &settings).expect("libx264");
    let mut packets = Vec::new();
    for i in 0..frames {
        let mut pic = frame::Video::new(Pixel::YUV420P, w, h);
        let stride = pic.stride(0);
        for (n, px) in pic.data_mut(0).iter_mut().enumerate() {
            let (x, y) = (n % stride, n / stride);
            *px = ((x + y * 2 + i * 5) % 220 + 16) as u8;
        }
        pic.data_mut(1).fill(110);
        pic.data_mut(2).fill(140);
        pic.set_pts(Some(i as i64 * TICKS_PER_FRAME));
        pic.set_kind(if i % gop == 0 {
            picture::Type::I
        } else {
            picture::Type::None
        });
        enc.send(&pic).expect("encode");
        while let Some(p) = enc.receive().expect("receive") {
            packets.push(p);
        }
    }
    enc.send_eof().expect("eof");
    while let Some(p) = enc.receive().expect("receive") {
        packets.push(p);
    }
    let first = codec::h264::to_avcc(&packets[0].annexb);
    let config = codec::h264::track_config(first.sps.expect("sps"), first.pps.expect("pps"))
        .expect("config");
    let frames = packets
        .iter()
        .map(|p| {
            let au = codec::h264::to_avcc(&p.annexb);
            Frame {
                dts: p.pts as u64,
                cts: 0,
                keyframe: au.keyframe,
                data: Bytes::from(au.data),
            }
        })
        .collect();
    (config, frames)
}

fn rung(name: &str, width: u16, height: u16, copy: bool) -> RungSpec {
    RungSpec {
        name: name.into(),
        width,
        height,
        bitrate: 300_000,
        max_bitrate: 360_000,
        profile: "main".into(),
        preset: "ultrafast".into(),
        copy,
    }
}

fn options() -> LadderOptions {
    LadderOptions {
        backend: BackendKind::Software,
        segment_target: Duration::from_secs(1),
        threads: 1,
    }
}

fn run(ladder: &mut Ladder, source: &[Frame]) -> Vec<LadderOutput> {
    let mut out = Vec::new();
    for f in source {
        ladder.push(f, &mut out).expect("push");
    }
    ladder.finish(&mut out).expect("finish");
    out
}

fn frames_of<'a>(out: &'a [LadderOutput], rung: &str) -> Vec<&'a Frame> {
    out.iter()
        .filter_map(|o| match o {
            LadderOutput::Frame { rung: r, frame } if r == rung => Some(frame),
            _ => None,
        })
        .collect()
}

fn idr_indices(frames: &[&Frame]) -> Vec<usize> {
    (0..frames.len()).filter(|&i| frames[i].keyframe).collect()
}

#[test]
fn idrs_start_every_timeline_slot_whatever_the_source_gop() {
    let (config, source) = synthetic_source(136, 45);
    let rungs = vec![rung("90p", 160, 90, false), rung("180p", 320, 180, false)];
    let mut ladder = Ladder::new(&config, rungs, options()).expect("ladder");
    let out = run(&mut ladder, &source);
    for name in ["180p", "90p"] {
        let frames = frames_of(&out, name);
        assert_eq!(frames.len(), 136, "{name}");
        assert_eq!(idr_indices(&frames), vec![0, 30, 60, 90, 120], "{name}");
        for (i, f) in frames.iter().enumerate() {
            assert_eq!(f.dts, i as u64 * 3000);
            assert_eq!(f.cts, 0);
        }
        let first = out
            .iter()
            .position(|o| matches!(o, LadderOutput::Track { rung, .. } if rung == name));
        let first_frame = out
            .iter()
            .position(|o| matches!(o, LadderOutput::Frame { rung, .. } if rung == name));
        assert!(first < first_frame, "{name}: track before frames");
    }
    let sizes: Vec<(u16, u16)> = out
        .iter()
        .filter_map(|o| match o {
            LadderOutput::Track {
                config: TrackConfig::H264 { width, height, .. },
                ..
            } => Some((*width, *height)),
            _ => None,
        })
        .collect();
    assert_eq!(sizes, vec![(320, 180), (160, 90)]);
    assert_eq!(
        ladder.backends(),
        vec![
            ("180p".to_string(), BackendKind::Software),
            ("90p".to_string(), BackendKind::Software)
        ]
    );
}

#[test]
fn copy_rung_passes_the_source_through() {
    let (config, source) = synthetic_source(61, 30);
    let rungs = vec![rung("180p", 320, 180, true), rung("90p", 160, 90, false)];
    let mut ladder = Ladder::new(&config, rungs, options()).expect("ladder");
    let out = run(&mut ladder, &source);
    assert_eq!(
        out[0],
        LadderOutput::Track {
            rung: "180p".into(),
            config: config.clone()
        }
    );
    let copied: Vec<Frame> = frames_of(&out, "180p").into_iter().cloned().collect();
    assert_eq!(copied, source);
    let encoded = frames_of(&out, "90p");
    assert_eq!(idr_indices(&encoded), vec![0, 30, 60]);
    assert_eq!(
        ladder.backends(),
        vec![("90p".to_string(), BackendKind::Software)]
    );
}

#[test]
fn failing_encoder_falls_back_and_restarts_with_an_idr() {
    let (config, source) = synthetic_source(60, 30);
    let rungs = vec![rung("180p", 320, 180, false), rung("90p", 160, 90, false)];
    let mut ladder = Ladder::new(&config, rungs, options()).expect("ladder");
    assert!(ladder.inject_encoder_failure("180p", 10));
    assert!(!ladder.inject_encoder_failure("nope", 1));
    let out = run(&mut ladder, &source);
    let fallbacks: Vec<&LadderOutput> = out
        .iter()
        .filter(|o| matches!(o, LadderOutput::Fallback { .. }))
        .collect();
    assert_eq!(fallbacks.len(), 1);
    let LadderOutput::Fallback { rung, reason } = fallbacks[0] else {
        unreachable!()
    };
    assert_eq!(rung, "180p");
    assert!(reason.starts_with("x264 encoder failed: "), "{reason}");
    // Nothing lost: the picture that failed is re-encoded, as an IDR, by the new encoder.
    let frames = frames_of(&out, "180p");
    assert_eq!(frames.len(), 60);
    assert_eq!(idr_indices(&frames), vec![0, 10, 30]);
    // The fallback is announced before the rung's next frame.
    let at = out
        .iter()
        .position(|o| matches!(o, LadderOutput::Fallback { .. }))
        .expect("fallback");
    let next = out[at..]
        .iter()
        .find_map(|o| match o {
            LadderOutput::Frame { rung, frame } if rung == "180p" => Some(frame),
            _ => None,
        })
        .expect("frames after the fallback");
    assert!(next.keyframe);
    assert_eq!(next.dts, 10 * 3000);
    // The other rung is untouched.
    assert_eq!(idr_indices(&frames_of(&out, "90p")), vec![0, 30]);
}

/// `NvencDirect` where it cannot open (no feature, no driver, no NVENC engine: this CI
/// machine) gives a working ladder: every rung falls back to libx264 at open, fed the NV12
/// pictures an NVENC rung is scaled to, and says so before its first frame. Where NVENC direct
/// opens, the rungs report it instead.
#[test]
fn nvenc_direct_falls_back_to_x264_when_it_cannot_open() {
    let (config, source) = synthetic_source(61, 30);
    let rungs = vec![rung("180p", 320, 180, false), rung("90p", 160, 90, false)];
    let options = LadderOptions {
        backend: BackendKind::NvencDirect,
        ..options()
    };
    let mut ladder = Ladder::new(&config, rungs, options).expect("ladder opens");
    let out = run(&mut ladder, &source);
    let fallbacks: Vec<(&str, &str)> = out
        .iter()
        .filter_map(|o| match o {
            LadderOutput::Fallback { rung, reason } => Some((rung.as_str(), reason.as_str())),
            _ => None,
        })
        .collect();
    let names = ["180p".to_string(), "90p".to_string()];
    if cfg!(feature = "nvenc") && fallbacks.is_empty() {
        assert_eq!(
            ladder.backends(),
            names.map(|n| (n, BackendKind::NvencDirect)).to_vec()
        );
    } else {
        println!("{fallbacks:?}");
        assert_eq!(
            fallbacks.iter().map(|(r, _)| *r).collect::<Vec<_>>(),
            vec!["180p", "90p"]
        );
        for (_, reason) in &fallbacks {
            assert!(
                reason.starts_with("cannot open nvenc encoder: "),
                "{reason}"
            );
            if !cfg!(feature = "nvenc") {
                assert!(
                    reason.ends_with("built without the nvenc feature"),
                    "{reason}"
                );
            }
        }
        assert_eq!(
            ladder.backends(),
            names.map(|n| (n, BackendKind::Software)).to_vec()
        );
        // Announced before anything else.
        assert!(matches!(out[0], LadderOutput::Fallback { .. }));
        assert!(matches!(out[1], LadderOutput::Fallback { .. }));
    }
    for name in ["180p", "90p"] {
        let frames = frames_of(&out, name);
        assert_eq!(frames.len(), 61, "{name}");
        assert_eq!(idr_indices(&frames), vec![0, 30, 60], "{name}");
        for (i, f) in frames.iter().enumerate() {
            assert_eq!(f.dts, i as u64 * 3000, "{name}");
        }
    }
    let sizes: Vec<(u16, u16)> = out
        .iter()
        .filter_map(|o| match o {
            LadderOutput::Track {
                config: TrackConfig::H264 { width, height, .. },
                ..
            } => Some((*width, *height)),
            _ => None,
        })
        .collect();
    assert_eq!(sizes, vec![(320, 180), (160, 90)]);
}

#[test]
fn software_failure_without_hook_is_an_error_not_a_panic() {
    let (config, _) = synthetic_source(2, 30);
    let bad = TrackConfig::Aac {
        asc: Bytes::new(),
        object_type: 2,
        sample_rate: 48_000,
        channels: 2,
    };
    assert!(matches!(
        Ladder::new(&bad, vec![rung("90p", 160, 90, false)], options()),
        Err(LadderError::NotH264)
    ));
    assert!(matches!(
        Ladder::new(&config, vec![], options()),
        Err(LadderError::NoRungs)
    ));
    assert!(matches!(
        Ladder::new(&config, vec![rung("odd", 161, 90, false)], options()),
        Err(LadderError::InvalidRung { .. })
    ));
}

#[test]
fn garbage_input_does_not_panic() {
    let (config, source) = synthetic_source(10, 30);
    let mut ladder =
        Ladder::new(&config, vec![rung("90p", 160, 90, false)], options()).expect("ladder");
    let mut out = Vec::new();
    ladder.push(&source[0], &mut out).expect("first frame");
    for (i, data) in [
        Bytes::from_static(&[0, 0, 0, 9, 1, 2]),
        Bytes::from_static(&[0xff; 64]),
        Bytes::new(),
        Bytes::from_static(&[0, 0, 0, 3, 0x65, 0xff, 0xff]),
    ]
    .into_iter()
    .enumerate()
    {
        let f = Frame {
            dts: 3000 * (i as u64 + 1),
            cts: 0,
            keyframe: i % 2 == 1,
            data,
        };
        // Either accepted and skipped, or a typed error: never a panic.
        let _ = ladder.push(&f, &mut out);
    }
    let _ = ladder.finish(&mut out);
}

#[test]
fn sheds_smallest_rung_but_never_the_last() {
    let (config, _) = synthetic_source(2, 30);
    let rungs = vec![
        rung("180p", 320, 180, true),
        rung("90p", 160, 90, false),
        rung("144p", 256, 144, false),
    ];
    let mut ladder = Ladder::new(&config, rungs, options()).expect("ladder");
    assert_eq!(ladder.shed_one().as_deref(), Some("90p"));
    assert_eq!(ladder.shed_one().as_deref(), Some("144p"));
    // Only the copy rung is left.
    assert_eq!(ladder.shed_one(), None);

    let rungs = vec![rung("90p", 160, 90, false), rung("144p", 256, 144, false)];
    let mut ladder = Ladder::new(&config, rungs, options()).expect("ladder");
    assert_eq!(ladder.shed_one().as_deref(), Some("90p"));
    assert_eq!(ladder.shed_one(), None);
    assert_eq!(ladder.backends().len(), 1);
}

#[test]
fn ladder_moves_to_its_own_thread() {
    fn assert_send<T: Send>() {}
    assert_send::<Ladder>();
}
