//! Decode, scale and encode backends behind one interface, and the IDR-aligned ladder.
//!
//! Today this crate knows one rung: the source passed through untouched (`copy`), which is what
//! the single-box walking skeleton serves. Encoding backends (NVENC, FFmpeg software) and the
//! multi-rung ladder land here; nothing in this crate knows about HTTP, SRT or playlists.

use codec::{TrackConfig, TrackKind};

/// Name of the rendition that serves a track untouched: `1080p`, `720p`... for video (from the
/// picture height), `audio` for audio. These names are part of the playback URL contract.
pub fn passthrough_name(config: &TrackConfig) -> String {
    match config {
        TrackConfig::H264 { height, .. } => format!("{height}p"),
        TrackConfig::Aac { .. } => "audio".to_string(),
    }
}

/// Whether a track of this kind is served as a variant of its own (video) or as the shared
/// audio rendition that every variant references.
pub fn is_shared_audio(config: &TrackConfig) -> bool {
    config.kind() == TrackKind::Audio
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    #[test]
    fn names_follow_picture_height() {
        let v = TrackConfig::H264 {
            sps: Bytes::new(),
            pps: Bytes::new(),
            width: 1280,
            height: 720,
            profile: 100,
            constraints: 0,
            level: 31,
        };
        assert_eq!(passthrough_name(&v), "720p");
        let a = TrackConfig::Aac {
            asc: Bytes::new(),
            object_type: 2,
            sample_rate: 48_000,
            channels: 2,
        };
        assert_eq!(passthrough_name(&a), "audio");
        assert!(is_shared_audio(&a));
        assert!(!is_shared_audio(&v));
    }
}
