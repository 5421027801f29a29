//! The bus as every origin's idempotency window. With `sink = "kafka"` all origins publish to
//! one topic, and an origin acknowledges a batch only once the topic has it: the topic holds
//! every acknowledged event, whichever origin took it. So each origin follows the whole topic,
//! from `dedup_hours` ago, into its own (user, id) window ([`Journal::remember`]).
//!
//! A room's events come to an origin after they went to another when the room's primary is
//! down (edges fail over to its backup) and when the primary is back. Before an origin takes
//! a room it has not taken within [`QUIET`], it catches up with the topic's end as of that
//! moment ([`TopicWindow::caught_up`]): an event the other origin acknowledged is then a
//! duplicate here, not a second copy. (Two origins both taking one room at once, an edge
//! that still sees the primary while another does not, can still both write a viewer's
//! retry; nothing else does.)

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message as _};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::watch;
use tracing::{info, warn};

use super::Journal;

/// A room not taken for this long is caught up with the topic before it is taken again: less
/// than any failover (an origin is down for edges at least one probe, 1 s by default).
pub const QUIET: Duration = Duration::from_millis(500);

/// Messages handed to the window in one index commit, at most...
const BATCH: usize = 1000;
/// ...and at least this often while messages keep coming (a catch-up waits for them).
const FLUSH_EVERY: Duration = Duration::from_millis(10);

/// Follows the topic into the journal's window; says when it has caught up.
pub struct TopicWindow {
    consumer: Arc<BaseConsumer>,
    topic: String,
    /// Per partition, the next offset not yet in the window (empty until assigned).
    positions: watch::Sender<HashMap<i32, i64>>,
    /// When each room was last taken here.
    taken: Mutex<HashMap<String, Instant>>,
}

/// Blocking broker requests wait at most this long.
const REQUEST: Duration = Duration::from_secs(5);

