//! The viewer router: one set of routes for HTTP/1.1, HTTP/2 and HTTP/3.
//!
//! Transports adapt requests into [`Router::handle`]; routes, limits and metrics live here
//! once. Where the media comes from is the [`Source`]: the embedded origin's store (single
//! box: playlists answered in-process, blocking reloads woken by the publish) or remote
//! origins through [`Pull`]. Init segments, parts and segments go through the coalescing
//! [`ObjectCache`] either way.

use std::sync::Arc;

use bytes::Bytes;
use daemon::serve::{Handler, Peer};
use http::{header, HeaderValue, Request, Response};
use origin::api::{self, Kind};
use origin::route::Route;
use origin::{ApiError, Store};
use prometheus::{IntCounterVec, IntGaugeVec, Opts};

use crate::cache::{Key, ObjectCache};
use crate::events::Events;
use crate::feed::Feed;
use crate::pull::Pull;
use crate::viewers::Viewers;

/// Where viewers' media comes from.
pub enum Source {
    /// The origin runs in this process (single box).
    Local(Arc<Store>),
    /// Remote origins.
    Upstream(Box<Pull>),
}

/// Answers viewers from the source through the cache.
pub struct Router {
    pub source: Source,
    pub cache: ObjectCache,
    /// `Alt-Svc` advertising HTTP/3, when it is served.
    pub alt_svc: Option<HeaderValue>,
    /// `daihuo_http_requests_total{proto, status}`.
    pub requests: IntCounterVec,
    /// `daihuo_connections{transport}`.
    connections: IntGaugeVec,
    /// `daihuo_listener_limited_total{action}`.
    limited: IntCounterVec,
    /// `daihuo_quic_datagrams_total`, `daihuo_quic_io_calls_total`.
    udp: daemon::metrics::UdpIo,
    /// Who watches what, for `daihuo_viewers`.
    viewers: Viewers,
    /// Viewer event intake.
    events: Arc<Events>,
    /// The live feed (server-sent events).
    feed: Arc<Feed>,
    /// Playback authorization; a reload stores new settings.
    pub playback: arc_swap::ArcSwap<conf::PlaybackConfig>,
    /// Listener limits for new connections; a reload stores new ones.
    pub limits: arc_swap::ArcSwap<daemon::serve::Limits>,
    /// Who clients are behind balancers and proxies (`[clients]`); a reload stores new ones.
    pub clients: arc_swap::ArcSwap<daemon::clients::Clients>,
}

/// The cookie carrying a playback token.
const TOKEN_COOKIE: &str = "daihuo_token";

impl Router {
    /// A router over `source` and `cache`, registering its metric family in the origin's
    /// registry (one `/metrics` for the box).
    pub fn new(
        source: Source,
        cache: ObjectCache,
        events: Arc<Events>,
        feed: Arc<Feed>,
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
        metrics.register(vec![Box::new(requests.clone())]);
        Self {
            source,
            cache,
            alt_svc,
            requests,
            connections: metrics.process.connections.clone(),
            limited: metrics.process.limited.clone(),
            udp: metrics.process.udp.clone(),
            viewers: Viewers::new(metrics),
            events,
            feed,
            playback: arc_swap::ArcSwap::from_pointee(conf::PlaybackConfig::default()),
            limits: arc_swap::ArcSwap::from_pointee(daemon::serve::Limits::default()),
            clients: arc_swap::ArcSwap::from_pointee(daemon::clients::Clients::default()),
        }
    }

    /// Takes the settings a reload may change: playback authorization, listener limits and
    /// who clients are behind balancers (new connections get them).
    pub fn apply(&self, config: &conf::EdgeConfig) {
        self.playback.store(Arc::new(config.playback.clone()));
        self.limits
            .store(Arc::new(daemon::serve::Limits::from(&config.limits)));
        self.clients
            .store(Arc::new(daemon::clients::Clients::from(&config.clients)));
    }

