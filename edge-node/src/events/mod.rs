//! Viewer events at the edge: `POST /live/ROOM/events` (one event or a batch, JSON) is
//! validated, rate limited per client and per room, and then:
//! - likes are merged per room ([`likes`]) and sent upstream once per window;
//! - comments (length limit, blocked words) and cart and order events go to the durable
//!   [`spool`] before the viewer gets 202, and the [`forward`]er relays them to the origin,
//!   deleting them only on its acknowledgement.
//!
//! Under overload a room sheds likes first, then comments; cart and order events are never
//! shed (only a client posting past its own limit is refused). The origin deduplicates by
//! (user, id) within `dedup_hours`, so what the spool replays after a crash, or a viewer
//! retries, is written once (see `origin::events`). Likes are merged here, before their ids
//! are lost, so a retried like is recognised here: the last [`LIKE_PAIRS`] (user, id) pairs of
//! likes within the window, per edge, in memory.

pub mod forward;
pub mod likes;
pub mod limit;
pub mod spool;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use conf::EventsConfig;
use origin::events::{model, Kind, Record};
use origin::ApiError;
use prometheus::{Gauge, IntCounter, IntCounterVec, IntGauge};
use tokio::task::JoinSet;

use likes::Likes;
use limit::Limiter;
use spool::{Spool, SpoolError};

/// With viewer tokens on: whether every event that needs one (cart and order, and comments if
/// `comments`) names the user of a valid `bearer` token.
fn check_users(
    events: &[origin::events::Event],
    secrets: &[String],
    comments: bool,
    bearer: Option<&str>,
) -> Result<(), ApiError> {
    let needs = |k: Kind| match k {
        Kind::Like => false,
        Kind::Comment => comments,
        _ => true,
    };
    if !events.iter().any(|e| needs(e.kind)) {
        return Ok(());
    }
    let token = bearer.ok_or_else(|| {
        ApiError::Unauthorized(
            "cart and order events need a viewer token (Authorization: Bearer)".into(),
        )
    })?;
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let user = origin::auth::check_viewer(secrets, token, now)
        .map_err(|e| ApiError::Forbidden(format!("viewer token: {e}")))?;
    match events
        .iter()
        .enumerate()
        .find(|(_, e)| needs(e.kind) && e.user != user)
    {
        Some((i, e)) => Err(ApiError::Forbidden(format!(
            "event {i}: user {:?} is not the viewer token's user",
            e.user
        ))),
        None => Ok(()),
    }
}

/// Likes' (user, id) pairs each edge remembers (about 100 bytes each), so that a retried like
/// counts once.
pub const LIKE_PAIRS: u64 = 200_000;

/// The reloadable part: text rules and limits.
struct Rules {
    max_comment_chars: usize,
    /// Lowercased.
    blocked_words: Vec<String>,
    clients: Limiter<IpAddr>,
    rooms: Limiter<String>,
    /// With `user_tokens`: the secrets, and whether comments need a token too.
    user_tokens: Option<(Vec<String>, bool)>,
}

impl Rules {
    fn new(c: &EventsConfig) -> Self {
        Self {
            max_comment_chars: c.max_comment_chars,
            blocked_words: c.blocked_words.iter().map(|w| w.to_lowercase()).collect(),
            clients: Limiter::new(c.client_per_second, c.client_burst),
            rooms: Limiter::new(c.room_per_second, c.room_burst),
            user_tokens: c
                .user_tokens
                .then(|| (c.user_secrets.clone(), c.user_token_comments)),
        }
    }
}

/// What a post got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Posted {
    pub accepted: usize,
    /// Likes and comments shed because the room is over its rate.
    pub shed: usize,
}

/// Event intake of one edge.
pub struct Events {
    spool: Arc<Spool>,
    likes: Arc<Likes>,
    /// Likes' (user, id) pairs seen lately.
    liked: moka::future::Cache<(String, String), ()>,
    rules: ArcSwap<Rules>,
    /// `daihuo_events_total{type, result}`.
    counted: IntCounterVec,
}

impl Events {
    /// Opens the spool under `config.state_dir` and starts the like flusher and the forwarder
    /// to `target` in `tasks`.
    pub fn start(
        config: &EventsConfig,
        target: forward::Target,
        metrics: &origin::Metrics,
        tasks: &mut JoinSet<()>,
        shutdown: &daemon::Drain,
    ) -> Result<Arc<Self>, SpoolError> {
        let spool = Spool::open(&config.state_dir.join("spool.redb"))?;
        spool.set_max_bytes(config.spool_max_bytes);
        let likes = Likes::new();
        tasks.spawn(likes.clone().run(
            spool.clone(),
            Duration::from_millis(config.like_window_ms),
            shutdown.clone(),
        ));
        let dead = forward::DeadLetters {
            path: config.state_dir.join("dead-letters.jsonl"),
            counted: IntCounter::new(
                "daihuo_events_dead_letters_total",
                "Events their origin refused as bad, moved to the dead-letter file.",
            )
            .expect("static metric definition"),
            spool_bytes: IntGauge::new(
                "daihuo_spool_bytes",
                "Bytes of events in the edge's spool, waiting for their origin.",
            )
            .expect("static metric definition"),
            spool_oldest: Gauge::new(
                "daihuo_spool_oldest_seconds",
                "How long the oldest event in the edge's spool has waited for its origin.",
            )
            .expect("static metric definition"),
        };
        metrics.register(vec![
            Box::new(dead.counted.clone()),
            Box::new(dead.spool_bytes.clone()),
            Box::new(dead.spool_oldest.clone()),
        ]);
        tasks.spawn(forward::run(spool.clone(), target, dead, shutdown.clone()));
        let liked = moka::future::Cache::builder()
            .max_capacity(LIKE_PAIRS)
            .time_to_live(Duration::from_secs(config.dedup_hours * 3600))
            .build();
        Ok(Arc::new(Self {
            spool,
            likes,
            liked,
            rules: ArcSwap::from_pointee(Rules::new(config)),
            counted: metrics.events.clone(),
        }))
    }

