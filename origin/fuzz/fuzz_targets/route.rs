//! Fuzz the playback request parser (viewers' request paths and LL-HLS queries, split at the
//! first `?`): any request must route or be refused, never panic, and every routed name must
//! be a valid name.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(request) = std::str::from_utf8(data) {
        let (path, query) = request.split_once('?').unwrap_or((request, ""));
        if let Ok(route) = origin::route::parse_request(path, query) {
            assert!(origin::streamid::valid_name(route.room()));
        }
    }
});
