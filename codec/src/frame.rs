//! The values that flow between the demuxer, the segmenter and the muxer.

use bytes::Bytes;

/// MPEG-TS timestamps (PTS/DTS) tick at 90 kHz. Video tracks keep this timescale end to end.
pub const MPEG_TIMESCALE: u32 = 90_000;

/// Whether a track carries pictures or sound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TrackKind {
    Video,
    Audio,
}

/// The codec parameters of one track: enough to write its init segment and its `CODECS` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TrackConfig {
    /// H.264 video. `sps` and `pps` are raw NAL units (no start code, no length prefix).
    H264 {
        sps: Bytes,
        pps: Bytes,
        /// Display size in pixels, after cropping.
        width: u16,
        height: u16,
        /// `profile_idc`, the constraint flags byte and `level_idc`, as in `avc1.PPCCLL`.
        profile: u8,
        constraints: u8,
        level: u8,
    },
    /// AAC audio carried in ADTS on the wire.
    Aac {
        /// The AudioSpecificConfig (ISO 14496-3 1.6.2.1), as stored in the `esds` box.
        asc: Bytes,
        /// Audio object type (2 = AAC-LC).
        object_type: u8,
        /// Sampling rate in Hz; also the track's timescale.
        sample_rate: u32,
        channels: u8,
    },
}

impl TrackConfig {
    /// Video or audio.
    pub fn kind(&self) -> TrackKind {
        match self {
            TrackConfig::H264 { .. } => TrackKind::Video,
            TrackConfig::Aac { .. } => TrackKind::Audio,
        }
    }

    /// Ticks per second of this track's timestamps in the fMP4 output (90 kHz for video, the
    /// sampling rate for audio, so every AAC frame lasts exactly 1024 ticks).
    pub fn timescale(&self) -> u32 {
        match self {
            TrackConfig::H264 { .. } => MPEG_TIMESCALE,
            TrackConfig::Aac { sample_rate, .. } => *sample_rate,
        }
    }

    /// The RFC 6381 codec string for the `CODECS` attribute: `avc1.PPCCLL` or `mp4a.40.N`.
    pub fn codec_string(&self) -> String {
        match self {
            TrackConfig::H264 {
                profile,
                constraints,
                level,
                ..
            } => format!("avc1.{profile:02x}{constraints:02x}{level:02x}"),
            TrackConfig::Aac { object_type, .. } => format!("mp4a.40.{object_type}"),
        }
    }
}

/// One coded frame: an H.264 access unit or one AAC frame.
///
/// Timestamps are already unwrapped (the 33-bit MPEG-TS wrap removed) and expressed in the
/// track's timescale ([`TrackConfig::timescale`]), so they only grow within one publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    /// Decode time in track timescale ticks.
    pub dts: u64,
    /// Presentation time minus decode time, in ticks (non-zero with B-frames).
    pub cts: i32,
    /// True for an IDR access unit; always true for audio.
    pub keyframe: bool,
    /// Sample bytes as stored in `mdat`: 4-byte length-prefixed NAL units for H.264 (AVCC,
    /// parameter sets and AUDs removed), the raw AAC frame (no ADTS header) for audio.
    pub data: Bytes,
}

impl Frame {
    /// Presentation time in track timescale ticks.
    pub fn pts(&self) -> i64 {
        self.dts as i64 + i64::from(self.cts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codec_strings() {
        let v = TrackConfig::H264 {
            sps: Bytes::new(),
            pps: Bytes::new(),
            width: 1920,
            height: 1080,
            profile: 100,
            constraints: 0,
            level: 40,
        };
        assert_eq!(v.codec_string(), "avc1.640028");
        let a = TrackConfig::Aac {
            asc: Bytes::from_static(&[0x12, 0x10]),
            object_type: 2,
            sample_rate: 44_100,
            channels: 2,
        };
        assert_eq!(a.codec_string(), "mp4a.40.2");
        assert_eq!(a.timescale(), 44_100);
    }
}
