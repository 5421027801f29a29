use super::*;

/// A tiny MPEG-TS writer for tests: PAT, PMT and PES packets with correct CRCs and counters.
pub(crate) mod synth {
    use std::collections::HashMap;

    use mpeg2ts_reader::mpegts_crc;

    pub(crate) const PMT_PID: u16 = 0x1000;
    pub(crate) const VIDEO_PID: u16 = 0x100;
    pub(crate) const AUDIO_PID: u16 = 0x101;

    #[derive(Default)]
    pub(crate) struct Muxer {
        cc: HashMap<u16, u8>,
        /// Bumped on every PMT so that the demuxer re-reads it.
        pub(crate) pmt_version: u8,
    }

    impl Muxer {
        fn next_cc(&mut self, pid: u16) -> u8 {
            let cc = self.cc.entry(pid).or_insert(0);
            let now = *cc;
            *cc = (*cc + 1) & 0x0f;
            now
        }

        /// Splits `payload` into TS packets on `pid`, the first with PUSI set, the last padded
        /// with adaptation field stuffing.
        pub(crate) fn packets(&mut self, pid: u16, payload: &[u8]) -> Vec<u8> {
            let mut out = Vec::new();
            let mut rest = payload;
            let mut first = true;
            loop {
                let take = rest.len().min(184);
                let (chunk, tail) = rest.split_at(take);
                let cc = self.next_cc(pid);
                let pusi = if first { 0x40 } else { 0 };
                out.push(0x47);
                out.push(pusi | ((pid >> 8) as u8 & 0x1f));
                out.push(pid as u8);
                if take == 184 {
                    out.push(0x10 | cc);
                } else {
                    out.push(0x30 | cc);
                    let af_len = 183 - take;
                    out.push(af_len as u8);
                    if af_len > 0 {
                        out.push(0x00);
                        out.extend(std::iter::repeat_n(0xff, af_len - 1));
                    }
                }
                out.extend_from_slice(chunk);
                rest = tail;
                first = false;
                if rest.is_empty() {
                    break;
                }
            }
            out
        }

        fn section(&mut self, pid: u16, mut section: Vec<u8>) -> Vec<u8> {
            let crc = mpegts_crc::sum32(&section);
            section.extend_from_slice(&crc.to_be_bytes());
            let mut payload = vec![0u8]; // pointer_field
            payload.extend(section);
            let mut packet = self.packets(pid, &payload);
            // PSI pads with 0xff after the section rather than with adaptation stuffing; both
            // are valid, keep the stuffing form from `packets`.
            packet.truncate(188);
            packet
        }

        /// A PAT for program 1 on [`PMT_PID`] and a PMT listing `streams` (pid, stream_type).
        pub(crate) fn pat_pmt(&mut self, streams: &[(u16, u8)]) -> Vec<u8> {
            let mut pat = vec![0x00, 0xb0, 13, 0x00, 0x01, 0xc1, 0x00, 0x00];
            pat.extend_from_slice(&[0x00, 0x01, 0xe0 | (PMT_PID >> 8) as u8, PMT_PID as u8]);
            let mut out = self.section(0, pat);
            let section_length = 9 + 5 * streams.len() + 4;
            let version = self.pmt_version & 0x1f;
            self.pmt_version = self.pmt_version.wrapping_add(1);
            let mut pmt = vec![
                0x02,
                0xb0 | (section_length >> 8) as u8,
                section_length as u8,
                0x00,
                0x01,
                0xc1 | (version << 1),
                0x00,
                0x00,
                0xe0 | (VIDEO_PID >> 8) as u8,
                VIDEO_PID as u8,
                0xf0,
                0x00,
            ];
            for &(pid, stream_type) in streams {
                pmt.extend_from_slice(&[stream_type, 0xe0 | (pid >> 8) as u8, pid as u8, 0xf0, 0]);
            }
            out.extend(self.section(PMT_PID, pmt));
            out
        }

