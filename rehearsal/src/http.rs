//! The rehearsal's HTTP clients, the three protocols viewers use: HTTP/1.1 (a pool of
//! keep-alive connections per viewer, since a browser keeps a playlist reload and a part
//! request in flight at once), HTTP/2 and HTTP/3 (one multiplexed connection per viewer).
//! hyper, quinn and h3 do the protocol work; this module only opens connections and times
//! requests.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::{Buf, Bytes, BytesMut};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, ServerName};

/// An HTTP version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub enum Proto {
    #[serde(rename = "http/1.1")]
    H1,
    #[serde(rename = "h2")]
    H2,
    #[serde(rename = "h3")]
    H3,
}

impl Proto {
    pub fn name(self) -> &'static str {
        match self {
            Proto::H1 => "HTTP/1.1",
            Proto::H2 => "HTTP/2",
            Proto::H3 => "HTTP/3",
        }
    }
}

/// A server: where to connect and what to call it.
#[derive(Debug, Clone)]
pub struct Server {
    pub https: bool,
    pub host: String,
    pub addr: SocketAddr,
    /// Where HTTP/3 is offered: the same port unless the server's `Alt-Svc` names another.
    pub h3_addr: SocketAddr,
    /// The URL as given, for reports.
    pub url: String,
}

impl Server {
    /// The source address of client `n` to this server: a loopback server sees each client
    /// from its own address of 127.0.0.0/8 (Linux answers them all), so per-address limits
    /// (`[limits] max_connections_per_ip`, `[events] client_per_second`) apply per viewer as
    /// they do to real viewers, not to the whole rehearsal at once. `None`: the system's.
    pub fn client_address(&self, n: u32) -> Option<IpAddr> {
        match self.addr.ip() {
            IpAddr::V4(ip) if ip.is_loopback() => {
                let n = 2 + n % 0x00ff_fff0;
                Some(IpAddr::V4(Ipv4Addr::from(0x7f00_0000 | n)))
            }
            _ => None,
        }
    }

    /// Parses and resolves `url` (`http://` or `https://`, host and port, no path).
    pub async fn resolve(url: &str) -> Result<Self> {
        let uri: http::Uri = url.parse().with_context(|| format!("{url}: not a URL"))?;
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => bail!("{url}: the scheme must be http or https"),
        };
        let host = uri
            .host()
            .with_context(|| format!("{url}: no host"))?
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_string();
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        // IPv4 first: a loopback server is then reached from many addresses
        // ([`Server::client_address`]), where IPv6 has one.
        let mut addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), port))
            .await
            .with_context(|| format!("{url}: cannot resolve {host}"))?
            .collect();
        addrs.sort_by_key(|a| a.is_ipv6());
        let addr = *addrs
            .first()
            .with_context(|| format!("{url}: {host} has no address"))?;
        Ok(Self {
            https,
            host,
            addr,
            h3_addr: addr,
            url: url.trim_end_matches('/').to_string(),
        })
    }
}

/// The UDP port of `h3=":PORT"` in an `Alt-Svc` header (another host is not followed).
pub fn alt_svc_h3_port(value: &str) -> Option<u16> {
    value.split(',').find_map(|entry| {
        let authority = entry.trim().strip_prefix("h3=\"")?.split('"').next()?;
        authority.strip_prefix(':')?.parse().ok()
    })
}

/// What connections share: TLS settings and the QUIC endpoints.
pub struct Net {
    tls_h1: Arc<rustls::ClientConfig>,
    tls_h2: Arc<rustls::ClientConfig>,
    quic: quinn::ClientConfig,
    /// QUIC endpoints (UDP sockets), one per core of this machine, used in turn: one socket's
    /// driver task would be the emulator's bottleneck long before the server's.
    endpoints: Mutex<Vec<quinn::Endpoint>>,
    next_endpoint: AtomicUsize,
    /// Endpoints bound to a client's own address.
    bound: Mutex<HashMap<IpAddr, quinn::Endpoint>>,
}

