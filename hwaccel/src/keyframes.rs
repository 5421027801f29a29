//! When every encoded rung starts an IDR: the one decision that keeps the ladder aligned.
//!
//! The ladder asks [`IdrSchedule::decide`] once per decoded source picture (presentation order)
//! and forces the same answer on every encoded rung, so IDRs sit at identical presentation
//! times across renditions. The packager starts a segment at the first IDR of each timeline
//! slot (pts / `segment_target`; see `codec::hls::segmenter`), so:
//! - without a copy rung, an IDR is forced on the first picture of every slot (and the first
//!   picture of all): every slot gets a cut point whatever the source's GOP, and two origins
//!   fed the same source force IDRs on the same pictures wherever each one started;
//! - with a copy rung (the source passed through, whose IDRs are the source's keyframes), an
//!   IDR is forced exactly on the source keyframes, so every rendition's first IDR of a slot
//!   is the same picture and all cut alike; segments are then as long as the source's GOP.
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
    /// Follow the source's keyframes (a copy rung is in the ladder) instead of the slots.
    follow_source: bool,
}

impl IdrSchedule {
    pub(crate) fn new(segment_target: Duration, follow_source: bool) -> Self {
        let ticks = segment_target.as_nanos() * u128::from(codec::MPEG_TIMESCALE) / 1_000_000_000;
        IdrSchedule {
            interval: i64::try_from(ticks).unwrap_or(i64::MAX).max(1),
            last: None,
            follow_source,
        }
    }

    /// Whether the picture at `pts` (90 kHz) must be an IDR on every encoded rung.
    pub(crate) fn decide(&mut self, pts: i64, source_keyframe: bool) -> bool {
        let slot = |t: i64| t.div_euclid(self.interval);
        let force = match self.last {
            None => true,
            Some(last) if self.follow_source => source_keyframe || pts < last,
            Some(last) => pts < last || slot(pts) != slot(last),
        };
        self.last = Some(pts);
        force
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Indices of forced pictures for 30 fps pictures (3000 ticks apart) from pts 0.
    fn forced(target: Duration, copy: bool, keyframe_every: usize, count: usize) -> Vec<usize> {
        let mut s = IdrSchedule::new(target, copy);
        (0..count)
            .filter(|&i| s.decide(i as i64 * 3000, i % keyframe_every == 0))
            .collect()
    }

    #[test]
    fn every_slot_starts_with_an_idr_whatever_the_source_gop() {
        let one = Duration::from_secs(1);
        assert_eq!(forced(one, false, 30, 91), vec![0, 30, 60, 90]);
        // Source IDRs every 1.5 s or every 0.5 s: only the slots' first pictures.
        assert_eq!(forced(one, false, 45, 136), vec![0, 30, 60, 90, 120]);
        assert_eq!(forced(one, false, 15, 91), vec![0, 30, 60, 90]);
    }

    #[test]
    fn with_a_copy_rung_the_source_keyframes_rule() {
        let one = Duration::from_secs(1);
        assert_eq!(forced(one, true, 45, 136), vec![0, 45, 90, 135]);
        assert_eq!(forced(one, true, 15, 46), vec![0, 15, 30, 45]);
    }

    #[test]
    fn discontinuity_restarts() {
        for copy in [false, true] {
            let mut s = IdrSchedule::new(Duration::from_secs(1), copy);
            assert!(s.decide(900_000, false));
            assert!(!s.decide(903_000, false));
            assert!(s.decide(0, false));
            assert!(!s.decide(3000, false));
        }
    }

    #[test]
    fn a_late_start_forces_the_same_pictures() {
        // 30 fps from 1.4 s, source IDRs every 3 s, target 2 s; one schedule starts at
        // picture 0, one at picture 100 (mid-slot): after the late one's first picture they
        // agree.
        let pts = |i: i64| 126_000 + i * 3000;
        let run = |from: i64| {
            let mut s = IdrSchedule::new(Duration::from_secs(2), false);
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
