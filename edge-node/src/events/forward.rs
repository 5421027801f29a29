//! The spool's forwarder: sends the oldest spooled records to their origins in batches over
//! the persistent upstream connections, and deletes them only once the origin answered 200
//! (it has written them durably, once). After a restart it starts with what the spool holds.
//!
//! Each room's events go to the first origin of the room's rendezvous ranking that is up:
//! its primary, else its backup. With the Kafka sink the origins share one idempotency window
//! through the topic (`origin::events::window`), so an event the primary acknowledged before
//! it went down is a duplicate at the backup, and the switch doubles nothing. (With journal
//! sinks, each origin's journal has the events it took; a viewer's retry across the switch
//! can be in both.) While no origin of a room is up its events wait in the spool (never
//! lost, delivered late), and only they: an origin that fails is held back (its own backoff,
//! up to [`MAX_BACKOFF`]) while the forwarder reads on past its records, so other origins'
//! rooms keep flowing. A batch an origin refuses as bad (a 4xx other than 408 and 429) is
//! split until the refused records are alone; each of those goes to the dead-letter file
//! (`dead-letters.jsonl` beside the spool, one JSON line with the origin's answer) with a
//! warning, and stops blocking anything.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::StatusCode;
use origin::events::{Intake, Record};
use prometheus::{Gauge, IntCounter, IntGauge};
use tracing::{debug, warn};

use super::spool::Spool;
use crate::upstream::Upstream;

/// Records per upstream batch.
const BATCH: usize = 500;
const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(2);
/// The name of the in-process origin, for holding it back like a remote one.
const LOCAL: &str = "local";

/// Where spooled records go.
pub enum Target {
    /// The origin in this process (single box).
    Local(Arc<Intake>),
    /// Remote origins.
    Remote(Arc<Upstream>),
}

/// Where refused records go, and their count (`daihuo_events_dead_letters_total`); with the
/// spool's size (`daihuo_spool_bytes`) and how long its oldest record has waited
/// (`daihuo_spool_oldest_seconds`), which the forwarder keeps up to date.
pub struct DeadLetters {
    pub path: PathBuf,
    pub counted: IntCounter,
    pub spool_bytes: IntGauge,
    pub spool_oldest: Gauge,
}

/// Origins held back after a failure: until when, and the backoff that follows the next.
#[derive(Default)]
struct Held(HashMap<String, (Instant, Duration)>);

impl Held {
    fn is_held(&self, origin: &str, now: Instant) -> bool {
        self.0.get(origin).is_some_and(|(until, _)| *until > now)
    }

    fn failed(&mut self, origin: &str) {
        let entry = self
            .0
            .entry(origin.to_string())
            .or_insert((Instant::now(), MIN_BACKOFF));
        *entry = (Instant::now() + entry.1, (entry.1 * 2).min(MAX_BACKOFF));
    }

    fn delivered(&mut self, origin: &str) {
        self.0.remove(origin);
    }

    /// When the first held origin may be tried again.
    fn next_try(&self) -> Option<Instant> {
        self.0.values().map(|(until, _)| *until).min()
    }
}

/// Forwards until `shutdown`, then until the spool is empty (the drain's grace period bounds
/// that).
pub async fn run(
    spool: Arc<Spool>,
    target: Target,
    dead: DeadLetters,
    mut shutdown: daemon::Drain,
) {
    let mut held = Held::default();
    // A pass reads the spool from its oldest record to its newest, batch after batch.
    let mut after: Option<u64> = None;
    // Whether this pass read past records it could not deliver (their origin held back).
    // Under steady posting a pass may never reach the spool's end, so such a pass starts
    // again from the oldest once a held origin may be tried again: else the records a room's
    // primary failed mid-pass would wait for a lull in posting, not for the backup.
    let mut left_behind = false;
    loop {
        if after.is_some() && left_behind && held.next_try().is_none_or(|at| at <= Instant::now()) {
            after = None;
        }
        if after.is_none() {
            left_behind = false;
        }
        dead.spool_bytes
            .set(i64::try_from(spool.bytes()).unwrap_or(i64::MAX));
        let reader = spool.clone();
        let read = tokio::task::spawn_blocking(move || {
            // The oldest record's wait is read from the store at every batch: a pass that
            // reads on past held records does not see it.
            Ok::<_, super::spool::SpoolError>((
                reader.oldest_after(after, BATCH)?,
                reader.oldest_waited()?,
            ))
        })
        .await;
        let batch = match read {
            Ok(Ok((batch, waited))) => {
                dead.spool_oldest.set(waited.as_secs_f64());
                batch
            }
            Ok(Err(e)) => {
                warn!("spool read: {e}");
                Vec::new()
            }
            Err(e) => {
                warn!("spool read: {e}");
                Vec::new()
            }
        };
        let Some(&(last, _)) = batch.last() else {
            if after.take().is_some() {
                // The end of a pass. With origins held back, the next pass starts when the
                // first may be tried again (or something new arrives).
                if let Some(at) = held.next_try() {
                    let wait = tokio::time::sleep_until(at.into());
                    if shutdown.is_draining() {
                        // Draining with an origin down: tried until the grace period ends;
                        // what it does not take stays spooled.
                        wait.await;
                    } else {
                        tokio::select! {
                            _ = wait => {}
                            _ = spool.written.notified() => {}
                            _ = shutdown.stopped() => {}
                        }
                    }
                }
                continue;
            }
            if shutdown.is_draining() {
                return;
            }
            tokio::select! {
                _ = spool.written.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.stopped() => {}
            }
            continue;
        };
        after = Some(last);
        let mut done = Vec::new();
        let mut records = Vec::new();
        for (key, bytes) in batch {
            match serde_json::from_slice::<Record>(&bytes) {
                Ok(r) => records.push((key, r)),
                // Written by this program; unreadable means a format change: drop it loudly.
                Err(e) => {
                    warn!(key, "spooled record unreadable, dropped: {e}");
                    done.push(key);
                }
            }
        }
        let read = records.len() + done.len();
        done.extend(deliver(&target, records, &mut held, &dead).await);
        left_behind |= done.len() < read;
        if !done.is_empty() {
            let remover = spool.clone();
            match tokio::task::spawn_blocking(move || remover.remove(&done)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => warn!("spool delete: {e}"),
                Err(e) => warn!("spool delete: {e}"),
            }
        }
    }
}

