//! Prometheus metrics of the origin side (`daihuo_` prefix). The edge registers its own
//! families in the same [`Registry`], so one `/metrics` answers for a single box.

use prometheus::{IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// Every value of the `backend` label of `daihuo_encoder_backend`.
const BACKENDS: [&str; 4] = ["nvenc", "nvenc-ffmpeg", "x264", "copy"];

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
    /// Publishes accepted (SRT sessions that completed the handshake).
    pub publishes: IntCounter,
    /// Hardware encoders replaced by software mid-stream.
    pub ladder_fallbacks: IntCounter,
    /// Source frames dropped because the ladder was behind real time.
    pub ladder_dropped: IntCounter,
    /// `daihuo_encoder_backend{stream, rendition, backend}` = 1 for what encodes each rendition.
    pub encoder_backend: IntGaugeVec,
    /// `daihuo_reloads_total{result="ok|error"}`.
    pub reloads: IntCounterVec,
    /// `daihuo_config_info{fingerprint}` = 1 for the configuration running now.
    pub config_info: IntGaugeVec,
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
        let publishes = IntCounter::new(
            "daihuo_publishes_total",
            "Publishes accepted (SRT sessions that completed the handshake).",
        )
        .expect("static metric definition");
        let ladder_fallbacks = IntCounter::new(
            "daihuo_ladder_fallbacks_total",
            "Hardware encoders replaced by software mid-stream.",
        )
        .expect("static metric definition");
        let ladder_dropped = IntCounter::new(
            "daihuo_ladder_dropped_frames_total",
            "Source frames dropped because encoding was behind real time.",
        )
        .expect("static metric definition");
        let encoder_backend = IntGaugeVec::new(
            Opts::new(
                "daihuo_encoder_backend",
                "1 for the backend encoding each rendition (nvenc, nvenc-ffmpeg, x264, copy).",
            ),
            &["stream", "rendition", "backend"],
        )
        .expect("static metric definition");
        let reloads = IntCounterVec::new(
            Opts::new(
                "daihuo_reloads_total",
                "Configuration reloads (SIGHUP) by result; an error changed nothing.",
            ),
            &["result"],
        )
        .expect("static metric definition");
        for result in ["ok", "error"] {
            reloads.with_label_values(&[result]);
        }
        let config_info = IntGaugeVec::new(
            Opts::new(
                "daihuo_config_info",
                "1 for the fingerprint of the configuration running now.",
            ),
            &["fingerprint"],
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
            Box::new(publishes.clone()),
            Box::new(ladder_fallbacks.clone()),
            Box::new(ladder_dropped.clone()),
            Box::new(encoder_backend.clone()),
            Box::new(reloads.clone()),
            Box::new(config_info.clone()),
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
            publishes,
            ladder_fallbacks,
            ladder_dropped,
            encoder_backend,
            reloads,
            config_info,
        }
    }

    /// Counts a reload by its result.
    pub fn reload(&self, ok: bool) {
        self.reloads
            .with_label_values(&[if ok { "ok" } else { "error" }])
            .inc();
    }

    /// Records the fingerprint of the configuration running now.
    pub fn set_config(&self, fingerprint: &str) {
        self.config_info.reset();
        self.config_info.with_label_values(&[fingerprint]).set(1);
    }

    /// Registers families made elsewhere (the edge's) in this registry, so one `/metrics`
    /// answers for the box. A name registered twice is logged, not fatal.
    pub fn register(&self, families: Vec<Box<dyn prometheus::core::Collector>>) {
        for family in families {
            if let Err(e) = self.registry.register(family) {
                tracing::warn!("metrics: {e}");
            }
        }
    }

    /// Records which backend encodes `rendition` of `stream` now (replacing any other).
    pub fn set_backend(&self, stream: &str, rendition: &str, backend: &str) {
        self.clear_backend(stream, rendition);
        self.encoder_backend
            .with_label_values(&[stream, rendition, backend])
            .set(1);
    }

    /// Forgets the backend series of a rendition (its stream ended), so series do not pile up
    /// with every room ever published.
    pub fn clear_backend(&self, stream: &str, rendition: &str) {
        for backend in BACKENDS {
            let _ = self
                .encoder_backend
                .remove_label_values(&[stream, rendition, backend]);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backend_series_are_replaced_and_cleared() {
        let m = Metrics::new();
        m.set_backend("demo", "720p", "nvenc-ffmpeg");
        m.set_backend("demo", "720p", "x264");
        let text = m.render();
        assert!(
            text.contains(
                r#"daihuo_encoder_backend{backend="x264",rendition="720p",stream="demo"} 1"#
            ),
            "{text}"
        );
        assert!(!text.contains("nvenc-ffmpeg\","), "{text}");
        m.clear_backend("demo", "720p");
        assert!(!m.render().contains("stream=\"demo\""));
    }
}
