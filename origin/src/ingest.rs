//! SRT ingest: the listener that publishers' encoders call.
//!
//! Each connection request is checked before the handshake completes (stream id, passphrase,
//! stream limit, room not already live), so a refused publisher gets an SRT reject code, not a
//! dropped session. An accepted connection gets one task that reads the socket and feeds a
//! [`Destination`]: here [`Local`], which drives the stream's [`Pipeline`] into the store; the
//! edge's relay is another. A slow or dead publisher costs only its task.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use arc_swap::ArcSwap;
use codec::hls::segmenter::SegmenterOptions;
use conf::SrtConfig;
use futures::StreamExt;
use prometheus::IntCounter;
use srt_protocol::settings::KeySettings;
use srt_tokio::access::{RejectReason, ServerRejectReason};
use srt_tokio::options::Passphrase;
use srt_tokio::{ConnectionRequest, SocketStatistics, SrtIncoming, SrtListener, SrtSocket};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tracing::{info, info_span, warn, Instrument};

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::store::{Publication, Store};
use crate::streamid;
use crate::transcode::TranscodeSettings;

/// A bound SRT listener, not yet accepting.
pub struct Ingest {
    listener: SrtListener,
    incoming: SrtIncoming,
    local_addr: SocketAddr,
    /// Checked per connection request, so a reload's passphrase and limit apply to the next
    /// publisher (the listen address and latency are fixed at bind).
    config: Arc<ArcSwap<SrtConfig>>,
}

