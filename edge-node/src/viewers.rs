//! `daihuo_viewers{stream, proto}`: how many clients watch each stream now, by HTTP version
//! (`h1`, `h2`, `h3`). A viewer is a client connection (its address) that was answered a
//! playlist (or event) request of the stream within the last [`IDLE`]; players reload the
//! playlist every part, so a watching client never goes that long without one.

use std::net::SocketAddr;
use std::time::Duration;

use daemon::serve::Peer;
use moka::future::Cache;
use moka::notification::RemovalCause;
use prometheus::{IntGaugeVec, Opts};

/// How long a client counts as watching after its last answered request.
pub const IDLE: Duration = Duration::from_secs(10);
/// Most (stream, client) pairs tracked; beyond, the least recent are forgotten early.
const MAX_TRACKED: u64 = 1_000_000;

type Key = (String, &'static str, SocketAddr);

/// Counts viewers per stream and protocol.
pub struct Viewers {
    seen: Cache<Key, ()>,
    gauge: IntGaugeVec,
}

impl Viewers {
    pub fn new(metrics: &origin::Metrics) -> Self {
        let gauge = IntGaugeVec::new(
            Opts::new(
                "daihuo_viewers",
                "Clients that requested the stream in the last 10 s, by HTTP version.",
            ),
            &["stream", "proto"],
        )
        .expect("static metric definition");
        metrics.register(vec![Box::new(gauge.clone())]);
        let on_leave = gauge.clone();
        let seen = Cache::builder()
            .max_capacity(MAX_TRACKED)
            .time_to_idle(IDLE)
            .eviction_listener(move |key: std::sync::Arc<Key>, _, cause: RemovalCause| {
                if cause == RemovalCause::Replaced {
                    return;
                }
                let (stream, proto, _) = key.as_ref();
                let labels = [stream.as_str(), proto];
                if let Ok(g) = on_leave.get_metric_with_label_values(&labels) {
                    g.dec();
                    if g.get() <= 0 {
                        let _ = on_leave.remove_label_values(&labels);
                    }
                }
            })
            .build();
        Self { seen, gauge }
    }

    /// `peer` was answered about `stream`.
    pub async fn saw(&self, stream: &str, peer: &Peer) {
        let proto = peer.proto.label();
        let entry = self
            .seen
            .entry((stream.to_string(), proto, peer.addr))
            .or_insert(())
            .await;
        if entry.is_fresh() {
            self.gauge.with_label_values(&[stream, proto]).inc();
        }
    }

    /// Viewers per stream now (a client once per protocol).
    pub fn counts(&self) -> std::collections::HashMap<String, u64> {
        let mut counts = std::collections::HashMap::new();
        for (key, _) in self.seen.iter() {
            *counts.entry(key.0.clone()).or_default() += 1;
        }
        counts
    }

    /// Delivers pending expiries (moka does its housekeeping lazily).
    pub async fn tick(&self) {
        self.seen.run_pending_tasks().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use daemon::serve::Proto;

    fn peer(port: u16, proto: Proto) -> Peer {
        Peer {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            limit_key: [127, 0, 0, 1].into(),
            proto,
            tls: true,
        }
    }

    #[tokio::test]
    async fn viewers_are_counted_once_per_client_and_protocol() {
        let metrics = origin::Metrics::new();
        let v = Viewers::new(&metrics);
        for _ in 0..3 {
            v.saw("demo", &peer(1, Proto::Http3)).await;
        }
        v.saw("demo", &peer(2, Proto::Http3)).await;
        v.saw("demo", &peer(3, Proto::Http1)).await;
        v.saw("other", &peer(1, Proto::Http3)).await;
        let get = |s, p| v.gauge.with_label_values(&[s, p]).get();
        assert_eq!(get("demo", "h3"), 2);
        assert_eq!(get("demo", "h1"), 1);
        assert_eq!(get("other", "h3"), 1);
        // Leaving: the series goes when its last viewer does.
        v.seen.invalidate_all();
        v.tick().await;
        assert!(!metrics.render().contains("daihuo_viewers{"));
    }
}
