//! The LL-HLS media playlist of one rendition: its state and its text.
//!
//! [`MediaPlaylist`] records the parts and segments a [`super::segmenter::Segmenter`] produced
//! (the caller forwards them with [`MediaPlaylist::push_part`] and
//! [`MediaPlaylist::end_segment`]), keeps a sliding window of complete segments, answers
//! whether a blocking playlist request can be served ([`MediaPlaylist::check_blocking`]), and
//! writes the playlist text per RFC 8216bis ([`MediaPlaylist::render`]), delta updates included.
//! It stores no media bytes and reads no clock: the caller passes each part's program
//! date-time in (stamped where the stream entered, see `origin::clock`).
//!
//! URIs are relative: `segN.m4s`, `partN.K.m4s`, and the init segment the caller names with
//! [`MediaPlaylist::set_map`] (`EXT-X-MAP`, repeated where it changes).

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;

use super::query::{BlockingRequest, SkipRequest};

const NANOS_PER_SEC: u128 = 1_000_000_000;

/// Sizes of the playlist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PlaylistOptions {
    /// The segment target; `EXT-X-TARGETDURATION` is it rounded up to whole seconds (or the
    /// longest segment, rounded, if one was longer). Default 2 s.
    pub target_duration: Duration,
    /// The part target (`PART-TARGET`). Default 333 334 µs.
    pub part_target: Duration,
    /// Complete segments kept in the playlist (at least 1). Default 10.
    pub window: usize,
}

impl Default for PlaylistOptions {
    fn default() -> Self {
        Self {
            target_duration: Duration::from_secs(2),
            part_target: Duration::from_micros(333_334),
            window: 10,
        }
    }
}

/// How a blocking playlist request stands against the current playlist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Blocking {
    /// Answer now: no blocking asked, what was asked is there, or the playlist has ended.
    Ready,
    /// Not there yet and within reach: hold the request until the playlist changes.
    Wait,
    /// Further ahead than RFC 8216bis allows (more than two segments, or more than the Advance
    /// Part Limit of parts): answer 400.
    TooFar,
}

/// An `EXT-X-RENDITION-REPORT` for another rendition of the same stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RenditionReport {
    /// URI of that rendition's playlist relative to this one, e.g. `../720p/index.m3u8`.
    pub uri: String,
    /// Its newest media sequence number ([`MediaPlaylist::last_part`]).
    pub last_msn: u64,
    /// Its newest part index in that segment.
    pub last_part: u32,
}

#[derive(Clone, Debug)]
struct PartEntry {
    index: u32,
    duration: Duration,
    independent: bool,
}

#[derive(Clone, Debug)]
struct SegmentEntry {
    msn: u64,
    parts: Vec<PartEntry>,
    /// `Some` once the segment is complete (`EXTINF`).
    duration: Option<Duration>,
    /// `EXT-X-PROGRAM-DATE-TIME` in milliseconds since the Unix epoch.
    pdt_ms: i64,
    /// Preceded by `EXT-X-DISCONTINUITY`.
    discontinuity: bool,
    /// URI of its init segment (`EXT-X-MAP`).
    map: Arc<str>,
}

impl SegmentEntry {
    fn parts_duration(&self) -> Duration {
        self.parts.iter().map(|p| p.duration).sum()
    }

    /// Its duration so far: `EXTINF` when complete, else the sum of its parts.
    fn current_duration(&self) -> Duration {
        self.duration.unwrap_or_else(|| self.parts_duration())
    }
}

/// The state of one rendition's media playlist.
#[derive(Clone, Debug)]
pub struct MediaPlaylist {
    options: PlaylistOptions,
    /// The window: complete segments, then at most one open segment at the back.
    segments: VecDeque<SegmentEntry>,
    discontinuity_sequence: u64,
    /// The next segment starts after a discontinuity.
    pending_discontinuity: bool,
    ended: bool,
    /// The init segment of segments opened from now on.
    map: Arc<str>,
    /// Every segment so far began with an independent part (`EXT-X-INDEPENDENT-SEGMENTS`).
    all_independent: bool,
    /// `EXT-X-TARGETDURATION` in seconds; only grows.
    target_secs: u64,
}

impl MediaPlaylist {
    /// An empty playlist.
    pub fn new(options: PlaylistOptions) -> Self {
        let target_secs = ceil_secs(options.target_duration).max(1);
        Self {
            options: PlaylistOptions {
                window: options.window.max(1),
                ..options
            },
            segments: VecDeque::new(),
            discontinuity_sequence: 0,
            pending_discontinuity: false,
            ended: false,
            map: Arc::from("init.mp4"),
            all_independent: true,
            target_secs,
        }
    }

