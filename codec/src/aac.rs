//! AAC in ADTS: header parsing, frame splitting across PES boundaries, AudioSpecificConfig.
//!
//! This module owns the ADTS byte format (ISO/IEC 13818-7 / 14496-3 1.A.2): [`parse_adts`]
//! reads one header, [`AdtsSplitter`] cuts a stream of PES payloads into raw AAC frames (a
//! frame may straddle two PES; garbage is skipped up to the next sync word), and
//! [`audio_specific_config`] builds the 2-byte config stored in the `esds` box.
//!
//! It does not assign timestamps or decide when a track is announced: that is
//! [`crate::ingest`]. It never decodes audio.

use bytes::Bytes;

use crate::TrackConfig;

/// PCM samples per AAC frame (AAC-LC, the only frame length ADTS carries in practice).
pub const SAMPLES_PER_FRAME: u32 = 1024;

/// ADTS header size in bytes without the CRC; 9 with it.
pub const ADTS_HEADER_LEN: usize = 7;

/// Sampling rates by `sampling_frequency_index`, in Hz (indices 13-15 are reserved).
const SAMPLE_RATES: [u32; 13] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
    7_350,
];

/// Problems with ADTS input.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum AacError {
    /// Not enough bytes yet: a header needs 7 (9 with CRC), a frame its `frame_length`.
    #[error("need {needed} bytes, have {have}")]
    NeedMore { needed: usize, have: usize },
    /// The bytes do not start with the 12-bit ADTS sync word `0xFFF`.
    #[error("no adts sync word")]
    NoSync,
    /// The `layer` field must be 0 in ADTS.
    #[error("adts layer {0} is not 0")]
    BadLayer(u8),
    /// `sampling_frequency_index` 13-15 are reserved.
    #[error("reserved sampling frequency index {0}")]
    ReservedSampleRate(u8),
    /// Channel configuration 0 (layout in an in-band program config element) is not supported.
    #[error("channel configuration 0 (in-band program config element) not supported")]
    UnsupportedChannelConfig,
    /// `frame_length` does not leave room for any AAC data after the header.
    #[error("adts frame length {frame_length} not above header length {header_len}")]
    FrameTooShort {
        frame_length: usize,
        header_len: usize,
    },
    /// More than one raw data block per ADTS frame: each would be its own 1024-sample frame,
    /// but without CRC their boundaries are unknown, so the frame is skipped.
    #[error("adts frame with {0} raw data blocks not supported")]
    MultipleRawBlocks(u8),
    /// Bytes between frames that were not ADTS were skipped.
    #[error("skipped {0} bytes to find adts sync")]
    Resync(usize),
    /// The input ended inside an ADTS frame.
    #[error("input ended inside an adts frame ({0} bytes dropped)")]
    Truncated(usize),
}

/// The fields of one ADTS header that matter for muxing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AdtsHeader {
    /// MPEG-4 audio object type: ADTS `profile` + 1 (2 = AAC-LC).
    pub object_type: u8,
    /// `sampling_frequency_index` (3 = 48 kHz, 4 = 44.1 kHz).
    pub sampling_index: u8,
    /// Sampling rate in Hz.
    pub sample_rate: u32,
    /// `channel_configuration` (1 = mono, 2 = stereo, ... 7 = 7.1).
    pub channel_config: u8,
    /// Header length in bytes: 7, or 9 with CRC.
    pub header_len: usize,
    /// Whole frame length in bytes, header included.
    pub frame_length: usize,
    /// `number_of_raw_data_blocks_in_frame` (0 means one block).
    pub raw_blocks: u8,
}

impl AdtsHeader {
    /// The 2-byte AudioSpecificConfig for this stream.
    pub fn audio_specific_config(&self) -> [u8; 2] {
        audio_specific_config(self.object_type, self.sampling_index, self.channel_config)
    }

    /// The track configuration for this stream.
    pub fn track_config(&self) -> TrackConfig {
        TrackConfig::Aac {
            asc: Bytes::copy_from_slice(&self.audio_specific_config()),
            object_type: self.object_type,
            sample_rate: self.sample_rate,
            channels: self.channel_config,
        }
    }
}

