//! The `kafka` sink: every journal line published to a Kafka topic by an idempotent producer
//! (`enable.idempotence=true`, `acks=all`; rdkafka with its bundled librdkafka and OpenSSL,
//! built only with the crate's `kafka` feature: on for `daihuo-origin`, off for an edge unless
//! asked for), over plaintext, TLS and/or SASL as `[events] kafka_security` says.
//!
//! Each message is keyed by its room, so one room's events stay in order (one partition), and
//! carries the event's id and user in the headers `daihuo-id` and `daihuo-user`, the pair
//! consumers deduplicate on.
//!
//! The journal stays the deduplication window and the local feed: a publisher follows it from
//! the offset saved in `state_dir/kafka-TOPIC.offset` (written after every delivered batch),
//! so a restart resumes where the bus stopped acknowledging, and it tells the intake how far
//! the bus has acknowledged ([`Published`]): the origin answers an edge's batch only once the
//! bus has it, so an acknowledged event outlives this box and its disk. A crash between a
//! delivery and the offset write publishes the batch again: the bus may hold an event twice,
//! under the same (id, user) headers, which is how consumers recognise it; within one run the
//! idempotent producer already drops its own retries.

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
#[cfg(feature = "kafka")]
use rdkafka::config::ClientConfig;
#[cfg(feature = "kafka")]
use rdkafka::message::{Header, OwnedHeaders};
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
    /// The consumer that follows the topic for the dedup window could not be made.
    #[cfg(feature = "kafka")]
    #[error("kafka consumer: {0}")]
    Consumer(rdkafka::error::KafkaError),
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

/// One journal line as a sink publishes it: the line (`{"offset":..,"room":..,"event":{..}}`)
/// with the fields a bus routes and deduplicates on.
pub struct Message {
    pub line: String,
    pub room: String,
    pub id: String,
    pub user: String,
}

impl Message {
    /// The message of a journal line; `None` for a line that is not one (never written so).
    fn of(line: String) -> Option<(u64, Self)> {
        let v: serde_json::Value = serde_json::from_str(&line).ok()?;
        let text = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_string();
        let offset = v["offset"].as_u64()?;
        let (room, id, user) = (
            text(&v["room"]),
            text(&v["event"]["id"]),
            text(&v["event"]["user"]),
        );
        Some((
            offset,
            Self {
                line,
                room,
                id,
                user,
            },
        ))
    }
}

/// A place events go once the journal has them.
pub trait Sink: Send + Sync + 'static {
    /// Publishes journal lines in order; returns once the sink acknowledged all of them.
    fn publish(&self, messages: Vec<Message>)
        -> impl Future<Output = Result<(), SinkError>> + Send;
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
    /// A producer for `config`'s brokers, topic and security settings. Files that cannot be
    /// read (CA, certificate, key) fail here, not at the first message.
    pub fn new(config: &conf::EventsConfig) -> Result<Self, SinkError> {
        let producer: FutureProducer = client_config(config)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "1")
            .set("message.timeout.ms", "30000")
            .create()
            .map_err(SinkError::Producer)?;
        Ok(Self {
            producer,
            topic: config.kafka_topic.clone(),
        })
    }
}

/// A client of `config`'s brokers with its security settings.
#[cfg(feature = "kafka")]
pub fn client_config(config: &conf::EventsConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.kafka_brokers)
        .set("security.protocol", config.kafka_security.as_str());
    let path = |p: &Path| p.display().to_string();
    if let Some(ca) = &config.kafka_ca {
        client.set("ssl.ca.location", path(ca));
    }
    if let (Some(cert), Some(key)) = (&config.kafka_cert, &config.kafka_key) {
        client
            .set("ssl.certificate.location", path(cert))
            .set("ssl.key.location", path(key));
    }
    if config.kafka_security.sasl() {
        client
            .set("sasl.mechanism", &config.kafka_sasl_mechanism)
            .set("sasl.username", &config.kafka_sasl_username)
            .set("sasl.password", &config.kafka_sasl_password);
    }
    client
}

