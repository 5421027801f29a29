//! Viewers across edges. Every few seconds each edge reports how many viewers it has in each
//! room to the room's origin (its first origin that is up: every edge ranks origins alike);
//! the origin answers with each room's total over the edges that reported within [`FRESH`].
//! Edges push that total on the rooms' live feeds, so a room's page shows one number at every
//! edge. An edge that stops reporting (stopped, cut off) drops out after [`FRESH`].

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

/// How long an edge's report counts: a few report intervals.
pub const FRESH: Duration = Duration::from_secs(6);
/// Most rooms in one report, and most edges counted per room.
pub const MAX_ROOMS: usize = 10_000;
const MAX_EDGES: usize = 1_000;

/// An edge's report (`POST /viewers`) and the origin's answer (the totals, same shape).
#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Report {
    /// The reporting edge process (the answer leaves it empty).
    #[serde(default)]
    pub edge: String,
    pub rooms: HashMap<String, u64>,
}

/// Why a report was refused (a 400 with this text).
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("not a viewers report: {0}")]
    Json(#[from] serde_json::Error),
    #[error("edge must be 1 to 64 characters")]
    Edge,
    #[error("{0} rooms in one report; at most {MAX_ROOMS}")]
    TooMany(usize),
    #[error("invalid room name {0:?}")]
    Room(String),
}

/// Each edge's latest count of one room, and when it came.
type ByEdge = HashMap<String, (u64, Instant)>;

/// The latest count of each edge, per room.
#[derive(Default)]
pub struct Audience {
    rooms: Mutex<HashMap<String, ByEdge>>,
}

impl Audience {
    /// Takes an edge's report (a JSON [`Report`]) made at `now`; returns the totals of its
    /// rooms as a JSON [`Report`].
    pub fn report(&self, body: &[u8], now: Instant) -> Result<Vec<u8>, ReportError> {
        let report: Report = serde_json::from_slice(body)?;
        if report.edge.is_empty() || report.edge.len() > 64 {
            return Err(ReportError::Edge);
        }
        if report.rooms.len() > MAX_ROOMS {
            return Err(ReportError::TooMany(report.rooms.len()));
        }
        if let Some(bad) = report.rooms.keys().find(|r| !conf::valid_room(r)) {
            return Err(ReportError::Room(bad.clone()));
        }
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        // Forget what went stale: edges gone, rooms nobody watches.
        rooms.retain(|_, edges| {
            edges.retain(|_, (_, at)| now.duration_since(*at) < FRESH);
            !edges.is_empty()
        });
        let mut totals = HashMap::new();
        for (room, count) in report.rooms {
            let edges = rooms.entry(room.clone()).or_default();
            if edges.len() < MAX_EDGES || edges.contains_key(&report.edge) {
                edges.insert(report.edge.clone(), (count, now));
            }
            totals.insert(room, edges.values().map(|(n, _)| n).sum());
        }
        let answer = Report {
            edge: String::new(),
            rooms: totals,
        };
        Ok(serde_json::to_vec(&answer).unwrap_or_default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(answer: &[u8]) -> HashMap<String, u64> {
        serde_json::from_slice::<Report>(answer).unwrap().rooms
    }

    #[test]
    fn rooms_add_up_over_edges_until_an_edge_goes_quiet() {
        let audience = Audience::default();
        let t0 = Instant::now();
        let a = audience
            .report(br#"{"edge":"a","rooms":{"demo":3,"other":1}}"#, t0)
            .unwrap();
        assert_eq!(totals(&a)["demo"], 3);
        let b = audience
            .report(br#"{"edge":"b","rooms":{"demo":4}}"#, t0)
            .unwrap();
        assert_eq!(totals(&b)["demo"], 7);
        // a reports again with fewer: replaced, not added.
        let a = audience
            .report(
                br#"{"edge":"a","rooms":{"demo":1}}"#,
                t0 + Duration::from_secs(2),
            )
            .unwrap();
        assert_eq!(totals(&a)["demo"], 5);
        // b goes quiet: after FRESH only a counts.
        let later = t0 + FRESH + Duration::from_secs(1);
        let a = audience
            .report(br#"{"edge":"a","rooms":{"demo":1}}"#, later)
            .unwrap();
        assert_eq!(totals(&a)["demo"], 1);
    }

    #[test]
    fn bad_reports_are_refused() {
        let audience = Audience::default();
        let now = Instant::now();
        for body in [
            &br#"{"edge":"","rooms":{}}"#[..],
            br#"{"edge":"a","rooms":{"../x":1}}"#,
            br#"{"edge":"a","rooms":{"demo":-1}}"#,
            br#"{"edge":"a","rooms":{},"extra":1}"#,
            b"not json",
        ] {
            assert!(
                audience.report(body, now).is_err(),
                "{}",
                String::from_utf8_lossy(body)
            );
        }
    }
}
