//! The Kafka sink against a real Kafka-protocol broker (Tansu 0.6.0, `make test-deps`
//! installs it): cart events posted to a single box with `sink = "kafka"` are published to
//! the topic, each once, keyed by its event id, also after the box restarts.

// Tests panic on purpose when the system under test misbehaves.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use daihuo::daemons::free_port;
use daihuo::{loopback_config, Child};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::Message;

const TOPIC: &str = "daihuo-events";

fn tansu() -> String {
    let home = std::env::var("HOME").unwrap_or_default();
    let installed = format!("{home}/.cargo/bin/tansu");
    if std::path::Path::new(&installed).exists() {
        installed
    } else {
        "tansu".into()
    }
}

async fn post_carts(http: std::net::SocketAddr, from: usize, to: usize) {
    for batch in (from..to).collect::<Vec<_>>().chunks(50) {
        let events: Vec<String> = batch
            .iter()
            .map(|i| format!(r#"{{"id":"k{i}","type":"cart_add","user":"u","sku":"S","qty":1}}"#))
            .collect();
        let out = Command::new("curl")
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "-X",
                "POST",
                "--data-binary",
            ])
            .arg(format!("[{}]", events.join(",")))
            .arg(format!("http://{http}/live/shop/events"))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "202");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_kafka_once_keyed_by_id() {
    let port = free_port();
    let brokers = format!("127.0.0.1:{port}");
    let url = format!("tcp://{brokers}");
    let _broker = Child::spawn(
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
        .set("bootstrap.servers", &brokers)
        .create()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let topic = NewTopic::new(TOPIC, 1, TopicReplication::Fixed(1));
        let created = admin
            .create_topics(
                &[topic],
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

    let mut config = loopback_config();
    config.events.sink = conf::Sink::Kafka;
    config.events.kafka_brokers = brokers.clone();
    config.events.kafka_topic = TOPIC.into();
    config.events.client_per_second = 100_000;
    config.events.client_burst = 100_000;
    let edge = edge_node::Edge::start(&config).await.unwrap();
    post_carts(edge.addrs.http.unwrap(), 0, 500).await;
    // A restart resumes from the saved position: nothing republished, nothing skipped.
    edge.shutdown(Duration::from_secs(5)).await;
    let edge = edge_node::Edge::start(&config).await.unwrap();
    post_carts(edge.addrs.http.unwrap(), 500, 1000).await;

    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .set("group.id", "daihuo-test")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[TOPIC]).unwrap();
    let mut keys: HashMap<String, usize> = HashMap::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while keys.len() < 1000 && Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(500)) {
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            let payload: serde_json::Value = serde_json::from_slice(m.payload().unwrap()).unwrap();
            assert_eq!(payload["event"]["id"].as_str(), Some(key.as_str()));
            *keys.entry(key).or_default() += 1;
        }
    }
    // Anything published twice would come right after; give it a moment.
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let key = String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned();
            *keys.entry(key).or_default() += 1;
        }
    }
    assert_eq!(keys.len(), 1000, "ids published");
    let twice: Vec<_> = keys.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "published twice: {twice:?}");
    edge.shutdown(Duration::from_secs(2)).await;
}
