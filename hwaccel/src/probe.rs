//! Runtime backend selection: [`probe`] opens a real, tiny encode session on each candidate
//! backend in preference order and picks the first that produces an IDR with parameter sets.
//! Absence of NVENC is a fallback, not an error, unless NVENC was required.

use ffmpeg_next::{frame, picture};

use crate::encode::{EncoderSettings, VideoEncoder};
use crate::{ffi, BackendKind, EncoderChoice, ProbeError};

/// Probe session size: small enough to cost milliseconds, above every encoder's minimum.
const PROBE_WIDTH: u32 = 256;
const PROBE_HEIGHT: u32 = 144;
const PROBE_FRAMES: i64 = 3;

/// What [`probe`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProbeReport {
    /// The backend to use.
    pub chosen: BackendKind,
    /// Every backend tried, in order, with why it failed (the last one tried is `chosen`).
    pub tried: Vec<(BackendKind, Result<(), String>)>,
}

/// Picks the encoder backend for `choice`: `Auto` tries NVENC direct (feature `nvenc`), then
/// libavcodec's `h264_nvenc`, then libx264; `Nvenc` only the NVENC backends; `Software` only
/// libx264. Each try opens a 256x144 session and encodes a few frames.
pub fn probe(choice: EncoderChoice) -> Result<ProbeReport, ProbeError> {
    ffi::init();
    let mut candidates = Vec::new();
    if choice != EncoderChoice::Software {
        #[cfg(feature = "nvenc")]
        candidates.push(BackendKind::NvencDirect);
        candidates.push(BackendKind::NvencFfmpeg);
    }
    if choice != EncoderChoice::Nvenc {
        candidates.push(BackendKind::Software);
    }
    let mut tried = Vec::new();
    for kind in candidates {
        let result = try_backend(kind);
        match &result {
            Ok(()) => tracing::info!(backend = %kind, "encoder backend works"),
            Err(reason) => tracing::info!(backend = %kind, %reason, "encoder backend unavailable"),
        }
        let works = result.is_ok();
        tried.push((kind, result));
        if works {
            return Ok(ProbeReport {
                chosen: kind,
                tried,
            });
        }
    }
    let reasons = tried
        .iter()
        .filter_map(|(kind, r)| r.as_ref().err().map(|e| format!("{kind}: {e}")))
        .collect::<Vec<_>>()
        .join("; ");
    Err(match choice {
        EncoderChoice::Nvenc => ProbeError::NoNvenc(reasons),
        EncoderChoice::Software => ProbeError::NoSoftware(reasons),
        EncoderChoice::Auto => ProbeError::NoEncoder(reasons),
    })
}

fn try_backend(kind: BackendKind) -> Result<(), String> {
    match kind {
        #[cfg(feature = "nvenc")]
        BackendKind::NvencDirect => {
            crate::nvenc::probe().and_then(|()| test_encode(BackendKind::NvencDirect))
        }
        #[cfg(not(feature = "nvenc"))]
        BackendKind::NvencDirect => Err("built without the nvenc feature".into()),
        other => test_encode(other).map_err(|e| match diagnosis(&e) {
            Some(why) => format!("{why} ({e})"),
            None => e,
        }),
    }
}

/// A plain-words cause for the NVENC failures operators meet, from libavcodec's messages.
/// Seen on an H200 (a GPU without NVENC): "OpenEncodeSessionEx failed: unsupported device (2)"
/// then "No capable devices found".
fn diagnosis(error: &str) -> Option<&'static str> {
    let e = error.to_ascii_lowercase();
    if e.contains("cannot load libcuda") || e.contains("cannot load libnvidia-encode") {
        Some("no NVIDIA driver")
    } else if e.contains("cuda_error_no_device") || e.contains("no cuda capable device") {
        Some("no NVIDIA GPU")
    } else if e.contains("unsupported device") || e.contains("no capable devices") {
        Some("no GPU with an NVENC engine")
    } else if e.contains("out of memory") || e.contains("incompatible client key") {
        Some("NVENC sessions exhausted")
    } else if e.contains("driver does not support the required nvenc api version") {
        Some("NVIDIA driver too old")
    } else {
        None
    }
}

