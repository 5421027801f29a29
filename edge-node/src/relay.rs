//! SRT ingest relay: the edge terminates the streamer's SRT session and forwards its transport
//! stream to origins as an SRT caller.
//!
//! A publish gets one link per origin it feeds: its primary, and its backup too when
//! `upstream.standby = "hot"` (see [`crate::upstream::rendezvous`]). Each link is a task with
//! a byte-bounded buffer: the streamer's reads never wait for an origin. When a link fails
//! (SRT error, or the origin's probe says it is down) the link reconnects, to the next origin
//! in the room's ranking that no other link of the publish uses and that is up, else to the
//! same one, with backoff; what arrived meanwhile is sent first, oldest dropped beyond
//! `upstream.relay_buffer_bytes`. The streamer's session stays open throughout.
//!
//! Each link names its publish in the stream id ([`RelayedPublish`]: start time, random id,
//! and whether this edge allows takeover), so an origin lets the same publish back in on a
//! new link at once, and lets a newer publish that took over at another edge replace it. A
//! link the origin keeps refusing as a conflict for [`CONFLICT_GRACE`] means another publish
//! holds the room there (a takeover elsewhere, or a second publisher where takeover is off):
//! the publish then ends, so the encoder is not left streaming to no one.
//!
//! The relay does not demux: origins do, and package. It only reads PES headers' timestamps
//! to stamp the stream's clock where it entered ([`codec::clock::Stamper`]): a stamp packet
//! goes to every link before the first media and about once a second, and a link that
//! (re)connects sends the current stamp first, so every origin places the same media at the
//! same wall-clock time and numbers its segments alike.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use codec::clock::{Stamp, Stamper};
use conf::{SrtConfig, Standby, UpstreamConfig};
use futures::{SinkExt, StreamExt};
use origin::ingest::{Destination, Received};
use origin::streamid::{RelayedPublish, RELAY_KEY};
use origin::{ApiError, Metrics};
use prometheus::{IntCounter, IntGauge};
use srt_protocol::protocol::pending_connection::ConnectionReject;
use srt_tokio::access::{RejectReason, ServerRejectReason};
use srt_tokio::options::{ByteCount, Passphrase};
use srt_tokio::SrtSocket;
use tokio::sync::{watch, Notify};
use tracing::{info, warn, Instrument};

use crate::upstream::{Origin, Upstream};

/// Longest wait between reconnect attempts of a link.
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// How long a link whose origin stopped acknowledging is kept before it counts as failed
/// (SRT's peer idle timeout); the origin's probe usually says so sooner.
const PEER_IDLE: Duration = Duration::from_secs(3);
/// How long an ended publish's links may take to hand over what they still buffer.
const FLUSH: Duration = Duration::from_secs(2);
/// How long a link may be refused as a conflict before its publish ends: longer than an
/// origin takes to notice that a publish's previous link is gone (SRT's peer idle timeout,
/// 5 s), which also answers "conflict" until then.
const CONFLICT_GRACE: Duration = Duration::from_secs(8);
/// Send buffer of a link, in payload bytes: 8192 packets, libsrt's default (srt-protocol's
/// is 32 packets, which a burst from the link buffer overflows at once, e.g. after this
/// process was short of CPU for a moment).
const LINK_SEND_BUFFER: ByteCount = ByteCount(8192 * 1456);

/// The relay's metric families.
#[derive(Clone)]
struct RelayMetrics {
    /// `daihuo_relay_links_up`: links connected to an origin now.
    links_up: IntGauge,
    /// `daihuo_relay_connects_total`: links (re)connected.
    connects: IntCounter,
    /// `daihuo_relay_dropped_bytes_total`: bytes dropped from full link buffers.
    dropped: IntCounter,
}

impl RelayMetrics {
    fn new(metrics: &Metrics) -> Self {
        let links_up = IntGauge::new(
            "daihuo_relay_links_up",
            "SRT links from this edge to origins that are connected now.",
        )
        .expect("static metric definition");
        let connects = IntCounter::new(
            "daihuo_relay_connects_total",
            "SRT links to origins (re)connected.",
        )
        .expect("static metric definition");
        let dropped = IntCounter::new(
            "daihuo_relay_dropped_bytes_total",
            "Transport-stream bytes dropped because an origin link stayed down longer than its \
             buffer lasts.",
        )
        .expect("static metric definition");
        metrics.register(vec![
            Box::new(links_up.clone()),
            Box::new(connects.clone()),
            Box::new(dropped.clone()),
        ]);
        Self {
            links_up,
            connects,
            dropped,
        }
    }
}

