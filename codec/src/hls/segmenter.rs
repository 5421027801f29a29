//! The LL-HLS segmenter of one rendition: frames in, partial segments and segment ends out.
//!
//! A [`Segmenter`] owns the cutting rules of one track (video-only or audio-only rendition):
//! where segments start, where parts are cut (before a frame that would push the part past the
//! part target), and the decode timeline written into each fragment's `tfdt`. Each part comes
//! out as a finished `moof` + `mdat` ([`crate::fmp4::fragment`]). It does no IO and reads no
//! clock; playlists are [`super::playlist`]'s business.
//!
//! Segments follow the stream's own timeline, not the moment the segmenter started: the
//! presentation timeline is divided into slots of one segment target (slot = pts / target), a
//! segment starts at the first cut point (video: keyframe; audio: any frame) in a later slot
//! than the open segment's start, and a fresh segmenter numbers its first segment by that slot
//! ([`FirstMsn::Timeline`]). So two origins fed the same ingest, even one that joined late,
//! cut the same media into the same parts with the same numbers, and every rendition of a
//! stream (audio included) numbers the same time slot alike. Numbers stay consecutive: when a
//! slot holds no keyframe (a source GOP longer than the target), the next segment takes the
//! next number and a segmenter that joined later may number from then on one higher; the
//! ladder forces an IDR in every slot, so transcoded renditions never skip.
//!
//! The timeline may be moved onto the wall clock ([`Segmenter::set_timeline_offset`]: ticks
//! added to every pts), so that slots, and with them segment numbers, are wall-clock slots:
//! numbers a room used are not used again after a restart, and every origin given the same
//! offset (the ingest's clock stamp) numbers alike. Each part says where it starts on that
//! timeline ([`Part::time`]), which is its program date-time.
//!
//! Audio follows video: a stream's audio rendition is cut where its video is ([`Segmenter::lead`],
//! [`Segmenter::follow`]). The video segmenter notes where each of its parts starts on the
//! timeline (a [`Cut`]); the audio segmenter splits its frames at the AAC frame boundary
//! nearest each cut and numbers the part as the video part starting there. So every
//! (segment, part) covers the same time range in every rendition, whatever the encoder's
//! keyframe interval, and no audio part is a sliver left over at a segment's end: a player
//! loading part N of each gets the same stretch of time. An audio segmenter that hears of no
//! cut for [`FOLLOW_WAIT_SEGMENTS`] segment targets (an audio-only stream, a video track that
//! stopped) cuts on its own from then on.
//!
//! Timing is kept in track timescale ticks ([`TrackConfig::timescale`]) and converted to
//! [`Duration`] (rounded down to the nanosecond) only in the outputs.

use std::time::Duration;

use bytes::Bytes;

use crate::fmp4::{self, Sample};
use crate::{Frame, TrackConfig, TrackKind};

/// Samples per AAC frame: the duration of an audio frame in sampling-rate ticks.
const AAC_FRAME_TICKS: u32 = 1024;
/// Frame duration assumed for a lone video frame (no neighbour to measure against): 1/30 s.
const FALLBACK_VIDEO_FPS: u32 = 30;
/// How much media (in segment targets) a following segmenter holds while no cut comes before
/// it cuts on its own.
pub const FOLLOW_WAIT_SEGMENTS: u64 = 3;

/// Where the leading rendition starts a part: the part's number and its first frame's
/// timeline time (pts plus the timeline offset), in the ticks of whoever holds the `Cut`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cut {
    pub msn: u64,
    pub index: u32,
    pub time: u64,
}

impl Cut {
    /// The same cut in ticks of `to` instead of `from` (rounded to the nearest tick).
    pub fn rescale(self, from: u32, to: u32) -> Self {
        let time = (u128::from(self.time) * u128::from(to) + u128::from(from) / 2)
            / u128::from(from.max(1));
        Self {
            time: u64::try_from(time).unwrap_or(u64::MAX),
            ..self
        }
    }
}

/// Whose cutting rules a segmenter follows.
#[derive(Debug)]
enum Role {
    /// Its own: parts by the part target, segments by slot.
    Own,
    /// Its own, noting each part's start for followers.
    Lead(Vec<Cut>),
    /// The leader's cuts, oldest first, in this track's ticks.
    Follow(std::collections::VecDeque<Cut>),
}