    /// Record a completed part whose first sample has program date-time `start_unix_ms`
    /// (ms since the Unix epoch, derived from the media timestamps, so it carries no arrival
    /// jitter and is the same on every origin).
    ///
    /// The first part of a segment opens it, and its time becomes the segment's
    /// `EXT-X-PROGRAM-DATE-TIME`. A part for a newer segment closes a segment left open; stale
    /// or repeated parts are ignored. A part after [`Self::set_ended`] makes the playlist live
    /// again.
    pub fn push_part(
        &mut self,
        msn: u64,
        index: u32,
        duration: Duration,
        independent: bool,
        start_unix_ms: i64,
    ) {
        let part = PartEntry {
            index,
            duration,
            independent,
        };
        if let Some(open) = self.segments.back_mut().filter(|s| s.duration.is_none()) {
            if open.msn == msn {
                if open.parts.last().is_none_or(|p| p.index < index) {
                    open.parts.push(part);
                    self.ended = false;
                }
                return;
            }
            if open.msn > msn {
                return;
            }
            self.close_open();
        }
        if self.segments.back().is_some_and(|s| s.msn >= msn) {
            return;
        }
        self.all_independent &= independent;
        self.ended = false;
        self.segments.push_back(SegmentEntry {
            msn,
            parts: vec![part],
            duration: None,
            pdt_ms: start_unix_ms,
            discontinuity: std::mem::take(&mut self.pending_discontinuity),
            map: self.map.clone(),
        });
    }

    /// Segments opened from now on use the init segment at `uri` (its `EXT-X-MAP`).
    pub fn set_map(&mut self, uri: &str) {
        if *self.map != *uri {
            self.map = Arc::from(uri);
        }
    }

    /// The init segments the window's segments use, and the one new segments will use.
    pub fn maps(&self) -> impl Iterator<Item = &str> {
        self.segments
            .iter()
            .map(|s| &*s.map)
            .chain(std::iter::once(&*self.map))
    }

    /// Segment `msn` is complete and lasts `duration`. Ignored unless `msn` is the open segment.
    pub fn end_segment(&mut self, msn: u64, duration: Duration) {
        let Some(open) = self
            .segments
            .back_mut()
            .filter(|s| s.duration.is_none() && s.msn == msn)
        else {
            return;
        };
        open.duration = Some(duration);
        self.completed();
    }

    /// The next segment starts after a discontinuity (re-publish, timeline break): it gets
    /// `EXT-X-DISCONTINUITY`. An open segment is closed with the parts it has.
    pub fn mark_discontinuity(&mut self) {
        self.close_open();
        self.pending_discontinuity = true;
    }

    /// The stream ended: `EXT-X-ENDLIST`, no preload hint, blocking requests answered at once.
    /// An open segment is closed with the parts it has.
    pub fn set_ended(&mut self) {
        self.close_open();
        self.ended = true;
    }

    /// Whether [`Self::set_ended`] was called (and no part came since).
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    /// The newest part: its segment's media sequence number and its index.
    pub fn last_part(&self) -> Option<(u64, u32)> {
        let last = self.segments.back()?;
        Some((last.msn, last.parts.last()?.index))
    }

    /// The part expected next (the preload hint), unless the playlist is empty or ended.
    pub fn next_part(&self) -> Option<(u64, u32)> {
        if self.ended {
            return None;
        }
        let last = self.segments.back()?;
        match (last.duration, last.parts.last()) {
            (None, Some(part)) => Some((last.msn, part.index.saturating_add(1))),
            _ => Some((last.msn.saturating_add(1), 0)),
        }
    }

    /// Whether part `index` of segment `msn` is in the window.
    pub fn has_part(&self, msn: u64, index: u32) -> bool {
        self.segment(msn)
            .is_some_and(|s| s.parts.iter().any(|p| p.index == index))
    }

    /// Whether segment `msn` is complete and in the window.
    pub fn has_segment(&self, msn: u64) -> bool {
        self.segment(msn).is_some_and(|s| s.duration.is_some())
    }

    /// The oldest media sequence number in the window: bytes of older segments and their parts
    /// can be dropped.
    pub fn oldest_msn(&self) -> Option<u64> {
        self.segments.front().map(|s| s.msn)
    }

