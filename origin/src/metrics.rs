//! Prometheus metrics of the origin side (`daihuo_` prefix). The edge registers its own
//! families in the same [`Registry`], so one `/metrics` answers for a single box.

use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry,
};

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
    /// `daihuo_stream_ingest_bytes_total{stream}`: the same per stream (its bitrate).
    pub stream_ingest_bytes: IntCounterVec,
    /// `daihuo_srt_packets_{lost,retransmitted,dropped}_total{stream}` and
    /// `daihuo_srt_rtt_seconds{stream}`, from each publisher's SRT statistics.
    pub srt_lost: IntCounterVec,
    pub srt_retransmitted: IntCounterVec,
    pub srt_dropped: IntCounterVec,
    pub srt_rtt: GaugeVec,
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
    /// `daihuo_encoder_frames_total{stream, rendition}`: video frames packaged per rendition
    /// (its rate is the encoder's fps).
    pub encoder_frames: IntCounterVec,
    /// `daihuo_part_publish_seconds`: from the arrival of a part's newest frame at ingest to
    /// the part being in the playlist (transcoding included).
    pub part_publish: Histogram,
    /// `daihuo_connections{transport="tcp|quic"}`: client connections open now.
    pub connections: IntGaugeVec,
    /// `daihuo_listener_limited_total{action}`: what the listener limits did to clients
    /// (`quic_retry`, `per_ip`, `send_timeout`, `idle_timeout`).
    pub limited: IntCounterVec,
    /// `daihuo_reloads_total{result="ok|error"}`.
    pub reloads: IntCounterVec,
    /// `daihuo_config_info{fingerprint}` = 1 for the configuration running now.
    pub config_info: IntGaugeVec,
    /// `daihuo_events_total{type, result}`: viewer events by type and what became of them
    /// (edge: `accepted`, `refused`, `limited`; origin: `received`, `duplicate`).
    pub events: IntCounterVec,
    /// `daihuo_scale_hint`: 1 scale out, -1 scale in, 0 hold (see [`crate::scale`]).
    pub scale_hint: IntGauge,
    /// `daihuo_cpu_utilization_ratio`: this process's CPU use over the last interval, as a
    /// share of all cores.
    pub cpu: Gauge,
}

fn counter(name: &str, help: &str) -> IntCounter {
    IntCounter::new(name, help).expect("static metric definition")
}

fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition")
}

fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).expect("static metric definition")
}