/// How long segments and parts should be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SegmenterOptions {
    /// Minimum segment duration: a segment ends at the first cut point (video: keyframe) at or
    /// after this. Default 2 s.
    pub segment_target: Duration,
    /// Maximum part duration (`PART-TARGET`); a part is only longer when one frame is. Default
    /// 1/3 s (333 334 µs, rounded up so three parts fit a second).
    pub part_target: Duration,
}

impl Default for SegmenterOptions {
    fn default() -> Self {
        Self {
            segment_target: Duration::from_secs(2),
            part_target: Duration::from_micros(333_334),
        }
    }
}

/// How a segmenter numbers its first segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FirstMsn {
    /// From the timeline: the slot of the first frame (pts / segment target), but at least
    /// `at_least` (numbers a room used before are never reused).
    Timeline { at_least: u64 },
    /// Exactly this number: a rendition going on after a discontinuity, whose numbers must
    /// follow the ones already in its playlist.
    Exactly(u64),
}

/// A complete partial segment.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Part {
    /// Media sequence number of the segment this part belongs to.
    pub msn: u64,
    /// Index of the part in its segment, from 0.
    pub index: u32,
    /// Sum of the part's sample durations (rounded down to the nanosecond).
    pub duration: Duration,
    /// True when the part starts with a sync sample (`INDEPENDENT=YES`).
    pub independent: bool,
    /// Decode time of the part's first sample, in track timescale ticks (its `tfdt`).
    pub start_dts: u64,
    /// Where the part's first sample is presented on the stream's timeline (its pts plus the
    /// timeline offset), in track timescale ticks: with a wall-clock offset, its program
    /// date-time.
    pub time: u64,
    /// One `moof` + `mdat` fragment.
    pub bytes: Bytes,
}

/// What the segmenter produced.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SegmenterOutput {
    /// A complete partial segment: bytes = one moof+mdat fragment.
    Part(Part),
    /// Segment `msn` is complete (all its parts were emitted before this). `duration` is the sum
    /// of its parts' durations.
    SegmentEnd { msn: u64, duration: Duration },
}

/// The segment being built.
#[derive(Debug)]
struct OpenSegment {
    msn: u64,
    /// Timeline slot of the segment's first frame (its pts / segment target).
    slot: u64,
    /// Sum of the emitted parts' [`Part::duration`]s.
    duration: Duration,
    /// Index the open part will get.
    next_index: u32,
}

/// The part being built.
#[derive(Debug, Default)]
struct OpenPart {
    start_dts: u64,
    /// Timeline time of the first sample.
    time: u64,
    ticks: u64,
    samples: Vec<Sample>,
}

/// Cuts one rendition's frames into LL-HLS parts and segments.
///
/// Frames must come in decode order with growing `dts`. One frame is held back until the next
/// arrives, because a sample's duration is the distance to the next decode time. After
/// [`Segmenter::finish`] the segmenter may be fed a new timeline (a re-publish): numbering goes
/// on, and for video it waits for a keyframe again.
#[derive(Debug)]
pub struct Segmenter {
    config: TrackConfig,
    kind: TrackKind,
    /// Segment target in ticks, rounded up: the width of a timeline slot.
    segment_ticks: u64,
    /// Part target in ticks, rounded down: no multi-sample part holds more than this.
    part_ticks: u64,
    /// Number of the next segment, once known (see [`FirstMsn`]).
    next_msn: Option<u64>,
    /// Added to a frame's pts to place it on the timeline (see [`Self::set_timeline_offset`]).
    timeline_offset: u64,
    /// Lowest number a timeline-numbered first segment may take.
    msn_floor: u64,
    /// The held-back frame, waiting for its successor to know its duration.
    pending: Option<Frame>,
    /// Decode time the next committed sample gets in the output timeline.
    next_dts: Option<u64>,
    /// Duration of the last committed sample, to estimate the held frame's.
    last_duration: Option<u32>,
    segment: Option<OpenSegment>,
    part: OpenPart,
    role: Role,
}

impl Segmenter {
    /// A segmenter for one track whose first segment is numbered as `first` says.
    pub fn new(config: TrackConfig, options: SegmenterOptions, first: FirstMsn) -> Self {
        let timescale = config.timescale();
        let kind = config.kind();
        let (next_msn, msn_floor) = match first {
            FirstMsn::Timeline { at_least } => (None, at_least),
            FirstMsn::Exactly(msn) => (Some(msn), 0),
        };
        Self {
            segment_ticks: duration_to_ticks(options.segment_target, timescale, true),
            part_ticks: duration_to_ticks(options.part_target, timescale, false),
            config,
            kind,
            next_msn,
            timeline_offset: 0,
            msn_floor,
            pending: None,
            next_dts: None,
            last_duration: None,
            segment: None,
            part: OpenPart::default(),
            role: Role::Own,
        }
    }

