//! The edge's `[upstream]` section: the origins it relays ingest to and pulls playback from.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::error::Errors;

/// Origins of a scaled-out deployment. With none (the default) the edge runs the origin
/// in-process: a single box.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct UpstreamConfig {
    /// The origins. Each stream is placed on a primary and a backup among them by rendezvous
    /// hashing of its room name over the origins' `name`s, so every edge agrees without
    /// talking to the others, and adding or removing an origin moves only its share.
    pub origins: Vec<OriginPeer>,
    /// `hot` (default): relay each stream to its primary and its backup at once, so a backup
    /// is already packaging when the primary dies. `cold`: to the primary only; when that
    /// link fails the relay moves to the next origin, which starts packaging from then on.
    pub standby: Standby,
    /// How playback is pulled from origins: `h2` (HTTPS, HTTP/2; default) or `h3` (HTTP/3).
    pub protocol: UpstreamProtocol,
    /// PEM file of the certificates (a CA, or the origins' self-signed certificates) that the
    /// origins' API certificates must chain to. Required when `origins` is not empty.
    pub ca: Option<PathBuf>,
    /// PEM certificate chain this edge presents to origins that require one (their
    /// `http.client_ca`), with its private key `key`. Unset: no client certificate.
    pub cert: Option<PathBuf>,
    /// PEM private key matching `cert`.
    pub key: Option<PathBuf>,
    /// Passphrase of the origins' SRT listeners (their `srt.passphrase`), if they set one.
    pub srt_passphrase: Option<String>,
    /// Transport-stream bytes buffered per origin link while it is down or reconnecting; the
    /// oldest are dropped beyond this. Default 8 MiB (about 8 s at 8 Mbit/s).
    pub relay_buffer_bytes: usize,
    /// How often each origin's API is probed (`GET /healthz`), in ms. Default 1000.
    pub probe_interval_ms: u64,
    /// Connect timeout for origin links and probes, in ms. Default 1000.
    pub connect_timeout_ms: u64,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        Self {
            origins: Vec::new(),
            standby: Standby::Hot,
            protocol: UpstreamProtocol::H2,
            ca: None,
            cert: None,
            key: None,
            srt_passphrase: None,
            relay_buffer_bytes: 8 * 1024 * 1024,
            probe_interval_ms: 1000,
            connect_timeout_ms: 1000,
        }
    }
}

/// One origin as an edge sees it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OriginPeer {
    /// Stable name (1-64 of A-Z a-z 0-9 _ - .): the rendezvous hash input and the `origin`
    /// label of metrics, so an origin keeps its streams when its addresses change.
    pub name: String,
    /// The origin's SRT ingest address (its `srt.listen`).
    pub srt: SocketAddr,
    /// The origin's API address (its `http.listen`: HTTPS on TCP, HTTP/3 on UDP).
    pub api: SocketAddr,
    /// Name the origin's certificate is checked against. Default: `name`.
    #[serde(default)]
    pub server_name: Option<String>,
}

impl OriginPeer {
    /// The TLS name to verify.
    pub fn server_name(&self) -> &str {
        self.server_name.as_deref().unwrap_or(&self.name)
    }
}

/// How many origins receive each stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Standby {
    #[default]
    Hot,
    Cold,
}

/// The protocol of upstream playback requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum UpstreamProtocol {
    #[default]
    H2,
    H3,
}

impl UpstreamConfig {
    /// Probe interval as a duration.
    pub fn probe_interval(&self) -> Duration {
        Duration::from_millis(self.probe_interval_ms)
    }

    /// Connect timeout as a duration.
    pub fn connect_timeout(&self) -> Duration {
        Duration::from_millis(self.connect_timeout_ms)
    }

    pub(crate) fn validate(&self, e: &mut Errors) {
        for (i, o) in self.origins.iter().enumerate() {
            let key = |field: &str| format!("upstream.origins[{i}].{field}");
            let name_ok = (1..=64).contains(&o.name.len())
                && o.name
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
            e.check(
                name_ok,
                &key("name"),
                format!("{:?} must be 1 to 64 of A-Z a-z 0-9 _ - .", o.name),
            );
            if self.origins[..i].iter().any(|p| p.name == o.name) {
                e.push(
                    &key("name"),
                    format!("{:?} is used by an earlier origin", o.name),
                );
            }
            for (field, addr) in [("srt", o.srt), ("api", o.api)] {
                e.check(
                    addr.port() != 0 && !addr.ip().is_unspecified(),
                    &key(field),
                    format!("{addr} is not an address to connect to"),
                );
            }
        }
        if !self.origins.is_empty() {
            match &self.ca {
                None => e.push(
                    "upstream.ca",
                    "required with upstream.origins (the origins' API certificates are checked)",
                ),
                Some(ca) => e.check(
                    ca.is_file(),
                    "upstream.ca",
                    format!("{} is not a readable file", ca.display()),
                ),
            }
        }
        crate::model::check_cert_pair("upstream", &self.cert, &self.key, e);
        if let Some(p) = &self.srt_passphrase {
            e.check(
                (10..=79).contains(&p.chars().count()),
                "upstream.srt_passphrase",
                "must be 10 to 79 characters (SRT's limits)",
            );
        }
        e.check(
            self.relay_buffer_bytes >= 64 * 1024,
            "upstream.relay_buffer_bytes",
            "must be at least 64 KiB (65536)",
        );
        e.check(
            (100..=60_000).contains(&self.probe_interval_ms),
            "upstream.probe_interval_ms",
            format!("{} is outside 100..=60000", self.probe_interval_ms),
        );
        e.check(
            (50..=30_000).contains(&self.connect_timeout_ms),
            "upstream.connect_timeout_ms",
            format!("{} is outside 50..=30000", self.connect_timeout_ms),
        );
    }
}
