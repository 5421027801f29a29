//! The daihuo edge: serves viewers low-latency HLS over HTTP/3, HTTPS and plain HTTP from
//! one router, with a byte-bounded coalescing cache in front of the origin.
//!
//! Where to start: [`Edge::start`] binds every listener. Without `[upstream]` origins it runs
//! a single box (the origin in-process: SRT ingest, packaging and store from the `origin`
//! crate). With origins, [`relay`] forwards streamers' SRT to them, [`upstream`] places rooms
//! on origins and tracks their health, and [`pull`] fetches playback from them. [`router`]
//! holds the routes; `daemon::serve` and `daemon::h3` only adapt transports to it; [`cache`]
//! is the object cache. Viewer events: [`events`] takes posts (limits, like merging, the
//! durable spool and its forwarder), [`feed`] serves the live comment and like feed, and
//! [`viewers`] counts who watches.
//!
//! The edge never transcodes.

pub mod audience;
pub mod cache;
pub mod cors;
pub mod events;
pub mod feed;
pub mod pages;
pub mod pull;
pub mod relay;
pub mod router;
pub mod socket;
pub mod upstream;
pub mod viewers;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use conf::EdgeConfig;
use daemon::admin::{Admin, ReadyCheck};
use daemon::cli::{LogControl, ReloadError};
use daemon::scale::Scale;
use daemon::tls::Certificates;
use daemon::{h3, serve, Lifecycle, TlsError};
use http::HeaderValue;
use origin::live::Live;
use origin::transcode::TranscodeSettings;
use origin::{ingest, store_options, Ingest, Metrics, Store};
use rustls::pki_types::CertificateDer;
use tokio::net::TcpListener;

use crate::cache::{CacheMetrics, ObjectCache};
use crate::router::{Router, Source};
use crate::upstream::Upstream;

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
    /// The embedded origin's store (single box); `None` with remote origins.
    pub store: Option<Arc<Store>>,
    /// The remote origins, when `[upstream]` lists some.
    pub upstream: Option<Arc<Upstream>>,
    pub metrics: Metrics,
    /// The certificate viewers see, replaceable on reload.
    pub certificates: Arc<Certificates>,
    live: Live,
    cache: ObjectCache,
    router: Arc<Router>,
    events: Arc<events::Events>,
    /// The embedded origin's journal (single box), closed at shutdown.
    journal: Option<Arc<origin::events::Intake>>,
    scale: Arc<Scale>,
    lifecycle: Lifecycle,
}

/// The edge's listeners, bound.
struct Listeners {
    ingest: Ingest,
    admin: TcpListener,
    viewers: ViewerListeners,
}

/// The viewer listeners that are enabled.
struct ViewerListeners {
    https: Option<TcpListener>,
    http: Option<TcpListener>,
    /// One or more endpoints on the HTTP/3 port (`http3.endpoints`).
    quic: Option<Vec<quinn::Endpoint>>,
}

impl ViewerListeners {
    /// Serves viewers on each through `router`.
    fn serve(
        self,
        router: &Arc<Router>,
        certificates: &Arc<Certificates>,
        lifecycle: &mut Lifecycle,
    ) -> Result<(), StartError> {
        if let Some(l) = self.https {
            let acceptor = tokio_rustls::TlsAcceptor::from(certificates.tcp_config(None)?);
            lifecycle.spawn(serve::serve_tls(
                l,
                acceptor,
                router.clone(),
                lifecycle.drain(),
            ));
        }
        if let Some(l) = self.http {
            lifecycle.spawn(serve::serve_plain(l, router.clone(), lifecycle.drain()));
        }
        if let Some(endpoints) = self.quic {
            lifecycle.spawn(h3::serve(endpoints, router.clone(), lifecycle.drain()));
        }
        Ok(())
    }
}

