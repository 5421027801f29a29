//! Viewer events under load, in one process on loopback (release build):
//!
//! - Durable cart throughput of one edge: 64 keep-alive HTTP/1.1 clients post cart events
//!   (batches of 50, then one event per POST) for a few seconds to a single box whose spool
//!   and journal are on disk (not tmpfs: fsync must mean something). An event counts when its
//!   202 came, i.e. after the spool's group commit. The baseline in the same run is what a
//!   spool without group commit could do on this disk: one JSON line written and fdatasync'ed
//!   per event.
//! - Comment latency across edges: an origin and two edges (HTTP/2 upstream); 1,000 comments
//!   per second posted to edge A for a few seconds, each timed until it arrives as a
//!   server-sent event at a viewer of edge B (spool fsync at A, journal fsync at the origin,
//!   the feed's long poll to B). Reports p50, p99 and max.
//! - The peer: Debian's `redis-server` with `appendonly yes` and `appendfsync always` (every
//!   write fsynced before its reply), its append-only file on the same disk, 64 clients
//!   `XADD`-ing the same cart JSON to a stream, pipelined 50 at a time like our batches, then
//!   one per round trip. Reported beside ours as a ratio.
//!
//! - Acknowledged carts at an origin's intake: 64 posters each hand it one cart at a time, as
//!   edges do, and time its answer. First with the journal alone (its group-committed fsync),
//!   then with `sink = "kafka"` and Tansu (a Kafka-protocol broker) on loopback, which adds the
//!   bus's acks=all. Reports p50, p99 and max of each.
//!
//! - The long show: a reader long-polling at the head of an origin's journal, and how soon a
//!   comment accepted every 2 ms reaches it, with the journal empty and with 10 million carts
//!   in it (`EVENTS_LONG_SHOW` sets the count, 0 skips it; written in batches of 10,000 as
//!   fast as the journal takes them); the process's resident memory at both; then a reader
//!   from offset 0 pages through everything.
//!
//! Run with `cargo bench -p daihuo --bench events` (or `make bench`); `EVENTS_SECONDS` sets
//! the length of each run (default 5). Targets (the issue's, on loopback): at least 20,000
//! durable cart events/s per edge, comment p99 under 50 ms. The bench reports; it does not
//! assert on speed.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

#[path = "../tests/support/tansu.rs"]
mod tansu;

async fn connect(addr: SocketAddr) -> SendRequest<Full<Bytes>> {
    let stream = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    send
}

async fn post(send: &mut SendRequest<Full<Bytes>>, path: &str, body: String) -> u16 {
    send.ready().await.expect("connection");
    let req = http::Request::post(path)
        .header("host", "localhost")
        .body(Full::new(Bytes::from(body)))
        .expect("request");
    let res = send.send_request(req).await.expect("response");
    let status = res.status().as_u16();
    let _ = res.into_body().collect().await;
    status
}

fn cart(id: &str) -> String {
    format!(r#"{{"id":"{id}","type":"cart_add","user":"u1","sku":"SKU-1","qty":1}}"#)
}

/// Events/s of `clients` tasks, each running `client(number, started)` until the window
/// after `started` is over and returning how many events it had acknowledged.
async fn rate<F, Fut>(clients: usize, client: F) -> f64
where
    F: Fn(usize, Instant) -> Fut,
    Fut: std::future::Future<Output = u64> + Send + 'static,
{
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| tokio::spawn(client(c, started)))
        .collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.expect("client");
    }
    total as f64 / started.elapsed().as_secs_f64()
}

/// Durable events/s through `http` with `clients` connections posting `batch` events each.
async fn carts(http: SocketAddr, clients: usize, batch: usize, window: Duration, tag: &str) -> f64 {
    rate(clients, |c, started| {
        let tag = tag.to_string();
        async move {
            let mut send = connect(http).await;
            let mut done = 0u64;
            let mut n = 0u64;
            while started.elapsed() < window {
                let events: Vec<String> = (0..batch)
                    .map(|i| cart(&format!("{tag}-{c}-{n}-{i}")))
                    .collect();
                n += 1;
                let status = post(
                    &mut send,
                    "/live/shop/events",
                    format!("[{}]", events.join(",")),
                )
                .await;
                assert_eq!(status, 202, "cart post refused");
                done += batch as u64;
            }
            done
        }
    })
    .await
}

