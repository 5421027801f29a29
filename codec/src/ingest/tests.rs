use proptest::prelude::*;

use super::*;
use crate::ts::tests::synth::{shift_timestamps, Muxer, AUDIO_PID, VIDEO_PID};
use crate::ts::{TsError, MAX_PES_SIZE};

/// 3 s of ffmpeg output: libx264 High 320x180 30 fps, GOP 30, 2 B-frames (PID 0x100), and
/// AAC-LC 48 kHz mono (PID 0x101). See `codec/tests/data/README.md`.
const SMALL: &[u8] = include_bytes!("../../tests/data/small.ts");
/// 1 s of AAC-LC 44.1 kHz stereo (PID 0x100) and MP2 (PID 0x101), no video.
const AUDIO_ONLY: &[u8] = include_bytes!("../../tests/data/audio_only.ts");

/// SPS/PPS for 640x360 Main profile (x264).
const SPS_640X360: &[u8] = &[
    0x67, 0x4d, 0x40, 0x1e, 0xec, 0xa0, 0x50, 0x17, 0xfc, 0xb8, 0x08, 0x80, 0x00, 0x00, 0x03, 0x00,
    0x80, 0x00, 0x00, 0x1e, 0x07, 0x8b, 0x16, 0xcb,
];
const PPS_640X360: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb, 0x20];

fn demux_chunked(data: &[u8], chunk: usize) -> Vec<MediaEvent> {
    let mut demux = Demuxer::new();
    let mut out = Vec::new();
    for piece in data.chunks(chunk.max(1)) {
        demux.push(piece, &mut out);
    }
    demux.finish(&mut out);
    out
}

#[derive(Default, Debug)]
struct Summary {
    tracks: Vec<(u16, TrackConfig)>,
    frames: BTreeMap<u16, Vec<Frame>>,
    warnings: Vec<IngestError>,
    clocks: Vec<(u64, i64)>,
}

impl Summary {
    fn of(events: &[MediaEvent]) -> Self {
        let mut s = Summary::default();
        for event in events {
            match event {
                MediaEvent::Track { track, config } => {
                    assert!(
                        !s.frames.contains_key(track) || s.tracks.iter().any(|(t, _)| t == track),
                        "track {track} announced after its first frame"
                    );
                    s.tracks.push((*track, config.clone()));
                }
                MediaEvent::Frame { track, frame } => {
                    assert!(
                        s.tracks.iter().any(|(t, _)| t == track),
                        "frame of track {track} before its track event"
                    );
                    s.frames.entry(*track).or_default().push(frame.clone());
                }
                MediaEvent::Warning(w) => s.warnings.push(w.clone()),
                MediaEvent::Clock { pts, unix_ms } => s.clocks.push((*pts, *unix_ms)),
            }
        }
        s
    }

    fn frames(&self, track: u16) -> &[Frame] {
        self.frames.get(&track).map_or(&[], |f| f.as_slice())
    }
}

fn assert_video_ok(frames: &[Frame]) {
    assert!(frames[0].keyframe, "first frame is a keyframe");
    for pair in frames.windows(2) {
        assert!(pair[1].dts > pair[0].dts, "dts strictly increasing");
    }
    assert!(frames.iter().any(|f| f.cts != 0), "b-frames give cts != 0");
    assert!(frames.iter().all(|f| f.cts >= 0));
    for f in frames {
        // AVCC: walk the length prefixes to the end, and no parameter sets or AUDs.
        let mut rest = f.data.as_ref();
        while !rest.is_empty() {
            let len = u32::from_be_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            let nal_type = rest[4] & 0x1f;
            assert!(
                ![7, 8, 9, 12].contains(&nal_type),
                "nal type {nal_type} kept"
            );
            rest = &rest[4 + len..];
        }
    }
}

