//! HTTP/3 serving (the edge's viewers, the origin's API): a quinn endpoint and the h3 server,
//! adapting each request into a [`Handler`]. Each connection gets a task; each request stream another, so one slow
//! viewer stream holds up nothing else. On shutdown each connection sends GOAWAY and finishes
//! the requests in flight before the endpoint closes.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::serve::{text, Handler, Peer, Proto, MAX_BODY};
use bytes::{Buf, Bytes, BytesMut};
use http::{Request, Response};
use tokio::sync::watch;
use tokio::task::JoinSet;
use tracing::debug;

/// Binds a QUIC endpoint on `addr` (UDP) serving `server`. The socket is bound first so a
/// failure is the plain `io::Error` of the address, like the TCP listeners'.
pub fn bind(addr: SocketAddr, server: quinn::ServerConfig) -> std::io::Result<quinn::Endpoint> {
    let socket = std::net::UdpSocket::bind(addr)?;
    quinn::Endpoint::new(
        quinn::EndpointConfig::default(),
        Some(server),
        socket,
        Arc::new(quinn::TokioRuntime),
    )
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

/// Accepts QUIC connections until `shutdown` turns true, then closes the endpoint and waits
/// for connections to finish.
pub async fn serve<H: Handler>(
    endpoint: quinn::Endpoint,
    handler: Arc<H>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut connections = JoinSet::new();
    loop {
        let incoming = tokio::select! {
            i = endpoint.accept() => match i {
                Some(i) => i,
                None => break,
            },
            _ = crate::serve::stopped(&mut shutdown) => break,
        };
        let handler = handler.clone();
        let shutdown = shutdown.clone();
        connections.spawn(async move {
            let _open = crate::serve::Open::new(handler.connections("quic"));
            let addr = incoming.remote_address();
            match incoming.await {
                Ok(conn) => connection(conn, handler, addr, shutdown).await,
                Err(e) => debug!(peer = %addr, "quic handshake failed: {e}"),
            }
        });
        // Reap finished connections so the set does not grow with the connection count.
        while connections.try_join_next().is_some() {}
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
    mut shutdown: watch::Receiver<bool>,
) {
    let mut h3 =
        match h3::server::Connection::<_, Bytes>::new(h3_quinn::Connection::new(conn)).await {
            Ok(c) => c,
            Err(e) => {
                debug!(peer = %addr, "h3 setup failed: {e}");
                return;
            }
        };
    let mut requests = JoinSet::new();
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
            _ = crate::serve::stopped(&mut shutdown) => {
                // GOAWAY: take no new requests, let those in flight finish.
                let _ = h3.shutdown(0).await;
                break;
            }
        };
        while requests.try_join_next().is_some() {}
        let handler = handler.clone();
        requests.spawn(async move {
            let (req, mut stream) = match resolver.resolve_request().await {
                Ok(x) => x,
                Err(e) => {
                    debug!(peer = %addr, "h3 request failed: {e}");
                    return;
                }
            };
            let mut body = BytesMut::new();
            let res = loop {
                match stream.recv_data().await {
                    Ok(Some(mut chunk)) => {
                        if body.len() + chunk.remaining() > MAX_BODY {
                            break text(
                                http::StatusCode::PAYLOAD_TOO_LARGE,
                                "request body too large\n",
                            );
                        }
                        while chunk.has_remaining() {
                            let c = chunk.chunk();
                            body.extend_from_slice(c);
                            let n = c.len();
                            chunk.advance(n);
                        }
                    }
                    Ok(None) => {
                        let (parts, ()) = req.into_parts();
                        let req = Request::from_parts(parts, body.freeze());
                        break handler
                            .handle(
                                req,
                                Peer {
                                    addr,
                                    proto: Proto::Http3,
                                },
                            )
                            .await;
                    }
                    Err(e) => {
                        debug!(peer = %addr, "h3 request body: {e}");
                        return;
                    }
                }
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
            if !body.is_empty() {
                if let Err(e) = stream.send_data(body).await {
                    debug!(peer = %addr, "h3 send body: {e}");
                    return;
                }
            }
            if let Some(mut chunks) = chunks {
                while let Some(chunk) = chunks.recv().await {
                    if let Err(e) = stream.send_data(chunk).await {
                        debug!(peer = %addr, "h3 send stream: {e}");
                        return;
                    }
                }
            }
            let _ = stream.finish().await;
        });
    }
    // Dropping the set would abort requests still answering.
    while requests.join_next().await.is_some() {}
}