    /// Notes where each part starts ([`Self::take_cuts`]), for renditions that follow this one.
    pub fn lead(&mut self) {
        self.role = Role::Lead(Vec::new());
    }

    /// Cuts where the leader's parts start ([`Self::cut_at`]) instead of by its own rules,
    /// until no cut came for [`FOLLOW_WAIT_SEGMENTS`] segment targets of media.
    pub fn follow(&mut self) {
        self.role = Role::Follow(std::collections::VecDeque::new());
    }

    /// The part starts noted since the last call (a leader's; empty otherwise), in this
    /// track's ticks.
    pub fn take_cuts(&mut self) -> Vec<Cut> {
        match &mut self.role {
            Role::Lead(cuts) => std::mem::take(cuts),
            _ => Vec::new(),
        }
    }

    /// A following segmenter learns where the leader starts a part (`cut.time` in this track's
    /// ticks); parts it completes are appended to `out`. Ignored by others.
    pub fn cut_at(&mut self, cut: Cut, out: &mut Vec<SegmenterOutput>) {
        if let Role::Follow(cuts) = &mut self.role {
            cuts.push_back(cut);
            self.apply_cuts(out);
        }
    }

    /// The track this segmenter cuts.
    pub fn config(&self) -> &TrackConfig {
        &self.config
    }

    /// Places the timeline: `ticks` (of this track's timescale) are added to every frame's
    /// pts for slots and [`Part::time`]. With the wall-clock time of the stream's pts 0 here,
    /// segments are numbered by wall-clock slot. Applies from the next frame; 0 (the default)
    /// keeps the stream's own timestamps.
    pub fn set_timeline_offset(&mut self, ticks: u64) {
        self.timeline_offset = ticks;
    }

    /// Add the next frame in decode order; completed parts and segments are appended to `out`.
    ///
    /// Video frames before the first keyframe are dropped. A frame whose `dts` does not grow
    /// gets the previous frame's duration, so the output timeline always moves forward.
    pub fn push(&mut self, frame: Frame, out: &mut Vec<SegmenterOutput>) {
        let frame = match self.kind {
            TrackKind::Audio => Frame {
                keyframe: true,
                ..frame
            },
            TrackKind::Video => frame,
        };
        let Some(prev) = self.pending.take() else {
            if self.kind == TrackKind::Video && !frame.keyframe {
                return;
            }
            self.pending = Some(frame);
            return;
        };
        let duration = match frame.dts.checked_sub(prev.dts) {
            Some(d) if d > 0 => u32::try_from(d).unwrap_or(u32::MAX),
            _ => self.fallback_duration(),
        };
        self.commit(prev, duration, out);
        self.cut_before(&frame, out);
        self.pending = Some(frame);
    }

    /// Flush the held frame as the last sample, emit the open part and close the segment.
    pub fn finish(&mut self, out: &mut Vec<SegmenterOutput>) {
        if let Some(frame) = self.pending.take() {
            let duration = self.fallback_duration();
            self.commit(frame, duration, out);
        }
        if let Role::Follow(cuts) = &mut self.role {
            cuts.clear();
        }
        self.close_segment(out);
        // A follower that never heard of a cut holds media no part will take.
        self.part = OpenPart::default();
        self.next_dts = None;
        self.last_duration = None;
    }

    /// Duration for a sample whose successor does not tell: the previous one, else one frame.
    fn fallback_duration(&self) -> u32 {
        self.last_duration.unwrap_or(match self.kind {
            TrackKind::Audio => AAC_FRAME_TICKS,
            TrackKind::Video => (self.config.timescale() / FALLBACK_VIDEO_FPS).max(1),
        })
    }

