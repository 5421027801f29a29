//! The wall clock of one publish: which wall-clock instant each of its timestamps stands for.
//!
//! It is decided once, where the stream enters (DESIGN: "program date-time is stamped once
//! where the stream enters and carried with the media"):
//! - a publish relayed by an edge carries the edge's clock stamps ([`codec::clock`]); they are
//!   believed, so every origin fed by that edge places the same media at the same time;
//! - a publish straight from an encoder (a single box, or an origin taking encoders directly)
//!   is stamped here: its first frame's pts at the time it arrived, and again when its
//!   timestamps jump (an encoder restart in the same session).
//!
//! The packager uses the clock as the segmenters' timeline offset, so program date-times and
//! segment numbers (wall-clock slots) come from it. Sans-IO: callers pass arrival times.

use codec::MPEG_TIMESCALE;

/// A stream whose timestamps and arrival drift apart by more than this has broken its
/// timeline: the clock is anchored again (only for streams stamped here).
const REANCHOR_MS: i64 = 10_000;

/// The clock of one publish.
#[derive(Debug)]
pub struct IngestClock {
    /// Whether the stream's own clock stamps are believed (a publish relayed by an edge).
    trust_stamps: bool,
    /// Unwrapped 90 kHz pts and the wall-clock ms it is presented at.
    anchor: Option<(u64, i64)>,
    /// The anchor came from a stamp.
    stamped: bool,
}

impl IngestClock {
    /// A clock for a publish relayed by an edge (`relayed`: its stamps are believed) or one
    /// straight from an encoder.
    pub fn new(relayed: bool) -> Self {
        Self {
            trust_stamps: relayed,
            anchor: None,
            stamped: false,
        }
    }

    /// A clock stamp read from the stream. Ignored unless the publish is relayed.
    pub fn stamp(&mut self, pts: u64, unix_ms: i64) {
        if self.trust_stamps {
            self.anchor = Some((pts, unix_ms));
            self.stamped = true;
        }
    }

    /// A source frame presented at `pts` (90 kHz, unwrapped) arrived at `arrived_ms`: the
    /// first one anchors the clock, unless stamps do; a jump of the timeline anchors it again.
    pub fn frame(&mut self, pts: i64, arrived_ms: i64) {
        let Ok(pts) = u64::try_from(pts) else {
            return;
        };
        match self.anchor {
            None => self.anchor = Some((pts, arrived_ms)),
            Some(_) if self.stamped => {}
            Some(_) => {
                let drift = self.unix_ms(pts).map_or(0, |at| (at - arrived_ms).abs());
                if drift > REANCHOR_MS {
                    self.anchor = Some((pts, arrived_ms));
                }
            }
        }
    }

    /// The wall-clock ms `pts` (90 kHz) is presented at, once the clock is anchored.
    pub fn unix_ms(&self, pts: u64) -> Option<i64> {
        let (anchor_pts, anchor_ms) = self.anchor?;
        let elapsed = (i128::from(pts) - i128::from(anchor_pts)) / 90;
        i64::try_from(i128::from(anchor_ms) + elapsed).ok()
    }

    /// What to add to a pts in `timescale` ticks to get its wall-clock time in those ticks
    /// (the segmenters' timeline offset); 0 before the clock is anchored.
    pub fn offset(&self, timescale: u32) -> u64 {
        let Some((anchor_pts, anchor_ms)) = self.anchor else {
            return 0;
        };
        let scale = i128::from(timescale);
        let wall = i128::from(anchor_ms) * scale / 1000;
        let pts = i128::from(anchor_pts) * scale / i128::from(MPEG_TIMESCALE);
        u64::try_from(wall - pts).unwrap_or(0)
    }
}

/// `ticks` of `timescale` as whole milliseconds.
pub fn ticks_to_ms(ticks: u64, timescale: u32) -> i64 {
    let ms = u128::from(ticks) * 1000 / u128::from(timescale.max(1));
    i64::try_from(ms).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_764_500_000_000;

    #[test]
    fn a_direct_publish_is_stamped_at_its_first_frames_arrival() {
        let mut clock = IngestClock::new(false);
        assert_eq!(clock.offset(90_000), 0);
        clock.frame(900_000, T0);
        // Later frames keep the line, whatever their arrival jitter.
        clock.frame(990_000, T0 + 1300);
        assert_eq!(clock.unix_ms(990_000), Some(T0 + 1000));
        // The offset puts pts on the wall clock in each track's ticks.
        let wall = |pts90k: u64, timescale: u32| {
            let pts = pts90k * u64::from(timescale) / 90_000;
            ticks_to_ms(pts + clock.offset(timescale), timescale)
        };
        assert_eq!(wall(990_000, 90_000), T0 + 1000);
        assert_eq!(wall(990_000, 48_000), T0 + 1000);
        // Stamps of a direct publisher are not believed.
        clock.stamp(0, 0);
        assert_eq!(clock.unix_ms(990_000), Some(T0 + 1000));
        // The encoder restarted within the session: timestamps from 0 again.
        clock.frame(3000, T0 + 60_000);
        assert_eq!(clock.unix_ms(3000), Some(T0 + 60_000));
    }

    #[test]
    fn a_relayed_publish_keeps_the_edges_clock() {
        let mut a = IngestClock::new(true);
        let mut b = IngestClock::new(true);
        // Origin a saw the first stamp; b joined later and saw a later point of the same
        // line, and its frames arrived at other times.
        a.stamp(900_000, T0);
        a.frame(900_000, T0 + 35);
        b.stamp(1_800_000, T0 + 10_000);
        b.frame(1_800_000, T0 + 25_000);
        for pts in [900_000, 1_800_000, 5_000_000] {
            assert_eq!(a.unix_ms(pts), b.unix_ms(pts));
        }
        assert_eq!(a.offset(48_000), b.offset(48_000));
        assert_eq!(a.unix_ms(900_000), Some(T0));
    }
}
