//! CMAF fragmented MP4: the init segment (`ftyp` + `moov`) and `moof` + `mdat` fragments.
//!
//! This module owns the byte layout of what HLS serves as `init.mp4`, `segN.m4s` and
//! `partN.K.m4s`. Every rendition is its own single-track file (track id 1): video-only or
//! audio-only, which is what CMAF and LL-HLS expect. It does not decide where fragments are
//! cut; that is [`crate::hls::segmenter`].
//!
//! Boxes are built with `mp4-atom`; only the 8-byte `mdat` header is written by hand, so that
//! sample bytes are copied once into the output instead of first into an `Mdat`'s `Vec`.
//!
//! Where to start: [`init_segment`] once per track configuration, then [`fragment`] per part.

use bytes::{BufMut, Bytes, BytesMut};
use mp4_atom::esds::{DecoderConfig, DecoderSpecific, EsDescriptor, SLConfig};
use mp4_atom::{
    Audio, Avc1, Avcc, AvccExt, Codec, Dinf, Dref, Encode, Esds, FixedPoint, Ftyp, Hdlr, Mdhd,
    Mdia, Mfhd, Minf, Moof, Moov, Mp4a, Mvex, Mvhd, Smhd, Stbl, Stco, Stsd, Tfdt, Tfhd, Tkhd, Traf,
    Trak, Trex, Trun, TrunEntry, Url, Visual, Vmhd,
};

use crate::TrackConfig;

/// The track id of the only track in every init segment and fragment.
const TRACK_ID: u32 = 1;

/// `sample_flags` of a sync sample: `sample_depends_on = 2` (depends on no other sample).
const SYNC_SAMPLE_FLAGS: u32 = 0x0200_0000;
/// `sample_flags` of a non-sync sample: `sample_depends_on = 1` and `sample_is_non_sync_sample`.
const NON_SYNC_SAMPLE_FLAGS: u32 = 0x0101_0000;

/// Size of the `mdat` box header written by [`fragment`] (32-bit size + fourcc).
const MDAT_HEADER_LEN: usize = 8;

/// Why an init segment or fragment could not be written.
#[derive(Debug, thiserror::Error)]
pub enum Fmp4Error {
    /// `mp4-atom` refused a box (for example a parameter set longer than 65535 bytes).
    #[error("mp4 box encoding failed: {0}")]
    Encode(#[from] mp4_atom::Error),
    /// A fragment needs at least one sample.
    #[error("fragment has no samples")]
    NoSamples,
    /// The fragment does not fit 32-bit box sizes and offsets (over 4 GiB of samples).
    #[error("fragment too large: {0} bytes of samples")]
    TooLarge(usize),
}

/// One sample of a fragment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    /// Decode duration in track timescale ticks.
    pub duration: u32,
    /// Composition offset (presentation minus decode time) in ticks; written as a signed
    /// version 1 `trun` offset so B-frames need no edit list.
    pub cts: i32,
    /// True for a sync sample (IDR access unit; every audio frame).
    pub keyframe: bool,
    /// The sample bytes as they go into `mdat` (AVCC length-prefixed NAL units or a raw AAC frame).
    pub data: Bytes,
}

