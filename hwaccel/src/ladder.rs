//! The IDR-aligned transcoding ladder of one stream: one decode, one scale per rung (cascaded
//! from the next larger rung), one encode per rung, IDRs at the same source pictures on every
//! rung ([`crate::keyframes`]), and software fallback when a hardware encoder fails.
//!
//! Start at [`Ladder::new`] and [`Ladder::push`]. The ladder is synchronous and does no IO: the
//! origin runs it on a dedicated thread and hands it source video frames; it gets back
//! [`LadderOutput`]s in the source's 90 kHz timeline. It does not segment, pace or drop frames
//! on its own (the origin sheds whole rungs with [`Ladder::shed_one`] when it falls behind).

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use codec::{Frame, TrackConfig};
use ffmpeg_next::{frame, picture};

use crate::decode::{Decoder, Sent};
use crate::encode::{EncodeFailure, EncodedPacket, EncoderSettings, VideoEncoder};
use crate::keyframes::IdrSchedule;
use crate::scale::Scaler;
use crate::{ffi, BackendKind, LadderError, RungSpec};

/// Source keyframe timestamps remembered while their pictures are in the decoder (a decoder
/// holds a handful of pictures; keyframes are seconds apart).
const MAX_PENDING_KEYFRAMES: usize = 64;

/// Frame rate assumed for rate control when the source SPS has no timing info.
const DEFAULT_FRAME_RATE: (i32, i32) = (30, 1);

/// How a ladder runs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LadderOptions {
    /// The backend [`crate::probe`] chose. A hardware backend whose session cannot be opened
    /// for a rung (no device, sessions exhausted, built without feature `nvenc` for
    /// [`BackendKind::NvencDirect`]) falls back to libx264 for that rung.
    pub backend: BackendKind,
    /// Force an IDR on every rung when this much source time passed since the last one (and on
    /// every source keyframe): the packager's segment target.
    pub segment_target: Duration,
    /// Threads for the decoder and for each encoder; 0 lets libavcodec choose.
    pub threads: usize,
}

impl Default for LadderOptions {
    fn default() -> Self {
        LadderOptions {
            backend: BackendKind::Software,
            segment_target: Duration::from_secs(2),
            threads: 0,
        }
    }
}

/// What the ladder produced. Outputs of different rungs interleave (a copy rung's frames come
/// at once, encoded rungs' after the decoder's reordering delay); each rung's are in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LadderOutput {
    /// Emitted before a rung's first frame and whenever its SPS/PPS change.
    Track { rung: String, config: TrackConfig },
    /// An encoded access unit in the source's 90 kHz timeline: `dts` is the source picture's
    /// pts and `cts` is 0 (no B-frames). A copy rung's frames are the source frames unchanged.
    Frame { rung: String, frame: Frame },
    /// A hardware rung's encoder failed and was replaced by libx264 (`reason` says why); the
    /// rung's next frame is an IDR.
    Fallback { rung: String, reason: String },
}

/// The transcoding ladder of one stream.
pub struct Ladder {
    source: TrackConfig,
    decoder: Decoder,
    /// Largest first; the cascade and [`Ladder::shed_one`] rely on the order.
    rungs: Vec<Rung>,
    schedule: IdrSchedule,
    /// Added to a picture's pts (90 kHz) to place it on the packager's timeline, so IDRs
    /// start the same slots the segmenters cut at (see [`Ladder::set_timeline_offset`]).
    timeline_offset: i64,
    /// Pts of source keyframes sent to the decoder and not yet seen coming out.
    source_keys: VecDeque<i64>,
    /// The first source keyframe arrived (earlier frames cannot be decoded and are dropped).
    started: bool,
    /// Outputs decided in [`Ladder::new`] (fallbacks at open), emitted by the next call.
    pending: Vec<LadderOutput>,
}

struct Rung {
    spec: RungSpec,
    work: Work,
}

enum Work {
    /// Pass the source through; `announced` once its Track went out.
    Copy {
        announced: bool,
    },
    Encode(Box<EncodedRung>),
}

struct EncodedRung {
    settings: EncoderSettings,
    encoder: VideoEncoder,
    scaler: Scaler,
    /// The configuration last announced.
    config: Option<TrackConfig>,
    /// Force an IDR on the next picture whatever the schedule says (after a fallback).
    force_idr: bool,
}

