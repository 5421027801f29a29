//! Segmenter rules on synthetic frames: fixed cases and properties.

use proptest::prelude::*;

use super::*;
use crate::fmp4::tests::parse_fragment;

fn video() -> TrackConfig {
    TrackConfig::H264 {
        sps: Bytes::from_static(&[0x67, 0x42, 0xc0, 0x1e]),
        pps: Bytes::from_static(&[0x68, 0xce, 0x3c, 0x80]),
        width: 320,
        height: 180,
        profile: 0x42,
        constraints: 0xc0,
        level: 0x1e,
    }
}

fn audio(sample_rate: u32) -> TrackConfig {
    TrackConfig::Aac {
        asc: Bytes::from_static(&[0x11, 0x90]),
        object_type: 2,
        sample_rate,
        channels: 2,
    }
}

fn frame(dts: u64, cts: i32, keyframe: bool, n: u32) -> Frame {
    Frame {
        dts,
        cts,
        keyframe,
        data: Bytes::from(n.to_be_bytes().to_vec()),
    }
}

fn run(seg: &mut Segmenter, frames: Vec<Frame>) -> Vec<SegmenterOutput> {
    let mut out = Vec::new();
    for f in frames {
        seg.push(f, &mut out);
    }
    seg.finish(&mut out);
    out
}

fn parts(out: &[SegmenterOutput]) -> Vec<&Part> {
    out.iter()
        .filter_map(|o| match o {
            SegmenterOutput::Part(p) => Some(p),
            SegmenterOutput::SegmentEnd { .. } => None,
        })
        .collect()
}

#[test]
fn thirty_fps_two_second_gop() {
    // 30 fps, keyframe every 60 frames, 4 s: two segments of 6 parts of 10 frames.
    let frames = (0..120u32)
        .map(|i| frame(1000 + u64::from(i) * 3000, 0, i % 60 == 0, i))
        .collect();
    let mut seg = Segmenter::new(video(), SegmenterOptions::default(), FirstMsn::Exactly(5));
    let out = run(&mut seg, frames);
    let p = parts(&out);
    assert_eq!(p.len(), 12);
    for (k, part) in p.iter().enumerate() {
        assert_eq!(part.msn, 5 + k as u64 / 6);
        assert_eq!(part.index, k as u32 % 6);
        assert_eq!(part.start_dts, 1000 + k as u64 * 30_000);
        assert_eq!(part.duration, Duration::from_nanos(333_333_333));
        assert_eq!(part.independent, k % 6 == 0);
        let f = parse_fragment(&part.bytes);
        assert_eq!(f.sequence, fragment_sequence(part.msn, part.index));
        assert_eq!(f.tfdt, part.start_dts);
        assert_eq!(f.entries.len(), 10);
    }
    let ends: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            SegmenterOutput::SegmentEnd { msn, duration } => Some((*msn, *duration)),
            SegmenterOutput::Part(_) => None,
        })
        .collect();
    let six = Duration::from_nanos(333_333_333) * 6;
    assert_eq!(ends, vec![(5, six), (6, six)]);
}

#[test]
fn segment_end_comes_as_soon_as_the_next_keyframe_arrives() {
    let mut seg = Segmenter::new(video(), SegmenterOptions::default(), FirstMsn::Exactly(0));
    let mut out = Vec::new();
    for i in 0..60u32 {
        seg.push(frame(u64::from(i) * 3000, 0, i == 0, i), &mut out);
    }
    assert!(!out
        .iter()
        .any(|o| matches!(o, SegmenterOutput::SegmentEnd { .. })));
    seg.push(frame(60 * 3000, 0, true, 60), &mut out);
    assert!(matches!(
        out.last(),
        Some(SegmenterOutput::SegmentEnd { msn: 0, .. })
    ));
    assert_eq!(parts(&out).len(), 6);
}

