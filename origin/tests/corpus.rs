//! The fuzz seeds of `origin/fuzz` run as ordinary tests: every seed parses or is refused
//! without panicking, and the seeds named for a refusal are refused.

use std::path::{Path, PathBuf};

/// The seeds of `target`, by file name.
fn seed_bytes(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("corpus directory") {
        let path = entry.expect("corpus entry").path();
        let data = std::fs::read(&path).expect("seed");
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_string();
        out.push((name, data));
    }
    assert!(!out.is_empty(), "no seeds in {}", dir.display());
    out
}

/// The seeds of `target` as text.
fn seeds(target: &str) -> Vec<(String, String)> {
    seed_bytes(target)
        .into_iter()
        .map(|(name, data)| (name, String::from_utf8_lossy(&data).into_owned()))
        .collect()
}

#[test]
fn streamid_corpus() {
    for (name, id) in seeds("streamid") {
        let result = origin::streamid::parse(Some(&id));
        match name.as_str() {
            "access_control" | "bare" | "keys_any_order" | "relayed" => {
                assert!(result.is_ok(), "{name}: {result:?}")
            }
            _ => assert!(result.is_err(), "{name}: {result:?}"),
        }
    }
}

#[test]
fn route_corpus() {
    for (name, request) in seeds("route") {
        let (path, query) = request.split_once('?').unwrap_or((&request, ""));
        let result = origin::route::parse_request(path, query);
        match name.as_str() {
            "multivariant" | "media" | "media_blocking" | "part" | "segment" | "init" => {
                assert!(result.is_ok(), "{name}: {result:?}")
            }
            _ => assert!(result.is_err(), "{name}: {result:?}"),
        }
    }
}

#[test]
fn events_corpus() {
    for (name, body) in seeds("events") {
        let posted = origin::events::model::parse_posted(body.as_bytes(), 200);
        let records = serde_json::from_str::<Vec<origin::events::Record>>(&body);
        match name.as_str() {
            n if n.starts_with("ok_") => assert!(posted.is_ok(), "{name}: {posted:?}"),
            "record" => assert!(records.is_ok(), "{name}: {records:?}"),
            _ => assert!(posted.is_err(), "{name}: {posted:?}"),
        }
    }
}

#[test]
fn config_corpus() {
    for (name, text) in seeds("config") {
        let edge = conf::EdgeConfig::from_toml(&text);
        let origin = conf::OriginConfig::from_toml(&text);
        match name.as_str() {
            "ok_origin" => assert!(origin.is_ok(), "{name}: {origin:?}"),
            n if n.starts_with("ok_") => assert!(edge.is_ok(), "{name}: {edge:?}"),
            _ => assert!(edge.is_err() && origin.is_err(), "{name}"),
        }
    }
}

#[test]
fn srt_listener_corpus() {
    let seeds = seed_bytes("srt_listener");
    assert!(seeds.len() >= 4);
    for (name, data) in seeds {
        let replayed = origin::replay::replay(&data);
        // The seeds reach where they are named for; the regressions just must not panic.
        match name.as_str() {
            "handshake_then_data" => {
                assert_eq!(replayed.opened, 1, "{name}: {replayed:?}");
                assert!(replayed.delegated >= 4, "{name}: {replayed:?}");
            }
            "two_peers_accept_and_drop" => {
                assert_eq!(replayed.access_requests, 2, "{name}: {replayed:?}");
                assert_eq!(replayed.opened, 1, "{name}: {replayed:?}");
            }
            "induction_only" => assert_eq!(replayed.access_requests, 0, "{name}: {replayed:?}"),
            _ => assert!(replayed.datagrams > 0, "{name}: {replayed:?}"),
        }
    }
}
