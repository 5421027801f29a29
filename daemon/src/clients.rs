//! Who a client is behind load balancers and proxies, and how clients are grouped for
//! per-address limits (`[clients]`).
//!
//! - An L4 balancer in front of the TCP listeners hides every viewer behind its own address.
//!   Balancers listed in `clients.proxy_protocol` announce the client with a PROXY protocol
//!   header (v1 text or v2 binary, HAProxy's specification; parsed by the `ppp` crate) before
//!   anything else on the connection: [`read_proxy_header`].
//! - An HTTP proxy listed in `clients.trusted_proxies` names the client in
//!   `X-Forwarded-For`; from anyone else that header is ignored ([`Clients::forwarded`]).
//! - IPv6 subscribers get a whole prefix (commonly a /64), so per-address limits count IPv6
//!   clients by `clients.ipv6_prefix` bits ([`Clients::limit_key`]): rotating through the
//!   addresses of one prefix does not get past a cap.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use ipnet::IpNet;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;

/// What `[clients]` says, ready for lookups.
#[derive(Debug, Clone)]
pub struct Clients {
    proxy_protocol: Vec<IpNet>,
    trusted_proxies: Vec<IpNet>,
    ipv6_prefix: u8,
}

impl Default for Clients {
    /// No balancers, no proxies, IPv6 clients by /64.
    fn default() -> Self {
        Self {
            proxy_protocol: Vec::new(),
            trusted_proxies: Vec::new(),
            ipv6_prefix: 64,
        }
    }
}

impl From<&conf::ClientsConfig> for Clients {
    fn from(c: &conf::ClientsConfig) -> Self {
        Self {
            proxy_protocol: c.proxy_protocol_nets(),
            trusted_proxies: c.trusted_proxy_nets(),
            ipv6_prefix: c.ipv6_prefix,
        }
    }
}

impl Clients {
    /// Whether a TCP connection from `ip` starts with a PROXY protocol header.
    pub fn expects_proxy_header(&self, ip: IpAddr) -> bool {
        contains(&self.proxy_protocol, ip)
    }

    /// The address per-client limits count `ip` by: itself for IPv4, its prefix for IPv6
    /// (IPv4-mapped IPv6 addresses count as the IPv4 address).
    pub fn limit_key(&self, ip: IpAddr) -> IpAddr {
        match canonical(ip) {
            IpAddr::V6(v6) => {
                let bits = u128::from(v6);
                let prefix = u32::from(self.ipv6_prefix.min(128));
                let mask = u128::MAX.checked_shl(128 - prefix).unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(bits & mask))
            }
            v4 => v4,
        }
    }

    /// The client of a request that came from `peer` with `headers`: `peer` itself, unless
    /// `peer` is a trusted proxy, in which case the last address of `X-Forwarded-For` that
    /// is not one (the proxies append; the leftmost entries are whatever the client wrote).
    /// The port stays the connection's.
    pub fn forwarded(&self, peer: SocketAddr, headers: &http::HeaderMap) -> SocketAddr {
        if self.trusted_proxies.is_empty() || !contains(&self.trusted_proxies, peer.ip()) {
            return peer;
        }
        let mut client = peer.ip();
        let hops = headers
            .get_all("x-forwarded-for")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .collect::<Vec<_>>();
        for hop in hops.iter().rev() {
            let Ok(ip) = hop.trim().parse::<IpAddr>() else {
                break;
            };
            client = ip;
            if !contains(&self.trusted_proxies, ip) {
                break;
            }
        }
        SocketAddr::new(canonical(client), peer.port())
    }
}

