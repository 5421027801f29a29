//! Viewer events at the origin: what edges relay ([`Record`]s, cart and order events, comments
//! and merged like counts) is deduplicated by (user, event id) and written to the [`journal`]
//! (append-only JSON lines, fsynced) that business services consume with
//! `GET /events?after=OFFSET` on the admin listener, and that the [`kafka`] sink, when
//! configured, publishes: then a batch is acknowledged only once the bus has it.
//!
//! Where to start: [`Intake::accept`]. The edge side (validation of viewers' posts, rate
//! limits, like merging, the durable spool and the relay) is `edge-node::events`; [`model`]
//! is shared by both.

pub mod dedup;
pub mod journal;
pub mod kafka;
pub mod model;
#[cfg(feature = "kafka")]
pub mod window;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use daemon::serve::text;
use http::{Response, StatusCode};
use prometheus::IntCounterVec;

use crate::error::ApiError;
pub use journal::{Appended, Journal, JournalError};
pub use model::{Event, EventError, Kind, Record};

/// Starts the configured sink besides the journal (`kafka` follows the journal into the
/// bus; `journal` needs nothing more).
pub fn start_sink(
    config: &conf::EventsConfig,
    intake: &Arc<Intake>,
    tasks: &mut tokio::task::JoinSet<()>,
    shutdown: &daemon::Drain,
) -> Result<(), kafka::SinkError> {
    let retention = journal::Retention {
        max_age: (config.retain_hours > 0).then(|| Duration::from_secs(config.retain_hours * 3600)),
        max_bytes: (config.retain_bytes > 0).then_some(config.retain_bytes),
    };
    let retain = |keep_from: Box<dyn Fn() -> u64 + Send>| {
        retain(intake.clone(), retention, keep_from, shutdown.clone())
    };
    match config.sink {
        conf::Sink::Journal => {
            tracing::info!(
                journal = %config.state_dir.join("journal").display(),
                "events.sink = \"journal\": an acknowledged event has one copy, on this box's \
                 disk; with sink = \"kafka\" it is on the bus too"
            );
            tasks.spawn(retain(Box::new(|| u64::MAX)));
            Ok(())
        }
        #[cfg(feature = "kafka")]
        conf::Sink::Kafka => {
            let sink = kafka::Kafka::new(config)?;
            let offsets = kafka::offset_file(&config.state_dir, &sink);
            intake.acknowledged_by_sink(kafka::read_offset(&offsets));
            let window = window::TopicWindow::new(config)?;
            let _ = intake.window.set(window.clone());
            let (journal, stop) = (intake.journal.clone(), shutdown.clone());
            let dedup = Duration::from_secs(config.dedup_hours * 3600);
            tasks.spawn(async move {
                let follow = move || window.follow(&journal, dedup, &stop);
                let _ = tokio::task::spawn_blocking(follow).await;
            });
            tasks.spawn(retain(Box::new(move || kafka::read_offset(&offsets))));
            tasks.spawn(kafka::follow(
                intake.clone(),
                sink,
                config.state_dir.clone(),
                shutdown.clone(),
            ));
            Ok(())
        }
        #[cfg(not(feature = "kafka"))]
        conf::Sink::Kafka => {
            let _ = (intake, tasks, shutdown);
            Err(kafka::SinkError::NotBuilt)
        }
    }
}

/// Most journal lines one `GET /events` returns.
pub const READ_LIMIT: usize = 1000;
/// How long `GET /events` waits for something new before answering empty.
pub const LONG_POLL: Duration = Duration::from_secs(20);

/// How long an origin holds a batch for the bus to acknowledge it before answering 503 (the
/// edge keeps the events and sends them again; the journal drops the copies).
pub const BUS_WAIT: Duration = Duration::from_secs(5);

/// Takes relayed records into the sink, once each.
pub struct Intake {
    journal: Arc<Journal>,
    /// With a sink that acknowledges (Kafka), the next journal offset it has not: a batch is
    /// answered once this passes it.
    bus: std::sync::OnceLock<tokio::sync::watch::Sender<u64>>,
    /// `daihuo_events_total{type, result="written|duplicate"}`.
    counted: IntCounterVec,
    /// With the Kafka sink: the other origins' events, from the bus.
    #[cfg(feature = "kafka")]
    window: std::sync::OnceLock<Arc<window::TopicWindow>>,
}

impl Intake {
    /// Opens the journal under `config.state_dir/journal`, with its idempotency window.
    pub fn open(
        config: &conf::EventsConfig,
        metrics: &crate::Metrics,
    ) -> Result<Arc<Self>, JournalError> {
        let window = Duration::from_secs(config.dedup_hours * 3600);
        let journal = Arc::new(Journal::open(&config.state_dir.join("journal"), window)?);
        Ok(Arc::new(Self {
            journal,
            bus: std::sync::OnceLock::new(),
            counted: metrics.events.clone(),
            #[cfg(feature = "kafka")]
            window: std::sync::OnceLock::new(),
        }))
    }

