//! Like merging: likes are counted per room in memory and, every window, one record per room
//! with its count goes to the spool. Upstream traffic grows with rooms, not with likes; the
//! total stays exact (counts add up; each record's id is unique, so a replay is deduplicated).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use origin::events::{Event, Kind, Record};
use tracing::warn;

use super::spool::Spool;

/// Counts likes per room until the next flush.
pub struct Likes {
    counts: Mutex<HashMap<String, u64>>,
    /// Unique per process start, so merged records never reuse an id after a restart.
    prefix: String,
    seq: AtomicU64,
}

impl Likes {
    pub fn new() -> Arc<Self> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Arc::new(Self {
            counts: Mutex::new(HashMap::new()),
            prefix: format!("lk-{:x}-{:x}", nanos, std::process::id()),
            seq: AtomicU64::new(0),
        })
    }

    pub fn add(&self, room: &str, n: u64) {
        *self
            .counts
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry(room.to_string())
            .or_insert(0) += n;
    }

    /// The records for what was counted since the last call.
    fn take(&self) -> Vec<Record> {
        let counts = std::mem::take(&mut *self.counts.lock().unwrap_or_else(|e| e.into_inner()));
        counts
            .into_iter()
            .map(|(room, count)| Record {
                room,
                event: Event {
                    id: format!(
                        "{}-{}",
                        self.prefix,
                        self.seq.fetch_add(1, Ordering::Relaxed)
                    ),
                    kind: Kind::Like,
                    user: "edge".into(),
                    sku: None,
                    qty: None,
                    text: None,
                    count: Some(count),
                },
            })
            .collect()
    }

    /// Flushes every `window` until `shutdown`, then once more.
    pub async fn run(
        self: Arc<Self>,
        spool: Arc<Spool>,
        window: Duration,
        mut shutdown: daemon::Drain,
    ) {
        let mut tick = tokio::time::interval(window);
        loop {
            let stopping = tokio::select! {
                _ = tick.tick() => false,
                _ = shutdown.stopped() => true,
            };
            let records = self.take();
            if !records.is_empty() {
                let items = records
                    .iter()
                    .filter_map(|r| serde_json::to_vec(r).ok())
                    .collect();
                if let Err(e) = spool.write(items).await {
                    warn!("likes lost: {e}");
                }
            }
            if stopping {
                return;
            }
        }
    }
}
