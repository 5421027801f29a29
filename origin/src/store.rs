//! Recent media of every live stream, and the waiting room for blocking requests.
//!
//! The ingest pipeline writes parts and segments in ([`Publication`]); viewers' requests read
//! them out ([`Store::media_playlist`], [`Store::object`]). A request for something that is
//! about to exist (LL-HLS blocking playlist reload, the preload-hinted part) waits on the
//! stream's change notification — it is woken by the publish itself, never by polling — and
//! gives up after three target durations, as the HLS spec asks.
//!
//! Media bytes are [`Bytes`]: a part is stored once and shared by every reader.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use codec::hls::multivariant;
use codec::hls::playlist::{Blocking, MediaPlaylist, PlaylistOptions, RenditionReport};
use codec::hls::query::{BlockingRequest, SkipRequest};
use codec::hls::segmenter::{Part, SegmenterOutput};
use codec::hls::FirstMsn;
use codec::TrackConfig;
use tokio::sync::watch;

/// Packaging settings shared by every stream of a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub segment_target: Duration,
    pub part_target: Duration,
    /// Complete segments listed per media playlist.
    pub window: usize,
    /// How long an ended stream stays (with `EXT-X-ENDLIST`) before it is forgotten.
    pub linger: Duration,
}

impl StoreOptions {
    /// How long a blocking request may wait: three target durations (RFC 8216bis 6.2.5.2).
    pub fn block_timeout(&self) -> Duration {
        self.segment_target * 3
    }
}

/// Why the store could not answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The room has no stream here (never published, or forgotten after its linger time).
    #[error("no stream {0}")]
    NoStream(String),
    #[error("no rendition {0}")]
    NoRendition(String),
    /// The object is not there: not yet within reach, or already out of the window.
    #[error("no {0}")]
    NoObject(String),
    /// A blocking request asked further ahead than RFC 8216bis allows.
    #[error("_HLS_msn/_HLS_part is too far ahead of the playlist")]
    TooFarAhead,
    /// A blocking request waited three target durations in vain.
    #[error("not available within three target durations")]
    Timeout,
    /// The room is being published already.
    #[error("room {0} is already live")]
    Live(String),
    /// The stream was forgotten while a request waited on it.
    #[error("stream is gone")]
    Gone,
}

/// Which object of a rendition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Object {
    /// An init segment: `Some(id)` is one by its own name, `init-{id:016x}.mp4` (immutable:
    /// the id is a digest of its bytes), `None` the current one by its fixed name `init.mp4`
    /// (changes when the rendition is declared again).
    Init {
        id: Option<u64>,
    },
    Segment {
        msn: u64,
    },
    Part {
        msn: u64,
        index: u32,
    },
}

/// The id of an init segment: the first 8 bytes of its SHA-256. Identical bytes get the same
/// name on every origin, after every restart; different bytes never share one.
pub fn init_id(init: &[u8]) -> u64 {
    let digest = ring::digest::digest(&ring::digest::SHA256, init);
    let mut id = [0; 8];
    id.copy_from_slice(&digest.as_ref()[..8]);
    u64::from_be_bytes(id)
}

/// The file name of the init segment with `id`.
pub fn init_name(id: u64) -> String {
    format!("init-{id:016x}.mp4")
}

/// A rendition announced before it has media: a rung of the ladder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Planned {
    pub name: String,
    /// Configured peak and average bitrates, bits per second (`BANDWIDTH`,
    /// `AVERAGE-BANDWIDTH` until a segment has been measured).
    pub peak_bps: u64,
    pub average_bps: u64,
}

/// Every stream the origin has media for, live or recently ended.
pub struct Store {
    options: StoreOptions,
    streams: Mutex<HashMap<String, Arc<Stream>>>,
}

struct Stream {
    state: Mutex<StreamState>,
    /// Bumped after every change; blocking requests wait on it.
    changed: watch::Sender<u64>,
}

