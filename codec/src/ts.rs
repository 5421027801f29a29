//! MPEG-TS transport layer: bytes in, whole PES packets of the H.264 and AAC streams out.
//!
//! This module owns packet sync (buffering a partial trailing packet, resyncing on `0x47` after
//! garbage), PAT/PMT tracking, PES reassembly across TS packets, continuity checks and the 33-bit
//! PTS/DTS wrap ([`TimestampUnwrapper`]). It is built on `mpeg2ts-reader`, which does the PSI
//! tables, the PES state machine, continuity counters and PTS/DTS decoding.
//!
//! It does not look inside elementary streams: [`Pes::data`] is the raw payload (Annex B for
//! H.264, ADTS for AAC), handed to [`crate::h264`] and [`crate::aac`] by [`crate::ingest`],
//! which is where to start reading.
//!
//! Two parts are hand-written on purpose, each for a reason `mpeg2ts-reader` cannot cover:
//! - packet framing: `Demultiplex::push` stops at the first 188-byte chunk without a sync byte
//!   and keeps no partial packet between calls, so [`TsDemuxer`] frames packets itself and only
//!   hands it whole, synced ones;
//! - PES bookkeeping lives in the demux context, not in the per-PID consumer, because the
//!   library gives no way to reach a filter from outside: keeping it in the context lets
//!   [`TsDemuxer::finish`] flush the last PES of every stream, and lets a PES with a declared
//!   length complete as soon as its last byte arrives (reading the two `PES_packet_length`
//!   bytes and `PES_header_data_length` from the first packet, which the library does not expose).

use std::collections::{BTreeMap, HashSet};

use mpeg2ts_reader::demultiplex::{
    self, DemuxContext, FilterChangeset, FilterRequest, NullPacketFilter, PacketFilter,
    PatPacketFilter, PmtPacketFilter,
};
use mpeg2ts_reader::packet::Packet;
use mpeg2ts_reader::pes::{self, ElementaryStreamConsumer, PesHeader};
use mpeg2ts_reader::psi;
use mpeg2ts_reader::StreamType;

/// Size of one transport stream packet in bytes.
pub const PACKET_SIZE: usize = 188;

/// The sync byte that starts every TS packet.
pub const SYNC_BYTE: u8 = 0x47;

/// Largest PES payload reassembled, in bytes; a bigger one is dropped with
/// [`TsError::PesTooLarge`]. An 8 MiB access unit is far beyond any live 1080p/4K frame.
pub const MAX_PES_SIZE: usize = 8 * 1024 * 1024;

/// Most (pid, stream_type) pairs remembered for [`TsError::UnsupportedStreamType`]; past it a
/// hostile PMT cycling through types cannot grow memory, it only stops being reported.
const MAX_REPORTED_STREAMS: usize = 256;

/// PTS/DTS are 33-bit counters of a 90 kHz clock.
const TIMESTAMP_RANGE: u64 = 1 << 33;

/// A problem in the transport stream itself. The demuxer reports it and carries on.
#[derive(thiserror::Error, Debug, Clone, PartialEq, Eq)]
pub enum TsError {
    /// Bytes that were not part of a sync-aligned TS packet were skipped.
    #[error("skipped {skipped} bytes of garbage to find ts packet sync")]
    LostSync { skipped: usize },
    /// The input ended in the middle of a TS packet (or of bytes that never synced).
    #[error("input ended with {bytes} bytes that do not form a whole ts packet")]
    TruncatedInput { bytes: usize },
    /// A continuity counter jumped: packets were lost; the PES in progress is dropped.
    #[error("continuity counter error on pid {pid}: packets lost, pes in progress dropped")]
    Continuity { pid: u16 },
    /// A packet had `transport_error_indicator` set and was skipped.
    #[error("transport error indicator set on pid {pid}: packet skipped")]
    TransportError { pid: u16 },
    /// The PMT announced a stream type this demuxer does not take (reported once per pid
    /// and type).
    #[error("unsupported stream type {stream_type:#04x} on pid {pid} ignored")]
    UnsupportedStreamType { pid: u16, stream_type: u8 },
    /// A PES header could not be parsed; that PES is dropped.
    #[error("invalid pes header on pid {pid}: pes dropped")]
    InvalidPesHeader { pid: u16 },
    /// The PTS/DTS fields of a PES header were malformed; the PES is kept without them.
    #[error("invalid pts/dts in pes header on pid {pid}")]
    InvalidTimestamp { pid: u16 },
    /// A PES grew past [`MAX_PES_SIZE`]; it is dropped.
    #[error("pes on pid {pid} larger than {limit} bytes: dropped")]
    PesTooLarge { pid: u16, limit: usize },
    /// The input ended before a PES reached its declared length; it is dropped.
    #[error("pes on pid {pid} truncated: {got} of {declared} payload bytes")]
    TruncatedPes {
        pid: u16,
        got: usize,
        declared: usize,
    },
}