impl TopicWindow {
    /// A consumer of `config`'s topic (not yet following it: see [`TopicWindow::follow`]).
    pub fn new(config: &conf::EventsConfig) -> Result<Arc<Self>, super::kafka::SinkError> {
        let consumer: BaseConsumer = super::kafka::client_config(config)
            // Assigned partitions, nothing committed: the group is never joined.
            .set("group.id", "daihuo-origin-window")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "false")
            // A catch-up waits for the fetch in progress: keep it short.
            .set("fetch.wait.max.ms", "10")
            .create()
            .map_err(super::kafka::SinkError::Consumer)?;
        Ok(Arc::new(Self {
            consumer: Arc::new(consumer),
            topic: config.kafka_topic.clone(),
            positions: watch::Sender::new(HashMap::new()),
            taken: Mutex::new(HashMap::new()),
        }))
    }

    /// Before a batch for `rooms` is taken: waits until the window holds what the topic held
    /// when asked, if any of them was not taken within [`QUIET`].
    pub async fn before_taking(&self, rooms: &[&str]) -> Result<(), String> {
        let now = Instant::now();
        let stale = {
            let taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
            rooms.iter().any(|room| {
                taken
                    .get(*room)
                    .is_none_or(|at| now.duration_since(*at) > QUIET)
            })
        };
        if stale {
            self.caught_up().await?;
        }
        // Taken as of now, not as of the question (a catch-up may have taken a while).
        let now = Instant::now();
        let mut taken = self.taken.lock().unwrap_or_else(|e| e.into_inner());
        if taken.len() > 100_000 {
            taken.retain(|_, at| now.duration_since(*at) <= QUIET);
        }
        for room in rooms {
            taken.insert(room.to_string(), now);
        }
        Ok(())
    }

    /// How far the window is, per partition (for a catch-up that timed out).
    pub fn lag(&self) -> String {
        let at = self.positions.borrow();
        match at.is_empty() {
            true => "not following the topic yet".into(),
            false => format!(
                "{} s without reaching the topic's end; at {at:?}",
                super::BUS_WAIT.as_secs()
            ),
        }
    }

    /// Waits until every message the topic holds now is in the window.
    pub async fn caught_up(&self) -> Result<(), String> {
        let (consumer, topic) = (self.consumer.clone(), self.topic.clone());
        let ends = tokio::task::spawn_blocking(move || ends(&consumer, &topic))
            .await
            .map_err(|e| e.to_string())??;
        let mut positions = self.positions.subscribe();
        let caught_up = positions.wait_for(|at| {
            ends.iter()
                .all(|(p, end)| *end == 0 || at.get(p).is_some_and(|at| at >= end))
        });
        caught_up.await.map(drop).map_err(|e| e.to_string())
    }

    /// Follows the topic from `window` ago into `journal` until `shutdown`. Blocking: run on
    /// its own thread.
    pub fn follow(&self, journal: &Journal, window: Duration, shutdown: &daemon::Drain) {
        let assigned = loop {
            if shutdown.is_draining() {
                return;
            }
            match self.assign(window) {
                Ok(assigned) => break assigned,
                Err(e) => {
                    warn!(topic = %self.topic, "following the topic for the dedup window: {e}");
                    std::thread::sleep(Duration::from_secs(1));
                }
            }
        };
        info!(topic = %self.topic, partitions = assigned.len(), "dedup window follows the topic");
        self.positions.send_replace(assigned);
        let mut pairs: Vec<(String, String)> = Vec::new();
        let mut read: HashMap<i32, i64> = HashMap::new();
        let mut flushed = Instant::now();
        while !shutdown.is_draining() {
            let timeout = match pairs.is_empty() {
                true => Duration::from_millis(100),
                false => Duration::ZERO,
            };
            match self.consumer.poll(timeout) {
                Some(Ok(m)) => {
                    if let Some(pair) = pair_of(&m) {
                        pairs.push(pair);
                    }
                    read.insert(m.partition(), m.offset() + 1);
                    if pairs.len() < BATCH && flushed.elapsed() < FLUSH_EVERY {
                        continue;
                    }
                }
                Some(Err(e)) => warn!(topic = %self.topic, "dedup window: {e}"),
                None => {}
            }
            if read.is_empty() {
                continue;
            }
            let refs: Vec<(&str, &str)> = pairs
                .iter()
                .map(|(u, i)| (u.as_str(), i.as_str()))
                .collect();
            if let Err(e) = journal.remember(&refs) {
                warn!("dedup window: {e}; read again");
                std::thread::sleep(Duration::from_secs(1));
                continue;
            }
            pairs.clear();
            self.positions.send_modify(|at| at.extend(read.drain()));
            flushed = Instant::now();
        }
    }

    /// Assigns every partition of the topic from `window` ago; the offsets it starts from.
    fn assign(&self, window: Duration) -> Result<HashMap<i32, i64>, String> {
        let partitions = partitions(&self.consumer, &self.topic)?;
        if partitions.is_empty() {
            return Err("no such topic yet".into());
        }
        let since = SystemTime::now()
            .checked_sub(window)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_millis() as i64);
        let mut times = TopicPartitionList::new();
        for p in &partitions {
            times
                .add_partition_offset(&self.topic, *p, Offset::Offset(since))
                .map_err(|e| e.to_string())?;
        }
        // A broker that cannot look up by time: from the oldest kept.
        let by_time = self.consumer.offsets_for_times(times, REQUEST).ok();
        let mut start = HashMap::new();
        let mut list = TopicPartitionList::new();
        for p in partitions {
            let (low, high) = self
                .consumer
                .fetch_watermarks(&self.topic, p, REQUEST)
                .map_err(|e| e.to_string())?;
            let found = by_time
                .as_ref()
                .and_then(|l| l.find_partition(&self.topic, p))
                .map(|e| e.offset());
            let from = match found {
                Some(Offset::Offset(o)) => o.clamp(low, high),
                // Nothing that recent: the window starts at the end.
                Some(Offset::End) => high,
                _ => low,
            };
            list.add_partition_offset(&self.topic, p, Offset::Offset(from))
                .map_err(|e| e.to_string())?;
            start.insert(p, from);
        }
        self.consumer.assign(&list).map_err(|e| e.to_string())?;
        Ok(start)
    }
}

/// The next offset of each partition of `topic` (0 for an empty one, or when the topic does
/// not exist yet: nothing was published anywhere).
fn ends(consumer: &BaseConsumer, topic: &str) -> Result<Vec<(i32, i64)>, String> {
    partitions(consumer, topic)?
        .into_iter()
        .map(|p| {
            consumer
                .fetch_watermarks(topic, p, REQUEST)
                .map(|(_, high)| (p, high))
                .map_err(|e| format!("topic {topic} partition {p}: {e}"))
        })
        .collect()
}

/// The partitions of `topic` (none when it does not exist).
fn partitions(consumer: &BaseConsumer, topic: &str) -> Result<Vec<i32>, String> {
    let metadata = consumer
        .fetch_metadata(Some(topic), REQUEST)
        .map_err(|e| format!("topic {topic}: {e}"))?;
    Ok(metadata
        .topics()
        .iter()
        .filter(|t| t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect())
}

/// The (user, id) of a message: its headers (the payload is not parsed).
fn pair_of(m: &impl rdkafka::Message) -> Option<(String, String)> {
    let headers = m.headers()?;
    let header = |name: &str| {
        headers
            .iter()
            .find(|h| h.key == name)
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
    };
    Some((header("daihuo-user")?, header("daihuo-id")?))
}