#[test]
fn leading_non_keyframes_are_dropped_and_long_gops_stretch_segments() {
    let frames = (0..200u32)
        .map(|i| frame(u64::from(i) * 3000, 0, i >= 3 && (i - 3) % 90 == 0, i))
        .collect();
    let mut seg = Segmenter::new(video(), SegmenterOptions::default(), FirstMsn::Exactly(0));
    let out = run(&mut seg, frames);
    let ends: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            SegmenterOutput::SegmentEnd { msn, duration } => Some((*msn, *duration)),
            SegmenterOutput::Part(_) => None,
        })
        .collect();
    // Keyframes every 3 s: segments of 3 s (90 frames), the last one 17 frames.
    assert_eq!(ends.len(), 3);
    assert_eq!(ends[0].1, Duration::from_nanos(333_333_333) * 9);
    assert_eq!(parts(&out)[0].start_dts, 9000);
}

#[test]
fn audio_cuts_without_keyframes() {
    let frames = (0..300u32)
        .map(|i| frame(u64::from(i) * 1024, 0, false, i))
        .collect();
    let mut seg = Segmenter::new(
        audio(48_000),
        SegmenterOptions::default(),
        FirstMsn::Exactly(0),
    );
    let out = run(&mut seg, frames);
    let p = parts(&out);
    // 1/3 s is 16000 ticks at 48 kHz: 15 frames (15360 ticks) per part.
    assert!(p.iter().all(|p| p.independent));
    assert_eq!(parse_fragment(&p[0].bytes).entries.len(), 15);
    // 2 s = 96000 ticks; the first cut after reaching it: 94 frames = 96256 ticks.
    let SegmenterOutput::SegmentEnd { msn: 0, duration } = out
        .iter()
        .find(|o| matches!(o, SegmenterOutput::SegmentEnd { .. }))
        .expect("a segment end")
    else {
        panic!("first segment is not msn 0");
    };
    assert!(*duration >= Duration::from_secs(2));
    assert!(*duration < Duration::from_millis(2022));
}

#[test]
fn lone_frame_gets_a_default_duration() {
    let mut seg = Segmenter::new(video(), SegmenterOptions::default(), FirstMsn::Exactly(0));
    let out = run(&mut seg, vec![frame(7, 0, true, 0)]);
    let p = parts(&out);
    assert_eq!(p.len(), 1);
    assert_eq!(parse_fragment(&p[0].bytes).entries[0].duration, Some(3000));
    assert_eq!(out.len(), 2);
}

#[test]
fn non_increasing_dts_keeps_the_timeline_moving() {
    let frames = vec![
        frame(9000, 0, true, 0),
        frame(12000, 0, false, 1),
        frame(12000, 0, false, 2),
        frame(6000, 0, false, 3),
        frame(9000, 0, false, 4),
    ];
    let mut seg = Segmenter::new(video(), SegmenterOptions::default(), FirstMsn::Exactly(0));
    let out = run(&mut seg, frames);
    let f = parse_fragment(&parts(&out)[0].bytes);
    let durations: Vec<_> = f.entries.iter().map(|e| e.duration).collect();
    assert_eq!(durations, vec![Some(3000); 5]);
}

#[test]
fn restart_after_finish_continues_numbering() {
    let mut seg = Segmenter::new(video(), SegmenterOptions::default(), FirstMsn::Exactly(0));
    let mut out = Vec::new();
    for i in 0..10u32 {
        seg.push(frame(u64::from(i) * 3000, 0, i == 0, i), &mut out);
    }
    seg.finish(&mut out);
    // New publish: timeline restarts; a delta frame first is dropped.
    seg.push(frame(5, 0, false, 0), &mut out);
    for i in 0..10u32 {
        seg.push(frame(100 + u64::from(i) * 3000, 0, i == 0, i), &mut out);
    }
    seg.finish(&mut out);
    let p = parts(&out);
    assert_eq!((p[0].msn, p[1].msn), (0, 1));
    assert_eq!(p[1].start_dts, 100);
    assert!(p[1].independent);
    assert_eq!(parse_fragment(&p[1].bytes).sequence, 1001);
}

