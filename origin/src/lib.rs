//! The daihuo origin: SRT ingest, the per-stream pipeline, the part/segment store with
//! blocking-reload waiters, the origin HTTP API, and viewer events' journal and sinks.
//!
//! Where to start: [`Node::start`] wires a standalone `daihuo-origin`; the edge's single-box
//! mode uses [`Store`], [`Ingest`] and [`api`] directly, in-process. [`pipeline`] turns one
//! publish's transport stream into parts; [`store`] holds them and answers edges; [`auth`]
//! decides who may publish (and checks playback tokens); [`events`] deduplicates relayed
//! viewer events into the journal and the Kafka sink.
//! Shared daemon plumbing used by both binaries lives here too: [`serve`] (hyper over TCP,
//! plain or TLS, with [`serve::Limits`]) and [`h3`] (QUIC) listeners for any
//! [`serve::Handler`], [`tls`] (certificates, reloadable), [`admin`] (metrics, health,
//! readiness with the [`scale`] hint), [`cli`] (arguments, logging, the signal loop and
//! [`live`] reload), [`notify`] (systemd).
//!
//! This crate does not cache for viewers or relay ingest: that is the edge.

pub mod admin;
pub mod api;
pub mod auth;
pub mod cli;
pub mod clients;
pub mod clock;
mod error;
pub mod events;
pub mod h3;
pub mod hook;
pub mod ingest;
pub mod live;
pub mod metrics;
pub mod notify;
pub mod pipeline;
pub mod replay;
pub mod route;
pub mod scale;
pub mod serve;
pub mod store;
pub mod streamid;
pub mod tls;
pub mod transcode;

pub use error::ApiError;
pub use ingest::Ingest;
pub use metrics::Metrics;
pub use store::{Store, StoreOptions};
pub use tls::{Identity, TlsError};

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use cli::LogControl;
use conf::{HlsConfig, OriginConfig};
use live::Live;
use tls::Certificates;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

/// How long an ended stream keeps answering (with `EXT-X-ENDLIST`) before it is forgotten.
pub const LINGER: Duration = Duration::from_secs(60);

/// Store options from the `[hls]` section.
pub fn store_options(hls: &HlsConfig) -> StoreOptions {
    StoreOptions {
        segment_target: hls.segment_target(),
        part_target: hls.part_target(),
        window: hls.window_segments,
        linger: LINGER,
    }
}

/// Why a daemon could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot bind {what} on {addr}: {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error(transparent)]
    Probe(#[from] hwaccel::ProbeError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("events: {0}")]
    Events(String),
}

/// A running standalone origin (`daihuo-origin`).
pub struct Node {
    pub srt_addr: SocketAddr,
    /// The API: HTTPS on this TCP address, HTTP/3 on the same UDP address when enabled.
    pub http_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub store: Arc<Store>,
    pub metrics: Metrics,
    /// The API's certificate (what edges must trust), replaceable on reload.
    pub certificates: Arc<Certificates>,
    live: Live,
    scale: Arc<scale::Scale>,
    ready: Arc<AtomicBool>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    admin_stop: watch::Sender<bool>,
    admin_task: tokio::task::JoinHandle<()>,
}

impl Node {
    /// Probes the encoders, binds every listener, then starts serving. Returns once all are
    /// bound (ready).
    pub async fn start(config: &OriginConfig) -> Result<Self, StartError> {
        let settings = Arc::new(ArcSwap::from_pointee(transcode::probe(&config.transcode)?));
        let certificates = Certificates::new(cert_files(&config.http.cert, &config.http.key))?;
        let metrics = Metrics::new();
        let store = Store::new(store_options(&config.hls));
        let bind = |what, addr, source| StartError::Bind { what, addr, source };
        let ingest = Ingest::bind(&config.srt)
            .await
            .map_err(|e| bind("srt", config.srt.listen, e))?;
        let http = TcpListener::bind(config.http.listen)
            .await
            .map_err(|e| bind("http", config.http.listen, e))?;
        let admin = TcpListener::bind(config.admin.listen)
            .await
            .map_err(|e| bind("admin", config.admin.listen, e))?;
        let (shutdown, rx) = watch::channel(false);
        let ready = Arc::new(AtomicBool::new(false));
        let local = |l: &TcpListener, what, addr| l.local_addr().map_err(|e| bind(what, addr, e));
        let node_addrs = (
            ingest.local_addr(),
            local(&http, "http", config.http.listen)?,
            local(&admin, "admin", config.admin.listen)?,
        );
        // HTTP/3 on the UDP port of the same number (port 0 resolved by the TCP bind).
        let quic = if config.http.http3 {
            let addr = node_addrs.1;
            let server = certificates.quic_config()?;
            Some(h3::bind(addr, server).map_err(|e| bind("http3", addr, e))?)
        } else {
            None
        };
        let mut tasks = JoinSet::new();
        let live = Live {
            srt: ingest.config(),
            transcode: Some(settings.clone()),
            certificates: certificates.clone(),
        };
        let local = Arc::new(ingest::Local {
            store: store.clone(),
            metrics: metrics.clone(),
            settings,
        });
        tasks.spawn(ingest.run(local, metrics.clone(), rx.clone()));
        let events = events::Intake::open(&config.events.state_dir, &metrics)
            .map_err(|e| StartError::Events(e.to_string()))?;
        events::start_sink(&config.events, &events, &mut tasks, &rx).map_err(StartError::Events)?;
        let api = Arc::new(api::Api {
            store: store.clone(),
            events: events.clone(),
            connections: metrics.connections.clone(),
            limited: metrics.limited.clone(),
        });
        let acceptor = tokio_rustls::TlsAcceptor::from(certificates.tcp_config()?);
        tasks.spawn(serve::serve_tls(http, acceptor, api.clone(), rx.clone()));
        if let Some(endpoint) = quic {
            tasks.spawn(h3::serve(endpoint, api, rx.clone()));
        }
        let scale = scale::Scale::new(&config.scale, metrics.clone());
        tasks.spawn(scale.clone().run(rx.clone()));
        let admin_handler = Arc::new(admin::Admin {
            metrics: metrics.clone(),
            ready: ready.clone(),
            check: None,
            scale: Some(scale.clone()),
            events: Some(events),
        });
        // The admin listener keeps answering during the drain (readiness reads false).
        let (admin_stop, admin_rx) = watch::channel(false);
        let admin_task = tokio::spawn(serve::serve_plain(admin, admin_handler, admin_rx));
        ready.store(true, Ordering::Release);
        Ok(Self {
            srt_addr: node_addrs.0,
            http_addr: node_addrs.1,
            admin_addr: node_addrs.2,
            store,
            metrics,
            certificates,
            live,
            scale,
            ready,
            shutdown,
            tasks,
            admin_stop,
            admin_task,
        })
    }

