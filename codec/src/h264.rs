//! H.264 elementary stream handling: Annex B NAL splitting, SPS parsing and AVCC conversion.
//!
//! This module owns the byte-level view of one H.264 access unit: [`nal_units`] splits Annex B
//! on 3- and 4-byte start codes, [`parse_sps`] reads what a `TrackConfig` and an `avc1` codec
//! string need (on `h264-reader`), and [`to_avcc`] turns an access unit into the 4-byte
//! length-prefixed form stored in `mdat`, without parameter sets, AUDs or filler.
//!
//! It does not know about PES, timestamps or when to announce a track: that is
//! [`crate::ingest`]. It never decodes slices.

use bytes::Bytes;
use h264_reader::nal::sps::SeqParameterSet;
use h264_reader::rbsp::{decode_nal, BitReader};

use crate::TrackConfig;

/// `nal_unit_type` values this module acts on (ITU-T H.264 table 7-1).
pub mod nal_type {
    /// Coded slice of a non-IDR picture.
    pub const SLICE: u8 = 1;
    /// Coded slice of an IDR picture: the access unit is a random access point.
    pub const IDR: u8 = 5;
    /// Supplemental enhancement information.
    pub const SEI: u8 = 6;
    /// Sequence parameter set.
    pub const SPS: u8 = 7;
    /// Picture parameter set.
    pub const PPS: u8 = 8;
    /// Access unit delimiter.
    pub const AUD: u8 = 9;
    /// Filler data.
    pub const FILLER: u8 = 12;
}

/// The `nal_unit_type` of a NAL unit (low 5 bits of its first byte); 0 for an empty unit.
pub fn nal_type_of(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |b| b & 0x1f)
}

/// Problems with H.264 input.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum H264Error {
    /// The NAL unit given as an SPS is not one.
    #[error("nal unit of type {0} is not an sps")]
    NotSps(u8),
    /// The SPS could not be parsed. The detail is `h264-reader`'s error, kept as text because
    /// its error type is neither `Clone` nor `Eq`.
    #[error("undecodable sps: {0}")]
    InvalidSps(String),
    /// The SPS describes a picture wider or taller than 65535 pixels.
    #[error("sps picture size {width}x{height} out of range")]
    SizeOutOfRange { width: u32, height: u32 },
}

/// What a track configuration needs from a sequence parameter set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpsInfo {
    /// Display width in pixels, after cropping.
    pub width: u16,
    /// Display height in pixels, after cropping.
    pub height: u16,
    /// `profile_idc` (66 baseline, 77 main, 100 high, ...).
    pub profile: u8,
    /// The constraint flags byte (`constraint_set0_flag` ... and two reserved bits).
    pub constraints: u8,
    /// `level_idc` (level times ten: 31 = level 3.1).
    pub level: u8,
    /// Frame rate as (numerator, denominator) frames per second, when the VUI has timing info:
    /// `time_scale / (2 * num_units_in_tick)`, reduced. `None` without timing info.
    pub frame_rate: Option<(u32, u32)>,
}

/// Iterator over the NAL units of an Annex B byte stream, without start codes.
///
/// Bytes before the first start code are skipped; trailing zero bytes of a unit (the leading
/// zero of a following 4-byte start code, or `trailing_zero_8bits`) are trimmed; empty units
/// are skipped.
#[derive(Clone, Debug)]
pub struct NalUnits<'a> {
    rest: &'a [u8],
}

/// Splits Annex B bytes (`00 00 01` or `00 00 00 01` start codes) into NAL units.
pub fn nal_units(annexb: &[u8]) -> NalUnits<'_> {
    let rest = match find_start_code(annexb) {
        Some((_, after)) => annexb.get(after..).unwrap_or_default(),
        None => &[],
    };
    NalUnits { rest }
}

/// Position of the first `00 00 01` in `data` and of the byte after it.
fn find_start_code(data: &[u8]) -> Option<(usize, usize)> {
    let mut i = 0;
    while let Some(window) = data.get(i..i + 3) {
        if window[2] > 1 {
            // The third byte cannot be part of any start code ending here or next.
            i += 3;
        } else if window == [0, 0, 1] {
            return Some((i, i + 3));
        } else {
            i += 1;
        }
    }
    None
}

impl<'a> Iterator for NalUnits<'a> {
    type Item = &'a [u8];

