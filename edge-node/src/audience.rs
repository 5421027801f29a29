//! Viewer counts on the live feed. Every [`INTERVAL`] the edge counts its viewers per room
//! and pushes each room's total on the room's feed (`event: viewers`): in a single box its own
//! count; with origins, the total over every edge, which each room's origin answers to the
//! edges' reports (`POST /viewers`, see `origin::audience`).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use origin::audience::Report;
use tracing::debug;

use crate::router::Router;
use crate::upstream::Upstream;

/// How often viewer counts are reported and pushed.
pub const INTERVAL: Duration = Duration::from_secs(2);

/// Reports and pushes viewer counts until `shutdown`.
pub async fn report(
    router: Arc<Router>,
    upstream: Option<Arc<Upstream>>,
    mut shutdown: daemon::Drain,
) {
    // This process, to origins: unique per start, so a restarted edge is not its old self.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let edge = format!("edge-{:x}-{:x}", nanos, std::process::id());
    loop {
        tokio::select! {
            _ = tokio::time::sleep(INTERVAL) => {}
            _ = shutdown.stopped() => return,
        }
        let counts = router.viewer_counts();
        let totals = match &upstream {
            None => counts,
            Some(upstream) => totals(upstream, &edge, counts).await,
        };
        router.push_viewers(&totals);
    }
}

/// Sends each room's count to its origin (the first one up in the room's ranking); the
/// totals they answer. A room whose origin does not answer gets no total this time.
async fn totals(
    upstream: &Upstream,
    edge: &str,
    counts: HashMap<String, u64>,
) -> HashMap<String, u64> {
    let mut by_origin: HashMap<String, (Arc<crate::upstream::Origin>, HashMap<String, u64>)> =
        HashMap::new();
    for (room, count) in counts {
        if let Some(origin) = upstream.ranked(&room).into_iter().find(|o| o.is_up()) {
            by_origin
                .entry(origin.peer.name.clone())
                .or_insert_with(|| (origin, HashMap::new()))
                .1
                .insert(room, count);
        }
    }
    let mut totals = HashMap::new();
    for (origin, rooms) in by_origin.into_values() {
        let report = Report {
            edge: edge.to_string(),
            rooms,
        };
        let body = Bytes::from(serde_json::to_vec(&report).unwrap_or_default());
        match upstream.post(&origin, "/viewers", body).await {
            Ok((status, answer)) if status.is_success() => {
                if let Ok(answer) = serde_json::from_slice::<Report>(&answer) {
                    totals.extend(answer.rooms);
                }
            }
            Ok((status, _)) => debug!(origin = %origin.peer.name, %status, "viewers refused"),
            Err(e) => debug!(origin = %origin.peer.name, "viewers: {e}"),
        }
    }
    totals
}
