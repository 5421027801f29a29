//! Fuzz the SRT stream id parser (publishers' input at handshake time): any bytes must parse
//! to a valid room or be refused, never panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    if let Ok(id) = std::str::from_utf8(data) {
        if let Ok(request) = origin::streamid::parse(Some(id)) {
            assert!(origin::streamid::valid_name(&request.room));
        }
    }
});
