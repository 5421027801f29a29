//! The servers under load: `daihuo-edge` and nginx as child processes pinned to one core, the
//! publish that fills the edge, the live stream it ingests meanwhile, and their CPU time
//! from `/proc`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use daihuo::bench::{free_tcp, free_udp, spawn_pinned};
use daihuo::Child;

use crate::{ROOM, SERVER_CORE};

/// A server process (killed with its process group when dropped).
struct Server {
    child: Child,
}

impl Server {
    fn pid(&self) -> u32 {
        self.child.0.id()
    }
}

/// The running `daihuo-edge` and the loopback addresses it listens on.
pub struct Edge {
    server: Server,
    pub srt: SocketAddr,
    pub https: SocketAddr,
    pub http: SocketAddr,
    pub http3: SocketAddr,
}

impl Edge {
    pub fn pid(&self) -> u32 {
        self.server.pid()
    }
}

/// The running nginx (master process) and its loopback addresses: plain HTTP/1.1, and TLS
/// with HTTP/1.1 and HTTP/2.
pub struct Nginx {
    server: Server,
    pub addr: SocketAddr,
    pub tls: SocketAddr,
}

impl Nginx {
    /// The master and its workers.
    pub fn pids(&self) -> Result<Vec<u32>> {
        let master = self.server.pid();
        let mut pids = vec![master];
        pids.extend(children_of(master)?);
        if pids.len() < 2 {
            bail!("nginx has no worker process");
        }
        Ok(pids)
    }
}

/// A certificate for `localhost` generated here, which both servers present and the viewers
/// trust: `dir/cert.pem` and `dir/key.pem`.
pub fn certificate(dir: &Path) -> Result<PathBuf> {
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".to_string()])?;
    let cert_path = dir.join("cert.pem");
    std::fs::write(&cert_path, certified.cert.pem())?;
    std::fs::write(dir.join("key.pem"), certified.signing_key.serialize_pem())?;
    Ok(cert_path)
}

/// Starts the edge on loopback, pinned to the server core, with the certificate of
/// [`certificate`].
pub async fn start_edge(bin: &Path, dir: &Path) -> Result<Edge> {
    let (cert_path, key_path) = (dir.join("cert.pem"), dir.join("key.pem"));

    let loopback = |port| SocketAddr::from(([127, 0, 0, 1], port));
    let (srt, http3) = (loopback(free_udp()?), loopback(free_udp()?));
    let (https, http, admin) = (
        loopback(free_tcp()?),
        loopback(free_tcp()?),
        loopback(free_tcp()?),
    );
    let config = format!(
        "[srt]\nlisten = \"{srt}\"\n\
         [https]\nlisten = \"{https}\"\ncert = {:?}\nkey = {:?}\n\
         [http3]\nlisten = \"{http3}\"\n\
         [http]\nlisten = \"{http}\"\n\
         [admin]\nlisten = \"{admin}\"\n\
         [transcode]\nencoder = \"off\"\n\
         [hls]\nended_linger_s = 3600\n\
         [events]\nstate_dir = {:?}\n\
         [limits]\nmax_connections_per_ip = 0\n\
         [log]\nlevel = \"warn\"\n",
        cert_path.display().to_string(),
        key_path.display().to_string(),
        dir.join("state").display().to_string(),
    );
    let config_path = dir.join("edge.toml");
    std::fs::write(&config_path, config)?;
    let child = spawn_pinned(SERVER_CORE, bin, &config_path, &dir.join("edge.log"))?;
    let mut server = Server { child };
    listening(&mut server, http, &dir.join("edge.log")).await?;
    Ok(Edge {
        server,
        srt,
        https,
        http,
        http3,
    })
}

