//! `daihuo-rehearsal`: see the library's documentation and `--help`.

use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    let args = rehearsal::Args::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("daihuo-rehearsal: {e}");
            return ExitCode::FAILURE;
        }
    };
    let (json, strict) = (args.json, args.strict);
    match runtime.block_on(rehearsal::run(args)) {
        Ok(report) => {
            if json {
                match serde_json::to_string_pretty(&report) {
                    Ok(text) => println!("{text}"),
                    Err(e) => {
                        eprintln!("daihuo-rehearsal: {e}");
                        return ExitCode::FAILURE;
                    }
                }
            } else {
                print!("{}", report.table());
            }
            let missed = report.sla.iter().any(|r| r.pass == Some(false));
            if strict && (missed || report.source_ended.is_some()) {
                return ExitCode::from(3);
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("daihuo-rehearsal: {e:#}");
            ExitCode::FAILURE
        }
    }
}
