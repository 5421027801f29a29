//! Fuzz the playback path parser (viewers' request paths): any path must route or be refused,
//! never panic, and every routed name must be a valid name.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(path) = std::str::from_utf8(data) {
        if let Ok(route) = origin::route::parse(path) {
            assert!(origin::streamid::valid_name(route.room()));
        }
    }
});