    /// Append `frame` with its now known `duration` to the open part, cutting first if needed.
    fn commit(&mut self, frame: Frame, duration: u32, out: &mut Vec<SegmenterOutput>) {
        if matches!(self.role, Role::Follow(_)) {
            self.commit_following(frame, duration, out);
            return;
        }
        let ticks = u64::from(duration);
        if self.starts_segment(&frame) {
            self.close_segment(out);
        }
        if !self.part.samples.is_empty() && self.part.ticks + ticks > self.part_ticks {
            self.flush_part(out);
        }
        let dts = *self.next_dts.get_or_insert(frame.dts);
        if self.segment.is_none() {
            let slot = self.slot(&frame);
            let msn = self.next_msn.unwrap_or_else(|| slot.max(self.msn_floor));
            self.segment = Some(OpenSegment {
                msn,
                slot,
                duration: Duration::ZERO,
                next_index: 0,
            });
            self.next_msn = Some(msn.saturating_add(1));
        }
        if self.part.samples.is_empty() {
            self.part.start_dts = dts;
            self.part.time = self.timeline(&frame);
            if let (Role::Lead(cuts), Some(segment)) = (&mut self.role, &self.segment) {
                cuts.push(Cut {
                    msn: segment.msn,
                    index: segment.next_index,
                    time: self.part.time,
                });
            }
        }
        self.append(frame, duration, dts);
    }

    /// Adds `frame` (lasting `duration`, decoded at `dts` on the output timeline) to the open
    /// part.
    fn append(&mut self, frame: Frame, duration: u32, dts: u64) {
        let ticks = u64::from(duration);
        self.part.ticks += ticks;
        self.part.samples.push(Sample {
            duration,
            cts: frame.cts,
            keyframe: frame.keyframe,
            data: frame.data,
        });
        self.next_dts = Some(dts.saturating_add(ticks));
        self.last_duration = Some(duration);
    }

    /// [`Self::commit`] for a follower: the frame joins the open part, which is split where
    /// the leader's cuts say.
    fn commit_following(&mut self, frame: Frame, duration: u32, out: &mut Vec<SegmenterOutput>) {
        let dts = *self.next_dts.get_or_insert(frame.dts);
        if self.part.samples.is_empty() {
            self.part.start_dts = dts;
            self.part.time = self.timeline(&frame);
        }
        self.append(frame, duration, dts);
        self.apply_cuts(out);
        if self.part.ticks > FOLLOW_WAIT_SEGMENTS * self.segment_ticks {
            self.stop_following(out);
        }
    }

    /// Splits the open part at each known cut the media has reached: the samples before it
    /// end the current part, the rest start the part the cut names.
    fn apply_cuts(&mut self, out: &mut Vec<SegmenterOutput>) {
        loop {
            let Role::Follow(cuts) = &mut self.role else {
                return;
            };
            let Some(&cut) = cuts.front() else {
                return;
            };
            // Numbers only grow: a cut at or before the open part is stale.
            let stale = match &self.segment {
                Some(s) => (cut.msn, cut.index) <= (s.msn, s.next_index),
                None => cut.msn < self.msn_floor,
            };
            if stale {
                cuts.pop_front();
                continue;
            }
            // The first sample whose middle is past the cut: the AAC frame boundary nearest
            // the cut is its start. None yet: wait for more media.
            let mut time = self.part.time;
            let mut dts = self.part.start_dts;
            let mut split = None;
            for (i, s) in self.part.samples.iter().enumerate() {
                let d = u64::from(s.duration);
                if 2 * time + d > 2 * cut.time {
                    split = Some(i);
                    break;
                }
                time += d;
                dts += d;
            }
            let Some(split) = split else {
                return;
            };
            cuts.pop_front();
            let rest = self.part.samples.split_off(split);
            let rest_ticks = rest.iter().map(|s| u64::from(s.duration)).sum::<u64>();
            self.part.ticks -= rest_ticks;
            match &mut self.segment {
                // Media before the leader's first part (its first keyframe) is not played.
                None => self.part = OpenPart::default(),
                Some(segment) if segment.msn == cut.msn => {
                    self.flush_part(out);
                    if let Some(segment) = &mut self.segment {
                        segment.next_index = cut.index;
                    }
                }
                Some(_) => self.close_segment(out),
            }
            if self.segment.is_none() {
                self.segment = Some(OpenSegment {
                    msn: cut.msn,
                    slot: time / self.segment_ticks.max(1),
                    duration: Duration::ZERO,
                    next_index: cut.index,
                });
                self.next_msn = Some(cut.msn.saturating_add(1));
            }
            self.part = OpenPart {
                start_dts: dts,
                time,
                ticks: rest_ticks,
                samples: rest,
            };
        }
    }

