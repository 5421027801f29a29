//! Playback for viewers when origins are remote: playlists and objects pulled through the
//! [`Upstream`], coalesced and cached on this edge.
//!
//! - Objects (init, parts, segments) go through the byte-bounded [`ObjectCache`]: one
//!   upstream fetch per object however many viewers ask.
//! - Playlists go through a small cache keyed by (room, rendition, `_HLS_msn`, `_HLS_part`,
//!   `_HLS_skip`), so concurrent identical requests make one upstream request, blocking ones
//!   included. A playlist is served from it for at most one part target when plain (the
//!   origin's playlist changes every part) and one segment target when it answers a blocking
//!   request (any later playlist also satisfies it; a player's next request asks for more).
//! - When a media playlist arrives, the part named by its `EXT-X-PRELOAD-HINT` is requested
//!   at once (the origin answers when the part completes), so it is in the cache by the time
//!   players ask for it.
//! - Origins number segments from the stream's timeline, so numbers go back only when a
//!   timeline restarts (an encoder restarted its clock after the origins forgot the room).
//!   Then the names of cached objects point at another stream's bytes: when a media
//!   playlist's `EXT-X-MEDIA-SEQUENCE` falls more than [`RESTART_MARGIN`] below the highest
//!   this edge saw for the rendition, the room's cached objects are dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use codec::hls::query::{BlockingRequest, SkipRequest};
use moka::future::Cache;
use origin::route::{self, Route};
use origin::store::Object;
use prometheus::IntCounter;
use tracing::{debug, info};

use crate::cache::{Key, ObjectCache};
use crate::upstream::{Upstream, UpstreamError};

/// Most playlists cached at once (they are small; entries live under a second or two).
const PLAYLISTS: u64 = 10_000;
/// How far a media sequence number may fall below the highest seen before it counts as a
/// restarted timeline (answers to blocking requests can arrive out of order by a segment).
const RESTART_MARGIN: u64 = 2;
/// Most renditions whose highest media sequence number is remembered (reset beyond).
const TIMELINES: usize = 100_000;

/// A playlist request, normalized.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct PlaylistKey {
    room: String,
    /// `None` for the multivariant playlist.
    rendition: Option<String>,
    msn: Option<u64>,
    part: Option<u32>,
    skip: SkipRequest,
}

impl PlaylistKey {
    /// The upstream path with the LL-HLS query rebuilt from the parsed request.
    fn path(&self) -> String {
        let Some(rendition) = &self.rendition else {
            return Route::Multivariant {
                room: self.room.clone(),
            }
            .to_string();
        };
        let mut path = Route::MediaPlaylist {
            room: self.room.clone(),
            rendition: rendition.clone(),
            blocking: BlockingRequest::default(),
        }
        .to_string();
        let mut query = Vec::new();
        if let Some(msn) = self.msn {
            query.push(format!("_HLS_msn={msn}"));
        }
        if let Some(part) = self.part {
            query.push(format!("_HLS_part={part}"));
        }
        match self.skip {
            SkipRequest::No => {}
            SkipRequest::Yes => query.push("_HLS_skip=YES".into()),
            SkipRequest::V2 => query.push("_HLS_skip=v2".into()),
        }
        if !query.is_empty() {
            path.push('?');
            path.push_str(&query.join("&"));
        }
        path
    }
}

/// How long a cached playlist may be served.
struct PlaylistLifetime {
    plain: Duration,
    blocking: Duration,
}

impl moka::Expiry<PlaylistKey, Bytes> for PlaylistLifetime {
    fn expire_after_create(&self, key: &PlaylistKey, _: &Bytes, _: Instant) -> Option<Duration> {
        Some(if key.msn.is_some() {
            self.blocking
        } else {
            self.plain
        })
    }
}

/// Pulls playback from origins for this edge's viewers.
pub struct Pull {
    upstream: Arc<Upstream>,
    objects: ObjectCache,
    playlists: Cache<PlaylistKey, Bytes>,
    /// `daihuo_upstream_playlist_fetches_total`.
    playlist_fetches: IntCounter,
    /// (room, rendition) -> highest `EXT-X-MEDIA-SEQUENCE` fetched.
    sequences: Mutex<HashMap<(String, String), u64>>,
}

