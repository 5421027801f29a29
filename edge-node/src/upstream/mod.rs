//! The edge's view of its origins: placement, health, failover, and the HTTP client that
//! pulls playback from them.
//!
//! - Placement: [`rendezvous`] ranks the origins for each room (primary, backup, ...); every
//!   edge computes the same ranking.
//! - Health: each origin is up or down. Real requests mark an origin down when its transport
//!   fails or it answers 5xx (other than 503, the answer to a blocking request that timed
//!   out); a light probe (`GET /healthz` every `probe_interval_ms`) marks it up again, or down.
//! - Failover: a room is served by one origin at a time, the first one up in its ranking, and
//!   stays there while that origin is up (no flapping back: a restarted origin's first
//!   segment may be partial). A failed request is retried at once on the next origin, so a
//!   viewer sees one slower answer, not an error. Segment numbers come from the stream's
//!   timeline (see `codec::hls::segmenter`), so they go on across the switch.
//!
//! What is fetched and cached is [`crate::pull`]'s business; this module answers "GET this
//! path for this room from whichever origin can".

mod client;
mod error;
pub mod rendezvous;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use bytes::Bytes;
use conf::{OriginPeer, UpstreamConfig, UpstreamProtocol};
use http::StatusCode;
use prometheus::{Histogram, HistogramOpts, IntCounter, IntGaugeVec, Opts};
use tokio::sync::watch;
use tracing::{info, warn};

pub use client::{Conn, Connector, TransportError};
pub use error::{Source, UpstreamError};

/// Most rooms remembered with the origin serving them; past this the memory is reset (it only
/// decides stickiness, never correctness).
const MAX_ROOMS: usize = 100_000;

/// One origin and its state on this edge.
pub struct Origin {
    pub peer: OriginPeer,
    up: AtomicBool,
    /// Why it is down, as last logged: an origin that never came up is logged too, and a
    /// new reason is logged when it changes (not on every failed probe).
    down_reason: Mutex<Option<String>>,
    /// The shared connection, opened on first use. Held while connecting so concurrent
    /// requests wait for one connect instead of opening many.
    conn: tokio::sync::Mutex<Option<Conn>>,
}

impl Origin {
    fn new(peer: OriginPeer) -> Arc<Self> {
        Arc::new(Self {
            peer,
            up: AtomicBool::new(false),
            down_reason: Mutex::new(None),
            conn: tokio::sync::Mutex::new(None),
        })
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Acquire)
    }
}

/// Metric families of the upstream side.
#[derive(Clone)]
struct UpstreamMetrics {
    /// `daihuo_upstream_up{origin}`.
    up: IntGaugeVec,
    /// `daihuo_upstream_request_seconds`: time to a complete answer from an origin.
    latency: Histogram,
    /// `daihuo_upstream_failovers_total`: a room moved to another origin.
    failovers: IntCounter,
    /// `daihuo_upstream_errors_total`: requests that got no usable answer from an origin.
    errors: IntCounter,
}

