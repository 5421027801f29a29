//! Clock stamps: the wall-clock time of a stream's timestamps, taken once where the stream
//! enters and carried with it in the transport stream.
//!
//! Program date-time and segment numbers must be the same on every origin and rendition of a
//! stream, and must not repeat after a restart. So the box that receives the publish (the
//! edge) decides, once, which wall-clock instant a PTS stands for: the arrival time of the
//! first PTS it sees ([`Stamper`]). It then sends [`Stamp`]s, points on that line, in-band: a
//! transport stream packet of its own on [`STAMP_PID`] before the first media and about once a
//! second, each a separate SRT message between the encoder's whole-packet messages. Origins
//! read them back ([`Stamp::parse`], surfaced by [`crate::ts::TsDemuxer`]) and place every
//! frame on the same wall clock. A demuxer that does not know the PID ignores it (it is in no
//! PMT), so a relayed stream stays a valid transport stream.
//!
//! Sans-IO: the caller passes the time it received each chunk.

use crate::ts::{TimestampUnwrapper, PACKET_SIZE, SYNC_BYTE};

/// The PID of stamp packets: in the range a program may use, far above what encoders assign
/// (ffmpeg 0x100 and up, OBS and hardware encoders alike), and listed in no PMT.
pub const STAMP_PID: u16 = 0x1FFA;

/// What a stamp's payload starts with (format version 1).
const MAGIC: &[u8; 8] = b"DAIHUO\x01\x00";

/// PTS are 90 kHz.
const TICKS_PER_MS: u64 = 90;

/// A jump of the PTS larger than this (an encoder restarted in the same session, or the
/// stream's timeline broke) anchors the clock again at the arrival time.
const JUMP_TICKS: u64 = 10 * 1000 * TICKS_PER_MS;

/// How often a stamp is repeated, so that an origin joining late learns the clock soon.
const EVERY_MS: i64 = 1000;

/// One point of a stream's clock: PTS `pts` (raw 33-bit, 90 kHz) is presented at wall-clock
/// `unix_ms` (ms since the Unix epoch).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stamp {
    pub pts: u64,
    pub unix_ms: i64,
}

impl Stamp {
    /// The stamp as one transport stream packet with continuity counter `cc`.
    pub fn packet(&self, cc: u8) -> [u8; PACKET_SIZE] {
        let mut p = [0xFF; PACKET_SIZE];
        p[0] = SYNC_BYTE;
        // payload_unit_start_indicator set; PID.
        p[1] = 0x40 | (STAMP_PID >> 8) as u8;
        p[2] = (STAMP_PID & 0xFF) as u8;
        // Not scrambled, payload only.
        p[3] = 0x10 | (cc & 0x0F);
        p[4..12].copy_from_slice(MAGIC);
        p[12..20].copy_from_slice(&(self.pts & ((1 << 33) - 1)).to_be_bytes());
        p[20..28].copy_from_slice(&self.unix_ms.to_be_bytes());
        p
    }

    /// The stamp a packet carries, if it is one (any other packet: `None`).
    pub fn parse(packet: &[u8]) -> Option<Stamp> {
        if packet.len() != PACKET_SIZE || packet[0] != SYNC_BYTE || pid(packet) != STAMP_PID {
            return None;
        }
        // Payload only, as written; anything else on the PID is not ours.
        if packet[3] & 0x30 != 0x10 || &packet[4..12] != MAGIC {
            return None;
        }
        let pts = u64::from_be_bytes(packet[12..20].try_into().ok()?);
        let unix_ms = i64::from_be_bytes(packet[20..28].try_into().ok()?);
        Some(Stamp {
            pts: pts & ((1 << 33) - 1),
            unix_ms,
        })
    }
}

fn pid(packet: &[u8]) -> u16 {
    u16::from(packet[1] & 0x1F) << 8 | u16::from(packet[2])
}

