//! One HTTP connection per origin: HTTP/2 over TLS or HTTP/3, opened on first use, shared by
//! every request to that origin (both protocols multiplex), reopened after it fails.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

/// Largest body accepted from an origin (a segment of a high rung is a few MB).
const MAX_BODY: usize = 64 * 1024 * 1024;

/// Why an origin gave no HTTP answer: the transport failed, so the origin counts as down.
#[derive(Debug, thiserror::Error)]
pub enum TransportError {
    #[error("connect: {0}")]
    Connect(std::io::Error),
    #[error("connect timed out")]
    ConnectTimeout,
    #[error("tls: {0}{hint}", hint = advice(&.0.to_string()))]
    Tls(std::io::Error),
    #[error("invalid tls name {0:?}")]
    Name(String),
    #[error("http/2: {}{hint}", source_chain(.0), hint = advice(&source_chain(.0)))]
    H2(#[from] hyper::Error),
    #[error("http/3: {0}{hint}", hint = advice(.0))]
    H3(String),
    #[error("quic: {0}{hint}", hint = advice(.0))]
    Quic(String),
    #[error("response body: {0}")]
    Body(String),
    #[error("no answer within {0:?}")]
    Timeout(Duration),
}

/// What to do about a certificate the edge refused, from rustls's (webpki's) reason, since
/// those names mean little to an operator who made the certificate with openssl (which
/// accepts more than webpki does).
fn advice(error: &str) -> &'static str {
    const NO_CLIENT_CERT: &str = " (the origin requires a client certificate, its \
        http.client_ca: set upstream.cert and upstream.key)";
    const CLIENT_CERT_REFUSED: &str = " (the origin refused this edge's client \
        certificate, upstream.cert: it must chain to a CA in the origin's http.client_ca)";
    const ADVICE: [(&str, &str); 12] = [
        // TLS over TCP, and QUIC's form of the same alert.
        ("CertificateRequired", NO_CLIENT_CERT),
        ("peer sent no certificates", NO_CLIENT_CERT),
        // The origin's verdict on this edge's certificate: over QUIC its reason (before the
        // names below, which then describe this edge's certificate), over TCP its alert.
        (
            "aborted by peer: the cryptographic handshake failed",
            CLIENT_CERT_REFUSED,
        ),
        ("received fatal alert: UnknownCA", CLIENT_CERT_REFUSED),
        ("received fatal alert: DecryptError", CLIENT_CERT_REFUSED),
        ("received fatal alert: BadCertificate", CLIENT_CERT_REFUSED),
        (
            "CaUsedAsEndEntity",
            " (the origin's certificate is a CA certificate, basicConstraints CA:TRUE, as \
             `openssl req -x509` makes by default; webpki accepts only end-entity \
             certificates: sign a server certificate with a private CA, see the README's \
             \"Certificates for edges and origins\")",
        ),
        (
            "UnknownIssuer",
            " (the origin's certificate does not chain to a certificate in upstream.ca)",
        ),
        (
            "NotValidForName",
            " (the origin's certificate does not name the server name the edge asks for: \
             upstream.origins[].server_name, else the origin's name; put it in the \
             certificate's subjectAltName)",
        ),
        ("Expired", " (the origin's certificate has expired)"),
        (
            "NotValidYet",
            " (the origin's certificate is not valid yet: check both boxes' clocks)",
        ),
        (
            "no application protocol",
            " (the origin speaks neither h2 nor h3 on this port: is upstream.origins[].api \
             the origin's [http] listener?)",
        ),
    ];
    ADVICE
        .iter()
        .find(|(needle, _)| error.contains(needle))
        .map_or("", |(_, advice)| advice)
}

/// An error and its sources, for [`advice`] (hyper keeps the TLS alert in a source).
fn source_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut next = error.source();
    while let Some(e) = next {
        text.push_str(": ");
        text.push_str(&e.to_string());
        next = e.source();
    }
    text
}

