//! `daihuo-edge`: viewers' HLS over HTTP/3 and HTTPS, SRT ingest, and (with no upstream
//! configured) the origin in-process: a working single box with no config file at all.

use std::process::ExitCode;
use std::time::Duration;

use origin::cli::{self, Command};

const GRACE: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let config = match cli::parse_args(std::env::args().skip(1)) {
        Ok(Command::Version) => {
            println!("daihuo-edge {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Ok(Command::Help) => {
            print!("{}", cli::usage("daihuo-edge"));
            return ExitCode::SUCCESS;
        }
        Ok(Command::Check { config }) => {
            return match conf::EdgeConfig::load(&config) {
                Ok(_) => {
                    println!("{}: ok", config.display());
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("{e}");
                    ExitCode::FAILURE
                }
            };
        }
        Ok(Command::Run { config: None }) => conf::EdgeConfig::default(),
        Ok(Command::Run { config: Some(path) }) => match conf::EdgeConfig::load(&path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        },
        Err(e) => {
            eprint!("daihuo-edge: {e}\n{}", cli::usage("daihuo-edge"));
            return ExitCode::from(2);
        }
    };
    cli::init_logging(&config.log);
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async {
        let edge = match edge_node::Edge::start(&config).await {
            Ok(e) => e,
            Err(e) => {
                tracing::error!("cannot start: {e}");
                return ExitCode::FAILURE;
            }
        };
        let a = edge.addrs;
        tracing::info!(
            srt = %a.srt,
            https = ?a.https,
            http3 = ?a.http3,
            http = ?a.http,
            admin = %a.admin,
            "daihuo-edge ready"
        );
        cli::terminated().await;
        tracing::info!("draining");
        edge.shutdown(GRACE).await;
        ExitCode::SUCCESS
    })
}