/// A synthetic stream: frames and what the segmenter should make of them.
#[derive(Debug, Clone)]
struct Stream {
    config: TrackConfig,
    options: SegmenterOptions,
    frames: Vec<Frame>,
}

fn video_stream() -> impl Strategy<Value = Stream> {
    (
        prop::sample::select(vec![3600u64, 3003, 3000, 1800, 1500]),
        1usize..150,
        0usize..6,
        prop::sample::select(vec![0u64, (1 << 33) - 50_000, 1 << 40, u64::MAX / 4]),
        1usize..400,
        any::<bool>(),
        prop::sample::select(vec![
            (2_000_000u64, 333_334u64),
            (1_000_000, 200_000),
            (4_000_000, 1_000_000),
            (2_000_000, 50_000),
        ]),
        any::<u64>(),
    )
        .prop_map(
            |(frame_ticks, gop, lead, start, n, jitter, (seg_us, part_us), seed)| {
                let mut rng = seed;
                let mut next = || {
                    rng = rng.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
                    rng >> 33
                };
                let mut dts = start;
                let frames = (0..n)
                    .map(|i| {
                        let keyframe = i >= lead && (i - lead) % gop == 0;
                        let cts = (next() % 4) as i32 * frame_ticks as i32;
                        let f = frame(dts, cts, keyframe, i as u32);
                        dts += frame_ticks;
                        if jitter {
                            dts += next() % (frame_ticks / 10);
                        }
                        f
                    })
                    .collect();
                Stream {
                    config: video(),
                    options: SegmenterOptions {
                        segment_target: Duration::from_micros(seg_us),
                        part_target: Duration::from_micros(part_us),
                    },
                    frames,
                }
            },
        )
}

fn audio_stream() -> impl Strategy<Value = Stream> {
    (
        prop::sample::select(vec![44_100u32, 48_000]),
        prop::sample::select(vec![0u64, (1 << 33) - 5000, 1 << 40]),
        1usize..600,
    )
        .prop_map(|(rate, start, n)| Stream {
            config: audio(rate),
            options: SegmenterOptions::default(),
            frames: (0..n)
                .map(|i| frame(start + i as u64 * 1024, 0, true, i as u32))
                .collect(),
        })
}

fn check(stream: Stream) -> Result<(), TestCaseError> {
    let kind = stream.config.kind();
    let timescale = stream.config.timescale();
    let expected_samples = match kind {
        TrackKind::Audio => stream.frames.len(),
        TrackKind::Video => stream
            .frames
            .iter()
            .position(|f| f.keyframe)
            .map_or(0, |first| stream.frames.len() - first),
    };
    let mut seg = Segmenter::new(
        stream.config,
        stream.options,
        FirstMsn::Timeline { at_least: 42 },
    );
    let out = run(&mut seg, stream.frames);

    let mut samples = 0;
    let mut prev: Option<&Part> = None;
    let mut segment_parts = Duration::ZERO;
    let mut open_msn: Option<u64> = None;
    let mut last_msn = None;
    for o in &out {
        match o {
            SegmenterOutput::Part(p) => {
                let f = parse_fragment(&p.bytes);
                prop_assert_eq!(f.tfdt, p.start_dts);
                prop_assert_eq!(f.sequence, fragment_sequence(p.msn, p.index));
                prop_assert!(!f.entries.is_empty());
                let ticks: u64 = f
                    .entries
                    .iter()
                    .map(|e| u64::from(e.duration.unwrap_or(0)))
                    .sum();
                prop_assert_eq!(ticks_to_duration(ticks, timescale), p.duration);
                if f.entries.len() > 1 {
                    prop_assert!(
                        p.duration <= stream.options.part_target,
                        "part {:?} too long",
                        p.duration
                    );
                }
                let first_sync = f.entries[0].flags == Some(0x0200_0000);
                prop_assert_eq!(first_sync, p.independent);
                match open_msn {
                    None => {
                        // First part of a segment.
                        prop_assert!(p.independent, "segment starts with a non-keyframe");
                        prop_assert_eq!(p.index, 0);
                        match last_msn {
                            None => prop_assert!(p.msn >= 42),
                            Some(m) => prop_assert_eq!(p.msn, m + 1),
                        }
                        open_msn = Some(p.msn);
                        segment_parts = Duration::ZERO;
                    }
                    Some(msn) => {
                        prop_assert_eq!(p.msn, msn);
                        prop_assert_eq!(Some(p.index), prev.map(|q| q.index + 1));
                    }
                }
                if let Some(q) = prev {
                    prop_assert_eq!(
                        ticks_to_duration(p.start_dts - q.start_dts, timescale),
                        q.duration
                    );
                }
                segment_parts += p.duration;
                samples += f.entries.len();
                prev = Some(p);
            }
            SegmenterOutput::SegmentEnd { msn, duration } => {
                prop_assert_eq!(Some(*msn), open_msn);
                prop_assert_eq!(*duration, segment_parts);
                open_msn = None;
                last_msn = Some(*msn);
            }
        }
    }
    prop_assert_eq!(open_msn, None, "last segment not closed");
    prop_assert_eq!(samples, expected_samples);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn video_streams(stream in video_stream()) {
        check(stream)?;
    }

    #[test]
    fn audio_streams(stream in audio_stream()) {
        check(stream)?;
    }
}

