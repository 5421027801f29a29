//! [`NvencEncoder`]: one rung's NVENC session on a worker thread of its own.
//!
//! The SDK's `Session` is not `Send` and its input/output buffers borrow it, so the session,
//! its one input buffer and one output bitstream live on the worker's stack; the ladder (which
//! moves between threads) holds only channels. The worker encodes synchronously: for each
//! packed NV12 picture it locks and fills the input buffer, calls `encode_picture` with the
//! picture type (IDR or P; picture type decision is off), locks the output bitstream and sends
//! the Annex B bytes back with the picture's buffer for reuse. With no B-frames, no lookahead
//! and zero reorder delay every picture comes straight out; `NeedMoreInput` is reported as a
//! failure (the ladder then falls back to libx264) instead of being queued.
//!
//! Compiled here, not run on NVENC hardware.

use std::collections::VecDeque;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use cudarc::driver::CudaContext;
use ffmpeg_next::frame;
use nvidia_video_codec_sdk::sys::nvEncodeAPI::{
    NV_ENC_BUFFER_FORMAT, NV_ENC_CODEC_H264_GUID, NV_ENC_PIC_TYPE,
};
use nvidia_video_codec_sdk::{
    Bitstream, Buffer, EncodePictureParams, Encoder, EncoderInitParams, EncoderInput, ErrorKind,
    Session,
};

use super::params::NvencParams;
use super::{config, nv12, panic_text};
use crate::encode::{EncodedPacket, EncoderSettings};
use crate::ffi;

/// `encode_picture` answers "busy" when the engine is saturated; NVIDIA's guidance is to retry
/// after a few milliseconds. After this many tries (about 0.2 s) the rung gives up and falls
/// back rather than stall the ladder.
const BUSY_RETRIES: u32 = 40;
const BUSY_WAIT: Duration = Duration::from_millis(5);

enum Request {
    /// A packed NV12 picture ([`nv12::pack`]), its pts (90 kHz) and whether to make it an IDR.
    Picture { data: Vec<u8>, pts: i64, idr: bool },
    /// End of stream: nothing is held back, so this only acknowledges.
    Finish,
}

struct Reply {
    result: Result<Option<EncodedPacket>, String>,
    /// The picture's buffer, returned for the next picture.
    data: Vec<u8>,
}

/// The ladder's handle on one NVENC session (see the module docs).
pub(crate) struct NvencEncoder {
    /// `None` once dropped, which ends the worker.
    requests: Option<SyncSender<Request>>,
    replies: Receiver<Reply>,
    worker: Option<JoinHandle<()>>,
    width: u32,
    height: u32,
    /// Bytes per row of the session's input buffer.
    pitch: u32,
    /// A packing buffer returned by the worker.
    spare: Vec<u8>,
    /// Coded pictures not yet taken by [`NvencEncoder::receive`].
    ready: VecDeque<EncodedPacket>,
}

impl NvencEncoder {
    /// Starts the worker and waits until it has a session with buffers, or says why not (a
    /// panic inside the SDK or cudarc, e.g. no `libcuda.so`, is reported as such).
    pub(crate) fn open(settings: &EncoderSettings) -> Result<Self, String> {
        let params = NvencParams::from_settings(settings)?;
        let (width, height) = (params.width, params.height);
        let (requests, worker_requests) = sync_channel(1);
        let (worker_replies, replies) = sync_channel(1);
        let (opened, open_result) = sync_channel(1);
        let worker = thread::Builder::new()
            .name("nvenc".into())
            .spawn(move || run(&params, &opened, &worker_requests, &worker_replies))
            .map_err(|e| format!("nvenc: cannot start worker thread: {e}"))?;
        match open_result.recv() {
            Ok(Ok(pitch)) => Ok(NvencEncoder {
                requests: Some(requests),
                replies,
                worker: Some(worker),
                width,
                height,
                pitch,
                spare: Vec::new(),
                ready: VecDeque::new(),
            }),
            Ok(Err(reason)) => {
                drop(requests);
                let _ = worker.join();
                Err(reason)
            }
            Err(_) => Err(ended(Some(worker))),
        }
    }

    /// Encodes one NV12 picture of the session's size; `idr` forces an IDR with SPS/PPS.
    pub(crate) fn send(&mut self, picture: &frame::Video, idr: bool) -> Result<(), String> {
        let mut data = std::mem::take(&mut self.spare);
        nv12::pack(picture, self.width, self.height, self.pitch, &mut data)?;
        let pts = picture.pts().unwrap_or(0);
        match self.exchange(Request::Picture { data, pts, idr })? {
            Some(packet) => self.ready.push_back(packet),
            None => tracing::warn!(pts, "nvenc returned no picture"),
        }
        Ok(())
    }

    /// End of stream (nothing is held back in this configuration).
    pub(crate) fn finish(&mut self) -> Result<(), String> {
        self.exchange(Request::Finish).map(|_| ())
    }

    /// The next coded picture, if any.
    pub(crate) fn receive(&mut self) -> Option<EncodedPacket> {
        self.ready.pop_front()
    }

    fn exchange(&mut self, request: Request) -> Result<Option<EncodedPacket>, String> {
        let sent = match &self.requests {
            Some(requests) => requests.send(request).is_ok(),
            None => false,
        };
        let reply = if sent { self.replies.recv().ok() } else { None };
        match reply {
            Some(Reply { result, data }) => {
                self.spare = data;
                result
            }
            None => {
                self.requests = None;
                Err(ended(self.worker.take()))
            }
        }
    }
}