fn assert_audio_ok(frames: &[Frame]) {
    for pair in frames.windows(2) {
        assert_eq!(
            pair[1].dts - pair[0].dts,
            1024,
            "audio frames last 1024 ticks"
        );
    }
    assert!(frames
        .iter()
        .all(|f| f.keyframe && f.cts == 0 && !f.data.is_empty()));
}

#[test]
fn fixture_demuxes_identically_for_every_chunking() {
    let whole = demux_chunked(SMALL, SMALL.len());
    for chunk in [1, 7, 188, 1316, 4000] {
        assert!(
            demux_chunked(SMALL, chunk) == whole,
            "chunk size {chunk} differs"
        );
    }
    let s = Summary::of(&whole);
    assert_eq!(s.warnings, vec![], "clean fixture gives no warnings");

    let video = s.frames(VIDEO_PID);
    assert_eq!(video.len(), 90);
    assert_video_ok(video);
    let keyframes: Vec<usize> = (0..video.len()).filter(|&i| video[i].keyframe).collect();
    assert_eq!(keyframes, vec![0, 30, 60]);
    // ffprobe: first video packet pts=132000 dts=126000 (kept, not rebased to 0).
    assert_eq!((video[0].dts, video[0].cts), (126_000, 6_000));

    let audio = s.frames(AUDIO_PID);
    assert!(
        (140..=143).contains(&audio.len()),
        "{} audio frames",
        audio.len()
    );
    assert_audio_ok(audio);
    // ffprobe: first audio pts=130080 (90 kHz) = 69376 at 48 kHz.
    assert_eq!(audio[0].dts, 130_080 * 48_000 / 90_000);

    assert_eq!(s.tracks.len(), 2);
    let (_, video_config) = s
        .tracks
        .iter()
        .find(|(t, _)| *t == VIDEO_PID)
        .expect("video");
    match video_config {
        TrackConfig::H264 {
            width,
            height,
            profile,
            ..
        } => {
            assert_eq!((*width, *height, *profile), (320, 180, 100));
        }
        other => panic!("unexpected {other:?}"),
    }
    assert!(video_config.codec_string().starts_with("avc1.64"));
    let (_, audio_config) = s
        .tracks
        .iter()
        .find(|(t, _)| *t == AUDIO_PID)
        .expect("audio");
    assert_eq!(audio_config.timescale(), 48_000);
    assert_eq!(audio_config.codec_string(), "mp4a.40.2");
}

#[test]
fn clock_stamps_inserted_by_a_relay_come_out_and_change_nothing_else() {
    // The fixture relayed as an edge does: 1316-byte messages, a stamp packet before the
    // first PTS and then every second of arrival (here 100 ms per message).
    let mut stamper = crate::clock::Stamper::new();
    let mut relayed = Vec::new();
    for (i, message) in SMALL.chunks(1316).enumerate() {
        let arrived = 1_764_500_000_000 + i as i64 * 100;
        if let Some(stamp) = stamper.observe(message, arrived) {
            relayed.extend_from_slice(&stamp);
        }
        relayed.extend_from_slice(message);
    }
    let plain = Summary::of(&demux_chunked(SMALL, 1316));
    let stamped = Summary::of(&demux_chunked(&relayed, 1316));
    assert_eq!(stamped.frames, plain.frames);
    assert_eq!(stamped.tracks, plain.tracks);
    assert_eq!(stamped.warnings, vec![]);
    assert!(stamped.clocks.len() >= 2, "{:?}", stamped.clocks);
    // Every stamp is on one line: the first PTS at the first message's arrival, whole
    // seconds of PTS later exactly as many seconds of wall clock later.
    let (pts0, ms0) = stamped.clocks[0];
    for &(pts, ms) in &stamped.clocks {
        assert_eq!((pts - pts0) % 90_000, 0);
        assert_eq!(ms - ms0, (pts - pts0) as i64 / 90);
    }
}

