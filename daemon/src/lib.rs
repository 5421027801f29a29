//! What every daihuo process is made of, whichever daemon it is; this crate knows no media,
//! rooms or events.
//!
//! Where to start: [`cli::main`] is the whole of a daemon's `main` (arguments, `check`,
//! logging, the signal loop, reload and drain) for anything implementing [`cli::Daemon`];
//! a daemon's `start` builds a [`Lifecycle`] (readiness, [`Drain`], tasks, the admin
//! listener). Listeners: [`serve`] (HTTP/1.1 and HTTP/2 on hyper, plain or TLS, with
//! [`serve::Limits`] and deadlines) and [`h3`] (HTTP/3 on quinn) adapt requests into one
//! [`serve::Handler`]; [`net`] binds them (dual-stack by default); [`clients`] says who a client is behind balancers and proxies;
//! [`tls`] holds the served certificate (reloadable) and trust for clients; [`admin`] serves
//! `/metrics`, `/healthz`, `/readyz`; [`metrics`] is the process's registry; [`scale`] the
//! scale hint; [`notify`] talks to systemd.

pub mod admin;
pub mod cli;
pub mod clients;
pub mod drain;
pub mod h3;
pub mod lifecycle;
pub mod metrics;
pub mod net;
pub mod notify;
pub mod scale;
pub mod serve;
pub mod tls;

pub use drain::Drain;
pub use lifecycle::Lifecycle;
pub use metrics::Metrics;
pub use tls::{Certificates, Identity, TlsError};
