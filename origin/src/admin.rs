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
    /// The event journal, read with `GET /events?after=OFFSET` (long poll), where this
    /// process has one.
    pub events: Option<Arc<crate::events::Intake>>,
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
            "/events" => match &self.events {
                Some(events) => journal(events, req.uri().query().unwrap_or("")).await,
                None => text(StatusCode::NOT_FOUND, "no event journal here\n"),
            },
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

/// `GET /events?after=OFFSET`: journal lines after OFFSET (all without it), one JSON object a
/// line; waits for new ones when there are none yet (long poll), then answers, maybe empty.
async fn journal(events: &crate::events::Intake, query: &str) -> Response<Bytes> {
    let mut after = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("after", v)) => match v.parse::<u64>() {
                Ok(n) => after = Some(n),
                Err(_) => return text(StatusCode::BAD_REQUEST, "after must be an offset\n"),
            },
            _ => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("unknown parameter {pair:?}\n"),
                )
            }
        }
    }
    match events.read(after).await {
        Ok(lines) => {
            let mut body = lines.join("\n");
            if !body.is_empty() {
                body.push('\n');
            }
            let mut res = text(StatusCode::OK, body);
            res.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/x-ndjson"),
            );
            res
        }
        Err(e) => text(StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")),
    }
}