#[test]
fn timestamps_stay_continuous_across_the_33_bit_wrap() {
    let original = Summary::of(&demux_chunked(SMALL, 1316));
    // Put the wrap 1.5 s into the stream.
    let offset = (1u64 << 33) - 126_000 - 135_000;
    let mut shifted = SMALL.to_vec();
    shift_timestamps(&mut shifted, offset);
    let wrapped = Summary::of(&demux_chunked(&shifted, 1316));
    assert_eq!(wrapped.warnings, vec![]);

    let (v0, v1) = (original.frames(VIDEO_PID), wrapped.frames(VIDEO_PID));
    assert_eq!(v0.len(), v1.len());
    assert_video_ok(v1);
    assert_eq!(v1[0].dts, 126_000 + offset, "first value kept, not rebased");
    assert!(
        v1.last().expect("frames").dts > 1 << 33,
        "went past the wrap"
    );
    for (a, b) in v0.iter().zip(v1) {
        assert_eq!(b.dts - v1[0].dts, a.dts - v0[0].dts);
        assert_eq!((a.cts, a.keyframe, &a.data), (b.cts, b.keyframe, &b.data));
    }

    let (a0, a1) = (original.frames(AUDIO_PID), wrapped.frames(AUDIO_PID));
    assert_eq!(a0.len(), a1.len());
    assert_audio_ok(a1);
    assert!(a1.last().expect("frames").dts > (1u64 << 33) * 48_000 / 90_000);
    // Audio and video stay on one timeline: same start gap as before the shift (± a tick).
    let gap = |v: &[Frame], a: &[Frame]| a[0].dts as i64 * 90_000 / 48_000 - v[0].dts as i64;
    assert!((gap(v1, a1) - gap(v0, a0)).abs() <= 2);
}

#[test]
fn lost_packet_warns_and_demux_continues() {
    // Drop one non-start packet of the video PID in the middle of the stream.
    let packets: Vec<&[u8]> = SMALL.chunks(188).collect();
    let victim = packets
        .iter()
        .enumerate()
        .skip(400)
        .find(|(_, p)| {
            u16::from(p[1] & 0x1f) << 8 | u16::from(p[2]) == VIDEO_PID && p[1] & 0x40 == 0
        })
        .map(|(i, _)| i)
        .expect("a video packet");
    let damaged: Vec<u8> = packets
        .iter()
        .enumerate()
        .filter(|(i, _)| *i != victim)
        .flat_map(|(_, p)| p.iter().copied())
        .collect();
    let s = Summary::of(&demux_chunked(&damaged, 1316));
    assert_eq!(
        s.warnings,
        vec![IngestError::Ts(TsError::Continuity { pid: VIDEO_PID })]
    );
    assert_eq!(
        s.frames(VIDEO_PID).len(),
        89,
        "only the damaged access unit is lost"
    );
    assert_video_ok(s.frames(VIDEO_PID));
}

#[test]
fn garbage_before_and_inside_the_stream_is_skipped() {
    let mut data: Vec<u8> = (0..1000u32).map(|i| (i * 7 % 251) as u8 | 0x80).collect();
    data[10] = 0x47;
    data[500] = 0x47;
    let split = 188 * 300;
    data.extend_from_slice(&SMALL[..split]);
    data.extend_from_slice(b"not a ts packet");
    data.extend_from_slice(&SMALL[split..]);
    let clean = Summary::of(&demux_chunked(SMALL, 1316));
    for chunk in [1, 1316] {
        let s = Summary::of(&demux_chunked(&data, chunk));
        assert_eq!(
            s.warnings,
            vec![
                IngestError::Ts(TsError::LostSync { skipped: 1000 }),
                IngestError::Ts(TsError::LostSync { skipped: 15 }),
            ]
        );
        assert_eq!(s.frames, clean.frames);
    }
}

#[test]
fn truncated_input_keeps_what_came_before() {
    let cut = 188 * 532 + 77;
    let s = Summary::of(&demux_chunked(&SMALL[..cut], 1316));
    assert!(s
        .warnings
        .contains(&IngestError::Ts(TsError::TruncatedInput { bytes: 77 })));
    let video = s.frames(VIDEO_PID);
    assert!(
        video.len() > 30 && video.len() < 90,
        "{} frames",
        video.len()
    );
    assert_video_ok(video);
    assert_audio_ok(s.frames(AUDIO_PID));
}

