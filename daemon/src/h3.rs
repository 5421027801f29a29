//! HTTP/3 serving (the edge's viewers, the origin's API): a quinn endpoint and the h3 server,
//! adapting each request into a [`Handler`]. Each connection gets a task; each request stream another, so one slow
//! viewer stream holds up nothing else. On shutdown each connection sends GOAWAY and finishes
//! the requests in flight before the endpoint closes.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::drain::Drain;
use crate::metrics::{UdpIo, UdpSeen};
use crate::serve::{text, Handler, Peer, PerIp, PerIpCounts, Proto, MAX_BODY};
use bytes::{Buf, Bytes, BytesMut};
use http::{Request, Response};
use tokio::task::JoinSet;
use tracing::{debug, warn};

/// Binds `count` QUIC endpoints on `addr` (UDP; `[::]` is dual-stack, see [`crate::net`])
/// serving `server`: one, or several on one port with SO_REUSEPORT (the kernel spreads
/// clients over them by address hash; port 0 picks one port for all). The sockets are bound
/// first so a failure is the plain `io::Error` of the address, like the TCP listeners'.
///
/// The endpoints share one configuration, so a packet that lands on a sibling of its
/// connection's endpoint (the client's address changed) is answered with a stateless reset
/// the client recognizes, and it reconnects at once instead of waiting out a dead path.
pub fn bind(
    addr: SocketAddr,
    server: quinn::ServerConfig,
    count: usize,
) -> std::io::Result<Vec<quinn::Endpoint>> {
    let shared = count > 1;
    let reuse = |s: &socket2::Socket| {
        if shared {
            s.set_reuse_port(true)
        } else {
            Ok(())
        }
    };
    let first = crate::net::udp_socket(addr, reuse)?;
    offload(&first, addr);
    // Port 0: the siblings bind the port the first one got.
    let addr = first.local_addr()?;
    let mut sockets = vec![first];
    for _ in 1..count {
        sockets.push(crate::net::udp_socket(addr, reuse)?);
    }
    let config = quinn::EndpointConfig::default();
    sockets
        .into_iter()
        .map(|socket| {
            quinn::Endpoint::new(
                config.clone(),
                Some(server.clone()),
                socket,
                Arc::new(quinn::TokioRuntime),
            )
        })
        .collect()
}

/// Says what segmentation offload the kernel gives `socket` (quinn uses what there is): a
/// datagram per system call costs several times the CPU of a batch.
fn offload(socket: &std::net::UdpSocket, addr: SocketAddr) {
    match quinn::udp::UdpSocketState::new(socket.into()) {
        Ok(state) if state.max_gso_segments() > 1 => debug!(
            %addr,
            gso = state.max_gso_segments(),
            gro = state.gro_segments(),
            "udp segmentation offload"
        ),
        Ok(_) => warn!(
            %addr,
            "this kernel offers no UDP segmentation offload (GSO): every HTTP/3 datagram \
             costs a system call of its own"
        ),
        Err(e) => warn!(%addr, "udp socket options: {e}"),
    }
}

/// QUIC transport settings from `limits`: concurrent request streams and the idle timeout.
pub fn transport(limits: &crate::serve::Limits) -> quinn::TransportConfig {
    let mut t = quinn::TransportConfig::default();
    t.max_concurrent_bidi_streams(quinn::VarInt::from_u32(limits.max_streams));
    if let Ok(idle) = quinn::IdleTimeout::try_from(limits.idle_timeout) {
        t.max_idle_timeout(Some(idle));
    }
    t
}

/// Accepts QUIC connections on every endpoint until `shutdown` turns true, then closes them
/// and waits for connections to finish. Limits count over all of them: a client's per-IP
/// share, and the open connections above which new ones get a Retry.
pub async fn serve<H: Handler>(endpoints: Vec<quinn::Endpoint>, handler: Arc<H>, shutdown: Drain) {
    let shared = Shared::default();
    let mut accepting = JoinSet::new();
    for endpoint in endpoints {
        accepting.spawn(accept(
            endpoint,
            handler.clone(),
            shared.clone(),
            shutdown.clone(),
        ));
    }
    while accepting.join_next().await.is_some() {}
}

/// What the endpoints of one listener count together.
#[derive(Clone, Default)]
struct Shared {
    per_ip: PerIpCounts,
    /// Connections open or handshaking.
    open: Arc<std::sync::atomic::AtomicUsize>,
}