    /// No cut came for too long: cut by the own rules from here on. What was held before any
    /// cut is dropped (media from before the stream's first video part, or an audio-only
    /// stream's first seconds); an open segment ends with what it holds.
    fn stop_following(&mut self, out: &mut Vec<SegmenterOutput>) {
        self.role = Role::Own;
        match self.segment {
            None => self.part = OpenPart::default(),
            Some(_) => self.close_segment(out),
        }
    }

    /// Cut as early as the next frame allows, so a part goes out without waiting one more
    /// frame: close the segment if `next` will start a new one, or the part if `next` is
    /// expected (at the last sample's duration) not to fit. [`Self::commit`] re-checks with the
    /// real duration.
    fn cut_before(&mut self, next: &Frame, out: &mut Vec<SegmenterOutput>) {
        if matches!(self.role, Role::Follow(_)) {
            return;
        }
        if self.starts_segment(next) {
            self.close_segment(out);
            return;
        }
        let estimate = u64::from(self.last_duration.unwrap_or(0));
        if !self.part.samples.is_empty() && self.part.ticks + estimate > self.part_ticks {
            self.flush_part(out);
        }
    }

    /// Whether `frame` is the first of a new segment: a cut point in a later timeline slot.
    /// (A pts that went backwards, a broken timeline, also cuts at the next keyframe.)
    fn starts_segment(&self, frame: &Frame) -> bool {
        match &self.segment {
            None => true,
            Some(segment) => frame.keyframe && self.slot(frame) != segment.slot,
        }
    }

    /// Where `frame` is presented on the timeline, in ticks.
    fn timeline(&self, frame: &Frame) -> u64 {
        u64::try_from(frame.pts())
            .unwrap_or(0)
            .saturating_add(self.timeline_offset)
    }

    /// The timeline slot of `frame`: its timeline time in whole segment targets.
    fn slot(&self, frame: &Frame) -> u64 {
        self.timeline(frame) / self.segment_ticks.max(1)
    }

    /// Emit the open part, if it has samples.
    fn flush_part(&mut self, out: &mut Vec<SegmenterOutput>) {
        if self.part.samples.is_empty() {
            return;
        }
        let Some(segment) = &mut self.segment else {
            return;
        };
        let part = std::mem::take(&mut self.part);
        let duration = ticks_to_duration(part.ticks, self.config.timescale());
        let independent = part.samples.first().is_some_and(|s| s.keyframe);
        // `fragment` only fails for an empty part (excluded above) or one over 4 GiB, which no
        // frame source produces; such a part is published empty rather than breaking numbering.
        let bytes = fmp4::fragment(
            fragment_sequence(segment.msn, segment.next_index),
            part.start_dts,
            &part.samples,
        )
        .unwrap_or_default();
        out.push(SegmenterOutput::Part(Part {
            msn: segment.msn,
            index: segment.next_index,
            duration,
            independent,
            start_dts: part.start_dts,
            time: part.time,
            bytes,
        }));
        segment.next_index = segment.next_index.saturating_add(1);
        segment.duration += duration;
    }

    /// Emit the open part and end the open segment, if any.
    fn close_segment(&mut self, out: &mut Vec<SegmenterOutput>) {
        self.flush_part(out);
        if let Some(segment) = self.segment.take() {
            out.push(SegmenterOutput::SegmentEnd {
                msn: segment.msn,
                duration: segment.duration,
            });
        }
    }
}

/// The `mfhd` sequence number of part `index` of segment `msn`: growing with the numbering and
/// derived from it (not counted from the segmenter's start), so origins that joined a stream at
/// different times write identical fragments. Wraps after about 4 million segments.
fn fragment_sequence(msn: u64, index: u32) -> u32 {
    (msn.wrapping_mul(1000)
        .wrapping_add(u64::from(index.min(999))) as u32)
        .wrapping_add(1)
}

/// `d` in ticks of `timescale`, rounded up or down.
fn duration_to_ticks(d: Duration, timescale: u32, round_up: bool) -> u64 {
    let scaled = d.as_nanos() * u128::from(timescale);
    let ticks = if round_up {
        scaled.div_ceil(1_000_000_000)
    } else {
        scaled / 1_000_000_000
    };
    u64::try_from(ticks).unwrap_or(u64::MAX)
}

/// `ticks` of `timescale` as a [`Duration`], rounded down to the nanosecond.
pub(crate) fn ticks_to_duration(ticks: u64, timescale: u32) -> Duration {
    if timescale == 0 {
        return Duration::ZERO;
    }
    let nanos = u128::from(ticks) * 1_000_000_000 / u128::from(timescale);
    Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests;
