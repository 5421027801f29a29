//! The Kafka sink against a real Kafka-protocol broker (Tansu 0.6.0, `make test-deps`
//! installs it): cart events posted to a single box with `sink = "kafka"` are published to
//! the topic, each once, keyed by room with their id and user in headers, also after the box
//! restarts; while the broker is down the origin acknowledges nothing, the edge keeps what it
//! took, and all of it is on the topic once the broker is up.

// Tests panic on purpose when the system under test misbehaves.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::process::Command;
use std::time::{Duration, Instant};

use daihuo::daemons::free_port;
use daihuo::loopback_config;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Headers;
use rdkafka::Message;

use crate::tansu::broker;

const TOPIC: &str = "daihuo-events";

async fn post_carts(http: std::net::SocketAddr, room: &str, from: usize, to: usize) {
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
            .arg(format!("http://{http}/live/{room}/events"))
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "202");
    }
}

/// A message as a consumer sees it: key, the `daihuo-id` and `daihuo-user` headers, payload.
struct Seen {
    key: String,
    id: String,
    user: String,
    payload: serde_json::Value,
}

/// Reads the topic from its start until `want` distinct (id, user) pairs were seen (or 60 s
/// went by), then 2 s more for any copy right behind.
fn consume(brokers: &str, want: usize) -> Vec<Seen> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "daihuo-test")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    consumer.subscribe(&[TOPIC]).unwrap();
    let mut seen = Vec::new();
    let mut pairs = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut settle: Option<Instant> = None;
    while Instant::now() < settle.unwrap_or(deadline) {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let header = |name: &str| {
            m.headers()
                .and_then(|h| h.iter().find(|h| h.key == name))
                .and_then(|h| h.value)
                .map(|v| String::from_utf8_lossy(v).into_owned())
                .unwrap_or_default()
        };
        let s = Seen {
            key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
            id: header("daihuo-id"),
            user: header("daihuo-user"),
            payload: serde_json::from_slice(m.payload().unwrap()).unwrap(),
        };
        pairs.insert((s.id.clone(), s.user.clone()));
        seen.push(s);
        if pairs.len() >= want && settle.is_none() {
            settle = Some(Instant::now() + Duration::from_secs(2));
        }
    }
    seen
}

/// Every message keyed by its room with its id and user in headers, and each (id, user) once.
fn assert_once_keyed_by_room(seen: &[Seen], want: usize) {
    let mut count: HashMap<(String, String), usize> = HashMap::new();
    for s in seen {
        assert_eq!(
            s.payload["room"].as_str(),
            Some(s.key.as_str()),
            "key is the room"
        );
        assert_eq!(s.payload["event"]["id"].as_str(), Some(s.id.as_str()));
        assert_eq!(s.payload["event"]["user"].as_str(), Some(s.user.as_str()));
        *count.entry((s.id.clone(), s.user.clone())).or_default() += 1;
    }
    assert_eq!(count.len(), want, "events published");
    let twice: Vec<_> = count.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "published twice: {twice:?}");
}

fn kafka_box(brokers: &str) -> conf::EdgeConfig {
    let mut config = loopback_config();
    config.events.sink = conf::Sink::Kafka;
    config.events.kafka_brokers = brokers.to_string();
    config.events.kafka_topic = TOPIC.into();
    config.events.client_per_second = 100_000;
    config.events.client_burst = 100_000;
    config
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_reach_kafka_once_keyed_by_room() {
    let brokers = format!("127.0.0.1:{}", free_port());
    let _broker = broker(&brokers, TOPIC).await;
    let config = kafka_box(&brokers);
    let edge = edge_node::Edge::start(&config).await.unwrap();
    post_carts(edge.addrs.http.unwrap(), "shop", 0, 500).await;
    // A restart resumes from the saved position: nothing republished, nothing skipped.
    edge.shutdown(Duration::from_secs(5)).await;
    let edge = edge_node::Edge::start(&config).await.unwrap();
    post_carts(edge.addrs.http.unwrap(), "deals", 500, 1000).await;
    let seen = consume(&brokers, 1000);
    assert_once_keyed_by_room(&seen, 1000);
    // One room's events in the order they were written.
    let offsets: Vec<u64> = seen
        .iter()
        .filter(|s| s.key == "deals")
        .map(|s| s.payload["offset"].as_u64().unwrap())
        .collect();
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "deals in order");
    assert_eq!(offsets.len(), 500);
    edge.shutdown(Duration::from_secs(2)).await;
}

/// The spool's size on the edge's admin listener.
fn spool_bytes(admin: std::net::SocketAddr) -> u64 {
    let out = Command::new("curl")
        .args(["-sS", &format!("http://{admin}/metrics")])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("daihuo_spool_bytes "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .map_or(u64::MAX, |v| v as u64)
}

/// While the bus is down nothing is acknowledged upstream: the edge keeps every cart it took
/// in its spool (the journal has them, but the journal is one disk). Once the bus is up they
/// are all published, once each, and the spool empties.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn carts_taken_while_kafka_is_down_stay_spooled_until_it_has_them() {
    let brokers = format!("127.0.0.1:{}", free_port());
    let config = kafka_box(&brokers);
    let edge = edge_node::Edge::start(&config).await.unwrap();
    post_carts(edge.addrs.http.unwrap(), "shop", 0, 200).await;
    // The origin holds each batch for the bus (5 s) and answers 503: the spool keeps it.
    tokio::time::sleep(Duration::from_secs(7)).await;
    let held = spool_bytes(edge.addrs.admin);
    assert!(
        held > 0 && held != u64::MAX,
        "spool while the bus is down: {held}"
    );

    let _broker = broker(&brokers, TOPIC).await;
    let seen = consume(&brokers, 200);
    assert_once_keyed_by_room(&seen, 200);
    let deadline = Instant::now() + Duration::from_secs(60);
    while spool_bytes(edge.addrs.admin) != 0 {
        assert!(Instant::now() < deadline, "the spool never emptied");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    edge.shutdown(Duration::from_secs(2)).await;
}
