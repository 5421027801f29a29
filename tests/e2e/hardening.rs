//! Hardening checks against the real listeners: the TLS policy a scanner sees on the HTTPS
//! port (probed with the `openssl s_client` CLI, a second TLS implementation), and the SRT
//! listener's memory under a flood of abandoned handshakes from many source addresses while a
//! real ffmpeg publisher streams.
//!
//! The flood speaks SRT's handshake with a small hand-written packet builder (the layout of
//! `vendor/srt-protocol/src/packet/control/mod.rs`), so every packet is one a hostile peer can
//! send, and reads the listener's answers so only handshakes the listener really took count.

// Tests panic on purpose when the system under test misbehaves.
#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use daihuo::daemons::{sample, EdgeDaemon};
use daihuo::peers::{curl, ffmpeg_push};
use daihuo::playlist::{media_sequence, preload_hint};
use daihuo::{eventually, loopback_config, require_ffmpeg, Child, H3Client};
use edge_node::Edge;

// ---------------------------------------------------------------------------------------
// TLS policy
// ---------------------------------------------------------------------------------------

/// What one `openssl s_client` run reported.
#[derive(Debug)]
struct Probe {
    /// The arguments after `-connect … -servername localhost`.
    args: Vec<String>,
    /// Exit status 0.
    exited_ok: bool,
    /// (protocol, cipher) when a cipher was agreed, e.g. `("TLSv1.3",
    /// "TLS_AES_256_GCM_SHA384")`.
    agreed: Option<(String, String)>,
    /// `SSL alert number N`: an alert *received from the server*.
    alert: Option<u32>,
    /// Bytes the client wrote during the handshake (a ClientHello went out when > 0).
    written: u64,
    /// The whole output, for failure messages.
    output: String,
}

impl Probe {
    /// Runs `openssl s_client` against `addr` with `args`, stdin from /dev/null, for at most
    /// 20 s.
    fn run(addr: SocketAddr, args: &[&str]) -> Self {
        let out = Command::new("timeout")
            .args(["20", "openssl", "s_client", "-connect"])
            .arg(addr.to_string())
            .args(["-servername", "localhost"])
            .args(args)
            .stdin(Stdio::null())
            .output()
            .expect("openssl s_client (Debian's openssl package)");
        let output = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        // `New, X, Cipher is C` names the version that introduced the cipher (`SSLv3` for
        // AES128-SHA even on TLS 1.2); the session block's `Protocol  : V`, printed for
        // TLS 1.2, names the version spoken, so it wins where present.
        let session_protocol = output
            .lines()
            .find_map(|l| l.trim().strip_prefix("Protocol  : "))
            .map(str::to_string);
        let agreed = output.lines().find_map(|l| {
            let rest = l.strip_prefix("New, ")?;
            let (protocol, cipher) = rest.split_once(", Cipher is ")?;
            let protocol = session_protocol.clone().unwrap_or(protocol.to_string());
            (protocol != "(NONE)" && cipher != "(NONE)")
                .then(|| (protocol, cipher.trim().to_string()))
        });
        let alert = output.lines().find_map(|l| {
            let (_, n) = l.split_once("SSL alert number ")?;
            n.trim().parse().ok()
        });
        let written = output
            .lines()
            .find_map(|l| {
                let (_, rest) = l.split_once("SSL handshake has read ")?;
                let (_, rest) = rest.split_once(" bytes and written ")?;
                rest.split_whitespace().next()?.parse().ok()
            })
            .unwrap_or(0);
        Self {
            args: args.iter().map(|a| a.to_string()).collect(),
            exited_ok: out.status.success(),
            agreed,
            alert,
            written,
            output,
        }
    }

    /// The handshake completed with `protocol`; returns the cipher.
    fn assert_agreed(&self, protocol: &str) -> &str {
        match &self.agreed {
            Some((p, cipher)) if self.exited_ok && p == protocol => cipher,
            _ => panic!(
                "{:?}: expected a {protocol} handshake\n{}",
                self.args, self.output
            ),
        }
    }