/// One origin's records of a batch.
struct Group {
    origin: Option<Arc<crate::upstream::Origin>>,
    keys: Vec<u64>,
    records: Vec<Record>,
}

/// How one origin answered a group.
enum Answer {
    Taken,
    /// Refused as bad: the same records will be refused again.
    Refused(StatusCode, String),
    /// Down, overloaded or unreachable: try again later.
    Later,
}

/// Delivers what it can of `records` to origins not held back; the keys that may leave the
/// spool (delivered, or dead-lettered).
async fn deliver(
    target: &Target,
    records: Vec<(u64, Record)>,
    held: &mut Held,
    dead: &DeadLetters,
) -> Vec<u64> {
    let now = Instant::now();
    // Group by the room's authority.
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for (key, record) in records {
        let (name, origin) = match target {
            Target::Local(_) => (LOCAL.to_string(), None),
            Target::Remote(upstream) => {
                let ranked = upstream.ranked(&record.room);
                let up = ranked.iter().find(|o| o.is_up());
                let Some(origin) = up.or(ranked.first()).cloned() else {
                    continue;
                };
                (origin.peer.name.clone(), Some(origin))
            }
        };
        if held.is_held(&name, now) {
            continue;
        }
        let group = groups.entry(name).or_insert_with(|| Group {
            origin,
            keys: Vec::new(),
            records: Vec::new(),
        });
        group.keys.push(key);
        group.records.push(record);
    }
    let mut leave = Vec::new();
    for (name, group) in groups {
        // Refused groups are halved until each refused record is alone.
        let mut pending = vec![(group.keys, group.records)];
        while let Some((keys, records)) = pending.pop() {
            match send(target, group.origin.as_ref(), &records).await {
                Answer::Taken => {
                    held.delivered(&name);
                    leave.extend(keys);
                }
                Answer::Refused(status, why) if records.len() > 1 => {
                    debug!(origin = %name, %status, "batch refused, split: {why}");
                    let half = records.len() / 2;
                    let (k1, k2) = keys.split_at(half);
                    let (r1, r2) = records.split_at(half);
                    pending.push((k2.to_vec(), r2.to_vec()));
                    pending.push((k1.to_vec(), r1.to_vec()));
                }
                Answer::Refused(status, why) => {
                    if dead_letter(dead, &name, status, &why, &records[0]) {
                        leave.extend(keys);
                    }
                }
                Answer::Later => {
                    held.failed(&name);
                    break;
                }
            }
        }
    }
    leave
}

async fn send(
    target: &Target,
    origin: Option<&Arc<crate::upstream::Origin>>,
    records: &[Record],
) -> Answer {
    match (target, origin) {
        (Target::Local(intake), _) => match intake.accept(records.to_vec()).await {
            Ok(_) => Answer::Taken,
            Err(e) => {
                warn!("event sink: {e}");
                Answer::Later
            }
        },
        (Target::Remote(upstream), Some(origin)) => {
            let Ok(body) = serde_json::to_vec(records) else {
                return Answer::Later;
            };
            match upstream.post(origin, "/events", Bytes::from(body)).await {
                Ok((StatusCode::OK, _)) => Answer::Taken,
                Ok((status, body))
                    if status.is_client_error()
                        && status != StatusCode::REQUEST_TIMEOUT
                        && status != StatusCode::TOO_MANY_REQUESTS =>
                {
                    Answer::Refused(status, String::from_utf8_lossy(&body).trim().to_string())
                }
                Ok((status, body)) => {
                    warn!(origin = %origin.peer.name, %status, "events not taken yet: {}", String::from_utf8_lossy(&body).trim());
                    Answer::Later
                }
                Err(e) => {
                    debug!(origin = %origin.peer.name, "events not delivered yet: {e}");
                    Answer::Later
                }
            }
        }
        (Target::Remote(_), None) => Answer::Later,
    }
}

/// Appends a refused record to the dead-letter file (fsynced) with why; whether it is there.
fn dead_letter(
    dead: &DeadLetters,
    origin: &str,
    status: StatusCode,
    why: &str,
    record: &Record,
) -> bool {
    let at = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let line = serde_json::json!({
        "at": at, "origin": origin, "status": status.as_u16(), "why": why, "record": record,
    });
    let written = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&dead.path)
        .and_then(|mut f| {
            writeln!(f, "{line}")?;
            f.sync_data()
        });
    match written {
        Ok(()) => {
            dead.counted.inc();
            warn!(
                origin, room = %record.room, id = %record.event.id, user = %record.event.user,
                %status, file = %dead.path.display(),
                "event refused by its origin, moved to the dead-letter file: {why}"
            );
            true
        }
        Err(e) => {
            warn!(file = %dead.path.display(), "dead-letter file: {e}; the record stays spooled");
            false
        }
    }
}