/// The elementary stream types this demuxer takes from the PMT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StreamKind {
    /// `stream_type` 0x1B: H.264 in Annex B byte stream format.
    H264,
    /// `stream_type` 0x0F: AAC in ADTS frames.
    AdtsAac,
}

impl StreamKind {
    /// The kind for a PMT `stream_type`, if supported.
    pub fn from_stream_type(stream_type: u8) -> Option<Self> {
        match stream_type {
            0x1B => Some(StreamKind::H264),
            0x0F => Some(StreamKind::AdtsAac),
            _ => None,
        }
    }
}

/// One reassembled PES packet of a supported stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pes {
    /// The elementary PID carrying the stream.
    pub pid: u16,
    pub kind: StreamKind,
    /// Presentation time stamp, raw 33-bit 90 kHz value (see [`TimestampUnwrapper`]).
    pub pts: Option<u64>,
    /// Decode time stamp, raw 33-bit 90 kHz value; absent when equal to the PTS.
    pub dts: Option<u64>,
    /// The PES payload (the elementary stream bytes, headers removed).
    pub data: Vec<u8>,
}

/// What [`TsDemuxer`] produces, in stream order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TsEvent {
    Pes(Pes),
    /// A clock stamp from the box where the stream entered ([`crate::clock`]).
    Stamp(crate::clock::Stamp),
    Warning(TsError),
}

/// Turns 33-bit PTS/DTS values into a continuous `u64` timeline.
///
/// One instance is shared by every stream of a program, so audio and video stay comparable
/// across the wrap (every 2^33 ticks, about 26.5 hours). The first value is kept as it is (no
/// rebase to zero); after that each value is placed within half the range (2^32 ticks) of the
/// previous one, so a backward jump larger than half the range is a wrap forward. A value that
/// would fall before zero (a stream starting just after a wrap with another stream's timestamps
/// just before it) is clamped to zero.
#[derive(Clone, Debug, Default)]
pub struct TimestampUnwrapper {
    last: Option<u64>,
}

impl TimestampUnwrapper {
    pub fn new() -> Self {
        Self::default()
    }

    /// Unwraps one raw timestamp (only its low 33 bits are used); returns 90 kHz ticks.
    pub fn unwrapped(&mut self, raw: u64) -> u64 {
        let raw = raw & (TIMESTAMP_RANGE - 1);
        let value = match self.last {
            None => raw,
            Some(last) => {
                let epoch = last & !(TIMESTAMP_RANGE - 1);
                // Same epoch as the last value, then moved one epoch either way if that is
                // closer. Signed maths in i128 cannot overflow for u64 inputs.
                let candidate = i128::from(epoch | raw);
                let last = i128::from(last);
                let half = i128::from(TIMESTAMP_RANGE / 2);
                let range = i128::from(TIMESTAMP_RANGE);
                let placed = if candidate - last > half {
                    candidate - range
                } else if last - candidate > half {
                    candidate + range
                } else {
                    candidate
                };
                u64::try_from(placed.max(0)).unwrap_or(u64::MAX)
            }
        };
        self.last = Some(value);
        value
    }
}

/// MPEG-TS bytes in, [`TsEvent`]s out. Sans-IO: feed it whatever the socket gave.
pub struct TsDemuxer {
    /// Bytes not yet handed to the demultiplexer: at most a partial packet, or an unconfirmed
    /// sync candidate and what follows it (under two packets after each `push`).
    pending: Vec<u8>,
    /// True while the previous packet was sync-aligned, so the next `0x47` is trusted at once.
    synced: bool,
    /// Garbage bytes skipped since sync was lost; reported once sync is found again.
    skipped: usize,
    demux: demultiplex::Demultiplex<Context>,
    ctx: Context,
}