/// Waits until the edge's spool is empty (what a phase posted is in the journal), so that the
/// next phase is not measured while the forwarder catches up; returns how long that took.
async fn drained(edge: &edge_node::Edge) -> Duration {
    let started = Instant::now();
    while started.elapsed() < Duration::from_secs(300) {
        let held = edge.metrics.render().lines().find_map(|l| {
            l.strip_prefix("daihuo_spool_bytes ")
                .and_then(|v| v.trim().parse::<f64>().ok())
        });
        if held == Some(0.0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    started.elapsed()
}

/// `redis-server` on a free port, its append-only file fsynced on every write, in `dir`.
fn redis(dir: &std::path::Path) -> (std::process::Child, SocketAddr) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let child = std::process::Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args([
            "--appendonly",
            "yes",
            "--appendfsync",
            "always",
            "--save",
            "",
        ])
        .arg("--dir")
        .arg(dir)
        .stdout(std::process::Stdio::null())
        .spawn()
        .expect("redis-server (make bench-deps installs it)");
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    (child, addr)
}

/// Durable events/s into redis at `addr`: `clients` connections each sending `batch` pipelined
/// `XADD`s and reading their replies. The commands are written by hand (RESP is four lines
/// per argument) rather than with a client crate, to keep the bench's dependencies lean.
async fn redis_carts(addr: SocketAddr, clients: usize, batch: usize, window: Duration) -> f64 {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    rate(clients, |c, started| async move {
        let stream = tokio::net::TcpStream::connect(addr).await.expect("redis");
        let (read, mut write) = stream.into_split();
        let mut replies = BufReader::new(read);
        let mut line = String::new();
        let mut done = 0u64;
        let mut n = 0u64;
        while started.elapsed() < window {
            let mut out = Vec::new();
            for i in 0..batch {
                let event = cart(&format!("r-{c}-{n}-{i}"));
                out.extend_from_slice(b"*5\r\n");
                for arg in ["XADD", "events", "*", "event", &event] {
                    out.extend_from_slice(format!("${}\r\n{arg}\r\n", arg.len()).as_bytes());
                }
            }
            n += 1;
            write.write_all(&out).await.expect("redis write");
            for _ in 0..batch {
                // Each reply is a bulk string: `$LEN` then the entry id.
                for _ in 0..2 {
                    line.clear();
                    replies.read_line(&mut line).await.expect("redis reply");
                    assert!(!line.starts_with('-'), "redis refused: {line}");
                }
            }
            done += batch as u64;
        }
        done
    })
    .await
}

/// How long an origin with `sink = "kafka"` (Tansu on loopback) takes to acknowledge one cart
/// to the edge that posted it, with `clients` posters: the journal's fsync, the dedup index,
/// then Kafka's acks=all. Called through the intake the origin API hands edges' batches to.
/// The long show: how soon a reader at the journal's head gets a new comment, and the
/// process's memory, with the journal empty and with `events` carts in it (written in
/// batches, as fast as the journal takes them); then a reader from offset 0 pages through
/// all of them.
async fn long_show(work: &std::path::Path, events: u64, window: Duration) {
    let config = conf::EventsConfig {
        state_dir: work.join("long-show"),
        ..Default::default()
    };
    let intake = origin::events::Intake::open(&config, &origin::Metrics::new()).expect("journal");
    let empty = feed_latency(&intake, window).await;
    let rss_empty = rss_mib();
    let started = Instant::now();
    let journal = intake.journal().clone();
    tokio::task::spawn_blocking(move || {
        for first in (0..events).step_by(10_000) {
            let batch: Vec<origin::events::Record> = (first..(first + 10_000).min(events))
                .map(|i| origin::events::Record {
                    room: "show".into(),
                    event: serde_json::from_str(&cart(&format!("x{i}"))).expect("cart"),
                })
                .collect();
            journal.append(&batch).expect("appended");
        }
    })
    .await
    .expect("filled");
    let filled = started.elapsed();
    // Once the index has every pair (in bulk, appends run ahead of it by up to 200,000).
    tokio::time::sleep(Duration::from_secs(2)).await;
    let full = feed_latency(&intake, window).await;
    let rss_full = rss_mib();
    let started = Instant::now();
    let (mut after, mut read) = (None, 0u64);
    loop {
        let lines = intake
            .journal()
            .read(after, origin::events::READ_LIMIT)
            .expect("read");
        let Some(last) = lines.last() else { break };
        read += lines.len() as u64;
        let last: serde_json::Value = serde_json::from_str(last).expect("line");
        after = last["offset"].as_u64();
    }
    let paged = started.elapsed();
    let index =
        std::fs::metadata(config.state_dir.join("journal/dedup.redb")).map_or(0, |m| m.len() >> 20);
    println!(
        "long show: {events} carts written in {filled:.1?} ({:.0}/s); the dedup index {index} MiB \
         on disk",
        events as f64 / filled.as_secs_f64()
    );
    for (what, latencies, rss) in [("empty", &empty, rss_empty), ("full", &full, rss_full)] {
        println!(
            "  journal {what}: a new comment reaches a reader at the head p50 {:?}, p99 {:?} \
             ({} comments); process RSS {rss} MiB",
            percentile(latencies, 0.5),
            percentile(latencies, 0.99),
            latencies.len()
        );
    }
    println!(
        "  a reader from offset 0 paged through {read} lines in {paged:.1?} ({:.0} lines/s)",
        read as f64 / paged.as_secs_f64()
    );
    intake.close();
}

/// Latencies of comments accepted every 2 ms for `window`, each until a reader long-polling
/// at the journal's head has it.
async fn feed_latency(intake: &Arc<origin::events::Intake>, window: Duration) -> Vec<Duration> {
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let latencies: Arc<Mutex<Vec<Duration>>> = Arc::default();
    let head = *intake.journal().subscribe().borrow();
    let reader = {
        let (intake, sent, latencies) = (intake.clone(), sent.clone(), latencies.clone());
        tokio::spawn(async move {
            let mut after = head.checked_sub(1);
            loop {
                let Ok(lines) = intake.read(after).await else {
                    break;
                };
                if lines.is_empty() {
                    break;
                }
                let now = Instant::now();
                for line in &lines {
                    let v: serde_json::Value = serde_json::from_str(line).expect("line");
                    after = v["offset"].as_u64();
                    let id = v["event"]["id"].as_str().unwrap_or_default();
                    if let Some(at) = sent.lock().expect("sent").remove(id) {
                        latencies.lock().expect("latencies").push(now - at);
                    }
                }
            }
        })
    };
    let started = Instant::now();
    let mut n = 0;
    while started.elapsed() < window {
        let id = format!("f{head}-{n}");
        n += 1;
        let event = serde_json::from_str(&format!(
            r#"{{"id":"{id}","type":"comment","user":"u1","text":"nice"}}"#
        ))
        .expect("comment");
        sent.lock().expect("sent").insert(id, Instant::now());
        let record = origin::events::Record {
            room: "show".into(),
            event,
        };
        intake.accept(vec![record]).await.expect("accepted");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    // The reader would end at its next long poll that times out (20 s): stopped instead.
    tokio::time::sleep(Duration::from_millis(200)).await;
    reader.abort();
    let _ = reader.await;
    let mut latencies = std::mem::take(&mut *latencies.lock().expect("latencies"));
    latencies.sort();
    latencies
}

/// The process's resident memory, MiB.
fn rss_mib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            let line = s.lines().find(|l| l.starts_with("VmRSS:"))?;
            line.split_whitespace().nth(1)?.parse::<u64>().ok()
        })
        .map_or(0, |kib| kib >> 10)
}