    /// Classify a playlist request (RFC 8216bis 6.2.5.2).
    ///
    /// Without `_HLS_msn` it is [`Blocking::Ready`]. With `_HLS_msn` only, it is ready once
    /// segment `msn` (or a later one) is complete; with `_HLS_part` too, once part
    /// (`msn`, `part`) or any later part exists, so a part index past the end of a completed
    /// segment is answered by the next segment's first part. It is [`Blocking::TooFar`] when
    /// `msn` is more than two past the newest segment, or the part is more than the Advance
    /// Part Limit (3 / part target in seconds, or 3 for targets of a second or more) ahead.
    pub fn check_blocking(&self, req: &BlockingRequest) -> Blocking {
        let Some(msn) = req.msn else {
            return Blocking::Ready;
        };
        if self.ended {
            return Blocking::Ready;
        }
        let Some((last_msn, last_part)) = self.last_part() else {
            return Blocking::Wait;
        };
        if msn > last_msn.saturating_add(2) {
            return Blocking::TooFar;
        }
        match req.part {
            None => {
                let complete = self.segments.iter().rev().find(|s| s.duration.is_some());
                if complete.is_some_and(|s| s.msn >= msn) {
                    Blocking::Ready
                } else {
                    Blocking::Wait
                }
            }
            Some(part) => {
                if (last_msn, last_part) >= (msn, part) {
                    return Blocking::Ready;
                }
                let per_segment = self.parts_per_segment();
                let ahead = if msn == last_msn {
                    u64::from(part - last_part)
                } else {
                    let rest_of_last = per_segment.saturating_sub(u64::from(last_part) + 1);
                    let between = (msn - last_msn - 1).saturating_mul(per_segment);
                    rest_of_last
                        .saturating_add(between)
                        .saturating_add(u64::from(part) + 1)
                };
                if ahead > self.advance_part_limit() {
                    Blocking::TooFar
                } else {
                    Blocking::Wait
                }
            }
        }
    }

    /// The playlist text. `skip` asks for a delta update (`EXT-X-SKIP` replaces segments older
    /// than `CAN-SKIP-UNTIL` before the end, when there are such); `reports` become
    /// `EXT-X-RENDITION-REPORT` lines.
    pub fn render(&self, skip: SkipRequest, reports: &[RenditionReport]) -> String {
        let mut out = String::with_capacity(256 + 128 * self.segments.len());
        let td = self.target_secs;
        let part_target = ceil_units(self.options.part_target);
        out.push_str("#EXTM3U\n#EXT-X-VERSION:9\n");
        let _ = writeln!(out, "#EXT-X-TARGETDURATION:{td}");
        let _ = writeln!(
            out,
            "#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK={},CAN-SKIP-UNTIL={}.0,CAN-SKIP-DATERANGES=YES",
            Units(part_target.saturating_mul(3)),
            td.saturating_mul(6)
        );
        let _ = writeln!(out, "#EXT-X-PART-INF:PART-TARGET={}", Units(part_target));
        let first_msn = self.segments.front().map_or(0, |s| s.msn);
        let _ = writeln!(out, "#EXT-X-MEDIA-SEQUENCE:{first_msn}");
        if self.discontinuity_sequence != 0 {
            let _ = writeln!(
                out,
                "#EXT-X-DISCONTINUITY-SEQUENCE:{}",
                self.discontinuity_sequence
            );
        }
        if self.all_independent {
            out.push_str("#EXT-X-INDEPENDENT-SEGMENTS\n");
        }
        let first_map = self.segments.front().map_or(&self.map, |s| &s.map);
        let _ = writeln!(out, "#EXT-X-MAP:URI=\"{}\"", super::quoted(first_map));
        let mut map = first_map;

        // Where each segment ends, in ns from the start of the window.
        let mut ends = Vec::with_capacity(self.segments.len());
        let mut total: u128 = 0;
        for s in &self.segments {
            total += s.current_duration().as_nanos();
            ends.push(total);
        }
        let parts_from = total.saturating_sub(u128::from(td) * 3 * NANOS_PER_SEC);
        let skipped = match skip {
            SkipRequest::No => 0,
            SkipRequest::Yes | SkipRequest::V2 => {
                let boundary = total.saturating_sub(u128::from(td) * 6 * NANOS_PER_SEC);
                self.segments
                    .iter()
                    .zip(&ends)
                    .take_while(|(s, end)| s.duration.is_some() && **end <= boundary)
                    .count()
            }
        };
        if skipped > 0 {
            let _ = write!(out, "#EXT-X-SKIP:SKIPPED-SEGMENTS={skipped}");
            if skip == SkipRequest::V2 {
                out.push_str(",RECENTLY-REMOVED-DATERANGES=\"\"");
            }
            out.push('\n');
        }

        for (s, end) in self.segments.iter().zip(&ends).skip(skipped) {
            if s.discontinuity {
                out.push_str("#EXT-X-DISCONTINUITY\n");
            }
            if s.map != *map {
                map = &s.map;
                let _ = writeln!(out, "#EXT-X-MAP:URI=\"{}\"", super::quoted(map));
            }
            let _ = writeln!(out, "#EXT-X-PROGRAM-DATE-TIME:{}", DateTime(s.pdt_ms));
            if *end > parts_from || s.duration.is_none() {
                for p in &s.parts {
                    let _ = write!(
                        out,
                        "#EXT-X-PART:DURATION={},URI=\"part{}.{}.m4s\"",
                        Units(round_units(p.duration)),
                        s.msn,
                        p.index
                    );
                    if p.independent {
                        out.push_str(",INDEPENDENT=YES");
                    }
                    out.push('\n');
                }
            }
            if let Some(d) = s.duration {
                let _ = writeln!(out, "#EXTINF:{},\nseg{}.m4s", Units(round_units(d)), s.msn);
            }
        }
        if let Some((msn, index)) = self.next_part() {
            let _ = writeln!(
                out,
                "#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part{msn}.{index}.m4s\""
            );
        }
        for r in reports {
            let _ = writeln!(
                out,
                "#EXT-X-RENDITION-REPORT:URI=\"{}\",LAST-MSN={},LAST-PART={}",
                super::quoted(&r.uri),
                r.last_msn,
                r.last_part
            );
        }
        if self.ended {
            out.push_str("#EXT-X-ENDLIST\n");
        }
        out
    }