        /// One PES on `pid`. `bounded` writes the real `PES_packet_length` (else 0).
        pub(crate) fn pes(
            &mut self,
            pid: u16,
            stream_id: u8,
            pts: Option<u64>,
            dts: Option<u64>,
            payload: &[u8],
            bounded: bool,
        ) -> Vec<u8> {
            let mut header = Vec::new();
            let flags = match (pts, dts) {
                (Some(pts), Some(dts)) => {
                    header.extend(encode_timestamp(0b0011, pts));
                    header.extend(encode_timestamp(0b0001, dts));
                    0xc0
                }
                (Some(pts), None) => {
                    header.extend(encode_timestamp(0b0010, pts));
                    0x80
                }
                _ => 0x00,
            };
            let length = 3 + header.len() + payload.len();
            let length = if bounded && length <= 0xffff {
                length
            } else {
                0
            };
            let mut pes = vec![
                0,
                0,
                1,
                stream_id,
                (length >> 8) as u8,
                length as u8,
                0x80,
                flags,
            ];
            pes.push(header.len() as u8);
            pes.extend(header);
            pes.extend_from_slice(payload);
            self.packets(pid, &pes)
        }
    }

    /// A 5-byte PTS/DTS field with `prefix` in the top nibble and marker bits set.
    pub(crate) fn encode_timestamp(prefix: u8, ts: u64) -> [u8; 5] {
        [
            (prefix << 4) | (((ts >> 30) & 0x07) as u8) << 1 | 1,
            (ts >> 22) as u8,
            (((ts >> 15) & 0x7f) as u8) << 1 | 1,
            (ts >> 7) as u8,
            ((ts & 0x7f) as u8) << 1 | 1,
        ]
    }

    fn decode_timestamp(b: &[u8]) -> u64 {
        (u64::from(b[0] & 0x0e) << 29)
            | (u64::from(b[1]) << 22)
            | (u64::from(b[2] & 0xfe) << 14)
            | (u64::from(b[3]) << 7)
            | (u64::from(b[4]) >> 1)
    }

    /// Adds `offset` (mod 2^33) to every PTS and DTS of the PES headers in `ts`, in place.
    /// Assumes each PES header lies within its first TS packet (true for ffmpeg output).
    pub(crate) fn shift_timestamps(ts: &mut [u8], offset: u64) {
        for packet in ts.chunks_exact_mut(188) {
            if packet[0] != 0x47 || packet[1] & 0x40 == 0 || packet[3] & 0x10 == 0 {
                continue;
            }
            let start = if packet[3] & 0x20 != 0 {
                5 + usize::from(packet[4])
            } else {
                4
            };
            let Some(p) = packet.get_mut(start..) else {
                continue;
            };
            if p.len() < 19 || p[..3] != [0, 0, 1] || p[3] < 0xc0 {
                continue;
            }
            let flags = p[7] >> 6;
            let fields: &[(usize, u8)] = match flags {
                0b10 => &[(9, 0b0010)],
                0b11 => &[(9, 0b0011), (14, 0b0001)],
                _ => &[],
            };
            for &(at, prefix) in fields {
                let value = (decode_timestamp(&p[at..at + 5]) + offset) & ((1 << 33) - 1);
                p[at..at + 5].copy_from_slice(&encode_timestamp(prefix, value));
            }
        }
    }
}

use synth::{Muxer, AUDIO_PID, VIDEO_PID};

fn run(data: &[u8]) -> Vec<TsEvent> {
    let mut demux = TsDemuxer::new();
    let mut out = Vec::new();
    demux.push(data, &mut out);
    demux.finish(&mut out);
    out
}

fn pes_of(events: &[TsEvent]) -> Vec<&Pes> {
    events
        .iter()
        .filter_map(|e| match e {
            TsEvent::Pes(p) => Some(p),
            TsEvent::Warning(_) | TsEvent::Stamp(_) => None,
        })
        .collect()
}

fn warnings_of(events: &[TsEvent]) -> Vec<&TsError> {
    events
        .iter()
        .filter_map(|e| match e {
            TsEvent::Warning(w) => Some(w),
            TsEvent::Pes(_) | TsEvent::Stamp(_) => None,
        })
        .collect()
}

fn av_stream(m: &mut Muxer) -> Vec<u8> {
    let mut ts = m.pat_pmt(&[(VIDEO_PID, 0x1b), (AUDIO_PID, 0x0f)]);
    ts.extend(m.pes(VIDEO_PID, 0xe0, Some(1000), Some(900), &[0xaa; 500], false));
    ts.extend(m.pes(AUDIO_PID, 0xc0, Some(950), None, &[0xbb; 300], true));
    ts.extend(m.pes(VIDEO_PID, 0xe0, Some(4000), None, &[0xcc; 10], false));
    ts
}