/// A verifier that takes any certificate (`--insecure`, for the self-signed certificate a
/// default single box generates) but still checks the handshake's signatures.
#[derive(Debug)]
struct AnyCertificate(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// The system's CA bundle (Debian's `ca-certificates`), used when no `--ca` is given.
const SYSTEM_CAS: &str = "/etc/ssl/certs/ca-certificates.crt";

impl Net {
    /// TLS that trusts the certificates in `ca` (PEM; the system's CAs without it), or any
    /// certificate with `insecure`.
    pub fn new(ca: Option<&Path>, insecure: bool) -> Result<Arc<Self>> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let tls = |alpn: &[u8], tls13_only: bool| -> Result<rustls::ClientConfig> {
            let versions: &[&rustls::SupportedProtocolVersion] = if tls13_only {
                &[&rustls::version::TLS13]
            } else {
                rustls::DEFAULT_VERSIONS
            };
            let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
                .with_protocol_versions(versions)?;
            let mut config = if insecure {
                builder
                    .dangerous()
                    .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider.clone())))
                    .with_no_client_auth()
            } else {
                builder
                    .with_root_certificates(roots(ca)?)
                    .with_no_client_auth()
            };
            config.alpn_protocols = vec![alpn.to_vec()];
            Ok(config)
        };
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls(b"h3", true)?)?;
        Ok(Arc::new(Self {
            tls_h1: Arc::new(tls(b"http/1.1", false)?),
            tls_h2: Arc::new(tls(b"h2", false)?),
            quic: quinn::ClientConfig::new(Arc::new(quic)),
            endpoints: Mutex::new(Vec::new()),
            next_endpoint: AtomicUsize::new(0),
            bound: Mutex::new(HashMap::new()),
        }))
    }

    /// A QUIC endpoint for a connection to `to` from `local` (its own endpoint), or from
    /// the system's address (the shared endpoints, in turn).
    fn endpoint(&self, to: SocketAddr, local: Option<IpAddr>) -> Result<quinn::Endpoint> {
        if let Some(ip) = local {
            let mut bound = self.bound.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(e) = bound.get(&ip) {
                return Ok(e.clone());
            }
            let mut endpoint = quinn::Endpoint::client(SocketAddr::new(ip, 0))
                .with_context(|| format!("a UDP socket on {ip}"))?;
            endpoint.set_default_client_config(self.quic.clone());
            bound.insert(ip, endpoint.clone());
            return Ok(endpoint);
        }
        let mut endpoints = self.endpoints.lock().unwrap_or_else(|e| e.into_inner());
        let wanted = std::thread::available_parallelism().map_or(1, |n| n.get());
        if endpoints.len() < wanted {
            let local: SocketAddr = match to {
                SocketAddr::V4(_) => "0.0.0.0:0".parse()?,
                SocketAddr::V6(_) => "[::]:0".parse()?,
            };
            let mut endpoint = quinn::Endpoint::client(local).context("a UDP socket for QUIC")?;
            endpoint.set_default_client_config(self.quic.clone());
            endpoints.push(endpoint.clone());
            return Ok(endpoint);
        }
        let i = self.next_endpoint.fetch_add(1, Ordering::Relaxed) % endpoints.len();
        Ok(endpoints[i].clone())
    }
}

fn roots(ca: Option<&Path>) -> Result<rustls::RootCertStore> {
    use rustls::pki_types::pem::PemObject;
    let path = ca.unwrap_or(Path::new(SYSTEM_CAS));
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(path)
        .with_context(|| format!("CA certificates {}", path.display()))?
    {
        roots.add(cert.with_context(|| format!("CA certificates {}", path.display()))?)?;
    }
    if roots.is_empty() {
        bail!("{}: no certificate", path.display());
    }
    Ok(roots)
}

/// An answer, read whole, and when it came.
#[derive(Debug)]
pub struct Fetched {
    pub status: u16,
    /// `Alt-Svc`, where the server sent one.
    pub alt_svc: Option<String>,
    pub body: Bytes,
    /// From the request to the response's head.
    pub head: Duration,
    /// From the request to the body's end.
    pub took: Duration,
}

type H1 = hyper::client::conn::http1::SendRequest<Full<Bytes>>;
type H2 = hyper::client::conn::http2::SendRequest<Full<Bytes>>;
type H3 = h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>;

enum Inner {
    /// Idle keep-alive connections; a request takes one or opens one.
    H1(Mutex<Vec<H1>>),
    H2(H2),
    H3 {
        send: H3,
        _driver: tokio::task::JoinHandle<()>,
    },
}

/// One client's connection(s) to a server.
pub struct Conn {
    pub proto: Proto,
    server: Arc<Server>,
    local: Option<IpAddr>,
    net: Arc<Net>,
    inner: Inner,
}