impl Ladder {
    /// Opens the decoder and one encoder per non-copy rung. Rungs are encoded as given (call
    /// [`crate::plan`] first to fit them to the source). A hardware encoder that cannot be
    /// opened (e.g. NVENC out of sessions) is replaced by libx264, reported as a
    /// [`LadderOutput::Fallback`] on the first call to [`Ladder::push`].
    pub fn new(
        source: &TrackConfig,
        mut rungs: Vec<RungSpec>,
        options: LadderOptions,
    ) -> Result<Self, LadderError> {
        ffi::init();
        let TrackConfig::H264 { sps, pps, .. } = source else {
            return Err(LadderError::NotH264);
        };
        if rungs.is_empty() {
            return Err(LadderError::NoRungs);
        }
        if options.segment_target.is_zero() {
            return Err(LadderError::InvalidOptions(
                "segment_target must be positive".into(),
            ));
        }
        for rung in &rungs {
            rung.validate()?;
        }
        rungs.sort_by_key(|r| std::cmp::Reverse(r.area()));
        let frame_rate = codec::h264::parse_sps(sps)
            .ok()
            .and_then(|info| info.frame_rate)
            .and_then(|(n, d)| Some((i32::try_from(n).ok()?, i32::try_from(d).ok()?)))
            .unwrap_or(DEFAULT_FRAME_RATE);
        let decoder = Decoder::open(sps.clone(), pps.clone(), options.threads)
            .map_err(LadderError::Decoder)?;
        let backend = options.backend;
        let mut pending = Vec::new();
        let mut built = Vec::with_capacity(rungs.len());
        let has_copy = rungs.iter().any(|r| r.copy);
        for spec in rungs {
            let work = if spec.copy {
                Work::Copy { announced: false }
            } else {
                let settings = EncoderSettings {
                    width: u32::from(spec.width),
                    height: u32::from(spec.height),
                    format: backend.input_format(),
                    bitrate: spec.bitrate,
                    max_bitrate: spec.max_bitrate,
                    profile: spec.profile.clone(),
                    preset: spec.preset.clone(),
                    threads: options.threads,
                    frame_rate,
                };
                let encoder = open_encoder(&spec.name, backend, &settings, &mut pending)?;
                Work::Encode(Box::new(EncodedRung {
                    scaler: Scaler::new(settings.width, settings.height, settings.format),
                    settings,
                    encoder,
                    config: None,
                    force_idr: false,
                }))
            };
            built.push(Rung { spec, work });
        }
        Ok(Ladder {
            source: source.clone(),
            decoder,
            rungs: built,
            schedule: IdrSchedule::new(options.segment_target, has_copy),
            timeline_offset: 0,
            source_keys: VecDeque::new(),
            started: false,
            pending,
        })
    }

    /// Places the timeline the packager cuts by (`codec::hls::Segmenter::set_timeline_offset`,
    /// in 90 kHz ticks): IDRs are forced at the first picture of each of its slots. Applies
    /// from the next picture.
    pub fn set_timeline_offset(&mut self, ticks: u64) {
        self.timeline_offset = i64::try_from(ticks).unwrap_or(i64::MAX);
    }

    /// Takes one source access unit (video, decode order) and appends what came out. Frames
    /// before the first source keyframe are dropped. A sample the decoder rejects is logged
    /// and skipped; errors are returned only when the ladder cannot go on.
    pub fn push(&mut self, frame: &Frame, out: &mut Vec<LadderOutput>) -> Result<(), LadderError> {
        out.append(&mut self.pending);
        if !self.started {
            if !frame.keyframe {
                tracing::debug!(dts = frame.dts, "frame before the first keyframe: dropped");
                return Ok(());
            }
            self.started = true;
        }
        for rung in &mut self.rungs {
            if let Work::Copy { announced } = &mut rung.work {
                if !*announced {
                    *announced = true;
                    out.push(LadderOutput::Track {
                        rung: rung.spec.name.clone(),
                        config: self.source.clone(),
                    });
                }
                out.push(LadderOutput::Frame {
                    rung: rung.spec.name.clone(),
                    frame: frame.clone(),
                });
            }
        }
        let pts = frame.pts();
        let dts = i64::try_from(frame.dts).unwrap_or(i64::MAX);
        if frame.keyframe {
            if self.source_keys.len() >= MAX_PENDING_KEYFRAMES {
                self.source_keys.pop_front();
            }
            self.source_keys.push_back(pts);
        }
        match self
            .decoder
            .send(&frame.data, frame.keyframe, pts, dts)
            .map_err(LadderError::Decoder)?
        {
            Sent::Accepted => {}
            Sent::Rejected(e) => tracing::warn!(pts, error = %e, "decoder rejected a sample"),
        }
        self.drain_decoder(out)
    }