impl Listeners {
    async fn bind(
        config: &EdgeConfig,
        certificates: &Arc<Certificates>,
    ) -> Result<Self, StartError> {
        let bind = origin::StartError::bind;
        let tcp = async |enabled: bool, what, addr| -> Result<_, StartError> {
            Ok(match enabled {
                true => Some(daemon::net::tcp_listener(addr).map_err(bind(what, addr))?),
                false => None,
            })
        };
        let ingest = Ingest::bind(&config.srt)
            .await
            .map_err(bind("srt", config.srt.listen))?;
        let admin = daemon::net::tcp_listener(config.admin.listen)
            .map_err(bind("admin", config.admin.listen))?;
        let https = tcp(config.https.enabled, "https", config.https.listen).await?;
        let http = tcp(config.http.enabled, "http", config.http.listen).await?;
        let quic = match config.http3.enabled {
            true => {
                let mut server = certificates.quic_config(None)?;
                let limits = serve::Limits::from(&config.limits);
                server.transport_config(Arc::new(h3::transport(&limits)));
                let addr = config.http3.listen;
                let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
                let count = config.http3.endpoint_count(cores);
                Some(h3::bind(addr, server, count).map_err(bind("http3", addr))?)
            }
            false => None,
        };
        Ok(Self {
            ingest,
            admin,
            viewers: ViewerListeners { https, http, quic },
        })
    }

    fn addrs(&self, config: &EdgeConfig) -> Result<Addrs, StartError> {
        let local = |l: &Option<TcpListener>| l.as_ref().and_then(|l| l.local_addr().ok());
        let admin = self.admin.local_addr();
        let viewers = &self.viewers;
        Ok(Addrs {
            srt: self.ingest.local_addr(),
            https: local(&viewers.https),
            http3: viewers
                .quic
                .as_ref()
                .and_then(|q| q.first()?.local_addr().ok()),
            http: local(&viewers.http),
            admin: admin.map_err(origin::StartError::bind("admin", config.admin.listen))?,
        })
    }
}

/// Where viewers' media and events go: the origin in this process, or remote origins.
struct Backend {
    source: Source,
    store: Option<Arc<Store>>,
    upstream: Option<Arc<Upstream>>,
    target: events::forward::Target,
    /// The embedded origin's journal (single box).
    journal: Option<Arc<origin::events::Intake>>,
    /// The embedded origin's ladder, replaced on reload.
    transcode: Option<Arc<ArcSwap<TranscodeSettings>>>,
}

impl Backend {
    /// The viewers' live feed, following this backend's journal (or its origins').
    fn feed(&self, lifecycle: &mut Lifecycle) -> Arc<feed::Feed> {
        let feed = feed::Feed::new(lifecycle.drain());
        match (&self.journal, &self.upstream) {
            (Some(intake), _) => lifecycle.spawn(feed.clone().follow_local(intake.clone())),
            (None, Some(upstream)) => {
                lifecycle.spawn(feed.clone().follow_origins(upstream.clone()))
            }
            (None, None) => {}
        }
        feed
    }

    /// The origin in-process: ingest packages here, events are journalled here.
    fn single_box(
        config: &EdgeConfig,
        ingest: Ingest,
        metrics: &Metrics,
        lifecycle: &mut Lifecycle,
    ) -> Result<Self, StartError> {
        let settings =
            origin::transcode::probe(&config.transcode).map_err(origin::StartError::from)?;
        let settings = Arc::new(ArcSwap::from_pointee(settings));
        let store = Store::new(store_options(&config.hls));
        let local = Arc::new(ingest::Local {
            store: store.clone(),
            metrics: metrics.clone(),
            settings: settings.clone(),
        });
        lifecycle.spawn(ingest.run(local, metrics.clone(), lifecycle.drain()));
        let events_error = |e: String| origin::StartError::Events(e);
        let intake = origin::events::Intake::open(&config.events, metrics)
            .map_err(|e| events_error(e.to_string()))?;
        let drain = lifecycle.drain();
        origin::events::start_sink(&config.events, &intake, lifecycle.tasks(), &drain)
            .map_err(|e| events_error(e.to_string()))?;
        Ok(Self {
            source: Source::Local(store.clone()),
            store: Some(store),
            upstream: None,
            target: events::forward::Target::Local(intake.clone()),
            journal: Some(intake),
            transcode: Some(settings),
        })
    }

