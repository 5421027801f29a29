//! The origin's playback API: routes a parsed request to the [`Store`] and shapes the answer
//! (content type, caching headers, status). The edge's viewer router calls the same functions
//! for its embedded origin, with its cache in front of the immutable objects.

use std::sync::Arc;

use bytes::Bytes;
use http::{header, HeaderValue, Method, Request, Response, StatusCode};

use crate::error::ApiError;
use crate::route::{self, Route};
use crate::store::{Object, Store};
use daemon::serve::{text, Handler, Peer};

/// What kind of body an answer carries; decides content type and cache lifetime.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Playlist,
    /// The current init segment by its fixed name (`init.mp4`): it changes on re-publish.
    Init,
    /// An init segment by its own name (`init-ID.mp4`), which never changes.
    NamedInit,
    Media,
    /// A JSON answer (`200 OK`).
    Json,
    /// A JSON answer to a POST whose effect is queued (`202 Accepted`).
    Accepted,
}

impl Kind {
    pub fn of(object: Object) -> Self {
        match object {
            Object::Init { id: None } => Kind::Init,
            Object::Init { id: Some(_) } => Kind::NamedInit,
            _ => Kind::Media,
        }
    }

    fn content_type(self) -> &'static str {
        match self {
            Kind::Playlist => "application/vnd.apple.mpegurl",
            Kind::Init | Kind::NamedInit => "video/mp4",
            Kind::Media => "video/iso.segment",
            Kind::Json | Kind::Accepted => "application/json",
        }
    }

    /// Playlists change every part; `init.mp4` changes on re-publish; named init segments,
    /// parts and segments never change (names are digests, numbers are never reused).
    fn cache_control(self) -> &'static str {
        match self {
            Kind::Playlist => "no-cache",
            Kind::Init => "max-age=1",
            Kind::NamedInit | Kind::Media => "public, max-age=300, immutable",
            Kind::Json | Kind::Accepted => "no-store",
        }
    }
}

/// Builds the response for a store answer.
pub fn respond(result: Result<(Bytes, Kind), ApiError>) -> Response<Bytes> {
    match result {
        Ok((body, kind)) => {
            let mut res = Response::new(body);
            if kind == Kind::Accepted {
                *res.status_mut() = StatusCode::ACCEPTED;
            }
            let h = res.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(kind.content_type()),
            );
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static(kind.cache_control()),
            );
            h.insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
            res
        }
        Err(e) => {
            let status =
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            let mut res = text(status, format!("{e}\n"));
            res.headers_mut().insert(
                header::ACCESS_CONTROL_ALLOW_ORIGIN,
                HeaderValue::from_static("*"),
            );
            if status == StatusCode::SERVICE_UNAVAILABLE {
                res.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            }
            if status == StatusCode::UNAUTHORIZED {
                res.headers_mut()
                    .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            }
            res
        }
    }
}

/// Answers a playlist route (multivariant, or media with its LL-HLS request) from the store.
pub async fn playlist(store: &Store, route: &Route) -> Result<(Bytes, Kind), ApiError> {
    let text = match route {
        Route::Multivariant { room } => Bytes::from(store.multivariant(room).await?),
        Route::MediaPlaylist {
            room,
            rendition,
            blocking,
        } => store.media_playlist(room, rendition, blocking).await?,
        _ => return Err(ApiError::NotFound("not a playlist".into())),
    };
    Ok((text, Kind::Playlist))
}

/// Parses the request (path and LL-HLS query) and checks its method: the one parse of a
/// request, at the entrance, in both tiers. Viewer events take POST (posting) and GET (the
/// live feed); their WebSocket GET or CONNECT.
pub fn route_request<B>(req: &Request<B>) -> Result<Route, ApiError> {
    let route = route::parse_request(req.uri().path(), req.uri().query().unwrap_or("")).map_err(
        |e| match e {
            route::RouteError::Query(q) => ApiError::from(q),
            e => ApiError::NotFound(e.to_string()),
        },
    )?;
    let allowed = match route {
        Route::Events { .. } => req.method() == Method::POST || req.method() == Method::GET,
        // HTTP/1.1 upgrades a GET; HTTP/2 opens a WebSocket with CONNECT (RFC 8441).
        Route::Socket { .. } => req.method() == Method::GET || req.method() == Method::CONNECT,
        _ => req.method() == Method::GET || req.method() == Method::HEAD,
    };
    if !allowed {
        return Err(ApiError::MethodNotAllowed);
    }
    Ok(route)
}