/// The PTS in a TS packet that starts an audio or video PES, if it has one. Reads the PES
/// header fields directly: the relay only needs the newest PTS of what it forwards, not the
/// reassembled streams (that is [`crate::ts::TsDemuxer`]'s job at the origin).
fn packet_pts(packet: &[u8]) -> Option<u64> {
    let pusi = packet[1] & 0x40 != 0;
    let control = (packet[3] >> 4) & 0x3;
    if !pusi || control & 0x1 == 0 {
        return None;
    }
    let start = if control & 0x2 != 0 {
        5 + usize::from(packet[4])
    } else {
        4
    };
    let pes = packet.get(start..)?;
    // Start code, a video (0xE0-0xEF), audio (0xC0-0xDF) or private (0xBD) stream id, and a
    // header with PTS_DTS_flags saying a PTS is there.
    if pes.len() < 14 || pes[..3] != [0, 0, 1] {
        return None;
    }
    if !matches!(pes[3], 0xBD | 0xC0..=0xEF) || pes[7] & 0x80 == 0 {
        return None;
    }
    let b = &pes[9..14];
    Some(
        (u64::from(b[0] >> 1) & 0x07) << 30
            | u64::from(b[1]) << 22
            | u64::from(b[2] >> 1) << 15
            | u64::from(b[3]) << 7
            | u64::from(b[4] >> 1),
    )
}

/// The edge's side: watches the chunks it relays and says when to send a [`Stamp`].
///
/// The clock is anchored at the first PTS seen and the time its chunk arrived; every later
/// stamp is a point on that same line, a whole number of seconds after the anchor (so its
/// time is exact, not rounded to the millisecond) and within a second of the newest PTS (so
/// origins unwrap it on the right side of the 33-bit wrap). Origins therefore agree on the
/// clock to the tick, whichever stamp they saw first. A PTS jump of more than 10 s anchors it
/// again. Chunks that are not whole TS packets (an encoder that splits packets across SRT
/// messages) turn stamping off for the publish: a packet inserted between them would cut one
/// in two. Origins then stamp the stream themselves at arrival.
#[derive(Debug, Default)]
pub struct Stamper {
    unwrapper: TimestampUnwrapper,
    /// (unwrapped PTS, unix ms) the clock is anchored at.
    anchor: Option<(u64, i64)>,
    /// The newest unwrapped PTS seen.
    last_pts: Option<u64>,
    /// When the last stamp was handed out (the chunk's arrival time).
    last_sent: Option<i64>,
    /// A chunk was not whole TS packets: no more stamps.
    misaligned: bool,
    cc: u8,
}

impl Stamper {
    pub fn new() -> Self {
        Self::default()
    }

    /// Looks at `chunk`, about to be relayed, which arrived at `now_unix_ms`. Returns the
    /// packet to send before it when a stamp is due: the first PTS, after a jump, and then
    /// every second.
    pub fn observe(&mut self, chunk: &[u8], now_unix_ms: i64) -> Option<[u8; PACKET_SIZE]> {
        if self.misaligned {
            return None;
        }
        if chunk.len() % PACKET_SIZE != 0 || chunk.first().is_some_and(|&b| b != SYNC_BYTE) {
            self.misaligned = true;
            return None;
        }
        let newest = chunk
            .chunks_exact(PACKET_SIZE)
            .rev()
            .filter(|p| p[0] == SYNC_BYTE && pid(p) != STAMP_PID)
            .find_map(packet_pts)?;
        let pts = self.unwrapper.unwrapped(newest);
        let jumped = self
            .last_pts
            .is_some_and(|last| pts.abs_diff(last) > JUMP_TICKS);
        self.last_pts = Some(pts);
        if self.anchor.is_none() || jumped {
            self.anchor = Some((pts, now_unix_ms));
        } else if self
            .last_sent
            .is_some_and(|at| now_unix_ms.saturating_sub(at) < EVERY_MS)
        {
            return None;
        }
        self.last_sent = Some(now_unix_ms);
        let stamp = self.latest()?;
        self.cc = self.cc.wrapping_add(1);
        Some(stamp.packet(self.cc))
    }