/// Relays publishes to origins.
pub struct Relay {
    upstream: Arc<Upstream>,
    /// Links per publish: 2 for hot standby, 1 for cold.
    links: usize,
    passphrase: Option<Passphrase>,
    buffer_bytes: usize,
    latency: Duration,
    connect_timeout: Duration,
    /// Rooms being published through this edge.
    live: Arc<Mutex<HashSet<String>>>,
    /// The edge's SRT settings as reloaded: whether its publishes may take over.
    srt: Arc<ArcSwap<SrtConfig>>,
    metrics: RelayMetrics,
}

impl Relay {
    /// `srt` is the edge's ingest settings (their latency is the links'; `takeover` is read
    /// per publish).
    pub fn new(
        upstream: Arc<Upstream>,
        config: &UpstreamConfig,
        srt: Arc<ArcSwap<SrtConfig>>,
        metrics: &Metrics,
    ) -> Self {
        let latency = Duration::from_millis(srt.load().latency_ms);
        Self {
            upstream,
            links: match config.standby {
                Standby::Hot => 2,
                Standby::Cold => 1,
            },
            // Validated by conf (10 to 79 characters), so this only drops an impossible value.
            passphrase: config
                .srt_passphrase
                .clone()
                .and_then(|p| Passphrase::try_from(p).ok()),
            buffer_bytes: config.relay_buffer_bytes,
            latency,
            connect_timeout: config.connect_timeout() * 3,
            live: Arc::default(),
            srt,
            metrics: RelayMetrics::new(metrics),
        }
    }

    /// The origin link `slot` of `room` should use, avoiding `failed` (the origin it just
    /// lost) when another is up: its own rank's origin, else one ranked past every link's own.
    fn pick(&self, room: &str, slot: usize, failed: Option<&str>) -> Option<Arc<Origin>> {
        let ranked = self.upstream.ranked(room);
        let own = ranked.get(slot)?;
        let spare = ranked.iter().skip(self.links);
        std::iter::once(own)
            .chain(spare)
            .find(|o| o.is_up() && Some(o.peer.name.as_str()) != failed)
            .or(Some(own))
            .cloned()
    }
}

/// A room claimed by a publish through this edge; released when dropped.
pub struct Claim {
    room: String,
    live: Arc<Mutex<HashSet<String>>>,
}

impl Drop for Claim {
    fn drop(&mut self) {
        lock(&self.live).remove(&self.room);
    }
}

impl Destination for Relay {
    type Session = Claim;

    fn live_count(&self) -> usize {
        lock(&self.live).len()
    }

    fn open(&self, room: &str) -> Result<Claim, ApiError> {
        if !lock(&self.live).insert(room.to_string()) {
            return Err(ApiError::Conflict(format!("room {room} is already live")));
        }
        Ok(Claim {
            room: room.to_string(),
            live: self.live.clone(),
        })
    }

    async fn run(
        self: Arc<Self>,
        claim: Claim,
        mut socket: SrtSocket,
        received: Received,
        _relayed: bool,
        mut shutdown: daemon::Drain,
    ) {
        let room = claim.room.clone();
        let publish = RelayedPublish::new(self.srt.load().takeover);
        let mut stamper = Stamper::new();
        // The current stamp, for links that connect later.
        let clock: Arc<Mutex<Option<Stamp>>> = Arc::default();
        // Told by a link that another publish holds the room at its origin.
        let refused = Arc::new(Notify::new());
        // One link per origin at most (a hot standby with one origin has no backup to feed).
        let links = self.links.min(self.upstream.origins().len()).max(1);
        let buffers: Vec<Arc<Buffer>> = (0..links)
            .map(|_| Arc::new(Buffer::new(self.buffer_bytes)))
            .collect();
        let tasks: Vec<_> = buffers
            .iter()
            .enumerate()
            .map(|(slot, buffer)| {
                let link = Link {
                    relay: self.clone(),
                    room: room.clone(),
                    publish,
                    slot,
                    buffer: buffer.clone(),
                    refused: refused.clone(),
                    clock: clock.clone(),
                };
                tokio::spawn(link.run().in_current_span())
            })
            .collect();
        let mut last_media = tokio::time::Instant::now();
        loop {
            tokio::select! {
                packet = socket.next() => match packet {
                    Some(Ok((_, data))) => {
                        last_media = tokio::time::Instant::now();
                        received.add(data.len());
                        if let Some(stamp) = stamper.observe(&data, origin::ingest::unix_ms()) {
                            *lock(&clock) = stamper.latest();
                            let stamp = Bytes::copy_from_slice(&stamp);
                            for b in &buffers {
                                let dropped = b.push(stamp.clone());
                                self.metrics.dropped.inc_by(dropped as u64);
                            }
                        }
                        for b in &buffers {
                            let dropped = b.push(data.clone());
                            self.metrics.dropped.inc_by(dropped as u64);
                        }
                    }
                    Some(Err(e)) => {
                        warn!("srt receive error: {e}");
                        break;
                    }
                    None => break,
                },
                _ = shutdown.stopped() => break,
                () = tokio::time::sleep_until(last_media + origin::ingest::MEDIA_IDLE) => {
                    warn!(
                        audit = "publish",
                        "ending the publish: no media for {} s from a session that is still up",
                        origin::ingest::MEDIA_IDLE.as_secs()
                    );
                    break;
                }
                () = refused.notified() => {
                    warn!(audit = "publish", "ending the publish: another publish holds the room at the origin");
                    break;
                }
            }
        }
        info!(audit = "publish", "publish ended");
        for b in &buffers {
            b.close();
        }
        for task in tasks {
            let abort = task.abort_handle();
            if tokio::time::timeout(FLUSH, task).await.is_err() {
                abort.abort();
            }
        }
        let _ = socket.close_and_finish().await;
        drop(claim);
    }
}

