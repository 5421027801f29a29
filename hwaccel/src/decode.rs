//! The ladder's single H.264 decode per stream: AVCC samples (as `codec::Frame` carries them)
//! go back to Annex B, with the source SPS/PPS in front of every IDR so the decoder needs no
//! extradata and follows parameter set changes in band; pictures come out in presentation
//! order with the source pts (90 kHz).

use bytes::Bytes;
use ffmpeg_next::codec::decoder;
use ffmpeg_next::util::error::EAGAIN;
use ffmpeg_next::{codec::Id, frame, threading, Error, Packet};

const START_CODE: [u8; 4] = [0, 0, 0, 1];

/// An open libavcodec H.264 decoder.
pub(crate) struct Decoder {
    inner: decoder::Video,
    /// Source parameter sets (header byte included), repeated before every IDR.
    sps: Bytes,
    pps: Bytes,
    /// Reused Annex B buffer.
    annexb: Vec<u8>,
}

/// What [`Decoder::send`] did with a sample.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Sent {
    Accepted,
    /// The decoder rejected the sample as invalid data; the stream goes on.
    Rejected(Error),
}

impl Decoder {
    pub(crate) fn open(sps: Bytes, pps: Bytes, threads: usize) -> Result<Self, Error> {
        let codec = decoder::find(Id::H264).ok_or(Error::DecoderNotFound)?;
        let mut ctx = ffmpeg_next::codec::context::Context::new_with_codec(codec);
        // Slice threads, not frame threads: frame threading holds back one picture per extra
        // thread (libavcodec's automatic count is the cores + 1, up to 16: half a second of
        // latency on a big transcoding box, 67 ms on two cores). One thread decodes a
        // 1080p30 source with time to spare; slices, when the source has them, add more.
        ctx.set_threading(threading::Config {
            kind: threading::Type::Slice,
            count: threads,
            ..threading::Config::default()
        });
        let inner = ctx.decoder().video()?;
        Ok(Decoder {
            inner,
            sps,
            pps,
            annexb: Vec::new(),
        })
    }

    /// Sends one AVCC access unit with its timestamps (90 kHz).
    pub(crate) fn send(
        &mut self,
        avcc: &[u8],
        keyframe: bool,
        pts: i64,
        dts: i64,
    ) -> Result<Sent, Error> {
        self.annexb.clear();
        if keyframe {
            for ps in [&self.sps, &self.pps] {
                self.annexb.extend_from_slice(&START_CODE);
                self.annexb.extend_from_slice(ps);
            }
        }
        if !avcc_to_annexb(avcc, &mut self.annexb) {
            tracing::warn!(
                pts,
                "malformed avcc sample: decoding what precedes the damage"
            );
        }
        let mut packet = Packet::copy(&self.annexb);
        packet.set_pts(Some(pts));
        packet.set_dts(Some(dts));
        match self.inner.send_packet(&packet) {
            Ok(()) => Ok(Sent::Accepted),
            Err(e @ Error::InvalidData) => Ok(Sent::Rejected(e)),
            Err(e) => Err(e),
        }
    }

    /// Starts draining at end of stream.
    pub(crate) fn send_eof(&mut self) -> Result<(), Error> {
        self.inner.send_eof()
    }

    /// The next decoded picture, or `None` when the decoder needs more input (or is drained).
    pub(crate) fn receive(&mut self) -> Result<Option<frame::Video>, Error> {
        let mut picture = frame::Video::empty();
        match self.inner.receive_frame(&mut picture) {
            Ok(()) => Ok(Some(picture)),
            Err(Error::Other { errno: EAGAIN }) | Err(Error::Eof) => Ok(None),
            Err(e) => Err(e),
        }
    }
}

/// Appends the NAL units of a 4-byte length-prefixed sample to `out` with start codes.
/// Returns false when a length runs past the end (the units before it are kept).
pub(crate) fn avcc_to_annexb(mut avcc: &[u8], out: &mut Vec<u8>) -> bool {
    while !avcc.is_empty() {
        let Some((len, rest)) = avcc.split_first_chunk::<4>() else {
            return false;
        };
        let len = u32::from_be_bytes(*len) as usize;
        let Some((nal, rest)) = rest.split_at_checked(len) else {
            return false;
        };
        out.extend_from_slice(&START_CODE);
        out.extend_from_slice(nal);
        avcc = rest;
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avcc_back_to_annexb() {
        let mut out = Vec::new();
        assert!(avcc_to_annexb(
            &[0, 0, 0, 2, 0x65, 1, 0, 0, 0, 1, 0x06],
            &mut out
        ));
        assert_eq!(out, vec![0, 0, 0, 1, 0x65, 1, 0, 0, 0, 1, 0x06]);
        out.clear();
        assert!(!avcc_to_annexb(&[0, 0, 0, 9, 0x65], &mut out));
        assert!(out.is_empty());
        assert!(!avcc_to_annexb(&[0, 0, 0, 1, 0x41, 0, 0], &mut out));
        assert_eq!(out, vec![0, 0, 0, 1, 0x41]);
    }
}