/// `ftyp` + `moov` for one track (track id 1), in the track's own timescale
/// ([`TrackConfig::timescale`]).
///
/// Video gets an `avc1` sample entry with an `avcC` built from the SPS and PPS; audio an `mp4a`
/// with an `esds` carrying the AudioSpecificConfig. `mvex`/`trex` mark the file as fragmented.
pub fn init_segment(config: &TrackConfig) -> Result<Bytes, Fmp4Error> {
    let timescale = config.timescale();
    let ftyp = Ftyp {
        major_brand: b"iso6".into(),
        minor_version: 0,
        compatible_brands: vec![b"iso6".into(), b"cmfc".into(), b"mp41".into()],
    };

    let (tkhd, hdlr, minf_header, codec) = match config {
        TrackConfig::H264 {
            sps,
            pps,
            width,
            height,
            profile,
            constraints,
            level,
        } => {
            let avcc = Avcc {
                configuration_version: 1,
                avc_profile_indication: *profile,
                profile_compatibility: *constraints,
                avc_level_indication: *level,
                length_size: 4,
                sequence_parameter_sets: vec![sps.to_vec()],
                picture_parameter_sets: vec![pps.to_vec()],
                ext: avcc_ext(*profile, sps),
            };
            let codec = Codec::from(Avc1 {
                visual: Visual {
                    data_reference_index: 1,
                    width: *width,
                    height: *height,
                    ..Default::default()
                },
                avcc,
                btrt: None,
                colr: None,
                pasp: None,
                taic: None,
                fiel: None,
                spatial: None,
            });
            let tkhd = Tkhd {
                width: FixedPoint::from(*width),
                height: FixedPoint::from(*height),
                ..track_header()
            };
            let hdlr = Hdlr {
                handler: b"vide".into(),
                name: "VideoHandler".into(),
            };
            (tkhd, hdlr, MediaHeader::Video, codec)
        }
        TrackConfig::Aac {
            asc,
            object_type,
            sample_rate,
            channels,
        } => {
            // `raw` is what gets written; the parsed fields are informational only.
            let freq_index = match asc.as_ref() {
                [a, b, ..] => ((a & 0x07) << 1) | (b >> 7),
                _ => 0,
            };
            let dec_specific = DecoderSpecific {
                profile: *object_type,
                freq_index,
                chan_conf: *channels,
                raw: asc.to_vec(),
            };
            let es_desc = EsDescriptor {
                es_id: TRACK_ID as u16,
                dec_config: DecoderConfig {
                    // 0x40: MPEG-4 Audio (ISO 14496-3); stream type 5: audio stream.
                    object_type_indication: 0x40,
                    stream_type: 5,
                    dec_specific: Some(dec_specific),
                    ..Default::default()
                },
                sl_config: SLConfig {},
                ..Default::default()
            };
            let codec = Codec::from(Mp4a {
                audio: Audio {
                    data_reference_index: 1,
                    channel_count: u16::from(*channels),
                    sample_size: 16,
                    // 16.16 fixed point: rates above 65535 Hz do not fit and are written as 0,
                    // as other muxers do; the real rate is the timescale and the ASC.
                    sample_rate: FixedPoint::from(u16::try_from(*sample_rate).unwrap_or(0)),
                },
                esds: Esds { es_desc },
                btrt: None,
                taic: None,
            });
            let tkhd = Tkhd {
                volume: FixedPoint::from(1u8),
                ..track_header()
            };
            let hdlr = Hdlr {
                handler: b"soun".into(),
                name: "SoundHandler".into(),
            };
            (tkhd, hdlr, MediaHeader::Audio, codec)
        }
    };

    let (vmhd, smhd) = match minf_header {
        MediaHeader::Video => (Some(Vmhd::default()), None),
        MediaHeader::Audio => (None, Some(Smhd::default())),
    };
    let moov = Moov {
        mvhd: Mvhd {
            timescale,
            rate: FixedPoint::from(1u16),
            volume: FixedPoint::from(1u8),
            next_track_id: TRACK_ID + 1,
            ..Default::default()
        },
        mvex: Some(Mvex {
            mehd: None,
            trex: vec![Trex {
                track_id: TRACK_ID,
                default_sample_description_index: 1,
                ..Default::default()
            }],
        }),
        trak: vec![Trak {
            tkhd,
            mdia: Mdia {
                mdhd: Mdhd {
                    timescale,
                    language: "und".into(),
                    ..Default::default()
                },
                hdlr,
                minf: Minf {
                    vmhd,
                    smhd,
                    dinf: Dinf {
                        dref: Dref {
                            entries: vec![Url::default().into()],
                        },
                    },
                    stbl: Stbl {
                        stsd: Stsd {
                            codecs: vec![codec],
                        },
                        stco: Some(Stco::default()),
                        ..Default::default()
                    },
                    ..Default::default()
                },
            },
            ..Default::default()
        }],
        ..Default::default()
    };

    let mut out = Vec::with_capacity(1024);
    ftyp.encode(&mut out)?;
    moov.encode(&mut out)?;
    Ok(Bytes::from(out))
}

/// Which media header box (`vmhd` or `smhd`) the track's `minf` carries.
enum MediaHeader {
    Video,
    Audio,
}

/// A `tkhd` for an enabled track with id [`TRACK_ID`] and unknown (fragmented) duration.
fn track_header() -> Tkhd {
    Tkhd {
        track_id: TRACK_ID,
        enabled: true,
        in_movie: true,
        ..Default::default()
    }
}

