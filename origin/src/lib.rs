//! The daihuo origin: SRT ingest, the per-stream pipeline, the part/segment store with
//! blocking-reload waiters, the origin HTTP API, and viewer events' journal and sinks.
//!
//! Where to start: [`Node::start`] wires a standalone `daihuo-origin`; the edge's single-box
//! mode uses [`Store`], [`Ingest`] and [`api`] directly, in-process. [`pipeline`] turns one
//! publish's transport stream into parts, on the wall clock of [`clock`]; [`store`] holds
//! them and answers edges; [`auth`] decides who may publish (and checks playback tokens);
//! [`events`] deduplicates relayed viewer events into the journal and the Kafka sink;
//! [`live`] applies what a reload changes. The process around it (listeners, TLS, admin,
//! signals, drain) is the `daemon` crate.
//!
//! This crate does not cache for viewers or relay ingest: that is the edge.

pub mod api;
pub mod audience;
pub mod auth;
pub mod clock;
mod error;
pub mod events;
pub mod hook;
pub mod ingest;
pub mod live;
pub mod metrics;
pub mod pipeline;
pub mod replay;
pub mod route;
pub mod store;
pub mod streamid;
pub mod transcode;

pub use error::ApiError;
pub use ingest::Ingest;
pub use metrics::Metrics;
pub use store::{Store, StoreOptions};

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use conf::{HlsConfig, OriginConfig};
use daemon::admin::Admin;
use daemon::cli::{LogControl, ReloadError};
use daemon::tls::Certificates;
use daemon::{h3, serve, Lifecycle, TlsError};
use live::Live;
use tokio_rustls::rustls::server::danger::ClientCertVerifier;

/// The origin API's client verifier (mutual TLS) when `http.client_ca` is set; without it, a
/// warning when the API listens beyond loopback, where anyone reaching it may post events.
fn api_clients(config: &OriginConfig) -> Result<Option<Arc<dyn ClientCertVerifier>>, TlsError> {
    match &config.http.client_ca {
        Some(ca) => Ok(Some(daemon::tls::client_verifier(ca)?)),
        None if config.http.listen.ip().is_loopback() => Ok(None),
        None => {
            tracing::warn!(
                listen = %config.http.listen,
                "origin API admits any client that reaches it (events, feed, media): set \
                 http.client_ca so only edges holding a certificate from that CA are served"
            );
            Ok(None)
        }
    }
}

/// Store options from the `[hls]` section.
pub fn store_options(hls: &HlsConfig) -> StoreOptions {
    StoreOptions {
        segment_target: hls.segment_target(),
        part_target: hls.part_target(),
        window: hls.window_segments,
        linger: Duration::from_secs(hls.ended_linger_s),
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

impl StartError {
    /// A listener that could not be bound.
    pub fn bind(what: &'static str, addr: SocketAddr) -> impl FnOnce(std::io::Error) -> Self {
        move |source| StartError::Bind { what, addr, source }
    }
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
    scale: Arc<daemon::scale::Scale>,
    events: Arc<events::Intake>,
    lifecycle: Lifecycle,
}

impl Node {
    /// Probes the encoders, binds every listener, then starts serving. Returns once all are
    /// bound (ready).
    pub async fn start(config: &OriginConfig) -> Result<Self, StartError> {
        let settings = Arc::new(ArcSwap::from_pointee(transcode::probe(&config.transcode)?));
        let certificates = Certificates::new(cert_files(&config.http.cert, &config.http.key))?;
        let clients = api_clients(config)?;
        let metrics = Metrics::new();
        let store = Store::new(store_options(&config.hls));
        let bind = StartError::bind;
        let ingest = Ingest::bind(&config.srt)
            .await
            .map_err(bind("srt", config.srt.listen))?;
        let http = daemon::net::tcp_listener(config.http.listen)
            .map_err(bind("http", config.http.listen))?;
        let admin = daemon::net::tcp_listener(config.admin.listen)
            .map_err(bind("admin", config.admin.listen))?;
        let http_addr = http
            .local_addr()
            .map_err(bind("http", config.http.listen))?;
        let admin_addr = admin
            .local_addr()
            .map_err(bind("admin", config.admin.listen))?;
        // HTTP/3 on the UDP port of the same number (port 0 resolved by the TCP bind).
        let quic = match config.http.http3 {
            true => Some(
                h3::bind(http_addr, certificates.quic_config(clients.as_ref())?, 1)
                    .map_err(bind("http3", http_addr))?,
            ),
            false => None,
        };
        let mut lifecycle = Lifecycle::new();
        let live = Live {
            srt: ingest.config(),
            transcode: Some(settings.clone()),
            certificates: certificates.clone(),
        };
        let srt_addr = ingest.local_addr();
        let local = Arc::new(ingest::Local {
            store: store.clone(),
            metrics: metrics.clone(),
            settings,
        });
        lifecycle.spawn(ingest.run(local, metrics.clone(), lifecycle.drain()));
        let events = events::Intake::open(&config.events, &metrics)
            .map_err(|e| StartError::Events(e.to_string()))?;
        let drain = lifecycle.drain();
        events::start_sink(&config.events, &events, lifecycle.tasks(), &drain)
            .map_err(|e| StartError::Events(e.to_string()))?;
        let api = Arc::new(api::Api::new(store.clone(), events.clone(), &metrics));
        let acceptor = tokio_rustls::TlsAcceptor::from(certificates.tcp_config(clients.as_ref())?);
        lifecycle.spawn(serve::serve_tls(http, acceptor, api.clone(), drain.clone()));
        if let Some(endpoints) = quic {
            lifecycle.spawn(h3::serve(endpoints, api, drain.clone()));
        }
        let scale = daemon::scale::Scale::new(&config.scale, metrics.process.clone());
        lifecycle.spawn(scale.clone().run(drain));
        let admin_handler = Admin::new(metrics.process.clone(), lifecycle.ready_flag())
            .scale(scale.clone())
            .extension(events::admin_paths(events.clone()));
        lifecycle.serve_admin(admin, admin_handler);
        lifecycle.set_ready();
        Ok(Self {
            srt_addr,
            http_addr,
            admin_addr,
            store,
            metrics,
            certificates,
            live,
            scale,
            events,
            lifecycle,
        })
    }

    /// Applies what can change live from `next`.
    pub async fn reload(
        &self,
        current: &OriginConfig,
        next: &OriginConfig,
        log: &LogControl,
    ) -> Result<(), ReloadError> {
        self.live
            .apply(&live_settings(current), &live_settings(next), log)
            .await?;
        self.scale.marks.store(Arc::new(next.scale.clone()));
        Ok(())
    }

    /// Drains: readiness false, listeners stop, in-flight work finishes within `grace`; then
    /// the journal is closed (the state directory can be opened again once this returns).
    pub async fn shutdown(self, grace: Duration) {
        self.lifecycle.shutdown(grace).await;
        let events = self.events.clone();
        let _ = tokio::task::spawn_blocking(move || events.close()).await;
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

impl daemon::cli::Daemon for Node {
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

    fn metrics(&self) -> &daemon::Metrics {
        &self.metrics.process
    }

    async fn reload(
        &self,
        current: &OriginConfig,
        next: &OriginConfig,
        log: &LogControl,
    ) -> Result<(), ReloadError> {
        Node::reload(self, current, next, log).await
    }

    fn unready(&self) {
        self.lifecycle.unready();
    }

    async fn shutdown(self, grace: Duration) {
        Node::shutdown(self, grace).await;
    }
}
