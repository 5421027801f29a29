//! HTTP/1.1 and HTTP/2 serving on hyper, plain or over TLS, shared by every TCP listener of
//! both daemons.
//!
//! A [`Handler`] answers a request whose body is already read (bounded); transports only adapt
//! to it. Connections drain on shutdown: hyper's `graceful_shutdown()` finishes in-flight
//! requests and refuses new ones.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use crate::drain::Drain;
use bytes::Bytes;
use futures::StreamExt;
use http::{Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::debug;

use crate::clients::{read_proxy_header, Clients};

/// Largest request body read into memory, in bytes.
pub const MAX_BODY: usize = 1024 * 1024;
/// The default for how long a client may take to send a request head (slowloris, silent and
/// idle connections) and to finish a TLS handshake.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Which transport a request came in on (for metrics and logs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Http1,
    Http2,
    Http3,
}

impl Proto {
    pub fn label(self) -> &'static str {
        match self {
            Proto::Http1 => "h1",
            Proto::Http2 => "h2",
            Proto::Http3 => "h3",
        }
    }
}

/// Where a request came from.
#[derive(Debug, Clone, Copy)]
pub struct Peer {
    /// The client: the connection's peer, or who a balancer's PROXY header or a trusted
    /// proxy's `X-Forwarded-For` names (see [`crate::clients`]).
    pub addr: SocketAddr,
    /// What per-client limits count the client by (an IPv6 client's prefix).
    pub limit_key: std::net::IpAddr,
    pub proto: Proto,
    /// Whether the connection is TLS (HTTPS or HTTP/3): where `Alt-Svc` can offer HTTP/3.
    pub tls: bool,
}

/// Answers requests. One implementation per listener role (viewer router, origin API, admin).
pub trait Handler: Send + Sync + 'static {
    /// Answers `req`. A request to upgrade the connection (HTTP/1.1 `Upgrade`, or an HTTP/2
    /// `CONNECT` with `:protocol`, RFC 8441) keeps hyper's `OnUpgrade` in its extensions: the
    /// handler answers 101 (or 200 on HTTP/2) and takes the stream with `hyper::upgrade::on`.
    fn handle(
        &self,
        req: Request<Bytes>,
        peer: Peer,
    ) -> impl Future<Output = Response<Bytes>> + Send;

    /// The gauge counting this handler's open connections over `transport` (`tcp`, `quic`),
    /// if it counts them.
    fn connections(&self, _transport: &str) -> Option<prometheus::IntGauge> {
        None
    }

    /// Where its HTTP/3 connections count their UDP datagrams and system calls, if it counts
    /// them.
    fn udp_io(&self) -> Option<crate::metrics::UdpIo> {
        None
    }

    /// The limits its listeners enforce.
    fn limits(&self) -> Limits {
        Limits::default()
    }

    /// Who its clients are behind balancers and proxies (`[clients]`).
    fn clients(&self) -> Arc<Clients> {
        Arc::default()
    }

    /// Counts one use of a listener limit (`quic_retry`, `per_ip`, `send_timeout`,
    /// `idle_timeout`, `proxy_protocol`: a balancer's connection without a valid header), if
    /// it counts them.
    fn limited(&self, _action: &'static str) {}
}

/// What a listener allows one client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Until the whole request head has arrived, from the connection's start or the end of the
    /// previous response (slowloris, silent and idle connections end here), and for the TLS
    /// handshake.
    pub header_timeout: Duration,
    /// Until the whole request body has arrived.
    pub body_timeout: Duration,
    /// Largest request head.
    pub max_header_bytes: usize,
    /// Concurrent streams of one HTTP/2 or HTTP/3 connection.
    pub max_streams: u32,
    /// An HTTP/2 or HTTP/3 connection with no traffic this long is closed.
    pub idle_timeout: Duration,
    /// Open connections from one IP address, TCP and QUIC each (0: no cap).
    pub per_ip: usize,
    /// A response write without progress this long ends the connection (or HTTP/3 stream).
    pub send_timeout: Duration,
    /// QUIC connections above which new clients get a Retry first (0: all).
    pub quic_retry_above: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            header_timeout: HEADER_TIMEOUT,
            body_timeout: HEADER_TIMEOUT,
            max_header_bytes: 64 * 1024,
            max_streams: 256,
            idle_timeout: Duration::from_secs(30),
            per_ip: 0,
            send_timeout: Duration::from_secs(30),
            quic_retry_above: 1000,
        }
    }
}

