//! The spool's forwarder: sends the oldest spooled records to the origin in batches over the
//! persistent upstream connection, and deletes them only once the origin answered 200 (it has
//! written them durably, once). After a restart it starts with what the spool still holds.
//!
//! Each room's events go to one origin, the first of the room's rendezvous ranking whatever
//! its health: deduplication happens where the sink is, so a room's events must not be split
//! between origins. While that origin is down they wait in the spool (never lost, delivered
//! late); playback fails over, events do not.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use origin::events::{Intake, Record};
use tracing::{debug, warn};

use super::spool::Spool;
use crate::upstream::Upstream;

/// Records per upstream batch.
const BATCH: usize = 500;
const MAX_BACKOFF: Duration = Duration::from_secs(2);

/// Where spooled records go.
pub enum Target {
    /// The origin in this process (single box).
    Local(Arc<Intake>),
    /// Remote origins.
    Remote(Arc<Upstream>),
}

/// Forwards until `shutdown`, then until the spool is empty (the drain's grace period bounds
/// that).
pub async fn run(spool: Arc<Spool>, target: Target, mut shutdown: daemon::Drain) {
    let mut backoff = Duration::from_millis(50);
    loop {
        let reader = spool.clone();
        let batch = match tokio::task::spawn_blocking(move || reader.oldest(BATCH)).await {
            Ok(Ok(b)) => b,
            Ok(Err(e)) => {
                warn!("spool read: {e}");
                Vec::new()
            }
            Err(e) => {
                warn!("spool read: {e}");
                Vec::new()
            }
        };
        if batch.is_empty() {
            if shutdown.is_draining() {
                return;
            }
            tokio::select! {
                _ = spool.written.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.stopped() => {}
            }
            continue;
        }
        let mut done = Vec::new();
        let mut records = Vec::new();
        for (key, bytes) in batch {
            match serde_json::from_slice::<Record>(&bytes) {
                Ok(r) => records.push((key, r)),
                // Written by this program; unreadable means a format change: drop it loudly.
                Err(e) => {
                    warn!(key, "spooled record unreadable, dropped: {e}");
                    done.push(key);
                }
            }
        }
        let delivered = deliver(&target, records).await;
        let failed = delivered.is_err();
        done.extend(delivered.unwrap_or_else(|keys| keys));
        if !done.is_empty() {
            let remover = spool.clone();
            match tokio::task::spawn_blocking(move || remover.remove(&done)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => warn!("spool delete: {e}"),
                Err(e) => warn!("spool delete: {e}"),
            }
        }
        if failed {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        } else {
            backoff = Duration::from_millis(50);
        }
    }
}

/// The records of one origin in a batch.
struct Group {
    origin: Arc<crate::upstream::Origin>,
    keys: Vec<u64>,
    records: Vec<Record>,
}

/// Delivers `records`; `Ok(keys)` when all went, `Err(keys)` with the ones that did.
async fn deliver(target: &Target, records: Vec<(u64, Record)>) -> Result<Vec<u64>, Vec<u64>> {
    match target {
        Target::Local(intake) => {
            let keys: Vec<u64> = records.iter().map(|(k, _)| *k).collect();
            match intake
                .accept(records.into_iter().map(|(_, r)| r).collect())
                .await
            {
                Ok(_) => Ok(keys),
                Err(e) => {
                    warn!("event sink: {e}");
                    Err(Vec::new())
                }
            }
        }
        Target::Remote(upstream) => {
            // Group by the room's authority.
            let mut groups: BTreeMap<String, Group> = BTreeMap::new();
            let mut unplaced = false;
            for (key, record) in records {
                let Some(origin) = upstream.ranked(&record.room).into_iter().next() else {
                    unplaced = true;
                    continue;
                };
                let group = groups
                    .entry(origin.peer.name.clone())
                    .or_insert_with(|| Group {
                        origin,
                        keys: Vec::new(),
                        records: Vec::new(),
                    });
                group.keys.push(key);
                group.records.push(record);
            }
            let mut delivered = Vec::new();
            let mut failed = unplaced;
            for (
                name,
                Group {
                    origin,
                    keys,
                    records,
                },
            ) in groups
            {
                let body = match serde_json::to_vec(&records) {
                    Ok(b) => Bytes::from(b),
                    Err(_) => continue,
                };
                match upstream.post(&origin, "/events", body).await {
                    Ok((StatusCode::OK, _)) => delivered.extend(keys),
                    Ok((status, body)) => {
                        failed = true;
                        warn!(origin = %name, %status, "events refused: {}", String::from_utf8_lossy(&body).trim());
                    }
                    Err(e) => {
                        failed = true;
                        debug!(origin = %name, "events not delivered yet: {e}");
                    }
                }
            }
            if failed {
                Err(delivered)
            } else {
                Ok(delivered)
            }
        }
    }
}
