//! One H.264 encode session, configured the way the ladder needs it: no B-frames, no
//! lookahead, no encoder-chosen keyframes (IDRs only where the caller forces them with
//! `pict_type = I`), capped VBV, Annex B output with SPS/PPS in band before every IDR,
//! timestamps in 90 kHz. Two implementations behind [`VideoEncoder`]: libavcodec (`libx264` or
//! `h264_nvenc`, configured here) and, with feature `nvenc`, an NVENC session through the
//! NVIDIA Video Codec SDK (`crate::nvenc`).
//!
//! It does not decide when to force an IDR, nor turn packets into `codec::Frame`s: that is
//! [`crate::ladder`].

use ffmpeg_next::codec::encoder;
use ffmpeg_next::util::error::EAGAIN;
use ffmpeg_next::{format::Pixel, frame, Dictionary, Error, Packet, Rational};

use crate::{ffi, BackendKind};

/// GOP length given to the encoders: effectively infinite (x264's own "infinite" value), so
/// the only IDRs are the forced ones.
const KEYINT_INFINITE: u32 = 1 << 30;

/// What an encode session is opened with.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EncoderSettings {
    /// Picture size in pixels (even).
    pub width: u32,
    pub height: u32,
    /// Pixel format of the pictures sent in ([`BackendKind::input_format`] of the backend the
    /// rung started with; kept when a rung falls back, libx264 takes both).
    pub format: Pixel,
    /// Average and peak bitrate in bit/s; the VBV buffer holds one second at the peak rate.
    pub bitrate: u32,
    pub max_bitrate: u32,
    /// `baseline`, `main` or `high`.
    pub profile: String,
    /// An x264 preset name; mapped for NVENC by [`nvenc_preset`].
    pub preset: String,
    /// Encoder threads; 0 lets the encoder choose.
    pub threads: usize,
    /// Nominal frame rate (numerator, denominator), for rate control only: timestamps rule.
    pub frame_rate: (i32, i32),
}

/// One coded access unit as the encoder produced it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct EncodedPacket {
    /// Presentation time, 90 kHz (the pts of the frame sent in).
    pub pts: i64,
    /// Annex B bytes; SPS/PPS precede every IDR.
    pub annexb: Vec<u8>,
}

/// Why an open encoder failed on a picture (the ladder falls back to libx264 for hardware).
#[derive(thiserror::Error, Debug)]
pub(crate) enum EncodeFailure {
    /// libavcodec returned this code.
    #[error("{0}")]
    Libav(#[from] Error),
    /// The NVENC session failed; the text says which call and why.
    #[cfg_attr(not(feature = "nvenc"), allow(dead_code))]
    #[error("{0}")]
    Nvenc(String),
}

impl EncodeFailure {
    /// The libavcodec code for [`crate::LadderError::Encode`] (only libavcodec encoders end
    /// there; hardware failures fall back instead).
    pub(crate) fn into_libav(self) -> Error {
        match self {
            EncodeFailure::Libav(e) => e,
            EncodeFailure::Nvenc(_) => Error::External,
        }
    }
}

/// An open encode session.
pub(crate) struct VideoEncoder {
    backend: BackendKind,
    inner: Inner,
    /// Frames accepted so far.
    sent: u64,
    /// Test hook: [`crate::Ladder::inject_encoder_failure`].
    fail_after: Option<u64>,
}

enum Inner {
    Libav {
        context: encoder::Video,
        packet: Packet,
    },
    #[cfg(feature = "nvenc")]
    Nvenc(crate::nvenc::NvencEncoder),
}

impl VideoEncoder {
    /// Opens a session; the error text quotes libavcodec's (or NVENC's) own explanation when
    /// it gave one.
    pub(crate) fn open(backend: BackendKind, settings: &EncoderSettings) -> Result<Self, String> {
        let inner = match backend.libavcodec_encoder() {
            Some(name) => {
                let (result, log) = ffi::capture_log(|| open_libav(name, backend, settings));
                let context = result.map_err(|e| describe(&e, &log))?;
                Inner::Libav {
                    context,
                    packet: Packet::empty(),
                }
            }
            None => open_direct(settings)?,
        };
        Ok(VideoEncoder {
            backend,
            inner,
            sent: 0,
            fail_after: None,
        })
    }

