//! The transcoding ladder of one stream, on a thread of its own.
//!
//! Encoding costs milliseconds of CPU per frame per rung, so it never runs on the async
//! runtime: [`Transcoder`] hands source frames to a dedicated thread running a
//! [`hwaccel::Ladder`] through a bounded queue, and the ladder's output comes back on a bounded
//! channel that the stream's ingest task reads. When the queue is full the encoders are behind
//! real time: the ladder sheds its lowest-priority rung and source frames are dropped up to
//! the next keyframe (so the decoder never sees a broken reference chain). Memory and latency
//! stay bounded by the queue length.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::Arc;
use std::time::Duration;

use codec::{Frame, TrackConfig};
use hwaccel::{BackendKind, Ladder, LadderOptions, LadderOutput, RungSpec};
use tokio::sync::mpsc;
use tracing::{error, info, warn};

use crate::store::Planned;

/// Source frames queued for the ladder at most: two seconds at 30 fps.
pub const QUEUE_FRAMES: usize = 60;

/// What the ladders of an origin do (from `[transcode]`, after probing at start).
#[derive(Debug, Clone)]
pub struct TranscodeSettings {
    /// The backend chosen at start, or `None` when transcoding is off.
    pub backend: Option<BackendKind>,
    pub rungs: Vec<RungSpec>,
    pub threads: usize,
}

impl TranscodeSettings {
    /// No transcoding: every source track is served as it arrives.
    pub fn off() -> Self {
        Self {
            backend: None,
            rungs: Vec::new(),
            threads: 0,
        }
    }

    /// From the configuration and the backend the start-up probe chose.
    pub fn from_config(config: &conf::TranscodeConfig, backend: Option<BackendKind>) -> Self {
        let rungs = config
            .rungs
            .iter()
            .map(|r| RungSpec {
                name: r.name.clone(),
                width: r.width,
                height: r.height,
                bitrate: r.bitrate,
                max_bitrate: r.max_bitrate,
                profile: r.profile.clone(),
                preset: r.preset.clone(),
                copy: r.copy,
            })
            .collect();
        Self {
            backend,
            rungs,
            threads: config.threads,
        }
    }
}

/// Probes the encoders `[transcode]` allows and reports what was found and chosen. `Off`
/// probes nothing. An `nvenc` requirement that cannot be met is an error: the daemon must not
/// start pretending to transcode on the GPU.
pub fn probe(config: &conf::TranscodeConfig) -> Result<TranscodeSettings, hwaccel::ProbeError> {
    let choice = match config.encoder {
        conf::Encoder::Off => return Ok(TranscodeSettings::off()),
        conf::Encoder::Auto => hwaccel::EncoderChoice::Auto,
        conf::Encoder::Nvenc => hwaccel::EncoderChoice::Nvenc,
        conf::Encoder::Software => hwaccel::EncoderChoice::Software,
    };
    let report = hwaccel::probe(choice)?;
    for (backend, result) in &report.tried {
        match result {
            Ok(()) => info!(%backend, "encoder probe: works"),
            Err(why) => info!(%backend, "encoder probe: unavailable: {why}"),
        }
    }
    info!(backend = %report.chosen, "transcoding with {}", report.chosen);
    Ok(TranscodeSettings::from_config(config, Some(report.chosen)))
}

enum Input {
    /// A source frame and the timeline offset (90 kHz) it is placed with.
    Frame(Frame, u64),
    Finish,
}

/// A running ladder for the video track of one stream.
pub struct Transcoder {
    input: SyncSender<Input>,
    shed: Arc<AtomicBool>,
    /// The rungs planned for this source, in the ladder's order.
    rungs: Vec<Planned>,
    /// Dropping source frames until the next keyframe since the queue overflowed.
    skipping: bool,
    /// Source frames dropped for overload, for the log.
    dropped: u64,
    stream: String,
}

