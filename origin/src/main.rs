//! `daihuo-origin`: SRT ingest, packaging and the origin HTTP API for edges.

use std::process::ExitCode;
use std::time::Duration;

use origin::cli::{self, Command};

const GRACE: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let config = match cli::parse_args(std::env::args().skip(1)) {
        Ok(Command::Version) => {
            println!("daihuo-origin {}", env!("CARGO_PKG_VERSION"));
            return ExitCode::SUCCESS;
        }
        Ok(Command::Help) => {
            print!("{}", cli::usage("daihuo-origin"));
            return ExitCode::SUCCESS;
        }
        Ok(Command::Check { config }) => {
            return match conf::OriginConfig::load(&config) {
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
        Ok(Command::Run { config: None }) => conf::OriginConfig::default(),
        Ok(Command::Run { config: Some(path) }) => match conf::OriginConfig::load(&path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
        },
        Err(e) => {
            eprint!("daihuo-origin: {e}\n{}", cli::usage("daihuo-origin"));
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
        let node = match origin::Node::start(&config).await {
            Ok(n) => n,
            Err(e) => {
                tracing::error!("cannot start: {e}");
                return ExitCode::FAILURE;
            }
        };
        tracing::info!(srt = %node.srt_addr, http = %node.http_addr, admin = %node.admin_addr, "daihuo-origin ready");
        cli::terminated().await;
        tracing::info!("draining");
        node.shutdown(GRACE).await;
        ExitCode::SUCCESS
    })
}