impl Pull {
    pub fn new(
        upstream: Arc<Upstream>,
        objects: ObjectCache,
        part_target: Duration,
        segment_target: Duration,
        metrics: &origin::Metrics,
    ) -> Self {
        let playlist_fetches = IntCounter::new(
            "daihuo_upstream_playlist_fetches_total",
            "Playlists requested from origins (one per distinct request however many viewers \
             ask at once).",
        )
        .expect("static metric definition");
        metrics.register(vec![Box::new(playlist_fetches.clone())]);
        Self {
            upstream,
            objects,
            playlists: Cache::builder()
                .max_capacity(PLAYLISTS)
                .expire_after(PlaylistLifetime {
                    plain: part_target,
                    blocking: segment_target,
                })
                .build(),
            playlist_fetches,
            sequences: Mutex::default(),
        }
    }

    /// The rooms live at the origins that are up (each answers `GET /rooms`); one that does
    /// not answer within a second is left out.
    pub async fn live_rooms(&self) -> Vec<String> {
        let origins = self.upstream.origins();
        let asks = origins
            .iter()
            .filter(|o| o.is_up())
            .map(|o| self.upstream.get_from(o, "/rooms", Duration::from_secs(1)));
        let mut rooms: Vec<String> = futures::future::join_all(asks)
            .await
            .into_iter()
            .filter_map(|r| r.ok())
            .filter(|(status, _)| status.is_success())
            .filter_map(|(_, body)| serde_json::from_slice::<Vec<String>>(&body).ok())
            .flatten()
            .filter(|room| conf::valid_room(room))
            .collect();
        rooms.sort();
        rooms.dedup();
        rooms
    }

    /// A multivariant or media playlist; `query` is the viewer's LL-HLS query.
    pub async fn playlist(&self, route: &Route) -> Result<Bytes, UpstreamError> {
        let key = match route {
            Route::Multivariant { room } => PlaylistKey {
                room: room.clone(),
                rendition: None,
                msn: None,
                part: None,
                skip: SkipRequest::No,
            },
            Route::MediaPlaylist {
                room,
                rendition,
                blocking,
            } => {
                let BlockingRequest { msn, part, skip } = *blocking;
                PlaylistKey {
                    room: room.clone(),
                    rendition: Some(rendition.clone()),
                    msn,
                    part,
                    skip,
                }
            }
            _ => {
                return Err(UpstreamError::Refused {
                    status: http::StatusCode::NOT_FOUND,
                    reason: "not a playlist".into(),
                })
            }
        };
        let path = key.path();
        self.playlists
            .try_get_with(key.clone(), async {
                self.playlist_fetches.inc();
                let body = self.upstream.get(&key.room, &path).await?;
                if let Some(rendition) = &key.rendition {
                    self.check_timeline(&key.room, rendition, &body);
                    self.prefetch_hint(&key.room, rendition, &body);
                }
                Ok(body)
            })
            .await
            .map_err(|e: Arc<UpstreamError>| (*e).clone())
    }

    /// An init segment, part or segment, through the object cache.
    pub async fn object(&self, key: Key) -> Result<Bytes, UpstreamError> {
        fetch(&self.upstream, &self.objects, key).await
    }

    /// Drops the room's cached objects when `playlist` shows its numbering restarted.
    fn check_timeline(&self, room: &str, rendition: &str, playlist: &[u8]) {
        let Some(sequence) = media_sequence(playlist) else {
            return;
        };
        let restarted = {
            let mut seen = self.sequences.lock().unwrap_or_else(|e| e.into_inner());
            if seen.len() >= TIMELINES {
                seen.clear();
            }
            let highest = seen
                .entry((room.to_string(), rendition.to_string()))
                .or_insert(sequence);
            let restarted = sequence.saturating_add(RESTART_MARGIN) < *highest;
            *highest = if restarted {
                sequence
            } else {
                sequence.max(*highest)
            };
            restarted
        };
        if restarted {
            info!(
                stream = room,
                rendition, sequence, "numbering restarted: cached objects dropped"
            );
            self.objects.forget_room(room);
        }
    }