impl Transcoder {
    /// Plans the ladder for this source and starts its thread. Outputs go to `output`; the
    /// thread ends (and drops its sender) after [`Transcoder::finish`] has flushed.
    pub fn start(
        stream: &str,
        source: &TrackConfig,
        settings: &TranscodeSettings,
        segment_target: Duration,
        output: mpsc::Sender<LadderOutput>,
    ) -> Result<Self, hwaccel::LadderError> {
        let backend = settings.backend.unwrap_or(BackendKind::Software);
        let (width, height) = match source {
            TrackConfig::H264 { width, height, .. } => (*width, *height),
            TrackConfig::Aac { .. } => return Err(hwaccel::LadderError::NotH264),
        };
        let rungs = hwaccel::plan(&settings.rungs, width, height);
        let names: Vec<&str> = rungs.iter().map(|r| r.name.as_str()).collect();
        info!(stream, %backend, rungs = ?names, width, height, "ladder");
        let planned = rungs
            .iter()
            .map(|r| Planned {
                name: r.name.clone(),
                peak_bps: u64::from(r.max_bitrate),
                average_bps: u64::from(r.bitrate),
            })
            .collect();
        let ladder = Ladder::new(
            source,
            rungs,
            LadderOptions {
                backend,
                segment_target,
                threads: settings.threads,
            },
        )?;
        let (input, rx) = sync_channel::<Input>(QUEUE_FRAMES);
        let shed = Arc::new(AtomicBool::new(false));
        let worker = Worker {
            ladder,
            shed: shed.clone(),
            output,
            stream: stream.to_string(),
        };
        std::thread::Builder::new()
            .name(format!("ladder-{stream}"))
            .spawn(move || worker.run(rx))
            .map_err(|e| {
                hwaccel::LadderError::InvalidOptions(format!("cannot start thread: {e}"))
            })?;
        Ok(Self {
            input,
            shed,
            rungs: planned,
            skipping: false,
            dropped: 0,
            stream: stream.to_string(),
        })
    }

    /// The renditions this ladder will produce, in its order.
    pub fn rungs(&self) -> &[Planned] {
        &self.rungs
    }

    /// Queues a source frame, placed on the packager's timeline by `timeline_offset` (90 kHz
    /// ticks added to its pts: IDRs go where the segmenters cut); never blocks. Returns false
    /// when the frame was dropped because the ladder is behind.
    pub fn push(&mut self, frame: Frame, timeline_offset: u64) -> bool {
        if self.skipping {
            if !frame.keyframe {
                self.dropped += 1;
                return false;
            }
            self.skipping = false;
        }
        match self.input.try_send(Input::Frame(frame, timeline_offset)) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                self.shed.store(true, Ordering::Release);
                self.skipping = true;
                self.dropped += 1;
                warn!(
                    stream = self.stream,
                    dropped = self.dropped,
                    "ladder queue full: dropping source frames to the next keyframe"
                );
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }

    /// Asks the ladder to flush. Its output channel closes once everything came out.
    pub fn finish(self) {
        // Blocking here is fine: the queue drains at encoding speed and this is the end of
        // the stream. A dead worker simply leaves nothing to flush.
        let _ = self.input.send(Input::Finish);
    }
}

struct Worker {
    ladder: Ladder,
    shed: Arc<AtomicBool>,
    output: mpsc::Sender<LadderOutput>,
    stream: String,
}

impl Worker {
    fn run(mut self, rx: std::sync::mpsc::Receiver<Input>) {
        let mut out = Vec::new();
        while let Ok(input) = rx.recv() {
            if self.shed.swap(false, Ordering::AcqRel) {
                match self.ladder.shed_one() {
                    Some(rung) => warn!(
                        stream = self.stream,
                        rung, "encoding behind real time: shed rung"
                    ),
                    None => warn!(
                        stream = self.stream,
                        "encoding behind real time with one rung left"
                    ),
                }
            }
            let finish = matches!(input, Input::Finish);
            let result = match input {
                Input::Frame(frame, offset) => {
                    self.ladder.set_timeline_offset(offset);
                    self.ladder.push(&frame, &mut out)
                }
                Input::Finish => self.ladder.finish(&mut out),
            };
            if let Err(e) = result {
                error!(stream = self.stream, "ladder: {e}");
            }
            for o in out.drain(..) {
                if self.output.blocking_send(o).is_err() {
                    return;
                }
            }
            if finish {
                return;
            }
        }
    }
}
