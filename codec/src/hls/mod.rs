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

pub use multivariant::{AudioRendition, Variant};
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