    /// The client sent its ClientHello and the *server* answered with an alert: a refusal
    /// by the server, not a client that could not even offer what it was asked to.
    fn assert_refused_by_server(&self) {
        assert!(
            !self.exited_ok && self.agreed.is_none(),
            "{:?}: the server accepted\n{}",
            self.args,
            self.output
        );
        assert!(
            self.written > 0 && self.alert.is_some(),
            "{:?}: no ClientHello went out or no alert came back, so this says nothing \
             about the server\n{}",
            self.args,
            self.output
        );
    }
}

/// AEAD suites with forward secrecy, as OpenSSL names them for TLS 1.2.
fn modern_tls12(cipher: &str) -> bool {
    cipher.starts_with("ECDHE-")
        && (cipher.ends_with("-GCM-SHA256")
            || cipher.ends_with("-GCM-SHA384")
            || cipher.ends_with("-CHACHA20-POLY1305"))
}

/// The viewers' HTTPS port speaks TLS 1.3, and TLS 1.2 only with ECDHE and AEAD suites; it
/// refuses CBC suites, static-RSA and DHE key exchange, TLS 1.3's CCM suites, TLS 1.1 and
/// TLS 1.0, each with an alert of its own (the client's security level is set to 0 so
/// OpenSSL really offers them). HTTP/3 completes a TLS-1.3-only handshake on the same
/// certificate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_policy_is_modern_only() {
    let edge = Edge::start(&loopback_config()).await.unwrap();
    let https = edge.addrs.https.expect("https listener");
    let probes = tokio::task::spawn_blocking(move || {
        let any = "DEFAULT:@SECLEVEL=0";
        [
            // 0: TLS 1.3 with OpenSSL's default suites.
            Probe::run(https, &["-tls1_3"]),
            // 1: TLS 1.2, the modern suites for either key type.
            Probe::run(
                https,
                &[
                    "-tls1_2",
                    "-cipher",
                    "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES128-GCM-SHA256:@SECLEVEL=0",
                ],
            ),
            // 2: TLS 1.2 offering everything OpenSSL has: the server's pick must be modern.
            Probe::run(https, &["-tls1_2", "-cipher", "ALL:@SECLEVEL=0"]),
            // 3: TLS 1.2, CBC suites only (with and without ECDHE, SHA-1 and SHA-2 MACs).
            Probe::run(
                https,
                &[
                    "-tls1_2",
                    "-cipher",
                    "AES128-SHA:AES256-SHA:AES128-SHA256:ECDHE-RSA-AES128-SHA:\
                     ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA256:\
                     ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES256-SHA384:@SECLEVEL=0",
                ],
            ),
            // 4: TLS 1.2, AEAD but static-RSA or finite-field DHE key exchange.
            Probe::run(
                https,
                &[
                    "-tls1_2",
                    "-cipher",
                    "AES128-GCM-SHA256:AES256-GCM-SHA384:DHE-RSA-AES128-GCM-SHA256:@SECLEVEL=0",
                ],
            ),
            // 5: TLS 1.3 offering only the CCM suites (CCM_8 has a 64-bit tag).
            Probe::run(
                https,
                &[
                    "-tls1_3",
                    "-ciphersuites",
                    "TLS_AES_128_CCM_8_SHA256:TLS_AES_128_CCM_SHA256",
                ],
            ),
            // 6, 7: the old protocol versions.
            Probe::run(https, &["-tls1_1", "-cipher", any]),
            Probe::run(https, &["-tls1", "-cipher", any]),
        ]
    })
    .await
    .unwrap();
    for p in &probes {
        println!(
            "{:<70} agreed={:?} alert={:?} written={}",
            p.args.join(" "),
            p.agreed,
            p.alert,
            p.written
        );
    }

    let tls13 = probes[0].assert_agreed("TLSv1.3");
    assert!(
        [
            "TLS_AES_256_GCM_SHA384",
            "TLS_AES_128_GCM_SHA256",
            "TLS_CHACHA20_POLY1305_SHA256"
        ]
        .contains(&tls13),
        "{tls13}"
    );
    let tls12 = probes[1].assert_agreed("TLSv1.2");
    assert!(modern_tls12(tls12), "{tls12}");
    let pick = probes[2].assert_agreed("TLSv1.2");
    assert!(
        modern_tls12(pick),
        "offered everything, the server chose {pick}"
    );
    for refused in &probes[3..] {
        refused.assert_refused_by_server();
    }

    // HTTP/3: QUIC carries only TLS 1.3 (RFC 9001), and `origin::tls::Certificates::
    // quic_config` hands quinn an opaque config, so the check here is that a client that
    // allows nothing but TLS 1.3 completes the handshake on the served certificate.
    let quic = edge.addrs.http3.expect("http3 listener");
    let h3 = H3Client::connect(quic, &edge.certificates.leaf())
        .await
        .expect("a TLS 1.3 HTTP/3 handshake");
    assert_eq!(h3.get("/live/none/index.m3u8").await.unwrap().status, 404);
    drop(h3);
    edge.shutdown(Duration::from_secs(2)).await;
}

