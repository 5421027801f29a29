//! Certificates for TLS served (viewers at the edge, edges at the origin) and trusted (the
//! edge's upstream client): the configured PEM files, or a self-signed certificate for
//! `localhost` generated at start so a bare box serves HTTPS and HTTP/3 at once.

use std::path::Path;
use std::sync::Arc;

use arc_swap::ArcSwap;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::{ClientHello, ResolvesServerCert, WebPkiClientVerifier};
use rustls::sign::CertifiedKey;

/// Why the TLS set-up failed.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0}: no certificate found in the PEM file")]
    NoCertificate(String),
    #[error("{0}: no private key found in the PEM file")]
    NoKey(String),
    #[error("generating a self-signed certificate: {0}")]
    Generate(#[from] rcgen::Error),
    #[error("tls configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("quic tls configuration: {0}")]
    Quic(String),
    #[error("{path}: not usable as client CA: {reason}")]
    ClientCa { path: String, reason: String },
}

/// A certificate chain and its key.
#[derive(Debug)]
pub struct Identity {
    pub chain: Vec<CertificateDer<'static>>,
    pub key: PrivateKeyDer<'static>,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Self {
            chain: self.chain.clone(),
            key: self.key.clone_key(),
        }
    }
}

impl Identity {
    /// Loads a PEM chain and key from files.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        use rustls::pki_types::pem::PemObject;
        let read = |p: &Path| {
            std::fs::read(p).map_err(|source| TlsError::Read {
                path: p.display().to_string(),
                source,
            })
        };
        let cert_pem = read(cert)?;
        let key_pem = read(key)?;
        let chain: Vec<_> = CertificateDer::pem_slice_iter(&cert_pem)
            .filter_map(Result::ok)
            .collect();
        if chain.is_empty() {
            return Err(TlsError::NoCertificate(cert.display().to_string()));
        }
        let key = PrivateKeyDer::from_pem_slice(&key_pem)
            .map_err(|_| TlsError::NoKey(key.display().to_string()))?;
        Ok(Self { chain, key })
    }

    /// A fresh self-signed certificate for `localhost`, `127.0.0.1` and `::1`.
    pub fn self_signed() -> Result<Self, TlsError> {
        let names = vec![
            "localhost".to_string(),
            "127.0.0.1".to_string(),
            "::1".to_string(),
        ];
        let certified = rcgen::generate_simple_self_signed(names)?;
        Ok(Self {
            chain: vec![certified.cert.der().clone()],
            key: PrivateKeyDer::Pkcs8(certified.signing_key.serialize_der().into()),
        })
    }

    /// The served form: the chain with its key loaded for signing.
    pub fn certified(&self) -> Result<Arc<CertifiedKey>, TlsError> {
        let key = provider()
            .key_provider
            .load_private_key(self.key.clone_key())?;
        Ok(Arc::new(CertifiedKey::new(self.chain.clone(), key)))
    }
}

/// The certificate a listener serves, replaceable while it runs: every TLS and QUIC
/// configuration built from one [`Certificates`] resolves to its current certificate, so a
/// reload reaches new connections at once and leaves established ones alone.
#[derive(Debug)]
pub struct Certificates {
    current: ArcSwap<CertifiedKey>,
}

impl Certificates {
    /// Serves the configured PEM files, or a self-signed certificate for `localhost`.
    pub fn new(files: Option<(&Path, &Path)>) -> Result<Arc<Self>, TlsError> {
        let identity = match files {
            Some((cert, key)) => Identity::load(cert, key)?,
            None => Identity::self_signed()?,
        };
        Ok(Arc::new(Self {
            current: ArcSwap::new(identity.certified()?),
        }))
    }

    /// Serves `next` to new connections from now on.
    pub fn store(&self, next: Arc<CertifiedKey>) {
        self.current.store(next);
    }

    /// The leaf certificate served now.
    pub fn leaf(&self) -> CertificateDer<'static> {
        self.current.load().cert[0].clone()
    }

    /// TLS 1.2+ for TCP with ALPN `h2` and `http/1.1`; with `clients`, a client certificate
    /// it accepts is required.
    pub fn tcp_config(
        self: &Arc<Self>,
        clients: Option<&Arc<dyn ClientCertVerifier>>,
    ) -> Result<Arc<rustls::ServerConfig>, TlsError> {
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?;
        let mut config = match clients {
            Some(verifier) => builder.with_client_cert_verifier(verifier.clone()),
            None => builder.with_no_client_auth(),
        }
        .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }

    /// TLS 1.3 for QUIC with ALPN `h3`; with `clients`, a client certificate it accepts is
    /// required.
    pub fn quic_config(
        self: &Arc<Self>,
        clients: Option<&Arc<dyn ClientCertVerifier>>,
    ) -> Result<quinn::ServerConfig, TlsError> {
        let builder = rustls::ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])?;
        let mut config = match clients {
            Some(verifier) => builder.with_client_cert_verifier(verifier.clone()),
            None => builder.with_no_client_auth(),
        }
        .with_cert_resolver(self.clone());
        config.alpn_protocols = vec![b"h3".to_vec()];
        let crypto = quinn::crypto::rustls::QuicServerConfig::try_from(config)
            .map_err(|e| TlsError::Quic(e.to_string()))?;
        Ok(quinn::ServerConfig::with_crypto(Arc::new(crypto)))
    }
}

impl ResolvesServerCert for Certificates {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

/// Trust anchors from a PEM file (a CA, or a server's own self-signed certificate).
pub fn load_roots(path: &Path) -> Result<rustls::RootCertStore, TlsError> {
    use rustls::pki_types::pem::PemObject;
    let pem = std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.display().to_string(),
        source,
    })?;
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(&pem).filter_map(Result::ok) {
        roots.add(cert)?;
    }
    if roots.is_empty() {
        return Err(TlsError::NoCertificate(path.display().to_string()));
    }
    Ok(roots)
}

/// Requires clients to present a certificate chaining to a CA of the PEM file at `path`
/// (mutual TLS: the origin API admits only edges holding such a certificate).
pub fn client_verifier(path: &Path) -> Result<Arc<dyn ClientCertVerifier>, TlsError> {
    let roots = load_roots(path)?;
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider())
        .build()
        .map_err(|e| TlsError::ClientCa {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
}

/// A client configuration trusting `roots`, offering `alpn` (TLS 1.3 only for `h3`) and,
/// when the server asks for one, the certificate of `identity`.
pub fn client_config(
    roots: rustls::RootCertStore,
    alpn: &[u8],
    identity: Option<&Identity>,
) -> Result<rustls::ClientConfig, TlsError> {
    let versions: &[&rustls::SupportedProtocolVersion] = if alpn == b"h3" {
        &[&rustls::version::TLS13]
    } else {
        &[&rustls::version::TLS13, &rustls::version::TLS12]
    };
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(versions)?
        .with_root_certificates(roots);
    let mut config = match identity {
        Some(id) => builder.with_client_auth_cert(id.chain.clone(), id.key.clone_key())?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![alpn.to_vec()];
    Ok(config)
}

/// The crypto provider (ring), chosen explicitly so no process-wide default is needed.
fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}