    /// Remote origins: ingest is relayed to them, playback pulled from them.
    fn tiered(
        config: &EdgeConfig,
        ingest: Ingest,
        metrics: &Metrics,
        cache: &ObjectCache,
        lifecycle: &mut Lifecycle,
    ) -> Result<Self, StartError> {
        let options = store_options(&config.hls);
        let upstream = Upstream::new(&config.upstream, options.block_timeout(), metrics)?;
        lifecycle.spawn(upstream.clone().run_probes(lifecycle.drain()));
        let relay = relay::Relay::new(upstream.clone(), &config.upstream, ingest.config(), metrics);
        lifecycle.spawn(ingest.run(Arc::new(relay), metrics.clone(), lifecycle.drain()));
        let pull = pull::Pull::new(
            upstream.clone(),
            cache.clone(),
            options.part_target,
            options.segment_target,
            metrics,
        );
        Ok(Self {
            source: Source::Upstream(Box::new(pull)),
            store: None,
            upstream: Some(upstream.clone()),
            target: events::forward::Target::Remote(upstream),
            journal: None,
            transcode: None,
        })
    }
}

impl Edge {
    /// Binds every listener, then serves. Returns once all are bound: the edge is ready.
    pub async fn start(config: &EdgeConfig) -> Result<Self, StartError> {
        let certificates =
            Certificates::new(origin::cert_files(&config.https.cert, &config.https.key))?;
        let metrics = Metrics::new();
        let mut lifecycle = Lifecycle::new();
        let listeners = Listeners::bind(config, &certificates).await?;
        let addrs = listeners.addrs(config)?;
        // One router, one cache, for every transport.
        let cache = ObjectCache::new(config.cache.max_bytes, CacheMetrics::register(&metrics));
        let srt = listeners.ingest.config();
        let backend = match config.upstream.origins.is_empty() {
            true => Backend::single_box(config, listeners.ingest, &metrics, &mut lifecycle)?,
            false => Backend::tiered(config, listeners.ingest, &metrics, &cache, &mut lifecycle)?,
        };
        let feed = backend.feed(&mut lifecycle);
        let drain = lifecycle.drain();
        let events = events::Events::start(
            &config.events,
            backend.target,
            &metrics,
            lifecycle.tasks(),
            &drain,
        )
        .map_err(|e| origin::StartError::Events(e.to_string()))?;
        let alt_svc = addrs
            .http3
            .and_then(|a| HeaderValue::from_str(&format!("h3=\":{}\"; ma=86400", a.port())).ok());
        let router = Arc::new(Router::new(
            backend.source,
            cache.clone(),
            events.clone(),
            feed,
            alt_svc,
            &metrics,
        ));
        router.apply(config);
        listeners
            .viewers
            .serve(&router, &certificates, &mut lifecycle)?;
        let scale = Scale::new(&config.scale, metrics.process.clone());
        lifecycle.spawn(scale.clone().run(lifecycle.drain()));
        let upstream = backend.upstream.clone();
        lifecycle.spawn(maintain(
            cache.clone(),
            router.clone(),
            upstream,
            lifecycle.drain(),
        ));
        let mut admin =
            Admin::new(metrics.process.clone(), lifecycle.ready_flag()).scale(scale.clone());
        if let Some(upstream) = backend.upstream.clone() {
            admin = admin.check(Arc::new(move || upstream.readiness()) as ReadyCheck);
        }
        if let Some(intake) = backend.journal.clone() {
            admin = admin.extension(origin::events::admin_paths(intake));
        }
        lifecycle.serve_admin(listeners.admin, admin);
        lifecycle.set_ready();
        Ok(Self {
            addrs,
            store: backend.store,
            upstream: backend.upstream,
            metrics,
            live: Live {
                srt,
                transcode: backend.transcode,
                certificates: certificates.clone(),
            },
            certificates,
            cache,
            router,
            events,
            journal: backend.journal,
            scale,
            lifecycle,
        })
    }

