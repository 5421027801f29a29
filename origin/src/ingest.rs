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
use daemon::drain::{self, Drain, Trigger};
use futures::StreamExt;
use prometheus::IntCounter;
use srt_protocol::settings::KeySettings;
use srt_tokio::access::{RejectReason, ServerRejectReason};
use srt_tokio::options::Passphrase;
use srt_tokio::{ConnectionRequest, SocketStatistics, SrtIncoming, SrtListener, SrtSocket};
use tokio::net::UdpSocket;
use tracing::{error, info, info_span, warn, Instrument};

use crate::error::ApiError;
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::store::{Publication, Store};
use crate::streamid::{self, RelayedPublish};
use crate::transcode::TranscodeSettings;

/// A bound SRT listener, not yet accepting.
pub struct Ingest {
    listener: SrtListener,
    incoming: SrtIncoming,
    local_addr: SocketAddr,
    /// The socket's receive buffer as the kernel reports it (twice what it lets data use).
    recv_buffer: usize,
    /// Checked per connection request, so a reload's passphrase and limit apply to the next
    /// publisher (the listen address and latency are fixed at bind).
    config: Arc<ArcSwap<SrtConfig>>,
    /// The publishes in progress, so one can be ended by a takeover.
    live: Arc<LiveSessions>,
    /// Calls to the `on_publish` hook in flight, at most [`MAX_HOOK_CALLS`].
    hook_calls: Arc<tokio::sync::Semaphore>,
}

/// Concurrent `on_publish` calls per listener: a flood of publish attempts must not become a
/// flood at the operator's hook. Attempts beyond it are refused (2402), like any overload.
const MAX_HOOK_CALLS: usize = 32;
/// A publishing session that delivers no media for this long is closed, though its peer
/// still answers: an encoder that stopped sending, or a relay link whose SRT sender stalled
/// for good (seen after the sending edge was starved of CPU for seconds; the vendored
/// srt-protocol's sender then never sent again). The publisher reconnects with a fresh
/// session; an edge's relay does so at once. Long enough that a sender merely starved for
/// a few seconds is not cut off (each close is visible to players as the publish ending).
pub const MEDIA_IDLE: Duration = Duration::from_secs(10);

/// A publish in progress: who, and how to end it.
struct LiveSession {
    id: u64,
    peer: SocketAddr,
    /// Which edge publish it is, when an edge relays it.
    relay: Option<RelayedPublish>,
    stop: Trigger,
}

/// The publishes in progress of one listener, by room.
#[derive(Default)]
struct LiveSessions {
    next_id: std::sync::atomic::AtomicU64,
    rooms: std::sync::Mutex<std::collections::HashMap<String, LiveSession>>,
    /// Rooms whose publish a replacement is waiting to end: no one else may open them
    /// meanwhile (the ended publish's relay link would otherwise come straight back).
    reserved: std::sync::Mutex<std::collections::HashSet<String>>,
}

/// A room held for a replacing publish until dropped.
struct Reserved {
    live: Arc<LiveSessions>,
    room: String,
}

impl Drop for Reserved {
    fn drop(&mut self) {
        let mut reserved = self.live.reserved.lock().unwrap_or_else(|e| e.into_inner());
        reserved.remove(&self.room);
    }
}

impl LiveSessions {
    fn rooms(&self) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, LiveSession>> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn insert(
        &self,
        room: &str,
        peer: SocketAddr,
        relay: Option<RelayedPublish>,
        stop: Trigger,
    ) -> u64 {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let session = LiveSession {
            id,
            peer,
            relay,
            stop,
        };
        self.rooms().insert(room.to_string(), session);
        id
    }

    fn remove(&self, room: &str, id: u64) {
        let mut rooms = self.rooms();
        if rooms.get(room).is_some_and(|s| s.id == id) {
            rooms.remove(room);
        }
    }

    fn is_reserved(&self, room: &str) -> bool {
        let reserved = self.reserved.lock().unwrap_or_else(|e| e.into_inner());
        reserved.contains(room)
    }