// ---------------------------------------------------------------------------------------
// SRT handshake flood
// ---------------------------------------------------------------------------------------

/// SRT handshake types (the CIF's "handshake type" word).
const INDUCTION: i32 = 1;
const CONCLUSION: i32 = -1;
/// The HSv5 magic a listener puts in its induction answer's extension field.
const SRT_MAGIC: u32 = 0x4A17;

/// One SRT handshake control packet without extensions: the 16-byte control header (control
/// bit, type 0 = handshake, destination socket 0) and the 48-byte handshake CIF.
fn handshake(version: u32, ext_field: u32, shake: i32, socket: u32, cookie: i32) -> Vec<u8> {
    let mut p = Vec::with_capacity(128);
    p.extend_from_slice(&0x8000_u16.to_be_bytes()); // control packet, type 0: handshake
    p.extend_from_slice(&0_u16.to_be_bytes()); // reserved
    p.extend_from_slice(&0_u32.to_be_bytes()); // additional info
    p.extend_from_slice(&0_u32.to_be_bytes()); // timestamp
    p.extend_from_slice(&0_u32.to_be_bytes()); // destination socket id
    p.extend_from_slice(&version.to_be_bytes());
    p.extend_from_slice(&ext_field.to_be_bytes()); // encryption << 16 | extension field
    p.extend_from_slice(&(socket.wrapping_mul(7919) & 0x7FFF_FFFF).to_be_bytes()); // initial seq
    p.extend_from_slice(&1500_u32.to_be_bytes()); // MTU
    p.extend_from_slice(&8192_u32.to_be_bytes()); // flow window
    p.extend_from_slice(&shake.to_be_bytes());
    p.extend_from_slice(&socket.to_be_bytes());
    p.extend_from_slice(&cookie.to_be_bytes());
    // Peer IP: IPv4 in the first word (as srt-protocol writes it), zero padded to 16 bytes.
    p.extend_from_slice(&u32::from(Ipv4Addr::LOCALHOST).to_le_bytes());
    p.extend_from_slice(&[0; 12]);
    p
}

/// The caller's induction: HSv4 form (version 4, extension field 2 = UDT_DGRAM), no cookie.
fn induction(socket: u32) -> Vec<u8> {
    handshake(4, 2, INDUCTION, socket, 0)
}

