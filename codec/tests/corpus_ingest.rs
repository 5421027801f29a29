//! Runs the seed corpora of the ingest fuzz targets (`codec/fuzz/corpus/{ts_demux,h264,aac}`)
//! as ordinary tests, through the same calls as `codec/fuzz/fuzz_targets/*.rs`: every file must
//! go through without a panic. Keep the `run_*` functions in step with those targets.

use std::fs;
use std::path::PathBuf;

use codec::aac::{self, AdtsSplitter};
use codec::h264;
use codec::ingest::{Demuxer, MediaEvent};

fn corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<(String, Vec<u8>)> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .map(|entry| {
            let path = entry.expect("directory entry").path();
            let bytes = fs::read(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
            (path.display().to_string(), bytes)
        })
        .collect();
    files.sort();
    assert!(!files.is_empty(), "corpus {} is empty", dir.display());
    files
}

/// Same as `fuzz_targets/ts_demux.rs`, returning the events for extra checks.
fn run_ts_demux(data: &[u8]) -> Vec<MediaEvent> {
    let chunk = data.len() % 251 + 1;
    let mut demux = Demuxer::new();
    let mut out = Vec::new();
    for piece in data.chunks(chunk) {
        demux.push(piece, &mut out);
    }
    demux.finish(&mut out);
    out
}

/// Same as `fuzz_targets/h264.rs`.
fn run_h264(data: &[u8]) {
    let au = h264::to_avcc(data);
    if let (Some(sps), Some(pps)) = (au.sps, au.pps) {
        let _ = h264::track_config(sps, pps);
    }
    for nal in h264::nal_units(data) {
        let _ = h264::parse_sps(nal);
    }
    let _ = h264::parse_sps(data);
}

/// Same as `fuzz_targets/aac.rs`.
fn run_aac(data: &[u8]) {
    if let Ok(header) = aac::parse_adts(data) {
        let _ = header.audio_specific_config();
    }
    let cut = data.first().map_or(0, |&b| usize::from(b)).min(data.len());
    let (a, b) = data.split_at(cut);
    let mut split = AdtsSplitter::new();
    let mut out = Vec::new();
    split.push(a, &mut out);
    split.push(b, &mut out);
    split.finish(&mut out);
}

#[test]
fn ts_demux_corpus() {
    for (name, data) in corpus("ts_demux") {
        let events = run_ts_demux(&data);
        if name.ends_with("small_head.ts") {
            let frames = events
                .iter()
                .filter(|e| matches!(e, MediaEvent::Frame { .. }))
                .count();
            assert!(frames > 0, "{name}: the fixture head yields frames");
        }
    }
}

#[test]
fn h264_corpus() {
    for (name, data) in corpus("h264") {
        run_h264(&data);
        if name.ends_with("sps_320x180.bin") {
            let info = h264::parse_sps(&data).expect("fixture sps parses");
            assert_eq!((info.width, info.height), (320, 180));
        }
    }
}

#[test]
fn aac_corpus() {
    for (name, data) in corpus("aac") {
        run_aac(&data);
        if name.ends_with("five_frames.aac") {
            let header = aac::parse_adts(&data).expect("fixture adts parses");
            assert_eq!(header.sample_rate, 48_000);
        }
    }
}
