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
    let consumer = reader(brokers);
    let mut seen = Vec::new();
    let mut pairs = std::collections::HashSet::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut settle: Option<Instant> = None;
    while Instant::now() < settle.unwrap_or(deadline) {
        let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) else {
            continue;
        };
        let s = seen_of(&m);
        pairs.insert((s.id.clone(), s.user.clone()));
        seen.push(s);
        if pairs.len() >= want && settle.is_none() {
            settle = Some(Instant::now() + Duration::from_secs(2));
        }
    }
    seen
}

/// A consumer of the topic's partition from its start (no group: tests read it many times).
fn reader(brokers: &str) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "daihuo-test")
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut from_start = rdkafka::TopicPartitionList::new();
    from_start
        .add_partition_offset(TOPIC, 0, rdkafka::Offset::Beginning)
        .unwrap();
    consumer.assign(&from_start).unwrap();
    consumer
}

fn seen_of(m: &impl Message) -> Seen {
    let header = |name: &str| {
        m.headers()
            .and_then(|h| h.iter().find(|h| h.key == name))
            .and_then(|h| h.value)
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .unwrap_or_default()
    };
    Seen {
        key: String::from_utf8_lossy(m.key().unwrap_or_default()).into_owned(),
        id: header("daihuo-id"),
        user: header("daihuo-user"),
        payload: serde_json::from_slice(m.payload().unwrap()).unwrap(),
    }
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

/// The rooms of the disk-loss test.
const ROOMS: [&str; 6] = ["r0", "r1", "r2", "r3", "r4", "r5"];

/// Two origins on one topic behind an edge; 32 clients post carts to six rooms. The primary
/// of `r0` is SIGKILLed at a random point (during posts, commits and publishes) and its state
/// directory deleted; its rooms go on at the other origin, and it comes back empty. Every cart
/// the edge acknowledged is on the topic exactly once, checked after everything settled; a
/// viewer's cart the lost origin published, retried at the backup and again at the primary
/// back with an empty disk, is on it once too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_origin_and_its_disk_lose_nothing_and_double_nothing() {
    for seed in [3, 4] {
        lost_origin(seed).await;
    }
}