impl Default for TsDemuxer {
    fn default() -> Self {
        Self::new()
    }
}

impl TsDemuxer {
    pub fn new() -> Self {
        let mut ctx = Context::default();
        let demux = demultiplex::Demultiplex::new(&mut ctx);
        TsDemuxer {
            pending: Vec::with_capacity(PACKET_SIZE * 8),
            synced: false,
            skipped: 0,
            demux,
            ctx,
        }
    }

    /// Feeds bytes with any alignment; appends what they complete to `out`.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<TsEvent>) {
        self.pending.extend_from_slice(data);
        self.frame(false);
        out.append(&mut self.ctx.events);
    }

    /// End of input: reports leftover bytes and emits the PES in progress on every stream.
    pub fn finish(&mut self, out: &mut Vec<TsEvent>) {
        self.frame(true);
        let left = self.pending.len().saturating_add(self.skipped);
        if left > 0 {
            self.ctx.warn(TsError::TruncatedInput { bytes: left });
        }
        self.pending.clear();
        self.skipped = 0;
        self.synced = false;
        self.ctx.flush_all();
        out.append(&mut self.ctx.events);
    }

    /// Finds sync-aligned packets in `pending` and hands them, one at a time so that warnings
    /// interleave with PES events the same way whatever the chunking, to the demultiplexer.
    /// Out of sync, a `0x47` counts only when another follows 188 bytes later (or, at end of
    /// input, when nothing follows), so a stray `0x47` in garbage is skipped.
    fn frame(&mut self, eof: bool) {
        let buf = &self.pending;
        let mut pos = 0;
        while let Some(packet) = buf.get(pos..pos + PACKET_SIZE) {
            let accept = if packet[0] != SYNC_BYTE {
                false
            } else if self.synced {
                true
            } else {
                match buf.get(pos + PACKET_SIZE) {
                    Some(&next) => next == SYNC_BYTE,
                    None if eof => true,
                    None => break,
                }
            };
            if !accept {
                self.synced = false;
                self.skipped = self.skipped.saturating_add(1);
                pos += 1;
                continue;
            }
            if !self.synced {
                self.synced = true;
                if self.skipped > 0 {
                    self.ctx.warn(TsError::LostSync {
                        skipped: self.skipped,
                    });
                    self.skipped = 0;
                }
            }
            if packet[1] & 0x80 != 0 {
                let pid = u16::from(packet[1] & 0x1f) << 8 | u16::from(packet[2]);
                self.ctx.warn(TsError::TransportError { pid });
            }
            // Stamps are on a PID no PMT lists: taken here, never reach the demultiplexer.
            if let Some(stamp) = crate::clock::Stamp::parse(packet) {
                self.ctx.events.push(TsEvent::Stamp(stamp));
                pos += PACKET_SIZE;
                continue;
            }
            self.demux.push(&mut self.ctx, packet);
            pos += PACKET_SIZE;
        }
        self.pending.drain(..pos);
    }
}

/// PES reassembly state of one elementary PID.
struct Assembly {
    kind: StreamKind,
    /// The PES being collected, if any.
    current: Option<PartialPes>,
    /// Payload length declared by the PES header about to begin (read by [`EsFilter`] from
    /// the first packet before the library parses it); `None` when unbounded.
    declared_next: Option<usize>,
}

struct PartialPes {
    pts: Option<u64>,
    dts: Option<u64>,
    data: Vec<u8>,
    /// Payload length from `PES_packet_length`, `None` when unbounded (usual for video).
    declared: Option<usize>,
    /// The PES outgrew [`MAX_PES_SIZE`]; swallow the rest of it.
    oversized: bool,
}

/// The demultiplexer context: everything `mpeg2ts-reader`'s callbacks need to reach.
#[derive(Default)]
struct Context {
    changeset: FilterChangeset<Filter>,
    /// Per elementary PID, ordered so that [`Context::flush_all`] is deterministic.
    streams: BTreeMap<u16, Assembly>,
    /// (pid, stream_type) pairs already reported as unsupported.
    reported: HashSet<(u16, u8)>,
    events: Vec<TsEvent>,
}