#[test]
fn segments_reach_the_target_before_cutting() {
    // 25 fps with a keyframe every 25 frames (1 s): segments of exactly 2 s.
    let frames = (0..250u32)
        .map(|i| frame(u64::from(i) * 3600, 0, i % 25 == 0, i))
        .collect();
    let mut seg = Segmenter::new(video(), SegmenterOptions::default(), FirstMsn::Exactly(0));
    let out = run(&mut seg, frames);
    for o in &out {
        if let SegmenterOutput::SegmentEnd { duration, .. } = o {
            assert_eq!(*duration, Duration::from_secs(2));
        }
    }
}

#[test]
fn first_segment_is_numbered_by_its_timeline_slot() {
    // First keyframe at 5.1 s: slot 2 of 2 s.
    let frames = (0..10u32)
        .map(|i| frame(459_000 + u64::from(i) * 3000, 0, i == 0, i))
        .collect();
    let at_least = |n| FirstMsn::Timeline { at_least: n };
    let mut seg = Segmenter::new(video(), SegmenterOptions::default(), at_least(0));
    assert_eq!(parts(&run(&mut seg, frames))[0].msn, 2);
    // A room that already used numbers up to 9 never goes below 10.
    let frames = vec![frame(459_000, 0, true, 0)];
    let mut seg = Segmenter::new(video(), SegmenterOptions::default(), at_least(10));
    assert_eq!(parts(&run(&mut seg, frames))[0].msn, 10);
}

#[test]
fn a_late_joiner_cuts_and_numbers_like_one_there_from_the_start() {
    // 30 fps, keyframe every 30 frames (1 s), starting at 1.4 s like ffmpeg's muxer; audio at
    // 48 kHz alongside. The late segmenter starts 3.5 s in (mid-GOP, mid-segment).
    let video_frames = |from: u32| {
        (from..300u32)
            .map(|i| frame(126_000 + u64::from(i) * 3000, 0, i % 30 == 0, i))
            .collect::<Vec<_>>()
    };
    let audio_frames = |from: u32| {
        (from..500u32)
            .map(|i| frame(67_200 + u64::from(i) * 1024, 0, true, i))
            .collect::<Vec<_>>()
    };
    for (config, all, late) in [
        (video(), video_frames(0), video_frames(105)),
        (audio(48_000), audio_frames(0), audio_frames(164)),
    ] {
        let first = FirstMsn::Timeline { at_least: 0 };
        let mut a = Segmenter::new(config.clone(), SegmenterOptions::default(), first);
        let mut b = Segmenter::new(config, SegmenterOptions::default(), first);
        let from_start = run(&mut a, all);
        let joined = run(&mut b, late);
        let whole: std::collections::HashMap<_, _> = parts(&from_start)
            .into_iter()
            .map(|p| ((p.msn, p.index), p))
            .collect();
        let late_parts = parts(&joined);
        // Its first segment is partial; every later one is the same, byte for byte.
        let first_msn = late_parts[0].msn;
        let compared: Vec<_> = late_parts
            .iter()
            .filter(|p| p.msn > first_msn)
            .map(|p| {
                assert_eq!(
                    Some(p),
                    whole.get(&(p.msn, p.index)),
                    "part {}.{}",
                    p.msn,
                    p.index
                );
            })
            .collect();
        assert!(compared.len() > 10, "{}", compared.len());
    }
}

