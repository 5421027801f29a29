//! The scale hint: whether this box should get help (scale out), could go (scale in), or
//! hold, from its open client connections and its CPU use against `[scale]`'s marks (the
//! field's rule of thumb: out above 5000 connections or 70% CPU, in below 1000 and 30%).
//! Exported as `daihuo_scale_hint` (1, -1, 0) with `daihuo_cpu_utilization_ratio`, and as a
//! line of `/readyz`'s answer for load balancers and autoscalers that read it.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::drain::Drain;
use arc_swap::ArcSwap;
use conf::ScaleConfig;

use crate::metrics::Metrics;

/// How often the hint is recomputed.
pub const INTERVAL: Duration = Duration::from_secs(5);
/// Linux reports process CPU time in USER_HZ ticks, 100 per second on every architecture
/// Debian ships (the kernel's ABI; CONFIG_HZ does not change it).
const USER_HZ: f64 = 100.0;

/// What the hint says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hint {
    Out,
    Hold,
    In,
}

impl Hint {
    /// From the open connections and CPU share (0..=1) against `marks`.
    pub fn of(connections: u64, cpu: f64, marks: &ScaleConfig) -> Self {
        let cpu_percent = cpu * 100.0;
        if connections > marks.out_connections || cpu_percent > f64::from(marks.out_cpu_percent) {
            Hint::Out
        } else if connections < marks.in_connections
            && cpu_percent < f64::from(marks.in_cpu_percent)
        {
            Hint::In
        } else {
            Hint::Hold
        }
    }

    fn value(self) -> i64 {
        match self {
            Hint::Out => 1,
            Hint::Hold => 0,
            Hint::In => -1,
        }
    }

    fn word(self) -> &'static str {
        match self {
            Hint::Out => "out",
            Hint::Hold => "hold",
            Hint::In => "in",
        }
    }
}

/// Computes the hint every [`INTERVAL`].
pub struct Scale {
    /// The marks; a reload stores new ones.
    pub marks: ArcSwap<ScaleConfig>,
    metrics: Metrics,
    /// (hint, connections, cpu share) of the last sample.
    last: Mutex<(Hint, u64, f64)>,
}

impl Scale {
    pub fn new(marks: &ScaleConfig, metrics: Metrics) -> Arc<Self> {
        Arc::new(Self {
            marks: ArcSwap::from_pointee(marks.clone()),
            metrics,
            last: Mutex::new((Hint::Hold, 0, 0.0)),
        })
    }

    /// One line for `/readyz`: `scale: out (connections 6000, cpu 81%)`.
    pub fn describe(&self) -> String {
        let (hint, connections, cpu) = *self.last.lock().unwrap_or_else(|e| e.into_inner());
        format!(
            "scale: {} (connections {connections}, cpu {:.0}%)",
            hint.word(),
            cpu * 100.0
        )
    }

    /// Samples until `shutdown`.
    pub async fn run(self: Arc<Self>, mut shutdown: Drain) {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get()) as f64;
        let mut before = (Instant::now(), cpu_seconds());
        loop {
            tokio::select! {
                _ = tokio::time::sleep(INTERVAL) => {}
                _ = shutdown.stopped() => return,
            }
            let now = (Instant::now(), cpu_seconds());
            let cpu = match (before.1, now.1) {
                (Some(a), Some(b)) => {
                    let wall = now.0.duration_since(before.0).as_secs_f64();
                    ((b - a) / (wall * cores)).clamp(0.0, 1.0)
                }
                _ => 0.0,
            };
            before = now;
            let connections: i64 = ["tcp", "quic"]
                .iter()
                .map(|t| self.metrics.connections.with_label_values(&[t]).get())
                .sum();
            let connections = u64::try_from(connections).unwrap_or(0);
            let hint = Hint::of(connections, cpu, &self.marks.load());
            self.metrics.cpu.set(cpu);
            self.metrics.scale_hint.set(hint.value());
            *self.last.lock().unwrap_or_else(|e| e.into_inner()) = (hint, connections, cpu);
        }
    }
}

/// User + system CPU time of this process so far, from `/proc/self/stat`.
pub(crate) fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the command name (which may hold spaces, so split after its ')').
    let rest = stat.rsplit_once(')')?.1;
    let mut fields = rest.split_whitespace();
    // rest starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: f64 = fields.nth(11)?.parse().ok()?;
    let stime: f64 = fields.next()?.parse().ok()?;
    Some((utime + stime) / USER_HZ)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_of_thumb() {
        let marks = ScaleConfig::default();
        assert_eq!(Hint::of(6000, 0.1, &marks), Hint::Out);
        assert_eq!(Hint::of(10, 0.8, &marks), Hint::Out);
        assert_eq!(Hint::of(500, 0.2, &marks), Hint::In);
        assert_eq!(Hint::of(500, 0.5, &marks), Hint::Hold);
        assert_eq!(Hint::of(3000, 0.1, &marks), Hint::Hold);
    }

    #[test]
    fn process_cpu_time_is_read() {
        let t = cpu_seconds().expect("/proc/self/stat");
        assert!(t >= 0.0);
    }
}