    /// The clock at the newest whole second of PTS seen, for a link that connects now (sent
    /// before anything it forwards); `None` before the first PTS.
    pub fn latest(&self) -> Option<Stamp> {
        let (anchor_pts, anchor_ms) = self.anchor?;
        let elapsed = i128::from(self.last_pts?) - i128::from(anchor_pts);
        let seconds = elapsed.div_euclid(1000 * i128::from(TICKS_PER_MS));
        let pts = i128::from(anchor_pts) + seconds * 1000 * i128::from(TICKS_PER_MS);
        let unix_ms = i128::from(anchor_ms) + seconds * 1000;
        Some(Stamp {
            pts: u64::try_from(pts).ok()?,
            unix_ms: i64::try_from(unix_ms).ok()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A TS packet on `pid` starting a PES of `stream_id` with `pts`.
    fn pes_packet(pid: u16, stream_id: u8, pts: u64) -> [u8; PACKET_SIZE] {
        let mut p = [0xFF; PACKET_SIZE];
        p[0] = SYNC_BYTE;
        p[1] = 0x40 | (pid >> 8) as u8;
        p[2] = pid as u8;
        p[3] = 0x10;
        let pes = [
            0,
            0,
            1,
            stream_id,
            0,
            0,
            0x80,
            0x80,
            5,
            0x21 | ((pts >> 29) & 0x0E) as u8,
            (pts >> 22) as u8,
            0x01 | ((pts >> 14) & 0xFE) as u8,
            (pts >> 7) as u8,
            0x01 | ((pts << 1) & 0xFE) as u8,
        ];
        p[4..4 + pes.len()].copy_from_slice(&pes);
        p
    }

    fn chunk(packets: &[[u8; PACKET_SIZE]]) -> Vec<u8> {
        packets.concat()
    }

    #[test]
    fn a_stamp_packet_reads_back() {
        let stamp = Stamp {
            pts: (1 << 33) - 5,
            unix_ms: 1_764_500_000_123,
        };
        let packet = stamp.packet(3);
        assert_eq!(Stamp::parse(&packet), Some(stamp));
        assert_eq!(pid(&packet), STAMP_PID);
        // Media packets and foreign payloads on the PID are not stamps.
        assert_eq!(Stamp::parse(&pes_packet(0x100, 0xE0, 9000)), None);
        let mut foreign = packet;
        foreign[6] = b'X';
        assert_eq!(Stamp::parse(&foreign), None);
        assert_eq!(Stamp::parse(&packet[..100]), None);
    }

    #[test]
    fn pts_is_read_from_pes_headers_only() {
        assert_eq!(
            packet_pts(&pes_packet(0x100, 0xE0, 123_456_789)),
            Some(123_456_789)
        );
        assert_eq!(packet_pts(&pes_packet(0x101, 0xC0, 1 << 32)), Some(1 << 32));
        // A PSI section (stream id byte not audio/video) and a continuation packet.
        assert_eq!(packet_pts(&pes_packet(0x100, 0xBE, 9000)), None);
        let mut cont = pes_packet(0x100, 0xE0, 9000);
        cont[1] &= !0x40;
        assert_eq!(packet_pts(&cont), None);
    }

    #[test]
    fn stamps_follow_one_line_from_the_first_pts() {
        let mut s = Stamper::new();
        let t0 = 1_764_500_000_000;
        // No PTS yet: nothing to stamp.
        assert_eq!(
            s.observe(&chunk(&[pes_packet(0x100, 0xE0, 0)])[..0], t0),
            None
        );
        let first = s
            .observe(&chunk(&[pes_packet(0x100, 0xE0, 900_000)]), t0)
            .expect("the first pts is stamped");
        assert_eq!(
            Stamp::parse(&first),
            Some(Stamp {
                pts: 900_000,
                unix_ms: t0
            })
        );
        // Within the second: no stamp. After it, one on the same line, whatever the arrival
        // jitter (this chunk came 40 ms late).
        assert_eq!(
            s.observe(&chunk(&[pes_packet(0x100, 0xE0, 909_000)]), t0 + 100),
            None
        );
        let later = s
            .observe(&chunk(&[pes_packet(0x100, 0xE0, 1_003_000)]), t0 + 1190)
            .expect("a stamp every second");
        // The newest whole second after the anchor: exact, whatever the pts.
        assert_eq!(
            Stamp::parse(&later),
            Some(Stamp {
                pts: 990_000,
                unix_ms: t0 + 1000
            })
        );
        assert_eq!(s.latest().map(|l| l.unix_ms), Some(t0 + 1000));
        // The encoder restarted: its timestamps start again from 0, the clock from now.
        let restarted = s
            .observe(&chunk(&[pes_packet(0x100, 0xE0, 3000)]), t0 + 1500)
            .expect("a jump is stamped at once");
        assert_eq!(
            Stamp::parse(&restarted),
            Some(Stamp {
                pts: 3000,
                unix_ms: t0 + 1500
            })
        );
    }

    #[test]
    fn packets_split_across_messages_turn_stamping_off() {
        let mut s = Stamper::new();
        let whole = chunk(&[pes_packet(0x100, 0xE0, 9000)]);
        assert_eq!(s.observe(&whole[..100], 0), None);
        assert_eq!(s.observe(&whole, 5000), None);
        assert_eq!(s.latest(), None);
    }
}
