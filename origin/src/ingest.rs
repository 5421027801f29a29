//! SRT ingest: the listener that publishers' encoders call.
//!
//! Each connection request is checked before the handshake completes (stream id, passphrase,
//! room not already live), so a refused publisher gets an SRT reject code, not a dropped
//! session. An accepted connection gets one task that reads the socket and drives its
//! [`Pipeline`]; a slow or dead publisher costs only that task.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use codec::hls::segmenter::SegmenterOptions;
use conf::SrtConfig;
use futures::StreamExt;
use srt_protocol::settings::KeySettings;
use srt_tokio::access::{RejectReason, ServerRejectReason};
use srt_tokio::options::Passphrase;
use srt_tokio::{ConnectionRequest, SrtIncoming, SrtListener};
use tokio::net::UdpSocket;
use tokio::sync::watch;
use tracing::{info, info_span, warn, Instrument};

use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::store::Store;
use crate::streamid;
use crate::transcode::TranscodeSettings;

/// A bound SRT listener, not yet accepting.
pub struct Ingest {
    listener: SrtListener,
    incoming: SrtIncoming,
    local_addr: SocketAddr,
    config: SrtConfig,
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
            config: config.clone(),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Accepts publishers until `shutdown` turns true; live publishes then end cleanly.
    pub async fn run(
        mut self,
        store: Arc<Store>,
        metrics: Metrics,
        settings: Arc<TranscodeSettings>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        info!(addr = %self.local_addr, "srt ingest listening");
        let options = SegmenterOptions {
            segment_target: store.options().segment_target,
            part_target: store.options().part_target,
        };
        loop {
            let request = tokio::select! {
                r = self.incoming.incoming().next() => match r {
                    Some(r) => r,
                    None => break,
                },
                _ = crate::serve::stopped(&mut shutdown) => break,
            };
            let ctx = Accept {
                store: store.clone(),
                metrics: metrics.clone(),
                settings: settings.clone(),
                config: self.config.clone(),
                options,
                shutdown: shutdown.clone(),
            };
            // The handshake answer is awaited off the accept loop so one slow peer cannot
            // hold up the others.
            tokio::spawn(ctx.handle(request));
        }
        self.listener.close().await;
    }
}

struct Accept {
    store: Arc<Store>,
    metrics: Metrics,
    settings: Arc<TranscodeSettings>,
    config: SrtConfig,
    options: SegmenterOptions,
    shutdown: watch::Receiver<bool>,
}

impl Accept {
    async fn handle(self, request: ConnectionRequest) {
        let peer = request.remote();
        let id = request.stream_id().map(|s| s.to_string());
        let publish = match streamid::parse(id.as_deref()) {
            Ok(p) => p,
            Err(e) => {
                warn!(%peer, "publish refused: {e}");
                self.metrics.publish_refused.inc();
                let _ = request
                    .reject(RejectReason::Server(ServerRejectReason::BadRequest))
                    .await;
                return;
            }
        };
        let room = publish.room;
        let key = match self.key_settings(&request) {
            Ok(key) => key,
            Err(why) => {
                warn!(%peer, stream = room, "publish refused: {why}");
                self.metrics.publish_refused.inc();
                let _ = request
                    .reject(RejectReason::Server(ServerRejectReason::Unauthorized))
                    .await;
                return;
            }
        };
        let live = self.store.live_count();
        if live >= self.config.max_streams {
            warn!(%peer, stream = room, live, "publish refused: srt.max_streams reached");
            self.metrics.publish_refused.inc();
            let _ = request
                .reject(RejectReason::Server(ServerRejectReason::Overload))
                .await;
            return;
        }
        let publication = match self.store.publish(&room) {
            Ok(p) => p,
            Err(e) => {
                warn!(%peer, stream = room, "publish refused: {e}");
                self.metrics.publish_refused.inc();
                let _ = request
                    .reject(RejectReason::Server(ServerRejectReason::Conflict))
                    .await;
                return;
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
        let mut shutdown = self.shutdown;
        let (mut pipeline, mut ladder) =
            Pipeline::new(publication, self.options, self.settings, self.metrics);
        async move {
            info!(
                user = publish.user.as_deref().unwrap_or(""),
                "publish started"
            );
            metrics.streams_live.inc();
            loop {
                tokio::select! {
                    packet = socket.next() => match packet {
                        Some(Ok((_, data))) => {
                            metrics.ingest_bytes.inc_by(data.len() as u64);
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
            metrics.streams_live.dec();
            info!(
                bytes = stats.bytes_in,
                frames = stats.frames,
                parts = stats.parts,
                warnings = stats.warnings,
                dropped = stats.dropped,
                "publish ended"
            );
            let _ = socket.close_and_finish().await;
        }
        .instrument(span)
        .await;
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