struct StreamState {
    live: bool,
    /// Increments per publish, so a stale publication cannot touch a newer one.
    generation: u64,
    /// Increments with every change, under the lock: what a rendered playlist was rendered
    /// from ([`Rendition::rendered`]).
    revision: u64,
    /// One past the highest segment number published (a floor for new renditions, so URLs
    /// never repeat across re-publish).
    next_msn: u64,
    /// Renditions the pipeline announced before their first output (the ladder's rungs, in
    /// the ladder's order), so the multivariant playlist is not served without them, lists
    /// them in that order and announces their nominal bitrates until measured ones exist.
    expected: Vec<Planned>,
    renditions: BTreeMap<String, Rendition>,
}

struct Rendition {
    config: TrackConfig,
    /// Init segments by id: the current one (last) and those segments in the window use.
    inits: Vec<(u64, Bytes)>,
    playlist: MediaPlaylist,
    parts: BTreeMap<(u64, u32), Bytes>,
    segments: BTreeMap<u64, Bytes>,
    /// Parts of the segment being built, joined into its bytes when it ends.
    open: Vec<Bytes>,
    /// Highest bitrate of one complete segment, bits per second.
    peak_bps: u64,
    /// Sum of complete segments' bits and seconds, for AVERAGE-BANDWIDTH.
    total_bits: u64,
    total_secs: f64,
    /// Measured frames per second (video), for FRAME-RATE.
    frame_rate: Option<f64>,
    /// The media playlist last rendered, by `_HLS_skip` mode, with the stream's revision it
    /// was rendered at: every viewer woken by one publish gets the same bytes, rendered
    /// once, instead of a render each under the stream's lock. (A Mutex only because
    /// readers hold the state by shared reference; it is taken under the state's lock, so it
    /// is never contended.)
    rendered: Mutex<[Option<(u64, Bytes)>; 3]>,
}

impl Store {
    pub fn new(options: StoreOptions) -> Arc<Self> {
        Arc::new(Self {
            options,
            streams: Mutex::new(HashMap::new()),
        })
    }

    pub fn options(&self) -> &StoreOptions {
        &self.options
    }

    /// Starts publishing `room`. Fails when someone is already publishing it.
    ///
    /// Segment numbers come from the stream's timeline (see [`codec::hls::segmenter`]), so
    /// origins fed the same ingest number the same media alike; a room published again never
    /// goes below the numbers it used before.
    pub fn publish(self: &Arc<Self>, room: &str) -> Result<Publication, StoreError> {
        let mut streams = lock(&self.streams);
        let stream = streams
            .entry(room.to_string())
            .or_insert_with(|| {
                Arc::new(Stream {
                    state: Mutex::new(StreamState {
                        live: false,
                        generation: 0,
                        revision: 0,
                        next_msn: 0,
                        expected: Default::default(),
                        renditions: BTreeMap::new(),
                    }),
                    changed: watch::Sender::new(0),
                })
            })
            .clone();
        let generation = {
            let mut state = lock(&stream.state);
            if state.live {
                return Err(StoreError::Live(room.to_string()));
            }
            state.live = true;
            state.generation += 1;
            state.revision += 1;
            // Renditions of the previous publish stay until their replacements appear, each
            // then continues its numbering after a discontinuity.
            state.generation
        };
        Ok(Publication {
            store: self.clone(),
            room: room.to_string(),
            stream,
            generation,
        })
    }

    fn stream(&self, room: &str) -> Result<Arc<Stream>, StoreError> {
        lock(&self.streams)
            .get(room)
            .cloned()
            .ok_or_else(|| StoreError::NoStream(room.to_string()))
    }

    /// The rooms being published right now, by name.
    pub fn live_rooms(&self) -> Vec<String> {
        let mut rooms: Vec<String> = lock(&self.streams)
            .iter()
            .filter(|(_, s)| lock(&s.state).live)
            .map(|(room, _)| room.clone())
            .collect();
        rooms.sort();
        rooms
    }

    /// How many rooms are being published right now.
    pub fn live_count(&self) -> usize {
        lock(&self.streams)
            .values()
            .filter(|s| lock(&s.state).live)
            .count()
    }