    /// From now on a batch is acknowledged only once a sink has it too; it has the journal
    /// before offset `next`.
    pub fn acknowledged_by_sink(&self, next: u64) {
        let _ = self.bus.set(tokio::sync::watch::channel(next).0);
    }

    /// The sink has every journal line before offset `next`.
    pub fn published(&self, next: u64) {
        if let Some(bus) = self.bus.get() {
            bus.send_replace(next);
        }
    }

    pub fn journal(&self) -> &Arc<Journal> {
        &self.journal
    }

    /// Closes the journal (at shutdown; blocking): later batches are refused.
    pub fn close(&self) {
        self.journal.close();
    }

    /// Writes the records not seen before; returns once they are durable.
    pub async fn accept(&self, records: Vec<Record>) -> Result<Appended, ApiError> {
        for (i, r) in records.iter().enumerate() {
            if !crate::streamid::valid_name(&r.room) {
                return Err(ApiError::BadRequest(format!("record {i}: invalid room")));
            }
        }
        #[cfg(feature = "kafka")]
        if let Some(window) = self.window.get() {
            let rooms: Vec<&str> = records.iter().map(|r| r.room.as_str()).collect();
            let caught_up = tokio::time::timeout(BUS_WAIT, window.before_taking(&rooms)).await;
            let caught_up = caught_up.unwrap_or_else(|_| Err(window.lag()));
            if let Err(why) = caught_up {
                tracing::warn!("events refused (503): not caught up with the bus: {why}");
                return Err(ApiError::Unavailable(format!(
                    "catching up with the other origins' events on the bus ({why}); send them \
                     again"
                )));
            }
        }
        let journal = self.journal.clone();
        let kinds: Vec<Kind> = records.iter().map(|r| r.event.kind).collect();
        let done = journal
            .append_async(records)
            .await
            .map_err(|e| ApiError::Unavailable(e.to_string()))?;
        // Per type, the batch's share (duplicates are rare: replays after a crash).
        for kind in kinds {
            self.counted
                .with_label_values(&[kind.label(), "received"])
                .inc();
        }
        if done.duplicates > 0 {
            self.counted
                .with_label_values(&["any", "duplicate"])
                .inc_by(done.duplicates as u64);
        }
        if let Some(bus) = self.bus.get() {
            let mut published = bus.subscribe();
            let on_bus =
                tokio::time::timeout(BUS_WAIT, published.wait_for(|next| *next >= done.end));
            if !matches!(on_bus.await, Ok(Ok(_))) {
                return Err(ApiError::Unavailable(format!(
                    "events written here but not acknowledged by the bus within {} s; send \
                     them again (the copies are dropped)",
                    BUS_WAIT.as_secs()
                )));
            }
        }
        Ok(done)
    }

    /// Parses an edge's POST body (a JSON array of records) and accepts it.
    pub async fn accept_body(&self, body: &Bytes) -> Result<Appended, ApiError> {
        let records: Vec<Record> = serde_json::from_slice(body)
            .map_err(|e| ApiError::BadRequest(format!("records: {e}")))?;
        if records.len() > 10 * model::MAX_BATCH {
            return Err(ApiError::BadRequest("too many records".into()));
        }
        self.accept(records).await
    }

    /// The feed edges fan out to viewers (comments and merged likes), as
    /// `{"from":NEXT,"lines":[...]}`: the lines from offset `from` on, waiting up to
    /// [`LONG_POLL`] for one to be written; without `from`, at once and empty, with `NEXT` the
    /// journal's end (where a new follower starts).
    pub async fn feed(&self, from: Option<u64>) -> Result<Bytes, ApiError> {
        let Some(from) = from else {
            let next = *self.journal.subscribe().borrow();
            return Ok(Bytes::from(format!("{{\"from\":{next},\"lines\":[]}}")));
        };
        // The lines from `from` on are those after `from - 1` (all of them from 0).
        let lines = self.read(from.checked_sub(1)).await?;
        let mut next = from;
        let mut out = Vec::new();
        for line in &lines {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
                continue;
            };
            next = v["offset"].as_u64().map_or(next, |o| o + 1);
            if matches!(v["event"]["type"].as_str(), Some("comment" | "like")) {
                out.push(v);
            }
        }
        let body = serde_json::json!({ "from": next, "lines": out });
        Ok(Bytes::from(body.to_string()))
    }

    /// Journal lines after `after` (at most [`READ_LIMIT`]), waiting up to [`LONG_POLL`] for
    /// the first when there are none yet.
    pub async fn read(&self, after: Option<u64>) -> Result<Vec<String>, ApiError> {
        let mut written = self.journal.subscribe();
        let wanted = after.map_or(0, |a| a + 1);
        let _ = tokio::time::timeout(LONG_POLL, written.wait_for(|next| *next > wanted)).await;
        let journal = self.journal.clone();
        tokio::task::spawn_blocking(move || journal.read(after, READ_LIMIT))
            .await
            .map_err(|e| ApiError::Unavailable(format!("journal: {e}")))?
            .map_err(|e| match e {
                JournalError::Trimmed { .. } => ApiError::Gone(e.to_string()),
                e => ApiError::Unavailable(e.to_string()),
            })
    }
}