    /// Tells the publish of `room` to end if `new` may replace it (see [`Replace`]) and no
    /// other replacement is under way, and holds the room for `new`; returns how, the live
    /// publish's peer and the hold.
    fn stop_for(
        self: &Arc<Self>,
        room: &str,
        new: Option<RelayedPublish>,
        config: &SrtConfig,
    ) -> Option<(Replace, SocketAddr, Reserved)> {
        let rooms = self.rooms();
        let session = rooms.get(room)?;
        let how = Replace::decide(session.relay, new, config)?;
        let mut reserved = self.reserved.lock().unwrap_or_else(|e| e.into_inner());
        if !reserved.insert(room.to_string()) {
            return None;
        }
        session.stop.start();
        let hold = Reserved {
            live: self.clone(),
            room: room.to_string(),
        };
        Some((how, session.peer, hold))
    }
}

/// Why a new publish may end a room's live one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Replace {
    /// The same relayed publish, back on a new link (the old one failed, and this side has
    /// not noticed yet).
    Relink,
    /// `srt.takeover` for a publisher with the room's key; for a relayed publish, the edge's
    /// takeover of an older one, trusted when the listener requires a passphrase (the
    /// edges' `upstream.srt_passphrase`).
    Takeover,
}

impl Replace {
    fn decide(
        live: Option<RelayedPublish>,
        new: Option<RelayedPublish>,
        config: &SrtConfig,
    ) -> Option<Self> {
        match (live, new) {
            (Some(l), Some(n)) if l.id == n.id && l.started_ms == n.started_ms => {
                Some(Self::Relink)
            }
            (_, Some(n)) => (n.takeover
                && config.passphrase.is_some()
                && live.is_none_or(|l| n.started_ms > l.started_ms))
            .then_some(Self::Takeover),
            (_, None) => config.takeover.then_some(Self::Takeover),
        }
    }
}

/// How long a takeover waits for the previous publish to let go of its room (its ladder
/// flushes first).
const TAKEOVER_WAIT: Duration = Duration::from_secs(3);