/// Starts nginx on loopback, pinned to the server core, serving `dir/www` over plain HTTP and
/// over TLS (HTTP/1.1 and HTTP/2, the certificate of [`certificate`]), with its open file
/// cache on (descriptors and sizes of the files kept between requests).
pub async fn start_nginx(dir: &Path) -> Result<Nginx> {
    let addr = SocketAddr::from(([127, 0, 0, 1], free_tcp()?));
    let tls = SocketAddr::from(([127, 0, 0, 1], free_tcp()?));
    let d = dir.display();
    let config = format!(
        "worker_processes 1;\n\
         daemon off;\n\
         master_process on;\n\
         pid {d}/nginx.pid;\n\
         error_log {d}/nginx.log warn;\n\
         events {{ worker_connections 4096; }}\n\
         http {{\n\
           access_log off;\n\
           sendfile on;\n\
           tcp_nopush on;\n\
           keepalive_requests 100000;\n\
           keepalive_timeout 120s;\n\
           default_type application/octet-stream;\n\
           client_body_temp_path {d}/nginx-body;\n\
           open_file_cache max=10000 inactive=120s;\n\
           open_file_cache_valid 120s;\n\
           open_file_cache_errors on;\n\
           ssl_certificate {d}/cert.pem;\n\
           ssl_certificate_key {d}/key.pem;\n\
           ssl_protocols TLSv1.3;\n\
           server {{\n\
             listen {addr};\n\
             listen {tls} ssl http2;\n\
             root {d}/www;\n\
           }}\n\
         }}\n"
    );
    let config_path = dir.join("nginx.conf");
    std::fs::write(&config_path, config)?;
    // nginx's workers drop root for `nobody`: let it read the tree (the key stays private).
    set_mode(dir, 0o755, false)?;
    set_mode(&dir.join("www"), 0o755, true)?;
    let log = dir.join("nginx.log");
    let child = Child::spawn(
        Command::new("taskset")
            .args(["-c", SERVER_CORE, "nginx", "-p"])
            .arg(dir)
            .arg("-c")
            .arg(&config_path)
            .arg("-e")
            .arg(&log)
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .context("spawn nginx (scripts/install-deps.sh bench installs nginx-light)")?;
    let mut server = Server { child };
    listening(&mut server, addr, &log).await?;
    let nginx = Nginx { server, addr, tls };
    // The worker is forked after the master binds: wait until it is there.
    let deadline = Instant::now() + Duration::from_secs(10);
    while nginx.pids().is_err() {
        if Instant::now() > deadline {
            bail!("nginx started no worker");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    Ok(nginx)
}

/// Waits until `addr` accepts connections, failing early when the server exits.
async fn listening(server: &mut Server, addr: SocketAddr, log: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if tokio::net::TcpStream::connect(addr).await.is_ok() {
            return Ok(());
        }
        let exited = server.child.0.try_wait()?;
        if exited.is_some() || Instant::now() > deadline {
            let log = std::fs::read_to_string(log).unwrap_or_default();
            bail!("server at {addr} did not start ({exited:?}):\n{log}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Publishes `input` over and over in real time to room `room`, for as long as the returned
/// process lives: the live stream the edge ingests and packages while it is measured.
pub fn publish_live(input: &Path, srt: SocketAddr, room: &str) -> Result<Child> {
    let url = format!("srt://{srt}?streamid=#!::r=live/{room},m=publish");
    Child::spawn(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-nostdin"])
            .args(["-stream_loop", "-1", "-re", "-i"])
            .arg(input)
            .args(["-c", "copy", "-f", "mpegts", &url]),
    )
    .context("spawn ffmpeg")
}

/// Publishes `input` in real time over SRT and waits until ffmpeg is done.
pub async fn publish(input: &Path, srt: SocketAddr) -> Result<()> {
    // linger: ffmpeg waits for its last packets to be delivered before it closes.
    let url = format!("srt://{srt}?streamid=#!::r=live/{ROOM},m=publish&linger=2");
    let mut push = Child::spawn(
        Command::new("ffmpeg")
            .args(["-hide_banner", "-loglevel", "error", "-re", "-i"])
            .arg(input)
            .args(["-c", "copy", "-f", "mpegts", &url]),
    )
    .context("spawn ffmpeg")?;
    let status = tokio::task::spawn_blocking(move || push.wait()).await??;
    if !status.success() {
        bail!("ffmpeg push failed: {status}");
    }
    Ok(())
}

/// Pins every thread of this process to `core` (threads started later inherit it).
pub fn pin_self(core: &str) -> Result<()> {
    let status = Command::new("taskset")
        .args(["-a", "-p", "-c", core, &std::process::id().to_string()])
        .stdout(Stdio::null())
        .status()?;
    if !status.success() {
        bail!("taskset -p failed: {status}");
    }
    Ok(())
}

/// Processes whose parent is `pid`.
fn children_of(pid: u32) -> Result<Vec<u32>> {
    let mut children = Vec::new();
    for entry in std::fs::read_dir("/proc")? {
        let Some(child) = entry?.file_name().to_str().and_then(|n| n.parse().ok()) else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{child}/stat")) else {
            continue;
        };
        // Fields after the command name: state, ppid, ...
        let ppid = stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok());
        if ppid == Some(pid) {
            children.push(child);
        }
    }
    Ok(children)
}

/// utime + stime of `pids` (every thread of each), in clock ticks.
pub fn cpu_ticks(pids: &[u32]) -> Result<u64> {
    let mut sum = 0;
    for pid in pids {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .with_context(|| format!("read /proc/{pid}/stat"))?;
        let (_, rest) = stat.rsplit_once(')').context("stat has a command name")?;
        let fields: Vec<&str> = rest.split_whitespace().collect();
        // utime and stime are fields 14 and 15; `rest` starts at field 3.
        for i in [11, 12] {
            sum += fields
                .get(i)
                .and_then(|f| f.parse::<u64>().ok())
                .context("stat has utime and stime")?;
        }
    }
    Ok(sum)
}

pub fn clock_ticks_per_second() -> Result<f64> {
    let out = Command::new("getconf").arg("CLK_TCK").output()?;
    Ok(String::from_utf8_lossy(&out.stdout).trim().parse()?)
}

/// Sets `mode` on `dir` and, when `recursive`, on every directory under it (files get `mode`
/// without execute bits).
fn set_mode(dir: &Path, mode: u32, recursive: bool) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))?;
    if !recursive {
        return Ok(());
    }
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            set_mode(&entry.path(), mode, true)?;
        } else {
            let perms = std::fs::Permissions::from_mode(mode & 0o666);
            std::fs::set_permissions(entry.path(), perms)?;
        }
    }
    Ok(())
}