    /// The certificate served to new connections now.
    pub fn certificate(&self) -> CertificateDer<'static> {
        self.certificates.leaf()
    }

    /// Drains: readiness false, listeners stop, in-flight requests and publishes finish
    /// within `grace`; then the spool and the embedded origin's journal are closed (whoever
    /// still holds them: the state directory can be opened again once this returns).
    pub async fn shutdown(self, grace: Duration) {
        self.lifecycle.shutdown(grace).await;
        let (events, journal) = (self.events.clone(), self.journal.clone());
        let _ = tokio::task::spawn_blocking(move || {
            events.close();
            if let Some(journal) = journal {
                journal.close();
            }
        })
        .await;
    }

    /// Applies what can change live from `next`: the publish policy and stream limit for new
    /// publishers, the ladder for new streams, the certificate files (re-read), the log level,
    /// events rules, playback, listener limits and clients, the cache size and the origin
    /// list. What needs a restart is `conf::RestartKeys`' to say.
    pub async fn reload(
        &self,
        current: &EdgeConfig,
        next: &EdgeConfig,
        log: &LogControl,
    ) -> Result<(), ReloadError> {
        self.live
            .apply(&live_settings(current), &live_settings(next), log)
            .await?;
        self.scale.marks.store(Arc::new(next.scale.clone()));
        self.events.reload(&next.events);
        self.router.apply(next);
        if current.cache != next.cache {
            self.cache.resize(next.cache.max_bytes).await;
        }
        if let Some(upstream) = &self.upstream {
            let tiered = !next.upstream.origins.is_empty();
            if tiered && current.upstream.origins != next.upstream.origins {
                upstream.set_origins(&next.upstream.origins);
            }
        }
        Ok(())
    }
}

/// Periodic housekeeping: expiries delivered, `daihuo_cache_bytes` and `daihuo_viewers`
/// current even when no request comes; rooms' viewer counts on their feeds.
async fn maintain(
    cache: ObjectCache,
    router: Arc<Router>,
    upstream: Option<Arc<Upstream>>,
    mut shutdown: daemon::Drain,
) {
    let counts = audience::report(router.clone(), upstream, shutdown.clone());
    let ticks = async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.stopped() => return,
            }
            cache.tick().await;
            router.tick().await;
        }
    };
    tokio::join!(counts, ticks);
}

fn live_settings(c: &EdgeConfig) -> origin::live::Settings<'_> {
    origin::live::Settings {
        srt: &c.srt,
        transcode: Some(&c.transcode),
        certificate: origin::cert_files(&c.https.cert, &c.https.key),
        log_level: &c.log.level,
    }
}

impl daemon::cli::Daemon for Edge {
    type Config = EdgeConfig;
    const NAME: &'static str = "daihuo-edge";

    async fn start(config: &EdgeConfig) -> anyhow::Result<Self> {
        Ok(Edge::start(config).await?)
    }

    fn describe(&self) -> String {
        let a = &self.addrs;
        let mut out = format!("srt {}", a.srt);
        for (name, addr) in [("https", a.https), ("http3", a.http3), ("http", a.http)] {
            if let Some(addr) = addr {
                out.push_str(&format!(" {name} {addr}"));
            }
        }
        out.push_str(&format!(" admin {}", a.admin));
        out
    }

    fn metrics(&self) -> &daemon::Metrics {
        &self.metrics.process
    }

    async fn reload(
        &self,
        current: &EdgeConfig,
        next: &EdgeConfig,
        log: &LogControl,
    ) -> Result<(), ReloadError> {
        Edge::reload(self, current, next, log).await
    }

    fn unready(&self) {
        self.lifecycle.unready();
    }

    async fn shutdown(self, grace: Duration) {
        Edge::shutdown(self, grace).await;
    }

    async fn check_peers(config: &EdgeConfig) -> Vec<(String, Result<String, String>)> {
        upstream::check_origins(&config.upstream).await
    }
}