impl Ingest {
    /// Binds the UDP socket (port 0 picks a free port; see [`Ingest::local_addr`]).
    pub async fn bind(config: &SrtConfig) -> std::io::Result<Self> {
        let (listener, incoming, local_addr, recv_buffer) = listen(config.listen, config).await?;
        Ok(Self {
            listener,
            incoming,
            local_addr,
            recv_buffer,
            config: Arc::new(ArcSwap::from_pointee(config.clone())),
            live: Arc::default(),
            hook_calls: Arc::new(tokio::sync::Semaphore::new(MAX_HOOK_CALLS)),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The UDP socket's receive buffer in bytes, as the kernel reports it: Linux doubles the
    /// size asked for (`srt.udp_recv_buffer_bytes`, capped at `net.core.rmem_max`) to allow
    /// for its bookkeeping.
    pub fn udp_recv_buffer_bytes(&self) -> usize {
        self.recv_buffer
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
        mut shutdown: Drain,
    ) {
        info!(addr = %self.local_addr, "srt ingest listening");
        loop {
            let request = tokio::select! {
                r = self.incoming.incoming().next() => match r {
                    Some(r) => r,
                    None => {
                        // The listener's task ended without being asked to (srt-tokio runs
                        // one task per listener; a panic in it ends every session on the
                        // port). Publishers can only come back if it listens again.
                        error!(addr = %self.local_addr, "srt listener stopped unexpectedly; listening again");
                        match self.relisten(&mut shutdown).await {
                            Some(()) => continue,
                            None => return,
                        }
                    }
                },
                _ = shutdown.stopped() => break,
            };
            let ctx = Accept {
                destination: destination.clone(),
                metrics: metrics.clone(),
                config: self.config.load_full(),
                shutdown: shutdown.clone(),
                live: self.live.clone(),
                hook_calls: self.hook_calls.clone(),
            };
            // The handshake answer is awaited off the accept loop so one slow peer cannot
            // hold up the others.
            tokio::spawn(ctx.handle(request));
        }
        self.listener.close().await;
    }

    /// Binds the listener again on the same address, retrying while the old socket is still
    /// held by its ending sessions; `None` when shutdown came first.
    async fn relisten(&mut self, shutdown: &mut Drain) -> Option<()> {
        let config = self.config.load_full();
        loop {
            match listen(self.local_addr, &config).await {
                Ok((listener, incoming, _, recv_buffer)) => {
                    // The old listener's task is gone: dropping it (not `close`, which
                    // expects the task alive) is all that is left to do.
                    self.listener = listener;
                    self.incoming = incoming;
                    self.recv_buffer = recv_buffer;
                    info!(addr = %self.local_addr, "srt ingest listening again");
                    return Some(());
                }
                Err(e) => warn!(addr = %self.local_addr, "srt listen again: {e}; retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                _ = shutdown.stopped() => return None,
            }
        }
    }
}

/// An SRT listener on `addr` with `config`'s receiver latency and UDP receive buffer; also
/// returns the bound address and the buffer size the kernel reports.
///
/// The socket is made here rather than by srt-tokio, which would set a 64 KiB buffer: one
/// socket carries every publisher on the port.
async fn listen(
    addr: SocketAddr,
    config: &SrtConfig,
) -> std::io::Result<(SrtListener, SrtIncoming, SocketAddr, usize)> {
    let socket = daemon::net::udp_socket(addr, |s| {
        s.set_recv_buffer_size(config.udp_recv_buffer_bytes)
    })?;
    let recv_buffer = socket2::SockRef::from(&socket).recv_buffer_size()?;
    let socket = UdpSocket::from_std(socket)?;
    let local_addr = socket.local_addr()?;
    // Linux reports twice the size it granted: less than twice the ask means rmem_max capped it.
    let asked = config.udp_recv_buffer_bytes;
    if recv_buffer < asked.saturating_mul(2) {
        warn!(
            addr = %local_addr,
            "srt.udp_recv_buffer_bytes = {asked} but the kernel allows {} (net.core.rmem_max); \
             bursts of ingest may be dropped: raise it with `sysctl -w net.core.rmem_max={asked}`",
            recv_buffer / 2
        );
    }
    let (listener, incoming) = SrtListener::builder()
        .latency(Duration::from_millis(config.latency_ms))
        .socket(socket)
        .bind(local_addr)
        .await?;
    Ok((listener, incoming, local_addr, recv_buffer))
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
    /// bytes into `received`. `relayed`: the publisher is an edge relaying its ingest (its
    /// clock stamps are believed, see [`crate::clock`]).
    fn run(
        self: Arc<Self>,
        session: Self::Session,
        socket: SrtSocket,
        received: Received,
        relayed: bool,
        shutdown: Drain,
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

/// Readings of a publisher's SRT statistics the uplink's loss ratio spans (one a second).
const LOSS_WINDOW: usize = 5;

/// Copies a publisher's SRT statistics (cumulative, every second) into the stream's series,
/// and keeps the latest in `latest` for the publish's last log line.
async fn srt_statistics(
    mut stats: impl futures::Stream<Item = SocketStatistics> + Unpin,
    metrics: Metrics,
    room: String,
    latest: Arc<std::sync::Mutex<Option<SocketStatistics>>>,
) {
    let lost = metrics.srt_lost.with_label_values(&[&room]);
    let retransmitted = metrics.srt_retransmitted.with_label_values(&[&room]);
    let dropped = metrics.srt_dropped.with_label_values(&[&room]);
    let rtt = metrics.srt_rtt.with_label_values(&[&room]);
    let loss_ratio = metrics.srt_loss_ratio.with_label_values(&[&room]);
    let mut last = (0, 0, 0);
    // (lost, sent) so far at each of the last readings: a packet sent arrived the first
    // time (unique) or was lost.
    let mut window = std::collections::VecDeque::with_capacity(LOSS_WINDOW + 1);
    while let Some(s) = stats.next().await {
        lost.inc_by(s.rx_loss_data.saturating_sub(last.0));
        retransmitted.inc_by(s.rx_retransmit_data.saturating_sub(last.1));
        dropped.inc_by(s.rx_dropped_data.saturating_sub(last.2));
        last = (s.rx_loss_data, s.rx_retransmit_data, s.rx_dropped_data);
        rtt.set(s.rx_average_rtt.as_secs_f64());
        window.push_back((s.rx_loss_data, s.rx_loss_data + s.rx_unique_data));
        if window.len() > LOSS_WINDOW + 1 {
            window.pop_front();
        }
        if let (Some(first), Some(now)) = (window.front(), window.back()) {
            let sent = now.1.saturating_sub(first.1);
            if sent > 0 {
                loss_ratio.set(now.0.saturating_sub(first.0) as f64 / sent as f64);
            }
        }
        *latest.lock().unwrap_or_else(|e| e.into_inner()) = Some(s);
    }
}

/// The publisher's uplink over the whole publish, logged when it ends.
fn log_link(stats: Option<&SocketStatistics>) {
    let Some(s) = stats else { return };
    let sent = s.rx_loss_data + s.rx_unique_data;
    info!(
        audit = "publish",
        packets = sent,
        lost = s.rx_loss_data,
        loss_percent = format!("{:.2}", 100.0 * s.rx_loss_data as f64 / sent.max(1) as f64),
        retransmitted = s.rx_retransmit_data,
        dropped = s.rx_dropped_data,
        belated = s.rx_belated_data,
        rtt_ms = format!("{:.2}", s.rx_average_rtt.as_secs_f64() * 1000.0),
        "publish uplink"
    );
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
        self.store.publish(room).map_err(ApiError::from)
    }

    async fn run(
        self: Arc<Self>,
        publication: Publication,
        mut socket: SrtSocket,
        received: Received,
        relayed: bool,
        mut shutdown: Drain,
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
            relayed,
        );
        let mut last_media = tokio::time::Instant::now();
        loop {
            tokio::select! {
                packet = socket.next() => match packet {
                    Some(Ok((_, data))) => {
                        last_media = tokio::time::Instant::now();
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
                () = tokio::time::sleep_until(last_media + MEDIA_IDLE) => {
                    warn!(
                        "no media for {} s from a session that is still up: closing it (the \
                         publisher reconnects)",
                        MEDIA_IDLE.as_secs()
                    );
                    break;
                }
                _ = shutdown.stopped() => break,
            }
        }
        // Let the ladder flush what it holds before the renditions close.
        pipeline.end_input(unix_ms());
        while let Some(output) = ladder.recv().await {
            pipeline.ladder_output(output, unix_ms());
        }
        pipeline.finish();
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
    shutdown: Drain,
    live: Arc<LiveSessions>,
    hook_calls: Arc<tokio::sync::Semaphore>,
}

impl<D: Destination> Accept<D> {
    async fn handle(self, request: ConnectionRequest) {
        let peer = daemon::net::canonical(request.remote());
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
        let key = match self.key_settings(&request, &room) {
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
        if let Some(url) = &self.config.on_publish {
            let attempt = crate::hook::Attempt {
                room: &room,
                user: publish.user.as_deref(),
                key: publish.key.as_deref(),
                peer,
            };
            let Ok(_call) = self.hook_calls.clone().try_acquire_owned() else {
                let why = format!("{MAX_HOOK_CALLS} on_publish calls already in flight");
                return self
                    .refuse(request, "auth", &room, ServerRejectReason::Overload, why)
                    .await;
            };
            let timeout = Duration::from_millis(self.config.on_publish_timeout_ms);
            if let Err(why) = crate::hook::ask(url, timeout, &attempt).await {
                let why = why.to_string();
                return self
                    .refuse(request, "auth", &room, ServerRejectReason::Forbidden, why)
                    .await;
            }
        }
        let session = match self.open(&room, publish.relay).await {
            Ok(p) => p,
            Err(why) => {
                return self
                    .refuse(request, "publish", &room, ServerRejectReason::Conflict, why)
                    .await;
            }
        };
        let encrypted = key.is_some();
        let mut socket = match request.accept(key).await {
            Ok(s) => s,
            Err(e) if encrypted => {
                // The listener refused the caller's key material (SRT reject BADSECRET or
                // UNSECURE): srt-tokio only reports the handshake's end ("{e}").
                warn!(audit = "auth", %peer, stream = room, "publish refused: encryption handshake failed, wrong or no passphrase ({e})");
                self.metrics.publish_refused.inc();
                return;
            }
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
            let latest = Arc::default();
            let stats = tokio::spawn(srt_statistics(
                stats,
                metrics.clone(),
                room.clone(),
                Arc::clone(&latest),
            ));
            let received = Received::new(&metrics, &room);
            // The publish ends on shutdown or when a takeover stops it.
            let (stop, stopped) = drain::channel();
            let id = self.live.insert(&room, peer, publish.relay, stop.clone());
            let mut shutdown = self.shutdown;
            let forward = tokio::spawn(async move {
                shutdown.stopped().await;
                stop.start();
            });
            self.destination
                .run(session, socket, received, publish.relay.is_some(), stopped)
                .await;
            forward.abort();
            self.live.remove(&room, id);
            stats.abort();
            log_link(latest.lock().unwrap_or_else(|e| e.into_inner()).as_ref());
            metrics.streams_live.dec();
            metrics.forget_stream(&room);
        }
        .instrument(span)
        .await;
    }

    /// Claims `room`; a live publish that the new one may replace ([`Replace`]) is ended
    /// first.
    async fn open(&self, room: &str, relay: Option<RelayedPublish>) -> Result<D::Session, String> {
        let busy = match self.destination.open(room) {
            Ok(_) if self.live.is_reserved(room) => {
                return Err(format!("room {room} is being taken over"));
            }
            Ok(session) => return Ok(session),
            Err(e) => e.to_string(),
        };
        let Some((how, previous, _hold)) = self.live.stop_for(room, relay, &self.config) else {
            return Err(busy);
        };
        match how {
            Replace::Relink => {
                info!(%previous, stream = room, "the relayed publish is back on a new link; ending its old one")
            }
            Replace::Takeover => {
                warn!(audit = "takeover", %previous, stream = room, "ending the live publish for a new publisher")
            }
        }
        let deadline = tokio::time::Instant::now() + TAKEOVER_WAIT;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
            if let Ok(session) = self.destination.open(room) {
                return Ok(session);
            }
        }
        Err(format!(
            "{busy}; the previous publish did not end within {TAKEOVER_WAIT:?}"
        ))
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
        let peer = daemon::net::canonical(request.remote());
        warn!(audit, %peer, stream = room, "publish refused: {why}");
        self.metrics.publish_refused.inc();
        let _ = request.reject(RejectReason::Server(reason)).await;
    }

    /// The encryption this publisher must use: none, or the room's passphrase (its own, else
    /// the listener's).
    fn key_settings(
        &self,
        request: &ConnectionRequest,
        room: &str,
    ) -> Result<Option<KeySettings>, &'static str> {
        let configured = self
            .config
            .passphrases
            .get(room)
            .or(self.config.passphrase.as_ref());
        let Some(passphrase) = configured else {
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
pub fn unix_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// Counts publishes it is asked to open, and ends each at once.
    #[derive(Default)]
    struct Counting(AtomicUsize);

    impl Destination for Counting {
        type Session = ();

        fn live_count(&self) -> usize {
            0
        }

        fn open(&self, _room: &str) -> Result<(), ApiError> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }

        async fn run(
            self: Arc<Self>,
            _session: (),
            socket: SrtSocket,
            _received: Received,
            _relayed: bool,
            _shutdown: Drain,
        ) {
            drop(socket);
        }
    }

    #[tokio::test]
    async fn a_listener_that_dies_listens_again() {
        let config = SrtConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            ..SrtConfig::default()
        };
        let mut ingest = Ingest::bind(&config).await.unwrap();
        let addr = ingest.local_addr();
        // Its task ends as if it had panicked: the accept loop sees the requests end.
        ingest.listener.close().await;
        let destination = Arc::new(Counting::default());
        let (stop, shutdown) = drain::channel();
        let running = tokio::spawn(ingest.run(destination.clone(), Metrics::new(), shutdown));
        let call = SrtSocket::builder().call(addr, Some("#!::r=live/demo,m=publish"));
        let socket = tokio::time::timeout(Duration::from_secs(10), call)
            .await
            .expect("a caller is answered")
            .expect("a caller is accepted");
        drop(socket);
        assert_eq!(destination.0.load(Ordering::SeqCst), 1);
        stop.start();
        tokio::time::timeout(Duration::from_secs(10), running)
            .await
            .expect("the ingest stops on shutdown")
            .unwrap();
    }

    #[test]
    fn who_may_replace_a_live_publish() {
        let relayed = |started_ms, id, takeover| {
            Some(RelayedPublish {
                started_ms,
                id,
                takeover,
            })
        };
        let plain = SrtConfig::default();
        let with_passphrase = SrtConfig {
            passphrase: Some("edges-share-this".into()),
            ..SrtConfig::default()
        };
        let takeover = SrtConfig {
            takeover: true,
            ..SrtConfig::default()
        };
        let decide = |live, new, config: &SrtConfig| Replace::decide(live, new, config);
        // The same relayed publish on a new link, whatever the policy.
        let live = relayed(1000, 7, false);
        assert_eq!(decide(live, live, &plain), Some(Replace::Relink));
        // Another relayed publish: only an edge's takeover, only newer, only with a passphrase.
        assert_eq!(
            decide(live, relayed(2000, 8, false), &with_passphrase),
            None
        );
        assert_eq!(
            decide(live, relayed(2000, 8, true), &with_passphrase),
            Some(Replace::Takeover)
        );
        assert_eq!(decide(live, relayed(2000, 8, true), &plain), None);
        assert_eq!(decide(live, relayed(500, 8, true), &with_passphrase), None);
        assert_eq!(
            decide(None, relayed(500, 8, true), &with_passphrase),
            Some(Replace::Takeover)
        );
        // An encoder: the listener's own takeover setting.
        assert_eq!(decide(live, None, &plain), None);
        assert_eq!(decide(live, None, &takeover), Some(Replace::Takeover));
        assert_eq!(decide(None, None, &takeover), Some(Replace::Takeover));
    }

    #[tokio::test]
    async fn the_udp_receive_buffer_is_the_configured_size() {
        // Sizes under a stock rmem_max (212,992), so the kernel grants them whole; it reports
        // twice the size. Its default (rmem_default, 212,992) would read 425,984.
        for asked in [65_536, 100_000] {
            let config = SrtConfig {
                listen: "127.0.0.1:0".parse().unwrap(),
                udp_recv_buffer_bytes: asked,
                ..SrtConfig::default()
            };
            let ingest = Ingest::bind(&config).await.unwrap();
            assert_eq!(ingest.udp_recv_buffer_bytes(), 2 * asked);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn hook_calls_in_flight_are_capped() {
        // A hook that takes every connection and never answers; it keeps the most calls it
        // had open at once (a call ends when the ingest gives up on it and closes).
        let hook = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let config = SrtConfig {
            listen: "127.0.0.1:0".parse().unwrap(),
            on_publish: Some(format!("http://{}/", hook.local_addr().unwrap())),
            on_publish_timeout_ms: 3000,
            ..SrtConfig::default()
        };
        let open = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (open2, most2) = (open.clone(), most.clone());
        let hook_task = tokio::spawn(async move {
            while let Ok((mut s, _)) = hook.accept().await {
                let now = open2.fetch_add(1, Ordering::SeqCst) + 1;
                most2.fetch_max(now, Ordering::SeqCst);
                let open3 = open2.clone();
                tokio::spawn(async move {
                    use tokio::io::AsyncReadExt;
                    let mut buf = [0u8; 1024];
                    while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {}
                    open3.fetch_sub(1, Ordering::SeqCst);
                });
            }
        });
        let ingest = Ingest::bind(&config).await.unwrap();
        let addr = ingest.local_addr();
        let destination = Arc::new(Counting::default());
        let (_stop, shutdown) = drain::channel();
        tokio::spawn(ingest.run(destination.clone(), Metrics::new(), shutdown));
        let callers: Vec<_> = (0..MAX_HOOK_CALLS + 8)
            .map(|i| {
                let id = format!("#!::r=live/room{i},m=publish");
                tokio::spawn(async move {
                    SrtSocket::builder()
                        .call(addr, Some(id.as_str()))
                        .await
                        .is_ok()
                })
            })
            .collect();
        let mut admitted = 0;
        for caller in callers {
            admitted += usize::from(caller.await.unwrap());
        }
        // Every caller was refused (the hook never allowed one), and the hook never had more
        // calls open at once than the cap.
        assert_eq!(admitted, 0);
        assert_eq!(destination.0.load(Ordering::SeqCst), 0);
        let most = most.load(Ordering::SeqCst);
        assert!(
            (1..=MAX_HOOK_CALLS).contains(&most),
            "{most} hook calls at once"
        );
        hook_task.abort();
    }
}