/// Prints the count, rate and p50/p99/max of sorted ack `latencies`.
fn report(what: &str, latencies: &[Duration], window: Duration) {
    println!(
        "{what}: 64 posters, one cart at a time: {} in {window:?} ({:.0}/s); ack p50 {:?}, p99 \
         {:?}, max {:?}",
        latencies.len(),
        latencies.len() as f64 / window.as_secs_f64(),
        percentile(latencies, 0.5),
        percentile(latencies, 0.99),
        latencies.last().copied().unwrap_or_default()
    );
}

/// The peer's own figure: 64 rdkafka producers' tasks, each sending one message (a cart
/// line, keyed by room) to Tansu at `brokers` and awaiting its acks=all, with the settings
/// of our sink. What the bus alone costs on this box.
async fn raw_produce_acks(brokers: &str, clients: usize, window: Duration) -> Vec<Duration> {
    use rdkafka::producer::{FutureProducer, FutureRecord};
    let producer: FutureProducer = rdkafka::ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "1")
        .create()
        .expect("producer");
    async fn send(producer: &FutureProducer, payload: String) {
        let record = FutureRecord::<str, str>::to("daihuo-events")
            .key("shop")
            .payload(&payload);
        if let Err((e, _)) = producer.send(record, Duration::from_secs(30)).await {
            panic!("acks=all: {e}");
        }
    }
    send(&producer, cart("r-warm-up")).await;
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients)
        .map(|c| {
            let (latencies, producer) = (latencies.clone(), producer.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while started.elapsed() < window {
                    let t = Instant::now();
                    send(&producer, cart(&format!("r-{c}-{n}"))).await;
                    n += 1;
                    latencies.lock().expect("latencies").push(t.elapsed());
                }
            })
        })
        .collect();
    for t in tasks {
        t.await.expect("producer task");
    }
    let mut latencies = std::mem::take(&mut *latencies.lock().expect("latencies"));
    latencies.sort();
    latencies
}

