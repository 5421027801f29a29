//! Which changed keys need a restart, computed from the running and the new configuration:
//! one list per daemon, here beside the model, so a new key is classified where it is added.
//! Everything not listed applies on reload.

use crate::model::{EdgeConfig, OriginConfig};
use crate::upstream::UpstreamConfig;

/// The keys of `next` that differ from `current` and take effect only at the next restart.
pub trait RestartKeys {
    fn needs_restart(&self, next: &Self) -> Vec<&'static str>;
}

fn changed(keys: &[(&'static str, bool)]) -> Vec<&'static str> {
    keys.iter()
        .filter(|(_, changed)| *changed)
        .map(|(key, _)| *key)
        .collect()
}

/// The SRT listener's socket settings (both daemons have one).
fn srt(c: &crate::SrtConfig, n: &crate::SrtConfig) -> [(&'static str, bool); 3] {
    [
        ("srt.listen", c.listen != n.listen),
        ("srt.latency_ms", c.latency_ms != n.latency_ms),
        (
            "srt.udp_recv_buffer_bytes",
            c.udp_recv_buffer_bytes != n.udp_recv_buffer_bytes,
        ),
    ]
}

impl RestartKeys for EdgeConfig {
    fn needs_restart(&self, next: &Self) -> Vec<&'static str> {
        let (c, n) = (self, next);
        let tiered = |c: &EdgeConfig| !c.upstream.origins.is_empty();
        // The origin list applies live; the rest of [upstream] does not.
        let upstream_rest = |u: &UpstreamConfig| UpstreamConfig {
            origins: Vec::new(),
            ..u.clone()
        };
        let mut keys = srt(&c.srt, &n.srt).to_vec();
        keys.extend([
            ("https.listen", c.https.listen != n.https.listen),
            ("https.enabled", c.https.enabled != n.https.enabled),
            (
                "https.cert",
                c.https.cert.is_some() && n.https.cert.is_none(),
            ),
            ("http3", c.http3 != n.http3),
            (
                "limits (HTTP/3 streams and idle timeout)",
                c.limits.max_streams_per_connection != n.limits.max_streams_per_connection
                    || c.limits.idle_timeout_ms != n.limits.idle_timeout_ms,
            ),
            ("http", c.http != n.http),
            ("admin.listen", c.admin.listen != n.admin.listen),
            ("hls", c.hls != n.hls),
            ("log.format", c.log.format != n.log.format),
            ("events.state_dir", c.events.state_dir != n.events.state_dir),
            (
                "events.like_window_ms",
                c.events.like_window_ms != n.events.like_window_ms,
            ),
            ("upstream.origins", tiered(c) != tiered(n)),
            (
                "upstream",
                upstream_rest(&c.upstream) != upstream_rest(&n.upstream),
            ),
        ]);
        changed(&keys)
    }
}

impl RestartKeys for OriginConfig {
    fn needs_restart(&self, next: &Self) -> Vec<&'static str> {
        let (c, n) = (self, next);
        let mut keys = srt(&c.srt, &n.srt).to_vec();
        keys.extend([
            ("http.listen", c.http.listen != n.http.listen),
            ("http.http3", c.http.http3 != n.http.http3),
            ("admin.listen", c.admin.listen != n.admin.listen),
            ("hls", c.hls != n.hls),
            ("log.format", c.log.format != n.log.format),
            ("http.cert", c.http.cert.is_some() && n.http.cert.is_none()),
            ("http.client_ca", c.http.client_ca != n.http.client_ca),
            ("events.state_dir", c.events.state_dir != n.events.state_dir),
            (
                "events.sink and kafka_*",
                sink(&c.events) != sink(&n.events),
            ),
        ]);
        changed(&keys)
    }
}

/// The sink an origin started with (its Kafka producer is made once, at start).
fn sink(events: &crate::EventsConfig) -> crate::EventsConfig {
    crate::EventsConfig {
        sink: events.sink,
        kafka_brokers: events.kafka_brokers.clone(),
        kafka_topic: events.kafka_topic.clone(),
        kafka_security: events.kafka_security,
        kafka_ca: events.kafka_ca.clone(),
        kafka_cert: events.kafka_cert.clone(),
        kafka_key: events.kafka_key.clone(),
        kafka_sasl_mechanism: events.kafka_sasl_mechanism.clone(),
        kafka_sasl_username: events.kafka_sasl_username.clone(),
        kafka_sasl_password: events.kafka_sasl_password.clone(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_addresses_need_a_restart_and_limits_do_not() {
        let current = EdgeConfig::default();
        let mut next = current.clone();
        assert!(current.needs_restart(&next).is_empty());
        next.admin.listen = "127.0.0.1:9200".parse().unwrap();
        next.limits.header_timeout_ms = 5000;
        next.srt.max_streams = 8;
        assert_eq!(current.needs_restart(&next), ["admin.listen"]);
        next.upstream.origins.push(crate::OriginPeer {
            name: "a".into(),
            srt: "10.0.0.1:9000".parse().unwrap(),
            api: "10.0.0.1:8081".parse().unwrap(),
            server_name: None,
        });
        assert_eq!(
            current.needs_restart(&next),
            ["admin.listen", "upstream.origins"]
        );
        let origin = OriginConfig::default();
        let mut next = origin.clone();
        next.hls.segment_target_ms = 4000;
        assert_eq!(origin.needs_restart(&next), ["hls"]);
    }
}