/// Encodes a few frames and checks the first packet is an IDR with SPS and PPS.
fn test_encode(kind: BackendKind) -> Result<(), String> {
    let settings = EncoderSettings {
        width: PROBE_WIDTH,
        height: PROBE_HEIGHT,
        format: kind.input_format(),
        bitrate: 200_000,
        max_bitrate: 250_000,
        profile: "high".into(),
        preset: "veryfast".into(),
        threads: 1,
        frame_rate: (30, 1),
    };
    let mut encoder = VideoEncoder::open(kind, &settings)?;
    let mut packets = Vec::new();
    for i in 0..PROBE_FRAMES {
        let mut picture = frame::Video::new(settings.format, PROBE_WIDTH, PROBE_HEIGHT);
        for plane in 0..picture.planes() {
            let fill = if plane == 0 { 16 + (i as u8) * 8 } else { 128 };
            picture.data_mut(plane).fill(fill);
        }
        picture.set_pts(Some(i * 3000));
        picture.set_kind(if i == 0 {
            picture::Type::I
        } else {
            picture::Type::None
        });
        encoder.send(&picture).map_err(|e| format!("encode: {e}"))?;
        while let Some(p) = encoder.receive().map_err(|e| format!("encode: {e}"))? {
            packets.push(p);
        }
    }
    encoder.send_eof().map_err(|e| format!("flush: {e}"))?;
    while let Some(p) = encoder.receive().map_err(|e| format!("flush: {e}"))? {
        packets.push(p);
    }
    let first = packets.first().ok_or("encoder produced no output")?;
    let au = codec::h264::to_avcc(&first.annexb);
    if !(au.keyframe && au.sps.is_some() && au.pps.is_some()) {
        return Err("first output is not an idr with in-band sps/pps".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvenc_failures_in_plain_words() {
        assert_eq!(
            diagnosis("h264_nvenc: Cannot load libcuda.so.1 (Operation not permitted)"),
            Some("no NVIDIA driver")
        );
        assert_eq!(
            diagnosis(
                "h264_nvenc: OpenEncodeSessionEx failed: unsupported device (2): (no details); \
                 h264_nvenc: No capable devices found ()"
            ),
            Some("no GPU with an NVENC engine")
        );
        assert_eq!(diagnosis("something else"), None);
    }

    #[test]
    fn software_picks_x264() {
        let report = probe(EncoderChoice::Software).expect("libx264 works here");
        assert_eq!(report.chosen, BackendKind::Software);
        assert_eq!(report.tried, vec![(BackendKind::Software, Ok(()))]);
    }

    /// On a machine without an NVENC device (CI), NVENC is refused with the reason; where one
    /// exists, it is chosen.
    #[test]
    fn nvenc_fails_clearly_or_works() {
        match probe(EncoderChoice::Nvenc) {
            Ok(report) => assert!(report.chosen.is_hardware()),
            Err(e) => {
                let text = e.to_string();
                println!("{text}");
                assert!(
                    text.starts_with("encoder = \"nvenc\" but no NVENC device: nvenc"),
                    "{text}"
                );
                assert!(
                    text.contains("no NVIDIA driver")
                        || text.contains("no NVIDIA GPU")
                        || text.contains("no GPU with an NVENC engine"),
                    "{text}"
                );
                assert!(matches!(e, ProbeError::NoNvenc(ref r) if r.contains("nvenc-ffmpeg: ")));
            }
        }
    }

    #[test]
    fn auto_falls_back_to_software() {
        let report = probe(EncoderChoice::Auto).expect("some encoder works");
        println!("{report:?}");
        let (last, result) = report.tried.last().expect("tried something");
        assert_eq!((*last, result.is_ok()), (report.chosen, true));
        if report.chosen == BackendKind::Software {
            assert!(report.tried.len() >= 2, "nvenc attempt listed first");
            assert!(report
                .tried
                .iter()
                .any(|(k, r)| *k == BackendKind::NvencFfmpeg && r.is_err()));
        }
    }
}