async fn intake_acks(
    work: &std::path::Path,
    clients: usize,
    window: Duration,
    sink: conf::Sink,
) -> Vec<Duration> {
    let brokers = format!("127.0.0.1:{}", daihuo::daemons::free_port());
    let _broker = match sink {
        conf::Sink::Kafka => {
            // The peer on a broker of its own: the origin's window would read its messages.
            let peer = format!("127.0.0.1:{}", daihuo::daemons::free_port());
            let peer_broker = tansu::broker(&peer, "daihuo-events").await;
            let raw = raw_produce_acks(&peer, clients, window).await;
            report(
                "the peer: rdkafka producers to Tansu, no daihuo",
                &raw,
                window,
            );
            drop(peer_broker);
            Some(tansu::broker(&brokers, "daihuo-events").await)
        }
        conf::Sink::Journal => None,
    };
    let config = conf::EventsConfig {
        state_dir: work.join(format!("{sink:?}-origin")),
        sink,
        kafka_brokers: brokers,
        ..Default::default()
    };
    let intake =
        origin::events::Intake::open(&config, &origin::Metrics::new()).expect("the journal");
    let mut sink = tokio::task::JoinSet::new();
    let (stop, drain) = daemon::drain::channel();
    origin::events::start_sink(&config, &intake, &mut sink, &drain).expect("the Kafka sink");
    // The first acknowledgement waits for the producer's connection and the topic's metadata.
    let warm_up = serde_json::from_str(&cart("k-warm-up")).expect("cart");
    intake
        .accept(vec![origin::events::Record {
            room: "shop".into(),
            event: warm_up,
        }])
        .await
        .expect("the first cart acknowledged");
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let started = Instant::now();
    let posters: Vec<_> = (0..clients)
        .map(|c| {
            let (intake, latencies) = (intake.clone(), latencies.clone());
            tokio::spawn(async move {
                let mut n = 0u64;
                while started.elapsed() < window {
                    let event = serde_json::from_str(&cart(&format!("k-{c}-{n}"))).expect("cart");
                    n += 1;
                    let record = origin::events::Record {
                        room: "shop".into(),
                        event,
                    };
                    let t = Instant::now();
                    intake.accept(vec![record]).await.expect("acknowledged");
                    latencies.lock().expect("latencies").push(t.elapsed());
                }
            })
        })
        .collect();
    for p in posters {
        p.await.expect("poster");
    }
    stop.start();
    while sink.join_next().await.is_some() {}
    intake.close();
    let mut latencies = std::mem::take(&mut *latencies.lock().expect("latencies"));
    latencies.sort();
    latencies
}

