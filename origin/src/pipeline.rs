//! One publish of one stream, from transport-stream bytes to published parts.
//!
//! [`Pipeline`] does no IO and reads no clock: the ingest task hands it each SRT payload with
//! the wall-clock time it read, and ladder outputs as they arrive. The publish's
//! [`IngestClock`] (the edge's stamps, or the arrival of the first frame) places every
//! rendition's media on the wall clock: segment numbers and program date-times come from it. Audio is passed through as
//! the shared `audio` rendition. Video either goes through the transcoding ladder (one
//! rendition per rung, encoded on the ladder's own thread, see [`crate::transcode`]) or, with
//! transcoding off or unusable for this source, is passed through as `{height}p`.
//!
//! The audio rendition is cut where the video is: the first video rendition (the passthrough,
//! or the ladder's first rung) leads, and each of its part starts is handed to the audio
//! segmenter (see [`codec::hls::segmenter`]), so a part number covers the same time in every
//! rendition.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use codec::hls::segmenter::{Cut, Segmenter, SegmenterOptions, SegmenterOutput};
use codec::ingest::{Demuxer, MediaEvent};
use codec::{fmp4, Frame, TrackConfig, TrackKind};
use hwaccel::LadderOutput;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::clock::IngestClock;
use crate::metrics::Metrics;
use crate::store::Publication;
use crate::transcode::{TranscodeSettings, Transcoder};

/// Frames over which a video rendition's frame rate is measured: the first part's worth, so
/// FRAME-RATE is known before the multivariant playlist is first served (which waits for a
/// part). Constant-rate sources give the exact rate (nine 3003-tick gaps: 29.970).
const RATE_FRAMES: u64 = 10;

/// Ladder outputs buffered between the ladder thread and the ingest task.
const LADDER_OUTPUT: usize = 256;

/// Counters of one publish, for logs and metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct PipelineStats {
    pub bytes_in: u64,
    pub frames: u64,
    pub parts: u64,
    pub warnings: u64,
    /// Source frames dropped because the ladder was behind real time.
    pub dropped: u64,
}

/// Where a source track's frames go.
enum Source {
    /// Straight to the segmenter of one rendition.
    Direct { rendition: String, kind: TrackKind },
    /// Into the ladder, which emits the renditions.
    Ladder(Transcoder),
}

/// Demuxer, ladder, segmenters and the publication of one stream.
pub struct Pipeline {
    publication: Publication,
    options: SegmenterOptions,
    settings: Arc<TranscodeSettings>,
    metrics: Metrics,
    demuxer: Demuxer,
    /// Which wall-clock time the stream's timestamps stand for.
    clock: IngestClock,
    /// Source tracks by PID.
    sources: HashMap<u16, Source>,
    /// Timescale of each source track, by PID.
    timescales: HashMap<u16, u32>,
    /// Segmenters by rendition name.
    renditions: HashMap<String, Segmenter>,
    /// Every rendition this publish declared (for clearing its metric series at the end).
    published: std::collections::HashSet<String>,
    /// Video renditions whose frame rate is being measured: (first dts, frames seen).
    rate: HashMap<String, (u64, u64)>,
    /// Handed to each ladder thread; dropped at the end of input so the channel closes.
    ladder_tx: Option<mpsc::Sender<LadderOutput>>,
    events: Vec<MediaEvent>,
    outputs: Vec<SegmenterOutput>,
    stats: PipelineStats,
    /// When source video frames sent to the ladder arrived: (pts, unix ms), oldest first, so
    /// an encoded frame (same pts) finds its ingest time.
    arrivals: VecDeque<(i64, i64)>,
    /// Per rendition: the arrival (unix ms) of the frame its segmenter holds back, i.e. the
    /// newest frame of the next part it emits.
    held: HashMap<String, i64>,
    /// Per video rendition: `daihuo_encoder_frames_total`.
    frames: HashMap<String, prometheus::IntCounter>,
    /// The video rendition whose cuts the audio rendition follows.
    leader: Option<String>,
    /// Its latest cuts (with their timescale), for an audio rendition declared after them.
    cuts: VecDeque<(Cut, u32)>,
}

/// Cuts kept for an audio rendition that starts late: a few segments' worth.
const CUTS_KEPT: usize = 32;

/// The shared audio rendition's name.
const AUDIO: &str = "audio";

/// Source frames remembered for publish latency while the ladder works on them (a few
/// seconds at 60 fps; the ladder's queue is far shorter).
const ARRIVALS: usize = 512;