#[cfg(feature = "kafka")]
impl Sink for Kafka {
    async fn publish(&self, messages: Vec<Message>) -> Result<(), SinkError> {
        let sends = messages.iter().map(|m| {
            let headers = OwnedHeaders::new()
                .insert(Header {
                    key: "daihuo-id",
                    value: Some(&m.id),
                })
                .insert(Header {
                    key: "daihuo-user",
                    value: Some(&m.user),
                });
            self.producer.send(
                FutureRecord::to(&self.topic)
                    .key(&m.room)
                    .payload(&m.line)
                    .headers(headers),
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
    info!(
        sink = sink.name(),
        next, "event sink following the journal; batches are acknowledged once it has them"
    );
    // The position is saved beside the publishing, not in its way, and at most every
    // SAVE_EVERY (its fsyncs share the disk with the journal's, which acknowledgements wait
    // for); a crash may publish the last batches again, and consumers know the copies by
    // their headers. The last one is saved at shutdown.
    let (saved, mut to_save) = tokio::sync::watch::channel(next);
    let saver = {
        let file = file.clone();
        tokio::spawn(async move {
            while to_save.changed().await.is_ok() {
                tokio::time::sleep(SAVE_EVERY).await;
                let (file, next) = (file.clone(), *to_save.borrow_and_update());
                if let Ok(Err(e)) =
                    tokio::task::spawn_blocking(move || write_offset(&file, next)).await
                {
                    warn!("event sink: {e}");
                }
            }
        })
    };
    let mut written = intake.journal().subscribe();
    let mut backoff = Duration::from_millis(100);
    // Batches sent and not yet acknowledged, in journal order, each with its offsets.
    let mut in_flight = futures::stream::FuturesOrdered::new();
    loop {
        tokio::select! {
            biased;
            Some((first, last, result)) = in_flight.next(), if !in_flight.is_empty() => {
                match result {
                    Ok(()) => {
                        intake.published(last + 1);
                        saved.send_replace(last + 1);
                        backoff = Duration::from_millis(100);
                    }
                    Err(e) => {
                        // The batches behind it are sent again from here: the bus may get
                        // some twice (consumers know them by their headers).
                        warn!(sink = sink.name(), "events not published yet: {e}");
                        in_flight = futures::stream::FuturesOrdered::new();
                        next = first;
                        tokio::time::sleep(backoff).await;
                        backoff = (backoff * 2).min(Duration::from_secs(5));
                    }
                }
            }
            // (The watch's guard is let go of before the batch is read.)
            _ = async { written.wait_for(|w| *w > next).await.map(drop) },
                if in_flight.len() < IN_FLIGHT => {
                let Some((first, last, messages)) = read_batch(&intake, &sink, &mut next).await
                else {
                    continue;
                };
                let sent = sink.publish(messages);
                in_flight.push_back(async move { (first, last, sent.await) });
                next = last + 1;
            }
            _ = shutdown.stopped() => break,
        }
    }
    // What was sent is awaited (the producer's own timeout bounds it), so that the saved
    // position is as far as the bus really is.
    while let Some((_, last, result)) = in_flight.next().await {
        match result {
            Ok(()) => {
                saved.send_replace(last + 1);
            }
            Err(_) => break,
        }
    }
    // The saver writes what it has not yet, then ends.
    drop(saved);
    let _ = saver.await;
}

/// Batches a sink may have sent and not yet acknowledged: the bus keeps them in order (an
/// idempotent producer keeps a partition's order across them), and a cart does not wait for
/// the batch before its own to be acknowledged before it is sent.
const IN_FLIGHT: usize = 8;

/// How often the sink's position is saved while it publishes.
const SAVE_EVERY: Duration = Duration::from_millis(250);

/// The next batch of journal lines from `next` as messages, with their first and last
/// offsets; `None` (with `next` moved on where the journal was trimmed) when there is nothing
/// to send yet.
async fn read_batch<S: Sink>(
    intake: &Intake,
    sink: &S,
    next: &mut u64,
) -> Option<(u64, u64, Vec<Message>)> {
    let journal = intake.journal().clone();
    let from = *next;
    let lines =
        tokio::task::spawn_blocking(move || journal.read(from.checked_sub(1), READ_LIMIT)).await;
    let lines = match lines {
        Ok(Ok(lines)) => lines,
        // Deleted before this sink was configured (retention keeps what it has not
        // published since): nothing left to publish below the oldest kept.
        Ok(Err(super::JournalError::Trimmed { oldest, .. })) => {
            warn!(
                sink = sink.name(),
                from,
                to = oldest,
                "journal offsets deleted before this sink published them: skipped"
            );
            *next = oldest;
            return None;
        }
        Ok(Err(e)) => {
            warn!("event sink: {e}");
            tokio::time::sleep(Duration::from_secs(1)).await;
            return None;
        }
        Err(e) => {
            warn!("event sink: {e}");
            return None;
        }
    };
    let mut messages = Vec::with_capacity(lines.len());
    let mut last = from;
    for (offset, message) in lines.into_iter().filter_map(Message::of) {
        last = offset;
        messages.push(message);
    }
    (!messages.is_empty()).then_some((from, last, messages))
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

#[cfg(all(test, feature = "kafka"))]
mod tests {
    use super::*;

    fn config(security: conf::KafkaSecurity, ca: Option<PathBuf>) -> conf::EventsConfig {
        conf::EventsConfig {
            sink: conf::Sink::Kafka,
            kafka_security: security,
            kafka_ca: ca,
            kafka_sasl_mechanism: "SCRAM-SHA-512".into(),
            kafka_sasl_username: "daihuo".into(),
            kafka_sasl_password: "secret".into(),
            ..Default::default()
        }
    }

    /// This build speaks TLS and SASL to brokers (librdkafka refuses `ssl` when built
    /// without OpenSSL, and SCRAM without SASL), and a CA file it cannot use fails at start
    /// with the file named, not at the first order.
    #[test]
    fn tls_and_sasl_producers_are_made_and_a_bad_ca_fails_at_start() {
        use conf::KafkaSecurity::*;
        let dir = tempfile::tempdir().unwrap();
        let ca = dir.path().join("ca.pem");
        let cert = rcgen::generate_simple_self_signed(vec!["kafka".into()]).unwrap();
        std::fs::write(&ca, cert.cert.pem()).unwrap();
        for security in [Plaintext, Ssl, SaslPlaintext, SaslSsl] {
            let ca = security.tls().then(|| ca.clone());
            if let Err(e) = Kafka::new(&config(security, ca)) {
                panic!("{}: {e}", security.as_str());
            }
        }
        let garbage = dir.path().join("garbage.pem");
        std::fs::write(&garbage, "not a certificate\n").unwrap();
        let err = Kafka::new(&config(Ssl, Some(garbage.clone())))
            .err()
            .expect("a CA file without a certificate is refused");
        assert!(err.to_string().contains("ssl.ca.location"), "{err}");
    }

    /// A journal line becomes a message keyed by room with the id and user for headers.
    #[test]
    fn a_journal_line_names_its_room_id_and_user() {
        let line = r#"{"offset":7,"room":"shop","event":{"id":"c-1","type":"cart_add","user":"u9","sku":"S","qty":1}}"#;
        let (offset, m) = Message::of(line.to_string()).unwrap();
        assert_eq!(offset, 7);
        assert_eq!(
            (m.room.as_str(), m.id.as_str(), m.user.as_str()),
            ("shop", "c-1", "u9")
        );
        assert_eq!(m.line, line);
    }
}
