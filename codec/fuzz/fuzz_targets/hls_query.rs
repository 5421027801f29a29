//! Fuzz the LL-HLS playlist request query parser: any UTF-8 query string must parse or be
//! rejected with an error, never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(s) = std::str::from_utf8(data) {
        let _ = codec::hls::query::parse(s);
    }
});