    /// `GET /live/ROOM/events`: server-sent events until the viewer leaves.
    fn live_feed(&self, room: &str) -> Response<Bytes> {
        let mut res = Response::new(Bytes::from_static(b": daihuo live feed\n\n"));
        res.extensions_mut()
            .insert(daemon::serve::Streamed::new(self.feed.subscribe(room)));
        let h = res.headers_mut();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("text/event-stream"),
        );
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        res
    }

    /// `/live/ROOM/ws`: the viewer's WebSocket, once its opening is checked. A page from
    /// another site may not use the viewer's playback cookie for it (browsers send cookies
    /// with any page's socket): with signed playback, such a page carries the token in the
    /// URL or is listed in `cors_origins`.
    fn socket(
        &self,
        req: &Request<Bytes>,
        room: &str,
        peer: &Peer,
        upgrade: Option<hyper::upgrade::OnUpgrade>,
        token_in_cookie: bool,
    ) -> Response<Bytes> {
        let playback = self.playback.load();
        if playback.signed
            && token_in_cookie
            && !crate::cors::own_or_listed_page(req, &playback.cors_origins)
        {
            return api::respond(Err(ApiError::Forbidden(
                "a page of another site opens this socket with the token in its URL, \
                 or is listed in playback.cors_origins"
                    .into(),
            )));
        }
        match crate::socket::handshake(req, upgrade) {
            Ok((res, upgrade)) => {
                // Browsers cannot set headers on a socket: the URL may carry the token.
                let token = bearer(req).or_else(|| {
                    req.uri()
                        .query()?
                        .split('&')
                        .find_map(|p| p.strip_prefix("user_token="))
                });
                let session = crate::socket::Session {
                    bearer: token.map(str::to_string),
                    room: room.to_string(),
                    events: self.events.clone(),
                    feed: self.feed.subscribe(room),
                    client: peer.limit_key,
                    open: daemon::serve::Open::new(Some(
                        self.connections.with_label_values(&["websocket"]),
                    )),
                };
                tokio::spawn(session.run(upgrade));
                res
            }
            Err(refused) => refused.response(),
        }
    }

    /// The rooms live now (this box's, or the origins').
    async fn live_rooms(&self) -> Vec<String> {
        match &self.source {
            Source::Local(store) => store.live_rooms(),
            Source::Upstream(pull) => pull.live_rooms().await,
        }
    }

    /// Viewers per room at this edge.
    pub fn viewer_counts(&self) -> std::collections::HashMap<String, u64> {
        self.viewers.counts()
    }

    /// Pushes rooms' viewer totals on their live feeds.
    pub fn push_viewers(&self, totals: &std::collections::HashMap<String, u64>) {
        for (room, count) in totals {
            self.feed.viewers(room, *count);
        }
    }

    /// Housekeeping (viewer expiries).
    pub async fn tick(&self) {
        self.viewers.tick().await;
    }

    async fn answer(
        &self,
        req: &Request<Bytes>,
        route: &Route,
        peer: &Peer,
    ) -> Result<(Bytes, Kind), ApiError> {
        if let Route::Events { room } = route {
            let posted = self
                .events
                .post(room, req.body(), peer.limit_key, bearer(req))
                .await?;
            let body = format!(
                "{{\"accepted\":{},\"shed\":{}}}\n",
                posted.accepted, posted.shed
            );
            return Ok((Bytes::from(body), Kind::Accepted));
        }
        // Boxed: a media object's future (the cache and the upstream fetch) is ~38 KB, and
        // inline it made every request's future that big, events included.
        let result = Box::pin(self.route(route)).await;
        // Counted on playlists, which every player reloads every part, not on each media
        // object (the cache-hit path stays lean); only streams that answered, so a viewer
        // cannot mint series with made-up names.
        if result.is_ok() && !matches!(route, Route::Object { .. }) {
            self.viewers.saw(route.room(), peer).await;
        }
        result
    }

    async fn route(&self, route: &Route) -> Result<(Bytes, Kind), ApiError> {
        match (route, &self.source) {
            (
                Route::Object {
                    room,
                    rendition,
                    object,
                },
                source,
            ) => {
                let key = Key {
                    room: room.clone(),
                    rendition: rendition.clone(),
                    object: *object,
                };
                let body = match source {
                    Source::Local(store) => {
                        let fetch = store.object(room, rendition, *object);
                        self.cache.get(key, fetch).await?
                    }
                    Source::Upstream(pull) => pull.object(key).await?,
                };
                // (Store and upstream errors become answers here: `ApiError::from`.)
                Ok((body, Kind::of(*object)))
            }
            (Route::Events { .. } | Route::RoomPage { .. } | Route::Socket { .. }, _) => {
                Err(ApiError::MethodNotAllowed)
            }
            (_, Source::Local(store)) => api::playlist(store, route).await,
            (_, Source::Upstream(pull)) => Ok((pull.playlist(route).await?, Kind::Playlist)),
        }
    }
}

impl Router {
    /// With signed playback on: the token of this request (query `token=` or the cookie),
    /// checked for the room of its `route`; `Ok(Some(grant))` when it came in the query.
    fn authorize(&self, req: &Request<Bytes>, route: &Route) -> Result<Option<Grant>, ApiError> {
        let playback = self.playback.load();
        if !playback.signed {
            return Ok(None);
        }
        let prefix = format!("/{}/{}/", origin::streamid::APP, route.room());
        let from_query = req
            .uri()
            .query()
            .unwrap_or("")
            .split('&')
            .find_map(|p| p.strip_prefix("token="));
        let from_cookie = req
            .headers()
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|c| c.trim().strip_prefix(TOKEN_COOKIE)?.strip_prefix('='));
        let token = from_query
            .or(from_cookie)
            .ok_or_else(|| ApiError::Forbidden("a signed playback token is required".into()))?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let expiry = origin::auth::check_play(&playback.secrets, &prefix, token, now)
            .map_err(|e| ApiError::Forbidden(format!("playback token: {e}")))?;
        if from_query.is_none() {
            return Ok(None);
        }
        let cookie = format!(
            "{TOKEN_COOKIE}={token}; Path={prefix}; Max-Age={}; HttpOnly; Secure; SameSite=None",
            expiry.saturating_sub(now)
        );
        Ok(HeaderValue::from_str(&cookie).ok().map(|cookie| Grant {
            query: format!("token={token}"),
            cookie,
        }))
    }
}

