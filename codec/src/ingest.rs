//! Ingest demuxer: MPEG-TS bytes from a publisher in, track configurations and frames out.
//!
//! Start here. [`Demuxer`] stacks the layers below it: [`crate::ts`] finds packets and
//! reassembles PES, this module unwraps timestamps on one program-wide timeline and hands each
//! PES to [`crate::h264`] (one PES = one access unit, converted to AVCC) or [`crate::aac`]
//! (ADTS frames, timed 1024 samples apart), then reports [`MediaEvent`]s.
//!
//! It does not pace, reorder or buffer frames for output, and never fails: everything wrong in
//! the input becomes a [`MediaEvent::Warning`] and the demuxer carries on. If the stream never
//! announces H.264 or AAC, it simply produces no frames; the caller decides what that means.

use std::collections::BTreeMap;

use bytes::Bytes;

use crate::aac::{AacError, AdtsFrame, AdtsSplitter, SAMPLES_PER_FRAME};
use crate::h264::{self, H264Error};
use crate::ts::{Pes, StreamKind, TimestampUnwrapper, TsDemuxer, TsError, TsEvent};
use crate::{Frame, TrackConfig, MPEG_TIMESCALE};

/// What the demuxer found in the stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MediaEvent {
    /// A track appeared, or its configuration changed (e.g. a new SPS with another
    /// resolution). Emitted before the first frame of the track and again on every change.
    Track {
        /// The elementary PID carrying the track.
        track: u16,
        config: TrackConfig,
    },
    /// One coded frame of `track`, timestamps in the track's timescale
    /// ([`TrackConfig::timescale`]: 90 kHz for video, the sampling rate for audio).
    Frame { track: u16, frame: Frame },
    /// A clock stamp ([`crate::clock`]): the program's timestamp `pts` (90 kHz, unwrapped on
    /// the frames' timeline) is presented at wall-clock `unix_ms`.
    Clock { pts: u64, unix_ms: i64 },
    /// A recoverable problem in the input; the demuxer carries on.
    Warning(IngestError),
}