fn contains(nets: &[IpNet], ip: IpAddr) -> bool {
    let ip = canonical(ip);
    nets.iter().any(|n| n.contains(&ip))
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`, what a dual-stack socket reports for IPv4
/// clients) as IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Why a connection's PROXY protocol header was refused.
#[derive(Debug, thiserror::Error)]
pub enum ProxyHeaderError {
    #[error("no proxy protocol header within {0:?}")]
    Timeout(Duration),
    #[error("the connection closed before its proxy protocol header")]
    Closed,
    #[error("no proxy protocol header: the connection starts with something else")]
    Missing,
    #[error("invalid proxy protocol header: {0}")]
    Invalid(String),
    #[error("reading the proxy protocol header: {0}")]
    Io(#[from] std::io::Error),
}

/// The v2 header's signature (12 bytes).
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\0\r\nQUIT\n";
/// The v1 header's start.
const V1_PREFIX: &[u8] = b"PROXY ";
/// Longest header read: v1 is at most 107 bytes; v2 is 16 plus its addresses and TLVs
/// (balancers add a few dozen bytes of TLVs).
const MAX_HEADER: usize = 1024;

/// Reads the PROXY protocol header at the start of `stream` and returns the client it names;
/// `None` for a header that names none (v2 LOCAL, v1 UNKNOWN: the balancer's own health
/// checks), whose connection is then its own client. Only the header is consumed: the bytes
/// after it (the TLS handshake, the request) stay for whoever reads next.
pub async fn read_proxy_header(
    stream: &mut TcpStream,
    timeout: Duration,
) -> Result<Option<SocketAddr>, ProxyHeaderError> {
    let read = async {
        let mut buf = [0; MAX_HEADER];
        loop {
            let n = stream.peek(&mut buf).await?;
            if n == 0 {
                return Err(ProxyHeaderError::Closed);
            }
            match parse_proxy_header(&buf[..n])? {
                Some((len, client)) => {
                    let mut header = vec![0; len];
                    stream.read_exact(&mut header).await?;
                    return Ok(client);
                }
                None if n == buf.len() => {
                    return Err(ProxyHeaderError::Invalid("header too long".into()))
                }
                // A header split across segments: peek returns what has arrived at once, so
                // wait a little for the rest (rare: balancers send the header in one write).
                None => tokio::time::sleep(Duration::from_millis(5)).await,
            }
        }
    };
    tokio::time::timeout(timeout, read)
        .await
        .map_err(|_| ProxyHeaderError::Timeout(timeout))?
}

/// A complete header at the start of `input`: its length and the client it names. `None`
/// when more bytes are needed.
fn parse_proxy_header(
    input: &[u8],
) -> Result<Option<(usize, Option<SocketAddr>)>, ProxyHeaderError> {
    use ppp::{v1, v2, HeaderResult, PartialResult};
    let prefix = |p: &[u8]| input.len().min(p.len());
    let v2 = input[..prefix(V2_SIGNATURE)] == V2_SIGNATURE[..prefix(V2_SIGNATURE)];
    let v1 = input[..prefix(V1_PREFIX)] == V1_PREFIX[..prefix(V1_PREFIX)];
    if !v1 && !v2 {
        return Err(ProxyHeaderError::Missing);
    }
    let parsed = HeaderResult::parse(input);
    if parsed.is_incomplete() {
        // ppp calls a v1 header with fields missing incomplete even when its line has ended.
        if v1 && input.windows(2).any(|w| w == b"\r\n") {
            return Err(ProxyHeaderError::Invalid("malformed v1 header".into()));
        }
        return Ok(None);
    }
    let invalid = |e: &dyn std::fmt::Display| ProxyHeaderError::Invalid(e.to_string());
    match parsed {
        HeaderResult::V1(Ok(h)) => {
            let client = match h.addresses {
                v1::Addresses::Tcp4(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                v1::Addresses::Tcp6(a) => Some(SocketAddr::from((a.source_address, a.source_port))),
                v1::Addresses::Unknown => None,
            };
            Ok(Some((h.header.len(), client)))
        }
        HeaderResult::V2(Ok(h)) => {
            let client = match (h.command, h.addresses) {
                (v2::Command::Local, _) => None,
                (_, v2::Addresses::IPv4(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                (_, v2::Addresses::IPv6(a)) => {
                    Some(SocketAddr::from((a.source_address, a.source_port)))
                }
                (_, v2::Addresses::Unspecified | v2::Addresses::Unix(_)) => None,
            };
            Ok(Some((h.len(), client)))
        }
        HeaderResult::V1(Err(e)) => Err(invalid(&e)),
        HeaderResult::V2(Err(e)) => Err(invalid(&e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clients(proxy_protocol: &[&str], trusted: &[&str], ipv6_prefix: u8) -> Clients {
        let config = conf::ClientsConfig {
            proxy_protocol: proxy_protocol.iter().map(|s| s.to_string()).collect(),
            trusted_proxies: trusted.iter().map(|s| s.to_string()).collect(),
            ipv6_prefix,
        };
        Clients::from(&config)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv6_clients_count_by_their_prefix() {
        let c = clients(&[], &[], 64);
        assert_eq!(
            c.limit_key(ip("2001:db8:1:2:aaaa::1")),
            ip("2001:db8:1:2::")
        );
        assert_eq!(
            c.limit_key(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            ip("2001:db8:1:2::")
        );
        assert_ne!(c.limit_key(ip("2001:db8:1:3::1")), ip("2001:db8:1:2::"));
        assert_eq!(c.limit_key(ip("192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(c.limit_key(ip("::ffff:192.0.2.7")), ip("192.0.2.7"));
        assert_eq!(
            clients(&[], &[], 128).limit_key(ip("2001:db8::1")),
            ip("2001:db8::1")
        );
        assert_eq!(
            clients(&[], &[], 48).limit_key(ip("2001:db8:1:2::1")),
            ip("2001:db8:1::")
        );
    }

    #[test]
    fn forwarded_for_is_believed_only_from_trusted_proxies() {
        let c = clients(&[], &["10.0.0.0/8", "192.0.2.1"], 64);
        let mut headers = http::HeaderMap::new();
        headers.append("x-forwarded-for", "198.51.100.9, 10.1.1.1".parse().unwrap());
        let peer = |s: &str| SocketAddr::new(ip(s), 40000);
        // From a trusted proxy: the last hop that is not a trusted proxy.
        assert_eq!(
            c.forwarded(peer("10.0.0.5"), &headers),
            peer("198.51.100.9")
        );
        assert_eq!(
            c.forwarded(peer("192.0.2.1"), &headers),
            peer("198.51.100.9")
        );
        // From anyone else: the header is whatever the client wrote.
        assert_eq!(
            c.forwarded(peer("203.0.113.3"), &headers),
            peer("203.0.113.3")
        );
        // A forged leftmost entry does not win over the proxy's own: spoofer, then real.
        let mut spoofed = http::HeaderMap::new();
        spoofed.append("x-forwarded-for", "1.2.3.4".parse().unwrap());
        spoofed.append("x-forwarded-for", "198.51.100.9".parse().unwrap());
        assert_eq!(
            c.forwarded(peer("10.0.0.5"), &spoofed),
            peer("198.51.100.9")
        );
        // Garbage stops the walk at the last good hop.
        let mut bad = http::HeaderMap::new();
        bad.append("x-forwarded-for", "not-an-ip, 10.2.2.2".parse().unwrap());
        assert_eq!(c.forwarded(peer("10.0.0.5"), &bad), peer("10.2.2.2"));
        // No trusted proxies configured: never read.
        assert_eq!(
            clients(&[], &[], 64).forwarded(peer("10.0.0.5"), &headers),
            peer("10.0.0.5")
        );
    }

    #[test]
    fn proxy_headers_v1_and_v2() {
        let v1 = b"PROXY TCP4 198.51.100.9 10.0.0.1 40000 443\r\n\x16\x03\x01";
        assert_eq!(
            parse_proxy_header(v1).unwrap(),
            Some((v1.len() - 3, Some("198.51.100.9:40000".parse().unwrap())))
        );
        let v6 = b"PROXY TCP6 2001:db8::9 2001:db8::1 40000 443\r\n";
        assert_eq!(
            parse_proxy_header(v6).unwrap(),
            Some((v6.len(), Some("[2001:db8::9]:40000".parse().unwrap())))
        );
        assert_eq!(
            parse_proxy_header(b"PROXY UNKNOWN\r\n").unwrap(),
            Some((15, None))
        );
        // Split headers wait for more; anything else is refused.
        assert_eq!(parse_proxy_header(b"PROXY TCP4 198.51").unwrap(), None);
        assert_eq!(parse_proxy_header(b"PRO").unwrap(), None);
        assert!(matches!(
            parse_proxy_header(b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\x00"),
            Err(ProxyHeaderError::Missing)
        ));
        assert!(matches!(
            parse_proxy_header(b"PROXY TCP4 nonsense here\r\n"),
            Err(ProxyHeaderError::Invalid(_))
        ));
        // v2: PROXY over TCP4, 198.51.100.9:40000 -> 10.0.0.1:443, then the client's bytes.
        let mut v2 = V2_SIGNATURE.to_vec();
        v2.extend_from_slice(&[0x21, 0x11, 0, 12, 198, 51, 100, 9, 10, 0, 0, 1]);
        v2.extend_from_slice(&40000u16.to_be_bytes());
        v2.extend_from_slice(&443u16.to_be_bytes());
        let len = v2.len();
        v2.extend_from_slice(b"GET / HTTP/1.1\r\n");
        assert_eq!(
            parse_proxy_header(&v2).unwrap(),
            Some((len, Some("198.51.100.9:40000".parse().unwrap())))
        );
        assert_eq!(parse_proxy_header(&v2[..20]).unwrap(), None);
        // LOCAL (a balancer's own health check): no client.
        let mut local = V2_SIGNATURE.to_vec();
        local.extend_from_slice(&[0x20, 0x00, 0, 0]);
        assert_eq!(parse_proxy_header(&local).unwrap(), Some((16, None)));
    }
}