impl Drop for NvencEncoder {
    /// Closes the request channel and waits for the worker to release the session, so a
    /// fallback or a shed rung frees its NVENC session before the next one is opened.
    fn drop(&mut self) {
        self.requests = None;
        if let Some(worker) = self.worker.take() {
            let _ = worker.join();
        }
    }
}

/// Why the worker is gone: its panic message when it panicked.
fn ended(worker: Option<JoinHandle<()>>) -> String {
    match worker.map(JoinHandle::join) {
        Some(Err(panic)) => format!("nvenc worker panicked: {}", panic_text(&*panic)),
        Some(Ok(())) | None => "nvenc worker ended".to_string(),
    }
}

/// The worker thread: opens everything, reports the input pitch (or why it could not open),
/// then serves requests until the handle is dropped. Buffers drop before the session (which
/// flushes with an end-of-stream picture), the session before the CUDA context.
fn run(
    params: &NvencParams,
    opened: &SyncSender<Result<u32, String>>,
    requests: &Receiver<Request>,
    replies: &SyncSender<Reply>,
) {
    let session = match start(params) {
        Ok(session) => session,
        Err(reason) => {
            let _ = opened.send(Err(reason));
            return;
        }
    };
    let (mut input, mut output, pitch) = match buffers(&session) {
        Ok(buffers) => buffers,
        Err(reason) => {
            let _ = opened.send(Err(reason));
            return;
        }
    };
    if opened.send(Ok(pitch)).is_err() {
        return;
    }
    for request in requests {
        let reply = match request {
            Request::Picture { data, pts, idr } => Reply {
                result: encode(
                    &session,
                    &mut input,
                    &mut output,
                    params,
                    pitch,
                    &data,
                    pts,
                    idr,
                )
                .map(Some),
                data,
            },
            Request::Finish => Reply {
                result: Ok(None),
                data: Vec::new(),
            },
        };
        if replies.send(reply).is_err() {
            return;
        }
    }
}

/// CUDA context on device 0, NVENC session configured from `params`, NV12 input.
fn start(params: &NvencParams) -> Result<Session, String> {
    let context = CudaContext::new(0).map_err(|e| format!("cuda device 0: {e:?}"))?;
    let encoder = Encoder::initialize_with_cuda(context)
        .map_err(|e| format!("nvenc session on cuda device 0: {e}"))?;
    let preset = config::preset_guid(params.preset);
    let mut preset_config = encoder
        .get_preset_config(NV_ENC_CODEC_H264_GUID, preset, config::TUNING)
        .map_err(|e| format!("nvenc preset p{}: {e}", params.preset))?;
    config::apply(params, &mut preset_config.presetCfg);
    let mut init = EncoderInitParams::new(NV_ENC_CODEC_H264_GUID, params.width, params.height);
    init.preset_guid(preset)
        .tuning_info(config::TUNING)
        .framerate(params.frame_rate.0, params.frame_rate.1)
        .display_aspect_ratio(params.width, params.height)
        .encode_config(&mut preset_config.presetCfg);
    encoder
        .start_session(NV_ENC_BUFFER_FORMAT::NV_ENC_BUFFER_FORMAT_NV12, init)
        .map_err(|e| {
            format!(
                "nvenc initialize {}x{} {:?}: {e}",
                params.width, params.height, params.profile
            )
        })
}

/// One input buffer and one output bitstream; the input's pitch is known once locked.
fn buffers(session: &Session) -> Result<(Buffer<'_>, Bitstream<'_>, u32), String> {
    let mut input = session
        .create_input_buffer()
        .map_err(|e| format!("nvenc input buffer: {e}"))?;
    let output = session
        .create_output_bitstream()
        .map_err(|e| format!("nvenc output bitstream: {e}"))?;
    drop(
        input
            .lock()
            .map_err(|e| format!("nvenc lock input buffer: {e}"))?,
    );
    let pitch = input.pitch();
    Ok((input, output, pitch))
}

#[allow(clippy::too_many_arguments)] // The worker's whole state, passed once per picture.
fn encode(
    session: &Session,
    input: &mut Buffer<'_>,
    output: &mut Bitstream<'_>,
    params: &NvencParams,
    pitch: u32,
    data: &[u8],
    pts: i64,
    idr: bool,
) -> Result<EncodedPacket, String> {
    {
        let mut lock = input
            .lock()
            .map_err(|e| format!("nvenc lock input buffer: {e}"))?;
        ffi::nvenc_write_input(&mut lock, data, pitch, params.height)?;
    }
    let picture_type = if idr {
        NV_ENC_PIC_TYPE::NV_ENC_PIC_TYPE_IDR
    } else {
        NV_ENC_PIC_TYPE::NV_ENC_PIC_TYPE_P
    };
    let mut tries = 0;
    loop {
        let picture = EncodePictureParams {
            // Round-trips through the SDK's u64 bit for bit.
            input_timestamp: pts as u64,
            picture_type,
            codec_params: None,
        };
        match session.encode_picture(input, output, picture) {
            Ok(()) => break,
            Err(e) if e.kind() == ErrorKind::EncoderBusy && tries < BUSY_RETRIES => {
                tries += 1;
                thread::sleep(BUSY_WAIT);
            }
            Err(e) if e.kind() == ErrorKind::NeedMoreInput => {
                return Err(format!(
                    "nvenc held picture {pts} back (need more input): not expected without \
                     b-frames or lookahead"
                ));
            }
            Err(e) => return Err(format!("nvenc encode picture {pts}: {e}")),
        }
    }
    let lock = output
        .lock()
        .map_err(|e| format!("nvenc lock bitstream: {e}"))?;
    Ok(EncodedPacket {
        pts: lock.timestamp() as i64,
        annexb: lock.data().to_vec(),
    })
}