    /// Drains: readiness false, listeners stop, in-flight work finishes within `grace`.
    pub async fn shutdown(mut self, grace: Duration) {
        self.ready.store(false, Ordering::Release);
        let _ = self.shutdown.send(true);
        cli::drain(&mut self.tasks, grace).await;
        let _ = self.admin_stop.send(true);
        let _ = self.admin_task.await;
    }

    /// Applies what can change live from `next`; returns the changed keys that need a restart.
    pub async fn reload(
        &self,
        current: &OriginConfig,
        next: &OriginConfig,
        log: &LogControl,
    ) -> Result<Vec<&'static str>, String> {
        self.live
            .apply(&live_settings(current), &live_settings(next), log)
            .await?;
        self.scale.marks.store(Arc::new(next.scale.clone()));
        let mut restart = Vec::new();
        let fixed = [
            ("srt.listen", current.srt.listen != next.srt.listen),
            (
                "srt.latency_ms",
                current.srt.latency_ms != next.srt.latency_ms,
            ),
            (
                "srt.udp_recv_buffer_bytes",
                current.srt.udp_recv_buffer_bytes != next.srt.udp_recv_buffer_bytes,
            ),
            ("http.listen", current.http.listen != next.http.listen),
            ("http.http3", current.http.http3 != next.http.http3),
            ("admin.listen", current.admin.listen != next.admin.listen),
            ("hls", current.hls != next.hls),
            ("log.format", current.log.format != next.log.format),
            (
                "http.cert",
                current.http.cert.is_some() && next.http.cert.is_none(),
            ),
        ];
        restart.extend(
            fixed
                .into_iter()
                .filter(|(_, changed)| *changed)
                .map(|(k, _)| k),
        );
        Ok(restart)
    }
}

fn live_settings(c: &OriginConfig) -> live::Settings<'_> {
    live::Settings {
        srt: &c.srt,
        transcode: Some(&c.transcode),
        certificate: cert_files(&c.http.cert, &c.http.key),
        log_level: &c.log.level,
    }
}

/// The configured certificate and key files, when both are set.
pub fn cert_files<'a>(
    cert: &'a Option<std::path::PathBuf>,
    key: &'a Option<std::path::PathBuf>,
) -> Option<(&'a std::path::Path, &'a std::path::Path)> {
    Some((cert.as_deref()?, key.as_deref()?))
}

impl cli::Daemon for Node {
    type Config = OriginConfig;
    const NAME: &'static str = "daihuo-origin";

    async fn start(config: &OriginConfig) -> anyhow::Result<Self> {
        Ok(Node::start(config).await?)
    }

    fn describe(&self) -> String {
        format!(
            "srt {} api {} admin {}",
            self.srt_addr, self.http_addr, self.admin_addr
        )
    }

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    async fn reload(
        &self,
        current: &OriginConfig,
        next: &OriginConfig,
        log: &LogControl,
    ) -> Result<Vec<&'static str>, String> {
        Node::reload(self, current, next, log).await
    }

    fn unready(&self) {
        self.ready.store(false, Ordering::Release);
    }

    async fn shutdown(self, grace: Duration) {
        Node::shutdown(self, grace).await;
    }
}