    fn segment(&self, msn: u64) -> Option<&SegmentEntry> {
        let first = self.segments.front()?.msn;
        let guess = usize::try_from(msn.checked_sub(first)?).ok()?;
        match self.segments.get(guess) {
            Some(s) if s.msn == msn => Some(s),
            _ => self.segments.iter().find(|s| s.msn == msn),
        }
    }

    /// Close an open segment with the parts it has (no `end_segment` will come for it).
    fn close_open(&mut self) {
        if let Some(open) = self.segments.back_mut().filter(|s| s.duration.is_none()) {
            open.duration = Some(open.parts_duration());
            self.completed();
        }
    }

    /// The back segment was just completed: grow the target, slide.
    fn completed(&mut self) {
        let Some(last) = self.segments.back() else {
            return;
        };
        let duration = last.current_duration();
        self.target_secs = self.target_secs.max(round_secs(duration));
        while self.segments.len() > self.options.window {
            if let Some(old) = self.segments.pop_front() {
                if old.discontinuity {
                    self.discontinuity_sequence += 1;
                }
            }
        }
    }

    /// Parts in a target-length segment, rounded up.
    fn parts_per_segment(&self) -> u64 {
        let part = self.options.part_target.as_nanos().max(1);
        let segment = u128::from(self.target_secs) * NANOS_PER_SEC;
        u64::try_from(segment.div_ceil(part)).unwrap_or(u64::MAX)
    }

    /// RFC 8216bis Advance Part Limit, in parts: 3 / part target (s) below a second, else 3.
    fn advance_part_limit(&self) -> u64 {
        let part = self.options.part_target.as_nanos().max(1);
        if part >= NANOS_PER_SEC {
            3
        } else {
            // Rounded to nearest, so 333 334 µs parts give 9, not 8.99998 → 8.
            u64::try_from((3 * NANOS_PER_SEC + part / 2) / part).unwrap_or(u64::MAX)
        }
    }
}

/// Whole seconds, rounded up.
fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

/// Whole seconds, rounded to nearest (how `EXTINF` is compared with the target duration).
fn round_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() >= 500_000_000)
}

/// Duration in 10 µs units (5 decimals of a second), rounded up.
fn ceil_units(d: Duration) -> u64 {
    u64::try_from(d.as_nanos().div_ceil(10_000)).unwrap_or(u64::MAX)
}

/// Duration in 10 µs units, rounded to nearest.
fn round_units(d: Duration) -> u64 {
    u64::try_from((d.as_nanos() + 5_000) / 10_000).unwrap_or(u64::MAX)
}

/// Seconds with five decimals, from 10 µs units.
struct Units(u64);

impl std::fmt::Display for Units {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{:05}", self.0 / 100_000, self.0 % 100_000)
    }
}

/// ISO 8601 UTC date-time with milliseconds, from ms since the Unix epoch.
struct DateTime(i64);

impl std::fmt::Display for DateTime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = i128::from(self.0);
        let secs = ms.div_euclid(1000);
        let millis = ms.rem_euclid(1000);
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        write!(
            f,
            "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z",
            sod / 3600,
            sod % 3600 / 60,
            sod % 60
        )
    }
}

/// Proleptic Gregorian (year, month, day) of a day count since 1970-01-01 (H. Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i128) -> (i128, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i128::from(m <= 2);
    // d is in 1..=31 and m in 1..=12 by construction.
    (y, m as u32, d as u32)
}

#[cfg(test)]
mod tests;