    /// Releases the spool (after the drain: likes flushed, forwarder stopped).
    pub fn close(&self) {
        self.spool.close();
    }

    /// New limits, comment length and blocked words (rate buckets start full again).
    pub fn reload(&self, config: &EventsConfig) {
        self.rules.store(Arc::new(Rules::new(config)));
        self.spool.set_max_bytes(config.spool_max_bytes);
    }

    /// Takes a viewer's POST body for `room` from `client`, who showed `bearer` (the token of
    /// `Authorization: Bearer`, if any).
    pub async fn post(
        &self,
        room: &str,
        body: &Bytes,
        client: IpAddr,
        bearer: Option<&str>,
    ) -> Result<Posted, ApiError> {
        let rules = self.rules.load_full();
        let events = model::parse_posted(body, rules.max_comment_chars).map_err(|e| {
            self.counted.with_label_values(&["any", "refused"]).inc();
            ApiError::BadRequest(e.to_string())
        })?;
        for (i, e) in events.iter().enumerate() {
            if let Some(text) = &e.text {
                let lower = text.to_lowercase();
                if rules
                    .blocked_words
                    .iter()
                    .any(|w| lower.contains(w.as_str()))
                {
                    self.counted
                        .with_label_values(&["comment", "refused"])
                        .inc();
                    return Err(ApiError::BadRequest(format!(
                        "event {i}: comment refused (blocked word)"
                    )));
                }
            }
        }
        let now = Instant::now();
        let n = u32::try_from(events.len()).unwrap_or(u32::MAX);
        if !rules.clients.take(&client, n, 0.0, false, now) {
            self.counted
                .with_label_values(&["any", "limited"])
                .inc_by(u64::from(n));
            return Err(ApiError::TooManyRequests(
                "this client posts too fast (events.client_per_second)".into(),
            ));
        }
        if let Some((secrets, comments)) = &rules.user_tokens {
            if let Err(e) = check_users(&events, secrets, *comments, bearer) {
                self.counted.with_label_values(&["any", "refused"]).inc();
                return Err(e);
            }
        }
        let room_key = room.to_string();
        let mut likes = 0;
        let mut shed = 0;
        let mut durable = Vec::new();
        let mut retried = 0;
        for e in events {
            let kind = e.kind;
            if kind == Kind::Like {
                let pair = (e.user.clone(), e.id.clone());
                if !self.liked.entry(pair).or_insert(()).await.is_fresh() {
                    // A retry: acknowledged again, counted once.
                    retried += 1;
                    self.counted.with_label_values(&["like", "duplicate"]).inc();
                    continue;
                }
            }
            let taken = match kind {
                Kind::Like => rules.rooms.take(&room_key, 1, 0.5, false, now),
                Kind::Comment => rules.rooms.take(&room_key, 1, 0.1, false, now),
                _ => rules.rooms.take(&room_key, 1, 0.0, true, now),
            };
            if !taken {
                shed += 1;
                self.counted
                    .with_label_values(&[kind.label(), "limited"])
                    .inc();
                continue;
            }
            if kind == Kind::Like {
                likes += 1;
            } else if let Ok(bytes) = serde_json::to_vec(&Record {
                room: room_key.clone(),
                event: e,
            }) {
                durable.push((kind, bytes));
            }
        }
        let accepted = likes + durable.len() + retried;
        if accepted == 0 {
            return Err(ApiError::TooManyRequests(
                "the room is over its rate: likes and comments are shed".into(),
            ));
        }
        if !durable.is_empty() {
            let kinds: Vec<Kind> = durable.iter().map(|(k, _)| *k).collect();
            self.spool
                .write(durable.into_iter().map(|(_, b)| b).collect())
                .await
                .map_err(|e| ApiError::Unavailable(format!("events not stored: {e}")))?;
            for k in kinds {
                self.counted
                    .with_label_values(&[k.label(), "accepted"])
                    .inc();
            }
        }
        if likes > 0 {
            self.likes.add(room, likes as u64);
            self.counted
                .with_label_values(&["like", "accepted"])
                .inc_by(likes as u64);
        }
        Ok(Posted { accepted, shed })
    }
}
