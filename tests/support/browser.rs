//! A real browser for the end-to-end tests: Debian's Chromium, headless, playing a stream with
//! hls.js (the npm package pinned in `web/package-lock.json`, fetched by
//! `scripts/install-web.sh`) from a page on another origin, served here. The page reports what
//! it saw as JSON when its time is up; nothing drives the browser but its command line.

use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use daemon::serve::{Handler, Peer};
use http::{Request, Response, StatusCode};
use tokio::sync::mpsc;

use crate::peers::Child;

/// Panics with how to install Chromium when it is missing (as the other peers do).
pub fn require_chromium() {
    let found = Command::new("chromium")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found,
        "chromium is required for the browser tests: `make test-deps` (apt-get install chromium)"
    );
}

/// hls.js as npm installed it, or a panic saying how to get it.
fn hls_js() -> Bytes {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("web/node_modules/hls.js/dist/hls.min.js");
    match std::fs::read(&path) {
        Ok(bytes) => Bytes::from(bytes),
        Err(e) => panic!(
            "{}: {e}; fetch the pinned hls.js with `scripts/install-web.sh` (make test-deps does)",
            path.display()
        ),
    }
}

/// The room page's hls.js settings and catch-up (`daihuoLive`), which the player page uses
/// with `tuned`: the tests and the glass benchmark measure what viewers get.
const LIVE_JS: &[u8] = include_bytes!("../../edge-node/src/pages/live.js");

/// The page server: the player page, hls.js and the room page's settings; reports POSTed to `/report` go to `reports`.
struct Pages {
    page: Bytes,
    hls: Bytes,
    reports: mpsc::UnboundedSender<String>,
}

impl Handler for Pages {
    async fn handle(&self, req: Request<Bytes>, _peer: Peer) -> Response<Bytes> {
        let (body, content_type) = match (req.method().as_str(), req.uri().path()) {
            ("GET", "/player.html") => (self.page.clone(), "text/html; charset=utf-8"),
            ("GET", "/hls.min.js") => (self.hls.clone(), "text/javascript"),
            ("GET", "/live.js") => (Bytes::from_static(LIVE_JS), "text/javascript"),
            ("POST", "/report") => {
                let _ = self
                    .reports
                    .send(String::from_utf8_lossy(req.body()).into_owned());
                (Bytes::new(), "text/plain")
            }
            _ => {
                let mut res = Response::new(Bytes::from_static(b"not found\n"));
                *res.status_mut() = StatusCode::NOT_FOUND;
                return res;
            }
        };
        let mut res = Response::new(body);
        res.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(content_type),
        );
        res
    }
}

/// A single-box edge on `[::]:PORT` (HTTPS and HTTP/3, the default shape) with a test
/// certificate for `localhost`, and a publisher (`push`, given the SRT URL) pushing to
/// `live/demo`, playing: its first media playlist has a segment.
pub struct Live {
    pub edge: edge_node::Edge,
    pub cert: std::path::PathBuf,
    pub port: u16,
    _push: Child,
    _dir: tempfile::TempDir,
}

impl Live {
    pub async fn start(mut config: conf::EdgeConfig, push: impl FnOnce(&str) -> Command) -> Self {
        crate::require_ffmpeg();
        require_chromium();
        let dir = tempfile::tempdir().expect("temporary directory");
        let (cert, key, _) = crate::daemons::certificate(dir.path());
        config.https.cert = Some(cert.clone());
        config.https.key = Some(key);
        let port = crate::daemons::free_port();
        config.https.listen = SocketAddr::from((std::net::Ipv6Addr::UNSPECIFIED, port));
        config.http3.listen = config.https.listen;
        let edge = edge_node::Edge::start(&config).await.expect("edge starts");
        let srt = format!(
            "srt://{}?streamid=#!::r=live/demo,m=publish",
            edge.addrs.srt
        );
        let push = Child::spawn(&mut push(&srt)).expect("spawn the publisher");
        let http = edge.addrs.http.expect("the loopback config has plain HTTP");
        crate::eventually(30, async || {
            let (_, multivariant) =
                crate::peers::curl(&format!("http://{http}/live/demo/index.m3u8")).ok()?;
            let multivariant = String::from_utf8_lossy(&multivariant).into_owned();
            let first = multivariant.lines().find(|l| l.ends_with(".m3u8"))?;
            let (_, media) =
                crate::peers::curl(&format!("http://{http}/live/demo/{first}")).ok()?;
            String::from_utf8_lossy(&media)
                .contains("#EXTINF")
                .then_some(())
        })
        .await;
        Self {
            edge,
            cert,
            port,
            _push: push,
            _dir: dir,
        }
    }
}

