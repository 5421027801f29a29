//! `daihuo-edge`: viewers' HLS over HTTP/3 and HTTPS, SRT ingest, and (with no upstream
//! configured) the origin in-process: a working single box with no config file at all.

fn main() -> std::process::ExitCode {
    daemon::cli::main::<edge_node::Edge>()
}