/// The caller's HSv5 conclusion echoing `cookie`, with an HSREQ extension (SRT 1.3.1, TSBPD
/// both ways, 120 ms) and a stream id extension naming `stream_id`.
fn conclusion(socket: u32, cookie: i32, stream_id: &str) -> Vec<u8> {
    const HS: u32 = 0x1;
    const CONFIG: u32 = 0x4;
    let mut p = handshake(5, HS | CONFIG, CONCLUSION, socket, cookie);
    // HSREQ: type 1, 3 words: version, flags, peer latency << 16 | latency.
    p.extend_from_slice(&1_u16.to_be_bytes());
    p.extend_from_slice(&3_u16.to_be_bytes());
    p.extend_from_slice(&0x0001_0301_u32.to_be_bytes());
    p.extend_from_slice(&0x3F_u32.to_be_bytes()); // TSBPDSND..REXMITFLG
    p.extend_from_slice(&120_u16.to_be_bytes());
    p.extend_from_slice(&120_u16.to_be_bytes());
    // SID: type 5, the string in 4-byte words, each word's bytes reversed, zero padded.
    let mut sid = stream_id.as_bytes().to_vec();
    sid.resize(sid.len().div_ceil(4) * 4, 0);
    p.extend_from_slice(&5_u16.to_be_bytes());
    p.extend_from_slice(&u16::try_from(sid.len() / 4).unwrap().to_be_bytes());
    for word in sid.chunks_exact(4) {
        p.extend_from_slice(&[word[3], word[2], word[1], word[0]]);
    }
    p
}

/// A handshake answer's (extension field, handshake type, cookie).
fn answer(packet: &[u8]) -> Option<(u32, i32, i32)> {
    let word = |at: usize| packet.get(at..at + 4).map(|b| [b[0], b[1], b[2], b[3]]);
    (packet.len() >= 64 && packet[0] & 0x80 != 0 && packet[1] == 0).then_some(())?;
    Some((
        u32::from_be_bytes(word(20)?),
        i32::from_be_bytes(word(36)?),
        i32::from_be_bytes(word(44)?),
    ))
}

/// What one flood round got back from the listener.
#[derive(Debug, Default, Clone, Copy)]
struct Tally {
    sent: usize,
    /// Induction answers with the HSv5 magic and a cookie.
    cookies: usize,
    /// Conclusions answered with a conclusion (the listener accepted a publisher).
    accepted: usize,
    /// Conclusions answered with a rejection code (>= 1000).
    rejected: usize,
}

/// Sockets per batch: each batch's answers are read before the next batch starts, which keeps
/// file descriptors few and the burst within the listener's receive buffer.
const BATCH: usize = 100;

/// Receives one datagram on each socket, all sharing one deadline 1 s out; `None` where
/// nothing came in time.
fn receive_all(sockets: &[UdpSocket]) -> Vec<Option<Vec<u8>>> {
    let deadline = Instant::now() + Duration::from_secs(1);
    sockets
        .iter()
        .map(|s| {
            let left = deadline.saturating_duration_since(Instant::now());
            s.set_read_timeout(Some(left.max(Duration::from_millis(1))))
                .unwrap();
            let mut buf = [0u8; 1500];
            s.recv(&mut buf).ok().map(|n| buf[..n].to_vec())
        })
        .collect()
}

