//! A minimal HTTP/3 client for tests: one QUIC connection, sequential or concurrent GETs.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::{Context, Result};
use bytes::{Buf, Bytes, BytesMut};
use rustls::pki_types::CertificateDer;

/// An HTTP/3 connection to a server whose certificate is `cert`.
pub struct H3Client {
    send: h3::client::SendRequest<h3_quinn::OpenStreams, Bytes>,
    _endpoint: quinn::Endpoint,
    _driver: tokio::task::JoinHandle<()>,
}

/// A response: status, headers, body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: Bytes,
}

impl H3Client {
    /// Connects to `addr`, verifying the server against `cert` for the name `localhost`.
    pub async fn connect(addr: SocketAddr, cert: &CertificateDer<'static>) -> Result<Self> {
        Self::connect_with(addr, cert, quinn::TransportConfig::default()).await
    }

    /// Like [`H3Client::connect`], with `transport` settings (e.g. small receive windows, for
    /// a client that reads slowly).
    pub async fn connect_with(
        addr: SocketAddr,
        cert: &CertificateDer<'static>,
        transport: quinn::TransportConfig,
    ) -> Result<Self> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert.clone())?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"h3".to_vec()];
        let quic = quinn::crypto::rustls::QuicClientConfig::try_from(tls)?;
        let local = match addr {
            SocketAddr::V4(_) => "127.0.0.1:0",
            SocketAddr::V6(_) => "[::1]:0",
        };
        let mut endpoint = quinn::Endpoint::client(local.parse()?)?;
        let mut client = quinn::ClientConfig::new(Arc::new(quic));
        client.transport_config(Arc::new(transport));
        endpoint.set_default_client_config(client);
        let conn = endpoint
            .connect(addr, "localhost")?
            .await
            .context("quic handshake")?;
        let (mut driver, send) = h3::client::new(h3_quinn::Connection::new(conn)).await?;
        let driver = tokio::spawn(async move {
            let _ = futures::future::poll_fn(|cx| driver.poll_close(cx)).await;
        });
        Ok(Self {
            send,
            _endpoint: endpoint,
            _driver: driver,
        })
    }

    /// GETs `path` and returns once the response head has arrived, with the stream, whose body
    /// is left unread for as long as the caller holds it.
    pub async fn get_unread(
        &self,
        path: &str,
    ) -> Result<(
        u16,
        h3::client::RequestStream<h3_quinn::BidiStream<Bytes>, Bytes>,
    )> {
        let mut send = self.send.clone();
        let req = http::Request::get(format!("https://localhost{path}")).body(())?;
        let mut stream = send.send_request(req).await?;
        stream.finish().await?;
        let res = stream.recv_response().await?;
        Ok((res.status().as_u16(), stream))
    }

    /// GETs `path` (with query) and reads the whole body.
    pub async fn get(&self, path: &str) -> Result<Reply> {
        let mut send = self.send.clone();
        let req = http::Request::get(format!("https://localhost{path}")).body(())?;
        let mut stream = send.send_request(req).await?;
        stream.finish().await?;
        let res = stream.recv_response().await?;
        let mut body = BytesMut::new();
        while let Some(mut chunk) = stream.recv_data().await? {
            while chunk.has_remaining() {
                let c = chunk.chunk();
                body.extend_from_slice(c);
                let n = c.len();
                chunk.advance(n);
            }
        }
        Ok(Reply {
            status: res.status().as_u16(),
            headers: res.headers().clone(),
            body: body.freeze(),
        })
    }
}
