//! Init segments and fragments parsed back with `mp4-atom`, and a real decode with ffmpeg.

use std::path::{Path, PathBuf};
use std::process::Command;

use mp4_atom::{Codec, Decode, Ftyp, Mdat, Moof, Moov, TrunEntry};

use super::*;

/// A parsed `moof` + `mdat` fragment.
#[derive(Debug)]
pub(crate) struct ParsedFragment {
    pub sequence: u32,
    pub tfdt: u64,
    pub entries: Vec<TrunEntry>,
    pub data_offset: i32,
    pub moof_len: usize,
    pub mdat: Vec<u8>,
    /// The `trun` box version byte as written.
    pub trun_version: u8,
}

/// Parse `bytes` as exactly one `moof` followed by one `mdat`.
pub(crate) fn parse_fragment(bytes: &[u8]) -> ParsedFragment {
    let mut buf = bytes;
    let moof = Moof::decode(&mut buf).expect("moof decodes");
    let moof_len = bytes.len() - buf.len();
    let mdat = Mdat::decode(&mut buf).expect("mdat decodes");
    assert!(buf.is_empty(), "trailing bytes after mdat");
    assert_eq!(moof.traf.len(), 1);
    let traf = &moof.traf[0];
    assert_eq!(traf.tfhd.track_id, 1);
    assert!(traf.tfhd.default_base_is_moof);
    assert_eq!(traf.trun.len(), 1);
    let trun = &traf.trun[0];
    let pos = find(&bytes[..moof_len], b"trun").expect("trun present");
    ParsedFragment {
        sequence: moof.mfhd.sequence_number,
        tfdt: traf.tfdt.as_ref().expect("tfdt").base_media_decode_time,
        entries: trun.samples.iter().collect(),
        data_offset: trun.data_offset.expect("data offset"),
        moof_len,
        mdat: mdat.data,
        trun_version: bytes[pos + 4],
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn h264_config() -> TrackConfig {
    TrackConfig::H264 {
        // A real 1280x720 High@3.1 SPS and its PPS.
        sps: Bytes::from_static(&[
            0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40, 0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00,
            0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0, 0xf1, 0x83, 0x19, 0x60,
        ]),
        pps: Bytes::from_static(&[0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0]),
        width: 1280,
        height: 720,
        profile: 0x64,
        constraints: 0,
        level: 0x1f,
    }
}

fn aac_config() -> TrackConfig {
    TrackConfig::Aac {
        asc: Bytes::from_static(&[0x11, 0x90]),
        object_type: 2,
        sample_rate: 48_000,
        channels: 2,
    }
}

fn parse_init(bytes: &[u8]) -> (Ftyp, Moov) {
    let mut buf = bytes;
    let ftyp = Ftyp::decode(&mut buf).expect("ftyp decodes");
    let moov = Moov::decode(&mut buf).expect("moov decodes");
    assert!(buf.is_empty());
    (ftyp, moov)
}

#[test]
fn video_init_segment() {
    let init = init_segment(&h264_config()).expect("init");
    let (ftyp, moov) = parse_init(&init);
    assert_eq!(ftyp.major_brand, b"iso6".into());
    assert_eq!(moov.mvhd.timescale, 90_000);
    let trex = &moov.mvex.as_ref().expect("mvex").trex;
    assert_eq!(trex.len(), 1);
    assert_eq!(trex[0].track_id, 1);
    assert_eq!(moov.trak.len(), 1);
    let trak = &moov.trak[0];
    assert_eq!(trak.tkhd.track_id, 1);
    assert_eq!(trak.tkhd.width.integer(), 1280);
    assert_eq!(trak.mdia.mdhd.timescale, 90_000);
    assert_eq!(trak.mdia.hdlr.handler, b"vide".into());
    assert!(trak.mdia.minf.vmhd.is_some());
    let Codec::Avc1(avc1) = &trak.mdia.minf.stbl.stsd.codecs[0] else {
        panic!("not avc1");
    };
    assert_eq!((avc1.visual.width, avc1.visual.height), (1280, 720));
    assert_eq!(avc1.avcc.avc_profile_indication, 0x64);
    assert_eq!(avc1.avcc.avc_level_indication, 0x1f);
    assert_eq!(avc1.avcc.length_size, 4);
    let TrackConfig::H264 { sps, pps, .. } = h264_config() else {
        unreachable!()
    };
    assert_eq!(avc1.avcc.sequence_parameter_sets, vec![sps.to_vec()]);
    assert_eq!(avc1.avcc.picture_parameter_sets, vec![pps.to_vec()]);
    // The extension comes from the parsed SPS, not the 4:2:0 8-bit fallback.
    let rbsp = h264_reader::rbsp::decode_nal(&sps).expect("rbsp");
    h264_reader::nal::sps::SeqParameterSet::from_bits(h264_reader::rbsp::BitReader::new(&rbsp[..]))
        .expect("test SPS parses");
    let ext = avc1
        .avcc
        .ext
        .as_ref()
        .expect("high profile carries the avcC extension");
    assert_eq!(
        (ext.chroma_format, ext.bit_depth_luma, ext.bit_depth_chroma),
        (1, 8, 8)
    );
}

#[test]
fn audio_init_segment() {
    let init = init_segment(&aac_config()).expect("init");
    let (_, moov) = parse_init(&init);
    assert_eq!(moov.mvhd.timescale, 48_000);
    let trak = &moov.trak[0];
    assert_eq!(trak.mdia.mdhd.timescale, 48_000);
    assert_eq!(trak.mdia.hdlr.handler, b"soun".into());
    assert!(trak.mdia.minf.smhd.is_some());
    let Codec::Mp4a(mp4a) = &trak.mdia.minf.stbl.stsd.codecs[0] else {
        panic!("not mp4a");
    };
    assert_eq!(mp4a.audio.channel_count, 2);
    assert_eq!(mp4a.audio.sample_rate.integer(), 48_000);
    let dec = &mp4a.esds.es_desc.dec_config;
    assert_eq!(dec.object_type_indication, 0x40);
    assert_eq!(dec.stream_type, 5);
    assert_eq!(
        dec.dec_specific.as_ref().expect("asc").raw,
        vec![0x11, 0x90]
    );
}

fn sample(duration: u32, cts: i32, keyframe: bool, data: &'static [u8]) -> Sample {
    Sample {
        duration,
        cts,
        keyframe,
        data: Bytes::from_static(data),
    }
}

#[test]
fn fragment_layout() {
    let samples = [
        sample(3000, 6000, true, b"\0\0\0\x03abc"),
        sample(3000, -3000, false, b"\0\0\0\x01d"),
        sample(3003, 0, false, b""),
    ];
    let base = (1u64 << 33) + 17;
    let bytes = fragment(7, base, &samples).expect("fragment");
    let f = parse_fragment(&bytes);
    assert_eq!(f.sequence, 7);
    assert_eq!(f.tfdt, base);
    assert_eq!(f.entries.len(), 3);
    assert_eq!(f.trun_version, 1, "signed composition offsets need trun v1");
    assert_eq!(f.data_offset as usize, f.moof_len + 8);
    assert_eq!(
        &bytes[f.data_offset as usize..],
        b"\0\0\0\x03abc\0\0\0\x01d"
    );
    assert_eq!(f.mdat, b"\0\0\0\x03abc\0\0\0\x01d");
    let want = [
        (3000, 7, SYNC_SAMPLE_FLAGS, 6000),
        (3000, 5, NON_SYNC_SAMPLE_FLAGS, -3000),
        (3003, 0, NON_SYNC_SAMPLE_FLAGS, 0),
    ];
    for (e, (duration, size, flags, cts)) in f.entries.iter().zip(want) {
        assert_eq!(e.duration, Some(duration));
        assert_eq!(e.size, Some(size));
        assert_eq!(e.flags, Some(flags));
        assert_eq!(e.cts, Some(cts));
    }
}

#[test]
fn fragment_without_composition_offsets() {
    let samples = [sample(1024, 0, true, b"x"), sample(1024, 0, true, b"yz")];
    let f = parse_fragment(&fragment(1, 0, &samples).expect("fragment"));
    assert!(f.entries.iter().all(|e| e.cts.is_none()));
    assert_eq!(f.data_offset as usize, f.moof_len + 8);
    assert_eq!(f.mdat, b"xyz");
}

#[test]
fn empty_fragment_is_an_error() {
    assert!(matches!(fragment(1, 0, &[]), Err(Fmp4Error::NoSamples)));
}

// ---- real decode with Debian's ffmpeg ----

/// A scratch directory removed on drop.
pub(crate) struct TempDir(pub PathBuf);

impl TempDir {
    pub(crate) fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("daihuo-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success())
}

pub(crate) fn run(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// NAL units of an Annex B byte stream (start codes removed).
pub(crate) fn annexb_nals(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut nals = Vec::new();
    for (k, &s) in starts.iter().enumerate() {
        let mut end = starts.get(k + 1).map_or(data.len(), |&n| n - 3);
        while end > s && data[end - 1] == 0 {
            end -= 1;
        }
        nals.push(&data[s..end]);
    }
    nals
}

/// Access units of an ffmpeg-made stream with AUDs: (sps, pps, [(keyframe, AVCC bytes)]).
pub(crate) fn h264_access_units(data: &[u8]) -> (Vec<u8>, Vec<u8>, Vec<(bool, Bytes)>) {
    let mut sps = Vec::new();
    let mut pps = Vec::new();
    let mut aus: Vec<(bool, Vec<u8>)> = Vec::new();
    for nal in annexb_nals(data) {
        let Some(&header) = nal.first() else { continue };
        match header & 0x1f {
            9 => aus.push((false, Vec::new())),
            7 => sps = nal.to_vec(),
            8 => pps = nal.to_vec(),
            t => {
                let Some(au) = aus.last_mut() else { continue };
                au.0 |= t == 5;
                au.1.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                au.1.extend_from_slice(nal);
            }
        }
    }
    let aus = aus
        .into_iter()
        .filter(|(_, d)| !d.is_empty())
        .map(|(k, d)| (k, Bytes::from(d)))
        .collect();
    (sps, pps, aus)
}

/// `ffprobe` frame count of the first stream and `ffmpeg` decode errors of `file`.
pub(crate) fn probe(file: &Path) -> (u64, String) {
    let out = run(Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-show_entries"])
        .args(["stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(file));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let frames = stdout
        .lines()
        .find_map(|l| l.trim().trim_end_matches(',').parse().ok())
        .unwrap_or_else(|| panic!("no frame count in {stdout:?}"));
    let dec = run(Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file)
        .args(["-f", "null", "-"]));
    (frames, String::from_utf8_lossy(&dec.stderr).into_owned())
}

#[test]
fn h264_fragments_decode_with_ffmpeg() {
    if !have("ffmpeg") || !have("ffprobe") {
        eprintln!("skipped: ffmpeg/ffprobe not installed");
        return;
    }
    let dir = TempDir::new("fmp4-h264");
    let raw = dir.0.join("x.264");
    run(Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc2=size=320x180:rate=30",
        ])
        .args(["-c:v", "libx264", "-bf", "0", "-g", "30", "-t", "2"])
        .args(["-bsf:v", "h264_metadata=aud=insert", "-f", "h264"])
        .arg(&raw));
    let data = std::fs::read(&raw).expect("read h264");
    let (sps, pps, aus) = h264_access_units(&data);
    assert_eq!(aus.len(), 60);
    let config = TrackConfig::H264 {
        width: 320,
        height: 180,
        profile: sps[1],
        constraints: sps[2],
        level: sps[3],
        sps: Bytes::from(sps),
        pps: Bytes::from(pps),
    };
    let mut file = init_segment(&config).expect("init").to_vec();
    for (i, chunk) in aus.chunks(10).enumerate() {
        let samples: Vec<Sample> = chunk
            .iter()
            .map(|(keyframe, data)| Sample {
                duration: 3000,
                cts: 0,
                keyframe: *keyframe,
                data: data.clone(),
            })
            .collect();
        let base = (1u64 << 33) + (i as u64) * 30_000;
        let frag = fragment(i as u32 + 1, base, &samples).expect("fragment");
        file.extend_from_slice(&frag);
    }
    let mp4 = dir.0.join("x.mp4");
    std::fs::write(&mp4, &file).expect("write mp4");
    let (frames, errors) = probe(&mp4);
    assert_eq!(errors, "", "decode errors");
    assert_eq!(frames, 60);
}

/// Raw AAC frames of an ADTS stream and its AudioSpecificConfig.
fn adts_frames(data: &[u8]) -> (Vec<u8>, Vec<Bytes>) {
    let mut frames = Vec::new();
    let mut asc = Vec::new();
    let mut i = 0;
    while i + 7 <= data.len() {
        let h = &data[i..i + 7];
        assert_eq!((h[0], h[1] & 0xf0), (0xff, 0xf0), "adts sync");
        let header_len = if h[1] & 1 == 1 { 7 } else { 9 };
        let len = (usize::from(h[3] & 3) << 11) | (usize::from(h[4]) << 3) | usize::from(h[5] >> 5);
        let object_type = (h[2] >> 6) + 1;
        let freq = (h[2] >> 2) & 0xf;
        let channels = ((h[2] & 1) << 2) | (h[3] >> 6);
        asc = vec![
            (object_type << 3) | (freq >> 1),
            ((freq & 1) << 7) | (channels << 3),
        ];
        frames.push(Bytes::copy_from_slice(&data[i + header_len..i + len]));
        i += len;
    }
    (asc, frames)
}

#[test]
fn aac_fragments_decode_with_ffmpeg() {
    if !have("ffmpeg") || !have("ffprobe") {
        eprintln!("skipped: ffmpeg/ffprobe not installed");
        return;
    }
    let dir = TempDir::new("fmp4-aac");
    let raw = dir.0.join("x.aac");
    run(Command::new("ffmpeg")
        .args([
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "sine=frequency=440:sample_rate=48000",
        ])
        .args(["-ac", "2", "-c:a", "aac", "-t", "1", "-f", "adts"])
        .arg(&raw));
    let data = std::fs::read(&raw).expect("read aac");
    let (asc, frames) = adts_frames(&data);
    assert!(frames.len() > 40);
    let config = TrackConfig::Aac {
        asc: Bytes::from(asc),
        object_type: 2,
        sample_rate: 48_000,
        channels: 2,
    };
    let mut file = init_segment(&config).expect("init").to_vec();
    for (i, chunk) in frames.chunks(15).enumerate() {
        let samples: Vec<Sample> = chunk
            .iter()
            .map(|data| Sample {
                duration: 1024,
                cts: 0,
                keyframe: true,
                data: data.clone(),
            })
            .collect();
        let frag = fragment(i as u32 + 1, i as u64 * 15 * 1024, &samples).expect("fragment");
        file.extend_from_slice(&frag);
    }
    let mp4 = dir.0.join("a.mp4");
    std::fs::write(&mp4, &file).expect("write mp4");
    let (count, errors) = probe(&mp4);
    assert_eq!(errors, "", "decode errors");
    assert_eq!(count, frames.len() as u64);
}