    /// End of stream: drains the decoder and every encoder. The ladder takes no frames after.
    pub fn finish(&mut self, out: &mut Vec<LadderOutput>) -> Result<(), LadderError> {
        out.append(&mut self.pending);
        if self.started {
            self.decoder.send_eof().map_err(LadderError::Decoder)?;
            self.drain_decoder(out)?;
        }
        for rung in &mut self.rungs {
            if let Work::Encode(enc) = &mut rung.work {
                let name = &rung.spec.name;
                let drained = enc.encoder.send_eof().and_then(|()| enc.drain(name, out));
                if let Err(e) = drained {
                    // End of stream: nothing left to fall back for.
                    tracing::warn!(rung = %name, error = %e, "encoder failed while flushing");
                }
            }
        }
        Ok(())
    }

    /// The backend of every encoded rung now (copy rungs have none and are not listed).
    pub fn backends(&self) -> Vec<(String, BackendKind)> {
        self.rungs
            .iter()
            .filter_map(|r| match &r.work {
                Work::Encode(enc) => Some((r.spec.name.clone(), enc.encoder.backend())),
                Work::Copy { .. } => None,
            })
            .collect()
    }

    /// Drops the smallest encoded rung unless it is the only rung left, and returns its name.
    /// Copy rungs cost nothing and are never shed.
    pub fn shed_one(&mut self) -> Option<String> {
        if self.rungs.len() <= 1 {
            return None;
        }
        let (index, _) = self
            .rungs
            .iter()
            .enumerate()
            .filter(|(_, r)| matches!(r.work, Work::Encode(_)))
            .min_by_key(|(i, r)| (r.spec.area(), std::cmp::Reverse(*i)))?;
        let rung = self.rungs.remove(index);
        tracing::info!(rung = %rung.spec.name, "rung shed");
        Some(rung.spec.name)
    }

    /// Test hook: the encoder of `rung` fails once `after_frames` more frames went in, as a
    /// hardware encoder failing mid-stream would; the ladder then falls back to libx264 exactly
    /// as for NVENC. Returns false when no encoded rung has that name. Compiled for this
    /// crate's tests and with the `test-hooks` feature only.
    #[cfg(any(test, feature = "test-hooks"))]
    #[doc(hidden)]
    pub fn inject_encoder_failure(&mut self, rung: &str, after_frames: u64) -> bool {
        self.rungs
            .iter_mut()
            .find(|r| r.spec.name == rung)
            .and_then(|r| match &mut r.work {
                Work::Encode(enc) => {
                    enc.encoder.fail_after(after_frames);
                    Some(())
                }
                Work::Copy { .. } => None,
            })
            .is_some()
    }

    fn drain_decoder(&mut self, out: &mut Vec<LadderOutput>) -> Result<(), LadderError> {
        loop {
            match self.decoder.receive() {
                Ok(Some(picture)) => self.encode_picture(picture, out)?,
                Ok(None) => return Ok(()),
                Err(e @ ffmpeg_next::Error::InvalidData) => {
                    tracing::warn!(error = %e, "undecodable picture skipped");
                    return Ok(());
                }
                Err(e) => return Err(LadderError::Decoder(e)),
            }
        }
    }

    /// One decoded source picture through every encoded rung.
    fn encode_picture(
        &mut self,
        mut picture: frame::Video,
        out: &mut Vec<LadderOutput>,
    ) -> Result<(), LadderError> {
        let Some(pts) = picture.timestamp().or(picture.pts()) else {
            tracing::warn!("decoded picture without timestamp skipped");
            return Ok(());
        };
        while self.source_keys.front().is_some_and(|&k| k < pts) {
            self.source_keys.pop_front();
        }
        let source_key = self.source_keys.front() == Some(&pts);
        if source_key {
            self.source_keys.pop_front();
        }
        let idr = self
            .schedule
            .decide(pts.saturating_add(self.timeline_offset), source_key);
        picture.set_pts(Some(pts));
        // Scaled pictures of this source picture, largest first: the cascade's inputs.
        let mut scaled: Vec<frame::Video> = Vec::new();
        for rung in &mut self.rungs {
            let Work::Encode(enc) = &mut rung.work else {
                continue;
            };
            let name = &rung.spec.name;
            if enc.scaler.passes_through(&picture) {
                enc.encode(name, &mut picture, idr, out)?;
                continue;
            }
            let (w, h) = (enc.settings.width, enc.settings.height);
            let input = scaled
                .iter()
                .rev()
                .find(|f| f.width() >= w && f.height() >= h)
                .unwrap_or(&picture);
            let mut resized = enc
                .scaler
                .scale(input)
                .map_err(|source| LadderError::Scale {
                    rung: name.clone(),
                    source,
                })?;
            resized.set_pts(Some(pts));
            enc.encode(name, &mut resized, idr, out)?;
            scaled.push(resized);
        }
        Ok(())
    }
}

