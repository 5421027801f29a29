//! Sans-IO media for daihuo.
//!
//! This crate owns every byte-level media format the product touches and nothing else: it never
//! opens a socket, starts a task, reads a clock or touches a file. Callers push bytes (and, where
//! time matters, a `now` they read themselves) and get typed values out.
//!
//! Where to start:
//! - [`ingest::Demuxer`]: MPEG-TS bytes in, [`MediaEvent`]s (track configurations and frames) out.
//!   It is built from [`ts`] (transport stream and PES, on `mpeg2ts-reader`), [`h264`] (Annex B
//!   access units, SPS, on `h264-reader`) and [`aac`] (ADTS frames and AudioSpecificConfig).
//! - [`clock`]: clock stamps, the wall-clock time of a stream's timestamps carried in-band
//!   from where it entered (the edge's [`clock::Stamper`]) to every origin.
//! - [`fmp4`]: CMAF init segments and `moof`/`mdat` fragments, on `mp4-atom`.
//! - [`hls`]: the LL-HLS segmenter (frames in, parts and segments out), media and multivariant
//!   playlist writers, and the `_HLS_msn`/`_HLS_part`/`_HLS_skip` query parser.
//!
//! Every parser returns an error for bad input and never panics; each has a fuzz target under
//! `codec/fuzz/` whose seed corpus runs as an ordinary test.

mod frame;

pub mod aac;
pub mod clock;
pub mod fmp4;
pub mod h264;
pub mod hls;
pub mod ingest;
pub mod ts;

pub use frame::{Frame, TrackConfig, TrackKind, MPEG_TIMESCALE};