impl Metrics {
    /// Creates the families in a fresh registry.
    pub fn new() -> Self {
        let stream = &["stream"];
        let m = Self {
            registry: Registry::new(),
            streams_live: IntGauge::new("daihuo_streams_live", "Streams being published now.")
                .expect("static metric definition"),
            ingest_bytes: counter(
                "daihuo_ingest_bytes_total",
                "MPEG-TS bytes received from publishers.",
            ),
            stream_ingest_bytes: counter_vec(
                "daihuo_stream_ingest_bytes_total",
                "MPEG-TS bytes received per stream (rate x 8 = ingest bitrate).",
                stream,
            ),
            srt_lost: counter_vec(
                "daihuo_srt_packets_lost_total",
                "SRT packets the publisher's link lost (detected gaps).",
                stream,
            ),
            srt_retransmitted: counter_vec(
                "daihuo_srt_packets_retransmitted_total",
                "SRT packets received as retransmissions.",
                stream,
            ),
            srt_dropped: counter_vec(
                "daihuo_srt_packets_dropped_total",
                "SRT packets given up (arrived too late for the latency window).",
                stream,
            ),
            srt_rtt: GaugeVec::new(
                Opts::new("daihuo_srt_rtt_seconds", "Smoothed SRT round-trip time."),
                stream,
            )
            .expect("static metric definition"),
            publish_refused: counter(
                "daihuo_publish_refused_total",
                "Publish attempts refused (stream id, authorization, room already live, limits).",
            ),
            publishes: counter(
                "daihuo_publishes_total",
                "Publishes accepted (SRT sessions that completed the handshake).",
            ),
            ladder_fallbacks: counter(
                "daihuo_ladder_fallbacks_total",
                "Hardware encoders replaced by software mid-stream.",
            ),
            ladder_dropped: counter(
                "daihuo_ladder_dropped_frames_total",
                "Source frames dropped because encoding was behind real time.",
            ),
            encoder_backend: gauge_vec(
                "daihuo_encoder_backend",
                "1 for the backend encoding each rendition (nvenc, nvenc-ffmpeg, x264, copy).",
                &["stream", "rendition", "backend"],
            ),
            encoder_frames: counter_vec(
                "daihuo_encoder_frames_total",
                "Video frames packaged per rendition (rate = frames per second).",
                &["stream", "rendition"],
            ),
            part_publish: Histogram::with_opts(
                HistogramOpts::new(
                    "daihuo_part_publish_seconds",
                    "From a part's newest frame arriving at ingest to the part in the playlist.",
                )
                .buckets(vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0,
                ]),
            )
            .expect("static metric definition"),
            connections: gauge_vec(
                "daihuo_connections",
                "Client connections open now, by transport (tcp: HTTP/1.1 and HTTP/2, quic: HTTP/3).",
                &["transport"],
            ),
            limited: counter_vec(
                "daihuo_listener_limited_total",
                "Listener limits applied: quic_retry (a QUIC client sent a Retry under load), \
                 per_ip (a connection over the per-address cap closed), send_timeout (a client \
                 that stopped reading cut off), idle_timeout (an HTTP/2 connection with no \
                 traffic closed).",
                &["action"],
            ),
            reloads: counter_vec(
                "daihuo_reloads_total",
                "Configuration reloads (SIGHUP) by result; an error changed nothing.",
                &["result"],
            ),
            config_info: gauge_vec(
                "daihuo_config_info",
                "1 for the fingerprint of the configuration running now.",
                &["fingerprint"],
            ),
            events: counter_vec(
                "daihuo_events_total",
                "Viewer events by type and outcome (edge: accepted, refused, limited; origin: \
                 received, duplicate).",
                &["type", "result"],
            ),
            scale_hint: IntGauge::new(
                "daihuo_scale_hint",
                "1: add capacity, -1: capacity can go, 0: hold ([scale] thresholds).",
            )
            .expect("static metric definition"),
            cpu: Gauge::new(
                "daihuo_cpu_utilization_ratio",
                "This process's CPU use over the last few seconds, as a share of all cores.",
            )
            .expect("static metric definition"),
        };
        for result in ["ok", "error"] {
            m.reloads.with_label_values(&[result]);
        }
        for transport in ["tcp", "quic"] {
            m.connections.with_label_values(&[transport]);
        }
        for action in ["quic_retry", "per_ip", "send_timeout", "idle_timeout"] {
            m.limited.with_label_values(&[action]);
        }
        let build = gauge_vec(
            "daihuo_build_info",
            "Build information; the value is always 1.",
            &["version"],
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        let families: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.streams_live.clone()),
            Box::new(m.ingest_bytes.clone()),
            Box::new(m.stream_ingest_bytes.clone()),
            Box::new(m.srt_lost.clone()),
            Box::new(m.srt_retransmitted.clone()),
            Box::new(m.srt_dropped.clone()),
            Box::new(m.srt_rtt.clone()),
            Box::new(m.publish_refused.clone()),
            Box::new(m.publishes.clone()),
            Box::new(m.ladder_fallbacks.clone()),
            Box::new(m.ladder_dropped.clone()),
            Box::new(m.encoder_backend.clone()),
            Box::new(m.encoder_frames.clone()),
            Box::new(m.part_publish.clone()),
            Box::new(m.connections.clone()),
            Box::new(m.limited.clone()),
            Box::new(m.reloads.clone()),
            Box::new(m.config_info.clone()),
            Box::new(m.events.clone()),
            Box::new(m.scale_hint.clone()),
            Box::new(m.cpu.clone()),
            Box::new(build),
        ];
        for family in families {
            m.registry
                .register(family)
                .expect("families are registered once in a fresh registry");
        }
        m
    }

    /// Forgets every per-stream series of `stream` (it ended), so series do not pile up with
    /// every room ever published.
    pub fn forget_stream(&self, stream: &str) {
        for family in [
            &self.stream_ingest_bytes,
            &self.srt_lost,
            &self.srt_retransmitted,
            &self.srt_dropped,
        ] {
            let _ = family.remove_label_values(&[stream]);
        }
        let _ = self.srt_rtt.remove_label_values(&[stream]);
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
        for other in BACKENDS {
            let _ = self
                .encoder_backend
                .remove_label_values(&[stream, rendition, other]);
        }
        self.encoder_backend
            .with_label_values(&[stream, rendition, backend])
            .set(1);
    }

    /// Forgets the backend and frame series of a rendition (its stream ended), so series do
    /// not pile up with every room ever published.
    pub fn clear_backend(&self, stream: &str, rendition: &str) {
        for backend in BACKENDS {
            let _ = self
                .encoder_backend
                .remove_label_values(&[stream, rendition, backend]);
        }
        let _ = self
            .encoder_frames
            .remove_label_values(&[stream, rendition]);
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
