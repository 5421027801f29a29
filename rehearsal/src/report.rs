//! The rehearsal's figures: per protocol, events, faults, server CPU, and the field's
//! service-level table with pass or fail.

use serde::Serialize;

use crate::http::Proto;
use crate::shop::{Kind, Persisted, Posted};
use crate::viewer::Viewed;

/// The p-th percentile (0..=100) of `values`, nearest rank.
pub fn percentile(values: &[f64], p: f64) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    let mut v = values.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * v.len() as f64).ceil() as usize;
    Some(v[rank.clamp(1, v.len()) - 1])
}

/// Viewers' figures, for one protocol or all.
#[derive(Debug, Clone, Serialize)]
pub struct Viewing {
    pub protocol: String,
    pub viewers: usize,
    pub played: usize,
    pub failed: usize,
    pub first_frame_p50_s: Option<f64>,
    pub first_frame_p95_s: Option<f64>,
    pub stalls: u64,
    pub stall_ratio: f64,
    pub latency_p50_s: Option<f64>,
    pub latency_p95_s: Option<f64>,
    pub requests: u64,
    pub errors: u64,
    pub bytes: u64,
}

impl Viewing {
    pub fn of(protocol: &str, viewed: &[&Viewed]) -> Self {
        let first: Vec<f64> = viewed.iter().filter_map(|v| v.first_frame_s).collect();
        let latency: Vec<f64> = viewed
            .iter()
            .flat_map(|v| v.latency.iter().map(|l| f64::from(*l)))
            .collect();
        let played: f64 = viewed.iter().map(|v| v.played_s).sum();
        let stalled: f64 = viewed.iter().map(|v| v.stalled_s).sum();
        Self {
            protocol: protocol.to_string(),
            viewers: viewed.len(),
            played: viewed.iter().filter(|v| v.first_frame_s.is_some()).count(),
            failed: viewed.iter().filter(|v| v.failed.is_some()).count(),
            first_frame_p50_s: percentile(&first, 50.0),
            first_frame_p95_s: percentile(&first, 95.0),
            stalls: viewed.iter().map(|v| u64::from(v.stalls)).sum(),
            stall_ratio: if played + stalled > 0.0 {
                stalled / (played + stalled)
            } else {
                0.0
            },
            latency_p50_s: percentile(&latency, 50.0),
            latency_p95_s: percentile(&latency, 95.0),
            requests: viewed.iter().map(|v| v.requests).sum(),
            errors: viewed.iter().map(|v| v.errors).sum(),
            bytes: viewed.iter().map(|v| v.bytes).sum(),
        }
    }
}

/// One kind of event's figures.
#[derive(Debug, Clone, Serialize)]
pub struct Eventing {
    pub kind: Kind,
    pub posted: usize,
    pub acknowledged: usize,
    pub failed: usize,
    pub ack_p50_s: Option<f64>,
    pub ack_p95_s: Option<f64>,
    pub ack_p99_s: Option<f64>,
    /// Tries that failed, and the commonest answers to them (with counts).
    pub failed_tries: usize,
    pub errors: Vec<(String, usize)>,
}

impl Eventing {
    pub fn of(kind: Kind, posted: &[Posted]) -> Self {
        let mine: Vec<&Posted> = posted.iter().filter(|p| p.kind == kind).collect();
        let acks: Vec<f64> = mine
            .iter()
            .filter_map(|p| p.acked.map(|a| a - p.sent))
            .collect();
        let mut errors: Vec<(String, usize)> = Vec::new();
        for p in &mine {
            let Some(e) = &p.last_error else { continue };
            // The status and the start of the reason: one line per kind of answer.
            let short: String = e.chars().take(60).collect();
            match errors.iter_mut().find(|(s, _)| *s == short) {
                Some((_, n)) => *n += 1,
                None => errors.push((short, 1)),
            }
        }
        errors.sort_by_key(|e| std::cmp::Reverse(e.1));
        errors.truncate(3);
        Self {
            kind,
            failed_tries: mine.iter().map(|p| p.failed_tries.len()).sum(),
            errors,
            posted: mine.len(),
            acknowledged: acks.len(),
            failed: mine.len() - acks.len(),
            ack_p50_s: percentile(&acks, 50.0),
            ack_p95_s: percentile(&acks, 95.0),
            ack_p99_s: percentile(&acks, 99.0),
        }
    }
}

