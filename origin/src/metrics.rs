//! Prometheus metrics of the origin side (`daihuo_` prefix). The edge registers its own
//! families in the same [`Registry`], so one `/metrics` answers for a single box.

use prometheus::{IntCounter, IntGauge, IntGaugeVec, Opts, Registry};

/// Handles to the origin's metric families. Cloning is cheap (the families are shared).
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// Streams being published right now.
    pub streams_live: IntGauge,
    /// Transport-stream bytes received from publishers.
    pub ingest_bytes: IntCounter,
    /// Publish attempts refused (bad stream id, auth, room taken, limit).
    pub publish_refused: IntCounter,
}

impl Metrics {
    /// Creates the families in a fresh registry.
    pub fn new() -> Self {
        let registry = Registry::new();
        let streams_live = IntGauge::new("daihuo_streams_live", "Streams being published now.")
            .expect("static metric definition");
        let ingest_bytes = IntCounter::new(
            "daihuo_ingest_bytes_total",
            "MPEG-TS bytes received from publishers.",
        )
        .expect("static metric definition");
        let publish_refused = IntCounter::new(
            "daihuo_publish_refused_total",
            "Publish attempts refused (stream id, authorization, room already live, limits).",
        )
        .expect("static metric definition");
        let build = IntGaugeVec::new(
            Opts::new(
                "daihuo_build_info",
                "Build information; the value is always 1.",
            ),
            &["version"],
        )
        .expect("static metric definition");
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        for m in [
            Box::new(streams_live.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(ingest_bytes.clone()),
            Box::new(publish_refused.clone()),
            Box::new(build),
        ] {
            registry
                .register(m)
                .expect("families are registered once in a fresh registry");
        }
        Self {
            registry,
            streams_live,
            ingest_bytes,
            publish_refused,
        }
    }

    /// The registry in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let families = self.registry.gather();
        if let Err(e) = prometheus::TextEncoder::new().encode_utf8(&families, &mut out) {
            tracing::warn!("metrics encoding failed: {e}");
        }
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