    /// Starts fetching the part a media playlist hints at, unless it is cached already.
    fn prefetch_hint(&self, room: &str, rendition: &str, playlist: &[u8]) {
        let Some(uri) = preload_hint(playlist) else {
            return;
        };
        let Ok(Route::Object { object, .. }) =
            route::parse(&format!("/live/{room}/{rendition}/{uri}"))
        else {
            debug!(
                stream = room,
                rendition, uri, "preload hint is not a part of this rendition"
            );
            return;
        };
        if !matches!(object, Object::Part { .. }) {
            return;
        }
        let key = Key {
            room: room.to_string(),
            rendition: rendition.to_string(),
            object,
        };
        if self.objects.contains(&key) {
            return;
        }
        let (upstream, objects) = (self.upstream.clone(), self.objects.clone());
        tokio::spawn(async move {
            if let Err(e) = fetch(&upstream, &objects, key).await {
                debug!("preload hint fetch: {e}");
            }
        });
    }
}

async fn fetch(
    upstream: &Upstream,
    objects: &ObjectCache,
    key: Key,
) -> Result<Bytes, UpstreamError> {
    let path = Route::Object {
        room: key.room.clone(),
        rendition: key.rendition.clone(),
        object: key.object,
    }
    .to_string();
    let room = key.room.clone();
    objects
        .get(key, async move { upstream.get(&room, &path).await })
        .await
}

/// A media playlist's `EXT-X-MEDIA-SEQUENCE`.
fn media_sequence(playlist: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(playlist).ok()?;
    text.lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))?
        .trim()
        .parse()
        .ok()
}

/// The URI of a playlist's `EXT-X-PRELOAD-HINT` of `TYPE=PART`.
fn preload_hint(playlist: &[u8]) -> Option<&str> {
    let text = std::str::from_utf8(playlist).ok()?;
    let line = text
        .lines()
        .find(|l| l.starts_with("#EXT-X-PRELOAD-HINT:") && l.contains("TYPE=PART"))?;
    let start = line.find("URI=\"")? + 5;
    let len = line[start..].find('"')?;
    Some(&line[start..start + len])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hint_uri_is_found() {
        let p = b"#EXTM3U\n#EXT-X-PART:DURATION=0.33334,URI=\"part7.1.m4s\"\n\
                  #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part7.2.m4s\"\n";
        assert_eq!(preload_hint(p), Some("part7.2.m4s"));
        assert_eq!(preload_hint(b"#EXTM3U\n"), None);
        assert_eq!(preload_hint(b"#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"x"), None);
        assert_eq!(preload_hint(&[0xff, 0xfe]), None);
    }

    #[test]
    fn media_sequence_is_read() {
        assert_eq!(
            media_sequence(b"#EXTM3U\n#EXT-X-MEDIA-SEQUENCE:42\n"),
            Some(42)
        );
        assert_eq!(media_sequence(b"#EXTM3U\n"), None);
        assert_eq!(media_sequence(b"#EXT-X-MEDIA-SEQUENCE:x\n"), None);
    }

    #[test]
    fn upstream_query_is_normalized() {
        let key = PlaylistKey {
            room: "demo".into(),
            rendition: Some("720p".into()),
            msn: Some(12),
            part: Some(3),
            skip: SkipRequest::Yes,
        };
        assert_eq!(
            key.path(),
            "/live/demo/720p/index.m3u8?_HLS_msn=12&_HLS_part=3&_HLS_skip=YES"
        );
        let plain = PlaylistKey {
            rendition: None,
            msn: None,
            part: None,
            skip: SkipRequest::No,
            ..key
        };
        assert_eq!(plain.path(), "/live/demo/index.m3u8");
    }
}