#[test]
fn unwrapper_keeps_first_value_and_crosses_wrap() {
    let mut u = TimestampUnwrapper::new();
    let max = (1u64 << 33) - 1;
    assert_eq!(u.unwrapped(max - 100), max - 100);
    assert_eq!(
        u.unwrapped(max - 200),
        max - 200,
        "small backward jump is not a wrap"
    );
    assert_eq!(u.unwrapped(50), max + 51, "forward across the wrap");
    assert_eq!(
        u.unwrapped(max - 10),
        max - 10,
        "back before the wrap (b-frame order)"
    );
    assert_eq!(u.unwrapped(3000), max + 3001);
    // Two more full wraps, in steps under half the range.
    let mut last = max + 3001;
    for step in 0..8u64 {
        let raw = (3000 + (step + 1) * (1 << 31)) & max;
        let got = u.unwrapped(raw);
        assert_eq!(got, last + (1 << 31));
        last = got;
    }
}

#[test]
fn unwrapper_clamps_before_zero() {
    let mut u = TimestampUnwrapper::new();
    assert_eq!(u.unwrapped(10), 10);
    assert_eq!(u.unwrapped((1 << 33) - 5), 0);
}

#[test]
fn reassembles_pes_across_packets() {
    let mut m = Muxer::default();
    let events = run(&av_stream(&mut m));
    assert!(warnings_of(&events).is_empty(), "{events:?}");
    let pes = pes_of(&events);
    assert_eq!(pes.len(), 3);
    // The bounded audio PES completes as soon as it is whole, before the video one that
    // only ends when the next video PES starts.
    assert_eq!((pes[0].pid, pes[0].kind), (AUDIO_PID, StreamKind::AdtsAac));
    assert_eq!(pes[0].data, vec![0xbb; 300]);
    assert_eq!((pes[0].pts, pes[0].dts), (Some(950), None));
    assert_eq!((pes[1].pid, pes[1].kind), (VIDEO_PID, StreamKind::H264));
    assert_eq!(pes[1].data, vec![0xaa; 500]);
    assert_eq!((pes[1].pts, pes[1].dts), (Some(1000), Some(900)));
    assert_eq!(pes[2].data, vec![0xcc; 10], "flushed by finish");
}

#[test]
fn bounded_pes_is_emitted_without_waiting() {
    let mut m = Muxer::default();
    let mut ts = m.pat_pmt(&[(AUDIO_PID, 0x0f)]);
    ts.extend(m.pes(AUDIO_PID, 0xc0, Some(10), None, &[1; 400], true));
    let mut demux = TsDemuxer::new();
    let mut out = Vec::new();
    demux.push(&ts, &mut out);
    assert_eq!(pes_of(&out).len(), 1);
}

#[test]
fn same_events_for_every_chunking() {
    let mut m = Muxer::default();
    let mut ts = vec![0x47, 1, 2, 3, 0x47];
    ts.extend(av_stream(&mut m));
    ts.extend([9u8; 100]);
    ts.extend(m.pes(VIDEO_PID, 0xe0, Some(7000), None, &[0xdd; 1000], false));
    ts.extend([0x47u8; 3]);
    let whole = run(&ts);
    for chunk in [1, 2, 187, 188, 189, 1316] {
        let mut demux = TsDemuxer::new();
        let mut out = Vec::new();
        for piece in ts.chunks(chunk) {
            demux.push(piece, &mut out);
        }
        demux.finish(&mut out);
        assert_eq!(out, whole, "chunk size {chunk}");
    }
    let warnings = warnings_of(&whole);
    assert_eq!(
        warnings,
        vec![
            &TsError::LostSync { skipped: 5 },
            &TsError::LostSync { skipped: 100 },
            &TsError::TruncatedInput { bytes: 3 },
        ]
    );
    assert_eq!(pes_of(&whole).len(), 4);
}