    fn next(&mut self) -> Option<&'a [u8]> {
        loop {
            if self.rest.is_empty() {
                return None;
            }
            let (unit, rest) = match find_start_code(self.rest) {
                Some((start, after)) => (
                    self.rest.get(..start).unwrap_or_default(),
                    self.rest.get(after..).unwrap_or_default(),
                ),
                None => (self.rest, &[][..]),
            };
            self.rest = rest;
            let end = unit.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
            let unit = unit.get(..end).unwrap_or_default();
            if !unit.is_empty() {
                return Some(unit);
            }
        }
    }
}

/// Parses an SPS NAL unit (header byte included, no start code).
pub fn parse_sps(nal: &[u8]) -> Result<SpsInfo, H264Error> {
    let kind = nal_type_of(nal);
    if kind != nal_type::SPS {
        return Err(H264Error::NotSps(kind));
    }
    if nal.len() < 4 {
        // decode_nal needs more than the header byte; an SPS has at least 3 more.
        return Err(H264Error::InvalidSps("sps shorter than 4 bytes".into()));
    }
    let rbsp = decode_nal(nal).map_err(|e| H264Error::InvalidSps(e.to_string()))?;
    let sps = SeqParameterSet::from_bits(BitReader::new(&rbsp[..]))
        .map_err(|e| H264Error::InvalidSps(format!("{e:?}")))?;
    let (width, height) = sps
        .pixel_dimensions()
        .map_err(|e| H264Error::InvalidSps(format!("{e:?}")))?;
    let out_of_range = || H264Error::SizeOutOfRange { width, height };
    let frame_rate = sps
        .vui_parameters
        .as_ref()
        .and_then(|vui| vui.timing_info.as_ref())
        .and_then(|t| reduce(t.time_scale, t.num_units_in_tick.checked_mul(2)?));
    Ok(SpsInfo {
        width: u16::try_from(width).map_err(|_| out_of_range())?,
        height: u16::try_from(height).map_err(|_| out_of_range())?,
        profile: u8::from(sps.profile_idc),
        constraints: u8::from(sps.constraint_flags),
        level: sps.level_idc,
        frame_rate,
    })
}

/// `num / den` in lowest terms; `None` when either is zero.
fn reduce(num: u32, den: u32) -> Option<(u32, u32)> {
    if num == 0 || den == 0 {
        return None;
    }
    let (mut a, mut b) = (num, den);
    while b != 0 {
        (a, b) = (b, a % b);
    }
    Some((num / a, den / a))
}

/// Builds the track configuration for an SPS/PPS pair (raw NAL units, headers included).
pub fn track_config(sps: &[u8], pps: &[u8]) -> Result<TrackConfig, H264Error> {
    let info = parse_sps(sps)?;
    Ok(TrackConfig::H264 {
        sps: Bytes::copy_from_slice(sps),
        pps: Bytes::copy_from_slice(pps),
        width: info.width,
        height: info.height,
        profile: info.profile,
        constraints: info.constraints,
        level: info.level,
    })
}

/// One access unit converted by [`to_avcc`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AvccAccessUnit<'a> {
    /// Every kept NAL unit with a 4-byte big-endian length prefix; SPS, PPS, AUD and filler
    /// units removed.
    pub data: Vec<u8>,
    /// True when the unit holds an IDR slice.
    pub keyframe: bool,
    /// True when the unit holds at least one coded slice (types 1 to 5).
    pub has_slice: bool,
    /// The first SPS of the unit, if any (header byte included).
    pub sps: Option<&'a [u8]>,
    /// The first PPS of the unit, if any (header byte included).
    pub pps: Option<&'a [u8]>,
}