/// What one link has yet to send, bounded by bytes (oldest dropped first).
struct Buffer {
    state: Mutex<BufferState>,
    notify: Notify,
    limit: usize,
}

#[derive(Default)]
struct BufferState {
    chunks: VecDeque<Bytes>,
    bytes: usize,
    /// The publish ended: send what is left, then close.
    closed: bool,
}

impl Buffer {
    fn new(limit: usize) -> Self {
        Self {
            state: Mutex::default(),
            notify: Notify::new(),
            limit,
        }
    }

    /// Queues `chunk`; returns how many old bytes were dropped to make room.
    fn push(&self, chunk: Bytes) -> usize {
        let mut dropped = 0;
        {
            let mut s = lock(&self.state);
            s.bytes += chunk.len();
            s.chunks.push_back(chunk);
            while s.bytes > self.limit {
                match s.chunks.pop_front() {
                    Some(old) => {
                        s.bytes -= old.len();
                        dropped += old.len();
                    }
                    None => break,
                }
            }
        }
        self.notify.notify_one();
        dropped
    }

    fn close(&self) {
        lock(&self.state).closed = true;
        self.notify.notify_one();
    }

    /// The next chunk, or `None` once closed and empty; waits while empty.
    async fn next(&self) -> Option<Bytes> {
        loop {
            let notified = self.notify.notified();
            {
                let mut s = lock(&self.state);
                if let Some(chunk) = s.chunks.pop_front() {
                    s.bytes -= chunk.len();
                    return Some(chunk);
                }
                if s.closed {
                    return None;
                }
            }
            notified.await;
        }
    }

    fn is_finished(&self) -> bool {
        let s = lock(&self.state);
        s.closed && s.chunks.is_empty()
    }
}

/// One SRT link of a publish to an origin.
struct Link {
    relay: Arc<Relay>,
    room: String,
    publish: RelayedPublish,
    slot: usize,
    buffer: Arc<Buffer>,
    /// Notified when the origin keeps refusing this publish as a conflict.
    refused: Arc<Notify>,
    /// The publish's current clock stamp, sent first on every connect.
    clock: Arc<Mutex<Option<Stamp>>>,
}

/// Why a link could not connect.
enum ConnectFailed {
    /// The origin has the room live with another publish (SRT reject 2409).
    Conflict,
    /// Anything else: the origin counts as failed for this link.
    Other(String),
}

/// Why a connected link stopped.
enum Ended {
    /// The publish ended and everything was sent.
    Done,
    /// The origin failed; reconnect, to another origin if one is up.
    Failed(String),
    /// The origin closed the session: it is shutting down, or another publish took the room
    /// over. Reconnect to it first: a conflict then tells which.
    Closed,
}

