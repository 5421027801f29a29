//! The `kafka` sink: every journal line published to a Kafka topic, keyed by the event id,
//! by an idempotent producer (`enable.idempotence=true`, `acks=all`; rdkafka with its bundled
//! librdkafka, built only with the crate's `kafka` feature: on for `daihuo-origin`, off for
//! an edge unless asked for).
//!
//! The journal stays the deduplication window and the durable record: a publisher follows it
//! from the offset saved in `state_dir/kafka-TOPIC.offset` (written after every delivered
//! batch), so a restart resumes where the bus stopped acknowledging. A crash between a
//! delivery and that write publishes the batch again: the bus may hold an event twice, under
//! the same key (its id), which is how consumers recognise it; within one run the idempotent
//! producer already drops its own retries.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "kafka")]
use rdkafka::config::ClientConfig;
#[cfg(feature = "kafka")]
use rdkafka::producer::{FutureProducer, FutureRecord};
#[cfg(feature = "kafka")]
use rdkafka::util::Timeout;
use tracing::{info, warn};

use super::{Intake, READ_LIMIT};

/// Why a sink could not be set up or take events.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// `events.sink = "kafka"` in a build without the `kafka` feature.
    #[error(
        "events.sink = \"kafka\", but this build has no Kafka sink (build with the `kafka` \
         feature: `cargo build -p edge-node --features kafka`)"
    )]
    NotBuilt,
    /// The producer could not be made (a bad broker list, say).
    #[cfg(feature = "kafka")]
    #[error("kafka producer: {0}")]
    Producer(rdkafka::error::KafkaError),
    /// The bus did not acknowledge a message (within its timeout); retried.
    #[cfg(feature = "kafka")]
    #[error("kafka: {0}")]
    Delivery(rdkafka::error::KafkaError),
    /// The saved position could not be written.
    #[error("{path}: {source}")]
    Offset {
        path: String,
        source: std::io::Error,
    },
}

/// A place events go once the journal has them.
pub trait Sink: Send + Sync + 'static {
    /// Publishes journal lines (in order; each `{"offset":..,"room":..,"event":{..}}`), keyed
    /// by `ids`; returns once the sink acknowledged all of them.
    fn publish(
        &self,
        lines: &[String],
        ids: &[String],
    ) -> impl Future<Output = Result<(), SinkError>> + Send;
    /// Names the sink in logs and in the offset file.
    fn name(&self) -> String;
}

/// Publishes to one Kafka topic.
#[cfg(feature = "kafka")]
pub struct Kafka {
    producer: FutureProducer,
    topic: String,
}

#[cfg(feature = "kafka")]
impl Kafka {
    /// A producer for `brokers` (comma-separated `host:port`) and `topic`.
    pub fn new(brokers: &str, topic: &str) -> Result<Self, SinkError> {
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("message.timeout.ms", "30000")
            .create()
            .map_err(SinkError::Producer)?;
        Ok(Self {
            producer,
            topic: topic.to_string(),
        })
    }
}

#[cfg(feature = "kafka")]
impl Sink for Kafka {
    async fn publish(&self, lines: &[String], ids: &[String]) -> Result<(), SinkError> {
        let sends = lines.iter().zip(ids).map(|(line, id)| {
            self.producer.send(
                FutureRecord::to(&self.topic).key(id).payload(line),
                Timeout::After(Duration::from_secs(30)),
            )
        });
        for result in futures::future::join_all(sends).await {
            result.map_err(|(e, _)| SinkError::Delivery(e))?;
        }
        Ok(())
    }

    fn name(&self) -> String {
        format!("kafka-{}", self.topic)
    }
}

/// Follows the journal of `intake` into `sink` until `shutdown`, saving the position in
/// `state_dir`.
pub async fn follow<S: Sink>(
    intake: Arc<Intake>,
    sink: S,
    state_dir: PathBuf,
    mut shutdown: daemon::Drain,
) {
    let file = offset_file(&state_dir, &sink);
    let mut next = read_offset(&file);
    info!(sink = sink.name(), next, "event sink following the journal");
    let mut written = intake.journal().subscribe();
    let mut backoff = Duration::from_millis(100);
    loop {
        tokio::select! {
            _ = written.wait_for(|w| *w > next) => {}
            _ = shutdown.stopped() => return,
        }
        let journal = intake.journal().clone();
        let lines = match tokio::task::spawn_blocking(move || {
            journal.read(next.checked_sub(1), READ_LIMIT)
        })
        .await
        {
            Ok(Ok(lines)) => lines,
            // Deleted before this sink was configured (retention keeps what it has not
            // published since): nothing left to publish below the oldest kept.
            Ok(Err(super::JournalError::Trimmed { oldest, .. })) => {
                warn!(
                    sink = sink.name(),
                    from = next,
                    to = oldest,
                    "journal offsets deleted before this sink published them: skipped"
                );
                next = oldest;
                continue;
            }
            Ok(Err(e)) => {
                warn!("event sink: {e}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
            Err(e) => {
                warn!("event sink: {e}");
                continue;
            }
        };
        let mut ids = Vec::with_capacity(lines.len());
        let mut last = next;
        for line in &lines {
            let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
            ids.push(v["event"]["id"].as_str().unwrap_or_default().to_string());
            last = v["offset"].as_u64().unwrap_or(last);
        }
        if lines.is_empty() {
            continue;
        }
        match sink.publish(&lines, &ids).await {
            Ok(()) => {
                next = last + 1;
                if let Err(e) = write_offset(&file, next) {
                    warn!("event sink: {e}");
                }
                backoff = Duration::from_millis(100);
            }
            Err(e) => {
                warn!(sink = sink.name(), "events not published yet: {e}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}

/// Where `sink` keeps its position: the next journal offset to publish.
pub fn offset_file<S: Sink>(state_dir: &Path, sink: &S) -> PathBuf {
    state_dir.join(format!("{}.offset", sink.name()))
}

/// The position saved in `file`; 0 (publish everything) when there is none.
pub fn read_offset(file: &Path) -> u64 {
    std::fs::read_to_string(file)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Replaces the offset file atomically (write, fsync, rename).
fn write_offset(file: &Path, next: u64) -> Result<(), SinkError> {
    use std::io::Write;
    let tmp = file.with_extension("offset.tmp");
    let at = |path: &Path| {
        let path = path.display().to_string();
        move |source| SinkError::Offset { path, source }
    };
    let mut f = std::fs::File::create(&tmp).map_err(at(&tmp))?;
    writeln!(f, "{next}").map_err(at(&tmp))?;
    f.sync_data().map_err(at(&tmp))?;
    std::fs::rename(&tmp, file).map_err(at(file))
}
