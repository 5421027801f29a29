//! The process's Prometheus registry (`daihuo_` prefix) and the families every daihuo
//! process has: connections, listener limits, reloads, configuration, build, the scale hint
//! and CPU. The media side (`origin::Metrics`) and the edge register their own families in
//! the same registry, so one `/metrics` answers for the box.

use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry};

/// Every value of the `action` label of `daihuo_listener_limited_total`.
pub const LIMIT_ACTIONS: [&str; 5] = [
    "quic_retry",
    "per_ip",
    "send_timeout",
    "idle_timeout",
    "proxy_protocol",
];

/// Handles to the process's registry and its own families. Cloning is cheap (shared).
#[derive(Clone)]
pub struct Metrics {
    pub registry: Registry,
    /// `daihuo_connections{transport="tcp|quic"}`: client connections open now.
    pub connections: IntGaugeVec,
    /// `daihuo_listener_limited_total{action}`: what the listener limits did to clients.
    pub limited: IntCounterVec,
    /// `daihuo_reloads_total{result="ok|error"}`.
    pub reloads: IntCounterVec,
    /// `daihuo_config_info{fingerprint}` = 1 for the configuration running now.
    pub config_info: IntGaugeVec,
    /// `daihuo_scale_hint`: 1 scale out, -1 scale in, 0 hold (see [`crate::scale`]).
    pub scale_hint: IntGauge,
    /// `daihuo_cpu_utilization_ratio`: this process's CPU use over the last interval, as a
    /// share of all cores.
    pub cpu: Gauge,
    /// HTTP/3's UDP datagrams and the system calls that carried them.
    pub udp: UdpIo,
}

/// `daihuo_quic_datagrams_sent_total` and `daihuo_quic_send_calls_total`: the UDP
/// datagrams QUIC connections sent and the system calls that sent them. Datagrams per call
/// above 1 is segmentation offload (GSO) at work (quinn batches up to 10 a call); at 1,
/// every datagram costs a system call of its own. (Receiving is batched per socket, with
/// `recvmmsg` and GRO, not per connection, so a connection's counts say nothing of it;
/// the listener logs what the kernel offers at start.)
#[derive(Clone)]
pub struct UdpIo {
    datagrams: IntCounter,
    calls: IntCounter,
}

/// A connection's counts when last added ([`UdpIo::add`]).
#[derive(Debug, Default, Clone, Copy)]
pub struct UdpSeen(quinn::UdpStats);

impl UdpIo {
    fn new() -> Self {
        Self {
            datagrams: counter(
                "daihuo_quic_datagrams_sent_total",
                "UDP datagrams sent by QUIC (HTTP/3) connections.",
            ),
            calls: counter(
                "daihuo_quic_send_calls_total",
                "System calls that sent them; datagrams per call above 1 is GSO \
                 segmentation offload at work.",
            ),
        }
    }

    /// Adds what a connection sent since `seen` (its counts when last added), and
    /// remembers its counts now.
    pub fn add(&self, stats: &quinn::ConnectionStats, seen: &mut UdpSeen) {
        let (now, before) = (stats.udp_tx, seen.0);
        self.datagrams
            .inc_by(now.datagrams.saturating_sub(before.datagrams));
        self.calls.inc_by(now.ios.saturating_sub(before.ios));
        seen.0 = now;
    }
}

/// `process_cpu_seconds_total`, the name Prometheus's client libraries give it, read from
/// `/proc/self/stat` at each scrape: the CPU a load test divides by its viewers
/// (`daihuo-rehearsal --metrics`), and what `rate()` turns into cores. (The prometheus
/// crate's own process collector needs its `process` feature and the procfs crate for this
/// one number.)
struct ProcessCpu {
    counter: prometheus::Counter,
    /// The value last reported, so the counter only moves forward by what was used since.
    reported: std::sync::Mutex<f64>,
}

impl ProcessCpu {
    fn new() -> Self {
        Self {
            counter: prometheus::Counter::new(
                "process_cpu_seconds_total",
                "User and system CPU time this process has used, seconds.",
            )
            .expect("static metric definition"),
            reported: std::sync::Mutex::new(0.0),
        }
    }
}

impl prometheus::core::Collector for ProcessCpu {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.counter.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        if let Some(now) = crate::scale::cpu_seconds() {
            let mut reported = self.reported.lock().unwrap_or_else(|e| e.into_inner());
            if now > *reported {
                self.counter.inc_by(now - *reported);
                *reported = now;
            }
        }
        self.counter.collect()
    }
}

/// A counter of a static definition.
pub fn counter(name: &str, help: &str) -> IntCounter {
    IntCounter::new(name, help).expect("static metric definition")
}

/// A labelled counter of a static definition.
pub fn counter_vec(name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    IntCounterVec::new(Opts::new(name, help), labels).expect("static metric definition")
}

/// A labelled integer gauge of a static definition.
pub fn gauge_vec(name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    IntGaugeVec::new(Opts::new(name, help), labels).expect("static metric definition")
}

impl Metrics {
    /// A fresh registry with the process's families.
    pub fn new() -> Self {
        let m = Self {
            registry: Registry::new(),
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
                 traffic closed), proxy_protocol (a balancer's connection without a valid \
                 PROXY header closed).",
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
            udp: UdpIo::new(),
        };
        for result in ["ok", "error"] {
            m.reloads.with_label_values(&[result]);
        }
        for transport in ["tcp", "quic"] {
            m.connections.with_label_values(&[transport]);
        }
        for action in LIMIT_ACTIONS {
            m.limited.with_label_values(&[action]);
        }
        let build = gauge_vec(
            "daihuo_build_info",
            "Build information; the value is always 1.",
            &["version"],
        );
        build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
        m.register(vec![
            Box::new(m.connections.clone()),
            Box::new(m.limited.clone()),
            Box::new(m.reloads.clone()),
            Box::new(m.config_info.clone()),
            Box::new(m.scale_hint.clone()),
            Box::new(m.cpu.clone()),
            Box::new(m.udp.datagrams.clone()),
            Box::new(m.udp.calls.clone()),
            Box::new(build),
            Box::new(ProcessCpu::new()),
        ]);
        m
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

    /// Registers families made elsewhere (the media side's, the edge's) in this registry, so
    /// one `/metrics` answers for the process. A name registered twice is logged, not fatal.
    pub fn register(&self, families: Vec<Box<dyn prometheus::core::Collector>>) {
        for family in families {
            if let Err(e) = self.registry.register(family) {
                tracing::warn!("metrics: {e}");
            }
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

    /// The process's CPU time is exported at each scrape and never goes back.
    #[test]
    fn process_cpu_seconds_are_read_at_each_scrape() {
        let m = Metrics::new();
        let value = |text: &str| -> f64 {
            text.lines()
                .find_map(|l| l.strip_prefix("process_cpu_seconds_total "))
                .expect("process_cpu_seconds_total")
                .parse()
                .expect("a number")
        };
        let before = value(&m.render());
        // Some CPU: 0.1 s or more of spinning (USER_HZ ticks are 10 ms).
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while start.elapsed() < std::time::Duration::from_millis(150) {
            x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
        }
        let after = value(&m.render());
        assert!(after > before, "{before} then {after}");
    }
}