impl Link {
    async fn run(self) {
        let mut backoff = Duration::from_millis(100);
        let mut failed: Option<String> = None;
        // Since when the origin has refused this publish as a conflict.
        let mut conflict_since: Option<Instant> = None;
        let mut health = self.relay.upstream.subscribe();
        while !self.buffer.is_finished() {
            let Some(origin) = self.relay.pick(&self.room, self.slot, failed.as_deref()) else {
                // No origin for this slot (fewer origins than links): wait for the list.
                tokio::select! {
                    Ok(()) = health.changed() => {}
                    _ = tokio::time::sleep(MAX_BACKOFF) => {}
                }
                if self.buffer.is_finished() {
                    return;
                }
                continue;
            };
            let name = origin.peer.name.clone();
            let socket = match self.connect(&origin).await {
                Ok(s) => s,
                Err(ConnectFailed::Conflict) => {
                    // Not the origin's failure: another origin must not get the room too.
                    let since = *conflict_since.get_or_insert_with(Instant::now);
                    warn!(origin = %name, slot = self.slot, "relay refused: the room is live there with another publish");
                    if since.elapsed() >= CONFLICT_GRACE {
                        self.refused.notify_one();
                        return;
                    }
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
                Err(ConnectFailed::Other(e)) => {
                    warn!(origin = %name, slot = self.slot, "relay connect failed: {e}");
                    failed = Some(name);
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                    continue;
                }
            };
            conflict_since = None;
            info!(origin = %name, slot = self.slot, "relaying to origin");
            self.relay.metrics.connects.inc();
            self.relay.metrics.links_up.inc();
            backoff = Duration::from_millis(100);
            let ended = self.send(socket, &origin, &mut health).await;
            self.relay.metrics.links_up.dec();
            match ended {
                Ended::Done => return,
                Ended::Failed(why) => {
                    warn!(origin = %name, slot = self.slot, "relay link lost: {why}");
                    failed = Some(name);
                }
                Ended::Closed => {
                    warn!(origin = %name, slot = self.slot, "relay link lost: the origin closed the session");
                    failed = None;
                }
            }
        }
    }

    async fn connect(&self, origin: &Origin) -> Result<SrtSocket, ConnectFailed> {
        let stream_id = format!(
            "#!::r={}/{},m=publish,{RELAY_KEY}={}",
            origin::streamid::APP,
            self.room,
            self.publish.value()
        );
        let passphrase = self.relay.passphrase.clone();
        let call = SrtSocket::builder()
            .latency(self.relay.latency)
            .set(|o| {
                o.session.peer_idle_timeout = PEER_IDLE;
                o.sender.buffer_size = LINK_SEND_BUFFER;
                if let Some(p) = passphrase {
                    o.encryption.passphrase = Some(p);
                }
            })
            .call(origin.peer.srt, Some(&stream_id));
        match tokio::time::timeout(self.relay.connect_timeout, call).await {
            Ok(Ok(socket)) => Ok(socket),
            // srt-tokio carries the listener's reject reason as the error's source.
            Ok(Err(e))
                if e.get_ref()
                    .and_then(|r| r.downcast_ref::<ConnectionReject>())
                    .is_some_and(|r| {
                        *r == ConnectionReject::Rejected(RejectReason::Server(
                            ServerRejectReason::Conflict,
                        ))
                    }) =>
            {
                Err(ConnectFailed::Conflict)
            }
            Ok(Err(e)) => Err(ConnectFailed::Other(e.to_string())),
            Err(_) => Err(ConnectFailed::Other("timed out".into())),
        }
    }

    /// Sends the buffer's chunks until the publish ends or the link fails.
    async fn send(
        &self,
        mut socket: SrtSocket,
        origin: &Origin,
        health: &mut watch::Receiver<u64>,
    ) -> Ended {
        let stamp = *lock(&self.clock);
        if let Some(stamp) = stamp {
            let packet = Bytes::copy_from_slice(&stamp.packet(0));
            if let Err(e) = socket.send((Instant::now(), packet)).await {
                return Ended::Failed(e.to_string());
            }
        }
        loop {
            let chunk = tokio::select! {
                c = self.buffer.next() => c,
                Ok(()) = health.changed() => {
                    if origin.is_up() {
                        continue;
                    }
                    return Ended::Failed("the origin's probe fails".into());
                }
                // The origin closed the session (it is shutting down, or the room was taken
                // over), or the session failed.
                r = socket.next() => {
                    if let Some(Err(e)) = r {
                        return Ended::Failed(e.to_string());
                    }
                    return Ended::Closed;
                }
            };
            let Some(chunk) = chunk else {
                let _ = socket.close_and_finish().await;
                return Ended::Done;
            };
            if let Err(e) = socket.send((Instant::now(), chunk)).await {
                return Ended::Failed(e.to_string());
            }
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn buffer_drops_oldest_beyond_its_bound_and_drains_after_close() {
        let b = Buffer::new(10);
        assert_eq!(b.push(Bytes::from_static(b"aaaa")), 0);
        assert_eq!(b.push(Bytes::from_static(b"bbbb")), 0);
        assert_eq!(b.push(Bytes::from_static(b"cccc")), 4);
        b.close();
        assert!(!b.is_finished());
        assert_eq!(b.next().await.as_deref(), Some(&b"bbbb"[..]));
        assert_eq!(b.next().await.as_deref(), Some(&b"cccc"[..]));
        assert_eq!(b.next().await, None);
        assert!(b.is_finished());
    }
}
