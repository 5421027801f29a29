//! What both daemons' `main` share: argument parsing, logging set-up, the signal loop
//! (SIGHUP reloads, SIGTERM drains) and drain. [`main`] is the whole of both binaries' `main`.
//!
//! Arguments are few and fixed (`--config FILE`, `check --config FILE`, `--version`), so
//! they are parsed by hand rather than pulling an argument-parsing crate into the build.
//!
//! Reload is a pipeline: SIGHUP → [`Signal::Reload`] → the file is read, parsed and validated
//! → the daemon applies what can change live ([`Daemon::reload`]), the configuration names what
//! needs a restart (`conf::RestartKeys`); an invalid file changes nothing, says why ([`ReloadError`]) and counts
//! `daihuo_reloads_total{result="error"}`.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use conf::{DaemonConfig, LogConfig, LogFormat, RestartKeys};
use tracing::{error, info, warn};
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{reload, EnvFilter, Registry};

use crate::metrics::Metrics;
use crate::notify;

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run the daemon, with this config file (or the built-in defaults).
    Run {
        config: Option<PathBuf>,
    },
    /// Validate the config file, print every error, exit non-zero on any; with `connect`,
    /// then try each peer it names (the edge's origins) once and say why one fails.
    Check {
        config: PathBuf,
        connect: bool,
    },
    Version,
    Help,
}

/// Parses `args` (without the program name).
pub fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut args = args.into_iter();
    let mut check = false;
    let mut connect = false;
    let mut config = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "check" if !check && config.is_none() => check = true,
            "--connect" if check => connect = true,
            "--config" | "-c" => {
                let path = args.next().ok_or("--config needs a file")?;
                config = Some(PathBuf::from(path));
            }
            s if s.starts_with("--config=") => {
                config = Some(PathBuf::from(&s["--config=".len()..]))
            }
            "--version" | "-V" => return Ok(Command::Version),
            "--help" | "-h" => return Ok(Command::Help),
            other => return Err(format!("unexpected argument {other:?}")),
        }
    }
    match (check, config) {
        (true, Some(config)) => Ok(Command::Check { config, connect }),
        (true, None) => Err("check needs --config FILE".into()),
        (false, config) => Ok(Command::Run { config }),
    }
}

/// Usage text for `--help` and argument errors.
pub fn usage(binary: &str) -> String {
    format!(
        "usage: {binary} [--config FILE]\n       {binary} check --config FILE [--connect]\n       {binary} --version\n\n\
         check validates the file and prints every problem with its key path; --connect then\n\
         tries each upstream origin once (TLS, HTTP, /healthz) and prints why one fails.\n"
    )
}

/// Changes the log filter of the running process (`log.level` on reload).
#[derive(Clone)]
pub struct LogControl {
    filter: Option<reload::Handle<EnvFilter, Registry>>,
}

impl LogControl {
    /// Parses `level` (a `tracing` filter) for [`LogControl::apply`].
    pub fn prepare(&self, level: &str) -> Result<EnvFilter, ReloadError> {
        EnvFilter::try_new(level).map_err(|e| ReloadError::LogLevel {
            level: level.to_string(),
            reason: e.to_string(),
        })
    }

    /// Uses `filter` from now on, unless `RUST_LOG` set the filter at start.
    pub fn apply(&self, filter: EnvFilter) {
        let Some(handle) = &self.filter else {
            return;
        };
        if std::env::var_os("RUST_LOG").is_some() {
            return;
        }
        if let Err(e) = handle.reload(filter) {
            warn!("log.level: {e}");
        }
    }
}

/// Installs the global `tracing` subscriber. `RUST_LOG` overrides `log.level`.
pub fn init_logging(log: &LogConfig) -> LogControl {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let (filter, handle) = reload::Layer::new(filter);
    let registry = tracing_subscriber::registry().with(filter);
    // A second call (tests start several nodes in one process) keeps the first subscriber.
    let installed = match log.format {
        LogFormat::Text => registry.with(fmt_layer().with_target(false)).try_init(),
        LogFormat::Json => registry
            .with(fmt_layer().with_target(false).json())
            .try_init(),
    };
    LogControl {
        filter: installed.is_ok().then_some(handle),
    }
}

