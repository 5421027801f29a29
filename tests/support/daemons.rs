//! Running the daemons as processes (so a test can signal or SIGKILL them), a certificate
//! to serve and trust, free ports, and metrics read back.

use std::collections::BTreeSet;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use rustls::pki_types::CertificateDer;

use crate::peers::Child;

/// A free loopback port for both TCP and UDP (an origin's API serves HTTPS and HTTP/3 on
/// one port number). Released before returning: the caller binds it soon after.
///
/// The kernel may hand the same ephemeral port to two `bind(0)` calls in a row once the
/// first is closed, so a port is never returned twice in one test process: a CI run saw an
/// origin's `http.listen` and `admin.listen` get the same number.
pub fn free_port() -> u16 {
    static GIVEN: Mutex<BTreeSet<u16>> = Mutex::new(BTreeSet::new());
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0").expect("bind tcp");
        let port = tcp.local_addr().expect("local addr").port();
        if UdpSocket::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        if GIVEN.lock().unwrap_or_else(|e| e.into_inner()).insert(port) {
            return port;
        }
    }
}

/// A self-signed certificate for `localhost` written to `dir` as `cert.pem` / `key.pem`.
pub fn certificate(dir: &Path) -> (PathBuf, PathBuf, CertificateDer<'static>) {
    let certified =
        rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    std::fs::write(&cert, certified.cert.pem()).expect("write cert");
    std::fs::write(&key, certified.signing_key.serialize_pem()).expect("write key");
    (cert, key, certified.cert.der().clone())
}

/// The `daihuo-origin` binary of this build.
pub fn origin_binary() -> PathBuf {
    binary("origin", "daihuo-origin")
}

/// The binary `name` of package `package` from this build, brought up to date once per test
/// process (a narrower `cargo test` than `--workspace` neither builds nor refreshes it, and a
/// stale binary would test old code). `make test` sets `DAIHUO_PREBUILT_BINARIES`: its
/// `cargo test --workspace` has just built both binaries (for edge-node's and origin's own
/// integration tests), and building them again here, with the features of a plain
/// `cargo build`, would recompile the stack in the middle of the run.
pub fn binary(package: &str, name: &str) -> PathBuf {
    static BUILT: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>/<name>
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target profile directory");
    let bin = profile_dir.join(name);
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    let prebuilt = std::env::var_os("DAIHUO_PREBUILT_BINARIES").is_some() && bin.is_file();
    if !prebuilt && !built.iter().any(|b| b == name) {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        // The edge with the Kafka sink, as a workspace build has it (origin's default
        // features), so this build finds everything already compiled.
        let features: &[&str] = match package {
            "edge-node" => &["--features", "kafka"],
            _ => &[],
        };
        let status = Command::new(cargo)
            .args(["build", "--quiet", "-p", package, "--bin", name])
            .args(features)
            .status()
            .expect("run cargo build");
        assert!(status.success(), "cannot build {name}");
        built.push(name.to_string());
    }
    bin
}

/// A `daihuo-edge` process on free loopback ports, its config, log (`edge.log`) and state in
/// a directory of its own. The config is the listeners, transcoding off and the state
/// directory, plus the caller's settings as root-level TOML (dotted keys such as
/// `log.level = "warn"`, so they never reopen a table).
pub struct EdgeDaemon {
    pub dir: tempfile::TempDir,
    pub config: PathBuf,
    pub child: Child,
    pub srt: u16,
    /// HTTPS (TCP) and HTTP/3 (UDP) share this port.
    pub tls: u16,
    pub http: u16,
    pub admin: u16,
}

impl EdgeDaemon {
    /// Starts the daemon with `settings(dir)` added to its config.
    pub fn start(settings: impl FnOnce(&Path) -> String) -> Self {
        // Build (or check) the binary before picking ports, as in `OriginSpec::new`.
        let exe = binary("edge-node", "daihuo-edge");
        let dir = tempfile::tempdir().expect("temp dir");
        let srt = UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .expect("free udp port")
            .port();
        let (tls, http, admin) = (free_port(), free_port(), free_port());
        let settings = settings(dir.path());
        let mut edge = Self {
            config: dir.path().join("edge.toml"),
            dir,
            child: Child(Command::new("true").spawn().expect("spawn true")),
            srt,
            tls,
            http,
            admin,
        };
        edge.write_config(&settings);
        let log = std::fs::File::create(edge.dir.path().join("edge.log")).expect("log file");
        edge.child = Child::spawn(
            Command::new(exe)
                .arg("--config")
                .arg(&edge.config)
                .stdout(std::process::Stdio::null())
                .stderr(log),
        )
        .expect("spawn daihuo-edge");
        edge
    }

    /// Rewrites the config with other `settings` (a reload then reads it).
    pub fn write_config(&self, settings: &str) {
        let text = format!(
            "srt.listen = \"127.0.0.1:{}\"\n\
             https.listen = \"127.0.0.1:{}\"\n\
             http3.listen = \"127.0.0.1:{}\"\n\
             http.listen = \"127.0.0.1:{}\"\n\
             admin.listen = \"127.0.0.1:{}\"\n\
             transcode.encoder = \"off\"\n\
             events.state_dir = {:?}\n\
             {settings}",
            self.srt,
            self.tls,
            self.tls,
            self.http,
            self.admin,
            self.dir.path().join("state").display().to_string(),
        );
        std::fs::write(&self.config, text).expect("write config");
    }