#[test]
fn audio_only_stream_gives_only_audio() {
    let s = Summary::of(&demux_chunked(AUDIO_ONLY, 1316));
    // PID 0x100 is AAC here, 0x101 is MP2 (stream type 0x03): reported once and ignored.
    assert_eq!(
        s.warnings,
        vec![IngestError::Ts(TsError::UnsupportedStreamType {
            pid: 0x101,
            stream_type: 0x03
        })]
    );
    assert_eq!(s.tracks.len(), 1);
    let (pid, config) = &s.tracks[0];
    assert_eq!(*pid, 0x100);
    assert_eq!(
        *config,
        TrackConfig::Aac {
            asc: Bytes::from_static(&[0x12, 0x10]),
            object_type: 2,
            sample_rate: 44_100,
            channels: 2,
        }
    );
    let audio = s.frames(0x100);
    assert!((43..=46).contains(&audio.len()), "{} frames", audio.len());
    assert_audio_ok(audio);
    assert_eq!(s.frames.len(), 1);
}

#[test]
fn frames_before_parameter_sets_are_dropped_with_one_warning() {
    // Start mid-GOP: the first access units reference an SPS we never saw.
    let start = 188 * 200;
    let s = Summary::of(&demux_chunked(&SMALL[start..], 1316));
    assert_eq!(
        s.warnings
            .iter()
            .filter(|w| **w == IngestError::NoParameterSets { pid: VIDEO_PID })
            .count(),
        1
    );
    let video = s.frames(VIDEO_PID);
    assert!(!video.is_empty());
    assert!(video[0].keyframe, "output starts at the next keyframe");
}

/// Annex B access unit: optional SPS/PPS, then one slice NAL of `kind`.
fn access_unit(params: Option<(&[u8], &[u8])>, kind: u8) -> Vec<u8> {
    let mut au = vec![0, 0, 0, 1, 0x09, 0xf0];
    if let Some((sps, pps)) = params {
        au.extend_from_slice(&[0, 0, 0, 1]);
        au.extend_from_slice(sps);
        au.extend_from_slice(&[0, 0, 0, 1]);
        au.extend_from_slice(pps);
    }
    au.extend_from_slice(&[0, 0, 1, kind, 0x88, 0x80, 0x40]);
    au
}

fn synth_events(build: impl FnOnce(&mut Muxer, &mut Vec<u8>)) -> Summary {
    let mut m = Muxer::default();
    let mut ts = m.pat_pmt(&[(VIDEO_PID, 0x1b), (AUDIO_PID, 0x0f)]);
    build(&mut m, &mut ts);
    Summary::of(&demux_chunked(&ts, 1316))
}

#[test]
fn new_sps_announces_the_track_again() {
    let sps_small = crate::h264::tests::SPS_320X180;
    let pps_small = crate::h264::tests::PPS;
    let s = synth_events(|m, ts| {
        let aus = [
            access_unit(Some((sps_small, pps_small)), 0x65),
            access_unit(None, 0x41),
            access_unit(Some((sps_small, pps_small)), 0x65),
            access_unit(Some((SPS_640X360, PPS_640X360)), 0x65),
            access_unit(None, 0x41),
        ];
        for (i, au) in aus.iter().enumerate() {
            let t = 3000 * i as u64;
            ts.extend(m.pes(VIDEO_PID, 0xe0, Some(t), None, au, false));
        }
    });
    assert_eq!(s.warnings, vec![]);
    let sizes: Vec<(u16, u16)> = s
        .tracks
        .iter()
        .map(|(_, c)| match c {
            TrackConfig::H264 { width, height, .. } => (*width, *height),
            TrackConfig::Aac { .. } => (0, 0),
        })
        .collect();
    assert_eq!(
        sizes,
        vec![(320, 180), (640, 360)],
        "repeated identical sps is no change"
    );
    let video = s.frames(VIDEO_PID);
    assert_eq!(video.len(), 5);
    assert_eq!(video[1].dts, 3000);
    assert_eq!(video[1].cts, 0, "dts defaults to pts");
    assert_eq!(
        video[1].data.as_ref(),
        &[0, 0, 0, 4, 0x41, 0x88, 0x80, 0x40]
    );
}

