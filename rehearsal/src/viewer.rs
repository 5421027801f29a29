//! A viewer that loads like hls.js in low-latency mode: the multivariant playlist, one
//! rendition (and its audio), from the independent part at the part hold-back, then each
//! next part as the playlist lists it, a blocking reload (`_HLS_msn`/`_HLS_part`) for the
//! one after the edge and the hinted part fetched at the same time. A playback model (media
//! downloaded against the wall clock, the room page's catch-up rate) says when the first
//! frame shows, when and how long it stalls, and how far behind capture it plays.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Result};
use serde::Serialize;

use crate::hls::{self, Chunk, Media};
use crate::http::{Conn, Fetched, Net, Proto, Server};
use crate::Clock;

/// Which rendition a viewer plays.
#[derive(Debug, Clone)]
pub enum Choice {
    /// The variant whose URI starts with this name (`720p`).
    Named(String),
    /// The n-th variant, counting round (viewers spread over the ladder).
    Nth(usize),
}

/// How one viewer went.
#[derive(Debug, Clone, Serialize)]
pub struct Viewed {
    pub proto: Proto,
    pub rendition: Option<String>,
    /// From the viewer's start to its first frame.
    pub first_frame_s: Option<f64>,
    /// Why it never played, or stopped playing for good.
    pub failed: Option<String>,
    pub played_s: f64,
    pub stalled_s: f64,
    pub stalls: u32,
    /// Seconds behind capture (by program date-time), sampled every 100 ms while playing.
    #[serde(skip)]
    pub latency: Vec<f32>,
    /// When it was in trouble (no media advancing, or stalled), in seconds of the run.
    #[serde(skip)]
    pub trouble: Vec<(f64, f64)>,
    pub requests: u64,
    pub errors: u64,
    pub bytes: u64,
}

/// Counters every viewer updates, for the progress line.
#[derive(Debug, Default)]
pub struct Live {
    pub started: AtomicU64,
    pub playing: AtomicU64,
    pub stalled: AtomicU64,
    pub failed: AtomicU64,
    pub bytes: AtomicU64,
}

/// A viewer's plan.
pub struct Plan {
    pub proto: Proto,
    pub server: Arc<Server>,
    pub room: String,
    pub choice: Choice,
    /// Appended to every URL (`token=...` for signed playback).
    pub query: Option<String>,
    pub first_frame_timeout: Duration,
    /// The viewer's own source address (see [`Server::client_address`]).
    pub local: Option<std::net::IpAddr>,
}

/// Within this much of the playhead, playback resumes after a stall.
const RESUME: f64 = 0.1;
/// Catch-up (edge-node/src/pages/live.js): at up to 1.5x while more than this is buffered.
const CATCH_UP_AHEAD: f64 = 0.5;

/// The playback model, shared by a viewer's tracks (video and audio).
struct Player {
    /// Per track: the capture date its media starts at, and where what it downloaded ends.
    tracks: Vec<Option<(f64, f64)>>,
    first_frame: Option<Instant>,
    /// The capture date at the playhead, and when it was last brought up to date.
    playhead: f64,
    updated: Instant,
    rate: f64,
    stalled_since: Option<Instant>,
    /// The newest capture date the playlists list, and the target latency.
    edge: f64,
    target: f64,
    played: f64,
    stalled: f64,
    stalls: u32,
}

impl Player {
    fn new(tracks: usize) -> Self {
        Self {
            tracks: vec![None; tracks],
            first_frame: None,
            playhead: 0.0,
            updated: Instant::now(),
            rate: 1.0,
            stalled_since: None,
            edge: 0.0,
            target: 1.0,
            played: 0.0,
            stalled: 0.0,
            stalls: 0,
        }
    }

    /// Where the media buffered on every track ends.
    fn buffered(&self) -> Option<f64> {
        self.tracks
            .iter()
            .map(|t| t.map(|(_, end)| end))
            .try_fold(f64::MAX, |m, e| e.map(|e| m.min(e)))
    }