impl Pipeline {
    /// A pipeline and the receiver of its ladder outputs, which the caller feeds back through
    /// [`Pipeline::ladder_output`]. `relayed`: the publish comes from an edge, whose clock
    /// stamps are believed.
    pub fn new(
        publication: Publication,
        options: SegmenterOptions,
        settings: Arc<TranscodeSettings>,
        metrics: Metrics,
        relayed: bool,
    ) -> (Self, mpsc::Receiver<LadderOutput>) {
        let (tx, rx) = mpsc::channel(LADDER_OUTPUT);
        let pipeline = Self {
            publication,
            options,
            settings,
            metrics,
            demuxer: Demuxer::new(),
            clock: IngestClock::new(relayed),
            sources: HashMap::new(),
            timescales: HashMap::new(),
            renditions: HashMap::new(),
            published: std::collections::HashSet::new(),
            rate: HashMap::new(),
            ladder_tx: Some(tx),
            events: Vec::new(),
            outputs: Vec::new(),
            stats: PipelineStats::default(),
            arrivals: VecDeque::new(),
            held: HashMap::new(),
            frames: HashMap::new(),
            leader: None,
            cuts: VecDeque::new(),
        };
        (pipeline, rx)
    }

    pub fn stats(&self) -> PipelineStats {
        self.stats
    }

    fn room(&self) -> &str {
        self.publication.room()
    }

    /// Feeds transport-stream bytes received at `now_unix_ms`.
    pub fn push(&mut self, data: &[u8], now_unix_ms: i64) {
        self.stats.bytes_in += data.len() as u64;
        let mut events = std::mem::take(&mut self.events);
        self.demuxer.push(data, &mut events);
        self.handle(&mut events, now_unix_ms);
        self.events = events;
    }

    /// The publisher is gone: flushes the demuxer and asks every ladder to flush. The ladder
    /// output channel closes once they have; then call [`Pipeline::finish`].
    pub fn end_input(&mut self, now_unix_ms: i64) {
        let mut events = std::mem::take(&mut self.events);
        self.demuxer.finish(&mut events);
        self.handle(&mut events, now_unix_ms);
        for (_, source) in self.sources.drain() {
            if let Source::Ladder(t) = source {
                t.finish();
            }
        }
        self.ladder_tx = None;
    }

    /// Flushes every segmenter (end of the publish). Dropping the pipeline afterwards ends the
    /// publication.
    pub fn finish(&mut self) {
        let names: Vec<String> = self.renditions.keys().cloned().collect();
        for name in names {
            self.finish_rendition(&name);
        }
        for name in self.published.drain() {
            self.metrics.clear_backend(self.publication.room(), &name);
        }
    }

    /// Takes one output of the ladder.
    pub fn ladder_output(&mut self, output: LadderOutput, now_unix_ms: i64) {
        match output {
            LadderOutput::Track { rung, config } => self.set_rendition(&rung, config),
            LadderOutput::Frame { rung, frame } => {
                let arrived = self.arrival(frame.pts());
                self.segment(&rung, frame, arrived, now_unix_ms);
            }
            LadderOutput::Fallback { rung, reason } => {
                warn!(
                    stream = self.room(),
                    rung, "hardware encoder replaced by software: {reason}"
                );
                self.metrics.ladder_fallbacks.inc();
                self.metrics
                    .set_backend(self.publication.room(), &rung, "x264");
            }
        }
    }

    fn handle(&mut self, events: &mut Vec<MediaEvent>, now_unix_ms: i64) {
        for event in events.drain(..) {
            match event {
                MediaEvent::Track { track, config } => {
                    self.timescales.insert(track, config.timescale());
                    self.set_source(track, config)
                }
                MediaEvent::Clock { pts, unix_ms } => self.clock.stamp(pts, unix_ms),
                MediaEvent::Frame { track, frame } => {
                    self.stats.frames += 1;
                    if let Some(&timescale) = self.timescales.get(&track) {
                        let pts = i128::from(frame.pts()) * i128::from(codec::MPEG_TIMESCALE)
                            / i128::from(timescale.max(1));
                        self.clock
                            .frame(i64::try_from(pts).unwrap_or(0), now_unix_ms);
                    }
                    match self.sources.get_mut(&track) {
                        Some(Source::Direct { rendition, .. }) => {
                            let rendition = rendition.clone();
                            self.segment(&rendition, frame, Some(now_unix_ms), now_unix_ms);
                        }
                        Some(Source::Ladder(t)) => {
                            if self.arrivals.len() == ARRIVALS {
                                self.arrivals.pop_front();
                            }
                            self.arrivals.push_back((frame.pts(), now_unix_ms));
                            let offset = self.clock.offset(codec::MPEG_TIMESCALE);
                            let queued = t.push(frame, offset);
                            if !queued {
                                self.stats.dropped += 1;
                                self.metrics.ladder_dropped.inc();
                            }
                        }
                        None => {}
                    }
                }
                MediaEvent::Warning(e) => {
                    self.stats.warnings += 1;
                    let n = self.stats.warnings;
                    // Loss can make these frequent: log the first few, then a sample.
                    if n <= 10 || n % 1000 == 0 {
                        warn!(stream = self.room(), warnings = n, "ingest: {e}");
                    }
                }
            }
        }
    }

