//! Hostile and unauthorized viewers against a single box on loopback: signed playback
//! (valid, expired, tampered, another room's token, none), path attacks, a slowloris client
//! cut off by the header-read timeout, slow readers cut off by the send timeout, and QUIC
//! Retry under load, and idle HTTP/2 connections cut by the idle timeout.

// Tests panic on purpose when the system under test misbehaves.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

use daihuo::peers::ffmpeg_push;
use daihuo::{eventually, loopback_config, require_ffmpeg, Child};
use edge_node::Edge;

const SECRET: &str = "playback-secret-of-at-least-32-chars";

/// (status, headers and body) of a GET with optional cookie, path taken as is.
fn get(url: &str, cookie: Option<&str>) -> (u16, String) {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "-i", "--path-as-is", "--max-time", "10"]);
    if let Some(c) = cookie {
        cmd.args(["-H", &format!("Cookie: {c}")]);
    }
    let out = cmd.arg(url).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let status = text
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, text)
}

/// `uri` without its query (the playback token a playlist put there).
fn without_token(uri: &str) -> &str {
    uri.split('?').next().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_playback_valid_expired_tampered_and_wrong_prefix() {
    require_ffmpeg();
    let mut config = loopback_config();
    config.playback.signed = true;
    config.playback.secrets = vec![SECRET.into()];
    let edge = Edge::start(&config).await.unwrap();
    let (srt, http) = (edge.addrs.srt, edge.addrs.http.unwrap());
    let url = format!("srt://{srt}?streamid=live/demo");
    let _push = Child::spawn(&mut ffmpeg_push(320, 180, 20, &url)).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let token = origin::auth::play_token(SECRET, "/live/demo/", now + 600);
    let base = format!("http://{http}/live/demo");
    // With the token: the playlist, and a cookie for the rest of the room.
    let (status, answer) = eventually(15, async || {
        let r = get(&format!("{base}/180p/index.m3u8?token={token}"), None);
        (r.0 == 200 && r.1.contains("#EXT-X-PART:")).then_some(r)
    })
    .await;
    assert_eq!(status, 200);
    let cookie_line = answer
        .lines()
        .find(|l| l.to_ascii_lowercase().starts_with("set-cookie:"))
        .expect("a cookie");
    assert!(cookie_line.contains("Path=/live/demo/"), "{cookie_line}");
    let cookie = cookie_line
        .split_once(':')
        .unwrap()
        .1
        .trim()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    // A player's relative requests carry only the cookie: parts and init are served.
    let part = answer
        .lines()
        .filter_map(|l| l.strip_prefix("#EXT-X-PART:"))
        .filter_map(|l| l.split("URI=\"").nth(1)?.split('"').next())
        .next_back()
        .unwrap()
        .to_string();
    assert_eq!(
        get(
            &format!("{base}/180p/{}", without_token(&part)),
            Some(&cookie)
        )
        .0,
        200
    );
    assert_eq!(get(&format!("{base}/180p/init.mp4"), Some(&cookie)).0, 200);
    // A player that sends no cookies (a cross-origin hls.js) follows the URIs as listed: the
    // playlist asked for with ?token= carries it on every one.
    let body = answer.split("\r\n\r\n").nth(1).unwrap();
    let uris: Vec<&str> = body
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .chain(
            body.split("URI=\"")
                .skip(1)
                .filter_map(|s| s.split('"').next()),
        )
        .collect();
    assert!(uris.len() >= 3, "map, a part and the hint at least: {body}");
    for uri in &uris {
        assert!(uri.ends_with(&format!("token={token}")), "{uri} in\n{body}");
    }
    let map = body.split("#EXT-X-MAP:URI=\"").nth(1).unwrap();
    for uri in [&part, map.split('"').next().unwrap()] {
        assert_eq!(get(&format!("{base}/180p/{uri}"), None).0, 200, "{uri}");
    }
    // Refused: no token, expired, tampered, another room's token.
    let expired = origin::auth::play_token(SECRET, "/live/demo/", now - 1);
    let tampered = token.replace(
        &format!("v1.{}", now + 600),
        &format!("v1.{}", now + 99_999),
    );
    let other = origin::auth::play_token(SECRET, "/live/other/", now + 600);
    for (what, query) in [
        ("none", String::new()),
        ("expired", format!("?token={expired}")),
        ("tampered", format!("?token={tampered}")),
        ("wrong prefix", format!("?token={other}")),
    ] {
        let (status, text) = get(&format!("{base}/180p/index.m3u8{query}"), None);
        assert_eq!(status, 403, "{what}: {text}");
    }
    assert_eq!(
        get(
            &format!("{base}/180p/{}", without_token(&part)),
            Some("daihuo_token=v1.1.00")
        )
        .0,
        403
    );
    edge.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_attacks_get_4xx() {
    let edge = Edge::start(&loopback_config()).await.unwrap();
    let http = edge.addrs.http.unwrap();
    let long = "a".repeat(10 * 1024);
    for path in [
        "/live/../etc/passwd",
        "/live/demo/../../etc/passwd",
        "/live/%2e%2e/index.m3u8",
        "/live/demo%2f..%2f/index.m3u8",
        "/live/de%00mo/index.m3u8",
        &format!("/live/{long}/index.m3u8"),
        &format!("/live/demo/{long}.m4s"),
        "/etc/passwd",
    ] {
        let (status, text) = get(&format!("http://{http}{path}"), None);
        assert!((400..500).contains(&status), "{path}: {status} {text}");
    }
    edge.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_is_cut_off_by_the_header_timeout() {
    let mut config = loopback_config();
    config.limits.header_timeout_ms = 2000;
    let edge = Edge::start(&config).await.unwrap();
    let http = edge.addrs.http.unwrap();
    let started = Instant::now();
    let closed = tokio::task::spawn_blocking(move || {
        let mut s = TcpStream::connect(http).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        s.write_all(b"GET /live/demo/index.m3u8 HTTP/1.1\r\nHost: x\r\n")
            .unwrap();
        // One header byte a second, never finishing the request.
        for _ in 0..60 {
            if s.write_all(b"X").is_err() {
                return true;
            }
            let mut buf = [0u8; 512];
            match s.read(&mut buf) {
                Ok(0) => return true,
                Ok(_) => return true, // an error answer, then the close
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(_) => return true,
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        false
    })
    .await
    .unwrap();
    assert!(closed, "the slow client was never cut off");
    println!(
        "slowloris cut off after {:?} (header_timeout_ms = 2000)",
        started.elapsed()
    );
    edge.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_bodies_get_408_and_one_address_gets_its_cap() {
    let mut config = loopback_config();
    config.limits.body_timeout_ms = 1000;
    config.limits.max_connections_per_ip = 2;
    let edge = Edge::start(&config).await.unwrap();
    let http = edge.addrs.http.unwrap();
    let answer = tokio::task::spawn_blocking(move || {
        // A body that never completes.
        let mut s = TcpStream::connect(http).unwrap();
        s.write_all(b"POST /live/demo/events HTTP/1.1\r\nHost: x\r\ncontent-length: 100\r\n\r\n{")
            .unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut buf = [0u8; 256];
        let n = s.read(&mut buf).unwrap_or(0);
        drop(s);
        let first = String::from_utf8_lossy(&buf[..n]).into_owned();
        // Two connections are allowed from one address; a third is closed at once.
        let mut a = TcpStream::connect(http).unwrap();
        let _b = TcpStream::connect(http).unwrap();
        a.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut c = TcpStream::connect(http).unwrap();
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let _ = c.write_all(b"GET /live/x/index.m3u8 HTTP/1.1\r\nHost: x\r\n\r\n");
        let third = c.read(&mut buf);
        (first, third.map(|n| n == 0))
    })
    .await
    .unwrap();
    assert!(answer.0.starts_with("HTTP/1.1 408"), "{}", answer.0);
    assert!(
        matches!(answer.1, Ok(true) | Err(_)),
        "a third connection from one address was served: {:?}",
        answer.1
    );
    edge.shutdown(Duration::from_secs(2)).await;
}

/// A sample of the edge's `/metrics`, by name with labels (-1 when absent).
fn sample(edge: &Edge, series: &str) -> f64 {
    let (_, text) = get(&format!("http://{}/metrics", edge.addrs.admin), None);
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(-1.0)
}

/// `daihuo_listener_limited_total{action}`.
fn limited(edge: &Edge, action: &str) -> f64 {
    sample(
        edge,
        &format!("daihuo_listener_limited_total{{action=\"{action}\"}}"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_readers_are_cut_off_by_the_send_timeout() {
    require_ffmpeg();
    let mut config = loopback_config();
    config.limits.send_timeout_ms = 1500;
    let edge = Edge::start(&config).await.unwrap();
    let http = edge.addrs.http.unwrap();
    let url = format!("srt://{}?streamid=live/demo", edge.addrs.srt);
    let _push = Child::spawn(&mut ffmpeg_push(320, 180, 30, &url)).unwrap();
    let media = format!("http://{http}/live/demo/180p/index.m3u8");
    let segment = eventually(20, async || {
        let (status, text) = get(&media, None);
        let body = text.split("\r\n\r\n").nth(1)?.to_string();
        let last = daihuo::playlist::segments(&body).last()?.to_string();
        (status == 200).then_some(last)
    })
    .await;
    let path = format!("/live/demo/180p/{segment}");
    assert_eq!(limited(&edge, "send_timeout"), 0.0);

    // HTTP/1.1: thousands of pipelined requests for the segment, and nothing read. The
    // writer blocks once the server stops reading too; it ends when the connection does.
    let stream = TcpStream::connect(http).unwrap();
    let mut writer = stream.try_clone().unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n");
    std::thread::spawn(move || {
        for _ in 0..5000 {
            if writer.write_all(request.as_bytes()).is_err() {
                break;
            }
        }
    });
    let cut = eventually(30, async || {
        Some(limited(&edge, "send_timeout")).filter(|n| *n >= 1.0)
    })
    .await;
    println!("HTTP/1.1 slow reader cut off (send_timeout total {cut})");
    eventually(10, async || {
        Some(sample(&edge, "daihuo_connections{transport=\"tcp\"}")).filter(|n| *n == 0.0)
    })
    .await;
    drop(stream);

    // HTTP/3: a client whose receive window is a few KiB takes the response head of a
    // segment larger than that, then reads nothing. Its stream is reset; the connection, and
    // other requests on it, go on.
    let mut transport = quinn::TransportConfig::default();
    transport.stream_receive_window(quinn::VarInt::from_u32(4096));
    transport.receive_window(quinn::VarInt::from_u32(65536));
    let h3 =
        daihuo::H3Client::connect_with(edge.addrs.http3.unwrap(), &edge.certificate(), transport)
            .await
            .unwrap();
    let (status, _held) = h3.get_unread(&path).await.unwrap();
    assert_eq!(status, 200);
    let cut = eventually(30, async || {
        Some(limited(&edge, "send_timeout")).filter(|n| *n >= 2.0)
    })
    .await;
    println!("HTTP/3 slow reader cut off (send_timeout total {cut})");
    let reply = h3.get("/live/demo/180p/index.m3u8").await.unwrap();
    assert_eq!(reply.status, 200);
    edge.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quic_clients_get_a_retry_under_load_and_one_address_gets_its_cap() {
    let mut config = loopback_config();
    config.limits.quic_retry_above = 2;
    config.limits.max_connections_per_ip = 3;
    let edge = Edge::start(&config).await.unwrap();
    let (quic, cert) = (edge.addrs.http3.unwrap(), edge.certificate());
    // Below the mark: no Retry.
    let first = daihuo::H3Client::connect(quic, &cert).await.unwrap();
    let second = daihuo::H3Client::connect(quic, &cert).await.unwrap();
    assert_eq!(limited(&edge, "quic_retry"), 0.0);
    // At the mark: the third proves its address first (quinn's client answers the Retry),
    // then is served like the others.
    let third = daihuo::H3Client::connect(quic, &cert).await.unwrap();
    assert_eq!(limited(&edge, "quic_retry"), 1.0);
    for client in [&first, &second, &third] {
        let reply = client.get("/live/none/index.m3u8").await.unwrap();
        assert_eq!(reply.status, 404);
    }
    // A fourth from the same address: asked to prove it, then refused (cap of 3).
    let fourth = daihuo::H3Client::connect(quic, &cert).await;
    assert!(
        fourth.is_err(),
        "a fourth connection from one address was served"
    );
    assert_eq!(limited(&edge, "quic_retry"), 2.0);
    assert_eq!(limited(&edge, "per_ip"), 1.0);
    // One goes, and the address may connect again.
    drop(first);
    let again = eventually(10, async || {
        daihuo::H3Client::connect(quic, &cert).await.ok()
    })
    .await;
    assert_eq!(
        again.get("/live/none/index.m3u8").await.unwrap().status,
        404
    );
    edge.shutdown(Duration::from_secs(2)).await;
}

/// Reads from `s` until the server closes it (true) or `within` passes (false).
fn closed_within(s: &mut TcpStream, within: Duration) -> bool {
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    while started.elapsed() < within {
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {}
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(_) => return true,
        }
    }
    false
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_and_idle_clients_are_cut_off_by_the_header_timeout() {
    let mut config = loopback_config();
    config.limits.header_timeout_ms = 1000;
    let edge = Edge::start(&config).await.unwrap();
    let (http, https) = (edge.addrs.http.unwrap(), edge.addrs.https.unwrap());
    let cert = edge.certificate();
    let cut = tokio::task::spawn_blocking(move || {
        let mut results = Vec::new();
        // Connects and sends nothing; sends less than the 24 bytes that tell HTTP/1.1 from
        // HTTP/2; and finishes one request, then idles on the kept-alive connection.
        for (what, send) in [
            ("silent", &b""[..]),
            ("a few bytes", &b"GET /"[..]),
            (
                "idle after a request",
                &b"GET /live/none/index.m3u8 HTTP/1.1\r\nHost: x\r\n\r\n"[..],
            ),
        ] {
            let started = Instant::now();
            let mut s = TcpStream::connect(http).unwrap();
            s.write_all(send).unwrap();
            let closed = closed_within(&mut s, Duration::from_secs(15));
            results.push((what, closed, started.elapsed()));
        }
        // Over TLS: the handshake completes, then nothing.
        let started = Instant::now();
        let mut roots = rustls::RootCertStore::empty();
        roots.add(cert).unwrap();
        let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
        let tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let mut conn = rustls::ClientConnection::new(std::sync::Arc::new(tls), name).unwrap();
        let mut tcp = TcpStream::connect(https).unwrap();
        while conn.is_handshaking() {
            conn.complete_io(&mut tcp).unwrap();
        }
        let mut stream = rustls::StreamOwned::new(conn, tcp);
        stream
            .sock
            .set_read_timeout(Some(Duration::from_secs(15)))
            .unwrap();
        let mut buf = [0u8; 256];
        // EOF or an error: closed. A timeout: never closed.
        let closed = match stream.read(&mut buf) {
            Ok(_) => true,
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        };
        results.push(("silent over TLS", closed, started.elapsed()));
        results
    })
    .await
    .unwrap();
    for (what, closed, after) in cut {
        println!("{what}: closed {closed} after {after:?} (header_timeout_ms = 1000)");
        assert!(closed, "{what}: the connection was never closed");
    }
    edge.shutdown(Duration::from_secs(2)).await;
}

/// The next HTTP/2 frame on `s` as (type, flags, payload); `None` once the connection ends
/// or `within` passes.
fn h2_frame(s: &mut TcpStream, within: Duration) -> Option<(u8, u8, Vec<u8>)> {
    s.set_read_timeout(Some(within)).unwrap();
    let mut head = [0u8; 9];
    s.read_exact(&mut head).ok()?;
    let len = usize::from(head[0]) << 16 | usize::from(head[1]) << 8 | usize::from(head[2]);
    let mut body = vec![0u8; len];
    s.read_exact(&mut body).ok()?;
    Some((head[3], head[4], body))
}

/// Whether a PING acknowledgement (type 6, flag 1) carrying `payload` arrives within 5 s.
fn ping_acknowledged(s: &mut TcpStream, payload: [u8; 8]) -> bool {
    std::iter::from_fn(|| h2_frame(s, Duration::from_secs(5)))
        .any(|(kind, flags, body)| kind == 6 && flags & 1 == 1 && body == payload)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_http2_connections_are_cut_and_busy_ones_kept() {
    let mut config = loopback_config();
    config.limits.idle_timeout_ms = 1000;
    let edge = Edge::start(&config).await.unwrap();
    let http = edge.addrs.http.unwrap();
    // An HTTP/2 client with prior knowledge: the preface and an empty SETTINGS frame.
    let open = move || {
        let mut s = TcpStream::connect(http).unwrap();
        s.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            .unwrap();
        s
    };
    let ping = |s: &mut TcpStream, n: u8| {
        let payload = [n; 8];
        let mut frame = b"\x00\x00\x08\x06\x00\x00\x00\x00\x00".to_vec();
        frame.extend_from_slice(&payload);
        s.write_all(&frame).unwrap();
        payload
    };
    let (idle, busy) = tokio::task::spawn_blocking(move || {
        // Says nothing after its settings: the server says GOAWAY (type 7), then closes.
        let started = Instant::now();
        let mut s = open();
        let goaway = std::iter::from_fn(|| h2_frame(&mut s, Duration::from_secs(15)))
            .any(|(kind, _, _)| kind == 7);
        let idle = (
            goaway && closed_within(&mut s, Duration::from_secs(15)),
            started.elapsed(),
        );
        // Pings every 250 ms for 3 s, three times the idle limit, then once more.
        let mut s = open();
        for n in 0..12 {
            ping(&mut s, n);
            std::thread::sleep(Duration::from_millis(250));
        }
        let payload = ping(&mut s, 99);
        (idle, ping_acknowledged(&mut s, payload))
    })
    .await
    .unwrap();
    println!(
        "idle HTTP/2 connection: GOAWAY and closed {} after {:?} (idle_timeout_ms = 1000)",
        idle.0, idle.1
    );
    assert!(
        idle.0,
        "an idle HTTP/2 connection was not sent GOAWAY and closed"
    );
    assert!(busy, "an HTTP/2 connection with traffic was closed");
    assert_eq!(limited(&edge, "idle_timeout"), 1.0);
    edge.shutdown(Duration::from_secs(2)).await;
}

/// Sends `prefix` (a PROXY header, or nothing) and one keep-alive request on a new connection
/// to `addr`; returns the connection and the response's status line, or `None` when the
/// connection was closed without an answer.
fn request_via(
    addr: std::net::SocketAddr,
    prefix: &[u8],
    request: &str,
) -> (TcpStream, Option<String>) {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut bytes = prefix.to_vec();
    bytes.extend_from_slice(request.as_bytes());
    let _ = s.write_all(&bytes);
    let mut buf = [0u8; 1024];
    let answer = match s.read(&mut buf) {
        Ok(n) if n > 0 => String::from_utf8_lossy(&buf[..n])
            .lines()
            .next()
            .map(str::to_string),
        _ => None,
    };
    (s, answer)
}

/// `PROXY TCP4|TCP6 CLIENT ... \r\n`, v1.
fn proxy_v1(client: &str) -> Vec<u8> {
    let family = if client.contains(':') { "TCP6" } else { "TCP4" };
    let local = if client.contains(':') {
        "::1"
    } else {
        "127.0.0.1"
    };
    format!("PROXY {family} {client} {local} 40000 8080\r\n").into_bytes()
}

/// The same in v2's binary form (TCP over IPv4).
fn proxy_v2(client: [u8; 4]) -> Vec<u8> {
    let mut h = b"\r\n\r\n\0\r\nQUIT\n".to_vec();
    h.extend_from_slice(&[0x21, 0x11, 0, 12]);
    h.extend_from_slice(&client);
    h.extend_from_slice(&[127, 0, 0, 1]);
    h.extend_from_slice(&40000u16.to_be_bytes());
    h.extend_from_slice(&8080u16.to_be_bytes());
    h
}

/// Behind an L4 balancer (PROXY protocol from 127.0.0.1): each client the header names gets
/// its own per-address share, IPv6 clients by /64; a connection from the balancer without a
/// header is closed. Behind an HTTP proxy (trusted for `X-Forwarded-For`): event limits
/// count the client the proxy names, not the proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_behind_balancers_and_proxies_get_their_own_limits() {
    let mut config = loopback_config();
    config.limits.max_connections_per_ip = 2;
    config.clients.proxy_protocol = vec!["127.0.0.1".into()];
    let edge = Edge::start(&config).await.unwrap();
    let http = edge.addrs.http.unwrap();
    const GET: &str = "GET /live/nobody/index.m3u8 HTTP/1.1\r\nHost: x\r\n\r\n";
    let results = tokio::task::spawn_blocking(move || {
        let mut held = Vec::new();
        let mut served = Vec::new();
        for (client, prefix) in [
            // Two connections of one IPv4 client (v1 and v2 headers): its cap.
            ("198.51.100.1 (v1)", proxy_v1("198.51.100.1")),
            ("198.51.100.1 (v2)", proxy_v2([198, 51, 100, 1])),
            // A third from it is refused; another client is served.
            ("198.51.100.1 third", proxy_v1("198.51.100.1")),
            ("198.51.100.2", proxy_v1("198.51.100.2")),
            // Two addresses of one IPv6 /64 fill its cap; a third address of that /64 is
            // refused, another /64 served.
            ("2001:db8::1", proxy_v1("2001:db8::1")),
            ("2001:db8::2", proxy_v1("2001:db8::2")),
            ("2001:db8::3 same /64", proxy_v1("2001:db8::3")),
            ("2001:db8:0:1::1", proxy_v1("2001:db8:0:1::1")),
            // The balancer's address without a header.
            ("no header", Vec::new()),
        ] {
            let (s, answer) = request_via(http, &prefix, GET);
            served.push((client, answer));
            held.push(s);
        }
        served
    })
    .await
    .unwrap();
    let served: Vec<(&str, bool)> = results
        .iter()
        .map(|(c, a)| (*c, a.as_deref() == Some("HTTP/1.1 404 Not Found")))
        .collect();
    assert_eq!(
        served,
        [
            ("198.51.100.1 (v1)", true),
            ("198.51.100.1 (v2)", true),
            ("198.51.100.1 third", false),
            ("198.51.100.2", true),
            ("2001:db8::1", true),
            ("2001:db8::2", true),
            ("2001:db8::3 same /64", false),
            ("2001:db8:0:1::1", true),
            ("no header", false),
        ],
        "{results:?}"
    );
    assert_eq!(limited(&edge, "per_ip"), 2.0);
    assert_eq!(limited(&edge, "proxy_protocol"), 1.0);
    edge.shutdown(Duration::from_secs(2)).await;

    // An HTTP proxy on 127.0.0.1, trusted: each client it names has its own event budget.
    let mut config = loopback_config();
    config.clients.trusted_proxies = vec!["127.0.0.0/8".into()];
    config.events.client_per_second = 1;
    config.events.client_burst = 2;
    let edge = Edge::start(&config).await.unwrap();
    let url = format!("http://{}/live/demo/events", edge.addrs.http.unwrap());
    let post = |client: &str, id: usize| {
        let out = Command::new("curl")
            .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
            .args(["-H", &format!("X-Forwarded-For: {client}")])
            .args([
                "-d",
                &format!("{{\"id\":\"l-{id}\",\"type\":\"like\",\"user\":\"u\"}}"),
            ])
            .arg(&url)
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let a: Vec<String> = (0..3).map(|i| post("198.51.100.1", i)).collect();
    assert_eq!(a, ["202", "202", "429"]);
    assert_eq!(post("198.51.100.2", 3), "202");
    assert_eq!(post("2001:db8::1, 198.51.100.3", 4), "202");
    edge.shutdown(Duration::from_secs(2)).await;
}