impl From<&conf::LimitsConfig> for Limits {
    fn from(c: &conf::LimitsConfig) -> Self {
        Self {
            header_timeout: Duration::from_millis(c.header_timeout_ms),
            body_timeout: Duration::from_millis(c.body_timeout_ms),
            max_header_bytes: c.max_header_bytes,
            max_streams: c.max_streams_per_connection,
            idle_timeout: Duration::from_millis(c.idle_timeout_ms),
            per_ip: c.max_connections_per_ip,
            send_timeout: Duration::from_millis(c.send_timeout_ms),
            quic_retry_above: c.quic_retry_above,
        }
    }
}

/// Open connections by client address, for the per-IP cap.
pub(crate) type PerIpCounts =
    Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>;

/// One client address's share of the per-IP cap, given back when dropped.
pub(crate) struct PerIp {
    counts: PerIpCounts,
    ip: std::net::IpAddr,
}

impl PerIp {
    /// A slot for `ip`, unless it already holds `cap` (0: no cap).
    pub(crate) fn take(counts: &PerIpCounts, ip: std::net::IpAddr, cap: usize) -> Option<Self> {
        let mut map = counts.lock().unwrap_or_else(|e| e.into_inner());
        let n = map.entry(ip).or_insert(0);
        if cap > 0 && *n >= cap {
            return None;
        }
        *n += 1;
        Some(Self {
            counts: counts.clone(),
            ip,
        })
    }
}

impl Drop for PerIp {
    fn drop(&mut self) {
        let mut map = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}

/// A connection with the deadlines hyper does not keep:
/// - until its first [`FIRST_BYTES`] bytes have arrived, reads fail once `first` passes:
///   hyper-util tells HTTP/1.1 from HTTP/2 by those bytes with no timer of its own, and
///   hyper's header timeout starts only after, so a client that connects and sends nothing
///   would otherwise be held for ever;
/// - writes fail once one has made no progress for `send_limit`: a client that stops reading
///   (slow-read) would otherwise hold its connection and the response buffered for it;
/// - an HTTP/2 connection (those bytes are its preface) is told to end ([`Deadlines::idle`],
///   then a graceful shutdown: GOAWAY, in-flight responses finish) once no bytes have moved
///   either way for `idle_limit`: hyper keeps one open as long as the client does, however
///   idle. HTTP/1.1 needs no such timer: between requests the header timeout applies.
struct Deadlines<IO> {
    io: IO,
    /// The first bytes, until [`FIRST_BYTES`] have arrived.
    first: Option<First>,
    idle_limit: Duration,
    /// Armed once the connection is known to be HTTP/2.
    idle: Option<Idle>,
    send_limit: Duration,
    /// Armed when a write first returns Pending, cleared by any progress.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Which limit cut the connection (`send_timeout`, `idle_timeout`), for the metric.
    cut: Arc<std::sync::OnceLock<&'static str>>,
    /// Notified when the idle limit passes.
    idle_passed: Arc<tokio::sync::Notify>,
    /// What the connection holds while it is open (its share of the per-IP cap, its count in
    /// the connections gauge): here, so that a connection upgraded to a WebSocket, which
    /// outlives hyper's part, keeps holding it.
    _held: Box<dyn std::any::Any + Send + Sync>,
}

/// hyper-util's protocol detection reads up to the length of the HTTP/2 preface.
const FIRST_BYTES: usize = 24;

/// What an HTTP/2 client sends first (RFC 9113, section 3.4).
const H2_PREFACE: &[u8; FIRST_BYTES] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// A connection's first bytes and the time they have to arrive.
struct First {
    seen: [u8; FIRST_BYTES],
    len: usize,
    timer: Pin<Box<tokio::time::Sleep>>,
}

/// When an HTTP/2 connection last moved bytes, and the timer that checks it (re-armed lazily,
/// so traffic costs a clock read, not a timer update).
struct Idle {
    last: tokio::time::Instant,
    timer: Pin<Box<tokio::time::Sleep>>,
}

impl<IO> Deadlines<IO> {
    fn new(io: IO, limits: &Limits, held: Box<dyn std::any::Any + Send + Sync>) -> Self {
        Self {
            io,
            first: Some(First {
                seen: [0; FIRST_BYTES],
                len: 0,
                timer: Box::pin(tokio::time::sleep(limits.header_timeout)),
            }),
            idle_limit: limits.idle_timeout,
            idle: None,
            send_limit: limits.send_timeout,
            stalled: None,
            cut: Arc::default(),
            idle_passed: Arc::default(),
            _held: held,
        }
    }