impl Context {
    fn warn(&mut self, error: TsError) {
        self.events.push(TsEvent::Warning(error));
    }

    fn begin(&mut self, pid: u16, header: PesHeader<'_>) {
        self.complete(pid);
        let Some(stream) = self.streams.get_mut(&pid) else {
            return;
        };
        let declared = stream.declared_next.take();
        let parsed = match header.contents() {
            pes::PesContents::Parsed(Some(parsed)) => parsed,
            pes::PesContents::Parsed(None) | pes::PesContents::Payload(_) => {
                self.warn(TsError::InvalidPesHeader { pid });
                return;
            }
        };
        let (pts, dts, bad_timestamp) = match parsed.pts_dts() {
            Ok(pes::PtsDts::PtsOnly(Ok(pts))) => (Some(pts.value()), None, false),
            Ok(pes::PtsDts::Both {
                pts: Ok(pts),
                dts: Ok(dts),
            }) => (Some(pts.value()), Some(dts.value()), false),
            Err(pes::PesError::FieldNotPresent) | Ok(pes::PtsDts::None) => (None, None, false),
            _ => (None, None, true),
        };
        let payload = parsed.payload();
        let mut partial = PartialPes {
            pts,
            dts,
            data: Vec::with_capacity(declared.unwrap_or(PACKET_SIZE * 16).min(MAX_PES_SIZE)),
            declared,
            oversized: false,
        };
        partial.data.extend_from_slice(payload);
        stream.current = Some(partial);
        if bad_timestamp {
            self.warn(TsError::InvalidTimestamp { pid });
        }
        self.check_length(pid);
    }

    fn append(&mut self, pid: u16, data: &[u8]) {
        if let Some(partial) = self.streams.get_mut(&pid).and_then(|s| s.current.as_mut()) {
            if !partial.oversized {
                partial.data.extend_from_slice(data);
            }
        }
        self.check_length(pid);
    }

    /// Completes a PES once it reaches its declared length; drops one that outgrows the cap.
    fn check_length(&mut self, pid: u16) {
        let Some(partial) = self.streams.get_mut(&pid).and_then(|s| s.current.as_mut()) else {
            return;
        };
        if partial.oversized {
            return;
        }
        if let Some(declared) = partial.declared {
            if partial.data.len() >= declared {
                partial.data.truncate(declared);
                self.complete(pid);
                return;
            }
        }
        if partial.data.len() > MAX_PES_SIZE {
            partial.oversized = true;
            partial.data = Vec::new();
            self.warn(TsError::PesTooLarge {
                pid,
                limit: MAX_PES_SIZE,
            });
        }
    }

    /// Emits the PES in progress on `pid`, if any.
    fn complete(&mut self, pid: u16) {
        let Some(stream) = self.streams.get_mut(&pid) else {
            return;
        };
        let Some(partial) = stream.current.take() else {
            return;
        };
        if partial.oversized {
            return;
        }
        if let Some(declared) = partial.declared {
            if partial.data.len() < declared {
                self.warn(TsError::TruncatedPes {
                    pid,
                    got: partial.data.len(),
                    declared,
                });
                return;
            }
        }
        let kind = stream.kind;
        self.events.push(TsEvent::Pes(Pes {
            pid,
            kind,
            pts: partial.pts,
            dts: partial.dts,
            data: partial.data,
        }));
    }

    fn discard(&mut self, pid: u16) {
        if let Some(stream) = self.streams.get_mut(&pid) {
            stream.current = None;
        }
    }

    fn flush_all(&mut self) {
        let pids: Vec<u16> = self.streams.keys().copied().collect();
        for pid in pids {
            self.complete(pid);
        }
    }

