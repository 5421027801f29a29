//! Fuzzes the H.264 helpers: Annex B splitting, AVCC conversion and SPS parsing of every NAL.
#![no_main]

use codec::h264;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let au = h264::to_avcc(data);
    if let (Some(sps), Some(pps)) = (au.sps, au.pps) {
        let _ = h264::track_config(sps, pps);
    }
    for nal in h264::nal_units(data) {
        let _ = h264::parse_sps(nal);
    }
    // The input as one raw NAL unit too (an SPS without a start code).
    let _ = h264::parse_sps(data);
});