/// A recoverable problem in the input, reported as [`MediaEvent::Warning`].
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum IngestError {
    /// A problem in the transport stream layer (sync, continuity, PES headers).
    #[error("transport stream: {0}")]
    Ts(#[from] TsError),
    /// A video PES without a PTS (dropped), or an audio PES without one when no earlier
    /// timestamp exists to continue from (its frames dropped).
    #[error("pes without pts on pid {pid}: dropped")]
    MissingPts { pid: u16 },
    /// H.264 access units arrived before the first SPS and PPS; they are dropped (reported
    /// once per track).
    #[error("h264 access units before the first sps and pps on pid {pid} dropped")]
    NoParameterSets { pid: u16 },
    /// Undecodable H.264 parameter sets; frames are dropped until valid ones arrive.
    #[error("h264 on pid {pid}: {source}")]
    H264 { pid: u16, source: H264Error },
    /// Bad or skipped ADTS data.
    #[error("aac on pid {pid}: {source}")]
    Aac { pid: u16, source: AacError },
    /// PTS minus DTS does not fit the frame's 32-bit composition offset; the access unit is
    /// dropped.
    #[error("pts - dts of {offset} ticks on pid {pid} out of range: access unit dropped")]
    CtsOutOfRange { pid: u16, offset: i128 },
}

/// MPEG-TS bytes in, [`MediaEvent`]s out. Sans-IO and deterministic: the same bytes give the
/// same events however they are chunked.
pub struct Demuxer {
    ts: TsDemuxer,
    /// One timeline for the whole program, so audio and video agree across the 33-bit wrap.
    clock: TimestampUnwrapper,
    video: BTreeMap<u16, VideoTrack>,
    audio: BTreeMap<u16, AudioTrack>,
    /// Scratch buffers reused between calls.
    ts_events: Vec<TsEvent>,
    adts: Vec<Result<AdtsFrame, AacError>>,
}

#[derive(Default)]
struct VideoTrack {
    /// Latest SPS and PPS seen (header byte included).
    sps: Option<Bytes>,
    pps: Option<Bytes>,
    /// The announced configuration; `None` until valid parameter sets arrive.
    config: Option<TrackConfig>,
    /// [`IngestError::NoParameterSets`] was already reported.
    warned_no_params: bool,
}

#[derive(Default)]
struct AudioTrack {
    splitter: AdtsSplitter,
    config: Option<TrackConfig>,
    /// Sampling rate of `config`, in Hz.
    sample_rate: u32,
    /// Decode time of the next frame, in sampling-rate ticks.
    next_dts: Option<u64>,
    /// Unwrapped PTS (90 kHz) of the PES being split, until its first frame takes it.
    pes_pts: Option<u64>,
    /// [`IngestError::MissingPts`] was already reported for the PES being split.
    warned_no_pts: bool,
}

impl Default for Demuxer {
    fn default() -> Self {
        Self::new()
    }
}

impl Demuxer {
    pub fn new() -> Self {
        Demuxer {
            ts: TsDemuxer::new(),
            clock: TimestampUnwrapper::new(),
            video: BTreeMap::new(),
            audio: BTreeMap::new(),
            ts_events: Vec::new(),
            adts: Vec::new(),
        }
    }

    /// Feeds any number of bytes, with any alignment to TS packets; appends what they complete
    /// to `out`. A video frame is emitted when the next one starts (or at [`Demuxer::finish`]).
    pub fn push(&mut self, data: &[u8], out: &mut Vec<MediaEvent>) {
        let mut events = std::mem::take(&mut self.ts_events);
        self.ts.push(data, &mut events);
        for event in events.drain(..) {
            self.handle(event, out);
        }
        self.ts_events = events;
    }

    /// End of input: emits the frames still buffered (the last PES of every stream).
    pub fn finish(&mut self, out: &mut Vec<MediaEvent>) {
        let mut events = std::mem::take(&mut self.ts_events);
        self.ts.finish(&mut events);
        for event in events.drain(..) {
            self.handle(event, out);
        }
        self.ts_events = events;
        let pids: Vec<u16> = self.audio.keys().copied().collect();
        for pid in pids {
            let mut items = std::mem::take(&mut self.adts);
            if let Some(track) = self.audio.get_mut(&pid) {
                track.splitter.finish(&mut items);
            }
            self.audio_items(pid, &mut items, out);
            self.adts = items;
        }
    }

    fn handle(&mut self, event: TsEvent, out: &mut Vec<MediaEvent>) {
        match event {
            TsEvent::Warning(e) => out.push(MediaEvent::Warning(e.into())),
            TsEvent::Stamp(stamp) => out.push(MediaEvent::Clock {
                pts: self.clock.unwrapped(stamp.pts),
                unix_ms: stamp.unix_ms,
            }),
            TsEvent::Pes(pes) => {
                // Every timestamp feeds the shared timeline, even from a PES dropped later.
                let pts = pes.pts.map(|t| self.clock.unwrapped(t));
                let dts = pes.dts.map(|t| self.clock.unwrapped(t));
                match pes.kind {
                    StreamKind::H264 => self.video_pes(pes, pts, dts, out),
                    StreamKind::AdtsAac => self.audio_pes(pes, pts, out),
                }
            }
        }
    }

    /// One PES = one access unit. `pts`/`dts` are unwrapped 90 kHz ticks.
    fn video_pes(
        &mut self,
        pes: Pes,
        pts: Option<u64>,
        dts: Option<u64>,
        out: &mut Vec<MediaEvent>,
    ) {
        let pid = pes.pid;
        let track = self.video.entry(pid).or_default();
        let au = h264::to_avcc(&pes.data);
        let mut changed = false;
        if let Some(sps) = au.sps.filter(|s| track.sps.as_deref() != Some(*s)) {
            track.sps = Some(Bytes::copy_from_slice(sps));
            changed = true;
        }
        if let Some(pps) = au.pps.filter(|p| track.pps.as_deref() != Some(*p)) {
            track.pps = Some(Bytes::copy_from_slice(pps));
            changed = true;
        }
        if let (true, Some(sps), Some(pps)) = (changed, &track.sps, &track.pps) {
            match h264::track_config(sps, pps) {
                Ok(config) => {
                    if track.config.as_ref() != Some(&config) {
                        track.config = Some(config.clone());
                        out.push(MediaEvent::Track { track: pid, config });
                    }
                }
                Err(source) => {
                    // Frames coded against parameter sets we cannot describe would get a
                    // wrong init segment: drop them until a valid SPS arrives.
                    track.config = None;
                    track.warned_no_params = true;
                    out.push(MediaEvent::Warning(IngestError::H264 { pid, source }));
                }
            }
        }
        if !au.has_slice {
            return;
        }
        let Some(pts) = pts else {
            out.push(MediaEvent::Warning(IngestError::MissingPts { pid }));
            return;
        };
        if track.config.is_none() {
            if !track.warned_no_params {
                track.warned_no_params = true;
                out.push(MediaEvent::Warning(IngestError::NoParameterSets { pid }));
            }
            return;
        }
        let dts = dts.unwrap_or(pts);
        let offset = i128::from(pts) - i128::from(dts);
        let Ok(cts) = i32::try_from(offset) else {
            out.push(MediaEvent::Warning(IngestError::CtsOutOfRange {
                pid,
                offset,
            }));
            return;
        };
        out.push(MediaEvent::Frame {
            track: pid,
            frame: Frame {
                dts,
                cts,
                keyframe: au.keyframe,
                data: Bytes::from(au.data),
            },
        });
    }

    /// Splits a PES into ADTS frames. `pts` is unwrapped 90 kHz ticks.
    fn audio_pes(&mut self, pes: Pes, pts: Option<u64>, out: &mut Vec<MediaEvent>) {
        let pid = pes.pid;
        let mut items = std::mem::take(&mut self.adts);
        let track = self.audio.entry(pid).or_default();
        track.pes_pts = pts;
        track.warned_no_pts = false;
        track.splitter.push(&pes.data, &mut items);
        self.audio_items(pid, &mut items, out);
        self.adts = items;
    }

    /// Times and reports split ADTS frames: the first frame starting in a PES takes the PES's
    /// PTS (rescaled to the sampling rate) unless it is within half a frame of where the
    /// previous frames lead, so durations stay exactly 1024 through normal jitter.
    fn audio_items(
        &mut self,
        pid: u16,
        items: &mut Vec<Result<AdtsFrame, AacError>>,
        out: &mut Vec<MediaEvent>,
    ) {
        let Some(track) = self.audio.get_mut(&pid) else {
            items.clear();
            return;
        };
        for item in items.drain(..) {
            let frame = match item {
                Ok(frame) => frame,
                Err(source) => {
                    out.push(MediaEvent::Warning(IngestError::Aac { pid, source }));
                    continue;
                }
            };
            let config = frame.header.track_config();
            if track.config.as_ref() != Some(&config) {
                let rate = frame.header.sample_rate;
                if track.sample_rate != 0 && track.sample_rate != rate {
                    track.next_dts = track.next_dts.map(|t| rescale(t, track.sample_rate, rate));
                }
                track.sample_rate = rate;
                track.config = Some(config.clone());
                out.push(MediaEvent::Track { track: pid, config });
            }
            if !frame.carried {
                if let Some(pts) = track.pes_pts.take() {
                    let at = rescale(pts, MPEG_TIMESCALE, track.sample_rate);
                    let half_frame = u64::from(SAMPLES_PER_FRAME / 2);
                    match track.next_dts {
                        Some(next) if next.abs_diff(at) <= half_frame => {}
                        _ => track.next_dts = Some(at),
                    }
                }
            }
            let Some(dts) = track.next_dts else {
                if !track.warned_no_pts {
                    track.warned_no_pts = true;
                    out.push(MediaEvent::Warning(IngestError::MissingPts { pid }));
                }
                continue;
            };
            track.next_dts = dts.checked_add(u64::from(SAMPLES_PER_FRAME));
            out.push(MediaEvent::Frame {
                track: pid,
                frame: Frame {
                    dts,
                    cts: 0,
                    keyframe: true,
                    data: frame.raw,
                },
            });
        }
    }
}

/// `ticks` from a `from` Hz clock to a `to` Hz clock, rounded down; saturates at `u64::MAX`.
fn rescale(ticks: u64, from: u32, to: u32) -> u64 {
    if from == 0 {
        return 0;
    }
    let scaled = u128::from(ticks) * u128::from(to) / u128::from(from);
    u64::try_from(scaled).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
