//! Decode, scale and encode backends behind one interface, runtime backend selection, and the
//! IDR-aligned transcoding ladder. Nothing in this crate knows about HTTP, SRT or playlists.
//!
//! Where to start:
//! - [`probe`]: at startup, picks the encoder backend for the configured [`EncoderChoice`] by
//!   opening a tiny real session per candidate (NVENC direct with feature `nvenc`, NVENC
//!   through libavcodec, libx264), and reports why each candidate failed.
//! - [`plan`] fits a ladder ([`default_ladder`] or configured [`RungSpec`]s) to the source size.
//! - [`Ladder`]: one per stream, synchronous (run it on a dedicated thread): source video
//!   [`codec::Frame`]s in, per-rung [`LadderOutput`]s (track configs, frames, fallbacks) out,
//!   with IDRs at the same source pictures on every rung ([`keyframes`] has the rule).
//!
//! Decoding and scaling go through libavcodec/libswscale (`ffmpeg-next`); encoding through
//! libavcodec (libx264, `h264_nvenc`, NVIDIA libraries loaded at run time, so the default build
//! runs without CUDA) or, with feature `nvenc`, the NVIDIA Video Codec SDK (`src/nvenc.rs`).
//! The only unsafe code is in `src/ffi.rs` (libav* log capture, a `Send` swscale context, and
//! with `nvenc` two calls the SDK's safe API lacks).
//!
//! Test hook: with the `test-hooks` feature (always in this crate's own tests),
//! `Ladder::inject_encoder_failure` makes one rung's encoder fail after N frames, so the
//! hardware-to-software fallback is exercised without a GPU.

mod backend;
mod decode;
mod encode;
mod error;
mod ffi;
pub mod keyframes;
mod ladder;
mod nvenc;
mod probe;
mod rung;
mod scale;

pub use backend::{BackendKind, EncoderChoice};
pub use error::{LadderError, ParseEncoderChoiceError, ProbeError};
pub use ladder::{Ladder, LadderOptions, LadderOutput};
pub use probe::{probe, ProbeReport};
pub use rung::{default_ladder, plan, RungSpec};