/// How to reach origins: TLS trust, protocol, timeouts. One per edge.
#[derive(Clone)]
pub struct Connector {
    tcp_tls: TlsConnector,
    /// The QUIC client endpoint, when pulling over HTTP/3.
    quic: Option<quinn::Endpoint>,
    connect_timeout: Duration,
}

impl Connector {
    /// As `config` says: the origins' trust anchors (`ca`), this edge's client certificate for
    /// origins that require one (`cert`, `key`), HTTP/3 or HTTP/2, the connect timeout.
    pub fn from_config(config: &conf::UpstreamConfig) -> Result<Self, daemon::TlsError> {
        let roots = match &config.ca {
            Some(ca) => daemon::tls::load_roots(ca)?,
            None => rustls::RootCertStore::empty(),
        };
        let identity = match (&config.cert, &config.key) {
            (Some(cert), Some(key)) => Some(daemon::tls::Identity::load(cert, key)?),
            _ => None,
        };
        Self::new(
            roots,
            identity.as_ref(),
            config.protocol == conf::UpstreamProtocol::H3,
            config.connect_timeout(),
        )
    }

    /// `roots` are the origins' trust anchors; `identity` is presented to origins that ask
    /// for a client certificate; `h3` picks HTTP/3 instead of HTTP/2.
    pub fn new(
        roots: rustls::RootCertStore,
        identity: Option<&daemon::tls::Identity>,
        h3: bool,
        connect_timeout: Duration,
    ) -> Result<Self, daemon::TlsError> {
        let tcp = daemon::tls::client_config(roots.clone(), b"h2", identity)?;
        let quic = if h3 {
            let tls = daemon::tls::client_config(roots, b"h3", identity)?;
            let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls)
                .map_err(|e| daemon::TlsError::Quic(e.to_string()))?;
            // Dual-stack, so origins may have IPv4 or IPv6 addresses.
            let bind = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, 0));
            let endpoint = daemon::net::udp_socket(bind, |_| Ok(())).and_then(|socket| {
                quinn::Endpoint::new(
                    quinn::EndpointConfig::default(),
                    None,
                    socket,
                    Arc::new(quinn::TokioRuntime),
                )
            });
            let mut endpoint =
                endpoint.map_err(|e| daemon::TlsError::Quic(format!("client endpoint: {e}")))?;
            endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
            Some(endpoint)
        } else {
            None
        };
        Ok(Self {
            tcp_tls: TlsConnector::from(Arc::new(tcp)),
            quic,
            connect_timeout,
        })
    }

    /// Opens a connection to `addr`, checking its certificate for `name`.
    pub async fn connect(&self, addr: SocketAddr, name: &str) -> Result<Conn, TransportError> {
        match &self.quic {
            Some(endpoint) => {
                let connecting = endpoint
                    .connect(addr, name)
                    .map_err(|e| TransportError::Quic(e.to_string()))?;
                let conn = within(self.connect_timeout, async {
                    connecting
                        .await
                        .map_err(|e| TransportError::Quic(e.to_string()))
                })
                .await?;
                let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn))
                    .await
                    .map_err(|e| TransportError::H3(e.to_string()))?;
                let task = tokio::spawn(async move {
                    let _ = futures::future::poll_fn(|cx| driver.poll_close(cx)).await;
                });
                Ok(Conn(Inner::H3 {
                    send,
                    driver: Arc::new(AbortOnDrop(task)),
                }))
            }
            None => {
                let server = ServerName::try_from(name.to_string())
                    .map_err(|_| TransportError::Name(name.into()))?;
                let tls = within(self.connect_timeout, async {
                    let tcp = TcpStream::connect(addr)
                        .await
                        .map_err(TransportError::Connect)?;
                    let _ = tcp.set_nodelay(true);
                    self.tcp_tls
                        .connect(server, tcp)
                        .await
                        .map_err(TransportError::Tls)
                })
                .await?;
                let (send, conn) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tls))
                        .await?;
                tokio::spawn(async move {
                    let _ = conn.await;
                });
                Ok(Conn(Inner::H2(send)))
            }
        }
    }
}

