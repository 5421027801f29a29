//! The viewers' live feed: `GET /live/ROOM/events` answers server-sent events, a `comment`
//! event for each comment and a `likes` event with each merged like count, as the origin
//! journals them (from every edge), and every few seconds a `viewers` event with how many
//! watch the room over every edge (see `origin::audience`).
//!
//! The edge follows the journal of each origin (`GET /feed?from=N`, a long poll on the
//! upstream connection; in a single box, the local journal directly) and publishes each line
//! to the room's subscribers. Followers start at the journal's end: viewers get what happens
//! while they watch, not history. A slow viewer misses messages (it is told how many) rather
//! than holding anything up.
//!
//! Memory: a room's buffer holds a few messages, each all of one journal page's events for
//! that room, so a burst of comments is one message, not a thousand; each viewer's task moves
//! them on to its own bounded buffer at once. A feed opened for a room that does not exist
//! therefore costs about a kilobyte beside the connection itself (it used to cost a 1024-slot
//! buffer, hundreds of MiB for 10,000 made-up names).

use std::collections::HashMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use origin::events::Intake;
use tokio::sync::{broadcast, mpsc};
use tracing::{debug, warn};

use crate::upstream::{Origin, Upstream};

/// Messages (one journal page's events of the room each) buffered per room until every
/// subscriber's task has taken them.
const ROOM_BUFFER: usize = 16;
/// Messages buffered per viewer connection.
const VIEWER_BUFFER: usize = 64;
/// An SSE comment line this often keeps idle connections (and proxies) open.
const KEEPALIVE: Duration = Duration::from_secs(15);
/// Past this many rooms, rooms nobody watches are forgotten.
const SWEEP_AT: usize = 10_000;
/// Longest wait for one long poll of an origin's feed.
const POLL: Duration = Duration::from_secs(30);

/// Rooms' subscribers.
pub struct Feed {
    rooms: Mutex<HashMap<String, broadcast::Sender<Bytes>>>,
    shutdown: daemon::Drain,
}

impl Feed {
    pub fn new(shutdown: daemon::Drain) -> Arc<Self> {
        Arc::new(Self {
            rooms: Mutex::new(HashMap::new()),
            shutdown,
        })
    }

    /// A viewer's stream of SSE text for `room`; it ends at shutdown.
    pub fn subscribe(&self, room: &str) -> mpsc::Receiver<Bytes> {
        let mut rooms = self.lock();
        if rooms.len() >= SWEEP_AT {
            rooms.retain(|_, s| s.receiver_count() > 0);
        }
        let mut messages = rooms
            .entry(room.to_string())
            .or_insert_with(|| broadcast::channel(ROOM_BUFFER).0)
            .subscribe();
        drop(rooms);
        let (tx, rx) = mpsc::channel(VIEWER_BUFFER);
        let mut shutdown = self.shutdown.clone();
        tokio::spawn(async move {
            let mut keepalive = tokio::time::interval(KEEPALIVE);
            keepalive.tick().await;
            loop {
                let chunk = tokio::select! {
                    m = messages.recv() => match m {
                        Ok(m) => m,
                        Err(broadcast::error::RecvError::Lagged(n)) => {
                            Bytes::from(format!(": {n} messages missed\n\n"))
                        }
                        Err(broadcast::error::RecvError::Closed) => return,
                    },
                    _ = keepalive.tick() => Bytes::from_static(b": keepalive\n\n"),
                    _ = shutdown.stopped() => return,
                };
                // A full viewer buffer: this viewer is too slow; it misses the message.
                match tx.try_send(chunk) {
                    Ok(()) | Err(mpsc::error::TrySendError::Full(_)) => {}
                    Err(mpsc::error::TrySendError::Closed(_)) => return,
                }
            }
        });
        rx
    }

    /// Tells `room`'s subscribers how many watch it now (over every edge), if it has any.
    pub fn viewers(&self, room: &str, count: u64) {
        if let Some(sender) = self.lock().get(room) {
            let _ = sender.send(Bytes::from(format!(
                "event: viewers\ndata: {{\"count\":{count}}}\n\n"
            )));
        }
    }

