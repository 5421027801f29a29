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
use prometheus::IntCounterVec;

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
