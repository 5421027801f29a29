//! The internal admin listener: `/metrics` (Prometheus text), `/healthz` (the process
//! answers) and `/readyz` (every listener is bound and the node can serve).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode};

use crate::metrics::Metrics;
use crate::serve::{text, Handler, Peer};

/// Answers the admin endpoints.
pub struct Admin {
    pub metrics: Metrics,
    /// Set once every listener is bound; cleared when draining.
    pub ready: Arc<AtomicBool>,
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
            "/readyz" if self.ready.load(Ordering::Acquire) => text(StatusCode::OK, "ready\n"),
            "/readyz" => text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
            _ => text(StatusCode::NOT_FOUND, "not found\n"),
        }
    }
}