/// The `avcC` extension that ISO 14496-15 requires for the High profiles (chroma format and
/// bit depths), read from the SPS. Falls back to 4:2:0 8-bit when the SPS does not parse.
fn avcc_ext(profile: u8, sps: &[u8]) -> Option<AvccExt> {
    if !matches!(profile, 100 | 110 | 122 | 144) {
        return None;
    }
    let parsed = h264_reader::rbsp::decode_nal(sps).ok().and_then(|rbsp| {
        h264_reader::nal::sps::SeqParameterSet::from_bits(h264_reader::rbsp::BitReader::new(
            &rbsp[..],
        ))
        .ok()
    });
    let Some(sps) = parsed else {
        return Some(AvccExt::default());
    };
    let info = &sps.chroma_info;
    use h264_reader::nal::sps::ChromaFormat;
    let chroma_format = match info.chroma_format {
        ChromaFormat::Monochrome => 0,
        ChromaFormat::YUV420 => 1,
        ChromaFormat::YUV422 => 2,
        ChromaFormat::YUV444 => 3,
        ChromaFormat::Invalid(_) => 1,
    };
    Some(AvccExt {
        chroma_format,
        bit_depth_luma: info.bit_depth_luma_minus8.min(7) + 8,
        bit_depth_chroma: info.bit_depth_chroma_minus8.min(7) + 8,
        sequence_parameter_sets_ext: Vec::new(),
    })
}

/// One `moof` + `mdat` fragment of track 1.
///
/// `sequence` is the `mfhd` sequence number (callers increase it by one per fragment);
/// `base_dts` is the decode time of the first sample in track timescale ticks (`tfdt` version 1).
/// The `traf` uses `default-base-is-moof`, and the `trun` carries each sample's duration, size,
/// flags (sync or not) and signed composition offset, with `data_offset` pointing at the first
/// sample byte inside `mdat`. Composition offsets are left out when every sample has zero.
pub fn fragment(sequence: u32, base_dts: u64, samples: &[Sample]) -> Result<Bytes, Fmp4Error> {
    if samples.is_empty() {
        return Err(Fmp4Error::NoSamples);
    }
    let data_len: usize = samples.iter().map(|s| s.data.len()).sum();
    let mdat_len = data_len + MDAT_HEADER_LEN;
    let mdat_size = u32::try_from(mdat_len).map_err(|_| Fmp4Error::TooLarge(data_len))?;

    let with_cts = samples.iter().any(|s| s.cts != 0);
    let entries = samples
        .iter()
        .map(|s| {
            Ok(TrunEntry {
                duration: Some(s.duration),
                size: Some(u32::try_from(s.data.len()).map_err(|_| Fmp4Error::TooLarge(data_len))?),
                flags: Some(if s.keyframe {
                    SYNC_SAMPLE_FLAGS
                } else {
                    NON_SYNC_SAMPLE_FLAGS
                }),
                cts: with_cts.then_some(i64::from(s.cts)),
            })
        })
        .collect::<Result<Vec<_>, Fmp4Error>>()?;

    let mut moof = Moof {
        mfhd: Mfhd {
            sequence_number: sequence,
        },
        traf: vec![Traf {
            tfhd: Tfhd {
                track_id: TRACK_ID,
                default_base_is_moof: true,
                ..Default::default()
            },
            tfdt: Some(Tfdt {
                base_media_decode_time: base_dts,
            }),
            trun: vec![Trun {
                // Placeholder of the same width; the real offset needs the moof size.
                data_offset: Some(0),
                samples: entries.into(),
            }],
            ..Default::default()
        }],
    };

    let mut head = Vec::with_capacity(128 + 16 * samples.len());
    moof.encode(&mut head)?;
    let moof_len = head.len();
    let data_offset =
        i32::try_from(moof_len + MDAT_HEADER_LEN).map_err(|_| Fmp4Error::TooLarge(data_len))?;
    if let Some(trun) = moof.traf.first_mut().and_then(|t| t.trun.first_mut()) {
        trun.data_offset = Some(data_offset);
    }
    head.clear();
    moof.encode(&mut head)?;

    let mut out = BytesMut::with_capacity(head.len() + mdat_len);
    out.put_slice(&head);
    out.put_u32(mdat_size);
    out.put_slice(b"mdat");
    for s in samples {
        out.put_slice(&s.data);
    }
    Ok(out.freeze())
}

#[cfg(test)]
pub(crate) mod tests;