/// Log lines go to stderr (the journal under systemd), leaving stdout to command output;
/// colored only on a terminal, so the journal and log files get plain text.
fn fmt_layer<S>() -> tracing_subscriber::fmt::Layer<
    S,
    tracing_subscriber::fmt::format::DefaultFields,
    tracing_subscriber::fmt::format::Format,
    fn() -> std::io::Stderr,
> {
    use std::io::IsTerminal;
    tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr as fn() -> std::io::Stderr)
        .with_ansi(std::io::stderr().is_terminal())
}

/// What the process was asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signal {
    /// SIGHUP: re-read the configuration.
    Reload,
    /// SIGTERM or SIGINT: drain and exit.
    Stop,
}

/// The process's signals as [`Signal`]s.
pub struct Signals {
    hup: tokio::signal::unix::Signal,
    term: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installs the handlers (from then on SIGHUP and SIGTERM no longer kill the process).
    pub fn new() -> std::io::Result<Self> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(Self {
            hup: signal(SignalKind::hangup())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    /// The next signal.
    pub async fn next(&mut self) -> Signal {
        tokio::select! {
            _ = self.hup.recv() => Signal::Reload,
            _ = self.term.recv() => Signal::Stop,
            _ = tokio::signal::ctrl_c() => Signal::Stop,
        }
    }
}

/// Why a reload was refused; the running configuration is unchanged.
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    /// The file could not be read, parsed or validated.
    #[error(transparent)]
    Config(#[from] conf::ConfError),
    /// `log.level` is not a valid filter.
    #[error("log.level {level:?}: {reason}")]
    LogLevel { level: String, reason: String },
    /// The configured certificate or key cannot be used.
    #[error("certificate: {0}")]
    Certificate(#[from] crate::tls::TlsError),
    /// A setting the daemon tried before applying (the ladder's encoders) failed.
    #[error("{key}: {reason}")]
    Setting { key: &'static str, reason: String },
}

/// A daemon [`main`] can run: started from a config, reloaded with a new one, drained.
pub trait Daemon: Sized + Send + Sync + 'static {
    type Config: DaemonConfig;
    /// Binary name, for usage text and logs.
    const NAME: &'static str;

    /// Binds every listener and starts serving; ready when it returns.
    fn start(config: &Self::Config) -> impl Future<Output = anyhow::Result<Self>> + Send;

    /// One line saying where it listens (logged and sent to systemd as STATUS).
    fn describe(&self) -> String;

    /// The metrics registry (reload results are counted there).
    fn metrics(&self) -> &Metrics;

    /// Applies what can change live from `next` (replacing `current`). An error leaves the
    /// running configuration as it was. What needs a restart is the configuration's to say
    /// (`conf::RestartKeys`).
    fn reload(
        &self,
        current: &Self::Config,
        next: &Self::Config,
        log: &LogControl,
    ) -> impl Future<Output = Result<(), ReloadError>> + Send;

    /// Readiness turns false (`/readyz` 503) while everything keeps serving: the start of a
    /// drain, so balancers stop sending new clients before listeners close.
    fn unready(&self);

    /// Drains within `grace` and stops.
    fn shutdown(self, grace: Duration) -> impl Future<Output = ()> + Send;

    /// `check --connect`: tries each peer `config` names once; a line per peer, with what
    /// worked or why it failed.
    fn check_peers(
        _config: &Self::Config,
    ) -> impl Future<Output = Vec<(String, Result<String, String>)>> + Send {
        async { Vec::new() }
    }
}

/// `check --config FILE [--connect]`.
fn check<D: Daemon>(path: &Path, connect: bool) -> ExitCode {
    let config = match D::Config::load(path) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::FAILURE;
        }
    };
    println!("{}: ok", path.display());
    if !connect {
        return ExitCode::SUCCESS;
    }
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let results = runtime.block_on(D::check_peers(&config));
    if results.is_empty() {
        println!("no upstream peers to connect to");
    }
    let mut failed = false;
    for (peer, result) in results {
        match result {
            Ok(what) => println!("{peer}: {what}"),
            Err(why) => {
                failed = true;
                println!("{peer}: FAILED: {why}");
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// A whole daemon `main`: arguments, `check`, logging, start, the signal loop, drain.
pub fn main<D: Daemon>() -> ExitCode {
    let (config, path) = match parse_args(std::env::args().skip(1)) {
        Ok(Command::Version) => {
            println!("{} {}", D::NAME, env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Ok(Command::Help) => {
            print!("{}", usage(D::NAME));
            return ExitCode::SUCCESS;
        }
        Ok(Command::Check { config, connect }) => return check::<D>(&config, connect),
        Ok(Command::Run { config: None }) => (D::Config::default(), None),
        Ok(Command::Run { config: Some(path) }) => match D::Config::load(&path) {
            Ok(c) => (c, Some(path)),
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        },
        Err(e) => {
            eprint!("{}: {e}\n{}", D::NAME, usage(D::NAME));
            return ExitCode::from(2);
        }
    };
    let log = init_logging(config.log());
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run::<D>(config, path, log))
}

async fn run<D: Daemon>(mut config: D::Config, path: Option<PathBuf>, log: LogControl) -> ExitCode {
    let mut signals = match Signals::new() {
        Ok(s) => s,
        Err(e) => {
            error!("cannot install signal handlers: {e}");
            return ExitCode::FAILURE;
        }
    };
    let daemon = match D::start(&config).await {
        Ok(d) => d,
        Err(e) => {
            error!("cannot start: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    let status = daemon.describe();
    daemon.metrics().set_config(&config.fingerprint());
    info!("{} ready: {status}", D::NAME);
    notify::ready(&status);
    let watchdog = tokio::spawn(notify::watchdog());
    while signals.next().await == Signal::Reload {
        notify::reloading();
        if let Some(next) = reload::<D>(&daemon, &config, path.as_deref(), &log).await {
            config = next;
        }
        notify::ready(&status);
    }
    notify::stopping();
    // Lame duck first: readiness false while everything still serves, so a balancer
    // stops sending new clients before the listeners close. A second signal skips it.
    daemon.unready();
    let delay = config.drain_delay();
    if !delay.is_zero() {
        info!(
            audit = "drain",
            delay_ms = delay.as_millis() as u64,
            "not ready; serving on for drain_delay_ms before draining"
        );
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = signals.next() => info!("second signal: draining now"),
        }
    }
    info!(audit = "drain", "draining");
    daemon.shutdown(config.shutdown_grace()).await;
    watchdog.abort();
    info!("stopped");
    ExitCode::SUCCESS
}

/// One reload; the new configuration when it was applied.
async fn reload<D: Daemon>(
    daemon: &D,
    current: &D::Config,
    path: Option<&Path>,
    log: &LogControl,
) -> Option<D::Config> {
    let metrics = daemon.metrics();
    let Some(path) = path else {
        warn!(audit = "reload", "reload ignored: started without --config");
        metrics.reload(false);
        return None;
    };
    let result = match D::Config::load(path) {
        Ok(next) => daemon.reload(current, &next, log).await.map(|()| next),
        Err(e) => Err(ReloadError::from(e)),
    };
    match result {
        Ok(next) => {
            let restart = current.needs_restart(&next);
            if restart.is_empty() {
                info!(audit = "reload", file = %path.display(), "configuration reloaded");
            } else {
                warn!(
                    audit = "reload",
                    file = %path.display(),
                    needs_restart = restart.join(", "),
                    "configuration reloaded; these changes take effect at the next restart"
                );
            }
            metrics.reload(true);
            metrics.set_config(&next.fingerprint());
            Some(next)
        }
        Err(e) => {
            error!(
                audit = "reload",
                "reload refused, configuration unchanged: {e}"
            );
            metrics.reload(false);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Command, String> {
        parse_args(args.iter().map(|s| s.to_string()))
    }

    #[test]
    fn commands() {
        assert_eq!(parse(&[]), Ok(Command::Run { config: None }));
        assert_eq!(
            parse(&["--config", "/etc/daihuo/edge.toml"]),
            Ok(Command::Run {
                config: Some("/etc/daihuo/edge.toml".into())
            })
        );
        assert_eq!(
            parse(&["check", "--config", "x.toml"]),
            Ok(Command::Check {
                config: "x.toml".into(),
                connect: false,
            })
        );
        assert_eq!(
            parse(&["check", "--config", "x.toml", "--connect"]),
            Ok(Command::Check {
                config: "x.toml".into(),
                connect: true,
            })
        );
        assert!(parse(&["--connect"]).is_err());
        assert_eq!(parse(&["--version"]), Ok(Command::Version));
        assert!(parse(&["check"]).is_err());
        assert!(parse(&["--config"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
    }
}