    pub(crate) fn backend(&self) -> BackendKind {
        self.backend
    }

    #[cfg(any(test, feature = "test-hooks"))]
    /// Makes [`VideoEncoder::send`] fail once `frames` more frames were accepted (test hook).
    pub(crate) fn fail_after(&mut self, frames: u64) {
        self.fail_after = Some(self.sent.saturating_add(frames));
    }

    /// Whether a failure was injected with [`VideoEncoder::fail_after`].
    pub(crate) fn failure_injected(&self) -> bool {
        self.fail_after.is_some()
    }

    /// Sends one picture (its pts in 90 kHz, `pict_type` I to force an IDR), in
    /// [`EncoderSettings::format`].
    pub(crate) fn send(&mut self, picture: &frame::Video) -> Result<(), EncodeFailure> {
        if self.fail_after.is_some_and(|limit| self.sent >= limit) {
            return Err(EncodeFailure::Libav(Error::External));
        }
        match &mut self.inner {
            Inner::Libav { context, .. } => context.send_frame(picture)?,
            #[cfg(feature = "nvenc")]
            Inner::Nvenc(nvenc) => nvenc
                .send(picture, picture.kind() == ffmpeg_next::picture::Type::I)
                .map_err(EncodeFailure::Nvenc)?,
        }
        self.sent += 1;
        Ok(())
    }

    /// Tells the encoder no more pictures come; [`VideoEncoder::receive`] then drains it.
    pub(crate) fn send_eof(&mut self) -> Result<(), EncodeFailure> {
        match &mut self.inner {
            Inner::Libav { context, .. } => Ok(context.send_eof()?),
            #[cfg(feature = "nvenc")]
            Inner::Nvenc(nvenc) => nvenc.finish().map_err(EncodeFailure::Nvenc),
        }
    }

