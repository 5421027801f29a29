//! NVENC through the NVIDIA Video Codec SDK (`nvidia-video-codec-sdk`, cargo feature `nvenc`):
//! the [`crate::BackendKind::NvencDirect`] backend.
//!
//! What it does: [`probe`] creates a CUDA context on device 0 (cudarc, driver loaded with
//! dlopen), opens an NVENC session and checks the device can encode H.264; [`crate::probe`] then
//! runs its usual tiny test encode through [`NvencEncoder`]. A rung of a ladder built with
//! `NvencDirect` encodes through [`NvencEncoder`]: swscale produces NV12 at the rung size
//! ([`crate::BackendKind::input_format`]), [`nv12::pack`] lays it out at the pitch of an
//! NVENC-allocated host input buffer, and one worker thread per rung owns the CUDA context and
//! the session (the SDK's `Session` and buffers are neither `Send` nor `'static`), encoding
//! synchronously: one picture in, one Annex B access unit out. Session settings come from
//! [`params::NvencParams`] (`config` maps them onto the SDK's structs): the x264 preset's p1..p7
//! equivalent with low-latency tuning, the rung's profile, VBR (CBR when the peak equals the
//! average) with a one-second VBV at the peak rate, infinite GOP, no B-frames, no lookahead,
//! zero reorder delay, SPS/PPS repeated on every IDR. IDRs are forced per picture with picture
//! type decision off and `NV_ENC_PIC_TYPE_IDR` (the SDK's safe API has no `encodePicFlags`, so
//! no `FORCEIDR`/`OUTPUT_SPSPPS`; `repeatSPSPPS` puts the parameter sets in band instead).
//!
//! Failures: anything that fails or panics while opening (no driver, no NVENC engine, sessions
//! exhausted) is an open error, and the ladder falls back to libx264 for that rung; a failure
//! mid-stream is an encode error, and the ladder falls back the same way. A panic inside the
//! SDK (its `Drop`s `expect` success) ends only the worker thread.
//!
//! Verified here: compiled (`cargo check`/`clippy --features nvenc`), and the pure parts
//! ([`params`], [`nv12`]) by unit tests. Not verified: no encode has run on NVENC hardware
//! from this code (written without a GPU; H100/H200 have no NVENC engine). Unverified in
//! particular: that the driver accepts picture type decision off with forced IDR/P types, the
//! NV12 chroma offset of `pitch * height` in a locked input buffer, and the output's SPS/PPS.
//!
//! Building: the SDK crate links `libnvidia-encode` and `libnvcuvid` from its build script and
//! panics when it cannot find them. Its `ci-check` feature (enabled here) skips that step, so
//! `cargo check --features nvenc` works on any machine, but linking a binary then needs those
//! libraries passed by hand (`RUSTFLAGS="-l nvidia-encode -l nvcuvid"` with the driver's
//! libraries installed). The SDK also panics on a driver API version mismatch; [`probe`] and the
//! worker thread catch that and report it.

// Without the feature only their tests use them; they are compiled to keep those tests running
// on every machine.
#[cfg_attr(not(feature = "nvenc"), allow(dead_code))]
pub(crate) mod nv12;
#[cfg_attr(not(feature = "nvenc"), allow(dead_code))]
pub(crate) mod params;

#[cfg(feature = "nvenc")]
mod config;
#[cfg(feature = "nvenc")]
mod worker;

#[cfg(feature = "nvenc")]
pub(crate) use worker::NvencEncoder;

/// Opens an NVENC session on CUDA device 0 and checks H.264 support.
#[cfg(feature = "nvenc")]
pub(crate) fn probe() -> Result<(), String> {
    use std::panic::{catch_unwind, AssertUnwindSafe};

    use cudarc::driver::CudaContext;
    use nvidia_video_codec_sdk::sys::nvEncodeAPI::NV_ENC_CODEC_H264_GUID;
    use nvidia_video_codec_sdk::Encoder;

    catch_unwind(AssertUnwindSafe(|| {
        let ctx = CudaContext::new(0).map_err(|e| format!("cuda device 0: {e:?}"))?;
        let encoder = Encoder::initialize_with_cuda(ctx)
            .map_err(|e| format!("nvenc session on cuda device 0: {e:?}"))?;
        let codecs = encoder
            .get_encode_guids()
            .map_err(|e| format!("nvenc codec list: {e:?}"))?;
        if codecs.contains(&NV_ENC_CODEC_H264_GUID) {
            Ok(())
        } else {
            Err("nvenc device cannot encode h.264".to_string())
        }
    }))
    .unwrap_or_else(|panic| {
        Err(format!(
            "nvidia libraries unusable: {}",
            panic_text(&*panic)
        ))
    })
}

/// The message of a caught panic.
#[cfg(feature = "nvenc")]
fn panic_text(panic: &(dyn std::any::Any + Send)) -> &str {
    panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown failure")
}
