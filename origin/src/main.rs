//! `daihuo-origin`: SRT ingest, packaging and the origin API for edges.

fn main() -> std::process::ExitCode {
    daemon::cli::main::<origin::Node>()
}