/// How a browser reaches the edge.
#[derive(Debug, Clone, Copy)]
pub enum Transport {
    /// HTTPS (HTTP/2), the certificate `cert_pem` accepted by its key's pin.
    Https,
    /// HTTP/3 forced on for the edge's origin (QUIC on the UDP port of the same number).
    Http3,
}

/// Plays `src` (an `https://localhost:PORT/...` playlist of an edge serving `cert_pem`) for
/// `seconds` in headless Chromium over `transport`; returns the page's report (JSON).
pub async fn play(src: &str, cert_pem: &Path, transport: Transport, seconds: u64) -> String {
    play_with(src, cert_pem, transport, seconds, "").await
}

/// [`play`] with the player page's `options` (query parameters, e.g. `&clock`: read the
/// capture clock of [`crate::peers::ffmpeg_clock_push`] for glass-to-glass times).
pub async fn play_with(
    src: &str,
    cert_pem: &Path,
    transport: Transport,
    seconds: u64,
    options: &str,
) -> String {
    require_chromium();
    let (tx, mut reports) = mpsc::unbounded_channel();
    let pages = Arc::new(Pages {
        page: Bytes::from_static(include_bytes!("../browser/player.html")),
        hls: hls_js(),
        reports: tx,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("page server bind");
    let pages_addr: SocketAddr = listener.local_addr().expect("page server address");
    let (stop, drain) = daemon::drain::channel();
    tokio::spawn(daemon::serve::serve_plain(listener, pages, drain));
    let profile = tempfile::tempdir().expect("browser profile directory");
    let page = format!(
        "http://{pages_addr}/player.html?seconds={seconds}&report=http://{pages_addr}/report{options}&src={src}"
    );
    let mut cmd = chromium(profile.path(), cert_pem, &url_origin(src), transport);
    cmd.arg(&page);
    let _browser = Child::spawn(&mut cmd).expect("spawn chromium");
    let report = tokio::time::timeout(Duration::from_secs(seconds + 60), reports.recv())
        .await
        .unwrap_or_else(|_| panic!("no report from the page within {seconds} s + 60 s"))
        .expect("page server");
    stop.start();
    report
}

/// Headless Chromium with its profile in `profile`, trusting `cert_pem` by its key's pin,
/// reaching `edge` (`HOST:PORT`) over `transport`; the caller adds the URL to open.
pub fn chromium(profile: &Path, cert_pem: &Path, edge: &str, transport: Transport) -> Command {
    let mut cmd = Command::new("chromium");
    cmd.args([
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--no-first-run",
        "--mute-audio",
        "--autoplay-policy=no-user-gesture-required",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .arg(format!(
        "--ignore-certificate-errors-spki-list={}",
        spki_pin(cert_pem)
    ));
    match transport {
        Transport::Http3 => cmd
            .arg("--enable-quic")
            .arg(format!("--origin-to-force-quic-on={edge}")),
        // Else Alt-Svc would move it to HTTP/3 after the first answer.
        Transport::Https => cmd.arg("--disable-quic"),
    };
    // Chromium's own complaints (no D-Bus in a container, GPU probing) are not the test's.
    cmd.stderr(std::process::Stdio::null());
    cmd
}

/// `localhost:PORT` of an `https://localhost:PORT/...` URL.
pub fn url_origin(url: &str) -> String {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    rest.split('/').next().unwrap_or(rest).to_string()
}

/// The base64 SHA-256 of the certificate's public key (SPKI), as Chromium's
/// `--ignore-certificate-errors-spki-list` wants it; computed by openssl.
fn spki_pin(cert_pem: &Path) -> String {
    let script = format!(
        "openssl x509 -in '{}' -pubkey -noout | openssl pkey -pubin -outform der \
         | openssl dgst -sha256 -binary | base64 -w0",
        cert_pem.display()
    );
    let out = Command::new("sh")
        .args(["-c", &script])
        .output()
        .expect("run openssl");
    assert!(out.status.success(), "openssl: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}
