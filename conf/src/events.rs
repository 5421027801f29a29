//! The `[events]` section: viewer events (cart, order, comment, like).

use std::path::PathBuf;

use serde::Deserialize;

use crate::error::Errors;

/// Viewer events. The origin uses `state_dir` (its journal); the rest is the edge's intake.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EventsConfig {
    /// Where durable event state lives: the edge's spool (`spool.redb`) and the journal
    /// (`journal/`) of the origin, or of a single box. Default `/var/lib/daihuo` (systemd's
    /// `StateDirectory`).
    pub state_dir: PathBuf,
    /// Likes are merged per room over this window before going upstream, in ms. Default 100.
    pub like_window_ms: u64,
    /// Longest comment, in characters. Default 200.
    pub max_comment_chars: usize,
    /// Comments containing any of these (case-insensitive) are refused. Reloadable.
    pub blocked_words: Vec<String>,
    /// Events one client (IP address) may post per second, sustained. Default 20.
    pub client_per_second: u32,
    /// Burst one client may post above that. Default 60.
    pub client_burst: u32,
    /// Events one room takes per second, sustained, before it sheds likes (first) and
    /// comments (then); cart and order events are never shed. Default 20000.
    pub room_per_second: u32,
    /// Burst one room takes above that. Default 40000.
    pub room_burst: u32,
    /// Cart, order (and with `user_token_comments`, comment) events need a viewer token from
    /// the business's login service in `Authorization: Bearer` (on a WebSocket, also
    /// `?user_token=` in its URL): `v1.EXPIRY.HEX.USER`, HEX = HMAC-SHA256(secret,
    /// "viewer:USER:EXPIRY"); each event's `user` must be the token's. Default off. Reloadable.
    pub user_tokens: bool,
    /// Viewer token secrets (32+ characters); any verifies, so keys rotate by overlap.
    pub user_secrets: Vec<String>,
    /// Comments need a viewer token too. Default off (likes never do).
    pub user_token_comments: bool,
    /// Most bytes of events the edge's spool holds while its origins do not take them; past
    /// it, posts get 503 with `Retry-After` (nothing taken is dropped). Default 1 GiB.
    pub spool_max_bytes: u64,
    /// How long an event's (user, id) is remembered so that a retry of it is written once, in
    /// hours. Default 24. Kept on disk (`journal/dedup.redb`), whatever the id rate.
    pub dedup_hours: u64,
    /// Journal files (64 MiB each) older than this are deleted, in hours; 0 keeps them all.
    /// Default 168 (a week, Kafka's default). Never what the Kafka sink has not published.
    pub retain_hours: u64,
    /// The journal is kept under this many bytes by deleting its oldest files; 0 (default)
    /// sets no cap. At least 256 MiB when set. Never what the Kafka sink has not published.
    pub retain_bytes: u64,
    /// Where deduplicated events go besides the journal: `journal` (default: only there, read
    /// with `GET /events`) or `kafka` (also published to `kafka_topic`, keyed by room, with the
    /// event's id and user in headers; an origin then acknowledges events only once the bus
    /// has them).
    pub sink: Sink,
    /// Kafka bootstrap servers, `host:port` comma-separated (with `sink = "kafka"`).
    pub kafka_brokers: String,
    /// Kafka topic (with `sink = "kafka"`); create it before starting. Default `daihuo-events`.
    pub kafka_topic: String,
    /// How the brokers are reached (librdkafka's `security.protocol`): `plaintext` (default),
    /// `ssl`, `sasl_plaintext` or `sasl_ssl`.
    pub kafka_security: KafkaSecurity,
    /// PEM bundle the brokers' certificates must chain to (`ssl`, `sasl_ssl`); unset: the
    /// system's trust store.
    pub kafka_ca: Option<PathBuf>,
    /// Client certificate and its private key (PEM) for brokers that ask for one (`ssl`,
    /// `sasl_ssl`); both or neither.
    pub kafka_cert: Option<PathBuf>,
    pub kafka_key: Option<PathBuf>,
    /// SASL mechanism (`sasl_plaintext`, `sasl_ssl`): `PLAIN`, `SCRAM-SHA-256` (default) or
    /// `SCRAM-SHA-512`.
    pub kafka_sasl_mechanism: String,
    /// SASL user name and password (`sasl_plaintext`, `sasl_ssl`).
    pub kafka_sasl_username: String,
    pub kafka_sasl_password: String,
}

/// How the Kafka sink reaches its brokers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum KafkaSecurity {
    #[default]
    Plaintext,
    Ssl,
    SaslPlaintext,
    SaslSsl,
}

impl KafkaSecurity {
    /// librdkafka's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Plaintext => "plaintext",
            Self::Ssl => "ssl",
            Self::SaslPlaintext => "sasl_plaintext",
            Self::SaslSsl => "sasl_ssl",
        }
    }

    pub fn tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    pub fn sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }
}

/// The event sink.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Sink {
    #[default]
    Journal,
    Kafka,
}

