//! The operator's path with the real `daihuo-edge` binary: SIGHUP reloads under load (a real
//! ffmpeg push and 20 HTTP/3 viewers), certificate rotation, `/metrics` read by a Prometheus
//! text-format parser, SIGTERM drain, and the systemd units checked by systemd's own tools.

// Tests panic on purpose when the system under test misbehaves.
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use daihuo::daemons::{binary, certificate, sample, EdgeDaemon};
use daihuo::peers::{curl, ffmpeg_push};
use daihuo::playlist::{attr, segments, tags};
use daihuo::{eventually, require_ffmpeg, Child, H3Client};
use rustls::pki_types::CertificateDer;

/// A `daihuo-edge` process on loopback ports serving a certificate from its directory, which
/// tests rotate.
struct EdgeProcess {
    daemon: EdgeDaemon,
    cert: CertificateDer<'static>,
}

impl std::ops::Deref for EdgeProcess {
    type Target = EdgeDaemon;

    fn deref(&self) -> &EdgeDaemon {
        &self.daemon
    }
}

impl std::ops::DerefMut for EdgeProcess {
    fn deref_mut(&mut self) -> &mut EdgeDaemon {
        &mut self.daemon
    }
}

impl EdgeProcess {
    fn start() -> Self {
        let mut cert = None;
        let daemon = EdgeDaemon::start(|dir| {
            let (_, _, der) = certificate(dir);
            cert = Some(der);
            settings(dir, "info", 64)
        });
        Self {
            daemon,
            cert: cert.expect("certificate"),
        }
    }

    /// A valid configuration; `level` and `max_streams` vary between reloads.
    fn settings(&self, level: &str, max_streams: usize) -> String {
        settings(self.dir.path(), level, max_streams)
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .args([&format!("-{name}"), &self.pid().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    fn metrics(&self) -> String {
        let (status, body) = curl(&format!("http://127.0.0.1:{}/metrics", self.admin)).unwrap();
        assert_eq!(status, 200);
        String::from_utf8(body).unwrap()
    }

    fn reloads(&self) -> (f64, f64) {
        let m = self.metrics();
        (
            sample(&m, "daihuo_reloads_total{result=\"ok\"}"),
            sample(&m, "daihuo_reloads_total{result=\"error\"}"),
        )
    }

    /// The fingerprint in `daihuo_config_info`.
    fn running_config(&self) -> String {
        let m = self.metrics();
        let line = m
            .lines()
            .find_map(|l| l.strip_prefix("daihuo_config_info{fingerprint=\""))
            .expect("daihuo_config_info");
        line.split('"').next().unwrap().to_string()
    }

    /// Sends SIGHUP and waits until the reload is counted; returns its result.
    async fn reload(&self) -> bool {
        let (ok, err) = self.reloads();
        self.signal("HUP");
        eventually(15, async || {
            let (ok2, err2) = self.reloads();
            (ok2 + err2 > ok + err).then_some(ok2 > ok)
        })
        .await
    }
}

/// The edge's settings besides its listeners: the certificate in `dir`, a grace period, the
/// stream limit and the log level.
fn settings(dir: &Path, level: &str, max_streams: usize) -> String {
    format!(
        "shutdown_grace_ms = 5000\n\
         srt.max_streams = {max_streams}\n\
         https.cert = {:?}\n\
         https.key = {:?}\n\
         log.level = \"{level}\"\n",
        dir.join("cert.pem").display().to_string(),
        dir.join("key.pem").display().to_string(),
    )
}

fn fingerprint(path: &Path) -> String {
    use conf::DaemonConfig;
    conf::EdgeConfig::load(path).unwrap().fingerprint()
}

async fn ready(edge: &EdgeProcess) {
    let url = format!("http://127.0.0.1:{}/readyz", edge.admin);
    eventually(30, async || (curl(&url).ok()?.0 == 200).then_some(())).await;
}

/// Parses `/metrics` with a Prometheus text-format parser and checks the families an operator
/// dashboards, with a stream being played.
fn check_families(text: &str) {
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string()))).unwrap();
    let names: std::collections::BTreeSet<&str> =
        scrape.samples.iter().map(|s| s.metric.as_str()).collect();
    for family in [
        "daihuo_build_info",
        "daihuo_config_info",
        "daihuo_reloads_total",
        "daihuo_streams_live",
        "daihuo_ingest_bytes_total",
        "daihuo_stream_ingest_bytes_total",
        "daihuo_srt_packets_lost_total",
        "daihuo_srt_packets_retransmitted_total",
        "daihuo_srt_rtt_seconds",
        "daihuo_encoder_backend",
        "daihuo_encoder_frames_total",
        "daihuo_part_publish_seconds",
        "daihuo_viewers",
        "daihuo_connections",
        "daihuo_http_requests_total",
        "daihuo_cache_requests_total",
        "daihuo_cache_bytes",
        "daihuo_cache_evictions_total",
        "daihuo_scale_hint",
        "daihuo_cpu_utilization_ratio",
        "daihuo_publishes_total",
        "daihuo_quic_datagrams_sent_total",
        "daihuo_quic_send_calls_total",
    ] {
        assert!(names.contains(family), "{family} missing from\n{text}");
    }
    assert!(names.contains("process_cpu_seconds_total"), "{names:?}");
    // Ours are prefixed; the one standard family is the client libraries' process CPU.
    assert!(
        names
            .iter()
            .all(|n| n.starts_with("daihuo_") || *n == "process_cpu_seconds_total"),
        "{names:?}"
    );
    let viewers: f64 = scrape
        .samples
        .iter()
        .filter(|s| s.metric == "daihuo_viewers")
        .map(|s| match s.value {
            prometheus_parse::Value::Gauge(v) => v,
            _ => 0.0,
        })
        .sum();
    assert!(viewers >= 20.0, "{viewers} viewers counted");
}

