//! Fuzz the configuration loader (operators' files, reloaded on SIGHUP): any text is a valid
//! configuration or a list of errors, never a panic; errors name keys and lines in range.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let lines = text.lines().count() + 1;
    for result in [
        conf::EdgeConfig::from_toml(text).err(),
        conf::OriginConfig::from_toml(text).err(),
    ] {
        if let Some(e) = result {
            for f in e.field_errors() {
                assert!(!f.key.is_empty());
                assert!(f.line.is_none_or(|l| l >= 1 && l <= lines), "{f}");
            }
        }
    }
});