    /// The multivariant playlist of `room`. Waits (up to the block timeout) for a stream that
    /// is live but has not produced its first part yet, or whose video frame rates are not
    /// measured yet (a few frames more).
    pub async fn multivariant(&self, room: &str) -> Result<String, StoreError> {
        let stream = self.stream(room)?;
        let has_media = |r: &Rendition| r.playlist.is_ended() || r.playlist.last_part().is_some();
        let rate_known = |r: &Rendition| {
            r.frame_rate.is_some()
                || r.playlist.is_ended()
                || codec::hls::is_shared_audio(&r.config)
        };
        let complete = stream
            .wait(self.options.block_timeout(), |s| {
                // Every rendition declared or announced so far has media, so neither the audio
                // group nor a rung whose first frames are still encoding is left out; and every
                // video rendition has its FRAME-RATE (the first segment may be a few frames).
                let ready = !s.renditions.is_empty()
                    && s.renditions.values().all(has_media)
                    && s.renditions.values().all(rate_known)
                    && s.expected
                        .iter()
                        .all(|p| s.renditions.contains_key(&p.name));
                ready.then(|| s.multivariant(self.options.part_target))
            })
            .await;
        match complete {
            // A rung that never came (shed before its first frame): serve what has media.
            Err(StoreError::Timeout) => {
                let s = lock(&stream.state);
                if s.renditions.values().any(has_media) {
                    Ok(s.multivariant(self.options.part_target))
                } else {
                    complete
                }
            }
            other => other,
        }
    }

    /// A media playlist, honouring `_HLS_msn`/`_HLS_part` (blocking) and `_HLS_skip` (delta).
    pub async fn media_playlist(
        &self,
        room: &str,
        rendition: &str,
        request: &BlockingRequest,
    ) -> Result<Bytes, StoreError> {
        let stream = self.stream(room)?;
        stream
            .wait_result(self.options.block_timeout(), |s| {
                let r = s.rendition(rendition)?;
                if r.playlist.last_part().is_none() && !r.playlist.is_ended() {
                    return Ok(None);
                }
                // An ended playlist is always Ready: blocking requests get ENDLIST at once.
                match r.playlist.check_blocking(request) {
                    Blocking::Ready => Ok(Some(r.rendered(s.revision, request.skip, || {
                        r.playlist.render(request.skip, &s.reports(rendition))
                    }))),
                    Blocking::Wait => Ok(None),
                    Blocking::TooFar => Err(StoreError::TooFarAhead),
                }
            })
            .await
    }

    /// An init segment, part or segment. A part or segment that is next to be published is
    /// waited for; one that is further ahead or already gone is not found.
    pub async fn object(
        &self,
        room: &str,
        rendition: &str,
        object: Object,
    ) -> Result<Bytes, StoreError> {
        let stream = self.stream(room)?;
        stream
            .wait_result(self.options.block_timeout(), |s| {
                let r = s.rendition(rendition)?;
                r.object(object)
            })
            .await
    }
}

impl Stream {
    /// Runs `check` under the lock until it yields a value, waking on every change, for at
    /// most `timeout`.
    async fn wait<T>(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&StreamState) -> Option<T>,
    ) -> Result<T, StoreError> {
        self.wait_result(timeout, |s| Ok(check(s))).await
    }

    async fn wait_result<T>(
        &self,
        timeout: Duration,
        mut check: impl FnMut(&StreamState) -> Result<Option<T>, StoreError>,
    ) -> Result<T, StoreError> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut changes = self.changed.subscribe();
        loop {
            // Mark the current version seen before checking, so a change that lands between
            // the check and the wait still wakes us.
            changes.borrow_and_update();
            if let Some(value) = check(&lock(&self.state))? {
                return Ok(value);
            }
            match tokio::time::timeout_at(deadline, changes.changed()).await {
                Ok(Ok(())) => continue,
                Ok(Err(_)) => return Err(StoreError::Gone),
                Err(_) => return Err(StoreError::Timeout),
            }
        }
    }

    fn notify(&self) {
        self.changed.send_modify(|v| *v = v.wrapping_add(1));
    }
}

impl StreamState {
    fn rendition(&self, name: &str) -> Result<&Rendition, StoreError> {
        self.renditions
            .get(name)
            .ok_or_else(|| StoreError::NoRendition(name.to_string()))
    }

