//! Binding listeners. `[::]:PORT` is dual-stack: one socket accepts IPv6 and IPv4 (which
//! arrives as `::ffff:a.b.c.d` and is reported as plain IPv4, see [`canonical`]). A host
//! without IPv6 falls back to `0.0.0.0:PORT` with a warning, so the default still starts.
//! `0.0.0.0:PORT` binds IPv4 only; a specific IPv6 address (`[2001:db8::1]:PORT`) IPv6 only.
//!
//! socket2 because std and tokio bind with the kernel's `net.ipv6.bindv6only` default, which a
//! distribution may set either way; the daemons say which they mean.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};
use tracing::warn;

/// How many connections the kernel queues before `accept` (tokio's own default).
const BACKLOG: i32 = 1024;

/// A TCP listener on `addr` (see the module docs for `[::]`).
pub fn tcp_listener(addr: SocketAddr) -> io::Result<tokio::net::TcpListener> {
    let socket = bound(addr, Type::STREAM, Protocol::TCP, |s| {
        s.set_reuse_address(true)
    })?;
    socket.listen(BACKLOG)?;
    tokio::net::TcpListener::from_std(socket.into())
}

/// A UDP socket on `addr` (see the module docs for `[::]`), non-blocking, with `prepare`
/// applied before the bind (buffer sizes, say).
pub fn udp_socket(
    addr: SocketAddr,
    prepare: impl Fn(&Socket) -> io::Result<()>,
) -> io::Result<std::net::UdpSocket> {
    bound(addr, Type::DGRAM, Protocol::UDP, prepare).map(Into::into)
}

fn bound(
    addr: SocketAddr,
    kind: Type,
    protocol: Protocol,
    prepare: impl Fn(&Socket) -> io::Result<()>,
) -> io::Result<Socket> {
    let attempt = |addr: SocketAddr| -> io::Result<Socket> {
        let socket = Socket::new(Domain::for_address(addr), kind, Some(protocol))?;
        if addr.is_ipv6() {
            socket.set_only_v6(!addr.ip().is_unspecified())?;
        }
        socket.set_nonblocking(true)?;
        prepare(&socket)?;
        socket.bind(&addr.into())?;
        Ok(socket)
    };
    match attempt(addr) {
        Err(e) if addr.is_ipv6() && addr.ip().is_unspecified() && no_ipv6(&e) => {
            let v4 = SocketAddr::from((Ipv4Addr::UNSPECIFIED, addr.port()));
            warn!("{addr}: IPv6 is not available on this host ({e}); listening on {v4} only");
            attempt(v4)
        }
        result => result,
    }
}

/// Whether `e` says the host has no IPv6 (kernel built without it, or disabled).
fn no_ipv6(e: &io::Error) -> bool {
    const EAFNOSUPPORT: i32 = 97;
    const EADDRNOTAVAIL: i32 = 99;
    matches!(e.raw_os_error(), Some(EAFNOSUPPORT | EADDRNOTAVAIL))
}

/// `addr` with an IPv4-mapped IPv6 address (`::ffff:192.0.2.1`, how a dual-stack socket sees
/// an IPv4 client) written as the IPv4 address it is, so limits, `[clients]` ranges and logs
/// see one client one way whichever socket it came through.
pub fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    #[tokio::test]
    async fn unspecified_ipv6_accepts_both_families_and_reports_ipv4_plainly() {
        let listener = tcp_listener("[::]:0".parse().unwrap()).unwrap();
        let port = listener.local_addr().unwrap().port();
        for (target, seen) in [
            (SocketAddr::from((Ipv4Addr::LOCALHOST, port)), "127.0.0.1"),
            (SocketAddr::from((Ipv6Addr::LOCALHOST, port)), "::1"),
        ] {
            let _client = tokio::net::TcpStream::connect(target).await.unwrap();
            let (_, from) = listener.accept().await.unwrap();
            assert_eq!(canonical(from).ip().to_string(), seen, "via {target}");
        }
    }

    #[test]
    fn udp_on_unspecified_ipv6_hears_ipv4_and_a_specific_address_one_family() {
        let socket = udp_socket("[::]:0".parse().unwrap(), |_| Ok(())).unwrap();
        socket.set_nonblocking(false).unwrap();
        let port = socket.local_addr().unwrap().port();
        let client = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        client.send_to(b"hi", ("127.0.0.1", port)).unwrap();
        let mut buf = [0; 8];
        let (n, from) = socket.recv_from(&mut buf).unwrap();
        assert_eq!(
            (&buf[..n], canonical(from).ip()),
            (&b"hi"[..], client.local_addr().unwrap().ip())
        );

        // `[::1]` is IPv6 only: IPv4 on the same port number is free.
        let v6 = udp_socket("[::1]:0".parse().unwrap(), |_| Ok(())).unwrap();
        let port = v6.local_addr().unwrap().port();
        assert!(std::net::UdpSocket::bind(("127.0.0.1", port)).is_ok());
    }

    #[test]
    fn ipv4_mapped_addresses_become_ipv4() {
        let mapped: SocketAddr = "[::ffff:192.0.2.7]:443".parse().unwrap();
        assert_eq!(canonical(mapped), "192.0.2.7:443".parse().unwrap());
        let v6: SocketAddr = "[2001:db8::7]:443".parse().unwrap();
        assert_eq!(canonical(v6), v6);
    }
}
