//! The crate's only unsafe code: what the safe `ffmpeg-next` API does not cover.
//!
//! - [`capture_log`]: libav* report *why* something failed (no `libcuda.so.1`, no NVENC
//!   capable device, unsupported profile...) only through `av_log`, while the returned error is
//!   a bare code. A process-wide log callback forwards libav* messages to `tracing` (target
//!   `ffmpeg`) instead of stderr, and, on the thread that asked, keeps warnings and errors so
//!   probe and open errors can quote them. The callback needs the C `va_list` layout, so it is
//!   installed on x86_64 only; elsewhere libav* logs to stderr and errors carry only the code.
//! - [`SendScaler`]: `ffmpeg-next` does not mark its swscale context `Send`, although an owned
//!   `SwsContext` may move between threads; the ladder must move to its dedicated thread.
//! - With feature `nvenc`, two things `nvidia-video-codec-sdk` 0.4's safe API does not offer:
//!   reading the H.264 member of `NV_ENC_CONFIG`'s codec union ([`nvenc_h264_config`]: its
//!   bitfield setters need a reference into the union), and writing an input buffer
//!   ([`nvenc_write_input`]: the SDK's `BufferLock::write` is `unsafe` because it does not check
//!   the length; the check is done here).
//!
//! Nothing else in the crate may use `unsafe`; the crate's lints deny it outside this module.
#![allow(unsafe_code)]

use std::cell::RefCell;
use std::sync::Once;

use ffmpeg_next::software::scaling;

thread_local! {
    /// Messages kept for the innermost [`capture_log`] running on this thread.
    static CAPTURE: RefCell<Option<Vec<String>>> = const { RefCell::new(None) };
}

/// libav* log levels (`AV_LOG_*`).
const AV_LOG_ERROR: i32 = 16;
const AV_LOG_WARNING: i32 = 24;
const AV_LOG_INFO: i32 = 32;

/// Installs the log callback (once per process). Idempotent and cheap.
pub(crate) fn init() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `log_callback` has the exact signature libavutil expects and never unwinds.
        unsafe {
            ffmpeg_next::ffi::av_log_set_callback(Some(log_callback));
        }
    });
}

/// Runs `f` and returns what it returned with the libav* warnings and errors it logged on this
/// thread (empty where the callback is not installed).
pub(crate) fn capture_log<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    init();
    let previous = CAPTURE.with(|c| c.replace(Some(Vec::new())));
    let out = f();
    let lines = CAPTURE.with(|c| c.replace(previous)).unwrap_or_default();
    (out, lines)
}

/// Routes one formatted libav* line: into the capture buffer when one is active on this
/// thread, and to `tracing`.
fn emit(level: i32, line: &str) {
    if line.is_empty() {
        return;
    }
    let captured = CAPTURE
        .try_with(|c| match c.try_borrow_mut() {
            Ok(mut slot) => match slot.as_mut() {
                Some(lines) if level <= AV_LOG_WARNING => {
                    lines.push(line.to_string());
                    true
                }
                Some(_) => true,
                None => false,
            },
            Err(_) => false,
        })
        .unwrap_or(false);
    if captured {
        tracing::debug!(target: "ffmpeg", "{line}");
    } else if level <= AV_LOG_ERROR {
        tracing::warn!(target: "ffmpeg", "{line}");
    } else if level <= AV_LOG_WARNING {
        tracing::info!(target: "ffmpeg", "{line}");
    } else {
        tracing::debug!(target: "ffmpeg", "{line}");
    }
}

#[cfg(target_arch = "x86_64")]
unsafe extern "C" fn log_callback(
    avcl: *mut std::ffi::c_void,
    level: std::ffi::c_int,
    fmt: *const std::ffi::c_char,
    vl: *mut ffmpeg_next::ffi::__va_list_tag,
) {
    // Verbose and debug lines are dropped before formatting: they cost on every frame.
    if level > AV_LOG_INFO || fmt.is_null() {
        return;
    }
    let mut buf = [0 as std::ffi::c_char; 1024];
    let mut print_prefix: std::ffi::c_int = 1;
    // SAFETY: `buf` is writable for its length, `fmt`/`vl` come straight from libavutil and
    // are consumed once; the result is NUL-terminated (truncated if longer than `buf`).
    let written = unsafe {
        ffmpeg_next::ffi::av_log_format_line2(
            avcl,
            level,
            fmt,
            vl,
            buf.as_mut_ptr(),
            buf.len() as std::ffi::c_int,
            &mut print_prefix,
        )
    };
    if written < 0 {
        return;
    }
    // SAFETY: av_log_format_line2 always NUL-terminates within `buf`.
    let line = unsafe { std::ffi::CStr::from_ptr(buf.as_ptr()) };
    let line = line.to_string_lossy();
    // `emit` does not panic (no indexing, no unwrap); a panic here would abort at the FFI edge.
    emit(level, line.trim_end());
}

/// An swscale context that may move to another thread with the ladder that owns it.
pub(crate) struct SendScaler(pub(crate) scaling::Context);

// SAFETY: the context is owned by one `Scaler` and only used through `&mut`; libswscale keeps
// no thread-affine state in an `SwsContext`, so moving it between threads is sound.
unsafe impl Send for SendScaler {}

/// The H.264 member of an `NV_ENC_CONFIG`'s codec-specific union, by value.
#[cfg(feature = "nvenc")]
pub(crate) fn nvenc_h264_config(
    config: &nvidia_video_codec_sdk::sys::nvEncodeAPI::NV_ENC_CONFIG,
) -> nvidia_video_codec_sdk::sys::nvEncodeAPI::NV_ENC_CONFIG_H264 {
    // SAFETY: the union's members are plain C data. Every `NV_ENC_CONFIG` this crate reads is
    // either a preset configuration the driver filled for `NV_ENC_CODEC_H264_GUID` (so the H.264
    // member is the initialized one) or the SDK's all-zero `Default`, and zero is a valid value
    // for every field and `repr(u32)` enum of `NV_ENC_CONFIG_H264` (each has a 0 variant).
    unsafe { config.encodeCodecConfig.h264Config }
}

/// Writes one packed NV12 picture (see `nvenc::nv12::pack`) into a locked NVENC input buffer
/// created for a `height`-row session whose lock reported `pitch`; refuses data longer than
/// such a buffer holds.
#[cfg(feature = "nvenc")]
pub(crate) fn nvenc_write_input(
    lock: &mut nvidia_video_codec_sdk::BufferLock<'_, '_>,
    data: &[u8],
    pitch: u32,
    height: u32,
) -> Result<(), String> {
    let rows = height as usize + height.div_ceil(2) as usize;
    let capacity = (pitch as usize).saturating_mul(rows);
    if data.len() > capacity {
        return Err(format!(
            "nvenc input of {} bytes exceeds the {capacity}-byte nv12 buffer",
            data.len()
        ));
    }
    // SAFETY: the buffer was created by `Session::create_input_buffer` for an NV12 session of
    // `height` rows and is locked; NVENC lays such a buffer out as `height` luma rows then
    // `ceil(height / 2)` chroma rows, each `pitch` bytes (the pitch the lock returned), so it
    // holds at least `capacity` bytes, and `data` is no longer than that.
    unsafe { lock.write(data) };
    Ok(())
}
