//! The error types of this crate: one for probing, one for the ladder, one for parsing the
//! configured encoder choice. Messages are lowercase facts; the origin logs them as they are.

use crate::BackendKind;

/// `encoder = "..."` in the configuration was not one of `auto`, `nvenc`, `software`.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
#[error("unknown encoder {0:?}: expected \"auto\", \"nvenc\" or \"software\"")]
pub struct ParseEncoderChoiceError(pub String);

/// No backend allowed by the configured [`crate::EncoderChoice`] could open an encode session.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum ProbeError {
    /// `encoder = "nvenc"` was configured but no NVENC backend works here. The text lists each
    /// backend tried and why it failed (no driver, no device, no NVENC engine, ...).
    #[error("encoder = \"nvenc\" but no NVENC device: {0}")]
    NoNvenc(String),
    /// `encoder = "software"` was configured but libx264 could not encode (libavcodec built
    /// without it, or a broken install).
    #[error("encoder = \"software\" but libx264 does not work: {0}")]
    NoSoftware(String),
    /// `encoder = "auto"` and every backend failed.
    #[error("no h.264 encoder works: {0}")]
    NoEncoder(String),
}

/// Why a [`crate::Ladder`] could not be built or could not go on.
#[derive(thiserror::Error, Debug)]
pub enum LadderError {
    /// The source track is not H.264 video.
    #[error("source track is not h.264 video")]
    NotH264,
    /// [`crate::Ladder::new`] got no rungs.
    #[error("ladder has no rungs")]
    NoRungs,
    /// A rung cannot be encoded as specified.
    #[error("rung {rung}: {reason}")]
    InvalidRung { rung: String, reason: String },
    /// The ladder options are unusable.
    #[error("ladder options: {0}")]
    InvalidOptions(String),
    /// libavcodec has no H.264 decoder, or it could not be opened.
    #[error("h.264 decoder: {0}")]
    Decoder(ffmpeg_next::Error),
    /// An encoder could not be opened. `reason` carries libavcodec's own log lines.
    #[error("rung {rung}: cannot open {backend} encoder: {reason}")]
    OpenEncoder {
        rung: String,
        backend: BackendKind,
        reason: String,
    },
    /// A software encoder failed mid-stream (hardware encoders fall back to software instead).
    #[error("rung {rung}: {backend} encoder failed: {source}")]
    Encode {
        rung: String,
        backend: BackendKind,
        source: ffmpeg_next::Error,
    },
    /// Scaling the decoded picture to a rung's size failed.
    #[error("rung {rung}: scaling failed: {source}")]
    Scale {
        rung: String,
        source: ffmpeg_next::Error,
    },
}