#[test]
fn video_pes_without_pts_or_with_bad_sps_is_dropped() {
    let sps = crate::h264::tests::SPS_320X180;
    let pps = crate::h264::tests::PPS;
    let s = synth_events(|m, ts| {
        ts.extend(m.pes(
            VIDEO_PID,
            0xe0,
            Some(0),
            None,
            &access_unit(Some((sps, pps)), 0x65),
            false,
        ));
        ts.extend(m.pes(VIDEO_PID, 0xe0, None, None, &access_unit(None, 0x41), false));
        let broken_sps = [0x67, 0x64, 0x00, 0x1f, 0xff];
        ts.extend(m.pes(
            VIDEO_PID,
            0xe0,
            Some(6000),
            None,
            &access_unit(Some((&broken_sps, pps)), 0x65),
            false,
        ));
        ts.extend(m.pes(
            VIDEO_PID,
            0xe0,
            Some(9000),
            None,
            &access_unit(None, 0x41),
            false,
        ));
        ts.extend(m.pes(
            VIDEO_PID,
            0xe0,
            Some(12000),
            None,
            &access_unit(Some((sps, pps)), 0x65),
            false,
        ));
    });
    assert_eq!(s.warnings.len(), 2, "{:?}", s.warnings);
    assert_eq!(s.warnings[0], IngestError::MissingPts { pid: VIDEO_PID });
    assert!(matches!(
        s.warnings[1],
        IngestError::H264 { pid: VIDEO_PID, .. }
    ));
    let dts: Vec<u64> = s.frames(VIDEO_PID).iter().map(|f| f.dts).collect();
    assert_eq!(dts, vec![0, 12000]);
    assert_eq!(
        s.tracks.len(),
        2,
        "valid sps after a broken one announces again"
    );
}

/// ADTS frame for AAC-LC 48 kHz mono carrying `payload`.
fn adts(payload: &[u8]) -> Vec<u8> {
    let len = payload.len() + 7;
    let mut f = vec![
        0xff,
        0xf1,
        0x4c,
        0x40 | ((len >> 11) & 0x03) as u8,
        (len >> 3) as u8,
        ((len & 0x07) << 5) as u8 | 0x1f,
        0xfc,
    ];
    f.extend_from_slice(payload);
    f
}

#[test]
fn audio_timestamps_absorb_jitter_and_follow_jumps() {
    // 1024 samples at 48 kHz = 1920 ticks at 90 kHz.
    let s = synth_events(|m, ts| {
        // PES 0: two frames at pts 90000 (= 48000 at 48 kHz).
        let two: Vec<u8> = [adts(&[1; 20]), adts(&[2; 20])].concat();
        ts.extend(m.pes(AUDIO_PID, 0xc0, Some(90_000), None, &two, true));
        // PES 1: expected 90000 + 2*1920; 300 ticks of jitter (160 samples) is absorbed.
        ts.extend(m.pes(
            AUDIO_PID,
            0xc0,
            Some(93_840 + 300),
            None,
            &adts(&[3; 20]),
            true,
        ));
        // PES 2: a 1 s jump is followed.
        ts.extend(m.pes(AUDIO_PID, 0xc0, Some(185_760), None, &adts(&[4; 20]), true));
        // PES 3: no PTS, continues from the running value.
        ts.extend(m.pes(AUDIO_PID, 0xc0, None, None, &adts(&[5; 20]), true));
    });
    assert_eq!(s.warnings, vec![]);
    let dts: Vec<u64> = s.frames(AUDIO_PID).iter().map(|f| f.dts).collect();
    assert_eq!(dts, vec![48_000, 49_024, 50_048, 99_072, 100_096]);
}