/// `count` handshakes on `srt`, each from its own source address `127.{net}.B.I` (the
/// listener keys its handshake state by address, so every one is a new peer). Each gets its
/// cookie from an induction; with `conclude`, the socket then concludes asking to publish
/// `live/flood{net}x{n}` and reads the answer. Either way the socket is then dropped and
/// never answers again: a half-open handshake.
fn flood(srt: SocketAddr, net: u8, count: usize, conclude: bool) -> Tally {
    let mut tally = Tally::default();
    for batch in 0..count.div_ceil(BATCH) {
        let n = BATCH.min(count - batch * BATCH);
        let sockets: Vec<UdpSocket> = (0..n)
            .map(|i| {
                let from = Ipv4Addr::new(127, net, u8::try_from(batch).unwrap(), i as u8 + 1);
                let s = UdpSocket::bind((from, 0))
                    .unwrap_or_else(|e| panic!("bind {from}: {e} (loopback is 127/8)"));
                s.connect(srt).unwrap();
                s
            })
            .collect();
        let ids: Vec<u32> = (0..n)
            .map(|i| 0x1000_0000 | (u32::from(net) << 16) | (batch * BATCH + i) as u32)
            .collect();
        for (s, id) in sockets.iter().zip(&ids) {
            s.send(&induction(*id)).unwrap();
            tally.sent += 1;
        }
        let cookies: Vec<Option<i32>> = receive_all(&sockets)
            .iter()
            .map(|p| {
                let (ext, shake, cookie) = answer(p.as_deref()?)?;
                (shake == INDUCTION && ext & 0xFFFF == SRT_MAGIC).then_some(cookie)
            })
            .collect();
        tally.cookies += cookies.iter().flatten().count();
        if !conclude {
            continue;
        }
        for (i, (s, cookie)) in sockets.iter().zip(&cookies).enumerate() {
            if let Some(cookie) = cookie {
                let room = format!("#!::r=live/flood{net}x{},m=publish", batch * BATCH + i);
                s.send(&conclusion(ids[i], *cookie, &room)).unwrap();
            }
        }
        for p in receive_all(&sockets).iter().flatten() {
            match answer(p) {
                Some((_, CONCLUSION, _)) => tally.accepted += 1,
                Some((_, code, _)) if code >= 1000 => tally.rejected += 1,
                _ => {}
            }
        }
    }
    tally
}

/// Resident memory of process `pid`, in KiB (`VmRSS` of /proc/PID/status).
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|e| panic!("process {pid} is gone: {e}"));
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .expect("VmRSS")
}

/// The single-box `daihuo-edge` under the flood, with a three-segment playlist window (so
/// the publisher's window is full, and its memory flat, a few seconds in) and log level warn
/// (each refused flood publisher is one line).
struct EdgeProcess(EdgeDaemon);

impl EdgeProcess {
    fn start() -> Self {
        Self(EdgeDaemon::start(|_| {
            "hls.window_segments = 3\nlog.level = \"warn\"\n".into()
        }))
    }

    fn alive(&mut self) -> bool {
        self.0.child.0.try_wait().unwrap().is_none()
    }

    /// `daihuo_streams_live` from the admin listener's `/metrics`.
    fn streams_live(&self) -> f64 {
        let (status, body) = curl(&format!("http://127.0.0.1:{}/metrics", self.0.admin)).unwrap();
        assert_eq!(status, 200);
        sample(&String::from_utf8_lossy(&body), "daihuo_streams_live")
    }

    /// The last lines of the daemon's log, for failure messages.
    fn log_tail(&self) -> String {
        let log = self.0.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }
}

/// (media sequence, newest part) of a media playlist over plain HTTP, once it answers 200.
fn position(url: &str) -> Option<(u64, (u64, u32))> {
    let (status, body) = curl(url).ok()?;
    (status == 200).then_some(())?;
    let text = String::from_utf8_lossy(&body);
    Some((media_sequence(&text)?, preload_hint(&text)?))
}

/// Rounds per flood, and handshakes per round.
const ROUNDS: usize = 5;
const CONCLUDED_PER_ROUND: usize = 2_000;
const INDUCTIONS_PER_ROUND: usize = 4_000;

/// Growth of resident memory allowed from the end of round 1 to the end of round 5, KiB.
///
/// Round 1 pays the one-off costs (the listener's maps growing to the flood's working set,
/// the allocator's arenas on the runtime threads, 63 admitted flood publishers with their
/// pipelines), so later rounds should find memory in place. What still moves: the publisher's
/// side, flat once its three-segment window is full (waited for before round 1); the rooms of
/// admitted flood publishers (about 63 per round, gone once their sessions time out); and
/// allocator jitter, under 1 MiB between rounds of the
/// same size in trial runs. 16 MiB is all of that several times over, yet it is reached by
/// state of 2 KiB kept per concluded handshake (8,000 of them in rounds 2 to 5) or of 1 KiB
/// per induction (16,000): per-peer state of that size is what this test is for.
const GROWTH_BOUND_KIB: u64 = 16 * 1024;

