//! The daihuo edge: serves viewers low-latency HLS over HTTP/3, HTTPS and plain HTTP from
//! one router, with a byte-bounded coalescing cache in front of the origin.
//!
//! Where to start: [`Edge::start`] binds every listener. Without `[upstream]` origins it runs
//! a single box (the origin in-process: SRT ingest, packaging and store from the `origin`
//! crate). With origins, [`relay`] forwards streamers' SRT to them, [`upstream`] places rooms
//! on origins and tracks their health, and [`pull`] fetches playback from them. [`router`]
//! holds the routes; `origin::serve` and `origin::h3` only adapt transports to it; [`cache`]
//! is the object cache. Viewer events: [`events`] takes posts (limits, like merging, the
//! durable spool and its forwarder), [`feed`] serves the live comment and like feed, and
//! [`viewers`] counts who watches.
//!
//! The edge never transcodes.

pub mod cache;
pub mod events;
pub mod feed;
pub mod pull;
pub mod relay;
pub mod router;
pub mod upstream;
pub mod viewers;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use conf::EdgeConfig;
use http::HeaderValue;
use origin::{admin::Admin, cli, h3, ingest, serve, store_options, Ingest, Metrics, Store};
use rustls::pki_types::CertificateDer;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinSet;

use arc_swap::ArcSwap;
use origin::cli::LogControl;
use origin::live::Live;
use origin::tls::Certificates;

use crate::cache::{CacheMetrics, ObjectCache};
use crate::router::Source;
use crate::upstream::Upstream;

pub use origin::TlsError;

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
    router: Arc<router::Router>,
    events: Arc<events::Events>,
    scale: Arc<origin::scale::Scale>,
    ready: Arc<AtomicBool>,
    shutdown: watch::Sender<bool>,
    tasks: JoinSet<()>,
    admin_stop: watch::Sender<bool>,
    admin_task: tokio::task::JoinHandle<()>,
}