    /// Bytes moved: the idle timer starts again.
    fn active(&mut self) {
        if let Some(idle) = &mut self.idle {
            idle.last = tokio::time::Instant::now();
        }
    }

    /// `got` arrived while the first bytes were still awaited; once they are all in, an
    /// HTTP/2 connection gets its idle timer.
    fn first_bytes(&mut self, got: &[u8]) {
        let Some(first) = &mut self.first else {
            return;
        };
        let take = got.len().min(FIRST_BYTES - first.len);
        first.seen[first.len..first.len + take].copy_from_slice(&got[..take]);
        first.len += take;
        if first.len < FIRST_BYTES {
            return;
        }
        if &first.seen == H2_PREFACE {
            let now = tokio::time::Instant::now();
            self.idle = Some(Idle {
                last: now,
                timer: Box::pin(tokio::time::sleep_until(now + self.idle_limit)),
            });
        }
        self.first = None;
    }

    /// Checks the idle timer (registering it to wake this task): once the connection has
    /// been idle for the limit, the timer stops and [`Deadlines::idle_passed`] is notified.
    fn check_idle(&mut self, cx: &mut Context<'_>) {
        let Some(idle) = &mut self.idle else {
            return;
        };
        while idle.timer.as_mut().poll(cx).is_ready() {
            let due = idle.last + self.idle_limit;
            if tokio::time::Instant::now() >= due {
                self.idle = None;
                let _ = self.cut.set("idle_timeout");
                self.idle_passed.notify_one();
                return;
            }
            idle.timer.as_mut().reset(due);
        }
    }

    /// After a write returned `poll`: progress disarms the timer; no progress arms it, and an
    /// expired one turns into an error.
    fn check_send<T>(
        &mut self,
        cx: &mut Context<'_>,
        poll: Poll<std::io::Result<T>>,
    ) -> Poll<std::io::Result<T>> {
        if poll.is_ready() {
            self.stalled = None;
            self.active();
            return poll;
        }
        let limit = self.send_limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                let _ = self.cut.set("send_timeout");
                Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("the client read nothing for {limit:?}"),
                )))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Deadlines<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        match Pin::new(&mut self.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let got = &buf.filled()[before..];
                if !got.is_empty() {
                    self.active();
                    self.first_bytes(got);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending => {
                if let Some(first) = &mut self.first {
                    if first.timer.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Err(std::io::Error::new(
                            std::io::ErrorKind::TimedOut,
                            "no request in time",
                        )));
                    }
                }
                self.check_idle(cx);
                Poll::Pending
            }
            other => other,
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Deadlines<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write(cx, buf);
        self.check_send(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let poll = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        self.check_send(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.io).poll_flush(cx);
        self.check_send(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let poll = Pin::new(&mut self.io).poll_shutdown(cx);
        self.check_send(cx, poll)
    }
}

/// One open connection on a gauge, for as long as it lives.
pub struct Open(Option<prometheus::IntGauge>);