/// Plays `rendition` like a simple LL-HLS viewer until `stop` turns true: the media
/// playlist, then its newest part. Returns (requests, failures with their reasons).
async fn viewer(
    h3: H3Client,
    rendition: String,
    stop: tokio::sync::watch::Receiver<bool>,
) -> (usize, Vec<String>) {
    let mut requests = 0;
    let mut failures = Vec::new();
    while !*stop.borrow() {
        let playlist = format!("/live/demo/{rendition}/index.m3u8");
        requests += 1;
        let text = match h3.get(&playlist).await {
            Ok(r) if r.status == 200 => String::from_utf8(r.body.to_vec()).unwrap(),
            Ok(r) => {
                failures.push(format!("{playlist}: {}", r.status));
                continue;
            }
            Err(e) => {
                failures.push(format!("{playlist}: {e}"));
                continue;
            }
        };
        let Some(part) = tags(&text, "#EXT-X-PART:")
            .last()
            .and_then(|t| attr(t, "URI"))
        else {
            continue;
        };
        requests += 1;
        let path = format!("/live/demo/{rendition}/{part}");
        match h3.get(&path).await {
            Ok(r) if r.status == 200 => {}
            Ok(r) => failures.push(format!("{path}: {}", r.status)),
            Err(e) => failures.push(format!("{path}: {e}")),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    (requests, failures)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_reloads_under_load_drop_nothing() {
    require_ffmpeg();
    let edge = EdgeProcess::start();
    ready(&edge).await;
    let srt = format!(
        "srt://127.0.0.1:{}?streamid=#!::r=live/demo,m=publish&linger=2",
        edge.srt
    );
    let mut push = Child::spawn(&mut ffmpeg_push(640, 360, 60, &srt)).unwrap();
    let tls = std::net::SocketAddr::from(([127, 0, 0, 1], edge.tls));
    let first = H3Client::connect(tls, &edge.cert).await.unwrap();
    let multivariant = eventually(20, async || {
        let r = first.get("/live/demo/index.m3u8").await.ok()?;
        (r.status == 200).then(|| String::from_utf8(r.body.to_vec()).unwrap())
    })
    .await;
    let video = segments(&multivariant)[0]
        .strip_suffix("/index.m3u8")
        .unwrap()
        .to_string();

    // 20 viewers play through every reload.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let mut viewers = Vec::new();
    for _ in 0..20 {
        let h3 = H3Client::connect(tls, &edge.cert).await.unwrap();
        viewers.push(tokio::spawn(viewer(h3, video.clone(), stopped.clone())));
    }
    // Valid and invalid files alternate: 25 of each.
    let invalid = [
        "[hls]\npart_target_ms = 5000\n",
        "[srt]\nlisten = \"127.0.0.1:1\"\nmax_streams = 0\n",
        "[transcode\nencoder = \"off\"\n",
        "[cache]\nmax_byte = 1\n",
    ];
    let mut running = fingerprint(&edge.config);
    assert_eq!(edge.running_config(), running);
    for i in 0..50 {
        if i % 2 == 0 {
            let level = if i % 4 == 0 { "debug" } else { "info" };
            edge.write_config(&edge.settings(level, 64 + i));
            assert!(
                edge.reload().await,
                "valid file {i} refused:\n{}",
                edge.log()
            );
            running = fingerprint(&edge.config);
        } else {
            std::fs::write(&edge.config, invalid[i % invalid.len()]).unwrap();
            assert!(!edge.reload().await, "invalid file {i} accepted");
        }
        // An invalid file leaves the last valid one running.
        assert_eq!(edge.running_config(), running, "after reload {i}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(edge.reloads(), (25.0, 25.0));
    tokio::time::sleep(Duration::from_secs(1)).await;
    check_families(&edge.metrics());
    let _ = stop.send(true);
    let mut requests = 0;
    let mut failures = Vec::new();
    for v in viewers {
        let (n, f) = v.await.unwrap();
        requests += n;
        failures.extend(f);
    }
    assert!(requests > 1000, "only {requests} viewer requests");
    assert!(failures.is_empty(), "viewer requests failed: {failures:?}");

    // The publisher's session never dropped.
    assert!(push.0.try_wait().unwrap().is_none(), "ffmpeg stopped");
    let m = edge.metrics();
    assert_eq!(sample(&m, "daihuo_publishes_total"), 1.0);
    assert_eq!(sample(&m, "daihuo_streams_live"), 1.0);
    let log = edge.log();
    assert!(
        log.contains("reload refused, configuration unchanged"),
        "{log}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reloaded_certificate_reaches_new_connections() {
    let edge = EdgeProcess::start();
    ready(&edge).await;
    let tls = std::net::SocketAddr::from(([127, 0, 0, 1], edge.tls));
    let old = H3Client::connect(tls, &edge.cert).await.unwrap();
    assert_eq!(old.get("/live/none/index.m3u8").await.unwrap().status, 404);

    // Rotate: new files at the same paths, then SIGHUP.
    let old_file = edge.dir.path().join("old.pem");
    std::fs::copy(edge.dir.path().join("cert.pem"), &old_file).unwrap();
    let (cert_file, _, new_cert) = certificate(edge.dir.path());
    assert!(edge.reload().await, "{}", edge.log());
    // New HTTP/3 and HTTPS connections get the new certificate, and only it.
    let fresh = H3Client::connect(tls, &new_cert).await.unwrap();
    assert_eq!(
        fresh.get("/live/none/index.m3u8").await.unwrap().status,
        404
    );
    assert!(H3Client::connect(tls, &edge.cert).await.is_err());
    let https = format!("https://localhost:{}/live/none/index.m3u8", edge.tls);
    let curl_with = |ca: &Path| {
        Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(ca)
            .arg(&https)
            .output()
            .unwrap()
    };
    let ok = curl_with(&cert_file);
    assert_eq!(String::from_utf8_lossy(&ok.stdout), "404", "{ok:?}");
    let refused = curl_with(&old_file);
    assert!(!refused.status.success(), "{refused:?}");
    // The connection opened before the rotation goes on.
    assert_eq!(old.get("/live/none/index.m3u8").await.unwrap().status, 404);

    // A key that does not parse is refused and the current certificate stays.
    std::fs::write(edge.dir.path().join("key.pem"), "not a key").unwrap();
    assert!(!edge.reload().await);
    H3Client::connect(tls, &new_cert).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_playback_drains_and_exits_zero() {
    require_ffmpeg();
    let mut edge = EdgeProcess::start();
    ready(&edge).await;
    let srt = format!(
        "srt://127.0.0.1:{}?streamid=#!::r=live/demo,m=publish&linger=2",
        edge.srt
    );
    let _push = Child::spawn(&mut ffmpeg_push(640, 360, 60, &srt)).unwrap();
    let tls = std::net::SocketAddr::from(([127, 0, 0, 1], edge.tls));
    let h3 = H3Client::connect(tls, &edge.cert).await.unwrap();
    eventually(20, async || {
        (h3.get("/live/demo/index.m3u8").await.ok()?.status == 200).then_some(())
    })
    .await;
    edge.signal("TERM");
    let status = tokio::task::spawn_blocking(move || {
        let status = edge.child.wait().unwrap();
        (status, edge)
    })
    .await
    .unwrap();
    let (status, edge) = status;
    assert!(status.success(), "{status:?}\n{}", edge.log());
    let log = edge.log();
    let drain = log.find("draining").expect("drain logged");
    let stopped = log.find("stopped").expect("stop logged");
    assert!(drain < stopped, "{log}");
}

/// The unit files pass `systemd-analyze verify` (with ExecStart pointing at this build's
/// binaries), and the sysusers and tmpfiles snippets create the user and directories in a
/// scratch root.
#[test]
fn systemd_units_verify_and_snippets_apply() {
    let dir = tempfile::tempdir().unwrap();
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    for (package, name) in [("edge-node", "daihuo-edge"), ("origin", "daihuo-origin")] {
        let unit = std::fs::read_to_string(root.join(format!("systemd/{name}.service"))).unwrap();
        let bin = binary(package, name);
        let unit = unit.replace(&format!("/usr/bin/{name}"), &bin.display().to_string());
        let path = dir.path().join(format!("{name}.service"));
        std::fs::write(&path, unit).unwrap();
        let out = Command::new("systemd-analyze")
            .arg("verify")
            .arg(&path)
            .output()
            .expect("systemd-analyze (make test-deps installs systemd)");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && said.trim().is_empty(),
            "{name}: {said}"
        );
    }
    let scratch = dir.path().join("root");
    std::fs::create_dir_all(scratch.join("etc")).unwrap();
    let run = |cmd: &str, args: &[&str], file: &str| {
        let out = Command::new(cmd)
            .arg(format!("--root={}", scratch.display()))
            .args(args)
            .arg(root.join(file))
            .output()
            .unwrap();
        assert!(out.status.success(), "{cmd}: {out:?}");
    };
    run("systemd-sysusers", &[], "systemd/daihuo.sysusers");
    let passwd = std::fs::read_to_string(scratch.join("etc/passwd")).unwrap();
    assert!(passwd.lines().any(|l| l.starts_with("daihuo:")), "{passwd}");
    run("systemd-tmpfiles", &["--create"], "systemd/daihuo.tmpfiles");
    assert!(scratch.join("var/lib/daihuo").is_dir());
    assert!(scratch.join("etc/daihuo").is_dir());
}

/// Publish policy set by a reload: refused publishers (a wrong stream key, a wrong room
/// passphrase) are each logged with `audit="auth"` and their address, and the keyed publisher
/// gets in.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_publishers_are_audit_logged_with_their_address() {
    require_ffmpeg();
    let edge = EdgeProcess::start();
    ready(&edge).await;
    edge.write_config(&format!(
        "{}srt.publish_auth = \"key\"\n\
         srt.stream_keys = {{ demo = \"demo-stream-key-1234\", vip = \"vip-stream-key-12345\" }}\n\
         srt.passphrases = {{ vip = \"the-vip-room-passphrase\" }}\n",
        edge.settings("info", 64)
    ));
    assert!(edge.reload().await, "{}", edge.log());
    let srt = format!("srt://127.0.0.1:{}", edge.srt);
    for url in [
        format!("{srt}?streamid=#!::r=live/demo,m=publish,s=not-the-demo-key0"),
        format!(
            "{srt}?streamid=#!::r=live/vip,m=publish,s=vip-stream-key-12345&passphrase=not-the-vip-passphrase"
        ),
    ] {
        let mut push =
            Child::spawn(ffmpeg_push(320, 180, 3, &url).stderr(Stdio::null())).unwrap();
        let status = tokio::task::spawn_blocking(move || push.wait())
            .await
            .unwrap()
            .unwrap();
        assert!(!status.success(), "{url}: got in");
    }
    let keyed = format!("{srt}?streamid=#!::r=live/demo,m=publish,s=demo-stream-key-1234");
    let _seller = Child::spawn(&mut ffmpeg_push(320, 180, 20, &keyed)).unwrap();
    let media = format!("http://127.0.0.1:{}/live/demo/index.m3u8", edge.http);
    eventually(20, async || (curl(&media).ok()?.0 == 200).then_some(())).await;
    let log = edge.log();
    let audited: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("audit=\"auth\"") && l.contains("peer=127.0.0.1:"))
        .collect();
    for room in ["stream=\"demo\"", "stream=\"vip\""] {
        assert!(
            audited
                .iter()
                .any(|l| l.contains(room) && l.contains("publish refused")),
            "no audit line for {room} in:\n{log}"
        );
    }
    println!("{}", audited.join("\n"));
}

/// SIGTERM with `drain_delay_ms`: readiness turns 503 at once while the listeners keep
/// accepting new clients (a balancer's health check takes the box out first); a second signal
/// ends the lame-duck period, then the drain runs and the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_turns_readiness_off_first_and_keeps_serving_for_the_drain_delay() {
    let edge = EdgeDaemon::start(|dir| {
        certificate(dir);
        format!("{}drain_delay_ms = 60000\n", settings(dir, "info", 8))
    });
    let ready_url = format!("http://127.0.0.1:{}/readyz", edge.admin);
    eventually(30, async || (curl(&ready_url).ok()?.0 == 200).then_some(())).await;
    let pid = edge.pid();
    let kill = |signal: &str| {
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &pid.to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    };
    kill("TERM");
    eventually(10, async || (curl(&ready_url).ok()?.0 == 503).then_some(())).await;
    // Not ready, still serving: new connections on the viewer listeners get answers.
    for url in [
        format!("http://127.0.0.1:{}/live/nobody/index.m3u8", edge.http),
        format!("https://127.0.0.1:{}/live/nobody/index.m3u8", edge.tls),
    ] {
        let (status, _) = curl(&url).unwrap();
        assert_eq!(status, 404, "{url} during the drain delay");
    }
    let mut edge = edge;
    assert!(edge.child.0.try_wait().unwrap().is_none(), "{}", edge.log());
    kill("TERM");
    let (status, edge) = tokio::task::spawn_blocking(move || (edge.child.wait().unwrap(), edge))
        .await
        .unwrap();
    assert!(status.success(), "{status:?}\n{}", edge.log());
    let log = edge.log();
    let lame = log.find("not ready; serving on").expect("lame duck logged");
    let drain = log.find("draining now").expect("second signal logged");
    assert!(lame < drain, "{log}");
}

/// A self-signed origin certificate made the common way (`openssl req -x509`, which makes a
/// CA certificate): the edge says why the origin is down, in its log and in
/// `check --connect`; a certificate from the README's private CA recipe works.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_origin_that_cannot_be_reached_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = |cmd: &mut Command| {
        let out = cmd.current_dir(d).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run(Command::new("openssl").args([
        "req",
        "-x509",
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:P-256",
        "-nodes",
        "-keyout",
        "ca-key.pem",
        "-out",
        "selfsigned.pem",
        "-days",
        "30",
        "-subj",
        "/CN=localhost",
        "-addext",
        "subjectAltName=DNS:localhost",
    ]));
    // The README's recipe (scripts/private-ca.sh): a private CA and a server certificate.
    let recipe = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/private-ca.sh");
    run(Command::new("bash").arg(&recipe).args(["pki", "localhost"]));

    let bad = daihuo::daemons::OriginSpec::new("origin-bad");
    let good = daihuo::daemons::OriginSpec::new("origin-good");
    let _bad = bad.start(d, &d.join("selfsigned.pem"), &d.join("ca-key.pem"));
    let _good = good.start(
        d,
        &d.join("pki/localhost.pem"),
        &d.join("pki/localhost-key.pem"),
    );
    // One edge trusting both the self-signed certificate and the private CA.
    let bundle = format!(
        "{}{}",
        std::fs::read_to_string(d.join("selfsigned.pem")).unwrap(),
        std::fs::read_to_string(d.join("pki/ca.pem")).unwrap()
    );
    std::fs::write(d.join("trust.pem"), bundle).unwrap();
    let upstream = format!(
        "[upstream]\nca = {:?}\nprobe_interval_ms = 200\nconnect_timeout_ms = 1000\n{}{}",
        d.join("trust.pem").display().to_string(),
        bad.toml(),
        good.toml()
    );
    let edge = EdgeDaemon::start(|dir| {
        certificate(dir);
        format!("{}{upstream}", settings(dir, "info", 8))
    });
    // The log says why, once per reason, not once per probe.
    let why = "origin down: probe: tls: invalid peer certificate";
    let said = |log: &str| {
        log.lines()
            .any(|l| l.contains("origin-bad") && l.contains(why) && l.contains("CA certificate"))
    };
    for _ in 0..300 {
        if said(&edge.log()) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(said(&edge.log()), "{}", edge.log());
    tokio::time::sleep(Duration::from_secs(2)).await;
    let log = edge.log();
    let lines = log
        .lines()
        .filter(|l| l.contains("origin-bad") && l.contains(why));
    assert_eq!(lines.count(), 1, "{log}");
    assert!(
        !log.lines()
            .any(|l| l.contains("origin-good") && l.contains("origin down")),
        "{log}"
    );

    let check = Command::new(binary("edge-node", "daihuo-edge"))
        .args(["check", "--connect", "--config"])
        .arg(&edge.config)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&check.stdout);
    assert!(!check.status.success(), "{stdout}");
    let line = |name: &str| {
        stdout
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no line for {name} in\n{stdout}"))
            .to_string()
    };
    let bad_line = line("origin-bad");
    assert!(
        bad_line.contains("FAILED") && bad_line.contains("CaUsedAsEndEntity"),
        "{bad_line}"
    );
    assert!(
        bad_line.contains("sign a server certificate with a private CA"),
        "{bad_line}"
    );
    assert!(
        line("origin-good").contains(": ok, /healthz answered 200"),
        "{stdout}"
    );
}

/// curl over HTTP/2 to the origin API at `port` as `localhost`, trusting `ca`, presenting
/// `client` (certificate and key) if given: the status, or the transport error curl printed.
fn curl_origin(
    port: u16,
    ca: &Path,
    client: Option<(&Path, &Path)>,
    method: &str,
    path: &str,
    body: &str,
) -> Result<(u16, String), String> {
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--http2", "--max-time", "10", "-X", method])
        .arg("--cacert")
        .arg(ca)
        .args(["--resolve", &format!("localhost:{port}:127.0.0.1")]);
    if let Some((cert, key)) = client {
        cmd.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    if !body.is_empty() {
        cmd.args(["-H", "content-type: application/json", "-d", body]);
    }
    let out = cmd
        .args(["-w", "\n%{http_code}"])
        .arg(format!("https://localhost:{port}{path}"))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", &text));
    Ok((status.trim().parse().unwrap_or(0), body.to_string()))
}

/// Mutual TLS between edges and origins (`[http] client_ca`, `[upstream] cert`/`key`), with
/// certificates from the README's recipe: a client without a certificate from the origin's
/// CA gets no TLS session (HTTP/2 or HTTP/3), so a forged batch never reaches the journal;
/// an edge holding one is served, relays events and reads the feed; an edge without one is
/// told why by `check --connect`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origin_api_serves_only_edges_with_a_client_certificate() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let recipe = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/private-ca.sh");
    let run = |args: &[&str]| {
        let out = Command::new("bash")
            .arg(&recipe)
            .args(args)
            .current_dir(d)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    // The deployment's CA signs the origin's server certificate and the edge's client one;
    // another CA signs a certificate with the same name.
    run(&["pki", "localhost", "edge-1"]);
    run(&["rogue", "edge-1"]);
    let pki = d.join("pki");
    let ca = pki.join("ca.pem");
    let origin = daihuo::daemons::OriginSpec::new("origin-a")
        .with_http(&format!("client_ca = {:?}", ca.display().to_string()));
    let _origin = origin.start(
        d,
        &pki.join("localhost.pem"),
        &pki.join("localhost-key.pem"),
    );
    let port = origin.api.port();
    let edge_pair = (pki.join("edge-1.pem"), pki.join("edge-1-key.pem"));
    let rogue_pair = (d.join("rogue/edge-1.pem"), d.join("rogue/edge-1-key.pem"));
    let batch = |id: &str| {
        format!(
            r#"[{{"room":"demo","event":{{"id":"{id}","type":"order","user":"u9","sku":"SKU-1","qty":9}}}}]"#
        )
    };

    // No certificate, or one from another CA: no session at all, whatever the path.
    for (client, id) in [
        (None, "forged-1"),
        (
            Some((rogue_pair.0.as_path(), rogue_pair.1.as_path())),
            "forged-2",
        ),
    ] {
        for (method, path, body) in [
            ("GET", "/healthz", String::new()),
            ("GET", "/live/demo/index.m3u8", String::new()),
            ("GET", "/feed", String::new()),
            ("POST", "/events", batch(id)),
        ] {
            let answer = curl_origin(port, &ca, client, method, path, &body);
            assert!(
                answer.is_err(),
                "{method} {path} with {client:?}: {answer:?}"
            );
        }
    }
    let der = {
        use rustls::pki_types::pem::PemObject;
        CertificateDer::from_pem_file(&ca).unwrap()
    };
    let h3 = async {
        let client = H3Client::connect(origin.api, &der).await?;
        client.get("/healthz").await
    }
    .await;
    assert!(h3.is_err(), "HTTP/3 without a client certificate: {h3:?}");
    // The edge's certificate: served, and the same batch format is taken.
    let edge_cert = Some((edge_pair.0.as_path(), edge_pair.1.as_path()));
    assert_eq!(
        curl_origin(port, &ca, edge_cert, "GET", "/healthz", "")
            .unwrap()
            .0,
        200
    );
    let (status, body) =
        curl_origin(port, &ca, edge_cert, "POST", "/events", &batch("direct-1")).unwrap();
    assert_eq!(status, 200, "{body}");

    // An edge with that certificate pulls over HTTP/3 and relays a viewer's order.
    let upstream = |with_cert: bool| {
        let mut text = format!(
            "[upstream]\nca = {:?}\nprotocol = \"h3\"\nprobe_interval_ms = 200\n",
            ca.display().to_string()
        );
        if with_cert {
            text.push_str(&format!(
                "cert = {:?}\nkey = {:?}\n",
                edge_pair.0.display().to_string(),
                edge_pair.1.display().to_string()
            ));
        }
        text + &origin.toml()
    };
    let edge = EdgeDaemon::start(|dir| {
        certificate(dir);
        format!("{}{}", settings(dir, "info", 8), upstream(true))
    });
    let readyz = format!("http://127.0.0.1:{}/readyz", edge.admin);
    eventually(30, async || (curl(&readyz).ok()?.0 == 200).then_some(())).await;
    let post = Command::new("curl")
        .args(["-sS", "-w", "\n%{http_code}", "-X", "POST", "-d"])
        .arg(r#"[{"id":"c-1","type":"cart_add","user":"u1","sku":"SKU-1","qty":1}]"#)
        .arg(format!("http://127.0.0.1:{}/live/demo/events", edge.http))
        .output()
        .unwrap();
    let post = String::from_utf8_lossy(&post.stdout);
    assert!(post.ends_with("202"), "{post}");
    let journal = format!("http://{}/events", origin.admin);
    let mut text = String::new();
    for _ in 0..60 {
        let (status, body) = curl(&journal).unwrap();
        text = format!("{status} {}", String::from_utf8(body).unwrap());
        if text.contains("\"c-1\"") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        text.contains("\"c-1\""),
        "{text}\n{}\n{}",
        edge.log(),
        origin.log(d)
    );
    assert!(text.contains("\"direct-1\""), "{text}\n{body}");
    assert!(!text.contains("forged"), "{text}");

    // Without its certificate, the edge is told why the origin refuses it.
    // With one from another CA, likewise.
    let config = std::fs::read_to_string(&edge.config).unwrap();
    let check = |name: &str, text: String| {
        let path = d.join(name);
        assert_ne!(text, config);
        std::fs::write(&path, text).unwrap();
        let out = Command::new(binary("edge-node", "daihuo-edge"))
            .args(["check", "--connect", "--config"])
            .arg(&path)
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
        assert!(!out.status.success(), "{stdout}");
        stdout
    };
    let bare = check(
        "bare-edge.toml",
        config.replace(&upstream(true), &upstream(false)),
    );
    assert!(
        bare.contains("origin-a") && bare.contains("set upstream.cert and upstream.key"),
        "{bare}"
    );
    let rogue = config.replace(
        &edge_pair.0.display().to_string(),
        &rogue_pair.0.display().to_string(),
    );
    let rogue = check(
        "rogue-edge.toml",
        rogue.replace(
            &edge_pair.1.display().to_string(),
            &rogue_pair.1.display().to_string(),
        ),
    );
    assert!(
        rogue.contains("origin-a") && rogue.contains("refused this edge's client certificate"),
        "{rogue}"
    );
}

/// An edge relaying a live stream to two origins is stopped (SIGTERM): closing its SRT
/// sessions costs a few log lines, at the edge and at each origin (the vendored srt-tokio
/// logged one line per turn of a spinning loop: 27,137 lines in a second at the edge).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn closing_relay_links_costs_a_few_log_lines() {
    require_ffmpeg();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (cert, key, _) = certificate(d);
    let origins = [
        daihuo::daemons::OriginSpec::new("origin-a"),
        daihuo::daemons::OriginSpec::new("origin-b"),
    ];
    let _procs: Vec<Child> = origins.iter().map(|o| o.start(d, &cert, &key)).collect();
    let upstream = format!(
        "[upstream]\nca = {:?}\nstandby = \"hot\"\nprobe_interval_ms = 200\n{}{}",
        cert.display().to_string(),
        origins[0].toml(),
        origins[1].toml()
    );
    let mut edge = EdgeDaemon::start(|dir| {
        certificate(dir);
        format!("{}{upstream}", settings(dir, "info", 8))
    });
    let srt = format!(
        "srt://127.0.0.1:{}?streamid=#!::r=live/demo,m=publish",
        edge.srt
    );
    let _push = Child::spawn(&mut ffmpeg_push(640, 360, 60, &srt)).unwrap();
    // Both origins have the stream live: both links carry it.
    for o in &origins {
        let url = format!("http://{}/metrics", o.admin);
        eventually(30, async || {
            let (_, body) = curl(&url).ok()?;
            (sample(&String::from_utf8_lossy(&body), "daihuo_streams_live") == 1.0).then_some(())
        })
        .await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let lines = |text: &str| text.lines().count();
    let edge_before = lines(&edge.log());
    let origins_before: Vec<usize> = origins.iter().map(|o| lines(&o.log(d))).collect();
    let status = Command::new("kill")
        .args(["-TERM", &edge.pid().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let (status, edge) = tokio::task::spawn_blocking(move || (edge.child.wait().unwrap(), edge))
        .await
        .unwrap();
    assert!(status.success(), "{status:?}");
    // The origins notice the links are gone (SRT's idle timeout is 5 s).
    tokio::time::sleep(Duration::from_secs(8)).await;
    let log = edge.log();
    let new: Vec<&str> = log.lines().skip(edge_before).collect();
    println!("lines logged while stopping: edge {}", new.len());
    assert!(
        new.len() <= 40,
        "the edge logged {} lines while stopping; the first:\n{}",
        new.len(),
        new.iter().take(20).copied().collect::<Vec<_>>().join("\n")
    );
    for (o, before) in origins.iter().zip(origins_before) {
        let log = o.log(d);
        let new: Vec<&str> = log.lines().skip(before).collect();
        println!(
            "lines logged when its link closed: {} {}",
            o.name,
            new.len()
        );
        assert!(
            new.len() <= 20,
            "{} logged {} lines when its link closed; the first:\n{}",
            o.name,
            new.len(),
            new.iter().take(20).copied().collect::<Vec<_>>().join("\n")
        );
    }
}