/// The journal on the admin listener (`GET /events?after=OFFSET`), for business services.
pub fn admin_paths(intake: Arc<Intake>) -> daemon::admin::Extension {
    Arc::new(move |req: http::Request<Bytes>| {
        let intake = intake.clone();
        Box::pin(async move {
            (req.uri().path() == "/events").then_some(())?;
            Some(journal(&intake, req.uri().query().unwrap_or("")).await)
        })
    })
}

/// `GET /events?after=OFFSET`: journal lines after OFFSET (all without it), one JSON object a
/// line; waits for new ones when there are none yet (long poll), then answers, maybe empty.
async fn journal(events: &Intake, query: &str) -> Response<Bytes> {
    let mut after = None;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("after", v)) => match v.parse::<u64>() {
                Ok(n) => after = Some(n),
                Err(_) => return text(StatusCode::BAD_REQUEST, "after must be an offset\n"),
            },
            _ => {
                return text(
                    StatusCode::BAD_REQUEST,
                    format!("unknown parameter {pair:?}\n"),
                )
            }
        }
    }
    match events.read(after).await {
        Ok(lines) => {
            let mut body = lines.join("\n");
            if !body.is_empty() {
                body.push('\n');
            }
            let mut res = text(StatusCode::OK, body);
            res.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/x-ndjson"),
            );
            res
        }
        Err(e) => text(
            StatusCode::from_u16(e.status()).unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
            format!("{e}\n"),
        ),
    }
}

/// Deletes journal files past `config`'s retention now and every minute until `shutdown`,
/// keeping what `keep_from` (the sink's next offset to publish, read each time) says is
/// not published yet. Each deletion is an audit line.
async fn retain(
    intake: Arc<Intake>,
    retention: journal::Retention,
    keep_from: impl Fn() -> u64 + Send + 'static,
    mut shutdown: daemon::Drain,
) {
    loop {
        let journal = intake.journal.clone();
        let keep = keep_from();
        let now = std::time::SystemTime::now();
        match tokio::task::spawn_blocking(move || journal.trim(retention, keep, now)).await {
            Ok(Ok(deleted)) => {
                for d in deleted {
                    tracing::info!(
                        audit = "retention",
                        file = %d.file,
                        offsets = %format!("{}..{}", d.first, d.end),
                        bytes = d.bytes,
                        "journal file deleted: {}",
                        d.why
                    );
                }
            }
            Ok(Err(e)) => tracing::warn!("journal retention: {e}"),
            Err(e) => tracing::warn!("journal retention: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(60)) => {}
            _ = shutdown.stopped() => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A business consumer that asks for an offset retention deleted gets 410 saying where
    /// to go on, and the feed for edges likewise; from there on it reads again.
    #[tokio::test]
    async fn deleted_offsets_answer_410_with_the_oldest_kept() {
        let dir = tempfile::tempdir().unwrap();
        let config = conf::EventsConfig {
            state_dir: dir.path().to_path_buf(),
            ..Default::default()
        };
        let intake = Intake::open(&config, &crate::Metrics::new()).unwrap();
        let journal = intake.journal().clone();
        // Eight records a file, in files of about 1 KiB.
        journal.set_roll_at(1024);
        for n in 0..40 {
            let event: Event = serde_json::from_value(serde_json::json!({
                "id": format!("c-{n}"), "type": "cart_add", "user": "u1", "sku": "S", "qty": 1
            }))
            .unwrap();
            intake
                .accept(vec![Record {
                    room: "demo".into(),
                    event,
                }])
                .await
                .unwrap();
        }
        let cap = journal::Retention {
            max_age: None,
            max_bytes: Some(2048),
        };
        let gone = journal
            .trim(cap, u64::MAX, std::time::SystemTime::now())
            .unwrap();
        assert!(!gone.is_empty());
        let oldest = journal.oldest();
        assert!(oldest > 0);

        let res = super::journal(&intake, "after=0").await;
        assert_eq!(res.status(), StatusCode::GONE);
        let body = String::from_utf8_lossy(res.body()).into_owned();
        assert!(
            body.contains(&format!("the oldest kept is {oldest}")),
            "{body}"
        );
        assert!(body.contains(&format!("after={}", oldest - 1)), "{body}");
        let res = super::journal(&intake, &format!("after={}", oldest - 1)).await;
        assert_eq!(res.status(), StatusCode::OK);
        assert!(String::from_utf8_lossy(res.body()).contains(&format!("\"offset\":{oldest},")));
        assert_eq!(
            intake.feed(Some(1)).await.unwrap_err().status(),
            410,
            "the feed from a deleted offset"
        );
    }
}