    /// Publishes journal lines (`{"offset":..,"room":..,"event":{..}}`) to their rooms: one
    /// message per room with all of its events, in journal order.
    pub fn publish(&self, lines: &[serde_json::Value]) {
        let mut messages: HashMap<&str, String> = HashMap::new();
        for line in lines {
            let Some(room) = line["room"].as_str() else {
                continue;
            };
            let event = &line["event"];
            let text = messages.entry(room).or_default();
            match event["type"].as_str() {
                Some("comment") => {
                    let data = serde_json::json!({
                        "id": event["id"], "user": event["user"], "text": event["text"],
                    });
                    let _ = write!(text, "event: comment\ndata: {data}\n\n");
                }
                Some("like") => {
                    let count = event["count"].as_u64().unwrap_or(1);
                    let _ = write!(text, "event: likes\ndata: {{\"count\":{count}}}\n\n");
                }
                _ => {}
            }
        }
        let mut rooms = self.lock();
        for (room, text) in messages {
            if text.is_empty() {
                continue;
            }
            if let Some(sender) = rooms.get(room) {
                if sender.send(Bytes::from(text)).is_err() {
                    // Nobody watches any more.
                    rooms.remove(room);
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, broadcast::Sender<Bytes>>> {
        self.rooms.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Follows the local journal (single box) until shutdown.
    pub async fn follow_local(self: Arc<Self>, intake: Arc<Intake>) {
        let mut from = None;
        let mut shutdown = self.shutdown.clone();
        loop {
            let page = tokio::select! {
                p = intake.feed(from) => p,
                _ = shutdown.stopped() => return,
            };
            match page {
                Ok(body) => from = self.take_page(&body).or(from),
                Err(e) => {
                    debug!("feed: {e}");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Follows every origin's journal until shutdown, following changes of the origin list.
    pub async fn follow_origins(self: Arc<Self>, upstream: Arc<Upstream>) {
        let mut changes = upstream.subscribe();
        let mut shutdown = self.shutdown.clone();
        loop {
            let origins = upstream.origins();
            let mut tails = tokio::task::JoinSet::new();
            for o in origins.iter() {
                tails.spawn(self.clone().follow(upstream.clone(), o.clone()));
            }
            // Restart the tails when the list (not just health) changes.
            let names: Vec<String> = origins.iter().map(|o| o.peer.name.clone()).collect();
            loop {
                tokio::select! {
                    r = changes.changed() => {
                        if r.is_err() {
                            return;
                        }
                        let now: Vec<String> =
                            upstream.origins().iter().map(|o| o.peer.name.clone()).collect();
                        if now != names {
                            break;
                        }
                    }
                    _ = shutdown.stopped() => return,
                }
            }
            tails.abort_all();
        }
    }

    async fn follow(self: Arc<Self>, upstream: Arc<Upstream>, origin: Arc<Origin>) {
        let mut from: Option<u64> = None;
        loop {
            let path = match from {
                Some(n) => format!("/feed?from={n}"),
                None => "/feed".into(),
            };
            match upstream.get_from(&origin, &path, POLL).await {
                Ok((StatusCode::OK, body)) => from = self.take_page(&body).or(from),
                // This edge fell behind the origin's journal retention: go on from its end.
                Ok((StatusCode::GONE, _)) => {
                    warn!(origin = %origin.peer.name, from, "feed offset deleted at the origin: following from its end");
                    from = None;
                }
                Ok((status, _)) => {
                    debug!(origin = %origin.peer.name, %status, "feed refused");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
                Err(e) => {
                    debug!(origin = %origin.peer.name, "feed: {e}");
                    // A restarted origin's journal goes on where it was; start from its end
                    // again only if it was reset (the next answer says where it is).
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }

    /// Publishes a `{"from":N,"lines":[...]}` page; returns where to go on from.
    fn take_page(&self, body: &[u8]) -> Option<u64> {
        let page: serde_json::Value = serde_json::from_slice(body).ok()?;
        if let Some(lines) = page["lines"].as_array() {
            self.publish(lines);
        }
        page["from"].as_u64()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn comments_and_likes_reach_the_rooms_subscribers_only() {
        let shutdown = daemon::Drain::disabled();
        let feed = Feed::new(shutdown);
        let mut demo = feed.subscribe("demo");
        let mut other = feed.subscribe("other");
        let line = |room: &str, event: serde_json::Value| serde_json::json!({ "offset": 1, "room": room, "event": event });
        feed.publish(&[
            line(
                "demo",
                serde_json::json!({"id":"m1","type":"comment","user":"u1","text":"hi"}),
            ),
            line(
                "demo",
                serde_json::json!({"id":"c1","type":"cart_add","user":"u1","sku":"s","qty":1}),
            ),
            line(
                "demo",
                serde_json::json!({"id":"l1","type":"like","user":"edge","count":40}),
            ),
        ]);
        // One page, one message: the comment, then the like count.
        let page = demo.recv().await.unwrap();
        assert_eq!(
            page,
            "event: comment\ndata: {\"id\":\"m1\",\"text\":\"hi\",\"user\":\"u1\"}\n\n\
             event: likes\ndata: {\"count\":40}\n\n"
        );
        assert!(other.try_recv().is_err());
    }

    #[tokio::test]
    async fn a_burst_larger_than_the_room_buffer_reaches_every_viewer_whole() {
        let shutdown = daemon::Drain::disabled();
        let feed = Feed::new(shutdown);
        let mut viewer = feed.subscribe("demo");
        // A journal page of 2,000 comments (ROOM_BUFFER is 16 messages): published before the
        // viewer's task runs at all, none is missed.
        let lines: Vec<serde_json::Value> = (0..2000)
            .map(|i| {
                serde_json::json!({ "offset": i, "room": "demo", "event":
                    {"id": format!("m{i}"), "type": "comment", "user": "u", "text": "hi"} })
            })
            .collect();
        feed.publish(&lines);
        let text = viewer.recv().await.unwrap();
        let text = std::str::from_utf8(&text).unwrap();
        assert_eq!(text.matches("event: comment").count(), 2000);
        assert!(!text.contains("missed"));
    }
}
