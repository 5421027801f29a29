//! When every encoded rung starts an IDR: the one decision that keeps the ladder aligned.
//!
//! The ladder asks [`IdrSchedule::decide`] once per decoded source picture (presentation order)
//! and forces the same answer on every encoded rung, so IDRs sit at identical presentation
//! times across renditions. An IDR is forced:
//! - on the first picture;
//! - on every source keyframe (IDR), so the encoded rungs also have an IDR wherever a copy rung
//!   (which can only start a segment at a source IDR) has one;
//! - on the first picture of every timeline slot (pts / `segment_target`, the packager's slots:
//!   see `codec::hls::segmenter`), so every slot has a cut point whatever the source's GOP,
//!   and two origins fed the same source force IDRs on the same pictures wherever each one
//!   started.
//!
//! Interplay with a copy rung: its IDRs are the source keyframes only, a subset of the encoded
//! rungs' IDRs. A packager that must keep every rendition cut at the same times cuts only at
//! IDRs common to all rungs, i.e. at source keyframes, when the ladder has a copy rung; the
//! slot IDRs then cost a little bitrate and buy nothing. Without a copy rung every forced IDR
//! is a valid common cut point.
//!
//! A pts that goes backwards (a discontinuity) forces an IDR.

use std::time::Duration;

/// The IDR decision for one stream.
#[derive(Clone, Debug)]
pub(crate) struct IdrSchedule {
    /// Segment target in 90 kHz ticks: the width of a slot.
    interval: i64,
    /// Pts of the last picture seen.
    last: Option<i64>,
}

impl IdrSchedule {
    pub(crate) fn new(segment_target: Duration) -> Self {
        let ticks = segment_target.as_nanos() * u128::from(codec::MPEG_TIMESCALE) / 1_000_000_000;
        IdrSchedule {
            interval: i64::try_from(ticks).unwrap_or(i64::MAX).max(1),
            last: None,
        }
    }

    /// Whether the picture at `pts` (90 kHz) must be an IDR on every encoded rung.
    pub(crate) fn decide(&mut self, pts: i64, source_keyframe: bool) -> bool {
        let slot = |t: i64| t.div_euclid(self.interval);
        let force = match self.last {
            None => true,
            Some(last) => source_keyframe || pts < last || slot(pts) != slot(last),
        };
        self.last = Some(pts);
        force
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Indices of forced pictures for 30 fps pictures (3000 ticks apart).
    fn forced(target: Duration, keyframe_every: usize, count: usize) -> Vec<usize> {
        let mut s = IdrSchedule::new(target);
        (0..count)
            .filter(|&i| s.decide(i as i64 * 3000, i % keyframe_every == 0))
            .collect()
    }

    #[test]
    fn source_gop_equal_to_target() {
        assert_eq!(forced(Duration::from_secs(1), 30, 91), vec![0, 30, 60, 90]);
    }

    #[test]
    fn long_source_gop_gets_an_idr_in_every_slot() {
        // Source IDRs every 1.5 s, target 1 s: each slot's first picture as well.
        assert_eq!(
            forced(Duration::from_secs(1), 45, 136),
            vec![0, 30, 45, 60, 90, 120, 135]
        );
    }

    #[test]
    fn short_source_gop_adds_source_idrs() {
        assert_eq!(
            forced(Duration::from_secs(2), 30, 121),
            vec![0, 30, 60, 90, 120]
        );
        assert_eq!(forced(Duration::from_secs(2), 1000, 121), vec![0, 60, 120]);
    }

    #[test]
    fn discontinuity_restarts() {
        let mut s = IdrSchedule::new(Duration::from_secs(1));
        assert!(s.decide(900_000, false));
        assert!(!s.decide(903_000, false));
        assert!(s.decide(0, false));
        assert!(!s.decide(3000, false));
        assert!(s.decide(90_000, false));
    }

    #[test]
    fn a_late_start_forces_the_same_pictures() {
        // 30 fps from 1.4 s, source IDRs every 3 s, target 2 s; one schedule starts at
        // picture 0, one at picture 100 (mid-slot): after the late one's first picture they
        // agree.
        let pts = |i: i64| 126_000 + i * 3000;
        let run = |from: i64| {
            let mut s = IdrSchedule::new(Duration::from_secs(2));
            (from..400)
                .filter(|&i| s.decide(pts(i), i % 90 == 0))
                .collect::<Vec<_>>()
        };
        let early = run(0);
        let late = run(100);
        assert_eq!(late[0], 100);
        assert_eq!(
            late[1..],
            early[early.iter().position(|&i| i > 100).unwrap()..]
        );
    }
}