    /// Plays up to `now`: the playhead moves at the playback rate while media is buffered.
    fn advance(&mut self, now: Instant) {
        let elapsed = now.saturating_duration_since(self.updated).as_secs_f64();
        self.updated = now;
        let (Some(_), Some(buffered)) = (self.first_frame, self.buffered()) else {
            return;
        };
        if self.stalled_since.is_some() {
            return;
        }
        let ahead = (buffered - self.playhead).max(0.0);
        if elapsed * self.rate <= ahead {
            self.playhead += elapsed * self.rate;
            self.played += elapsed;
        } else {
            let until = ahead / self.rate;
            self.playhead = buffered;
            self.played += until;
            self.stalled_since = Some(now - Duration::from_secs_f64(elapsed - until));
            self.stalls += 1;
        }
        // The room page's catch-up: 150 ms over the target starts it, 50 ms stops it.
        let over = self.edge - self.playhead - self.target;
        let catching = ahead > CATCH_UP_AHEAD && over > if self.rate > 1.0 { 0.05 } else { 0.15 };
        self.rate = if catching {
            (1.0 + over / 2.0).min(1.5)
        } else {
            1.0
        };
    }

    /// Track `track` downloaded media from `date` for `duration` seconds; returns a stall
    /// that ended now (its start).
    fn add(&mut self, track: usize, date: f64, duration: f64, now: Instant) -> Option<Instant> {
        self.advance(now);
        let t = self.tracks[track].get_or_insert((date, date));
        t.1 = t.1.max(date + duration);
        if self.first_frame.is_none() {
            // The first frame shows once every track has media at the common start.
            if self.tracks.iter().all(Option::is_some) {
                let start = self
                    .tracks
                    .iter()
                    .flatten()
                    .map(|(s, _)| *s)
                    .fold(f64::MIN, f64::max);
                if self.buffered().is_some_and(|b| b > start) {
                    self.first_frame = Some(now);
                    self.playhead = start;
                    self.updated = now;
                }
            }
            return None;
        }
        let since = self.stalled_since?;
        let buffered = self.buffered()?;
        if buffered - self.playhead >= RESUME {
            self.stalled_since = None;
            self.stalled += now.duration_since(since).as_secs_f64();
            self.updated = now;
            return Some(since);
        }
        None
    }
}

/// One track's loading state.
struct Track {
    index: usize,
    /// The playlist's path and the directory its URIs are relative to.
    playlist: String,
    dir: String,
    media: Media,
    map: Option<String>,
    /// The hinted part being fetched meanwhile: its URI and the fetch.
    hinted: Option<(String, tokio::task::JoinHandle<Result<Fetched>>)>,
    /// The synthetic capture date for media without a program date-time.
    next_date: f64,
    last_progress: Option<Instant>,
}

/// What a viewer's tracks share.
struct Shared {
    conn: Arc<Conn>,
    player: Mutex<Player>,
    clock: Clock,
    live: Arc<Live>,
    query: Option<String>,
    viewed: Mutex<Viewed>,
    requests: AtomicU64,
    errors: AtomicU64,
    bytes: AtomicU64,
    /// Whether this viewer counts in [`Live::playing`] and [`Live::stalled`] now.
    playing: AtomicBool,
    stalled: AtomicBool,
}

impl Shared {
    /// Counts this viewer in (or out of) a live counter, once.
    fn count(&self, flag: &AtomicBool, counter: &AtomicU64, on: bool) {
        if flag.swap(on, Ordering::Relaxed) != on {
            if on {
                counter.fetch_add(1, Ordering::Relaxed);
            } else {
                counter.fetch_sub(1, Ordering::Relaxed);
            }
        }
    }

    fn with_query(&self, path: &str) -> String {
        match &self.query {
            None => path.to_string(),
            Some(q) if path.contains('?') => format!("{path}&{q}"),
            Some(q) => format!("{path}?{q}"),
        }
    }

    /// GETs `path`; an answer other than 200 is an error.
    async fn get(&self, path: &str, timeout: Duration) -> Result<Fetched> {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let got = tokio::time::timeout(timeout, self.conn.get(&self.with_query(path))).await;
        let got = match got {
            Ok(Ok(f)) if f.status == 200 => Ok(f),
            Ok(Ok(f)) => Err(anyhow!(
                "{path}: {} {}",
                f.status,
                String::from_utf8_lossy(&f.body[..f.body.len().min(120)]).trim()
            )),
            Ok(Err(e)) => Err(e.context(path.to_string())),
            Err(_) => Err(anyhow!("{path}: no answer in {timeout:?}")),
        };
        match &got {
            Ok(f) => {
                self.bytes.fetch_add(f.body.len() as u64, Ordering::Relaxed);
                self.live
                    .bytes
                    .fetch_add(f.body.len() as u64, Ordering::Relaxed);
            }
            Err(_) => {
                self.errors.fetch_add(1, Ordering::Relaxed);
            }
        }
        got
    }
}

fn resolve(dir: &str, uri: &str) -> String {
    if uri.starts_with('/') {
        uri.to_string()
    } else if let Some(rest) = uri.split_once("://").map(|(_, r)| r) {
        rest.find('/')
            .map_or("/".to_string(), |i| rest[i..].to_string())
    } else {
        format!("{dir}{uri}")
    }
}