impl Drop for Conn {
    fn drop(&mut self) {
        if let Inner::H3 { _driver, .. } = &self.inner {
            _driver.abort();
        }
    }
}

/// A response whose body is read as it arrives (a server-sent event feed).
pub struct Streaming {
    pub status: u16,
    body: Incoming,
}

impl Streaming {
    /// The next piece of the body; `None` at its end.
    pub async fn next(&mut self) -> Result<Option<Bytes>> {
        loop {
            match self.body.frame().await {
                None => return Ok(None),
                Some(frame) => {
                    if let Ok(data) = frame?.into_data() {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }
}

impl Conn {
    /// Connects to `server` with `proto` (HTTP/2 and HTTP/3 need `https`; plain HTTP/2 is
    /// h2c with prior knowledge), from `local` when given.
    pub async fn open(
        proto: Proto,
        server: &Arc<Server>,
        net: &Arc<Net>,
        local: Option<IpAddr>,
    ) -> Result<Self> {
        let inner = match proto {
            Proto::H1 => Inner::H1(Mutex::new(vec![h1(server, net, local).await?])),
            Proto::H2 => {
                let io = tcp(server, &net.tls_h2, local).await?;
                let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                    .handshake(io)
                    .await
                    .context("HTTP/2 handshake")?;
                tokio::spawn(conn);
                Inner::H2(send)
            }
            Proto::H3 => {
                if !server.https {
                    bail!("{}: HTTP/3 needs an https URL", server.url);
                }
                let conn = net
                    .endpoint(server.h3_addr, local)?
                    .connect(server.h3_addr, &server.host)?
                    .await
                    .with_context(|| format!("QUIC handshake with {}", server.h3_addr))?;
                let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn))
                    .await
                    .context("HTTP/3 set-up")?;
                let driver = tokio::spawn(async move {
                    let _ = futures::future::poll_fn(|cx| driver.poll_close(cx)).await;
                });
                Inner::H3 {
                    send,
                    _driver: driver,
                }
            }
        };
        Ok(Self {
            proto,
            server: server.clone(),
            local,
            net: net.clone(),
            inner,
        })
    }

    /// A request for `path`: over HTTP/1.1 in origin form with a `Host` header (hyper's
    /// connection-level client adds none, and servers other than daihuo's, nginx among
    /// them, answer 400 without one), over HTTP/2 and HTTP/3 with the full URI (its
    /// `:authority`).
    fn builder(&self, method: http::Method, path: &str) -> http::request::Builder {
        let req = http::Request::builder().method(method);
        match self.proto {
            Proto::H1 => {
                let authority = self.server.url.split_once("://").map_or("", |(_, a)| a);
                req.uri(path).header(http::header::HOST, authority)
            }
            Proto::H2 | Proto::H3 => req.uri(format!("{}{path}", self.server.url)),
        }
    }

    /// GETs `path` (with its query) and reads the whole body.
    pub async fn get(&self, path: &str) -> Result<Fetched> {
        self.request(http::Method::GET, path, Bytes::new(), &[])
            .await
    }

    /// A request with `body` and extra `headers`, its answer read whole.
    pub async fn request(
        &self,
        method: http::Method,
        path: &str,
        body: Bytes,
        headers: &[(&str, &str)],
    ) -> Result<Fetched> {
        let start = Instant::now();
        let mut req = self.builder(method, path);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        match &self.inner {
            Inner::H1(_) | Inner::H2(_) => {
                let (res, idle) = self.hyper(req.body(Full::new(body))?).await?;
                let head = start.elapsed();
                let status = res.status().as_u16();
                let alt_svc = res
                    .headers()
                    .get(http::header::ALT_SVC)
                    .and_then(|v| v.to_str().ok())
                    .map(str::to_string);
                let body = res.into_body().collect().await?.to_bytes();
                if let (Inner::H1(pool), Some(idle)) = (&self.inner, idle) {
                    pool.lock().unwrap_or_else(|e| e.into_inner()).push(idle);
                }
                Ok(Fetched {
                    status,
                    alt_svc,
                    body,
                    head,
                    took: start.elapsed(),
                })
            }
            Inner::H3 { send, .. } => {
                let mut send = send.clone();
                let mut stream = send.send_request(req.body(())?).await?;
                if !body.is_empty() {
                    stream.send_data(body).await?;
                }
                stream.finish().await?;
                let res = stream.recv_response().await?;
                let head = start.elapsed();
                let mut bytes = BytesMut::new();
                while let Some(mut chunk) = stream.recv_data().await? {
                    while chunk.has_remaining() {
                        let c = chunk.chunk();
                        bytes.extend_from_slice(c);
                        let n = c.len();
                        chunk.advance(n);
                    }
                }
                Ok(Fetched {
                    status: res.status().as_u16(),
                    alt_svc: None,
                    body: bytes.freeze(),
                    head,
                    took: start.elapsed(),
                })
            }
        }
    }

    /// GETs `path` and returns at the response's head, its body to read as it comes
    /// (HTTP/1.1 and HTTP/2).
    pub async fn stream(&self, path: &str) -> Result<Streaming> {
        let req = self
            .builder(http::Method::GET, path)
            .body(Full::new(Bytes::new()))?;
        // An HTTP/1.1 connection stays with the stream.
        let (res, _) = self.hyper(req).await?;
        Ok(Streaming {
            status: res.status().as_u16(),
            body: res.into_body(),
        })
    }

    /// Sends `req` over HTTP/1.1 or HTTP/2; with the HTTP/1.1 connection it used, to go
    /// back to the pool once the body is read.
    async fn hyper(
        &self,
        req: http::Request<Full<Bytes>>,
    ) -> Result<(http::Response<Incoming>, Option<H1>)> {
        match &self.inner {
            Inner::H1(pool) => {
                // An idle connection that is still open, else a new one.
                let idle = {
                    let mut pool = pool.lock().unwrap_or_else(|e| e.into_inner());
                    pool.retain(|c| !c.is_closed());
                    pool.pop()
                };
                let mut send = match idle {
                    Some(c) => c,
                    None => h1(&self.server, &self.net, self.local).await?,
                };
                send.ready().await?;
                let res = send.send_request(req).await?;
                Ok((res, Some(send)))
            }
            Inner::H2(send) => {
                let mut send = send.clone();
                send.ready().await?;
                Ok((send.send_request(req).await?, None))
            }
            Inner::H3 { .. } => bail!("streamed bodies are read over HTTP/1.1 or HTTP/2"),
        }
    }
}

/// A TCP (and TLS, for https) connection with `tls`'s ALPN.
async fn tcp(
    server: &Server,
    tls: &Arc<rustls::ClientConfig>,
    local: Option<IpAddr>,
) -> Result<TokioIo<Box<dyn Io>>> {
    let connect = async {
        let socket = match server.addr {
            SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4()?,
            SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6()?,
        };
        if let Some(ip) = local {
            socket.bind(SocketAddr::new(ip, 0))?;
        }
        socket.connect(server.addr).await
    };
    let tcp = connect
        .await
        .with_context(|| format!("connect to {}", server.addr))?;
    tcp.set_nodelay(true)?;
    if !server.https {
        return Ok(TokioIo::new(Box::new(tcp)));
    }
    let name = ServerName::try_from(server.host.clone())?;
    let stream = tokio_rustls::TlsConnector::from(tls.clone())
        .connect(name, tcp)
        .await
        .with_context(|| format!("TLS handshake with {}", server.addr))?;
    Ok(TokioIo::new(Box::new(stream)))
}

async fn h1(server: &Server, net: &Net, local: Option<IpAddr>) -> Result<H1> {
    let io = tcp(server, &net.tls_h1, local).await?;
    let (send, conn) = hyper::client::conn::http1::handshake(io)
        .await
        .context("HTTP/1.1 handshake")?;
    tokio::spawn(conn);
    Ok(send)
}

/// A byte stream hyper can run over: TCP, or TLS over TCP.
pub trait Io: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin {}
impl<T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin> Io for T {}

#[cfg(test)]
mod tests {
    #[test]
    fn alt_svc_names_the_http3_port() {
        assert_eq!(super::alt_svc_h3_port("h3=\":8443\"; ma=86400"), Some(8443));
        assert_eq!(
            super::alt_svc_h3_port("h2=\":1\", h3=\":4433\""),
            Some(4433)
        );
        assert_eq!(super::alt_svc_h3_port("h3=\"other:443\""), None);
        assert_eq!(super::alt_svc_h3_port("clear"), None);
    }
}