impl Open {
    pub fn new(gauge: Option<prometheus::IntGauge>) -> Self {
        if let Some(g) = &gauge {
            g.inc();
        }
        Self(gauge)
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        if let Some(g) = &self.0 {
            g.dec();
        }
    }
}

/// A body that keeps coming (server-sent events), carried in a response's extensions: the
/// transports send the response's own body first, then every chunk from the receiver until
/// its sender is dropped.
#[derive(Clone)]
pub struct Streamed(Arc<std::sync::Mutex<Option<tokio::sync::mpsc::Receiver<Bytes>>>>);

impl Streamed {
    pub fn new(chunks: tokio::sync::mpsc::Receiver<Bytes>) -> Self {
        Self(Arc::new(std::sync::Mutex::new(Some(chunks))))
    }

    /// The receiver, once.
    pub fn take(&self) -> Option<tokio::sync::mpsc::Receiver<Bytes>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// A response's body for hyper: the bytes, then the stream when it has one.
fn hyper_body(res: Response<Bytes>) -> Response<UnsyncBoxBody<Bytes, std::convert::Infallible>> {
    let chunks = res.extensions().get::<Streamed>().and_then(Streamed::take);
    res.map(|body| match chunks {
        None => UnsyncBoxBody::new(Full::new(body)),
        Some(rx) => {
            let first = futures::stream::once(async move { body });
            let rest = futures::stream::unfold(rx, |mut rx| async move {
                rx.recv().await.map(|chunk| (chunk, rx))
            });
            let frames = first
                .chain(rest)
                .map(|b| Ok::<_, std::convert::Infallible>(hyper::body::Frame::data(b)));
            UnsyncBoxBody::new(http_body_util::StreamBody::new(frames))
        }
    })
}

/// A response with a plain-text body.
pub fn text(status: StatusCode, body: impl Into<Bytes>) -> Response<Bytes> {
    let mut res = Response::new(body.into());
    *res.status_mut() = status;
    res.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    res
}

/// Serves one accepted connection (plain or `tls`) from client `addr` until it closes or
/// `shutdown` turns true, holding `held` until then (or, upgraded to a WebSocket, until that
/// closes).
async fn serve_connection<IO, H>(
    io: IO,
    held: Box<dyn std::any::Any + Send + Sync>,
    handler: Arc<H>,
    addr: SocketAddr,
    tls: bool,
    mut shutdown: Drain,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let limits = handler.limits();
    let io = Deadlines::new(io, &limits, held);
    let cut = io.cut.clone();
    let idle_passed = io.idle_passed.clone();
    let counter = handler.clone();
    let clients = handler.clients();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let handler = handler.clone();
        let addr = clients.forwarded(addr, req.headers());
        let limit_key = clients.limit_key(addr.ip());
        async move {
            let proto = if req.version() == http::Version::HTTP_2 {
                Proto::Http2
            } else {
                Proto::Http1
            };
            let (parts, body) = req.into_parts();
            let body = Limited::new(body, MAX_BODY).collect();
            let res = match tokio::time::timeout(limits.body_timeout, body).await {
                Ok(Ok(body)) => {
                    let req = Request::from_parts(parts, body.to_bytes());
                    let peer = Peer {
                        addr,
                        limit_key,
                        proto,
                        tls,
                    };
                    // Boxed: the handler's future is large (every route's state) and is done
                    // once the response head exists, while hyper's task for the stream lives
                    // as long as the body does (a feed: for hours). Inline, each open feed
                    // kept ~40 KB of finished future.
                    Box::pin(handler.handle(req, peer)).await
                }
                Ok(Err(e)) => text(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("request body: {e}\n"),
                ),
                Err(_) => text(StatusCode::REQUEST_TIMEOUT, "request body too slow\n"),
            };
            Ok::<_, std::convert::Infallible>(hyper_body(res))
        }
    });
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_timeout)
        // hyper's floor for its read buffer is 8 KiB.
        .max_buf_size(limits.max_header_bytes.max(8192));
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.max_streams)
        // WebSockets over HTTP/2 (RFC 8441): a handler answers `CONNECT` with `:protocol`.
        .enable_connect_protocol()
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    // With upgrades: a handler may take an HTTP/1.1 connection over (a WebSocket, see
    // [`Handler::handle`]); the connection's future then ends and the upgraded stream lives on.
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                debug!(peer = %addr, "connection ended: {e}");
            }
        }
        _ = shutdown.stopped() => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
        () = idle_passed.notified() => {
            // GOAWAY: requests in flight (a long poll) finish, no new ones start; a client
            // that holds on after that gets the idle limit once more.
            conn.as_mut().graceful_shutdown();
            tokio::select! {
                _ = conn.as_mut() => {}
                _ = tokio::time::sleep(limits.idle_timeout) => {}
                _ = shutdown.stopped() => {}
            }
        }
    }
    if let Some(&action) = cut.get() {
        debug!(peer = %addr, "connection cut: {action}");
        counter.limited(action);
    }
}