    /// The next coded access unit, or `None` when the encoder needs more input (or is drained).
    pub(crate) fn receive(&mut self) -> Result<Option<EncodedPacket>, EncodeFailure> {
        match &mut self.inner {
            Inner::Libav { context, packet } => match context.receive_packet(packet) {
                Ok(()) => {
                    let annexb = packet.data().map(<[u8]>::to_vec).unwrap_or_default();
                    let pts = packet.pts().or(packet.dts()).unwrap_or(0);
                    Ok(Some(EncodedPacket { pts, annexb }))
                }
                Err(Error::Other { errno: EAGAIN }) | Err(Error::Eof) => Ok(None),
                Err(e) => Err(e.into()),
            },
            #[cfg(feature = "nvenc")]
            Inner::Nvenc(nvenc) => Ok(nvenc.receive()),
        }
    }
}

#[cfg(feature = "nvenc")]
fn open_direct(settings: &EncoderSettings) -> Result<Inner, String> {
    crate::nvenc::NvencEncoder::open(settings).map(Inner::Nvenc)
}

#[cfg(not(feature = "nvenc"))]
fn open_direct(_: &EncoderSettings) -> Result<Inner, String> {
    Err("built without the nvenc feature".to_string())
}

fn open_libav(
    name: &str,
    backend: BackendKind,
    s: &EncoderSettings,
) -> Result<encoder::Video, Error> {
    let codec = encoder::find_by_name(name).ok_or(Error::EncoderNotFound)?;
    let mut enc = ffmpeg_next::codec::context::Context::new_with_codec(codec)
        .encoder()
        .video()?;
    enc.set_width(s.width);
    enc.set_height(s.height);
    enc.set_format(s.format);
    enc.set_time_base(Rational(1, codec::MPEG_TIMESCALE as i32));
    enc.set_frame_rate(Some(Rational(s.frame_rate.0, s.frame_rate.1)));
    enc.set_bit_rate(s.bitrate as usize);
    enc.set_max_bit_rate(s.max_bitrate as usize);
    enc.set_gop(KEYINT_INFINITE);
    enc.set_max_b_frames(0);
    let mut opts = Dictionary::new();
    opts.set("bufsize", &s.max_bitrate.to_string());
    opts.set("threads", &s.threads.to_string());
    opts.set("profile", &s.profile);
    // A forced I picture becomes an IDR (segments must start with one).
    opts.set("forced-idr", "1");
    match backend {
        BackendKind::Software => {
            opts.set("preset", &s.preset);
            // zerolatency: no lookahead, no B-frames, no frame threads (sliced threads instead).
            opts.set("tune", "zerolatency");
            opts.set(
                "x264-params",
                "scenecut=0:rc-lookahead=0:sync-lookahead=0:bframes=0",
            );
        }
        BackendKind::NvencFfmpeg | BackendKind::NvencDirect => {
            opts.set("preset", nvenc_preset(&s.preset));
            opts.set("tune", "ll");
            opts.set("rc", "vbr");
            opts.set("zerolatency", "1");
            opts.set("delay", "0");
            opts.set("no-scenecut", "1");
            opts.set("bf", "0");
        }
    }
    enc.open_as_with(codec, opts)
}

/// Maps an x264 preset to the NVENC preset of similar speed (p1 fastest .. p7 slowest).
pub(crate) fn nvenc_preset(x264: &str) -> &'static str {
    const NAMES: [&str; 7] = ["p1", "p2", "p3", "p4", "p5", "p6", "p7"];
    NAMES[usize::from(nvenc_preset_number(x264) - 1)]
}

/// [`nvenc_preset`] as its number, 1..=7.
pub(crate) fn nvenc_preset_number(x264: &str) -> u8 {
    match x264 {
        "ultrafast" | "superfast" => 1,
        "veryfast" => 2,
        "faster" => 3,
        "fast" => 4,
        "medium" => 5,
        "slow" => 6,
        _ => 7,
    }
}

/// An error text for a failed open: libavcodec's log lines (`h264_nvenc: Cannot load
/// libcuda.so.1`) followed by the error code's text.
pub(crate) fn describe(err: &Error, log: &[String]) -> String {
    let lines: Vec<String> = log.iter().map(|l| strip_context(l)).collect();
    if lines.is_empty() {
        err.to_string()
    } else {
        format!("{} ({err})", lines.join("; "))
    }
}

/// `[h264_nvenc @ 0x55d0c] Cannot load libcuda.so.1` -> `h264_nvenc: Cannot load libcuda.so.1`.
fn strip_context(line: &str) -> String {
    if let Some(rest) = line.strip_prefix('[') {
        if let Some((context, message)) = rest.split_once("] ") {
            let name = context.split(" @ ").next().unwrap_or(context);
            return format!("{name}: {message}");
        }
    }
    line.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_map_to_nvenc() {
        assert_eq!(nvenc_preset("ultrafast"), "p1");
        assert_eq!(nvenc_preset("veryfast"), "p2");
        assert_eq!(nvenc_preset("medium"), "p5");
        assert_eq!(nvenc_preset("placebo"), "p7");
    }

    #[test]
    fn open_errors_quote_the_log() {
        let log = vec!["[h264_nvenc @ 0x55d0c0] Cannot load libcuda.so.1".to_string()];
        assert_eq!(
            describe(&Error::External, &log),
            format!("h264_nvenc: Cannot load libcuda.so.1 ({})", Error::External)
        );
        assert_eq!(describe(&Error::External, &[]), Error::External.to_string());
    }
}