impl UpstreamMetrics {
    fn new(metrics: &origin::Metrics) -> Self {
        let up = IntGaugeVec::new(
            Opts::new(
                "daihuo_upstream_up",
                "1 when the origin answers (real requests and probes), else 0.",
            ),
            &["origin"],
        )
        .expect("static metric definition");
        let latency = Histogram::with_opts(
            HistogramOpts::new(
                "daihuo_upstream_request_seconds",
                "Time from sending a request to an origin to its complete answer (blocking \
                 requests included).",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
        )
        .expect("static metric definition");
        let failovers = IntCounter::new(
            "daihuo_upstream_failovers_total",
            "Streams moved to another origin because theirs failed.",
        )
        .expect("static metric definition");
        let errors = IntCounter::new(
            "daihuo_upstream_errors_total",
            "Requests to an origin that failed (transport error or 5xx), each retried on the next.",
        )
        .expect("static metric definition");
        metrics.register(vec![
            Box::new(up.clone()),
            Box::new(latency.clone()),
            Box::new(failovers.clone()),
            Box::new(errors.clone()),
        ]);
        Self {
            up,
            latency,
            failovers,
            errors,
        }
    }
}

/// The origins of this edge.
pub struct Upstream {
    origins: RwLock<Arc<Vec<Arc<Origin>>>>,
    connector: Connector,
    /// Room -> name of the origin serving it now.
    serving: Mutex<HashMap<String, String>>,
    /// Longest an origin may take to answer (a blocking request waits up to 3 targets there).
    request_timeout: Duration,
    probe_interval: Duration,
    probe_timeout: Duration,
    metrics: UpstreamMetrics,
    /// Bumped whenever an origin goes up or down or the list changes.
    changed: watch::Sender<u64>,
}

impl Upstream {
    /// The origins of `config`, all down until their first probe answers. `block_timeout` is
    /// how long origins hold blocking requests.
    pub fn new(
        config: &UpstreamConfig,
        block_timeout: Duration,
        metrics: &origin::Metrics,
    ) -> Result<Arc<Self>, daemon::TlsError> {
        let connector = Connector::from_config(config)?;
        let upstream = Arc::new(Self {
            origins: RwLock::new(Arc::new(Vec::new())),
            connector,
            serving: Mutex::new(HashMap::new()),
            request_timeout: block_timeout + config.connect_timeout() * 2,
            probe_interval: config.probe_interval(),
            probe_timeout: config.connect_timeout() * 2,
            metrics: UpstreamMetrics::new(metrics),
            changed: watch::Sender::new(0),
        });
        upstream.set_origins(&config.origins);
        Ok(upstream)
    }

    /// Replaces the origin list. Origins whose name and addresses are unchanged keep their
    /// health and connection; rooms on a removed origin move on their next request.
    pub fn set_origins(&self, peers: &[OriginPeer]) {
        let old = self.origins();
        let next: Vec<Arc<Origin>> = peers
            .iter()
            .map(|p| {
                old.iter()
                    .find(|o| o.peer == *p)
                    .cloned()
                    .unwrap_or_else(|| Origin::new(p.clone()))
            })
            .collect();
        for o in old
            .iter()
            .filter(|o| !next.iter().any(|n| Arc::ptr_eq(n, o)))
        {
            let _ = self.metrics.up.remove_label_values(&[&o.peer.name]);
        }
        for o in &next {
            self.metrics
                .up
                .with_label_values(&[&o.peer.name])
                .set(i64::from(o.is_up()));
        }
        let names: Vec<&str> = next.iter().map(|o| o.peer.name.as_str()).collect();
        info!(origins = ?names, "upstream origins set");
        *self.origins.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(next);
        self.changed.send_modify(|n| *n += 1);
    }

    /// The current origin list.
    pub fn origins(&self) -> Arc<Vec<Arc<Origin>>> {
        self.origins
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// The origins in `room`'s preference order (primary first).
    pub fn ranked(&self, room: &str) -> Vec<Arc<Origin>> {
        let origins = self.origins();
        let names: Vec<&str> = origins.iter().map(|o| o.peer.name.as_str()).collect();
        rendezvous::rank(&names, room)
            .into_iter()
            .map(|i| origins[i].clone())
            .collect()
    }

    /// Ready when at least one origin is up.
    pub fn readiness(&self) -> Result<(), String> {
        if self.origins().iter().any(|o| o.is_up()) {
            Ok(())
        } else {
            Err("no origin is reachable".into())
        }
    }

    /// Notified when an origin goes up or down or the list changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changed.subscribe()
    }