#[test]
fn renditions_agree_on_segment_numbers_for_the_same_time() {
    // Video keyframes every 2 s from 1.4 s; audio from 1.4 s: the slot of a segment start is
    // the same on both tracks, so are the numbers.
    let mut v = Segmenter::new(
        video(),
        SegmenterOptions::default(),
        FirstMsn::Timeline { at_least: 0 },
    );
    let mut a = Segmenter::new(
        audio(48_000),
        SegmenterOptions::default(),
        FirstMsn::Timeline { at_least: 0 },
    );
    let video = run(
        &mut v,
        (0..300u32)
            .map(|i| frame(126_000 + u64::from(i) * 3000, 0, i % 60 == 0, i))
            .collect(),
    );
    let audio = run(
        &mut a,
        (0..470u32)
            .map(|i| frame(67_200 + u64::from(i) * 1024, 0, true, i))
            .collect(),
    );
    let starts = |out: &[SegmenterOutput], timescale: u64| -> Vec<(u64, u64)> {
        parts(out)
            .into_iter()
            .filter(|p| p.index == 0)
            .map(|p| (p.msn, p.start_dts * 1000 / timescale))
            .collect()
    };
    let v = starts(&video, 90_000);
    let a = starts(&audio, 48_000);
    assert_eq!(
        v.iter().map(|s| s.0).collect::<Vec<_>>(),
        vec![0, 1, 2, 3, 4]
    );
    assert_eq!(a.len(), 6);
    for (vs, as_) in v.iter().zip(&a) {
        // Same number, same 2 s slot (audio cuts at the slot's first frame, video at its
        // keyframe 1.4 s into it).
        assert_eq!(vs.0, as_.0);
        assert_eq!(vs.1 / 2000, as_.1 / 2000, "{vs:?} {as_:?}");
    }
}

#[test]
fn a_wall_clock_offset_numbers_segments_by_wall_clock_slot() {
    // Two segmenters of one stream, the second started 3 s later (a backup origin joining
    // late), given the same offset: pts 0 is 2025-11-30T10:40:00.000Z.
    let wall_ms: u64 = 1_764_499_200_000;
    let frames = |from: u32| -> Vec<Frame> {
        (from..240u32)
            .map(|i| frame(u64::from(i) * 3000, 0, i % 60 == 0, i))
            .collect()
    };
    let numbered = |from: u32| {
        let mut seg = Segmenter::new(
            video(),
            SegmenterOptions::default(),
            FirstMsn::Timeline { at_least: 0 },
        );
        seg.set_timeline_offset(wall_ms * 90);
        let out = run(&mut seg, frames(from));
        parts(&out)
            .iter()
            .map(|p| (p.msn, p.index, p.time))
            .collect::<Vec<_>>()
    };
    let first = numbered(0);
    // Segment numbers are wall-clock 2 s slots; each part's time is its wall clock in ticks.
    assert_eq!(first[0], (wall_ms / 2000, 0, wall_ms * 90));
    assert_eq!(first.last().map(|p| p.0), Some(wall_ms / 2000 + 3));
    // The late joiner numbers and times the same media alike.
    let late = numbered(90);
    let from = first.iter().position(|p| p == &late[0]).expect("same part");
    assert_eq!(&first[from..], &late[..]);
}