    fn reports(&self, except: &str) -> Vec<RenditionReport> {
        self.renditions
            .iter()
            .filter(|(name, r)| name.as_str() != except && !r.playlist.is_ended())
            .filter_map(|(name, r)| {
                let (last_msn, last_part) = r.playlist.last_part()?;
                Some(RenditionReport {
                    uri: format!("../{name}/index.m3u8"),
                    last_msn,
                    last_part,
                })
            })
            .collect()
    }

    /// The multivariant playlist of the live renditions (all of them once all ended): video
    /// in the ladder's order (players start with the first variant listed), never the order
    /// in which the rungs' encoders happened to answer, renditions outside the ladder
    /// (passthrough) after it by name; each with its measured bandwidth, else the rung's
    /// configured one, else an estimate from its parts so far.
    fn multivariant(&self, part_target: Duration) -> String {
        let all_ended = self.renditions.values().all(|r| r.playlist.is_ended());
        let mut live: Vec<(&String, &Rendition)> = self
            .renditions
            .iter()
            .filter(|(_, r)| all_ended || !r.playlist.is_ended())
            .collect();
        live.sort_by_key(|(name, _)| {
            let planned = self.expected.iter().position(|p| &p.name == *name);
            (planned.unwrap_or(usize::MAX), name.as_str())
        });
        let renditions: Vec<multivariant::Rendition> = live
            .into_iter()
            .map(|(name, r)| {
                let planned = self.expected.iter().find(|p| &p.name == name);
                let (peak_bps, average_bps) = match (r.measured(), planned) {
                    (Some(measured), _) => measured,
                    (None, Some(p)) => (p.peak_bps, Some(p.average_bps)),
                    (None, None) => r.bandwidth(part_target),
                };
                multivariant::Rendition {
                    name,
                    config: &r.config,
                    peak_bps,
                    average_bps,
                    frame_rate: r.frame_rate,
                }
            })
            .collect();
        multivariant::compose(&renditions)
    }
}

impl Rendition {
    /// The media playlist with `skip` as of `revision`: the one rendered at that revision,
    /// else `render`'s, kept for the next reader. A playlist also lists other renditions'
    /// latest parts (`EXT-X-RENDITION-REPORT`), so the revision is the whole stream's.
    fn rendered(&self, revision: u64, skip: SkipRequest, render: impl FnOnce() -> String) -> Bytes {
        let slot = match skip {
            SkipRequest::No => 0,
            SkipRequest::Yes => 1,
            SkipRequest::V2 => 2,
        };
        let mut rendered = lock(&self.rendered);
        match &rendered[slot] {
            Some((at, text)) if *at == revision => text.clone(),
            _ => {
                let text = Bytes::from(render());
                rendered[slot] = Some((revision, text.clone()));
                text
            }
        }
    }

    fn object(&self, object: Object) -> Result<Option<Bytes>, StoreError> {
        let next = self.playlist.last_part();
        match object {
            Object::Init { id: None } => Ok(self.inits.last().map(|(_, b)| b.clone())),
            Object::Init { id: Some(id) } => match self.inits.iter().find(|(i, _)| *i == id) {
                Some((_, b)) => Ok(Some(b.clone())),
                None => Err(StoreError::NoObject(init_name(id))),
            },
            Object::Part { msn, index } => {
                if let Some(b) = self.parts.get(&(msn, index)) {
                    return Ok(Some(b.clone()));
                }
                // The preload-hinted part (the next one, in this segment or the next) is
                // waited for; anything else is not there.
                let hinted = match next {
                    Some((m, i)) => (msn == m && index == i + 1) || (msn == m + 1 && index == 0),
                    None => index == 0,
                };
                if hinted && !self.playlist.is_ended() {
                    Ok(None)
                } else {
                    Err(StoreError::NoObject(format!("part {msn}.{index}")))
                }
            }
            Object::Segment { msn } => {
                if let Some(b) = self.segments.get(&msn) {
                    return Ok(Some(b.clone()));
                }
                let building = match next {
                    Some((m, _)) => msn == m || msn == m + 1,
                    None => true,
                };
                if building && !self.playlist.is_ended() {
                    Ok(None)
                } else {
                    Err(StoreError::NoObject(format!("segment {msn}")))
                }
            }
        }
    }