    /// GETs `path` (with its query) for `room` from the origin serving it, failing over to the
    /// next one up in the room's ranking when one fails (transport error, 5xx). 200 gives the
    /// body; 4xx and 503 are the origin's answer, passed on.
    pub async fn get(&self, room: &str, path: &str) -> Result<Bytes, UpstreamError> {
        let candidates = self.candidates(room);
        if candidates.is_empty() {
            return Err(UpstreamError::NoOrigin);
        }
        let mut not_found = None;
        let mut failure = None;
        for origin in candidates {
            match self.request(&origin, path, self.request_timeout).await {
                Ok((StatusCode::OK, body)) => {
                    self.serve_from(room, &origin);
                    return Ok(body);
                }
                // Another origin may have the stream (a cold standby took over).
                Ok((StatusCode::NOT_FOUND, body)) => not_found = Some(body),
                Ok((status, body)) if status.is_client_error() => {
                    return Err(refused(status, &body));
                }
                Ok((StatusCode::SERVICE_UNAVAILABLE, body)) => {
                    return Err(refused(StatusCode::SERVICE_UNAVAILABLE, &body));
                }
                Ok((status, _)) => {
                    self.mark(&origin, false, &format!("answered {status}"));
                    failure = Some(format!("{}: answered {status}", origin.peer.name));
                }
                Err(e) => {
                    self.mark(&origin, false, &e.to_string());
                    failure = Some(format!("{}: {e}", origin.peer.name));
                }
            }
            self.metrics.errors.inc();
        }
        // A 404 is final only when the room's primary said it (or could): while the primary
        // is down, a backup may just not have the stream yet (cold standby).
        let primary_down = self.ranked(room).first().is_some_and(|o| !o.is_up());
        match (not_found, failure) {
            (Some(_), _) if primary_down => Err(UpstreamError::PrimaryDown(room.to_string())),
            (Some(body), _) => Err(refused(StatusCode::NOT_FOUND, &body)),
            (None, Some(why)) => Err(UpstreamError::Failed(why)),
            (None, None) => Err(UpstreamError::NoOrigin),
        }
    }

    /// The name of the origin serving `room` now, if one is.
    pub fn serving(&self, room: &str) -> Option<String> {
        lock(&self.serving).get(room).cloned()
    }

    /// The origins to try for `room`, in order: the one serving it (if up), then the others
    /// up, by rank.
    fn candidates(&self, room: &str) -> Vec<Arc<Origin>> {
        let serving = lock(&self.serving).get(room).cloned();
        let mut up: Vec<Arc<Origin>> = self
            .ranked(room)
            .into_iter()
            .filter(|o| o.is_up())
            .collect();
        if let Some(pos) = serving.and_then(|name| up.iter().position(|o| o.peer.name == name)) {
            let current = up.remove(pos);
            up.insert(0, current);
        }
        up
    }

    /// Records that `origin` serves `room`; a change of origin is a failover.
    fn serve_from(&self, room: &str, origin: &Origin) {
        let mut serving = lock(&self.serving);
        match serving.get(room) {
            Some(name) if *name == origin.peer.name => {}
            previous => {
                if let Some(previous) = previous {
                    self.metrics.failovers.inc();
                    info!(stream = room, from = %previous, to = %origin.peer.name, "stream moved to another origin");
                }
                if serving.len() >= MAX_ROOMS {
                    serving.clear();
                }
                serving.insert(room.to_string(), origin.peer.name.clone());
            }
        }
    }

    /// One request to one origin over its shared connection (opened here if needed).
    async fn request(
        &self,
        origin: &Origin,
        path: &str,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), TransportError> {
        let started = Instant::now();
        let conn = self.connection(origin).await?;
        let result = conn.get(origin.peer.server_name(), path, timeout).await;
        match &result {
            Ok(_) => self
                .metrics
                .latency
                .observe(started.elapsed().as_secs_f64()),
            Err(_) => *origin.conn.lock().await = None,
        }
        result
    }

    /// GETs `path` from `origin` itself (no failover), allowing `timeout` for the answer.
    pub async fn get_from(
        &self,
        origin: &Origin,
        path: &str,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), TransportError> {
        self.request(origin, path, timeout).await
    }

    /// POSTs `body` to `path` on `origin` itself (no failover: events have one authority per
    /// room, see `crate::events`). A transport failure marks the origin down.
    pub async fn post(
        &self,
        origin: &Origin,
        path: &str,
        body: Bytes,
    ) -> Result<(StatusCode, Bytes), TransportError> {
        let conn = self.connection(origin).await?;
        let result = conn
            .request(
                http::Method::POST,
                origin.peer.server_name(),
                path,
                body,
                self.request_timeout,
            )
            .await;
        if let Err(e) = &result {
            *origin.conn.lock().await = None;
            self.mark(origin, false, &e.to_string());
        }
        result
    }