/// One connection in [`Shared::open`] while it lives.
struct Opened(Arc<std::sync::atomic::AtomicUsize>);

impl Opened {
    fn new(open: &Arc<std::sync::atomic::AtomicUsize>) -> Self {
        open.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        Self(open.clone())
    }
}

impl Drop for Opened {
    fn drop(&mut self) {
        self.0.fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
    }
}

/// One endpoint's accept loop (see [`serve`]).
async fn accept<H: Handler>(
    endpoint: quinn::Endpoint,
    handler: Arc<H>,
    shared: Shared,
    mut shutdown: Drain,
) {
    let mut connections = JoinSet::new();
    let per_ip = &shared.per_ip;
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => match i {
                Some(i) => i,
                None => break,
            },
            _ = shutdown.stopped() => break,
        };
        // Reap the tasks of finished connections.
        while connections.try_join_next().is_some() {}
        // Under load, or over its address's cap, a client proves its address (a Retry round
        // trip) before any handshake work is done for it, so spoofed Initials cost nothing
        // and cannot spend a victim's share. A validated one (it echoed our Retry token) is
        // served, or refused when its address is over the cap.
        let limits = handler.limits();
        let addr = crate::net::canonical(incoming.remote_address());
        let share = PerIp::take(
            per_ip,
            handler.clients().limit_key(addr.ip()),
            limits.per_ip,
        );
        let open = shared.open.load(std::sync::atomic::Ordering::Relaxed);
        let busy = open >= limits.quic_retry_above || share.is_none();
        if busy && !incoming.remote_address_validated() && incoming.may_retry() {
            handler.limited("quic_retry");
            if let Err(e) = incoming.retry() {
                debug!("quic retry failed: {e}");
            }
            continue;
        }
        let Some(share) = share else {
            debug!(peer = %addr, "quic connection refused: per-IP cap reached");
            handler.limited("per_ip");
            incoming.refuse();
            continue;
        };
        let handler = handler.clone();
        let shutdown = shutdown.clone();
        let opened = Opened::new(&shared.open);
        connections.spawn(async move {
            let _open = (
                crate::serve::Open::new(handler.connections("quic")),
                share,
                opened,
            );
            match incoming.await {
                Ok(conn) => connection(conn, handler, addr, shutdown).await,
                Err(e) => debug!(peer = %addr, "quic handshake failed: {e}"),
            }
        });
    }
    // Drain: every connection has sent GOAWAY and finishes its in-flight requests (the
    // process's grace timeout bounds this), then the endpoint closes.
    while connections.join_next().await.is_some() {}
    endpoint.close(quinn::VarInt::from_u32(0), b"shutting down");
    endpoint.wait_idle().await;
}

