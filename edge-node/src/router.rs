//! The viewer router: one set of routes for HTTP/1.1, HTTP/2 and HTTP/3.
//!
//! Transports adapt requests into [`Router::handle`]; routes, limits and metrics live here
//! once. Playlists are answered by the origin (blocking reloads wait there, woken by the
//! publish); init segments, parts and segments go through the coalescing [`ObjectCache`].

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response};
use origin::api::{self, Kind};
use origin::route::Route;
use origin::serve::{Handler, Peer};
use origin::{ApiError, Store};
use prometheus::{IntCounter, IntCounterVec, Opts};

use crate::cache::{Key, ObjectCache};

/// Answers viewers from the embedded origin through the cache.
pub struct Router {
    pub store: Arc<Store>,
    pub cache: ObjectCache,
    /// `Alt-Svc` advertising HTTP/3, when it is served.
    pub alt_svc: Option<HeaderValue>,
    /// `daihuo_http_requests_total{proto, status}`.
    pub requests: IntCounterVec,
}

impl Router {
    /// A router over `store` with a cache of `cache_bytes`, registering its metric families
    /// in the origin's registry (one `/metrics` for the box).
    pub fn new(
        store: Arc<Store>,
        cache_bytes: u64,
        alt_svc: Option<HeaderValue>,
        metrics: &origin::Metrics,
    ) -> Self {
        let requests = IntCounterVec::new(
            Opts::new(
                "daihuo_http_requests_total",
                "Viewer requests by protocol and status.",
            ),
            &["proto", "status"],
        )
        .expect("static metric definition");
        let cache_requests = IntCounterVec::new(
            Opts::new(
                "daihuo_cache_requests_total",
                "Object cache lookups by result.",
            ),
            &["result"],
        )
        .expect("static metric definition");
        let fetches = IntCounter::new(
            "daihuo_upstream_fetches_total",
            "Objects fetched from the origin (one per object however many viewers ask at once).",
        )
        .expect("static metric definition");
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(cache_requests.clone()),
            Box::new(fetches.clone()),
        ] {
            // A second router on one registry would collide; log instead of failing start.
            if let Err(e) = metrics.registry.register(c) {
                tracing::warn!("metrics: {e}");
            }
        }
        Self {
            store,
            cache: ObjectCache::new(cache_bytes, cache_requests, fetches),
            alt_svc,
            requests,
        }
    }

    async fn answer(&self, req: &Request<Bytes>) -> Result<(Bytes, Kind), ApiError> {
        let route = api::route_request(req)?;
        match &route {
            Route::Object {
                room,
                rendition,
                object,
            } => {
                let key = Key {
                    room: room.clone(),
                    rendition: rendition.clone(),
                    object: *object,
                };
                let fetch = self.store.object(room, rendition, *object);
                let body = self.cache.get(key, fetch).await?;
                Ok((body, Kind::of(*object)))
            }
            Route::Events { .. } => Err(ApiError::NotFound(
                "viewer events are not served yet".into(),
            )),
            _ => api::playlist(&self.store, &route, req.uri().query().unwrap_or("")).await,
        }
    }
}

impl Handler for Router {
    async fn handle(&self, req: Request<Bytes>, peer: Peer) -> Response<Bytes> {
        let mut res = api::respond(self.answer(&req).await);
        if let Some(alt) = &self.alt_svc {
            res.headers_mut().insert(header::ALT_SVC, alt.clone());
        }
        self.requests
            .with_label_values(&[peer.proto.label(), res.status().as_str()])
            .inc();
        res
    }
}