    /// A source track appeared or changed configuration.
    fn set_source(&mut self, pid: u16, config: TrackConfig) {
        let kind = config.kind();
        let taken = self.sources.iter().any(|(p, s)| {
            *p != pid
                && match s {
                    Source::Direct { kind: k, .. } => *k == kind,
                    Source::Ladder(_) => kind == TrackKind::Video,
                }
        });
        if taken {
            warn!(
                stream = self.room(),
                pid, "ignoring a second {kind:?} track"
            );
            return;
        }
        // A new configuration (e.g. the encoder changed resolution) restarts this source:
        // what was built with the old one is closed, after a discontinuity the new goes on.
        let previous = self.sources.remove(&pid);
        let old_renditions: Vec<String> = match previous {
            Some(Source::Direct { rendition, .. }) => vec![rendition],
            Some(Source::Ladder(t)) => {
                // Frames still queued in the old ladder are abandoned: their renditions are
                // about to restart after a discontinuity anyway.
                drop(t);
                self.renditions
                    .keys()
                    .filter(|r| r.as_str() != AUDIO)
                    .cloned()
                    .collect()
            }
            None => Vec::new(),
        };
        for old in &old_renditions {
            self.finish_rendition(old);
            self.publication.end_rendition(old);
        }
        if kind == TrackKind::Video && self.settings.backend.is_some() {
            if let Some(tx) = self.ladder_tx.clone() {
                let segment_target = self.options.segment_target;
                match Transcoder::start(self.room(), &config, &self.settings, segment_target, tx) {
                    Ok(t) => {
                        self.leader = t.rungs().first().map(|r| r.name.clone());
                        self.publication.expect_renditions(t.rungs());
                        self.sources.insert(pid, Source::Ladder(t));
                        return;
                    }
                    Err(e) => warn!(
                        stream = self.room(),
                        "cannot transcode, passing the source through: {e}"
                    ),
                }
            }
        }
        let rendition = codec::hls::passthrough_name(&config);
        if kind == TrackKind::Video {
            self.leader = Some(rendition.clone());
        }
        self.set_rendition(&rendition, config);
        if self.renditions.contains_key(&rendition) {
            self.sources.insert(pid, Source::Direct { rendition, kind });
        }
    }

    /// Declares a rendition (its init segment) and starts its segmenter.
    fn set_rendition(&mut self, name: &str, config: TrackConfig) {
        let init = match fmp4::init_segment(&config) {
            Ok(init) => init,
            Err(e) => {
                warn!(
                    stream = self.room(),
                    rendition = name,
                    "cannot package: {e}"
                );
                return;
            }
        };
        if self.renditions.contains_key(name) {
            self.finish_rendition(name);
        }
        info!(
            stream = self.room(),
            rendition = name,
            codec = config.codec_string(),
            "rendition"
        );
        let backend = match (&config, self.settings.backend) {
            (TrackConfig::Aac { .. }, _) | (_, None) => "copy".to_string(),
            (_, Some(b)) => b.to_string(),
        };
        self.metrics
            .set_backend(self.publication.room(), name, &backend);
        self.published.insert(name.to_string());
        if config.kind() == TrackKind::Video {
            self.rate.insert(name.to_string(), (0, 0));
        }
        let first_msn = self.publication.set_rendition(name, config.clone(), init);
        let kind = config.kind();
        let mut segmenter = Segmenter::new(config, self.options, first_msn);
        if self.leader.as_deref() == Some(name) {
            segmenter.lead();
        } else if kind == TrackKind::Audio {
            segmenter.follow();
            // Where the video cut before this rendition existed: its media from then on.
            for &(cut, timescale) in &self.cuts {
                let to = segmenter.config().timescale();
                segmenter.cut_at(cut.rescale(timescale, to), &mut self.outputs);
            }
        }
        self.renditions.insert(name.to_string(), segmenter);
    }

