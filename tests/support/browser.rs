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

/// The page server: the player page and hls.js; reports POSTed to `/report` go to `reports`.
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
        "http://{pages_addr}/player.html?seconds={seconds}&report=http://{pages_addr}/report&src={src}"
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
