//! The multivariant playlist (`/live/ROOM/index.m3u8`): one `EXT-X-STREAM-INF` per video rung
//! and, optionally, one audio rendition group every variant refers to.
//!
//! [`compose`] turns a stream's renditions into that text: video renditions become variants
//! in the order given (the ladder's: players start with the first), the audio rendition the
//! group every variant names, each variant's bandwidth and codecs including the audio's. A
//! stream of audio alone is its own variant. Which renditions exist and how their bandwidths
//! were measured or planned is the caller's business; [`render`] writes given variants.

use std::fmt::Write as _;

use super::quoted;
use crate::{TrackConfig, TrackKind};

/// One rendition of a stream, for [`compose`].
#[derive(Clone, Debug, PartialEq)]
pub struct Rendition<'a> {
    /// Its name: the directory of its media playlist (`720p`, `audio`).
    pub name: &'a str,
    pub config: &'a TrackConfig,
    /// Bits per second: peak (`BANDWIDTH`) and average (`AVERAGE-BANDWIDTH`), when known.
    pub peak_bps: u64,
    pub average_bps: Option<u64>,
    /// Frames per second (video).
    pub frame_rate: Option<f64>,
}

/// The multivariant playlist of `renditions`, video variants in the order given.
pub fn compose(renditions: &[Rendition<'_>]) -> String {
    let audio = renditions
        .iter()
        .find(|r| r.config.kind() == TrackKind::Audio);
    let audio_bps = audio.map_or(0, |a| a.peak_bps);
    let audio_average = audio.and_then(|a| a.average_bps).unwrap_or(audio_bps);
    let variants: Vec<Variant> = renditions
        .iter()
        .filter(|r| r.config.kind() == TrackKind::Video)
        .map(|r| {
            let mut codecs = r.config.codec_string();
            if let Some(a) = audio {
                codecs = format!("{codecs},{}", a.config.codec_string());
            }
            let resolution = match r.config {
                TrackConfig::H264 { width, height, .. } => Some((*width, *height)),
                TrackConfig::Aac { .. } => None,
            };
            Variant {
                uri: format!("{}/index.m3u8", r.name),
                bandwidth: r.peak_bps + audio_bps,
                average_bandwidth: r.average_bps.map(|a| a + audio_average),
                codecs,
                resolution,
                frame_rate: r.frame_rate,
            }
        })
        .collect();
    match (variants.is_empty(), audio) {
        // Audio alone: its one variant is the audio playlist itself.
        (true, Some(a)) => {
            let only = Variant {
                uri: format!("{}/index.m3u8", a.name),
                bandwidth: a.peak_bps,
                average_bandwidth: a.average_bps,
                codecs: a.config.codec_string(),
                resolution: None,
                frame_rate: None,
            };
            render(&[only], None)
        }
        _ => {
            let group = audio.map(|a| AudioRendition {
                uri: format!("{}/index.m3u8", a.name),
                name: a.name.to_string(),
                group_id: "audio".to_string(),
            });
            render(&variants, group.as_ref())
        }
    }
}

/// One video variant (ladder rung).
#[derive(Clone, Debug, PartialEq)]
pub struct Variant {
    /// Its media playlist, relative to the multivariant playlist, e.g. `720p/index.m3u8`.
    pub uri: String,
    /// Peak bits per second of the variant, audio included (`BANDWIDTH`).
    pub bandwidth: u64,
    /// Average bits per second (`AVERAGE-BANDWIDTH`).
    pub average_bandwidth: Option<u64>,
    /// RFC 6381 codecs of everything the variant plays, comma-separated, e.g.
    /// `avc1.64001f,mp4a.40.2`.
    pub codecs: String,
    /// Width and height in pixels.
    pub resolution: Option<(u16, u16)>,
    /// Frames per second.
    pub frame_rate: Option<f64>,
}

/// The audio rendition shared by all variants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudioRendition {
    /// Its media playlist, relative to the multivariant playlist, e.g. `audio/index.m3u8`.
    pub uri: String,
    /// Human-readable name (`NAME`).
    pub name: String,
    /// `GROUP-ID` the variants name in their `AUDIO` attribute.
    pub group_id: String,
}

