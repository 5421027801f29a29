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
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tracing::debug;

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
    pub addr: SocketAddr,
    pub proto: Proto,
}

/// Answers requests. One implementation per listener role (viewer router, origin API, admin).
pub trait Handler: Send + Sync + 'static {
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

    /// The limits its listeners enforce.
    fn limits(&self) -> Limits {
        Limits::default()
    }

    /// Counts one use of a listener limit (`quic_retry`, `per_ip`, `send_timeout`), if it
    /// counts them.
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
    /// An HTTP/3 connection with no traffic this long is closed.
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
///   (slow-read) would otherwise hold its connection and the response buffered for it.
struct Deadlines<IO> {
    io: IO,
    /// Bytes still to arrive before `first` stops applying, and its timer.
    first: Option<(usize, Pin<Box<tokio::time::Sleep>>)>,
    send_limit: Duration,
    /// Armed when a write first returns Pending, cleared by any progress.
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
    /// Set once the send deadline has cut the connection, for the metric.
    send_expired: Arc<std::sync::atomic::AtomicBool>,
}

/// hyper-util's protocol detection reads up to the length of the HTTP/2 preface.
const FIRST_BYTES: usize = 24;

impl<IO> Deadlines<IO> {
    fn new(io: IO, first: Duration, send_limit: Duration) -> Self {
        Self {
            io,
            first: Some((FIRST_BYTES, Box::pin(tokio::time::sleep(first)))),
            send_limit,
            stalled: None,
            send_expired: Arc::default(),
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
            return poll;
        }
        let limit = self.send_limit;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                self.send_expired
                    .store(true, std::sync::atomic::Ordering::Relaxed);
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
        let poll = Pin::new(&mut self.io).poll_read(cx, buf);
        let Some((missing, timer)) = &mut self.first else {
            return poll;
        };
        match poll {
            Poll::Ready(Ok(())) => {
                *missing = missing.saturating_sub(buf.filled().len() - before);
                if *missing == 0 {
                    self.first = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Pending if timer.as_mut().poll(cx).is_ready() => Poll::Ready(Err(
                std::io::Error::new(std::io::ErrorKind::TimedOut, "no request in time"),
            )),
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

/// Resolves once `shutdown` turns true (or its sender is gone).
pub async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns is dropped here, so callers' futures stay `Send`.
    let _ = shutdown.wait_for(|s| *s).await;
}

/// Serves one accepted connection (plain or TLS) until it closes or `shutdown` turns true.
pub async fn serve_connection<IO, H>(
    io: IO,
    handler: Arc<H>,
    addr: SocketAddr,
    mut shutdown: watch::Receiver<bool>,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    H: Handler,
{
    let limits = handler.limits();
    let io = Deadlines::new(io, limits.header_timeout, limits.send_timeout);
    let send_expired = io.send_expired.clone();
    let counter = handler.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let handler = handler.clone();
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
                    handler.handle(req, Peer { addr, proto }).await
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
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    let conn = builder.serve_connection(TokioIo::new(io), service);
    tokio::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                debug!(peer = %addr, "connection ended: {e}");
            }
        }
        _ = crate::serve::stopped(&mut shutdown) => {
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        }
    }
    if send_expired.load(std::sync::atomic::Ordering::Relaxed) {
        debug!(peer = %addr, "connection cut: the client stopped reading");
        counter.limited("send_timeout");
    }
}

/// Accepts plain-TCP HTTP connections until `shutdown` turns true.
pub async fn serve_plain<H: Handler>(
    listener: TcpListener,
    handler: Arc<H>,
    shutdown: watch::Receiver<bool>,
) {
    serve_tcp(listener, None, handler, shutdown).await;
}

/// Accepts HTTPS connections until `shutdown` turns true; the TLS handshake is bounded by the
/// handler's header timeout like the request head.
pub async fn serve_tls<H: Handler>(
    listener: TcpListener,
    tls: TlsAcceptor,
    handler: Arc<H>,
    shutdown: watch::Receiver<bool>,
) {
    serve_tcp(listener, Some(tls), handler, shutdown).await;
}

async fn serve_tcp<H: Handler>(
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    handler: Arc<H>,
    mut shutdown: watch::Receiver<bool>,
) {
    let per_ip = PerIpCounts::default();
    loop {
        let (stream, addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    debug!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = crate::serve::stopped(&mut shutdown) => return,
        };
        // Read per connection: a reload's limits reach the next one.
        let limits = handler.limits();
        let Some(per_ip) = PerIp::take(&per_ip, addr.ip(), limits.per_ip) else {
            debug!(peer = %addr, "connection refused: per-IP cap reached");
            handler.limited("per_ip");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (handler, shutdown) = (handler.clone(), shutdown.clone());
        let open = (Open::new(handler.connections("tcp")), per_ip);
        let Some(tls) = tls.clone() else {
            tokio::spawn(async move {
                serve_connection(stream, handler, addr, shutdown).await;
                drop(open);
            });
            continue;
        };
        tokio::spawn(async move {
            let _open = open;
            match tokio::time::timeout(limits.header_timeout, tls.accept(stream)).await {
                Ok(Ok(stream)) => serve_connection(stream, handler, addr, shutdown).await,
                Ok(Err(e)) => debug!(peer = %addr, "tls handshake failed: {e}"),
                Err(_) => debug!(peer = %addr, "tls handshake timed out"),
            }
        });
    }
}
