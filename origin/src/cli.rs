//! What both daemons' `main` share: argument parsing, logging set-up, signals and drain.
//!
//! Arguments are few and fixed (`--config FILE`, `check --config FILE`, `--version`), so
//! they are parsed by hand rather than pulling an argument-parsing crate into the build.

use std::path::PathBuf;
use std::time::Duration;

use conf::{LogConfig, LogFormat};
use tokio::task::JoinSet;
use tracing::warn;

/// What the command line asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Run the daemon, with this config file (or the built-in defaults).
    Run {
        config: Option<PathBuf>,
    },
    /// Validate the config file, print every error, exit non-zero on any.
    Check {
        config: PathBuf,
    },
    Version,
    Help,
}

/// Parses `args` (without the program name).
pub fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Command, String> {
    let mut args = args.into_iter();
    let mut check = false;
    let mut config = None;
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "check" if !check && config.is_none() => check = true,
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
        (true, Some(config)) => Ok(Command::Check { config }),
        (true, None) => Err("check needs --config FILE".into()),
        (false, config) => Ok(Command::Run { config }),
    }
}

/// Usage text for `--help` and argument errors.
pub fn usage(binary: &str) -> String {
    format!(
        "usage: {binary} [--config FILE]\n       {binary} check --config FILE\n       {binary} --version\n"
    )
}

/// Installs the global `tracing` subscriber. `RUST_LOG` overrides `log.level`.
pub fn init_logging(log: &LogConfig) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .or_else(|_| tracing_subscriber::EnvFilter::try_new(&log.level))
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false);
    // A second call (tests start several nodes in one process) keeps the first subscriber.
    let _ = match log.format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().try_init(),
    };
}

/// Resolves when the process is asked to stop (SIGTERM or SIGINT).
pub async fn terminated() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Waits for `tasks` to finish for at most `grace`, then aborts what is left.
pub async fn drain(tasks: &mut JoinSet<()>, grace: Duration) {
    let all = async { while tasks.join_next().await.is_some() {} };
    if tokio::time::timeout(grace, all).await.is_err() {
        warn!(left = tasks.len(), "grace period over, aborting the rest");
        tasks.abort_all();
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
                config: "x.toml".into()
            })
        );
        assert_eq!(parse(&["--version"]), Ok(Command::Version));
        assert!(parse(&["check"]).is_err());
        assert!(parse(&["--config"]).is_err());
        assert!(parse(&["--bogus"]).is_err());
    }
}
