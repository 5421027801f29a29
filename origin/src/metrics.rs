//! Prometheus metrics of the media side (`daihuo_` prefix): ingest, SRT, the ladder,
//! packaging and viewer events. They live in the process's registry
//! ([`daemon::metrics::Metrics`], which holds connections, limits, reloads, the scale hint),
//! and the edge registers its own families there too, so one `/metrics` answers for a box.

use daemon::metrics::{counter, counter_vec, gauge_vec};
use prometheus::{
    GaugeVec, Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
};

/// Every value of the `backend` label of `daihuo_encoder_backend`.
const BACKENDS: [&str; 4] = ["nvenc", "nvenc-ffmpeg", "x264", "copy"];

/// Handles to the media families, and to the process's registry they are in. Cloning is
/// cheap (the families are shared).
#[derive(Clone)]
pub struct Metrics {
    /// The process's registry and its own families (connections, limits, reloads).
    pub process: daemon::Metrics,
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
    /// `daihuo_srt_loss_ratio{stream}`: the share of the publisher's packets its uplink lost
    /// over the last few seconds (before retransmission recovered them).
    pub srt_loss_ratio: GaugeVec,
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
    /// `daihuo_events_total{type, result}`: viewer events by type and what became of them
    /// (edge: `accepted`, `refused`, `limited`; origin: `received`, `duplicate`).
    pub events: IntCounterVec,
}

impl Metrics {
    /// Creates the media families in a fresh process registry.
    pub fn new() -> Self {
        Self::in_registry(&daemon::Metrics::new())
    }

    /// Creates the media families in `process`'s registry.
    pub fn in_registry(process: &daemon::Metrics) -> Self {
        let stream = &["stream"];
        let m = Self {
            process: process.clone(),
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
                "SRT packets never delivered: still missing when the latency window passed \
                 them, or given up with those (a copy arriving after that is not counted).",
                stream,
            ),
            srt_rtt: GaugeVec::new(
                Opts::new("daihuo_srt_rtt_seconds", "Smoothed SRT round-trip time."),
                stream,
            )
            .expect("static metric definition"),
            srt_loss_ratio: GaugeVec::new(
                Opts::new(
                    "daihuo_srt_loss_ratio",
                    "Share of the publisher's SRT packets its uplink lost over the last 5 s \
                     (before retransmission; the uplink's health with daihuo_srt_rtt_seconds).",
                ),
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
            events: counter_vec(
                "daihuo_events_total",
                "Viewer events by type and outcome (edge: accepted, refused, limited; origin: \
                 received, duplicate).",
                &["type", "result"],
            ),
        };
        let families: Vec<Box<dyn prometheus::core::Collector>> = vec![
            Box::new(m.streams_live.clone()),
            Box::new(m.ingest_bytes.clone()),
            Box::new(m.stream_ingest_bytes.clone()),
            Box::new(m.srt_lost.clone()),
            Box::new(m.srt_retransmitted.clone()),
            Box::new(m.srt_dropped.clone()),
            Box::new(m.srt_rtt.clone()),
            Box::new(m.srt_loss_ratio.clone()),
            Box::new(m.publish_refused.clone()),
            Box::new(m.publishes.clone()),
            Box::new(m.ladder_fallbacks.clone()),
            Box::new(m.ladder_dropped.clone()),
            Box::new(m.encoder_backend.clone()),
            Box::new(m.encoder_frames.clone()),
            Box::new(m.part_publish.clone()),
            Box::new(m.events.clone()),
        ];
        m.process.register(families);
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
        let _ = self.srt_loss_ratio.remove_label_values(&[stream]);
    }

    /// Registers families made elsewhere (the edge's) in the process's registry.
    pub fn register(&self, families: Vec<Box<dyn prometheus::core::Collector>>) {
        self.process.register(families);
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

    /// The process's registry in Prometheus text format.
    pub fn render(&self) -> String {
        self.process.render()
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