/// Parses the ADTS header at the start of `data`. Needs 7 bytes (9 with CRC); does not check
/// that the whole frame is present (compare [`AdtsHeader::frame_length`] with `data.len()`).
pub fn parse_adts(data: &[u8]) -> Result<AdtsHeader, AacError> {
    let have = data.len();
    let Some(&[b0, b1, b2, b3, b4, b5, b6]) = data.get(..ADTS_HEADER_LEN) else {
        if data.first().is_some_and(|&b| b != 0xff)
            || data.get(1).is_some_and(|&b| b & 0xf0 != 0xf0)
        {
            return Err(AacError::NoSync);
        }
        return Err(AacError::NeedMore {
            needed: ADTS_HEADER_LEN,
            have,
        });
    };
    if b0 != 0xff || b1 & 0xf0 != 0xf0 {
        return Err(AacError::NoSync);
    }
    let layer = (b1 >> 1) & 0x03;
    if layer != 0 {
        return Err(AacError::BadLayer(layer));
    }
    let header_len = if b1 & 0x01 == 0 { 9 } else { ADTS_HEADER_LEN };
    let sampling_index = (b2 >> 2) & 0x0f;
    let sample_rate = *SAMPLE_RATES
        .get(usize::from(sampling_index))
        .ok_or(AacError::ReservedSampleRate(sampling_index))?;
    let channel_config = ((b2 & 0x01) << 2) | (b3 >> 6);
    if channel_config == 0 {
        return Err(AacError::UnsupportedChannelConfig);
    }
    let frame_length =
        (usize::from(b3 & 0x03) << 11) | (usize::from(b4) << 3) | (usize::from(b5) >> 5);
    if frame_length <= header_len {
        return Err(AacError::FrameTooShort {
            frame_length,
            header_len,
        });
    }
    if have < header_len {
        return Err(AacError::NeedMore {
            needed: header_len,
            have,
        });
    }
    Ok(AdtsHeader {
        object_type: (b2 >> 6) + 1,
        sampling_index,
        sample_rate,
        channel_config,
        header_len,
        frame_length,
        raw_blocks: b6 & 0x03,
    })
}

/// The 2-byte AudioSpecificConfig (ISO/IEC 14496-3 1.6.2.1): 5 bits object type, 4 bits
/// sampling frequency index, 4 bits channel configuration, 3 zero bits (GASpecificConfig).
pub fn audio_specific_config(object_type: u8, sampling_index: u8, channel_config: u8) -> [u8; 2] {
    [
        ((object_type & 0x1f) << 3) | ((sampling_index & 0x0f) >> 1),
        ((sampling_index & 0x01) << 7) | ((channel_config & 0x0f) << 3),
    ]
}

/// One raw AAC frame cut out of ADTS.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdtsFrame {
    pub header: AdtsHeader,
    /// The AAC payload without the ADTS header (and CRC).
    pub raw: Bytes,
    /// True when the frame started in bytes given to an earlier [`AdtsSplitter::push`]: it
    /// does not begin in the PES just pushed, so that PES's PTS is not its time stamp.
    pub carried: bool,
}

/// Cuts ADTS frames out of successive PES payloads, keeping a partial frame for the next push.
///
/// Memory is bounded: at most one incomplete frame (under 8 KiB, the 13-bit `frame_length`) is
/// kept between pushes.
#[derive(Clone, Debug, Default)]
pub struct AdtsSplitter {
    buf: Vec<u8>,
    /// Bytes skipped since the last good frame, reported when sync is found again.
    skipped: usize,
}