/// The origin's HTTP API as a [`Handler`]: what remote edges pull from. Besides the playback
/// paths it answers `GET /healthz` (edges' light probe: the API is up).
pub struct Api {
    pub store: Arc<Store>,
    /// Where edges' relayed events go (`POST /events`).
    pub events: Arc<crate::events::Intake>,
    /// Edges' viewer counts (`POST /viewers`).
    pub audience: crate::audience::Audience,
    /// `daihuo_connections{transport}`.
    pub connections: prometheus::IntGaugeVec,
    /// `daihuo_listener_limited_total{action}`.
    pub limited: prometheus::IntCounterVec,
    /// `daihuo_quic_datagrams_total`, `daihuo_quic_io_calls_total`.
    pub udp: daemon::metrics::UdpIo,
}

impl Api {
    /// The API over `store` and `events`, counting into `metrics`' families.
    pub fn new(
        store: Arc<Store>,
        events: Arc<crate::events::Intake>,
        metrics: &crate::Metrics,
    ) -> Self {
        Self {
            store,
            events,
            audience: crate::audience::Audience::default(),
            connections: metrics.process.connections.clone(),
            limited: metrics.process.limited.clone(),
            udp: metrics.process.udp.clone(),
        }
    }
}

impl Handler for Api {
    async fn handle(&self, req: Request<Bytes>, _peer: Peer) -> Response<Bytes> {
        if req.uri().path() == "/healthz" {
            return text(StatusCode::OK, "ok\n");
        }
        if req.uri().path() == "/rooms" {
            // The live rooms, a JSON array of names: an edge's room list (`/`).
            let rooms = serde_json::to_vec(&self.store.live_rooms()).unwrap_or_default();
            return respond(Ok((Bytes::from(rooms), Kind::Json)));
        }
        if req.uri().path() == "/viewers" {
            if req.method() != Method::POST {
                return respond(Err(ApiError::MethodNotAllowed));
            }
            let now = std::time::Instant::now();
            let result = match self.audience.report(req.body(), now) {
                Ok(totals) => Ok((Bytes::from(totals), Kind::Json)),
                Err(e) => Err(ApiError::BadRequest(e.to_string())),
            };
            return respond(result);
        }
        if req.uri().path() == "/feed" {
            let from = match req.uri().query().unwrap_or("").strip_prefix("from=") {
                None => None,
                Some(n) => match n.parse::<u64>() {
                    Ok(n) => Some(n),
                    Err(_) => return respond(Err(ApiError::BadRequest("from=OFFSET".into()))),
                },
            };
            return respond(self.events.feed(from).await.map(|b| (b, Kind::Json)));
        }
        if req.uri().path() == "/events" {
            if req.method() != Method::POST {
                return respond(Err(ApiError::MethodNotAllowed));
            }
            let result = self.events.accept_body(req.body()).await.map(|done| {
                let body = format!(
                    "{{\"accepted\":{},\"duplicates\":{}}}\n",
                    done.accepted, done.duplicates
                );
                (Bytes::from(body), Kind::Json)
            });
            return respond(result);
        }
        let result = async {
            let route = route_request(&req)?;
            match &route {
                Route::Object {
                    room,
                    rendition,
                    object,
                } => {
                    let body = self.store.object(room, rendition, *object).await?;
                    Ok((body, Kind::of(*object)))
                }
                Route::Events { .. } | Route::Socket { .. } => Err(ApiError::NotFound(
                    "viewers post events to an edge, not to the origin".into(),
                )),
                _ => playlist(&self.store, &route).await,
            }
        }
        .await;
        // hyper leaves the body out of HEAD answers itself.
        respond(result)
    }

    fn connections(&self, transport: &str) -> Option<prometheus::IntGauge> {
        Some(self.connections.with_label_values(&[transport]))
    }

    fn udp_io(&self) -> Option<daemon::metrics::UdpIo> {
        Some(self.udp.clone())
    }

    fn limited(&self, action: &'static str) {
        self.limited.with_label_values(&[action]).inc();
    }
}