    fn do_construct(&mut self, req: FilterRequest<'_, '_>) -> Filter {
        match req {
            FilterRequest::ByPid(psi::pat::PAT_PID) => Filter::Pat(PatPacketFilter::default()),
            FilterRequest::ByPid(_) | FilterRequest::Nit { .. } => {
                Filter::Null(NullPacketFilter::default())
            }
            FilterRequest::Pmt {
                pid,
                program_number,
            } => Filter::Pmt(PmtPacketFilter::new(pid, program_number)),
            FilterRequest::ByStream {
                stream_type: StreamType(stream_type),
                stream_info,
                ..
            } => {
                let pid = u16::from(stream_info.elementary_pid());
                match StreamKind::from_stream_type(stream_type) {
                    Some(kind) => {
                        // A PMT update may re-announce the PID: start it afresh.
                        self.streams.insert(
                            pid,
                            Assembly {
                                kind,
                                current: None,
                                declared_next: None,
                            },
                        );
                        Filter::Pes(EsFilter {
                            pid,
                            inner: pes::PesPacketFilter::new(EsConsumer { pid }),
                        })
                    }
                    None => {
                        self.streams.remove(&pid);
                        if self.reported.len() < MAX_REPORTED_STREAMS
                            && self.reported.insert((pid, stream_type))
                        {
                            self.warn(TsError::UnsupportedStreamType { pid, stream_type });
                        }
                        Filter::Null(NullPacketFilter::default())
                    }
                }
            }
        }
    }
}

impl DemuxContext for Context {
    type F = Filter;

    fn filter_changeset(&mut self) -> &mut FilterChangeset<Self::F> {
        &mut self.changeset
    }

    fn construct(&mut self, req: FilterRequest<'_, '_>) -> Self::F {
        self.do_construct(req)
    }
}

/// Every way a PID is handled (what `packet_filter_switch!` would generate, written out so the
/// types can stay private).
enum Filter {
    Pat(PatPacketFilter<Context>),
    Pmt(PmtPacketFilter<Context>),
    Pes(EsFilter),
    Null(NullPacketFilter<Context>),
}

impl PacketFilter for Filter {
    type Ctx = Context;

    fn consume(&mut self, ctx: &mut Context, pk: &Packet<'_>) {
        match self {
            Filter::Pat(f) => f.consume(ctx, pk),
            Filter::Pmt(f) => f.consume(ctx, pk),
            Filter::Pes(f) => f.consume(ctx, pk),
            Filter::Null(f) => f.consume(ctx, pk),
        }
    }
}

/// `mpeg2ts-reader`'s PES filter for one elementary PID, plus a peek at the declared PES length.
struct EsFilter {
    pid: u16,
    inner: pes::PesPacketFilter<Context, EsConsumer>,
}

impl EsFilter {
    /// Payload bytes declared by the PES header starting in `payload`: `PES_packet_length`
    /// (bytes 4-5, counting from byte 6) minus the 3 flag bytes and `PES_header_data_length`
    /// (byte 8). `None` for an unbounded (0) length or a header too short to say.
    fn declared_len(payload: &[u8]) -> Option<usize> {
        let length = usize::from(u16::from_be_bytes([*payload.get(4)?, *payload.get(5)?]));
        if length == 0 {
            return None;
        }
        let header_data = usize::from(*payload.get(8)?);
        length.checked_sub(3 + header_data)
    }
}

impl PacketFilter for EsFilter {
    type Ctx = Context;

    fn consume(&mut self, ctx: &mut Context, pk: &Packet<'_>) {
        if pk.payload_unit_start_indicator() {
            let declared = pk.payload().and_then(Self::declared_len);
            if let Some(stream) = ctx.streams.get_mut(&self.pid) {
                stream.declared_next = declared;
            }
        }
        self.inner.consume(ctx, pk);
    }
}

/// Forwards the library's PES callbacks for one PID into [`Context`].
struct EsConsumer {
    pid: u16,
}

impl ElementaryStreamConsumer<Context> for EsConsumer {
    fn start_stream(&mut self, ctx: &mut Context) {
        ctx.discard(self.pid);
    }

    fn begin_packet(&mut self, ctx: &mut Context, header: PesHeader<'_>) {
        ctx.begin(self.pid, header);
    }

    fn continue_packet(&mut self, ctx: &mut Context, data: &[u8]) {
        ctx.append(self.pid, data);
    }

    fn end_packet(&mut self, ctx: &mut Context) {
        ctx.complete(self.pid);
    }

    fn continuity_error(&mut self, ctx: &mut Context) {
        ctx.discard(self.pid);
        ctx.warn(TsError::Continuity { pid: self.pid });
    }
}

#[cfg(test)]
pub(crate) mod tests;