/// A fault run on schedule and how long the show took to recover from it.
#[derive(Debug, Clone, Serialize)]
pub struct Faulted {
    pub at_s: f64,
    pub command: String,
    pub exit: Option<i32>,
    /// Until every viewer advanced again (0 when none was held up).
    pub viewers_recovery_s: Option<f64>,
    /// Until every event that failed after it was acknowledged.
    pub events_recovery_s: Option<f64>,
    /// The longer of the two; `None`: not recovered before the run ended.
    pub recovery_s: Option<f64>,
}

/// How long after a fault at `at` (the next one at `next`) the show recovered: every
/// trouble interval overlapping [at, next) has ended and every event that failed in it was
/// acknowledged. `None` when something had not recovered by `end`.
pub fn recovery(
    at: f64,
    next: f64,
    end: f64,
    viewers: &[&Viewed],
    posted: &[Posted],
) -> (Option<f64>, Option<f64>) {
    let mut view = Some(0.0f64);
    for (start, stop) in viewers.iter().flat_map(|v| v.trouble.iter()) {
        if *stop > at && *start < next {
            view = if *stop >= end - 0.05 {
                None
            } else {
                view.map(|r| r.max(stop - at))
            };
            if view.is_none() {
                break;
            }
        }
    }
    let mut events = Some(0.0f64);
    for p in posted {
        if !p.failed_tries.iter().any(|t| *t >= at && *t < next) {
            continue;
        }
        events = match (events, p.acked) {
            (Some(r), Some(acked)) => Some(r.max(acked - at)),
            _ => None,
        };
    }
    (view, events)
}

/// Servers' CPU over the measured period.
#[derive(Debug, Clone, Serialize)]
pub struct Cpu {
    pub seconds: f64,
    pub over_s: f64,
    pub mean_viewers: f64,
    /// CPU milliseconds per second per viewer.
    pub per_viewer_ms_per_s: Option<f64>,
    pub viewers_per_core: Option<f64>,
}

/// A row of the field's table.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub what: String,
    pub target: String,
    pub measured: String,
    /// `None`: not measured in this run.
    pub pass: Option<bool>,
}

/// Everything a rehearsal measured.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub edges: Vec<String>,
    pub room: String,
    pub duration_s: f64,
    pub all: Viewing,
    pub protocols: Vec<Viewing>,
    pub renditions: Vec<(String, usize)>,
    pub failures: Vec<String>,
    pub events: Vec<Eventing>,
    pub comment_display_p50_s: Option<f64>,
    pub comment_display_p95_s: Option<f64>,
    pub comments_not_shown: usize,
    pub persisted: Option<Persisted>,
    pub faults: Vec<Faulted>,
    pub cpu: Option<Cpu>,
    /// How `--source` ended when it ended before the run did (the stream then ended too).
    pub source_ended: Option<String>,
    pub sla: Vec<Row>,
}

fn secs(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |s| {
        if s < 10.0 {
            format!("{:.0} ms", s * 1000.0)
        } else {
            format!("{s:.1} s")
        }
    })
}

