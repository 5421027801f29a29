//! LL-HLS: the segmenter, the media and multivariant playlist writers and the request query.
//!
//! This module owns how a rendition's frames become LL-HLS objects and text, per RFC 8216bis:
//! - [`segmenter`]: frames in, `moof`+`mdat` parts and segment ends out (one per rendition);
//! - [`playlist`]: the media playlist state (window, parts, discontinuities, blocking
//!   requests) and its text, delta updates included;
//! - [`multivariant`]: the multivariant playlist text;
//! - [`query`]: the `_HLS_msn` / `_HLS_part` / `_HLS_skip` query parser.
//!
//! It stores no bytes and serves nothing: the origin's store keeps parts and segments and wakes
//! blocked requests; the HTTP layer maps the fixed relative URIs (`init.mp4`, `segN.m4s`,
//! `partN.K.m4s`, `RENDITION/index.m3u8`) onto it.

pub mod multivariant;
pub mod playlist;
pub mod query;
pub mod segmenter;

pub use multivariant::{AudioRendition, Rendition, Variant};

use crate::{TrackConfig, TrackKind};

/// The name of the rendition that serves a track untouched: `1080p`, `720p`... for video
/// (from the picture height), `audio` for audio. Part of the playback URL contract.
pub fn passthrough_name(config: &TrackConfig) -> String {
    match config {
        TrackConfig::H264 { height, .. } => format!("{height}p"),
        TrackConfig::Aac { .. } => "audio".to_string(),
    }
}

/// Whether a track is served as the audio rendition every variant shares (else it is a
/// variant of its own).
pub fn is_shared_audio(config: &TrackConfig) -> bool {
    config.kind() == TrackKind::Audio
}
pub use playlist::{Blocking, MediaPlaylist, PlaylistOptions, RenditionReport};
pub use query::{BlockingRequest, QueryError, SkipRequest};
pub use segmenter::{FirstMsn, Part, Segmenter, SegmenterOptions, SegmenterOutput};

/// `s` made safe for a playlist quoted-string or URI line: `"`, CR and LF are dropped (the HLS
/// grammar has no escape for them).
fn quoted(s: &str) -> String {
    s.chars()
        .filter(|c| !matches!(c, '"' | '\r' | '\n'))
        .collect()
}

#[cfg(test)]
mod tests;
