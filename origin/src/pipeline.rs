//! One publish of one stream, from transport-stream bytes to published parts.
//!
//! [`Pipeline`] does no IO: the ingest task hands it each SRT payload with the wall-clock time
//! it read, and it demuxes, segments and packages into the [`Publication`]. Today every track
//! is passed through as its own rendition (video as `{height}p`, audio as `audio`); the
//! transcoding ladder plugs in between the demuxer and the segmenters.

use std::collections::HashMap;

use codec::hls::segmenter::{Segmenter, SegmenterOptions, SegmenterOutput};
use codec::ingest::{Demuxer, MediaEvent};
use codec::{fmp4, TrackConfig};
use tracing::{info, warn};

use crate::store::Publication;

/// Counters of one publish, for logs and metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct PipelineStats {
    pub bytes_in: u64,
    pub frames: u64,
    pub parts: u64,
    pub warnings: u64,
}

/// Demuxer, segmenters and the publication of one stream.
pub struct Pipeline {
    publication: Publication,
    options: SegmenterOptions,
    demuxer: Demuxer,
    /// Tracks being packaged, by PID.
    tracks: HashMap<u16, Track>,
    events: Vec<MediaEvent>,
    outputs: Vec<SegmenterOutput>,
    stats: PipelineStats,
}

struct Track {
    rendition: String,
    segmenter: Segmenter,
}

impl Pipeline {
    pub fn new(publication: Publication, options: SegmenterOptions) -> Self {
        Self {
            publication,
            options,
            demuxer: Demuxer::new(),
            tracks: HashMap::new(),
            events: Vec::new(),
            outputs: Vec::new(),
            stats: PipelineStats::default(),
        }
    }

    pub fn stats(&self) -> PipelineStats {
        self.stats
    }

    /// Feeds transport-stream bytes received at `now_unix_ms`.
    pub fn push(&mut self, data: &[u8], now_unix_ms: i64) {
        self.stats.bytes_in += data.len() as u64;
        let mut events = std::mem::take(&mut self.events);
        self.demuxer.push(data, &mut events);
        self.handle(&mut events, now_unix_ms);
        self.events = events;
    }

    /// Flushes everything buffered (end of the publish). Dropping the pipeline afterwards ends
    /// the publication.
    pub fn finish(&mut self, now_unix_ms: i64) {
        let mut events = std::mem::take(&mut self.events);
        self.demuxer.finish(&mut events);
        self.handle(&mut events, now_unix_ms);
        let pids: Vec<u16> = self.tracks.keys().copied().collect();
        for pid in pids {
            self.finish_track(pid, now_unix_ms);
        }
    }

    fn handle(&mut self, events: &mut Vec<MediaEvent>, now_unix_ms: i64) {
        for event in events.drain(..) {
            match event {
                MediaEvent::Track { track, config } => self.set_track(track, config, now_unix_ms),
                MediaEvent::Frame { track, frame } => {
                    let Some(t) = self.tracks.get_mut(&track) else {
                        continue;
                    };
                    self.stats.frames += 1;
                    t.segmenter.push(frame, &mut self.outputs);
                    self.publish(track, now_unix_ms);
                }
                MediaEvent::Warning(e) => {
                    self.stats.warnings += 1;
                    let n = self.stats.warnings;
                    // Loss can make these frequent: log the first few, then a sample.
                    if n <= 10 || n % 1000 == 0 {
                        warn!(
                            stream = self.publication.room(),
                            warnings = n,
                            "ingest: {e}"
                        );
                    }
                }
            }
        }
    }

    fn set_track(&mut self, pid: u16, config: TrackConfig, now_unix_ms: i64) {
        let kind = config.kind();
        if let Some(other) = self
            .tracks
            .iter()
            .find(|(p, t)| **p != pid && t.segmenter.config().kind() == kind)
        {
            warn!(
                stream = self.publication.room(),
                pid,
                serving = other.0,
                "ignoring a second {kind:?} track"
            );
            return;
        }
        let init = match fmp4::init_segment(&config) {
            Ok(init) => init,
            Err(e) => {
                warn!(
                    stream = self.publication.room(),
                    pid, "cannot package track: {e}"
                );
                return;
            }
        };
        let rendition = hwaccel::passthrough_name(&config);
        if self.tracks.contains_key(&pid) {
            // A new configuration (e.g. the encoder changed resolution): close what was built
            // with the old one, and retire the old rendition if its name changes.
            let old = self.finish_track(pid, now_unix_ms);
            if let Some(old) = old.filter(|old| *old != rendition) {
                self.publication.end_rendition(&old);
            }
        }
        info!(
            stream = self.publication.room(),
            rendition,
            codec = config.codec_string(),
            "track"
        );
        let first_msn = self
            .publication
            .set_rendition(&rendition, config.clone(), init);
        let segmenter = Segmenter::new(config, self.options, first_msn);
        self.tracks.insert(
            pid,
            Track {
                rendition,
                segmenter,
            },
        );
    }

    /// Flushes and removes a track; returns its rendition name.
    fn finish_track(&mut self, pid: u16, now_unix_ms: i64) -> Option<String> {
        let mut track = self.tracks.remove(&pid)?;
        track.segmenter.finish(&mut self.outputs);
        self.tracks.insert(pid, track);
        self.publish(pid, now_unix_ms);
        self.tracks.remove(&pid).map(|t| t.rendition)
    }

    fn publish(&mut self, pid: u16, now_unix_ms: i64) {
        let Some(track) = self.tracks.get(&pid) else {
            return;
        };
        for output in self.outputs.drain(..) {
            match output {
                SegmenterOutput::Part(part) => {
                    self.stats.parts += 1;
                    self.publication
                        .push_part(&track.rendition, part, now_unix_ms);
                }
                SegmenterOutput::SegmentEnd { msn, duration } => {
                    if duration > self.options.segment_target * 3 / 2 {
                        warn!(
                            stream = self.publication.room(),
                            rendition = track.rendition,
                            seconds = duration.as_secs_f64(),
                            "segment much longer than the target: set the encoder's keyframe interval to the segment target"
                        );
                    }
                    self.publication
                        .end_segment(&track.rendition, msn, duration);
                }
            }
        }
    }
}