/// `f`, or [`TransportError::ConnectTimeout`] after `limit`.
async fn within<T>(
    limit: Duration,
    f: impl std::future::Future<Output = Result<T, TransportError>>,
) -> Result<T, TransportError> {
    tokio::time::timeout(limit, f)
        .await
        .map_err(|_| TransportError::ConnectTimeout)?
}

/// Aborts the connection driver when the last handle to the connection goes.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// An open connection to one origin; clones share it.
#[derive(Clone)]
pub struct Conn(Inner);

#[derive(Clone)]
enum Inner {
    H2(hyper::client::conn::http2::SendRequest<Full<Bytes>>),
    H3 {
        send: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
        driver: Arc<AbortOnDrop>,
    },
}

impl Conn {
    /// False once the connection is known to be gone (HTTP/2 tells; HTTP/3 fails on use).
    pub fn usable(&self) -> bool {
        match &self.0 {
            Inner::H2(send) => !send.is_closed(),
            Inner::H3 { driver, .. } => !driver.0.is_finished(),
        }
    }

    /// GETs `path` (with its query), whole body, within `timeout`.
    pub async fn get(
        &self,
        authority: &str,
        path: &str,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), TransportError> {
        self.request(Method::GET, authority, path, Bytes::new(), timeout)
            .await
    }

    /// Sends `method` to `path` with `body`; the whole answer within `timeout`.
    pub async fn request(
        &self,
        method: Method,
        authority: &str,
        path: &str,
        body: Bytes,
        timeout: Duration,
    ) -> Result<(StatusCode, Bytes), TransportError> {
        let uri = format!("https://{authority}{path}");
        let fut = async {
            match &self.0 {
                Inner::H2(send) => {
                    let mut send = send.clone();
                    send.ready().await?;
                    let req = Request::builder()
                        .method(method.clone())
                        .uri(&uri)
                        .body(Full::new(body.clone()))
                        .map_err(|e| TransportError::Body(e.to_string()))?;
                    let res = send.send_request(req).await?;
                    let status = res.status();
                    let body = Limited::new(res.into_body(), MAX_BODY)
                        .collect()
                        .await
                        .map_err(|e| TransportError::Body(e.to_string()))?
                        .to_bytes();
                    Ok((status, body))
                }
                Inner::H3 { send, .. } => {
                    let h3 = |e: &dyn std::fmt::Display| TransportError::H3(e.to_string());
                    let mut send = send.clone();
                    let req = Request::builder()
                        .method(method.clone())
                        .uri(&uri)
                        .body(())
                        .map_err(|e| h3(&e))?;
                    let mut stream = send.send_request(req).await.map_err(|e| h3(&e))?;
                    if !body.is_empty() {
                        stream.send_data(body.clone()).await.map_err(|e| h3(&e))?;
                    }
                    stream.finish().await.map_err(|e| h3(&e))?;
                    let res = stream.recv_response().await.map_err(|e| h3(&e))?;
                    let mut body = BytesMut::new();
                    while let Some(mut chunk) = stream.recv_data().await.map_err(|e| h3(&e))? {
                        if body.len() + chunk.remaining() > MAX_BODY {
                            return Err(TransportError::Body("body too large".into()));
                        }
                        while chunk.has_remaining() {
                            let c = chunk.chunk();
                            body.extend_from_slice(c);
                            let n = c.len();
                            chunk.advance(n);
                        }
                    }
                    Ok((res.status(), body.freeze()))
                }
            }
        };
        tokio::time::timeout(timeout, fut)
            .await
            .map_err(|_| TransportError::Timeout(timeout))?
    }
}