    /// (peak, average) bits per second of complete segments, once one has ended.
    fn measured(&self) -> Option<(u64, Option<u64>)> {
        if self.total_secs > 0.0 {
            let average = (self.total_bits as f64 / self.total_secs) as u64;
            return Some((self.peak_bps.max(average), Some(average)));
        }
        None
    }

    /// (peak, average) bits per second of complete segments; before the first segment ends,
    /// an estimate from the parts so far.
    fn bandwidth(&self, part_target: Duration) -> (u64, Option<u64>) {
        if let Some(measured) = self.measured() {
            return measured;
        }
        let bits: u64 = self.open.iter().map(|p| p.len() as u64 * 8).sum();
        // Parts are cut on the part target, so their count times the target is a fair estimate.
        let secs = (self.open.len() as f64 * part_target.as_secs_f64()).max(0.001);
        ((bits as f64 / secs) as u64, None)
    }
}

/// The writing side of one publish of one room. Dropping it ends the stream: playlists get
/// `EXT-X-ENDLIST` and the room is forgotten after the linger time.
pub struct Publication {
    store: Arc<Store>,
    room: String,
    stream: Arc<Stream>,
    generation: u64,
}

impl Publication {
    pub fn room(&self) -> &str {
        &self.room
    }

    /// Declares (or re-declares, after a configuration change) a rendition and its init
    /// segment. Returns how its segmenter numbers the first segment: a rendition already in
    /// the playlist goes on with the next number (after a discontinuity); a new one takes its
    /// timeline's numbers, above any the room used before.
    pub fn set_rendition(&self, name: &str, config: TrackConfig, init: Bytes) -> FirstMsn {
        let options = self.store.options.clone();
        let id = init_id(&init);
        let first = self.with_state(|s| {
            let first_msn = FirstMsn::Timeline {
                at_least: s.next_msn,
            };
            match s.renditions.get_mut(name) {
                Some(r) => {
                    let continues = r.playlist.last_part().map(|(m, _)| m + 1);
                    r.config = config;
                    r.inits.retain(|(i, _)| *i != id);
                    r.inits.push((id, init));
                    r.open.clear();
                    r.playlist.mark_discontinuity();
                    r.playlist.set_map(&init_name(id));
                    continues.map_or(first_msn, FirstMsn::Exactly)
                }
                None => {
                    let mut playlist = MediaPlaylist::new(PlaylistOptions {
                        target_duration: options.segment_target,
                        part_target: options.part_target,
                        window: options.window,
                    });
                    playlist.set_map(&init_name(id));
                    s.renditions.insert(
                        name.to_string(),
                        Rendition {
                            config,
                            inits: vec![(id, init)],
                            playlist,
                            parts: BTreeMap::new(),
                            segments: BTreeMap::new(),
                            open: Vec::new(),
                            peak_bps: 0,
                            total_bits: 0,
                            total_secs: 0.0,
                            frame_rate: None,
                            rendered: Mutex::default(),
                        },
                    );
                    first_msn
                }
            }
        });
        first.unwrap_or(FirstMsn::Timeline { at_least: 0 })
    }

    /// Announces the renditions that will appear once their first frames are encoded (the
    /// ladder of this source, in its order), replacing an earlier ladder's.
    pub fn expect_renditions(&self, planned: &[Planned]) {
        self.with_state(|s| s.expected = planned.to_vec());
    }

    /// Records the measured frame rate of a video rendition (frames per second).
    pub fn set_frame_rate(&self, name: &str, fps: f64) {
        self.with_state(|s| {
            if let Some(r) = s.renditions.get_mut(name) {
                r.frame_rate = Some(fps);
            }
        });
    }

    /// Stops serving a rendition as live (its source went away mid-stream).
    pub fn end_rendition(&self, name: &str) {
        self.with_state(|s| {
            if let Some(r) = s.renditions.get_mut(name) {
                r.playlist.set_ended();
            }
        });
    }