fn dir_of(path: &str) -> String {
    let path = path.split('?').next().unwrap_or(path);
    path.rfind('/')
        .map_or("/".to_string(), |i| path[..=i].to_string())
}

/// Runs a viewer from now until `until`.
pub async fn run(
    plan: Plan,
    net: Arc<Net>,
    clock: Clock,
    live: Arc<Live>,
    until: Instant,
) -> Viewed {
    live.started.fetch_add(1, Ordering::Relaxed);
    let begun = Instant::now();
    let mut viewed = Viewed {
        proto: plan.proto,
        rendition: None,
        first_frame_s: None,
        failed: None,
        played_s: 0.0,
        stalled_s: 0.0,
        stalls: 0,
        latency: Vec::new(),
        trouble: Vec::new(),
        requests: 0,
        errors: 0,
        bytes: 0,
    };
    let deadline = (begun + plan.first_frame_timeout).min(until);
    // Connecting, retried until the first frame is due.
    let conn = loop {
        match Conn::open(plan.proto, &plan.server, &net, plan.local).await {
            Ok(c) => break Arc::new(c),
            Err(e) if Instant::now() + Duration::from_millis(200) >= deadline => {
                viewed.failed = Some(format!("connect: {e:#}"));
                live.failed.fetch_add(1, Ordering::Relaxed);
                return viewed;
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    };
    let shared = Arc::new(Shared {
        conn,
        player: Mutex::new(Player::new(1)),
        clock,
        live: live.clone(),
        query: plan.query.clone(),
        viewed: Mutex::new(viewed),
        requests: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        bytes: AtomicU64::new(0),
        playing: AtomicBool::new(false),
        stalled: AtomicBool::new(false),
    });
    let outcome = tokio::time::timeout_at(until.into(), play(&plan, &shared, deadline)).await;
    let mut viewed = shared
        .viewed
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    if let Ok(Err(e)) = outcome {
        viewed.failed = Some(format!("{e:#}"));
    }
    let mut player = shared.player.lock().unwrap_or_else(|e| e.into_inner());
    player.advance(Instant::now().min(until));
    if let Some(since) = player.stalled_since {
        player.stalled += until.saturating_duration_since(since).as_secs_f64();
        let at = shared.clock.at(since);
        viewed.trouble.push((at, shared.clock.at(until)));
    }
    viewed.first_frame_s = player
        .first_frame
        .map(|f| f.duration_since(begun).as_secs_f64());
    viewed.played_s = player.played;
    viewed.stalled_s = player.stalled;
    viewed.stalls = player.stalls;
    viewed.requests = shared.requests.load(Ordering::Relaxed);
    viewed.errors = shared.errors.load(Ordering::Relaxed);
    viewed.bytes = shared.bytes.load(Ordering::Relaxed);
    shared.count(&shared.playing, &live.playing, false);
    shared.count(&shared.stalled, &live.stalled, false);
    if viewed.first_frame_s.is_none() && viewed.failed.is_none() {
        viewed.failed = Some("no first frame before the run ended".into());
    }
    if viewed.failed.is_some() {
        live.failed.fetch_add(1, Ordering::Relaxed);
    }
    viewed
}

/// Loads the multivariant playlist, picks the rendition and runs its tracks.
async fn play(plan: &Plan, shared: &Arc<Shared>, deadline: Instant) -> Result<()> {
    let top = format!("/live/{}/index.m3u8", plan.room);
    let variants = loop {
        let error = match shared.get(&top, Duration::from_secs(5)).await {
            Ok(f) => {
                let v = hls::variants(&String::from_utf8_lossy(&f.body));
                if !v.is_empty() {
                    break v;
                }
                anyhow!("{top}: no variant")
            }
            Err(e) => e,
        };
        if Instant::now() >= deadline {
            return Err(error);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let variant = match &plan.choice {
        Choice::Nth(n) => &variants[n % variants.len()],
        Choice::Named(name) => variants
            .iter()
            .find(|v| v.uri.split('/').next() == Some(name.as_str()))
            .ok_or_else(|| anyhow!("{top}: no rendition {name}"))?,
    };
    let dir = dir_of(&top);
    let mut playlists = vec![resolve(&dir, &variant.uri)];
    playlists.extend(variant.audio.as_deref().map(|a| resolve(&dir, a)));
    {
        let mut viewed = shared.viewed.lock().unwrap_or_else(|e| e.into_inner());
        viewed.rendition = variant.uri.split('/').next().map(str::to_string);
    }
    *shared.player.lock().unwrap_or_else(|e| e.into_inner()) = Player::new(playlists.len());
    // The playback clock ticks apart from the downloads: stalls begin between them.
    let ticking = tick(shared.clone());
    let tracks = playlists.into_iter().enumerate().map(|(index, playlist)| {
        let track = Track {
            index,
            dir: dir_of(&playlist),
            playlist,
            media: Media::default(),
            map: None,
            hinted: None,
            next_date: 0.0,
            last_progress: None,
        };
        load(track, shared.clone(), deadline)
    });
    tokio::select! {
        r = futures::future::try_join_all(tracks) => r.map(|_| ()),
        () = ticking => Ok(()),
    }
}

/// Every 100 ms: plays, samples the latency, keeps the live counters.
async fn tick(shared: Arc<Shared>) {
    let mut every = tokio::time::interval(Duration::from_millis(100));
    loop {
        every.tick().await;
        let now = Instant::now();
        let mut player = shared.player.lock().unwrap_or_else(|e| e.into_inner());
        player.advance(now);
        let live = &shared.live;
        shared.count(&shared.playing, &live.playing, player.first_frame.is_some());
        shared.count(
            &shared.stalled,
            &live.stalled,
            player.stalled_since.is_some(),
        );
        if player.first_frame.is_some() && player.playhead > 1e9 {
            // Dates are real (program date-time): the playhead's age is the latency.
            let latency = shared.clock.epoch(now) - player.playhead;
            drop(player);
            shared
                .viewed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .latency
                .push(latency as f32);
        }
    }
}

/// Loads one track until the viewer stops.
async fn load(mut track: Track, shared: Arc<Shared>, deadline: Instant) -> Result<()> {
    // The first playlist, retried until the first frame is due.
    loop {
        match refresh(&mut track, &shared, None).await {
            Ok(()) if !track.media.chunks.is_empty() => break,
            Ok(()) => {}
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => {}
        }
        if Instant::now() >= deadline {
            bail!("{}: nothing to play", track.playlist);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let mut chunk = track
        .media
        .start()
        .cloned()
        .ok_or_else(|| anyhow!("{}: nothing to play", track.playlist))?;
    let mut failures = 0u32;
    loop {
        match fetch(&mut track, &shared, &chunk).await {
            Ok(()) => failures = 0,
            Err(e) => {
                failures += 1;
                if shared
                    .player
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .first_frame
                    .is_none()
                    && Instant::now() >= deadline
                {
                    return Err(e);
                }
                // Gone from the playlist (too far behind): start again at the live edge.
                if failures >= 3 || e.to_string().contains(": 404") {
                    refresh(&mut track, &shared, None).await.ok();
                    if let Some(start) = track.media.start() {
                        chunk = start.clone();
                        track.next_date = 0.0;
                    }
                }
                tokio::time::sleep(Duration::from_millis(100 * u64::from(failures.min(10)))).await;
                continue;
            }
        }
        // The next chunk: listed, or waited for with a blocking reload.
        loop {
            if let Some(next) = track.media.after(chunk.key) {
                chunk = next.clone();
                break;
            }
            if track.media.ended {
                return Ok(());
            }
            if let (None, Some(hint)) = (&track.hinted, &track.media.preload_hint) {
                let path = resolve(&track.dir, hint);
                let s = shared.clone();
                let fetch =
                    tokio::spawn(async move { s.get(&path, Duration::from_secs(10)).await });
                track.hinted = Some((hint.clone(), fetch));
            }
            if let Err(_e) = refresh(&mut track, &shared, Some(chunk.key)).await {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// Loads the track's playlist (a blocking reload for what follows `after`).
async fn refresh(track: &mut Track, shared: &Shared, after: Option<hls::Key>) -> Result<()> {
    let path = match after {
        Some(key) => format!("{}?{}", track.playlist, Media::blocking_query(key)),
        None => track.playlist.clone(),
    };
    let timeout = Duration::from_secs_f64(3.0 * track.media.target_duration.max(2.0) + 2.0);
    let f = shared.get(&path, timeout).await?;
    track.media = hls::media(&String::from_utf8_lossy(&f.body));
    let mut player = shared.player.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(last) = track.media.chunks.last() {
        if let Some(date) = last.date {
            player.edge = player.edge.max(date + last.duration);
        }
    }
    if let Some(hold_back) = track.media.part_hold_back {
        player.target = hold_back;
    }
    Ok(())
}

/// Loads `chunk` (and its init segment when it changes) into the player.
async fn fetch(track: &mut Track, shared: &Shared, chunk: &Chunk) -> Result<()> {
    if chunk.map.is_some() && chunk.map != track.map {
        let init = resolve(&track.dir, chunk.map.as_deref().unwrap_or_default());
        shared.get(&init, Duration::from_secs(10)).await?;
        track.map = chunk.map.clone();
    }
    let hinted = match track.hinted.take() {
        Some((uri, fetch)) if uri == chunk.uri => Some(fetch),
        Some((_, fetch)) => {
            fetch.abort();
            None
        }
        None => None,
    };
    let got = match hinted {
        Some(fetch) => fetch.await.map_err(|e| anyhow!("hinted part: {e}"))?,
        None => {
            shared
                .get(&resolve(&track.dir, &chunk.uri), Duration::from_secs(10))
                .await
        }
    };
    got?;
    let now = Instant::now();
    let date = chunk.date.unwrap_or(track.next_date);
    track.next_date = date + chunk.duration;
    let gap_limit = 3.0 * track.media.part_target.unwrap_or(1.0).max(0.34);
    if let Some(last) = track.last_progress {
        if now.duration_since(last).as_secs_f64() > gap_limit {
            let trouble = (shared.clock.at(last), shared.clock.at(now));
            shared
                .viewed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .trouble
                .push(trouble);
        }
    }
    track.last_progress = Some(now);
    let resumed = shared.player.lock().unwrap_or_else(|e| e.into_inner()).add(
        track.index,
        date,
        chunk.duration,
        now,
    );
    if let Some(since) = resumed {
        let trouble = (shared.clock.at(since), shared.clock.at(now));
        shared
            .viewed
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .trouble
            .push(trouble);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The model plays what is buffered at the wall clock's pace, stalls when it runs out,
    /// resumes when media arrives, and counts the stall's length.
    #[test]
    fn playback_stalls_when_media_runs_out_and_resumes() {
        let t0 = Instant::now();
        let at = |s: f64| t0 + Duration::from_secs_f64(s);
        let mut p = Player::new(2);
        p.updated = t0;
        p.edge = 100.0 + 1.0;
        // Video from 100.0, audio from 100.1: playback starts at 100.1 once both are in.
        assert!(p.add(0, 100.0, 1.0, at(0.2)).is_none());
        assert!(p.first_frame.is_none());
        p.add(1, 100.1, 1.0, at(0.3));
        assert_eq!(p.first_frame, Some(at(0.3)));
        assert!((p.playhead - 100.1).abs() < 1e-9);
        // 0.9 s buffered on video (to 101.0); at 1.5 s it ran out at 1.2 s.
        p.advance(at(1.5));
        assert_eq!(p.stalls, 1);
        assert!((p.played - 0.9).abs() < 1e-6, "{}", p.played);
        // More video and audio: resumed at 2.0 s after 0.8 s stalled.
        assert!(
            p.add(0, 101.0, 1.0, at(2.0)).is_none(),
            "audio still ends at 101.1"
        );
        let since = p.add(1, 101.1, 1.0, at(2.0)).expect("resumed");
        assert_eq!(since, at(1.2));
        assert!((p.stalled - 0.8).abs() < 1e-6, "{}", p.stalled);
        p.advance(at(2.5));
        assert_eq!(p.stalls, 1);
        assert!((p.played - 1.4).abs() < 1e-6);
    }

    #[test]
    fn a_viewer_far_behind_the_target_catches_up_at_up_to_one_and_a_half() {
        let t0 = Instant::now();
        let mut p = Player::new(1);
        p.updated = t0;
        p.target = 1.0;
        p.edge = 110.0;
        p.add(0, 100.0, 10.0, t0);
        p.advance(t0 + Duration::from_millis(100));
        assert!((p.rate - 1.5).abs() < 1e-9, "{}", p.rate);
        p.advance(t0 + Duration::from_secs(2));
        assert!(p.playhead > 102.5, "{}", p.playhead);
    }

    #[test]
    fn uris_resolve_against_the_playlist() {
        assert_eq!(dir_of("/live/a/720p/index.m3u8?x=1"), "/live/a/720p/");
        assert_eq!(
            resolve("/live/a/720p/", "part3.1.m4s"),
            "/live/a/720p/part3.1.m4s"
        );
        assert_eq!(resolve("/live/a/", "/x/y.m4s"), "/x/y.m4s");
        assert_eq!(resolve("/live/a/", "https://cdn/x/y.m4s"), "/x/y.m4s");
    }
}