/// Video (30 fps, a keyframe every 45 frames: 1.5 s, not a multiple of the segment target)
/// leads, AAC at 48 kHz follows, interleaved as a muxer would (audio a little ahead): every
/// audio part has the number of the video part covering the same time, starts within half an
/// AAC frame of it, and none is a sliver.
#[test]
fn audio_follows_the_video_cuts() {
    let options = SegmenterOptions::default();
    let first = FirstMsn::Timeline { at_least: 0 };
    let mut v = Segmenter::new(video(), options, first);
    let mut a = Segmenter::new(audio(48_000), options, first);
    v.lead();
    a.follow();
    let (mut vout, mut aout) = (Vec::new(), Vec::new());
    // 10 s of each; audio starts 0.2 s before the first video frame (dropped: before the first
    // cut), and is pushed 0.1 s ahead of the video it goes with.
    let video_frames = (0..300u64).map(|i| (i * 3000 + 18_000, i));
    let mut audio_frames = (0..480u64).map(|i| i * 1024).peekable();
    for (pts, i) in video_frames {
        while let Some(&t) = audio_frames.peek() {
            if t * 90_000 / 48_000 > pts + 9_000 {
                break;
            }
            a.push(frame(t, 0, true, t as u32), &mut aout);
            audio_frames.next();
        }
        v.push(frame(pts, 0, i % 45 == 0, i as u32), &mut vout);
        for cut in v.take_cuts() {
            a.cut_at(cut.rescale(90_000, 48_000), &mut aout);
        }
    }
    v.finish(&mut vout);
    for cut in v.take_cuts() {
        a.cut_at(cut.rescale(90_000, 48_000), &mut aout);
    }
    for t in audio_frames {
        a.push(frame(t, 0, true, t as u32), &mut aout);
    }
    a.finish(&mut aout);

    let (vp, ap) = (parts(&vout), parts(&aout));
    assert!(vp.len() > 25, "{} video parts", vp.len());
    // Every video part but the last has its audio twin; the first audio part starts with the
    // first video part (audio before it was dropped).
    for (k, video) in vp.iter().enumerate().take(vp.len() - 1) {
        let audio = ap
            .iter()
            .find(|p| (p.msn, p.index) == (video.msn, video.index))
            .unwrap_or_else(|| panic!("no audio part {}.{}", video.msn, video.index));
        let (vs, as_) = (video.time as f64 / 90_000.0, audio.time as f64 / 48_000.0);
        assert!(
            (vs - as_).abs() <= 512.0 / 48_000.0,
            "part {k}: video {vs} audio {as_}"
        );
        let (vd, ad) = (video.duration.as_secs_f64(), audio.duration.as_secs_f64());
        assert!(
            (vd - ad).abs() <= 1024.0 / 48_000.0,
            "part {k}: {vd} vs {ad}"
        );
    }
    assert_eq!((ap[0].msn, ap[0].index), (vp[0].msn, vp[0].index));
    // Segments end alike.
    let ends = |out: &[SegmenterOutput]| -> Vec<u64> {
        out.iter()
            .filter_map(|o| match o {
                SegmenterOutput::SegmentEnd { msn, .. } => Some(*msn),
                _ => None,
            })
            .collect()
    };
    assert_eq!(ends(&vout), ends(&aout));
}

/// An audio-only stream: no cut ever comes, so the follower cuts on its own once it has
/// waited its bound, dropping what it held.
#[test]
fn a_follower_without_a_leader_cuts_on_its_own() {
    let options = SegmenterOptions::default();
    let mut a = Segmenter::new(audio(48_000), options, FirstMsn::Timeline { at_least: 0 });
    a.follow();
    let frames = (0..48_000u64 * 12 / 1024)
        .map(|i| frame(i * 1024, 0, true, i as u32))
        .collect();
    let out = run(&mut a, frames);
    let p = parts(&out);
    assert!(p.len() > 10, "{} parts", p.len());
    let waited = FOLLOW_WAIT_SEGMENTS as f64 * 2.0;
    let first = p[0].time as f64 / 48_000.0;
    assert!(first >= waited - 0.1 && first <= waited + 0.1, "{first}");
    assert!(p.iter().all(|p| p.duration <= options.part_target));
}