/// A flood of half-open SRT handshakes from thousands of source addresses, while ffmpeg
/// publishes `live/demo`: the daemon stays up, the stream keeps advancing, and resident
/// memory does not grow with the number of handshakes. Two floods, one after the other:
/// handshakes abandoned after the conclusion (the listener asks ingest to admit each one,
/// which accepts up to `srt.max_streams` and refuses the rest), then handshakes abandoned
/// after the induction (the cheapest attack: it needs no answer, so source addresses can be
/// spoofed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srt_handshake_flood_leaves_memory_flat() {
    require_ffmpeg();
    let started = Instant::now();
    let mut edge = EdgeProcess::start();
    let ready = format!("http://127.0.0.1:{}/readyz", edge.0.admin);
    eventually(30, async || (curl(&ready).ok()?.0 == 200).then_some(())).await;
    let srt = SocketAddr::from(([127, 0, 0, 1], edge.0.srt));
    let url = format!("srt://{srt}?streamid=#!::r=live/demo,m=publish&linger=2");
    let mut push = Child::spawn(&mut ffmpeg_push(320, 180, 180, &url)).expect("spawn ffmpeg");
    let media = format!("http://127.0.0.1:{}/live/demo/180p/index.m3u8", edge.0.http);
    // The window is full once the playlist has slid (media sequence past 0).
    let mut before = eventually(40, async || position(&media).filter(|p| p.0 >= 2)).await;
    println!(
        "publisher live, window full at {:?}: media sequence {}, part {:?}, rss {} KiB",
        started.elapsed(),
        before.0,
        before.1,
        rss_kib(edge.0.pid())
    );

    for (kind, conclude, per_round, net_base) in [
        ("concluded", true, CONCLUDED_PER_ROUND, 10_u8),
        ("induction-only", false, INDUCTIONS_PER_ROUND, 100_u8),
    ] {
        let mut rss = Vec::new();
        for round in 0..ROUNDS {
            let net = net_base + round as u8;
            let t = Instant::now();
            let tally = tokio::task::spawn_blocking(move || flood(srt, net, per_round, conclude))
                .await
                .unwrap();
            let took = t.elapsed();
            // Let the listener and ingest finish what the round queued; the publishers the
            // round got admitted end at their SRT idle timeout (5 s), which frees their slots
            // for the next round and their pipelines before memory is read.
            tokio::time::sleep(Duration::from_secs(1)).await;
            eventually(20, async || (edge.streams_live() <= 1.0).then_some(())).await;
            assert!(edge.alive(), "daihuo-edge died:\n{}", edge.log_tail());
            let kib = rss_kib(edge.0.pid());
            rss.push(kib);
            println!(
                "{kind} round {}: {tally:?} in {took:?}, rss {kib} KiB",
                round + 1
            );
            // The listener really took these handshakes: nearly every induction was answered
            // with a cookie and, when concluding, nearly every conclusion with a verdict (a
            // few answers may be lost to the listener's receive buffer under the burst).
            assert!(tally.cookies * 100 >= tally.sent * 95, "{kind}: {tally:?}");
            if conclude {
                let answered = tally.accepted + tally.rejected;
                assert!(answered * 100 >= tally.cookies * 80, "{kind}: {tally:?}");
                // Both admission outcomes, every round: up to srt.max_streams (64, one
                // taken by ffmpeg) accepted, the rest refused.
                assert!(
                    tally.accepted > 0 && tally.rejected > 0,
                    "{kind}: {tally:?}"
                );
            }
        }
        // The publisher's stream kept advancing through the flood.
        let after = eventually(20, async || {
            position(&media).filter(|p| p.0 > before.0 && p.1 > before.1)
        })
        .await;
        println!(
            "after the {kind} flood: media sequence {} -> {}, part {:?} -> {:?}",
            before.0, after.0, before.1, after.1
        );
        before = after;
        let growth = rss[ROUNDS - 1].saturating_sub(rss[0]);
        let handshakes = (ROUNDS - 1) * per_round;
        println!(
            "{kind}: rss per round {rss:?} KiB; growth after round 1: {growth} KiB over \
             {handshakes} handshakes ({} bytes each)",
            growth * 1024 / handshakes as u64
        );
        assert!(
            growth < GROWTH_BOUND_KIB,
            "{kind} flood: daihuo-edge's resident memory grew {growth} KiB over {handshakes} \
             more half-open handshakes (rss per round {rss:?} KiB): state kept per peer"
        );
    }
    assert!(push.0.try_wait().unwrap().is_none(), "ffmpeg stopped");
    assert!(edge.alive(), "daihuo-edge died:\n{}", edge.log_tail());
    println!("flood test took {:?}", started.elapsed());
}