impl Report {
    /// The field's service levels, judged on this run.
    pub fn judge(&mut self) {
        let mut rows = Vec::new();
        let a = &self.all;
        rows.push(Row {
            what: "first frame (p95)".into(),
            target: "< 1 s".into(),
            measured: format!(
                "{} (p50 {})",
                secs(a.first_frame_p95_s),
                secs(a.first_frame_p50_s)
            ),
            pass: a.first_frame_p95_s.map(|s| s < 1.0),
        });
        rows.push(Row {
            what: "stall ratio".into(),
            target: "< 1%".into(),
            measured: format!("{:.2}% ({} stalls)", a.stall_ratio * 100.0, a.stalls),
            pass: (a.played > 0).then_some(a.stall_ratio < 0.01),
        });
        let success = if a.viewers > 0 {
            (a.viewers - a.failed) as f64 / a.viewers as f64
        } else {
            0.0
        };
        rows.push(Row {
            what: "play success".into(),
            target: "> 99.9%".into(),
            measured: format!(
                "{:.2}% ({} of {})",
                success * 100.0,
                a.viewers - a.failed,
                a.viewers
            ),
            pass: (a.viewers > 0).then_some(success > 0.999),
        });
        rows.push(Row {
            what: "end-to-end latency (p95, from the ingest's program date-time)".into(),
            target: "< 3 s".into(),
            measured: format!("{} (p50 {})", secs(a.latency_p95_s), secs(a.latency_p50_s)),
            pass: a.latency_p95_s.map(|s| s < 3.0),
        });
        rows.push(Row {
            what: "comment display (p95)".into(),
            target: "< 500 ms".into(),
            measured: format!(
                "{} (p50 {}, {} not shown)",
                secs(self.comment_display_p95_s),
                secs(self.comment_display_p50_s),
                self.comments_not_shown
            ),
            pass: self
                .comment_display_p95_s
                .map(|s| s < 0.5 && self.comments_not_shown == 0),
        });
        for (kind, what, limit) in [
            (Kind::CartAdd, "cart acknowledged (p95)", 0.3),
            (Kind::Order, "order acknowledged (p95)", 0.2),
        ] {
            let e = self.events.iter().find(|e| e.kind == kind);
            rows.push(Row {
                what: what.into(),
                target: format!("< {} ms", limit * 1000.0),
                measured: e.map_or("n/a".into(), |e| {
                    format!(
                        "{} (p99 {}, {} of {} acknowledged)",
                        secs(e.ack_p95_s),
                        secs(e.ack_p99_s),
                        e.acknowledged,
                        e.posted
                    )
                }),
                pass: e.and_then(|e| e.ack_p95_s.map(|s| s < limit && e.failed == 0)),
            });
        }
        let worst = self
            .faults
            .iter()
            .map(|f| f.recovery_s)
            .try_fold(0.0f64, |m, r| r.map(|r| m.max(r)));
        rows.push(Row {
            what: "recovery from faults (worst)".into(),
            target: "< 30 s".into(),
            measured: if self.faults.is_empty() {
                "n/a (no fault)".into()
            } else {
                worst.map_or("not recovered".into(), |w| format!("{w:.1} s"))
            },
            pass: (!self.faults.is_empty()).then_some(worst.is_some_and(|w| w < 30.0)),
        });
        rows.push(Row {
            what: "carts and orders persisted exactly once".into(),
            target: "100%".into(),
            measured: self
                .persisted
                .as_ref()
                .map_or("n/a (no --journal)".into(), |p| {
                    format!(
                        "{} of {} once, {} missing, {} doubled",
                        p.once, p.acknowledged, p.missing, p.duplicated
                    )
                }),
            pass: self.persisted.as_ref().map(|p| p.once == p.acknowledged),
        });
        self.sla = rows;
    }

