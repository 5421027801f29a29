//! NVENC through the NVIDIA Video Codec SDK (`nvidia-video-codec-sdk`, cargo feature `nvenc`).
//!
//! What it does today: [`probe`] creates a CUDA context on device 0 (cudarc, driver loaded with
//! dlopen), opens an NVENC session on it and checks that the device can encode H.264. That is
//! the [`crate::BackendKind::NvencDirect`] candidate of [`crate::probe`]. Rungs of a ladder
//! built with `NvencDirect` encode through libavcodec's `h264_nvenc` (the same NVENC engine) and
//! report `NvencFfmpeg`; direct encoding (CUDA input buffers, no libavcodec) is not written yet.
//!
//! Building: the SDK crate links `libnvidia-encode` and `libnvcuvid` from its build script and
//! panics when it cannot find them. Its `ci-check` feature (enabled here) skips that step, so
//! `cargo check --features nvenc` works on any machine, but linking a binary then needs those
//! libraries passed by hand (`RUSTFLAGS="-l nvidia-encode -l nvcuvid"` with the driver's
//! libraries installed). The SDK also panics on a driver API version mismatch; [`probe`]
//! catches that and reports it.

use std::panic::{catch_unwind, AssertUnwindSafe};

use cudarc::driver::CudaContext;
use nvidia_video_codec_sdk::sys::nvEncodeAPI::NV_ENC_CODEC_H264_GUID;
use nvidia_video_codec_sdk::Encoder;

/// Opens an NVENC session on CUDA device 0 and checks H.264 support.
pub(crate) fn probe() -> Result<(), String> {
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
        let what = panic
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| panic.downcast_ref::<&str>().copied())
            .unwrap_or("unknown failure");
        Err(format!("nvidia libraries unusable: {what}"))
    })
}
