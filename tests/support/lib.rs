//! Helpers for the workspace's end-to-end tests and benchmarks: an HTTP/3 client (quinn + h3),
//! real peers as child processes (ffmpeg with libsrt, srt-live-transmit, curl), and small
//! LL-HLS playlist readers. Nothing here mocks the system under test.

pub mod h3client;
pub mod peers;
pub mod playlist;

pub use h3client::H3Client;
pub use peers::{ffmpeg_available, Child};
