//! Fuzzes ADTS parsing: one header, and the splitter over the input cut in two pushes.
#![no_main]

use codec::aac::{self, AdtsSplitter};

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
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
});