    /// The report for people.
    pub fn table(&self) -> String {
        use std::fmt::Write;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\nRehearsal of room {} on {} ({:.0} s)\n",
            self.room,
            self.edges.join(", "),
            self.duration_s
        );
        let _ = writeln!(
            out,
            "{:<10} {:>7} {:>7} {:>6} {:>11} {:>11} {:>7} {:>8} {:>11} {:>11} {:>9} {:>9}",
            "protocol",
            "viewers",
            "played",
            "failed",
            "first p50",
            "first p95",
            "stalls",
            "stalled",
            "latency p50",
            "latency p95",
            "requests",
            "errors"
        );
        for v in self.protocols.iter().chain(std::iter::once(&self.all)) {
            let _ = writeln!(
                out,
                "{:<10} {:>7} {:>7} {:>6} {:>11} {:>11} {:>7} {:>7.2}% {:>11} {:>11} {:>9} {:>9}",
                v.protocol,
                v.viewers,
                v.played,
                v.failed,
                secs(v.first_frame_p50_s),
                secs(v.first_frame_p95_s),
                v.stalls,
                v.stall_ratio * 100.0,
                secs(v.latency_p50_s),
                secs(v.latency_p95_s),
                v.requests,
                v.errors
            );
        }
        if !self.renditions.is_empty() {
            let spread: Vec<String> = self
                .renditions
                .iter()
                .map(|(r, n)| format!("{r} {n}"))
                .collect();
            let _ = writeln!(out, "renditions: {}", spread.join(", "));
        }
        for f in self.failures.iter().take(5) {
            let _ = writeln!(out, "  a viewer failed: {f}");
        }
        if let Some(how) = &self.source_ended {
            let _ = writeln!(
                out,
                "the source ended before the run did ({how}): the figures after it are of an \
                 ended stream"
            );
        }
        if !self.events.is_empty() {
            let _ = writeln!(
                out,
                "\n{:<10} {:>7} {:>7} {:>7} {:>9} {:>9} {:>9}",
                "event", "posted", "acked", "failed", "ack p50", "ack p95", "ack p99"
            );
            for e in &self.events {
                let _ = writeln!(
                    out,
                    "{:<10} {:>7} {:>7} {:>7} {:>9} {:>9} {:>9}",
                    serde_json::to_value(e.kind)
                        .ok()
                        .and_then(|v| v.as_str().map(str::to_string))
                        .unwrap_or_default(),
                    e.posted,
                    e.acknowledged,
                    e.failed,
                    secs(e.ack_p50_s),
                    secs(e.ack_p95_s),
                    secs(e.ack_p99_s)
                );
                for (error, n) in &e.errors {
                    let _ = writeln!(out, "           {n} retried after: {error}");
                }
            }
        }
        for f in &self.faults {
            let _ = writeln!(
                out,
                "\nfault at {:.1} s: {} (exit {}): viewers recovered in {}, events in {}",
                f.at_s,
                f.command,
                f.exit.map_or("?".into(), |c| c.to_string()),
                f.viewers_recovery_s
                    .map_or("(not recovered)".into(), |s| format!("{s:.1} s")),
                f.events_recovery_s
                    .map_or("(not recovered)".into(), |s| format!("{s:.1} s")),
            );
        }
        if let Some(cpu) = &self.cpu {
            let _ = writeln!(
                out,
                "\nserver CPU: {:.1} s over {:.0} s with {:.0} viewers on average: {} ms/s per viewer, {} viewers per core",
                cpu.seconds,
                cpu.over_s,
                cpu.mean_viewers,
                cpu.per_viewer_ms_per_s.map_or("n/a".into(), |v| format!("{v:.3}")),
                cpu.viewers_per_core.map_or("n/a".into(), |v| format!("{v:.0}")),
            );
        }
        let _ = writeln!(
            out,
            "\n{:<66} {:>10}  {:<44} result",
            "service level", "target", "measured"
        );
        for r in &self.sla {
            let _ = writeln!(
                out,
                "{:<66} {:>10}  {:<44} {}",
                r.what,
                r.target,
                r.measured,
                match r.pass {
                    Some(true) => "pass",
                    Some(false) => "FAIL",
                    None => "-",
                }
            );
        }
        out
    }
}

/// Per-protocol and overall viewing figures.
pub fn viewing(viewed: &[Viewed]) -> (Viewing, Vec<Viewing>) {
    let all: Vec<&Viewed> = viewed.iter().collect();
    let mut protocols = Vec::new();
    for proto in [Proto::H1, Proto::H2, Proto::H3] {
        let of: Vec<&Viewed> = viewed.iter().filter(|v| v.proto == proto).collect();
        if !of.is_empty() {
            protocols.push(Viewing::of(proto.name(), &of));
        }
    }
    (Viewing::of("all", &all), protocols)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn viewed(trouble: Vec<(f64, f64)>) -> Viewed {
        Viewed {
            proto: Proto::H1,
            rendition: None,
            first_frame_s: Some(0.5),
            failed: None,
            played_s: 10.0,
            stalled_s: 0.0,
            stalls: 0,
            latency: vec![],
            trouble,
            requests: 0,
            errors: 0,
            bytes: 0,
        }
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentile(&v, 50.0), Some(50.0));
        assert_eq!(percentile(&v, 95.0), Some(95.0));
        assert_eq!(percentile(&[3.0], 99.0), Some(3.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn recovery_runs_from_the_fault_to_the_last_trouble_it_caused() {
        let a = viewed(vec![(1.0, 2.0), (10.5, 14.0)]);
        let b = viewed(vec![(11.0, 12.0)]);
        let posted = vec![Posted {
            kind: Kind::CartAdd,
            user: "u".into(),
            id: "c".into(),
            sent: 10.2,
            acked: Some(16.0),
            failed_tries: vec![10.2, 11.0],
            last_error: None,
        }];
        let (v, e) = recovery(10.0, 100.0, 100.0, &[&a, &b], &posted);
        assert_eq!(v, Some(4.0));
        assert_eq!(e, Some(6.0));
        // Trouble that lasts to the run's end is not recovered.
        let c = viewed(vec![(12.0, 100.0)]);
        assert_eq!(recovery(10.0, 100.0, 100.0, &[&a, &c], &[]).0, None);
        // Nothing held up: recovered at once.
        assert_eq!(
            recovery(50.0, 100.0, 100.0, &[&a], &[]),
            (Some(0.0), Some(0.0))
        );
    }
}
