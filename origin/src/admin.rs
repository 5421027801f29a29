//! The internal admin listener: `/metrics` (Prometheus text), `/healthz` (the process
//! answers) and `/readyz` (every listener is bound and the node can serve: for an edge with
//! origins, at least one origin answers).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};

use crate::metrics::Metrics;
use crate::serve::{text, Handler, Peer};

/// Whether the node can serve, beyond its own listeners (the edge: an origin is reachable).
pub type ReadyCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// Answers the admin endpoints.
pub struct Admin {
    pub metrics: Metrics,
    /// Set once every listener is bound; cleared when draining.
    pub ready: Arc<AtomicBool>,
    /// Checked on every `/readyz` once `ready` is set.
    pub check: Option<ReadyCheck>,
    /// Appended to `/readyz`'s answer (the scale hint).
    pub scale: Option<Arc<crate::scale::Scale>>,
}

impl Admin {
    fn readiness(&self) -> Result<(), String> {
        if !self.ready.load(Ordering::Acquire) {
            return Err("not ready: starting or draining".into());
        }
        self.check.as_ref().map_or(Ok(()), |check| check())
    }
}

impl Handler for Admin {
    async fn handle(&self, req: Request<Bytes>, _peer: Peer) -> Response<Bytes> {
        match req.uri().path() {
            "/metrics" => {
                let mut res = text(StatusCode::OK, self.metrics.render());
                res.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
                );
                res
            }
            "/healthz" => text(StatusCode::OK, "ok\n"),
            "/readyz" => {
                let detail = self
                    .scale
                    .as_ref()
                    .map(|s| format!("{}\n", s.describe()))
                    .unwrap_or_default();
                match self.readiness() {
                    Ok(()) => text(StatusCode::OK, format!("ready\n{detail}")),
                    Err(why) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{why}\n{detail}")),
                }
            }
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}