/// The multivariant playlist text for `variants`, each referring to `audio` when given.
pub fn render(variants: &[Variant], audio: Option<&AudioRendition>) -> String {
    let mut out = String::from("#EXTM3U\n#EXT-X-INDEPENDENT-SEGMENTS\n");
    if let Some(a) = audio {
        let _ = writeln!(
            out,
            "#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"{}\",NAME=\"{}\",DEFAULT=YES,AUTOSELECT=YES,URI=\"{}\"",
            quoted(&a.group_id),
            quoted(&a.name),
            quoted(&a.uri)
        );
    }
    for v in variants {
        let _ = write!(out, "#EXT-X-STREAM-INF:BANDWIDTH={}", v.bandwidth);
        if let Some(avg) = v.average_bandwidth {
            let _ = write!(out, ",AVERAGE-BANDWIDTH={avg}");
        }
        let _ = write!(out, ",CODECS=\"{}\"", quoted(&v.codecs));
        if let Some((w, h)) = v.resolution {
            let _ = write!(out, ",RESOLUTION={w}x{h}");
        }
        if let Some(fps) = v.frame_rate.filter(|f| f.is_finite() && *f > 0.0) {
            let _ = write!(out, ",FRAME-RATE={fps:.3}");
        }
        if let Some(a) = audio {
            let _ = write!(out, ",AUDIO=\"{}\"", quoted(&a.group_id));
        }
        let _ = writeln!(out, "\n{}", quoted(&v.uri));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ladder_with_audio() {
        let variants = [
            Variant {
                uri: "1080p/index.m3u8".into(),
                bandwidth: 5_000_000,
                average_bandwidth: Some(4_500_000),
                codecs: "avc1.640028,mp4a.40.2".into(),
                resolution: Some((1920, 1080)),
                frame_rate: Some(30_000.0 / 1001.0),
            },
            Variant {
                uri: "480p/index.m3u8".into(),
                bandwidth: 1_000_000,
                average_bandwidth: None,
                codecs: "avc1.64001e,mp4a.40.2".into(),
                resolution: None,
                frame_rate: None,
            },
        ];
        let audio = AudioRendition {
            uri: "audio/index.m3u8".into(),
            name: "audio".into(),
            group_id: "aac".into(),
        };
        assert_eq!(
            render(&variants, Some(&audio)),
            "#EXTM3U\n\
             #EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aac\",NAME=\"audio\",DEFAULT=YES,AUTOSELECT=YES,URI=\"audio/index.m3u8\"\n\
             #EXT-X-STREAM-INF:BANDWIDTH=5000000,AVERAGE-BANDWIDTH=4500000,CODECS=\"avc1.640028,mp4a.40.2\",RESOLUTION=1920x1080,FRAME-RATE=29.970,AUDIO=\"aac\"\n\
             1080p/index.m3u8\n\
             #EXT-X-STREAM-INF:BANDWIDTH=1000000,CODECS=\"avc1.64001e,mp4a.40.2\",AUDIO=\"aac\"\n\
             480p/index.m3u8\n"
        );
    }

    #[test]
    fn no_audio_and_hostile_strings() {
        let v = Variant {
            uri: "a\"b\n#EXT-X-ENDLIST".into(),
            bandwidth: 1,
            average_bandwidth: None,
            codecs: "avc1.42e01e\"".into(),
            resolution: Some((320, 180)),
            frame_rate: Some(f64::NAN),
        };
        let text = render(&[v], None);
        assert_eq!(
            text,
            "#EXTM3U\n#EXT-X-INDEPENDENT-SEGMENTS\n\
             #EXT-X-STREAM-INF:BANDWIDTH=1,CODECS=\"avc1.42e01e\",RESOLUTION=320x180\n\
             ab#EXT-X-ENDLIST\n"
        );
    }
}