    /// When the source frame with `pts` arrived (unix ms), if it is still remembered.
    fn arrival(&mut self, pts: i64) -> Option<i64> {
        // Frames come back in presentation order per rung; older entries are done with
        // once every rung passed them, which the bound takes care of.
        self.arrivals
            .iter()
            .rev()
            .find(|(p, _)| *p == pts)
            .map(|(_, at)| *at)
    }

    /// Hands `frame` (arrived at ingest at `arrived`, unix ms) to its rendition's segmenter.
    fn segment(&mut self, rendition: &str, frame: Frame, arrived: Option<i64>, now_unix_ms: i64) {
        let Some(segmenter) = self.renditions.get_mut(rendition) else {
            return;
        };
        if segmenter.config().kind() == TrackKind::Video {
            let counter = self.frames.entry(rendition.to_string()).or_insert_with(|| {
                self.metrics
                    .encoder_frames
                    .with_label_values(&[self.publication.room(), rendition])
            });
            counter.inc();
        }
        // A part emitted now ends with the frame held back until this one came.
        let newest_in_part = self
            .held
            .insert(rendition.to_string(), arrived.unwrap_or(now_unix_ms));
        if let Some((first, seen)) = self.rate.get_mut(rendition) {
            if *seen == 0 {
                *first = frame.dts;
            }
            *seen += 1;
            if *seen == RATE_FRAMES && frame.dts > *first {
                let fps = (RATE_FRAMES - 1) as f64 * f64::from(codec::MPEG_TIMESCALE)
                    / (frame.dts - *first) as f64;
                self.rate.remove(rendition);
                self.publication.set_frame_rate(rendition, fps);
            }
        }
        segmenter.set_timeline_offset(self.clock.offset(segmenter.config().timescale()));
        segmenter.push(frame, &mut self.outputs);
        let cuts = segmenter.take_cuts();
        let timescale = segmenter.config().timescale();
        if let Some(at) = newest_in_part {
            let parts = self
                .outputs
                .iter()
                .filter(|o| matches!(o, SegmenterOutput::Part(_)))
                .count();
            for _ in 0..parts {
                let ms = now_unix_ms.saturating_sub(at).max(0);
                self.metrics.part_publish.observe(ms as f64 / 1000.0);
            }
        }
        self.publish(rendition);
        self.cut_audio(cuts, timescale);
    }

    /// Hands the leader's part starts (`cuts`, in ticks of `timescale`) to the audio segmenter.
    fn cut_audio(&mut self, cuts: Vec<Cut>, timescale: u32) {
        if cuts.is_empty() {
            return;
        }
        for &cut in &cuts {
            if self.cuts.len() == CUTS_KEPT {
                self.cuts.pop_front();
            }
            self.cuts.push_back((cut, timescale));
        }
        let Some(audio) = self.renditions.get_mut(AUDIO) else {
            return;
        };
        let to = audio.config().timescale();
        for cut in cuts {
            audio.cut_at(cut.rescale(timescale, to), &mut self.outputs);
        }
        self.publish(AUDIO);
    }

    fn finish_rendition(&mut self, rendition: &str) {
        self.held.remove(rendition);
        self.frames.remove(rendition);
        if let Some(mut segmenter) = self.renditions.remove(rendition) {
            segmenter.finish(&mut self.outputs);
            self.publish(rendition);
            let timescale = segmenter.config().timescale();
            self.cut_audio(segmenter.take_cuts(), timescale);
        }
    }

    fn publish(&mut self, rendition: &str) {
        for output in &self.outputs {
            match output {
                SegmenterOutput::Part(_) => self.stats.parts += 1,
                SegmenterOutput::SegmentEnd { duration, .. } => {
                    if *duration > self.options.segment_target * 3 / 2 {
                        warn!(
                            stream = self.publication.room(),
                            rendition,
                            seconds = duration.as_secs_f64(),
                            "segment much longer than the target: set the encoder's keyframe interval to the segment target"
                        );
                    }
                }
            }
        }
        self.publication.publish(rendition, &mut self.outputs);
    }
}