/// Accepts plain-TCP HTTP connections until `shutdown` turns true.
pub async fn serve_plain<H: Handler>(listener: TcpListener, handler: Arc<H>, shutdown: Drain) {
    serve_tcp(listener, None, handler, shutdown).await;
}

/// Accepts HTTPS connections until `shutdown` turns true; the TLS handshake is bounded by the
/// handler's header timeout like the request head.
pub async fn serve_tls<H: Handler>(
    listener: TcpListener,
    tls: TlsAcceptor,
    handler: Arc<H>,
    shutdown: Drain,
) {
    serve_tcp(listener, Some(tls), handler, shutdown).await;
}

async fn serve_tcp<H: Handler>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handler: Arc<H>,
    mut shutdown: Drain,
) {
    let per_ip = PerIpCounts::default();
    loop {
        let (stream, addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok((stream, addr)) => (stream, crate::net::canonical(addr)),
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    debug!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.stopped() => return,
        };
        // Read per connection: a reload's limits reach the next one.
        let limits = handler.limits();
        let clients = handler.clients();
        let _ = stream.set_nodelay(true);
        let (handler, shutdown, per_ip, tls) = (
            handler.clone(),
            shutdown.clone(),
            per_ip.clone(),
            tls.clone(),
        );
        // A direct client takes its share of the per-IP cap here, in accept order; a
        // balancer's connection once its PROXY header (read within the header timeout) has
        // named the client.
        let direct = !clients.expects_proxy_header(addr.ip());
        let share = if direct {
            match PerIp::take(&per_ip, clients.limit_key(addr.ip()), limits.per_ip) {
                Some(share) => Some(share),
                None => {
                    debug!(peer = %addr, "connection refused: per-IP cap reached");
                    handler.limited("per_ip");
                    continue;
                }
            }
        } else {
            None
        };
        tokio::spawn(async move {
            let mut stream = stream;
            let (client, share) = match share {
                Some(share) => (addr, share),
                None => {
                    let client = match read_proxy_header(&mut stream, limits.header_timeout).await {
                        Ok(client) => client.unwrap_or(addr),
                        Err(e) => {
                            debug!(peer = %addr, "connection refused: {e}");
                            handler.limited("proxy_protocol");
                            return;
                        }
                    };
                    let key = clients.limit_key(client.ip());
                    let Some(share) = PerIp::take(&per_ip, key, limits.per_ip) else {
                        debug!(peer = %client, "connection refused: per-IP cap reached");
                        handler.limited("per_ip");
                        return;
                    };
                    (client, share)
                }
            };
            let held = Box::new((Open::new(handler.connections("tcp")), share));
            let Some(tls) = tls else {
                serve_connection(stream, held, handler, client, false, shutdown).await;
                return;
            };
            match tokio::time::timeout(limits.header_timeout, tls.accept(stream)).await {
                Ok(Ok(stream)) => {
                    serve_connection(stream, held, handler, client, true, shutdown).await;
                }
                Ok(Err(e)) => debug!(peer = %client, "tls handshake failed: {e}"),
                Err(_) => debug!(peer = %client, "tls handshake timed out"),
            }
        });
    }
}
