//! A real Kafka-protocol broker for the tests and benchmarks: Tansu (`make test-deps` installs
//! it), in memory, with the topic created. Included by path (`#[path]`) where needed, so the
//! `daihuo` support library does not link librdkafka.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use daihuo::Child;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;

/// The Tansu binary: cargo's install directory, else the PATH.
pub fn tansu() -> String {
    let home = std::env::var("HOME").unwrap_or_default();
    let installed = format!("{home}/.cargo/bin/tansu");
    if std::path::Path::new(&installed).exists() {
        installed
    } else {
        "tansu".into()
    }
}

/// Tansu listening on `brokers` (`127.0.0.1:PORT`), in memory, with `topic` (one partition).
pub async fn broker(brokers: &str, topic: &str) -> Child {
    let url = format!("tcp://{brokers}");
    let broker = Child::spawn(
        Command::new(tansu())
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &url,
            ])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    )
    .expect("tansu (make test-deps installs it)");
    // The topic (Tansu does not create topics on its own).
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .create()
        .expect("a Kafka admin client");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let created = admin
            .create_topics(
                &[NewTopic::new(topic, 1, TopicReplication::Fixed(1))],
                &AdminOptions::new().operation_timeout(Some(Duration::from_secs(5))),
            )
            .await;
        if matches!(created.as_deref(), Ok([Ok(_)])) {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "cannot create the topic: {created:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    broker
}