/// Opens a rung's encoder; a hardware backend that fails is replaced by libx264 at once.
fn open_encoder(
    rung: &str,
    backend: BackendKind,
    settings: &EncoderSettings,
    pending: &mut Vec<LadderOutput>,
) -> Result<VideoEncoder, LadderError> {
    match VideoEncoder::open(backend, settings) {
        Ok(encoder) => Ok(encoder),
        Err(reason) if backend.is_hardware() => {
            tracing::warn!(rung, %backend, %reason, "cannot open encoder: using x264");
            let encoder = VideoEncoder::open(BackendKind::Software, settings).map_err(|r| {
                LadderError::OpenEncoder {
                    rung: rung.to_string(),
                    backend: BackendKind::Software,
                    reason: r,
                }
            })?;
            pending.push(LadderOutput::Fallback {
                rung: rung.to_string(),
                reason: format!("cannot open {backend} encoder: {reason}"),
            });
            Ok(encoder)
        }
        Err(reason) => Err(LadderError::OpenEncoder {
            rung: rung.to_string(),
            backend,
            reason,
        }),
    }
}

impl EncodedRung {
    /// Encodes one picture (an IDR when `idr` or after a fallback) and appends the output.
    fn encode(
        &mut self,
        name: &str,
        picture: &mut frame::Video,
        idr: bool,
        out: &mut Vec<LadderOutput>,
    ) -> Result<(), LadderError> {
        let force = idr || self.force_idr;
        picture.set_kind(if force {
            picture::Type::I
        } else {
            // Decoded pictures carry their source type; libx264 would obey a stale B or I.
            picture::Type::None
        });
        let sent = self
            .encoder
            .send(picture)
            .and_then(|()| self.drain(name, out));
        match sent {
            Ok(()) => {
                self.force_idr &= !force;
                Ok(())
            }
            Err(e) if self.encoder.backend().is_hardware() || self.encoder.failure_injected() => {
                self.fall_back(name, &e, out)?;
                picture.set_kind(picture::Type::I);
                self.encoder
                    .send(picture)
                    .and_then(|()| self.drain(name, out))
                    .map_err(|source| self.encode_error(name, source))?;
                self.force_idr = false;
                Ok(())
            }
            Err(source) => Err(self.encode_error(name, source)),
        }
    }

    /// Replaces the failed encoder by libx264 with the same settings.
    fn fall_back(
        &mut self,
        name: &str,
        error: &EncodeFailure,
        out: &mut Vec<LadderOutput>,
    ) -> Result<(), LadderError> {
        let failed = self.encoder.backend();
        tracing::warn!(rung = name, backend = %failed, %error, "encoder failed: falling back to x264");
        self.encoder =
            VideoEncoder::open(BackendKind::Software, &self.settings).map_err(|reason| {
                LadderError::OpenEncoder {
                    rung: name.to_string(),
                    backend: BackendKind::Software,
                    reason,
                }
            })?;
        self.force_idr = true;
        out.push(LadderOutput::Fallback {
            rung: name.to_string(),
            reason: format!("{failed} encoder failed: {error}"),
        });
        Ok(())
    }

    fn encode_error(&self, name: &str, source: EncodeFailure) -> LadderError {
        LadderError::Encode {
            rung: name.to_string(),
            backend: self.encoder.backend(),
            source: source.into_libav(),
        }
    }

    /// Moves every packet the encoder has ready to `out`.
    fn drain(&mut self, name: &str, out: &mut Vec<LadderOutput>) -> Result<(), EncodeFailure> {
        while let Some(packet) = self.encoder.receive()? {
            self.emit(name, &packet, out);
        }
        Ok(())
    }

    fn emit(&mut self, name: &str, packet: &EncodedPacket, out: &mut Vec<LadderOutput>) {
        let au = codec::h264::to_avcc(&packet.annexb);
        if let (Some(sps), Some(pps)) = (au.sps, au.pps) {
            match codec::h264::track_config(sps, pps) {
                Ok(config) if self.config.as_ref() != Some(&config) => {
                    self.config = Some(config.clone());
                    out.push(LadderOutput::Track {
                        rung: name.to_string(),
                        config,
                    });
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(rung = name, error = %e, "encoder sps unreadable"),
            }
        }
        if self.config.is_none() || !au.has_slice {
            tracing::warn!(
                rung = name,
                pts = packet.pts,
                "encoded frame without parameter sets dropped"
            );
            return;
        }
        let ts = u64::try_from(packet.pts).unwrap_or(0);
        out.push(LadderOutput::Frame {
            rung: name.to_string(),
            frame: Frame {
                dts: ts,
                cts: 0,
                keyframe: au.keyframe,
                data: Bytes::from(au.data),
            },
        });
    }
}

#[cfg(test)]
mod tests;
