//! Fuzzes the ingest demuxer: MPEG-TS bytes through packet sync, PSI, PES, H.264 and ADTS.
//! The input is pushed in chunks whose size depends on its length, so split packets and
//! partial frames are exercised while seeds stay plain `.ts` files.
#![no_main]

use codec::ingest::Demuxer;

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let chunk = data.len() % 251 + 1;
    let mut demux = Demuxer::new();
    let mut out = Vec::new();
    for piece in data.chunks(chunk) {
        demux.push(piece, &mut out);
        out.clear();
    }
    demux.finish(&mut out);
});