impl Edge {
    /// Binds every listener, then serves. Returns once all are bound: the edge is ready.
    pub async fn start(config: &EdgeConfig) -> Result<Self, StartError> {
        let certificates =
            Certificates::new(origin::cert_files(&config.https.cert, &config.https.key))?;
        let metrics = Metrics::new();
        let options = store_options(&config.hls);
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
            let mut server = certificates.quic_config()?;
            let limits = origin::serve::Limits::from(&config.limits);
            server.transport_config(Arc::new(h3::transport(&limits)));
            Some(
                h3::bind(config.http3.listen, server)
                    .map_err(|e| bind("http3", config.http3.listen, e))?,
            )
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
        let cache = ObjectCache::new(config.cache.max_bytes, CacheMetrics::register(&metrics));
        let srt_config = ingest.config();
        let mut transcode = None;
        let (source, store, upstream, target, journal) = if config.upstream.origins.is_empty() {
            let settings =
                origin::transcode::probe(&config.transcode).map_err(origin::StartError::from)?;
            let settings = Arc::new(ArcSwap::from_pointee(settings));
            transcode = Some(settings.clone());
            let store = Store::new(options.clone());
            let local = Arc::new(ingest::Local {
                store: store.clone(),
                metrics: metrics.clone(),
                settings,
            });
            tasks.spawn(ingest.run(local, metrics.clone(), rx.clone()));
            let intake = origin::events::Intake::open(&config.events.state_dir, &metrics)
                .map_err(|e| origin::StartError::Events(e.to_string()))?;
            origin::events::start_sink(&config.events, &intake, &mut tasks, &rx)
                .map_err(origin::StartError::Events)?;
            let target = events::forward::Target::Local(intake.clone());
            (
                Source::Local(store.clone()),
                Some(store),
                None,
                target,
                Some(intake),
            )
        } else {
            let upstream = Upstream::new(&config.upstream, options.block_timeout(), &metrics)?;
            tasks.spawn(upstream.clone().run_probes(rx.clone()));
            let relay = Arc::new(relay::Relay::new(
                upstream.clone(),
                &config.upstream,
                srt_config.clone(),
                &metrics,
            ));
            tasks.spawn(ingest.run(relay, metrics.clone(), rx.clone()));
            let pull = pull::Pull::new(
                upstream.clone(),
                cache.clone(),
                options.part_target,
                options.segment_target,
                &metrics,
            );
            let target = events::forward::Target::Remote(upstream.clone());
            (
                Source::Upstream(Box::new(pull)),
                None,
                Some(upstream),
                target,
                None,
            )
        };
        let events = events::Events::start(&config.events, target, &metrics, &mut tasks, &rx)
            .map_err(|e| origin::StartError::Events(e.to_string()))?;
        let live_feed = feed::Feed::new(rx.clone());
        match (&journal, &upstream) {
            (Some(intake), _) => {
                tasks.spawn(live_feed.clone().follow_local(intake.clone()));
            }
            (None, Some(upstream)) => {
                tasks.spawn(live_feed.clone().follow_origins(upstream.clone()));
            }
            (None, None) => {}
        }
        let router = Arc::new(router::Router::new(
            source,
            cache.clone(),
            events.clone(),
            live_feed,
            alt_svc,
            &metrics,
        ));
        router.playback.store(Arc::new(config.playback.clone()));
        router
            .limits
            .store(Arc::new(origin::serve::Limits::from(&config.limits)));
        router
            .clients
            .store(Arc::new(origin::clients::Clients::from(&config.clients)));

        if let Some(l) = https {
            let acceptor = tokio_rustls::TlsAcceptor::from(certificates.tcp_config()?);
            tasks.spawn(serve::serve_tls(l, acceptor, router.clone(), rx.clone()));
        }
        if let Some(l) = http {
            tasks.spawn(serve::serve_plain(l, router.clone(), rx.clone()));
        }
        if let Some(endpoint) = quic {
            tasks.spawn(h3::serve(endpoint, router.clone(), rx.clone()));
        }
        let ready = Arc::new(AtomicBool::new(false));
        let check = upstream
            .clone()
            .map(|u| Arc::new(move || u.readiness()) as origin::admin::ReadyCheck);
        let scale = origin::scale::Scale::new(&config.scale, metrics.clone());
        tasks.spawn(scale.clone().run(rx.clone()));
        tasks.spawn(maintain(cache.clone(), router.clone(), rx.clone()));
        let admin_handler = Arc::new(Admin {
            metrics: metrics.clone(),
            ready: ready.clone(),
            check,
            scale: Some(scale.clone()),
            events: journal,
        });
        // The admin listener outlives the drain (readiness reads false meanwhile).
        let (admin_stop, admin_rx) = watch::channel(false);
        let admin_task = tokio::spawn(serve::serve_plain(admin, admin_handler, admin_rx));
        ready.store(true, Ordering::Release);
        Ok(Self {
            addrs,
            store,
            upstream,
            metrics,
            live: Live {
                srt: srt_config,
                transcode,
                certificates: certificates.clone(),
            },
            certificates,
            cache,
            router,
            events,
            scale,
            ready,
            shutdown,
            tasks,
            admin_stop,
            admin_task,
        })
    }

