//! The daihuo edge: serves viewers low-latency HLS over HTTP/3, HTTPS and plain HTTP from
//! one router, with a byte-bounded coalescing cache in front of the origin.
//!
//! Where to start: [`Edge::start`] binds every listener and runs a single box (the origin
//! in-process: SRT ingest, packaging and store from the `origin` crate). [`router`] holds the
//! routes; [`h3`] and [`https`] only adapt transports to it; [`cache`] is the object cache;
//! [`tls`] loads or generates the certificate.
//!
//! The edge never transcodes.

pub mod cache;
pub mod h3;
pub mod https;
pub mod router;
pub mod tls;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use conf::EdgeConfig;
use http::HeaderValue;
use origin::{admin::Admin, cli, serve, store_options, Ingest, Metrics, Store};
use rustls::pki_types::CertificateDer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

pub use tls::{Identity, TlsError};

/// Why the edge could not start: what the origin side reports (a listener that cannot bind,
/// an encoder requirement that cannot be met), or the viewers' TLS set-up.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Origin(#[from] origin::StartError),
    #[error(transparent)]
    Tls(#[from] TlsError),
}

/// Addresses actually bound (port 0 in the config resolves here).
#[derive(Debug, Clone, Copy)]
pub struct Addrs {
    pub srt: SocketAddr,
    pub https: Option<SocketAddr>,
    pub http3: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
    pub admin: SocketAddr,
}

/// A running edge.
pub struct Edge {
    pub addrs: Addrs,
    pub store: Arc<Store>,
    pub metrics: Metrics,
    /// The certificate viewers see (tests trust it explicitly).
    pub certificate: CertificateDer<'static>,
    ready: Arc<AtomicBool>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    admin_stop: watch::Sender<bool>,
    admin_task: tokio::task::JoinHandle<()>,
}

impl Edge {
    /// Binds every listener, then serves. Returns once all are bound: the edge is ready.
    pub async fn start(config: &EdgeConfig) -> Result<Self, StartError> {
        let identity = match (&config.https.cert, &config.https.key) {
            (Some(cert), Some(key)) => Identity::load(cert, key)?,
            _ => Identity::self_signed()?,
        };
        let settings =
            origin::transcode::probe(&config.transcode).map_err(origin::StartError::from)?;
        let settings = Arc::new(settings);
        let metrics = Metrics::new();
        let store = Store::new(store_options(&config.hls));
        let (shutdown, rx) = watch::channel(false);
        let mut tasks = JoinSet::new();

        let bind = |what, addr, source| origin::StartError::Bind { what, addr, source };
        let ingest = Ingest::bind(&config.srt)
            .await
            .map_err(|e| bind("srt", config.srt.listen, e))?;
        let admin = TcpListener::bind(config.admin.listen)
            .await
            .map_err(|e| bind("admin", config.admin.listen, e))?;
        let https = if config.https.enabled {
            Some(
                TcpListener::bind(config.https.listen)
                    .await
                    .map_err(|e| bind("https", config.https.listen, e))?,
            )
        } else {
            None
        };
        let http = if config.http.enabled {
            Some(
                TcpListener::bind(config.http.listen)
                    .await
                    .map_err(|e| bind("http", config.http.listen, e))?,
            )
        } else {
            None
        };
        let quic = if config.http3.enabled {
            // Bind the UDP socket ourselves so a failure names the address like the others.
            let socket = std::net::UdpSocket::bind(config.http3.listen)
                .map_err(|e| bind("http3", config.http3.listen, e))?;
            let server = identity.quic_config()?;
            let endpoint = quinn::Endpoint::new(
                quinn::EndpointConfig::default(),
                Some(server),
                socket,
                Arc::new(quinn::TokioRuntime),
            )
            .map_err(|e| bind("http3", config.http3.listen, e))?;
            Some(endpoint)
        } else {
            None
        };
        let local = |l: &Option<TcpListener>| l.as_ref().and_then(|l| l.local_addr().ok());
        let addrs = Addrs {
            srt: ingest.local_addr(),
            https: local(&https),
            http3: quic.as_ref().and_then(|q| q.local_addr().ok()),
            http: local(&http),
            admin: admin
                .local_addr()
                .map_err(|e| bind("admin", config.admin.listen, e))?,
        };

        let alt_svc = addrs
            .http3
            .and_then(|a| HeaderValue::from_str(&format!("h3=\":{}\"; ma=86400", a.port())).ok());
        // One router, one cache, for every transport.
        let router = Arc::new(router::Router::new(
            store.clone(),
            config.cache.max_bytes,
            alt_svc,
            &metrics,
        ));

        tasks.spawn(ingest.run(store.clone(), metrics.clone(), settings, rx.clone()));
        if let Some(l) = https {
            let acceptor = tokio_rustls::TlsAcceptor::from(identity.tcp_config()?);
            tasks.spawn(https::serve(l, acceptor, router.clone(), rx.clone()));
        }
        if let Some(l) = http {
            tasks.spawn(serve::serve_plain(l, router.clone(), rx.clone()));
        }
        if let Some(endpoint) = quic {
            tasks.spawn(h3::serve(endpoint, router.clone(), rx.clone()));
        }
        let ready = Arc::new(AtomicBool::new(false));
        let admin_handler = Arc::new(Admin {
            metrics: metrics.clone(),
            ready: ready.clone(),
        });
        // The admin listener outlives the drain (readiness reads false meanwhile).
        let (admin_stop, admin_rx) = watch::channel(false);
        let admin_task = tokio::spawn(serve::serve_plain(admin, admin_handler, admin_rx));
        ready.store(true, Ordering::Release);
        Ok(Self {
            addrs,
            store,
            metrics,
            certificate: identity.chain[0].clone(),
            ready,
            shutdown,
            tasks,
            admin_stop,
            admin_task,
        })
    }

    /// Drains: readiness false, listeners stop, in-flight requests and publishes finish
    /// within `grace`.
    pub async fn shutdown(mut self, grace: Duration) {
        self.ready.store(false, Ordering::Release);
        let _ = self.shutdown.send(true);
        cli::drain(&mut self.tasks, grace).await;
        let _ = self.admin_stop.send(true);
        let _ = self.admin_task.await;
    }
}