    /// The shared connection to `origin`, opened if needed.
    async fn connection(&self, origin: &Origin) -> Result<Conn, TransportError> {
        let mut slot = origin.conn.lock().await;
        match slot.as_ref() {
            Some(c) if c.usable() => Ok(c.clone()),
            _ => {
                let c = self
                    .connector
                    .connect(origin.peer.api, origin.peer.server_name())
                    .await?;
                *slot = Some(c.clone());
                Ok(c)
            }
        }
    }

    /// Marks `origin` up or down, logging changes of state and of the reason it is down, and
    /// notifying changes of state.
    fn mark(&self, origin: &Origin, up: bool, why: &str) {
        {
            let mut reason = lock(&origin.down_reason);
            if up {
                *reason = None;
            } else if reason.as_deref() != Some(why) {
                warn!(origin = %origin.peer.name, api = %origin.peer.api, "origin down: {why}");
                *reason = Some(why.to_string());
            }
        }
        if origin.up.swap(up, Ordering::AcqRel) != up {
            if up {
                info!(origin = %origin.peer.name, "origin up");
            }
            self.metrics
                .up
                .with_label_values(&[&origin.peer.name])
                .set(i64::from(up));
            self.changed.send_modify(|n| *n += 1);
        }
    }

    /// Probes every origin now and every `probe_interval` until `shutdown`.
    pub async fn run_probes(self: Arc<Self>, mut shutdown: daemon::Drain) {
        loop {
            let origins = self.origins();
            let probes = origins.iter().map(|o| async {
                let result = self.request(o, "/healthz", self.probe_timeout).await;
                match result {
                    Ok((StatusCode::OK, _)) => self.mark(o, true, ""),
                    Ok((status, _)) => self.mark(o, false, &format!("probe answered {status}")),
                    Err(e) => self.mark(o, false, &format!("probe: {e}")),
                }
            });
            futures::future::join_all(probes).await;
            tokio::select! {
                _ = tokio::time::sleep(self.probe_interval) => {}
                _ = shutdown.stopped() => return,
            }
        }
    }
}

/// Tries each origin of `config` once (`daihuo-edge check --connect`): connects as the edge
/// would and asks `/healthz`. One line per origin, with the reason when it failed.
pub async fn check_origins(config: &UpstreamConfig) -> Vec<(String, Result<String, String>)> {
    let h3 = config.protocol == UpstreamProtocol::H3;
    let connector = match Connector::from_config(config) {
        Ok(c) => c,
        Err(e) => return vec![("upstream".into(), Err(e.to_string()))],
    };
    let mut out = Vec::new();
    for peer in &config.origins {
        let what = format!(
            "{} (api {} over {}, server name {})",
            peer.name,
            peer.api,
            if h3 { "h3" } else { "h2" },
            peer.server_name()
        );
        let started = Instant::now();
        let result = match connector.connect(peer.api, peer.server_name()).await {
            Ok(conn) => {
                match conn
                    .get(peer.server_name(), "/healthz", config.connect_timeout() * 2)
                    .await
                {
                    Ok((StatusCode::OK, _)) => Ok(format!(
                        "ok, /healthz answered 200 in {} ms",
                        started.elapsed().as_millis()
                    )),
                    Ok((status, body)) => Err(format!(
                        "/healthz answered {status}: {}",
                        String::from_utf8_lossy(&body).trim()
                    )),
                    Err(e) => Err(e.to_string()),
                }
            }
            Err(e) => Err(e.to_string()),
        };
        out.push((what, result));
    }
    out
}

/// An origin's refusal (its body is the reason).
fn refused(status: StatusCode, body: &Bytes) -> UpstreamError {
    UpstreamError::Refused {
        status,
        reason: String::from_utf8_lossy(body).trim().to_string(),
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