impl AdtsSplitter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends `data` and emits every complete frame, or an error for what was skipped.
    ///
    /// After garbage, a header is trusted only when another sync word follows it (or nothing
    /// follows yet, in which case it waits for the next push), so a stray `0xFFF` inside
    /// AAC data does not start a bogus frame.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<Result<AdtsFrame, AacError>>) {
        let carried_len = self.buf.len();
        self.buf.extend_from_slice(data);
        let mut pos = 0;
        while let Some(rest) = self.buf.get(pos..) {
            if rest.is_empty() {
                break;
            }
            let header = match parse_adts(rest) {
                Ok(header) => header,
                Err(AacError::NeedMore { .. }) => break,
                Err(_) => {
                    self.skipped = self.skipped.saturating_add(1);
                    pos += 1;
                    continue;
                }
            };
            let Some(frame) = rest.get(..header.frame_length) else {
                break;
            };
            if self.skipped > 0 {
                match rest.get(header.frame_length..header.frame_length + 2) {
                    Some(&[0xff, next]) if next & 0xf0 == 0xf0 => {}
                    Some(_) => {
                        self.skipped = self.skipped.saturating_add(1);
                        pos += 1;
                        continue;
                    }
                    None => break,
                }
                out.push(Err(AacError::Resync(self.skipped)));
                self.skipped = 0;
            }
            if header.raw_blocks > 0 {
                out.push(Err(AacError::MultipleRawBlocks(header.raw_blocks)));
            } else {
                out.push(Ok(AdtsFrame {
                    header,
                    raw: Bytes::copy_from_slice(frame.get(header.header_len..).unwrap_or_default()),
                    carried: pos < carried_len,
                }));
            }
            pos += header.frame_length;
        }
        self.buf.drain(..pos.min(self.buf.len()));
    }

    /// End of input: reports any bytes left over (a partial frame or unsynced garbage).
    pub fn finish(&mut self, out: &mut Vec<Result<AdtsFrame, AacError>>) {
        // A last frame that waited only for resync confirmation is still whole: take it.
        if self.skipped > 0 {
            if let Ok(header) = parse_adts(&self.buf) {
                if header.raw_blocks == 0 && self.buf.len() == header.frame_length {
                    out.push(Err(AacError::Resync(self.skipped)));
                    out.push(Ok(AdtsFrame {
                        header,
                        raw: Bytes::copy_from_slice(
                            self.buf.get(header.header_len..).unwrap_or_default(),
                        ),
                        carried: true,
                    }));
                    self.buf.clear();
                    self.skipped = 0;
                }
            }
        }
        let left = self.buf.len().saturating_add(self.skipped);
        if left > 0 {
            out.push(Err(AacError::Truncated(left)));
        }
        self.buf.clear();
        self.skipped = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An ADTS header (no CRC) for AAC-LC 48 kHz mono with `payload` bytes of data.
    pub(crate) fn adts_frame(payload: &[u8]) -> Vec<u8> {
        let len = payload.len() + 7;
        let mut f = vec![
            0xff,
            0xf1,
            (1 << 6) | (3 << 2),
            (1 << 6) | ((len >> 11) & 0x03) as u8,
            ((len >> 3) & 0xff) as u8,
            (((len & 0x07) << 5) as u8) | 0x1f,
            0xfc,
        ];
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn parses_header_and_config() {
        let f = adts_frame(&[1, 2, 3]);
        let h = parse_adts(&f).expect("valid header");
        assert_eq!(h.object_type, 2);
        assert_eq!(h.sample_rate, 48_000);
        assert_eq!(h.channel_config, 1);
        assert_eq!(h.frame_length, 10);
        assert_eq!(h.header_len, 7);
        // AAC-LC, 48 kHz, mono: 00010 0011 0001 000.
        assert_eq!(h.audio_specific_config(), [0x11, 0x88]);
        // AAC-LC, 44.1 kHz, stereo is the well-known 0x1210.
        assert_eq!(audio_specific_config(2, 4, 2), [0x12, 0x10]);
        assert_eq!(h.track_config().codec_string(), "mp4a.40.2");
    }

    #[test]
    fn header_errors() {
        assert_eq!(
            parse_adts(&[]),
            Err(AacError::NeedMore { needed: 7, have: 0 })
        );
        assert_eq!(parse_adts(&[0x12]), Err(AacError::NoSync));
        let f = adts_frame(&[0; 4]);
        assert!(matches!(
            parse_adts(&f[..5]),
            Err(AacError::NeedMore { .. })
        ));
        let mut crc = f.clone();
        crc[1] = 0xf0;
        assert!(matches!(
            parse_adts(&crc[..8]),
            Err(AacError::NeedMore { needed: 9, .. })
        ));
        let mut bad = f.clone();
        bad[2] |= 0x0f << 2;
        assert_eq!(parse_adts(&bad), Err(AacError::ReservedSampleRate(15)));
        let mut pce = f.clone();
        pce[3] &= 0x3f;
        assert_eq!(parse_adts(&pce), Err(AacError::UnsupportedChannelConfig));
        let short = [0xff, 0xf1, 0x4c, 0x40, 0x00, 0x1f, 0xfc];
        assert!(matches!(
            parse_adts(&short),
            Err(AacError::FrameTooShort { .. })
        ));
        let mut layer = f;
        layer[1] = 0xf3;
        assert_eq!(parse_adts(&layer), Err(AacError::BadLayer(1)));
    }

    #[test]
    fn splits_frames_straddling_pushes() {
        let mut stream = adts_frame(&[1; 20]);
        stream.extend(adts_frame(&[2; 30]));
        stream.extend(adts_frame(&[3; 5]));
        let mut split = AdtsSplitter::new();
        let mut out = Vec::new();
        split.push(&stream[..40], &mut out);
        split.push(&stream[40..], &mut out);
        split.finish(&mut out);
        let frames: Vec<AdtsFrame> = out.into_iter().map(|r| r.expect("frame")).collect();
        assert_eq!(frames.len(), 3);
        assert_eq!(frames[0].raw.as_ref(), &[1; 20]);
        assert!(!frames[0].carried);
        assert!(frames[1].carried, "started in the first push");
        assert!(!frames[2].carried);
    }

    #[test]
    fn resyncs_after_garbage() {
        let mut stream = vec![0xff, 0xf1, 0x00, 0x13];
        stream.extend(adts_frame(&[7; 9]));
        stream.extend(adts_frame(&[8; 9]));
        let mut split = AdtsSplitter::new();
        let mut out = Vec::new();
        split.push(&stream, &mut out);
        split.finish(&mut out);
        assert_eq!(out[0], Err(AacError::Resync(4)));
        assert!(matches!(&out[1], Ok(f) if f.raw.as_ref() == [7; 9]));
        assert!(matches!(&out[2], Ok(f) if f.raw.as_ref() == [8; 9]));
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn reports_truncated_tail() {
        let f = adts_frame(&[1; 50]);
        let mut split = AdtsSplitter::new();
        let mut out = Vec::new();
        split.push(&f[..30], &mut out);
        split.finish(&mut out);
        assert_eq!(out, vec![Err(AacError::Truncated(30))]);
    }
}