#[test]
fn adts_frame_straddling_pes_boundary() {
    let frames: Vec<Vec<u8>> = (0..4u8).map(|i| adts(&[i; 100])).collect();
    let stream = frames.concat();
    let s = synth_events(|m, ts| {
        // Cut in the middle of the second frame; the second PES's PTS belongs to frame 3.
        let cut = 107 + 50;
        ts.extend(m.pes(AUDIO_PID, 0xc0, Some(90_000), None, &stream[..cut], true));
        ts.extend(m.pes(
            AUDIO_PID,
            0xc0,
            Some(90_000 + 2 * 1920),
            None,
            &stream[cut..],
            true,
        ));
    });
    assert_eq!(s.warnings, vec![]);
    let audio = s.frames(AUDIO_PID);
    assert_eq!(audio.len(), 4);
    for (i, f) in audio.iter().enumerate() {
        assert_eq!(f.data.as_ref(), &[i as u8; 100]);
        assert_eq!(f.dts, 48_000 + 1024 * i as u64);
    }
}

#[test]
fn audio_without_any_pts_is_dropped_with_a_warning() {
    let s = synth_events(|m, ts| {
        ts.extend(m.pes(AUDIO_PID, 0xc0, None, None, &adts(&[1; 10]), true));
        ts.extend(m.pes(AUDIO_PID, 0xc0, Some(900), None, &adts(&[2; 10]), true));
    });
    assert_eq!(s.warnings, vec![IngestError::MissingPts { pid: AUDIO_PID }]);
    assert_eq!(s.frames(AUDIO_PID).len(), 1);
}

#[test]
fn oversized_video_pes_is_dropped() {
    let s = synth_events(|m, ts| {
        let mut huge = access_unit(
            Some((crate::h264::tests::SPS_320X180, crate::h264::tests::PPS)),
            0x65,
        );
        huge.resize(MAX_PES_SIZE + 10, 0x55);
        ts.extend(m.pes(VIDEO_PID, 0xe0, Some(0), None, &huge, false));
    });
    assert_eq!(
        s.warnings,
        vec![IngestError::Ts(TsError::PesTooLarge {
            pid: VIDEO_PID,
            limit: MAX_PES_SIZE
        })]
    );
    assert!(s.frames.is_empty());
}

#[test]
fn demuxer_can_move_to_another_thread() {
    fn assert_send<T: Send + 'static>() {}
    assert_send::<Demuxer>();
    assert_send::<MediaEvent>();
}

#[test]
fn error_messages_are_lowercase_facts() {
    let e = IngestError::Ts(TsError::Continuity { pid: 256 });
    assert_eq!(
        e.to_string(),
        "transport stream: continuity counter error on pid 256: packets lost, pes in progress dropped"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..4000), chunk in 1usize..600) {
        let _ = demux_chunked(&data, chunk);
    }

    #[test]
    fn arbitrary_packets_never_panic(
        packets in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 187), 0..40),
    ) {
        // Sync-aligned garbage reaches deeper: PSI, PES and codec parsers.
        let data: Vec<u8> = packets.iter().flat_map(|p| std::iter::once(0x47).chain(p.iter().copied())).collect();
        let _ = demux_chunked(&data, 1316);
    }

    #[test]
    fn mutated_fixture_never_panics(
        edits in proptest::collection::vec((0usize..60_000, any::<u8>()), 1..64),
        cut in 0usize..60_000,
        chunk in 1usize..5000,
    ) {
        let mut data = SMALL[..60_000].to_vec();
        for (at, byte) in edits {
            data[at] = byte;
        }
        data.truncate(cut.max(1));
        let _ = demux_chunked(&data, chunk);
    }
}