/// Events/s of one write + fdatasync per event, in `dir`.
fn fsync_each(dir: &std::path::Path, window: Duration) -> f64 {
    let mut file = std::fs::File::create(dir.join("baseline.jsonl")).expect("baseline file");
    let started = Instant::now();
    let mut n = 0u64;
    while started.elapsed() < window {
        let line = format!("{}\n", cart(&format!("b{n}")));
        file.write_all(line.as_bytes()).expect("write");
        file.sync_data().expect("fdatasync");
        n += 1;
    }
    n as f64 / started.elapsed().as_secs_f64()
}

fn loopback(dir: &std::path::Path, extra: &str) -> conf::EdgeConfig {
    let mut config = conf::EdgeConfig::from_toml(&format!(
        "{}[events]\nclient_per_second = 10000000\nclient_burst = 10000000\n\
         room_per_second = 10000000\nroom_burst = 10000000\n{extra}",
        daihuo::LOOPBACK
    ))
    .expect("bench config");
    config.events.state_dir = dir.to_path_buf();
    config
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

async fn comment_latency(work: &std::path::Path, window: Duration) -> Vec<Duration> {
    let (cert, key, _) = daihuo::daemons::certificate(work);
    let origin_dir = work.join("origin");
    let origin_config = conf::OriginConfig::from_toml(&format!(
        "[srt]\nlisten = \"127.0.0.1:0\"\n[http]\nlisten = \"127.0.0.1:0\"\ncert = {:?}\nkey = {:?}\n\
         [admin]\nlisten = \"127.0.0.1:0\"\n[transcode]\nencoder = \"off\"\n[events]\nstate_dir = {:?}\n",
        cert.display().to_string(),
        key.display().to_string(),
        origin_dir.display().to_string()
    ))
    .expect("origin config");
    let node = origin::Node::start(&origin_config).await.expect("origin");
    let upstream = format!(
        "[upstream]\nca = {:?}\nprobe_interval_ms = 200\n[[upstream.origins]]\nname = \"o\"\n\
         srt = \"{}\"\napi = \"{}\"\nserver_name = \"localhost\"\n",
        cert.display().to_string(),
        node.srt_addr,
        node.http_addr
    );
    let a = edge_node::Edge::start(&loopback(&work.join("edge-a"), &upstream))
        .await
        .expect("edge a");
    let b = edge_node::Edge::start(&loopback(&work.join("edge-b"), &upstream))
        .await
        .expect("edge b");
    // The viewer at B.
    let mut viewer = connect(b.addrs.http.expect("http")).await;
    let req = http::Request::get("/live/demo/events")
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .expect("request");
    let mut body = viewer.send_request(req).await.expect("feed").into_body();
    let arrived: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let seen = arrived.clone();
    tokio::spawn(async move {
        let mut text = String::new();
        while let Some(Ok(frame)) = body.frame().await {
            let Ok(data) = frame.into_data() else {
                continue;
            };
            let now = Instant::now();
            text.push_str(&String::from_utf8_lossy(&data));
            while let Some(end) = text.find("\n\n") {
                let message: String = text.drain(..end + 2).collect();
                if let Some(at) = message.find("\"id\":\"") {
                    let id: String = message[at + 6..]
                        .chars()
                        .take_while(|c| *c != '"')
                        .collect();
                    seen.lock().expect("lock").insert(id, now);
                }
            }
        }
    });
    // Until B follows the origin, comments may go by: warm up until one arrives.
    let a_http = a.addrs.http.expect("http");
    let mut poster = connect(a_http).await;
    for w in 0.. {
        let body = format!(r#"{{"id":"warm{w}","type":"comment","user":"u","text":"warm"}}"#);
        post(&mut poster, "/live/demo/events", body).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        if !arrived.lock().expect("lock").is_empty() {
            break;
        }
        assert!(w < 300, "the feed never started");
    }
    // 1,000 comments/s: four posters, each one every 4 ms.
    let sent: Arc<Mutex<HashMap<String, Instant>>> = Arc::default();
    let started = Instant::now();
    let posters: Vec<_> = (0..4)
        .map(|p| {
            let sent = sent.clone();
            tokio::spawn(async move {
                let mut send = connect(a_http).await;
                let mut tick = tokio::time::interval(Duration::from_millis(4));
                let mut n = 0;
                while started.elapsed() < window {
                    tick.tick().await;
                    let id = format!("c{p}-{n}");
                    n += 1;
                    let body =
                        format!(r#"{{"id":"{id}","type":"comment","user":"u","text":"hello"}}"#);
                    sent.lock().expect("lock").insert(id, Instant::now());
                    assert_eq!(post(&mut send, "/live/demo/events", body).await, 202);
                }
            })
        })
        .collect();
    for p in posters {
        p.await.expect("poster");
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let sent = sent.lock().expect("lock").clone();
    let arrived = arrived.lock().expect("lock").clone();
    let mut latencies: Vec<Duration> = sent
        .iter()
        .filter_map(|(id, at)| arrived.get(id).map(|got| got.duration_since(*at)))
        .collect();
    println!(
        "comments: {} sent at 1000/s, {} arrived at edge B's viewer",
        sent.len(),
        latencies.len()
    );
    latencies.sort();
    a.shutdown(Duration::from_secs(1)).await;
    b.shutdown(Duration::from_secs(1)).await;
    node.shutdown(Duration::from_secs(1)).await;
    latencies
}

fn main() {
    let seconds: u64 = std::env::var("EVENTS_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let window = Duration::from_secs(seconds);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // On disk, beside the build (fsync on tmpfs would measure nothing).
    let work = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).expect("work dir");
    runtime.block_on(async {
        let edge = edge_node::Edge::start(&loopback(&work.path().join("single"), ""))
            .await
            .expect("edge");
        let http = edge.addrs.http.expect("http");
        let batched = carts(http, 64, 50, window, "b").await;
        let batched_drain = drained(&edge).await;
        let single = carts(http, 64, 1, window, "s").await;
        let single_drain = drained(&edge).await;
        edge.shutdown(Duration::from_secs(2)).await;
        let baseline = fsync_each(work.path(), window);
        let redis_dir = work.path().join("redis");
        std::fs::create_dir_all(&redis_dir).expect("redis dir");
        let (mut server, addr) = redis(&redis_dir);
        let redis_batched = redis_carts(addr, 64, 50, window).await;
        let redis_single = redis_carts(addr, 64, 1, window).await;
        let _ = server.kill();
        let _ = server.wait();
        println!("durable cart events, one edge (spool group commit, fsync on disk):");
        println!("  64 clients, 50 events per POST: {batched:10.0} events/s");
        println!("  64 clients, 1 event per POST:   {single:10.0} events/s");
        println!(
            "  (the spool emptied into the journal {batched_drain:.1?} and {single_drain:.1?} \
             after each; the next phase started then)"
        );
        println!("  baseline, write + fdatasync per event: {baseline:10.0} events/s");
        println!(
            "  ratio to the baseline: {:.1}x (batches), {:.1}x (single events)",
            batched / baseline,
            single / baseline
        );
        println!("the peer, redis-server (appendonly, appendfsync always) on the same disk:");
        println!("  64 clients, 50 XADDs pipelined: {redis_batched:10.0} events/s");
        println!("  64 clients, 1 XADD per round trip: {redis_single:10.0} events/s");
        println!(
            "  daihuo / redis: {:.2}x (batches), {:.2}x (single events)",
            batched / redis_batched,
            single / redis_single
        );
        for (sink, what) in [
            (
                conf::Sink::Journal,
                "journal-acknowledged (origin intake, no bus)",
            ),
            (conf::Sink::Kafka, "Kafka-acknowledged"),
        ] {
            let acks = intake_acks(work.path(), 64, window, sink).await;
            report(what, &acks, window);
        }
        let events: u64 = std::env::var("EVENTS_LONG_SHOW")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(10_000_000);
        if events > 0 {
            long_show(work.path(), events, window).await;
        }
        let latencies = comment_latency(work.path(), window).await;
        if latencies.is_empty() {
            println!("comment latency: no comment arrived");
            return;
        }
        println!(
            "comment latency, POST at edge A to SSE at edge B: p50 {:?}, p99 {:?}, max {:?}",
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99),
            latencies[latencies.len() - 1]
        );
    });
}