#[test]
fn continuity_error_drops_the_pes_in_progress() {
    let mut m = Muxer::default();
    let mut ts = m.pat_pmt(&[(VIDEO_PID, 0x1b)]);
    let first = m.pes(VIDEO_PID, 0xe0, Some(0), None, &[1; 1000], false);
    // Drop the third packet of the first PES.
    ts.extend_from_slice(&first[..2 * 188]);
    ts.extend_from_slice(&first[3 * 188..]);
    ts.extend(m.pes(VIDEO_PID, 0xe0, Some(3000), None, &[2; 1000], false));
    let events = run(&ts);
    assert_eq!(
        warnings_of(&events),
        vec![&TsError::Continuity { pid: VIDEO_PID }]
    );
    let pes = pes_of(&events);
    assert_eq!(pes.len(), 1);
    assert_eq!(pes[0].pts, Some(3000));
}

#[test]
fn oversized_pes_is_dropped_once() {
    let mut m = Muxer::default();
    let mut ts = m.pat_pmt(&[(VIDEO_PID, 0x1b)]);
    ts.extend(m.pes(
        VIDEO_PID,
        0xe0,
        Some(0),
        None,
        &vec![7; MAX_PES_SIZE + 1000],
        false,
    ));
    ts.extend(m.pes(VIDEO_PID, 0xe0, Some(3000), None, &[2; 10], false));
    let events = run(&ts);
    assert_eq!(
        warnings_of(&events),
        vec![&TsError::PesTooLarge {
            pid: VIDEO_PID,
            limit: MAX_PES_SIZE
        }]
    );
    let pes = pes_of(&events);
    assert_eq!(pes.len(), 1);
    assert_eq!(pes[0].pts, Some(3000));
}

#[test]
fn truncated_bounded_pes_is_reported() {
    let mut m = Muxer::default();
    let mut ts = m.pat_pmt(&[(AUDIO_PID, 0x0f)]);
    let pes = m.pes(AUDIO_PID, 0xc0, Some(10), None, &[1; 400], true);
    ts.extend_from_slice(&pes[..188]);
    let events = run(&ts);
    assert_eq!(
        warnings_of(&events),
        vec![&TsError::TruncatedPes {
            pid: AUDIO_PID,
            got: 184 - 14,
            declared: 400
        }]
    );
}

#[test]
fn unsupported_stream_type_reported_once() {
    let mut m = Muxer::default();
    let mut ts = m.pat_pmt(&[(VIDEO_PID, 0x1b), (0x102, 0x06)]);
    ts.extend(m.pat_pmt(&[(VIDEO_PID, 0x1b), (0x102, 0x06)]));
    ts.extend(m.pes(0x102, 0xbd, Some(0), None, &[1; 100], true));
    let events = run(&ts);
    assert_eq!(
        warnings_of(&events),
        vec![&TsError::UnsupportedStreamType {
            pid: 0x102,
            stream_type: 0x06
        }]
    );
    assert!(pes_of(&events).is_empty());
}

#[test]
fn transport_error_indicator_is_reported() {
    let mut m = Muxer::default();
    let mut ts = m.pat_pmt(&[(AUDIO_PID, 0x0f)]);
    let mut pes = m.pes(AUDIO_PID, 0xc0, Some(10), None, &[1; 100], true);
    pes[1] |= 0x80;
    ts.extend(pes);
    let events = run(&ts);
    assert_eq!(
        warnings_of(&events),
        vec![&TsError::TransportError { pid: AUDIO_PID }]
    );
    assert!(pes_of(&events).is_empty());
}

#[test]
fn pes_without_timestamps_and_bad_headers() {
    let mut m = Muxer::default();
    let mut ts = m.pat_pmt(&[(AUDIO_PID, 0x0f)]);
    ts.extend(m.pes(AUDIO_PID, 0xc0, None, None, &[1; 10], true));
    // A PES start with a bad start code prefix: ignored by the library until the next one.
    let mut bad = m.pes(AUDIO_PID, 0xc0, Some(5), None, &[2; 10], true);
    let start = 5 + usize::from(bad[4]);
    bad[start] = 0xff;
    ts.extend(bad);
    // A parsed header whose marker bits are wrong.
    let mut bad_header = m.pes(AUDIO_PID, 0xc0, Some(5), None, &[3; 10], true);
    let start = 5 + usize::from(bad_header[4]);
    bad_header[start + 6] = 0x00;
    ts.extend(bad_header);
    let events = run(&ts);
    let pes = pes_of(&events);
    assert_eq!(pes[0].pts, None);
    assert_eq!(pes[0].data, vec![1; 10]);
    assert!(warnings_of(&events).contains(&&TsError::InvalidPesHeader { pid: AUDIO_PID }));
}