/// Live feeds opened for 10,000 rooms that do not exist (`GET /live/NAME/events`, cheap
/// requests: 10 HTTP/2 connections of 1,000 streams each) cost little memory: a room's feed
/// buffer is small, and a burst of a room's events is one message. With a 1024-slot buffer per
/// room they took about 640 MiB.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn feeds_for_made_up_rooms_cost_little_memory() {
    use http_body_util::Empty;
    use hyper_util::rt::{TokioExecutor, TokioIo};
    const CONNECTIONS: usize = 10;
    const STREAMS: usize = 1_000;
    let edge = EdgeDaemon::start(|_| {
        format!(
            "limits.max_streams_per_connection = {STREAMS}\nlimits.max_connections_per_ip = 0\n\
             log.level = \"warn\"\n"
        )
    });
    let ready = format!("http://127.0.0.1:{}/readyz", edge.admin);
    eventually(30, async || (curl(&ready).ok()?.0 == 200).then_some(())).await;
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, edge.http));
    // One feed first, so one-off costs (the runtime's and allocator's) are in the baseline.
    let mut senders = Vec::new();
    for _ in 0..CONNECTIONS {
        let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (send, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
            .handshake::<_, Empty<bytes::Bytes>>(TokioIo::new(tcp))
            .await
            .unwrap();
        tokio::spawn(conn);
        senders.push(send);
    }
    let open = async |send: &mut hyper::client::conn::http2::SendRequest<Empty<bytes::Bytes>>,
                      room: String| {
        let req = http::Request::get(format!("http://localhost/live/{room}/events"))
            .body(Empty::new())
            .unwrap();
        send.ready().await.unwrap();
        let res = send.send_request(req).await.unwrap();
        assert_eq!(res.status(), 200);
        res
    };
    let mut held = vec![open(&mut senders[0], "warmup".into()).await];
    tokio::time::sleep(Duration::from_millis(500)).await;
    let before = rss_kib(edge.pid());
    let feeds = futures::future::join_all(senders.iter_mut().enumerate().map(|(c, send)| {
        let open = &open;
        async move {
            let mut feeds = Vec::with_capacity(STREAMS - 1);
            for s in 0..STREAMS - 1 {
                feeds.push(open(send, format!("made-up-{c}-{s}")).await);
            }
            feeds
        }
    }))
    .await;
    held.extend(feeds.into_iter().flatten());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = rss_kib(edge.pid());
    let per_feed = (after.saturating_sub(before)) * 1024 / held.len() as u64;
    println!(
        "{} feeds: rss {before} KiB -> {after} KiB, {per_feed} bytes per feed",
        held.len()
    );
    // Per feed: the request's HTTP/2 stream, the viewer's task and queue, and the room.
    assert!(
        per_feed < 16 * 1024,
        "{per_feed} bytes per feed of a made-up room ({before} -> {after} KiB)"
    );
    drop(held);
}