async fn connection<H: Handler>(
    conn: quinn::Connection,
    handler: Arc<H>,
    addr: SocketAddr,
    mut shutdown: Drain,
) {
    let mut udp = handler.udp_io().map(|io| UdpCount {
        io,
        conn: conn.clone(),
        seen: UdpSeen::default(),
    });
    let mut count = tokio::time::interval(UDP_COUNT_EVERY);
    let mut h3 =
        match h3::server::Connection::<_, Bytes>::new(h3_quinn::Connection::new(conn)).await {
            Ok(c) => c,
            Err(e) => {
                debug!(peer = %addr, "h3 setup failed: {e}");
                return;
            }
        };
    let mut requests = JoinSet::new();
    let clients = handler.clients();
    loop {
        let resolver = tokio::select! {
            r = h3.accept() => match r {
                Ok(Some(r)) => r,
                Ok(None) => break,
                Err(e) => {
                    debug!(peer = %addr, "h3 connection ended: {e}");
                    break;
                }
            },
            _ = shutdown.stopped() => {
                // GOAWAY: take no new requests, let those in flight finish.
                let _ = h3.shutdown(0).await;
                break;
            }
            _ = count.tick(), if udp.is_some() => {
                if let Some(udp) = udp.as_mut() {
                    udp.add();
                }
                continue;
            }
        };
        while requests.try_join_next().is_some() {}
        let handler = handler.clone();
        let clients = clients.clone();
        requests.spawn(async move {
            let (req, mut stream) = match resolver.resolve_request().await {
                Ok(x) => x,
                Err(e) => {
                    debug!(peer = %addr, "h3 request failed: {e}");
                    return;
                }
            };
            let limits = handler.limits();
            let (parts, ()) = req.into_parts();
            let read = async {
                let mut body = BytesMut::new();
                loop {
                    match stream.recv_data().await {
                        Ok(Some(mut chunk)) => {
                            if body.len() + chunk.remaining() > MAX_BODY {
                                let res = text(
                                    http::StatusCode::PAYLOAD_TOO_LARGE,
                                    "request body too large\n",
                                );
                                return Err(Some(res));
                            }
                            while chunk.has_remaining() {
                                let c = chunk.chunk();
                                body.extend_from_slice(c);
                                let n = c.len();
                                chunk.advance(n);
                            }
                        }
                        Ok(None) => return Ok(body.freeze()),
                        Err(e) => {
                            debug!(peer = %addr, "h3 request body: {e}");
                            return Err(None);
                        }
                    }
                }
            };
            let res = match tokio::time::timeout(limits.body_timeout, read).await {
                Ok(Ok(body)) => {
                    let addr = clients.forwarded(addr, &parts.headers);
                    let peer = Peer {
                        addr,
                        limit_key: clients.limit_key(addr.ip()),
                        proto: Proto::Http3,
                        tls: true,
                    };
                    // Boxed, as in `serve::serve_connection`: the finished handler future must
                    // not stay in the task that streams a long body.
                    Box::pin(handler.handle(Request::from_parts(parts, body), peer)).await
                }
                Ok(Err(Some(res))) => res,
                Ok(Err(None)) => return,
                Err(_) => text(http::StatusCode::REQUEST_TIMEOUT, "request body too slow\n"),
            };
            let chunks = res
                .extensions()
                .get::<crate::serve::Streamed>()
                .and_then(crate::serve::Streamed::take);
            let (parts, body) = res.into_parts();
            if let Err(e) = stream.send_response(Response::from_parts(parts, ())).await {
                debug!(peer = %addr, "h3 send response: {e}");
                return;
            }
            let mut sent = send(&mut stream, body, limits.send_timeout).await;
            if let Some(mut chunks) = chunks {
                while sent.is_ok() {
                    let Some(chunk) = chunks.recv().await else {
                        break;
                    };
                    sent = send(&mut stream, chunk, limits.send_timeout).await;
                }
            }
            match sent {
                Ok(()) => {}
                Err(Unsent::Stalled) => {
                    debug!(peer = %addr, "h3 stream cut: the client stopped reading");
                    handler.limited("send_timeout");
                    stream.stop_stream(h3::error::Code::H3_REQUEST_CANCELLED);
                    return;
                }
                Err(Unsent::Failed(e)) => {
                    debug!(peer = %addr, "h3 send body: {e}");
                    return;
                }
            }
            let _ = stream.finish().await;
        });
    }
    // Dropping the set would abort requests still answering.
    while requests.join_next().await.is_some() {}
}

/// How often a connection's UDP counts are added to the process's.
const UDP_COUNT_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// A connection's UDP datagrams and system calls, added to the process's counts every
/// [`UDP_COUNT_EVERY`] and when it is dropped (the connection ended, however).
struct UdpCount {
    io: UdpIo,
    conn: quinn::Connection,
    seen: UdpSeen,
}

impl UdpCount {
    fn add(&mut self) {
        self.io.add(&self.conn.stats(), &mut self.seen);
    }
}

impl Drop for UdpCount {
    fn drop(&mut self) {
        self.add();
    }
}

/// Why a response body was not all sent.
enum Unsent {
    /// No progress for the send timeout: the client stopped reading.
    Stalled,
    Failed(h3::error::StreamError),
}

/// Sends `body` on `stream` in slices, each of which must be taken within `timeout`, so a
/// client that stops reading is noticed within the timeout however large the body is, and one
/// that reads slowly but steadily is not cut.
async fn send<S: h3::quic::SendStream<Bytes>>(
    stream: &mut h3::server::RequestStream<S, Bytes>,
    mut body: Bytes,
    timeout: std::time::Duration,
) -> Result<(), Unsent> {
    const SLICE: usize = 64 * 1024;
    while !body.is_empty() {
        let slice = body.split_to(body.len().min(SLICE));
        match tokio::time::timeout(timeout, stream.send_data(slice)).await {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(Unsent::Failed(e)),
            Err(_) => return Err(Unsent::Stalled),
        }
    }
    Ok(())
}