/// The token of the request's `Authorization: Bearer`.
fn bearer(req: &Request<Bytes>) -> Option<&str> {
    let value = req.headers().get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// A playback token that came in a request's query (and was checked).
struct Grant {
    /// `token=...`, for every URI of a playlist answer.
    query: String,
    /// The cookie that carries it for players that send cookies.
    cookie: HeaderValue,
}

impl Grant {
    /// `playlist` with the token on every URI it lists, so a player that sends no cookies
    /// carries it on every request.
    fn carry(&self, playlist: Bytes) -> Bytes {
        match std::str::from_utf8(&playlist) {
            Ok(text) => Bytes::from(codec::hls::query::carry(text, &self.query)),
            Err(_) => playlist,
        }
    }
}

impl Handler for Router {
    /// Parses the request once (path and LL-HLS query, [`api::route_request`]); what follows
    /// (authorization, the route, the answer) reads that route. A request that is not a
    /// playback request is answered without looking at tokens.
    async fn handle(&self, mut req: Request<Bytes>, peer: Peer) -> Response<Bytes> {
        let upgrade = req.extensions_mut().remove::<hyper::upgrade::OnUpgrade>();
        let res = match *req.method() {
            http::Method::OPTIONS => crate::cors::preflight(&req),
            _ => self.respond(&req, &peer, upgrade).await,
        };
        self.finish(res, &req, &peer)
    }

    fn connections(&self, transport: &str) -> Option<prometheus::IntGauge> {
        Some(self.connections.with_label_values(&[transport]))
    }

    fn udp_io(&self) -> Option<daemon::metrics::UdpIo> {
        Some(self.udp.clone())
    }

    fn clients(&self) -> Arc<daemon::clients::Clients> {
        self.clients.load_full()
    }

    fn limits(&self) -> daemon::serve::Limits {
        **self.limits.load()
    }

    fn limited(&self, action: &'static str) {
        self.limited.with_label_values(&[action]).inc();
    }
}

impl Router {
    async fn respond(
        &self,
        req: &Request<Bytes>,
        peer: &Peer,
        upgrade: Option<hyper::upgrade::OnUpgrade>,
    ) -> Response<Bytes> {
        let get = matches!(*req.method(), http::Method::GET | http::Method::HEAD);
        match req.uri().path() {
            "/" if get => return crate::pages::index(&self.live_rooms().await),
            path if get && path.starts_with("/assets/") => {
                if let Some(res) = crate::pages::asset(path) {
                    return res;
                }
            }
            _ => {}
        }
        let route = match api::route_request(req) {
            Ok(Route::RoomPage { room }) if get => return crate::pages::room(&room),
            Ok(route) => route,
            Err(e) => return api::respond(Err(e)),
        };
        let grant = match self.authorize(req, &route) {
            Ok(grant) => grant,
            Err(e) => return api::respond(Err(e)),
        };
        match (&route, req.method()) {
            (Route::Events { room }, &http::Method::GET) => return self.live_feed(room),
            (Route::Socket { room }, _) => {
                return self.socket(req, room, peer, upgrade, grant.is_none());
            }
            _ => {}
        }
        let answer = match (self.answer(req, &route, peer).await, &grant) {
            (Ok((playlist, Kind::Playlist)), Some(grant)) => {
                Ok((grant.carry(playlist), Kind::Playlist))
            }
            (answer, _) => answer,
        };
        let mut res = api::respond(answer);
        if let Some(grant) = grant {
            res.headers_mut().insert(header::SET_COOKIE, grant.cookie);
        }
        res
    }

    /// Every answer: cross-origin headers, `Alt-Svc` where HTTP/3 can be offered (over TLS),
    /// counted.
    fn finish(
        &self,
        mut res: Response<Bytes>,
        req: &Request<Bytes>,
        peer: &Peer,
    ) -> Response<Bytes> {
        let playback = self.playback.load();
        let origin = req.headers().get(header::ORIGIN);
        crate::cors::allow(&mut res, origin, &playback.cors_origins);
        if let (Some(alt), true) = (&self.alt_svc, peer.tls) {
            res.headers_mut().insert(header::ALT_SVC, alt.clone());
        }
        self.requests
            .with_label_values(&[peer.proto.label(), res.status().as_str()])
            .inc();
        res
    }
}
