//! Fuzz the SRT listener (the vendored srt-protocol, as the ingest uses it) with hostile
//! datagrams, past the SYN cookie and into the connections it opens: see
//! `origin::replay`. Nothing may panic.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    origin::replay::replay(data);
});