async fn lost_origin(seed: u64) {
    use daihuo::daemons::{certificate, OriginSpec};
    use std::sync::{Arc, Mutex};
    let brokers = format!("127.0.0.1:{}", free_port());
    let _broker = broker(&brokers, TOPIC).await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, _) = certificate(dir.path());
    let events =
        format!("sink = \"kafka\"\nkafka_brokers = \"{brokers}\"\nkafka_topic = \"{TOPIC}\"");
    let specs = ["origin-a", "origin-b"].map(|n| OriginSpec::new(n).with_events(&events));
    let mut origins = specs
        .each_ref()
        .map(|s| Some(s.start(dir.path(), &cert, &key)));
    let mut text = format!(
        "{}[upstream]\nca = {:?}\nprobe_interval_ms = 200\nconnect_timeout_ms = 500\n",
        daihuo::LOOPBACK,
        cert.display().to_string()
    );
    for s in &specs {
        text.push_str(&s.toml());
    }
    let mut config = conf::EdgeConfig::from_toml(&text).unwrap();
    config.events.state_dir = daihuo::state_dir();
    config.events.client_per_second = 1_000_000;
    config.events.client_burst = 1_000_000;
    let edge = edge_node::Edge::start(&config).await.unwrap();
    let http = edge.addrs.http.unwrap();
    // Both up for the edge, so that each room starts at its primary.
    let upstream = edge.upstream.clone().unwrap();
    daihuo::eventually(30, async || {
        upstream
            .ranked(ROOMS[0])
            .iter()
            .all(|o| o.is_up())
            .then_some(())
    })
    .await;
    let names = ["origin-a", "origin-b"];
    let victim = edge_node::upstream::rendezvous::rank(&names, ROOMS[0])[0];
    let mut random = crate::events::rng(seed);
    let kill_after = Duration::from_millis(500 + random(1500));
    let down_for = Duration::from_millis(1000 + random(2000));

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let clients: Vec<_> = (0..32)
        .map(|c| {
            let (stop, acked) = (stop.clone(), acked.clone());
            tokio::spawn(async move {
                let user = format!("u{c}");
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let (id, room) = (format!("s{seed}-{c}-{n}"), ROOMS[n % ROOMS.len()]);
                    let body = format!(
                        r#"{{"id":"{id}","type":"cart_add","user":"{user}","sku":"S","qty":1}}"#
                    );
                    match crate::events::post(http, room, body).await {
                        Some((202, _)) => {
                            acked.lock().unwrap().push((id, user.clone()));
                            n += 1;
                            // A viewer's pace, not a flood: what is checked is where each
                            // cart ends up.
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                        // Not acknowledged: the client tries again, same id.
                        _ => tokio::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            })
        })
        .collect();
    let again = r#"{"id":"again","type":"cart_add","user":"v","sku":"S","qty":1}"#;
    let post_again = async || {
        let (status, text) = crate::events::post(http, ROOMS[0], again.into())
            .await
            .unwrap();
        assert_eq!(status, 202, "{text}");
    };
    post_again().await;
    tokio::time::sleep(kill_after).await;
    let logs = || specs.each_ref().map(|s| s.log(dir.path())).join("\n");
    let brokers_ = brokers.clone();
    let published = tokio::task::spawn_blocking(move || consume_until(&brokers_, "again"));
    assert!(
        published.await.unwrap(),
        "seed {seed}: not on the topic\n{}",
        logs()
    );
    origins[victim] = None; // SIGKILL
    std::fs::remove_dir_all(specs[victim].state_dir(dir.path())).unwrap();
    let killed = Instant::now();
    // A marker in the lost origin's room: on the topic once the other origin has the room.
    let marker = r#"{"id":"marker","type":"cart_add","user":"m","sku":"S","qty":1}"#;
    let (status, text) = crate::events::post(http, ROOMS[0], marker.into())
        .await
        .unwrap();
    assert_eq!(status, 202, "{text}");
    let failover = tokio::task::spawn_blocking({
        let brokers = brokers.clone();
        move || consume_until(&brokers, "marker").then(|| killed.elapsed())
    })
    .await
    .unwrap()
    .unwrap_or_else(|| panic!("seed {seed}: no failover in 60 s\n{}", logs()));
    // The viewer retries at the backup, which knows it from the topic.
    post_again().await;
    let back_in = down_for.saturating_sub(killed.elapsed());
    tokio::time::sleep(back_in).await;
    // Back with an empty disk: it takes its rooms again once it has the topic's window.
    origins[victim] = Some(specs[victim].start(dir.path(), &cert, &key));
    tokio::time::sleep(Duration::from_secs(2)).await;
    // And at the primary, back with nothing on its disk.
    post_again().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for c in clients {
        c.await.unwrap();
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    let seen = tokio::task::spawn_blocking({
        let brokers = brokers.clone();
        let want = acked.len() + 2;
        move || consume(&brokers, want)
    })
    .await
    .unwrap();

    assert_once_keyed_by_room(&seen, acked.len() + 2);
    let on_topic: std::collections::HashSet<(&str, &str)> = seen
        .iter()
        .map(|s| (s.id.as_str(), s.user.as_str()))
        .collect();
    let missing: Vec<_> = acked
        .iter()
        .filter(|(id, user)| !on_topic.contains(&(id.as_str(), user.as_str())))
        .collect();
    assert!(
        missing.is_empty(),
        "seed {seed}: acknowledged, not on the topic: {missing:?}"
    );
    println!(
        "seed {seed}: {} carts acknowledged by 32 clients; {} killed after {kill_after:?} with \
         its disk, back after {down_for:?}; its room's carts on the topic again {failover:?} \
         after the kill; each once",
        acked.len(),
        names[victim],
    );
    edge.shutdown(Duration::from_secs(2)).await;
    drop(origins);
}

/// Reads the topic from its start until a message has the `daihuo-id` header `id`; false
/// after 60 s.
fn consume_until(brokers: &str, id: &str) -> bool {
    let consumer = reader(brokers);
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Some(Ok(m)) = consumer.poll(Duration::from_millis(200)) {
            let header = m
                .headers()
                .and_then(|h| h.iter().find(|h| h.key == "daihuo-id"))
                .and_then(|h| h.value);
            if header == Some(id.as_bytes()) {
                return true;
            }
        }
    }
    false
}