    /// Publishes what a rendition's segmenter produced, all at once: a waiter sees a part and
    /// the end of its segment together, so a playlist never hints at a part that the segment
    /// end already ruled out.
    pub fn publish(&self, rendition: &str, outputs: &mut Vec<SegmenterOutput>) {
        self.with_state(|s| {
            for output in outputs.drain(..) {
                match output {
                    SegmenterOutput::Part(part) => s.push_part(rendition, part),
                    SegmenterOutput::SegmentEnd { msn, duration } => {
                        s.end_segment(rendition, msn, duration)
                    }
                }
            }
        });
    }

    /// Publishes a completed part. Its program date-time is its place on the timeline
    /// ([`Part::time`], which the pipeline puts on the wall clock).
    pub fn push_part(&self, rendition: &str, part: Part) {
        self.with_state(|s| s.push_part(rendition, part));
    }

    /// Closes a segment: its bytes become the concatenation of its parts.
    pub fn end_segment(&self, rendition: &str, msn: u64, duration: Duration) {
        self.with_state(|s| s.end_segment(rendition, msn, duration));
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut StreamState) -> T) -> Option<T> {
        let out = {
            let mut state = lock(&self.stream.state);
            if state.generation != self.generation {
                return None;
            }
            state.revision += 1;
            f(&mut state)
        };
        self.stream.notify();
        Some(out)
    }
}

impl StreamState {
    fn push_part(&mut self, rendition: &str, part: Part) {
        let Some(r) = self.renditions.get_mut(rendition) else {
            return;
        };
        r.playlist.push_part(
            part.msn,
            part.index,
            part.duration,
            part.independent,
            crate::clock::ticks_to_ms(part.time, r.config.timescale()),
        );
        r.parts.insert((part.msn, part.index), part.bytes.clone());
        r.open.push(part.bytes);
        self.next_msn = self.next_msn.max(part.msn + 1);
    }

    fn end_segment(&mut self, rendition: &str, msn: u64, duration: Duration) {
        let Some(r) = self.renditions.get_mut(rendition) else {
            return;
        };
        let mut bytes = BytesMut::with_capacity(r.open.iter().map(Bytes::len).sum());
        for part in r.open.drain(..) {
            bytes.extend_from_slice(&part);
        }
        let bits = bytes.len() as u64 * 8;
        let secs = duration.as_secs_f64();
        if secs > 0.0 {
            r.peak_bps = r.peak_bps.max((bits as f64 / secs) as u64);
            r.total_bits += bits;
            r.total_secs += secs;
        }
        r.segments.insert(msn, bytes.freeze());
        r.playlist.end_segment(msn, duration);
        // Forget what left the playlist window; keep parts only for the recent segments
        // that still list them (three target durations, plus one for readers in flight).
        if let Some(oldest) = r.playlist.oldest_msn() {
            r.segments = r.segments.split_off(&oldest);
        }
        if r.inits.len() > 1 {
            let used: Vec<String> = r.playlist.maps().map(str::to_string).collect();
            r.inits.retain(|(id, _)| used.contains(&init_name(*id)));
        }
        let keep_parts_from = msn.saturating_sub(4);
        r.parts = r.parts.split_off(&(keep_parts_from, 0));
    }
}

impl Drop for Publication {
    fn drop(&mut self) {
        let empty = self.with_state(|s| {
            s.live = false;
            for r in s.renditions.values_mut() {
                r.playlist.set_ended();
            }
            s.renditions.is_empty()
        });
        let store = self.store.clone();
        let room = self.room.clone();
        let generation = self.generation;
        let forget = move || {
            let mut streams = lock(&store.streams);
            let stale = streams.get(&room).is_some_and(|s| {
                let state = lock(&s.state);
                !state.live && state.generation == generation
            });
            if stale {
                streams.remove(&room);
            }
        };
        // A room that never had media (its publisher was refused in the handshake, or left
        // before the first frame) goes at once: a flood of such attempts holds nothing.
        if empty == Some(true) {
            forget();
            return;
        }
        // Forget the room after the linger time unless it was published again meanwhile.
        let linger = self.store.options.linger;
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                tokio::time::sleep(linger).await;
                forget();
            });
        }
    }
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it: the state here is
/// always left consistent between statements, so poisoning carries no information.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests;