/// Converts one Annex B access unit to AVCC sample bytes and notes what it carried.
pub fn to_avcc(annexb: &[u8]) -> AvccAccessUnit<'_> {
    let mut au = AvccAccessUnit {
        data: Vec::with_capacity(annexb.len().saturating_add(16)),
        keyframe: false,
        has_slice: false,
        sps: None,
        pps: None,
    };
    for nal in nal_units(annexb) {
        match nal_type_of(nal) {
            nal_type::SPS => {
                au.sps.get_or_insert(nal);
            }
            nal_type::PPS => {
                au.pps.get_or_insert(nal);
            }
            nal_type::AUD | nal_type::FILLER => {}
            kind => {
                au.has_slice |= (nal_type::SLICE..=nal_type::IDR).contains(&kind);
                au.keyframe |= kind == nal_type::IDR;
                // A NAL unit inside one PES is far below 4 GiB (PES are capped at 8 MiB).
                let len = u32::try_from(nal.len()).unwrap_or(u32::MAX);
                au.data.extend_from_slice(&len.to_be_bytes());
                au.data.extend_from_slice(nal);
            }
        }
    }
    au
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// SPS of the test fixture (x264, High profile, 320x180, level 1.3).
    pub(crate) const SPS_320X180: &[u8] = &[
        0x67, 0x64, 0x00, 0x0d, 0xac, 0xd9, 0x41, 0x41, 0x9f, 0x9f, 0x01, 0x10, 0x00, 0x00, 0x03,
        0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x42, 0x99, 0x60,
    ];
    /// PPS of the test fixture.
    pub(crate) const PPS: &[u8] = &[0x68, 0xeb, 0xec, 0xb2, 0x2c];

    #[test]
    fn splits_three_and_four_byte_start_codes() {
        let data = [
            0xff, 0, 0, 0, 1, 0x09, 0x10, 0, 0, 1, 0x67, 1, 2, 0, 0, 0, 0, 1, 0x65, 9, 0, 0, 1,
        ];
        let units: Vec<&[u8]> = nal_units(&data).collect();
        assert_eq!(
            units,
            vec![&[0x09, 0x10][..], &[0x67, 1, 2][..], &[0x65, 9][..]]
        );
        assert_eq!(nal_units(&[]).count(), 0);
        assert_eq!(nal_units(&[0, 0, 1]).count(), 0);
        assert_eq!(nal_units(&[1, 2, 3]).count(), 0);
    }

    #[test]
    fn keeps_emulation_prevention_bytes() {
        let data = [0, 0, 1, 0x41, 0, 0, 3, 1, 7];
        let units: Vec<&[u8]> = nal_units(&data).collect();
        assert_eq!(units, vec![&[0x41, 0, 0, 3, 1, 7][..]]);
    }

    #[test]
    fn avcc_drops_parameter_sets_aud_and_filler() {
        let mut annexb = vec![0, 0, 0, 1, 0x09, 0xf0];
        annexb.extend_from_slice(&[0, 0, 0, 1]);
        annexb.extend_from_slice(SPS_320X180);
        annexb.extend_from_slice(&[0, 0, 1]);
        annexb.extend_from_slice(PPS);
        annexb.extend_from_slice(&[0, 0, 1, 0x06, 0x05, 0x01, 0x80]);
        annexb.extend_from_slice(&[0, 0, 1, 0x0c, 0xff, 0xff, 0x80]);
        annexb.extend_from_slice(&[0, 0, 1, 0x65, 0x88, 0x84]);
        let au = to_avcc(&annexb);
        assert!(au.keyframe);
        assert!(au.has_slice);
        assert_eq!(au.sps, Some(SPS_320X180));
        assert_eq!(au.pps, Some(PPS));
        assert_eq!(
            au.data,
            vec![0, 0, 0, 4, 0x06, 0x05, 0x01, 0x80, 0, 0, 0, 3, 0x65, 0x88, 0x84]
        );
        let p = to_avcc(&[0, 0, 1, 0x41, 0x9a]);
        assert!(!p.keyframe && p.has_slice && p.sps.is_none());
    }

    #[test]
    fn parses_fixture_sps() {
        let info = parse_sps(SPS_320X180).expect("valid sps");
        assert_eq!((info.width, info.height), (320, 180));
        assert_eq!(info.profile, 100);
        assert_eq!(info.level, 13);
        let config = track_config(SPS_320X180, PPS).expect("valid sps");
        assert_eq!(config.codec_string(), "avc1.64000d");
    }

    #[test]
    fn rejects_bad_sps() {
        assert_eq!(parse_sps(&[]), Err(H264Error::NotSps(0)));
        assert_eq!(parse_sps(&[0x68, 1, 2, 3]), Err(H264Error::NotSps(8)));
        assert!(matches!(parse_sps(&[0x67]), Err(H264Error::InvalidSps(_))));
        assert!(matches!(
            parse_sps(&[0x67, 0x64, 0, 0x1f, 0xff, 0xff]),
            Err(H264Error::InvalidSps(_))
        ));
        for cut in 1..SPS_320X180.len() {
            let _ = parse_sps(&SPS_320X180[..cut]);
        }
    }

    #[test]
    fn frame_rate_reduces() {
        assert_eq!(reduce(60, 2), Some((30, 1)));
        assert_eq!(reduce(60000, 2002), Some((30000, 1001)));
        assert_eq!(reduce(0, 2), None);
    }
}
