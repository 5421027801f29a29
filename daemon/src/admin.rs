//! The internal admin listener: `/metrics` (Prometheus text), `/healthz` (the process
//! answers) and `/readyz` (every listener is bound and the node can serve: for an edge with
//! origins, at least one origin answers), and the daemon's own paths ([`Extension`]: the
//! origin's event journal).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{Request, Response, StatusCode};

use crate::metrics::Metrics;
use crate::serve::{text, Handler, Peer};

/// Whether the node can serve, beyond its own listeners (the edge: an origin is reachable).
pub type ReadyCheck = Arc<dyn Fn() -> Result<(), String> + Send + Sync>;

/// More paths on the admin listener: the answer, or `None` for 404.
pub type Extension =
    Arc<dyn Fn(Request<Bytes>) -> BoxFuture<'static, Option<Response<Bytes>>> + Send + Sync>;

/// Answers the admin endpoints.
pub struct Admin {
    metrics: Metrics,
    /// Set once every listener is bound; cleared when draining.
    ready: Arc<AtomicBool>,
    /// Checked on every `/readyz` once `ready` is set.
    check: Option<ReadyCheck>,
    /// Appended to `/readyz`'s answer (the scale hint).
    scale: Option<Arc<crate::scale::Scale>>,
    /// Paths the daemon adds.
    extension: Option<Extension>,
}

impl Admin {
    /// `/metrics` from `metrics`, `/readyz` from `ready` (see [`crate::Lifecycle::ready_flag`]).
    pub fn new(metrics: Metrics, ready: Arc<AtomicBool>) -> Self {
        Self {
            metrics,
            ready,
            check: None,
            scale: None,
            extension: None,
        }
    }

    /// `/readyz` also asks `check`.
    pub fn check(mut self, check: ReadyCheck) -> Self {
        self.check = Some(check);
        self
    }

    /// `/readyz` also says the scale hint.
    pub fn scale(mut self, scale: Arc<crate::scale::Scale>) -> Self {
        self.scale = Some(scale);
        self
    }

    /// Paths besides the three are asked of `extension`.
    pub fn extension(mut self, extension: Extension) -> Self {
        self.extension = Some(extension);
        self
    }

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
            _ => match &self.extension {
                Some(extension) => match extension(req).await {
                    Some(res) => res,
                    None => text(StatusCode::NOT_FOUND, "not found\n"),
                },
                None => text(StatusCode::NOT_FOUND, "not found\n"),
            },
        }
    }
}