impl Ingest {
    /// Binds the UDP socket (port 0 picks a free port; see [`Ingest::local_addr`]).
    pub async fn bind(config: &SrtConfig) -> std::io::Result<Self> {
        let socket = UdpSocket::bind(config.listen).await?;
        let local_addr = socket.local_addr()?;
        let latency = Duration::from_millis(config.latency_ms);
        let (listener, incoming) = SrtListener::builder()
            .latency(latency)
            .socket(socket)
            .bind(local_addr)
            .await?;
        Ok(Self {
            listener,
            incoming,
            local_addr,
            config: Arc::new(ArcSwap::from_pointee(config.clone())),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The settings new connection requests are checked against; store a new value to reload.
    pub fn config(&self) -> Arc<ArcSwap<SrtConfig>> {
        self.config.clone()
    }

    /// Accepts publishers into `destination` until `shutdown` turns true; live publishes then
    /// end cleanly.
    pub async fn run<D: Destination>(
        mut self,
        destination: Arc<D>,
        metrics: Metrics,
        mut shutdown: watch::Receiver<bool>,
    ) {
        info!(addr = %self.local_addr, "srt ingest listening");
        loop {
            let request = tokio::select! {
                r = self.incoming.incoming().next() => match r {
                    Some(r) => r,
                    None => break,
                },
                _ = crate::serve::stopped(&mut shutdown) => break,
            };
            let ctx = Accept {
                destination: destination.clone(),
                metrics: metrics.clone(),
                config: self.config.load_full(),
                shutdown: shutdown.clone(),
            };
            // The handshake answer is awaited off the accept loop so one slow peer cannot
            // hold up the others.
            tokio::spawn(ctx.handle(request));
        }
        self.listener.close().await;
    }
}

/// Where an accepted publish goes.
pub trait Destination: Send + Sync + 'static {
    /// A publish in progress; it holds its room until dropped.
    type Session: Send + 'static;

    /// How many publishes are live now (checked against `srt.max_streams`).
    fn live_count(&self) -> usize;

    /// Claims `room` for a new publisher; fails when it is already being published.
    fn open(&self, room: &str) -> Result<Self::Session, ApiError>;

    /// Reads the publisher's `socket` until it leaves or `shutdown` turns true, counting the
    /// bytes into `received`.
    fn run(
        self: Arc<Self>,
        session: Self::Session,
        socket: SrtSocket,
        received: Received,
        shutdown: watch::Receiver<bool>,
    ) -> impl Future<Output = ()> + Send;
}

/// Counts a publisher's bytes: into the total and into its stream's series.
#[derive(Clone)]
pub struct Received {
    total: IntCounter,
    stream: IntCounter,
}

impl Received {
    fn new(metrics: &Metrics, room: &str) -> Self {
        Self {
            total: metrics.ingest_bytes.clone(),
            stream: metrics.stream_ingest_bytes.with_label_values(&[room]),
        }
    }

    pub fn add(&self, bytes: usize) {
        self.total.inc_by(bytes as u64);
        self.stream.inc_by(bytes as u64);
    }
}

/// Copies a publisher's SRT statistics (cumulative, every second) into the stream's series.
async fn srt_statistics(
    mut stats: impl futures::Stream<Item = SocketStatistics> + Unpin,
    metrics: Metrics,
    room: String,
) {
    let lost = metrics.srt_lost.with_label_values(&[&room]);
    let retransmitted = metrics.srt_retransmitted.with_label_values(&[&room]);
    let dropped = metrics.srt_dropped.with_label_values(&[&room]);
    let rtt = metrics.srt_rtt.with_label_values(&[&room]);
    let mut last = (0, 0, 0);
    while let Some(s) = stats.next().await {
        lost.inc_by(s.rx_loss_data.saturating_sub(last.0));
        retransmitted.inc_by(s.rx_retransmit_data.saturating_sub(last.1));
        dropped.inc_by(s.rx_dropped_data.saturating_sub(last.2));
        last = (s.rx_loss_data, s.rx_retransmit_data, s.rx_dropped_data);
        rtt.set(s.rx_average_rtt.as_secs_f64());
    }
}

/// Packages publishes here, into the store (the origin, or the single-box edge).
pub struct Local {
    pub store: Arc<Store>,
    pub metrics: Metrics,
    /// The ladder for new publishes (a reload stores a new one; live streams keep theirs).
    pub settings: Arc<ArcSwap<TranscodeSettings>>,
}

impl Destination for Local {
    type Session = Publication;

    fn live_count(&self) -> usize {
        self.store.live_count()
    }

    fn open(&self, room: &str) -> Result<Publication, ApiError> {
        self.store.publish(room)
    }

    async fn run(
        self: Arc<Self>,
        publication: Publication,
        mut socket: SrtSocket,
        received: Received,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let options = SegmenterOptions {
            segment_target: self.store.options().segment_target,
            part_target: self.store.options().part_target,
        };
        let (mut pipeline, mut ladder) = Pipeline::new(
            publication,
            options,
            self.settings.load_full(),
            self.metrics.clone(),
        );
        loop {
            tokio::select! {
                packet = socket.next() => match packet {
                    Some(Ok((_, data))) => {
                        received.add(data.len());
                        pipeline.push(&data, unix_ms());
                    }
                    Some(Err(e)) => {
                        warn!("srt receive error: {e}");
                        break;
                    }
                    None => break,
                },
                Some(output) = ladder.recv() => pipeline.ladder_output(output, unix_ms()),
                _ = crate::serve::stopped(&mut shutdown) => break,
            }
        }
        // Let the ladder flush what it holds before the renditions close.
        pipeline.end_input(unix_ms());
        while let Some(output) = ladder.recv().await {
            pipeline.ladder_output(output, unix_ms());
        }
        pipeline.finish(unix_ms());
        let stats = pipeline.stats();
        info!(
            audit = "publish",
            bytes = stats.bytes_in,
            frames = stats.frames,
            parts = stats.parts,
            warnings = stats.warnings,
            dropped = stats.dropped,
            "publish ended"
        );
        let _ = socket.close_and_finish().await;
    }
}

struct Accept<D> {
    destination: Arc<D>,
    metrics: Metrics,
    config: Arc<SrtConfig>,
    shutdown: watch::Receiver<bool>,
}

impl<D: Destination> Accept<D> {
    async fn handle(self, request: ConnectionRequest) {
        let peer = request.remote();
        let id = request.stream_id().map(|s| s.to_string());
        let publish = match streamid::parse(id.as_deref()) {
            Ok(p) => p,
            Err(e) => {
                let why = e.to_string();
                return self
                    .refuse(request, "publish", "", ServerRejectReason::BadRequest, why)
                    .await;
            }
        };
        let room = publish.room.clone();
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if let Err(why) = crate::auth::check_publish(&self.config, &publish, now) {
            let why = why.to_string();
            return self
                .refuse(
                    request,
                    "auth",
                    &room,
                    ServerRejectReason::Unauthorized,
                    why,
                )
                .await;
        }
        let key = match self.key_settings(&request) {
            Ok(key) => key,
            Err(why) => {
                let why = why.to_string();
                return self
                    .refuse(
                        request,
                        "auth",
                        &room,
                        ServerRejectReason::Unauthorized,
                        why,
                    )
                    .await;
            }
        };
        let live = self.destination.live_count();
        if live >= self.config.max_streams {
            let why = format!("srt.max_streams reached ({live} live)");
            return self
                .refuse(request, "publish", &room, ServerRejectReason::Overload, why)
                .await;
        }
        let session = match self.destination.open(&room) {
            Ok(p) => p,
            Err(e) => {
                let why = e.to_string();
                return self
                    .refuse(request, "publish", &room, ServerRejectReason::Conflict, why)
                    .await;
            }
        };
        let mut socket = match request.accept(key).await {
            Ok(s) => s,
            Err(e) => {
                warn!(%peer, stream = room, "srt handshake failed: {e}");
                return;
            }
        };
        let span = info_span!("publish", stream = %room, %peer);
        let metrics = self.metrics.clone();
        async move {
            info!(
                audit = "publish",
                user = publish.user.as_deref().unwrap_or(""),
                "publish started"
            );
            metrics.streams_live.inc();
            metrics.publishes.inc();
            let stats = socket.statistics().clone();
            let stats = tokio::spawn(srt_statistics(stats, metrics.clone(), room.clone()));
            let received = Received::new(&metrics, &room);
            self.destination
                .run(session, socket, received, self.shutdown)
                .await;
            stats.abort();
            metrics.streams_live.dec();
            metrics.forget_stream(&room);
        }
        .instrument(span)
        .await;
    }

    /// Rejects a connection request with `reason`, logged for `audit` with the peer.
    async fn refuse(
        &self,
        request: ConnectionRequest,
        audit: &'static str,
        room: &str,
        reason: ServerRejectReason,
        why: String,
    ) {
        let peer = request.remote();
        warn!(audit, %peer, stream = room, "publish refused: {why}");
        self.metrics.publish_refused.inc();
        let _ = request.reject(RejectReason::Server(reason)).await;
    }

    /// The encryption this publisher must use: none, or the configured passphrase.
    fn key_settings(
        &self,
        request: &ConnectionRequest,
    ) -> Result<Option<KeySettings>, &'static str> {
        let Some(passphrase) = &self.config.passphrase else {
            return Ok(None);
        };
        // The caller's announced key size (Unspecified means libsrt's default, 16 bytes). A
        // caller without key material, or with another passphrase, is refused by the
        // handshake itself (SRT reject UNSECURE / BADSECRET).
        let passphrase =
            Passphrase::try_from(passphrase.clone()).map_err(|_| "srt.passphrase is invalid")?;
        Ok(Some(KeySettings {
            key_size: request.key_size(),
            passphrase,
        }))
    }
}

/// Milliseconds since the Unix epoch (program-date-time and sequence-number seeding).
pub(crate) fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
