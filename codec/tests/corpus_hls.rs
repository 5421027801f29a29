//! The `hls_query` fuzz seeds run as an ordinary test: every seed parses or is rejected,
//! without panicking, and the seeds named for an error are rejected.

use std::path::Path;

#[test]
fn hls_query_corpus() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/hls_query");
    let mut seeds = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus directory") {
        let path = entry.expect("corpus entry").path();
        let data = std::fs::read(&path).expect("seed");
        seeds += 1;
        let Ok(query) = std::str::from_utf8(&data) else {
            continue;
        };
        let result = codec::hls::query::parse(query);
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        match name {
            "msn_part" | "full" | "skip_v2" | "empty" | "odd_separators" => {
                assert!(result.is_ok(), "{name}: {result:?}");
            }
            "part_without_msn" | "duplicate_msn" | "negative" | "overflow" | "part_overflow"
            | "bad_skip" | "unicode_digit" => {
                assert!(result.is_err(), "{name}: {result:?}");
            }
            _ => {}
        }
    }
    assert!(seeds > 0, "no seeds in {}", dir.display());
}