impl Default for EventsConfig {
    fn default() -> Self {
        Self {
            state_dir: PathBuf::from("/var/lib/daihuo"),
            like_window_ms: 100,
            max_comment_chars: 200,
            blocked_words: Vec::new(),
            client_per_second: 20,
            client_burst: 60,
            room_per_second: 20_000,
            room_burst: 40_000,
            dedup_hours: 24,
            retain_hours: 168,
            retain_bytes: 0,
            spool_max_bytes: 1 << 30,
            user_tokens: false,
            user_secrets: Vec::new(),
            user_token_comments: false,
            sink: Sink::Journal,
            kafka_brokers: "127.0.0.1:9092".into(),
            kafka_topic: "daihuo-events".into(),
            kafka_security: KafkaSecurity::Plaintext,
            kafka_ca: None,
            kafka_cert: None,
            kafka_key: None,
            kafka_sasl_mechanism: "SCRAM-SHA-256".into(),
            kafka_sasl_username: String::new(),
            kafka_sasl_password: String::new(),
        }
    }
}

impl EventsConfig {
    fn validate_kafka_security(&self, e: &mut Errors) {
        let security = self.kafka_security;
        for (key, file) in [
            ("events.kafka_ca", &self.kafka_ca),
            ("events.kafka_cert", &self.kafka_cert),
            ("events.kafka_key", &self.kafka_key),
        ] {
            let Some(file) = file else { continue };
            e.check(
                security.tls(),
                key,
                format!(
                    "is for TLS, but events.kafka_security = \"{}\" (use ssl or sasl_ssl)",
                    security.as_str()
                ),
            );
            e.check(
                file.is_file(),
                key,
                format!("{}: no such file", file.display()),
            );
        }
        e.check(
            self.kafka_cert.is_some() == self.kafka_key.is_some(),
            "events.kafka_cert",
            "events.kafka_cert and events.kafka_key go together",
        );
        if security.sasl() {
            e.check(
                ["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"]
                    .contains(&self.kafka_sasl_mechanism.as_str()),
                "events.kafka_sasl_mechanism",
                format!(
                    "{:?} is not PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512",
                    self.kafka_sasl_mechanism
                ),
            );
            for (key, value) in [
                ("events.kafka_sasl_username", &self.kafka_sasl_username),
                ("events.kafka_sasl_password", &self.kafka_sasl_password),
            ] {
                e.check(
                    !value.is_empty(),
                    key,
                    format!("required with kafka_security = \"{}\"", security.as_str()),
                );
            }
        }
    }

    pub(crate) fn validate(&self, e: &mut Errors) {
        if self.sink == Sink::Kafka {
            e.check(
                !self.kafka_brokers.trim().is_empty(),
                "events.kafka_brokers",
                "required with sink = \"kafka\"",
            );
            let topic_ok = (1..=249).contains(&self.kafka_topic.len())
                && self
                    .kafka_topic
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
            e.check(
                topic_ok,
                "events.kafka_topic",
                "must be 1 to 249 of A-Z a-z 0-9 . _ -",
            );
            self.validate_kafka_security(e);
        }
        e.check(
            (10..=10_000).contains(&self.like_window_ms),
            "events.like_window_ms",
            format!("{} is outside 10..=10000", self.like_window_ms),
        );
        e.secrets(
            "events.user_secrets",
            &self.user_secrets,
            self.user_tokens.then_some("events.user_tokens = true"),
        );
        e.check(
            self.spool_max_bytes >= 1 << 20,
            "events.spool_max_bytes",
            format!("{} is under 1 MiB", self.spool_max_bytes),
        );
        e.check(
            (1..=24 * 90).contains(&self.dedup_hours),
            "events.dedup_hours",
            format!("{} is outside 1..=2160", self.dedup_hours),
        );
        e.check(
            self.retain_hours <= 24 * 3650,
            "events.retain_hours",
            format!(
                "{} is over 87600 (ten years; 0 keeps everything)",
                self.retain_hours
            ),
        );
        e.check(
            self.retain_bytes == 0 || self.retain_bytes >= 256 << 20,
            "events.retain_bytes",
            format!(
                "{} is under 256 MiB (268435456; 0 sets no cap)",
                self.retain_bytes
            ),
        );
        e.check(
            (1..=10_000).contains(&self.max_comment_chars),
            "events.max_comment_chars",
            format!("{} is outside 1..=10000", self.max_comment_chars),
        );
        for (i, w) in self.blocked_words.iter().enumerate() {
            e.check(
                !w.trim().is_empty(),
                &format!("events.blocked_words[{i}]"),
                "must not be empty",
            );
        }
        for (key, rate, burst) in [
            (
                "events.client_burst",
                self.client_per_second,
                self.client_burst,
            ),
            ("events.room_burst", self.room_per_second, self.room_burst),
        ] {
            e.check(
                rate > 0 && burst >= rate,
                key,
                "rates must be positive and bursts at least the rate",
            );
        }
    }
}