    pub fn pid(&self) -> u32 {
        self.child.0.id()
    }

    /// Everything the daemon has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("edge.log")).unwrap_or_default()
    }
}

/// One origin's addresses, fixed so it can be restarted on them.
#[derive(Clone, Debug)]
pub struct OriginSpec {
    pub name: String,
    pub srt: SocketAddr,
    pub api: SocketAddr,
    pub admin: SocketAddr,
    /// More `[srt]` settings, one `key = value` a line.
    pub srt_settings: String,
    /// More `[http]` settings, one `key = value` a line.
    pub http_settings: String,
    /// More `[events]` settings, one `key = value` a line.
    pub events_settings: String,
}

impl OriginSpec {
    /// An origin on free loopback ports.
    pub fn new(name: &str) -> Self {
        // Build (or check) the binary first: the ports are free only until someone else
        // binds them, so the window to the origin's own bind stays short.
        origin_binary();
        let at = |port| SocketAddr::from(([127, 0, 0, 1], port));
        Self {
            name: name.to_string(),
            srt: at(free_port()),
            api: at(free_port()),
            admin: at(free_port()),
            srt_settings: String::new(),
            http_settings: String::new(),
            events_settings: String::new(),
        }
    }

    /// This origin with more `[srt]` settings (`key = value` lines).
    pub fn with_srt(mut self, settings: &str) -> Self {
        self.srt_settings = settings.to_string();
        self
    }

    /// This origin with more `[http]` settings (`key = value` lines).
    pub fn with_http(mut self, settings: &str) -> Self {
        self.http_settings = settings.to_string();
        self
    }

    /// This origin with more `[events]` settings (`key = value` lines).
    pub fn with_events(mut self, settings: &str) -> Self {
        self.events_settings = settings.to_string();
        self
    }

    /// Where this origin keeps its journal when started in `dir`.
    pub fn state_dir(&self, dir: &Path) -> std::path::PathBuf {
        dir.join(format!("{}-state", self.name))
    }

    /// Starts `daihuo-origin` (transcoding off, the test certificate) on these addresses,
    /// logging to `NAME.log` in `dir` ([`OriginSpec::log`]), and waits until its admin port
    /// answers; panics if it exits first (a bad config, a port taken), so a test does not go
    /// on against an origin that never ran.
    pub fn start(&self, dir: &Path, cert: &Path, key: &Path) -> Child {
        let config = dir.join(format!("{}.toml", self.name));
        std::fs::write(
            &config,
            format!(
                "[srt]\nlisten = \"{}\"\n{}\n[http]\nlisten = \"{}\"\ncert = {:?}\nkey = {:?}\n{}\n\
                 [admin]\nlisten = \"{}\"\n[transcode]\nencoder = \"off\"\n[log]\nlevel = \"warn\"\n\
                 [events]\nstate_dir = {:?}\n{}\n",
                self.srt,
                self.srt_settings,
                self.api,
                cert.display().to_string(),
                key.display().to_string(),
                self.http_settings,
                self.admin,
                self.state_dir(dir).display().to_string(),
                self.events_settings,
            ),
        )
        .expect("write origin config");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(format!("{}.log", self.name)))
            .expect("origin log file");
        let mut child = Child::spawn(
            Command::new(origin_binary())
                .arg("--config")
                .arg(&config)
                .stderr(log),
        )
        .expect("spawn daihuo-origin");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        loop {
            if let Some(status) = child.0.try_wait().expect("origin status") {
                panic!(
                    "daihuo-origin {} exited at start: {status}\n{}",
                    self.name,
                    self.log(dir)
                );
            }
            if std::net::TcpStream::connect(self.admin).is_ok() {
                return child;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "daihuo-origin {} not answering on {} after 30 s",
                self.name,
                self.admin
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Everything the origin started in `dir` has logged (every start appends).
    pub fn log(&self, dir: &Path) -> String {
        std::fs::read_to_string(dir.join(format!("{}.log", self.name))).unwrap_or_default()
    }

    /// This origin as an edge's `[[upstream.origins]]` entry.
    pub fn toml(&self) -> String {
        format!(
            "[[upstream.origins]]\nname = \"{}\"\nsrt = \"{}\"\napi = \"{}\"\nserver_name = \"localhost\"\n",
            self.name, self.srt, self.api
        )
    }
}

/// The value of the sample `name` (with its labels, exactly as rendered, e.g.
/// `daihuo_cache_requests_total{result="hit"}`) in `metrics`; 0 when absent.
pub fn metric(metrics: &origin::Metrics, name: &str) -> f64 {
    sample(&metrics.render(), name)
}

/// The value of the sample `name` in Prometheus text `text`; 0 when absent.
pub fn sample(text: &str, name: &str) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| {
            let (sample, value) = l.rsplit_once(' ')?;
            (sample == name).then(|| value.parse().ok()).flatten()
        })
        .unwrap_or(0.0)
}