    /// The certificate served to new connections now.
    pub fn certificate(&self) -> CertificateDer<'static> {
        self.certificates.leaf()
    }

    /// Drains: readiness false, listeners stop, in-flight requests and publishes finish
    /// within `grace`.
    pub async fn shutdown(mut self, grace: Duration) {
        self.ready.store(false, Ordering::Release);
        let _ = self.shutdown.send(true);
        cli::drain(&mut self.tasks, grace).await;
        let events = self.events.clone();
        let _ = tokio::task::spawn_blocking(move || events.close()).await;
        let _ = self.admin_stop.send(true);
        let _ = self.admin_task.await;
    }

    /// Applies what can change live from `next`: SRT passphrase and stream limit for new
    /// publishers, the ladder for new streams, the certificate files (re-read), the log level
    /// and the origin list. Returns the changed keys that need a restart.
    pub async fn reload(
        &self,
        current: &EdgeConfig,
        next: &EdgeConfig,
        log: &LogControl,
    ) -> Result<Vec<&'static str>, String> {
        self.live
            .apply(&live_settings(current), &live_settings(next), log)
            .await?;
        self.scale.marks.store(Arc::new(next.scale.clone()));
        self.events.reload(&next.events);
        self.router.playback.store(Arc::new(next.playback.clone()));
        self.router
            .limits
            .store(Arc::new(origin::serve::Limits::from(&next.limits)));
        self.router
            .clients
            .store(Arc::new(origin::clients::Clients::from(&next.clients)));
        if current.cache != next.cache {
            self.cache.resize(next.cache.max_bytes).await;
        }
        let (cur, new) = (&current.upstream, &next.upstream);
        let tiered = |c: &EdgeConfig| !c.upstream.origins.is_empty();
        if let Some(upstream) = &self.upstream {
            if tiered(next) && cur.origins != new.origins {
                upstream.set_origins(&new.origins);
            }
        }
        let upstream_rest = |u: &conf::UpstreamConfig| conf::UpstreamConfig {
            origins: Vec::new(),
            ..u.clone()
        };
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
            ("https.listen", current.https.listen != next.https.listen),
            ("https.enabled", current.https.enabled != next.https.enabled),
            (
                "https.cert",
                current.https.cert.is_some() && next.https.cert.is_none(),
            ),
            ("http3", current.http3 != next.http3),
            (
                "limits (HTTP/3 streams and idle timeout)",
                current.limits.max_streams_per_connection != next.limits.max_streams_per_connection
                    || current.limits.idle_timeout_ms != next.limits.idle_timeout_ms,
            ),
            ("http", current.http != next.http),
            ("admin.listen", current.admin.listen != next.admin.listen),
            ("hls", current.hls != next.hls),
            ("log.format", current.log.format != next.log.format),
            (
                "events.state_dir",
                current.events.state_dir != next.events.state_dir,
            ),
            (
                "events.like_window_ms",
                current.events.like_window_ms != next.events.like_window_ms,
            ),
            ("upstream.origins", tiered(current) != tiered(next)),
            ("upstream", upstream_rest(cur) != upstream_rest(new)),
        ];
        Ok(fixed
            .into_iter()
            .filter(|(_, changed)| *changed)
            .map(|(key, _)| key)
            .collect())
    }
}

/// Periodic housekeeping: expiries delivered, `daihuo_cache_bytes` and `daihuo_viewers`
/// current even when no request comes.
async fn maintain(
    cache: ObjectCache,
    router: Arc<router::Router>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = serve::stopped(&mut shutdown) => return,
        }
        cache.tick().await;
        router.tick().await;
    }
}

fn live_settings(c: &EdgeConfig) -> origin::live::Settings<'_> {
    origin::live::Settings {
        srt: &c.srt,
        transcode: Some(&c.transcode),
        certificate: origin::cert_files(&c.https.cert, &c.https.key),
        log_level: &c.log.level,
    }
}

impl cli::Daemon for Edge {
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

    fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    async fn reload(
        &self,
        current: &EdgeConfig,
        next: &EdgeConfig,
        log: &LogControl,
    ) -> Result<Vec<&'static str>, String> {
        Edge::reload(self, current, next, log).await
    }

    fn unready(&self) {
        self.ready.store(false, Ordering::Release);
    }

    async fn shutdown(self, grace: Duration) {
        Edge::shutdown(self, grace).await;
    }

    async fn check_peers(config: &EdgeConfig) -> Vec<(String, Result<String, String>)> {
        upstream::check_origins(&config.upstream).await
    }
}
