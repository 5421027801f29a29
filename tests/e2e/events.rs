//! Viewer events end to end with real processes: cart events posted through two
//! `daihuo-edge`s to one `daihuo-origin` while an edge and the origin are SIGKILLed and
//! restarted (every acknowledged event in the origin's journal exactly once), likes merged per
//! window with an exact total, and bad input refused with clear reasons.

// Tests panic on purpose when the system under test misbehaves.
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use daihuo::daemons::{binary, certificate, free_port, OriginSpec};
use daihuo::{eventually, loopback_config, Child};
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;

/// One HTTP/1.1 request on a fresh connection: (status, body).
pub(crate) async fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Bytes,
) -> Option<(u16, String)> {
    request_with(addr, method, path, body, &[]).await
}

/// [`request`] with extra `headers`.
pub(crate) async fn request_with(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Bytes,
    headers: &[(&str, &str)],
) -> Option<(u16, String)> {
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .ok()?;
    tokio::spawn(conn);
    let mut req = http::Request::builder()
        .method(method)
        .uri(path)
        .header("host", "localhost")
        .header("content-type", "application/json");
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req.body(Full::new(body)).ok()?;
    let res = tokio::time::timeout(Duration::from_secs(30), send.send_request(req))
        .await
        .ok()?
        .ok()?;
    let status = res.status().as_u16();
    let body = res.into_body().collect().await.ok()?.to_bytes();
    Some((status, String::from_utf8_lossy(&body).into_owned()))
}

pub(crate) async fn post(addr: SocketAddr, room: &str, body: String) -> Option<(u16, String)> {
    request(
        addr,
        "POST",
        &format!("/live/{room}/events"),
        Bytes::from(body),
    )
    .await
}

/// Every journal line of the daemon whose admin listener is `admin`.
pub(crate) async fn journal(admin: SocketAddr) -> Vec<serde_json::Value> {
    let mut lines = Vec::new();
    let mut after: Option<u64> = None;
    loop {
        let path = match after {
            Some(a) => format!("/events?after={a}"),
            None => "/events".into(),
        };
        // A short read: the long poll answers at once when lines exist.
        let Some((200, body)) = tokio::time::timeout(
            Duration::from_secs(2),
            request(admin, "GET", &path, Bytes::new()),
        )
        .await
        .ok()
        .flatten() else {
            return lines;
        };
        let page: Vec<serde_json::Value> = body
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if page.is_empty() {
            return lines;
        }
        after = page.last().and_then(|l| l["offset"].as_u64());
        lines.extend(page);
    }
}

/// Subscribes to `room`'s live feed (server-sent events) on `addr`; yields the text as it
/// arrives.
async fn sse(addr: SocketAddr, room: &str) -> Sse {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get(format!("/live/{room}/events"))
        .header("host", "localhost")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let res = send.send_request(req).await.unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(res.headers()["content-type"], "text/event-stream");
    let (tx, rx) = tokio::sync::mpsc::channel(1024);
    let mut body = res.into_body();
    tokio::spawn(async move {
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                if tx
                    .send(String::from_utf8_lossy(&data).into_owned())
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    });
    Sse {
        rx,
        text: String::new(),
    }
}

/// A viewer's live feed as it arrives. One body chunk may hold several messages (a journal
/// page with two like windows is one chunk): what follows a message found is kept for the
/// next look.
struct Sse {
    rx: tokio::sync::mpsc::Receiver<String>,
    text: String,
}

impl Sse {
    /// Waits for an SSE `event:` of `kind` whose data contains `needle`; messages before it
    /// are passed over.
    async fn next_event(&mut self, kind: &str, needle: &str) -> String {
        let want = format!("event: {kind}\n");
        tokio::time::timeout(Duration::from_secs(20), async {
            loop {
                // Every complete message so far, in order.
                while let Some(end) = self.text.find("\n\n") {
                    let message: String = self.text.drain(..end + 2).collect();
                    if message.starts_with(&want) && message.contains(needle) {
                        return message;
                    }
                }
                let chunk = self.rx.recv().await.expect("feed open");
                self.text.push_str(&chunk);
            }
        })
        .await
        .expect("feed message in time")
    }

    /// Everything received so far and not yet looked at.
    fn received(&mut self) -> String {
        while let Ok(chunk) = self.rx.try_recv() {
            self.text.push_str(&chunk);
        }
        std::mem::take(&mut self.text)
    }
}

fn cart(id: &str) -> String {
    format!(r#"{{"id":"{id}","type":"cart_add","user":"u1","sku":"SKU-1","qty":1}}"#)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_refused_with_reasons_and_other_rooms_go_on() {
    let edge = edge_node::Edge::start(&loopback_config()).await.unwrap();
    let http = edge.addrs.http.unwrap();
    let cases: [(String, u16, &str); 6] = [
        ("{".into(), 400, "EOF"),
        (
            r#"{"id":"a","type":"tip","user":"u"}"#.into(),
            400,
            "unknown variant `tip`",
        ),
        (
            r#"{"id":"a","type":"cart_add","user":"u"}"#.into(),
            400,
            "needs sku",
        ),
        (
            format!(
                "[{}]",
                (0..501)
                    .map(|i| cart(&format!("x{i}")))
                    .collect::<Vec<_>>()
                    .join(",")
            ),
            400,
            "at most 500",
        ),
        ("x".repeat(2 * 1024 * 1024), 413, ""),
        (
            r#"{"id":"a","type":"comment","user":"u","text":"ok"}"#.into(),
            202,
            "accepted",
        ),
    ];
    for (body, status, why) in cases {
        let (got, text) = post(http, "demo", body).await.unwrap();
        assert_eq!(got, status, "{text}");
        assert!(text.contains(why), "{text}");
    }
    // POST posts, GET is the live feed, nothing else; a slow or broken sender costs only its
    // own connection.
    let (status, _) = request(http, "PUT", "/live/demo/events", Bytes::new())
        .await
        .unwrap();
    assert_eq!(status, 405);
    let mut slow = tokio::net::TcpStream::connect(http).await.unwrap();
    use tokio::io::AsyncWriteExt;
    slow.write_all(b"POST /live/demo/events HTTP/1.1\r\nhost: x\r\ncontent-length: 100\r\n\r\n{")
        .await
        .unwrap();
    let (status, text) = post(http, "other", cart("c1")).await.unwrap();
    assert_eq!((status, text.trim()), (202, r#"{"accepted":1,"shed":0}"#));
    // Both accepted events reach the single box's journal.
    let admin = edge.addrs.admin;
    let lines = eventually(10, async || {
        let l = journal(admin).await;
        (l.len() == 2).then_some(l)
    })
    .await;
    let ids: Vec<&str> = lines
        .iter()
        .map(|l| l["event"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a", "c1"]);
    assert_eq!(lines[1]["room"], "other");
    drop(slow);
    edge.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn likes_merge_per_window_with_an_exact_total() {
    let mut config = loopback_config();
    config.events.client_per_second = 1_000_000;
    config.events.client_burst = 1_000_000;
    let window = Duration::from_millis(config.events.like_window_ms);
    let edge = edge_node::Edge::start(&config).await.unwrap();
    let http = edge.addrs.http.unwrap();
    // A viewer of the live feed (the single box follows its own journal).
    let mut feed = sse(http, "demo").await;
    // 10,000 likes a second for two seconds: batches of 100 every 10 ms.
    let started = Instant::now();
    let mut sent = 0;
    let mut tick = tokio::time::interval(Duration::from_millis(10));
    for b in 0..200 {
        tick.tick().await;
        let batch: Vec<String> = (0..100)
            .map(|i| format!(r#"{{"id":"l{b}-{i}","type":"like","user":"u{i}"}}"#))
            .collect();
        let (status, text) = post(http, "demo", format!("[{}]", batch.join(",")))
            .await
            .unwrap();
        assert_eq!(status, 202, "{text}");
        assert!(text.contains(r#""shed":0"#), "{text}");
        sent += 100;
    }
    let elapsed = started.elapsed();
    let admin = edge.addrs.admin;
    let lines = eventually(10, async || {
        let l = journal(admin).await;
        let total: u64 = l
            .iter()
            .map(|l| l["event"]["count"].as_u64().unwrap_or(0))
            .sum();
        (total >= sent).then_some(l)
    })
    .await;
    let total: u64 = lines
        .iter()
        .map(|l| l["event"]["count"].as_u64().unwrap())
        .sum();
    assert_eq!(total, sent, "likes lost or doubled");
    // At most one upstream record per room per window (plus the last partial one).
    let windows = elapsed.as_millis() / window.as_millis() + 2;
    assert!(
        (lines.len() as u128) <= windows,
        "{} like records for {windows} windows",
        lines.len()
    );
    assert!(lines
        .iter()
        .all(|l| l["room"] == "demo" && l["event"]["type"] == "like"));
    // The viewer saw the merged counts add up to the same total.
    let mut seen = 0;
    while seen < sent {
        let m = feed.next_event("likes", "count").await;
        let data: serde_json::Value =
            serde_json::from_str(m.split("data: ").nth(1).unwrap()).unwrap();
        seen += data["count"].as_u64().unwrap();
    }
    assert_eq!(seen, sent);
    edge.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn comments_and_likes_posted_at_one_edge_reach_viewers_of_another() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, _) = certificate(dir.path());
    let origin = OriginSpec::new("origin-a");
    let _origin = origin.start(dir.path(), &cert, &key);
    let a = EdgeProc::new(dir.path(), "edge-a", &cert, &origin);
    let b = EdgeProc::new(dir.path(), "edge-b", &cert, &origin);
    for e in [&a, &b] {
        let http = e.http;
        eventually(30, async || {
            request(http, "GET", "/live/x/index.m3u8", Bytes::new())
                .await
                .map(|_| ())
        })
        .await;
    }
    let mut feed = sse(b.http, "demo").await;
    let mut other = sse(b.http, "other").await;
    // Until edge B follows the origin's journal, a comment may go by unseen: post until one
    // arrives, then measure one.
    let mut n = 0;
    eventually(30, async || {
        n += 1;
        let body = format!(r#"{{"id":"warm{n}","type":"comment","user":"u1","text":"warm"}}"#);
        post(a.http, "demo", body).await;
        tokio::time::timeout(
            Duration::from_millis(500),
            feed.next_event("comment", "warm"),
        )
        .await
        .ok()
    })
    .await;
    let sent = Instant::now();
    let body = r#"{"id":"m-1","type":"comment","user":"u7","text":"great price"}"#;
    assert_eq!(post(a.http, "demo", body.into()).await.unwrap().0, 202);
    let message = feed.next_event("comment", "great price").await;
    println!(
        "comment from edge A to a viewer of edge B: {:?}",
        sent.elapsed()
    );
    assert!(message.contains(r#""user":"u7""#), "{message}");
    // Likes arrive merged, as counts.
    let likes: Vec<String> = (0..30)
        .map(|i| format!(r#"{{"id":"lk{i}","type":"like","user":"u{i}"}}"#))
        .collect();
    post(a.http, "demo", format!("[{}]", likes.join(","))).await;
    let mut counted = 0;
    while counted < 30 {
        let m = feed.next_event("likes", "count").await;
        let data: serde_json::Value =
            serde_json::from_str(m.split("data: ").nth(1).unwrap()).unwrap();
        counted += data["count"].as_u64().unwrap();
    }
    assert_eq!(counted, 30);
    // Another room's viewers got none of it (a keepalive comment at most).
    let text = other.received();
    assert!(!text.contains("event:"), "{text}");
}

/// An edge process with remote origins.
struct EdgeProc {
    config: PathBuf,
    http: SocketAddr,
    child: Option<Child>,
}

impl EdgeProc {
    fn new(dir: &Path, name: &str, ca: &Path, origin: &OriginSpec) -> Self {
        Self::with_events(dir, name, ca, origin, "")
    }

    /// An edge with more `[events]` settings (`key = value` lines).
    fn with_events(dir: &Path, name: &str, ca: &Path, origin: &OriginSpec, events: &str) -> Self {
        let at = |p| SocketAddr::from(([127, 0, 0, 1], p));
        let srt = at(free_port());
        let http = at(free_port());
        let config = dir.join(format!("{name}.toml"));
        std::fs::write(
            &config,
            format!(
                "shutdown_grace_ms = 2000\n[srt]\nlisten = \"{srt}\"\n[https]\nenabled = false\n\
                 [http3]\nenabled = false\n[http]\nlisten = \"{http}\"\n[admin]\nlisten = \"{}\"\n\
                 [events]\nstate_dir = {:?}\nclient_per_second = 1000000\nclient_burst = 1000000\n\
                 {events}\n[log]\nlevel = \"warn\"\n\
                 [upstream]\nca = {:?}\nprobe_interval_ms = 200\nconnect_timeout_ms = 500\n{}",
                at(free_port()),
                dir.join(format!("{name}-state")).display().to_string(),
                ca.display().to_string(),
                origin.toml()
            ),
        )
        .unwrap();
        let mut edge = Self {
            config,
            http,
            child: None,
        };
        edge.start();
        edge
    }

    fn start(&mut self) {
        self.child = Some(
            Child::spawn(
                Command::new(binary("edge-node", "daihuo-edge"))
                    .arg("--config")
                    .arg(&self.config)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null()),
            )
            .unwrap(),
        );
    }
}

/// xorshift64*: the kill schedule of one seed.
pub(crate) fn rng(seed: u64) -> impl FnMut(u64) -> u64 {
    let mut x = seed.max(1);
    move |n| {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

async fn nothing_lost(seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, _) = certificate(dir.path());
    let origin = OriginSpec::new("origin-a");
    let mut origin_proc = Some(origin.start(dir.path(), &cert, &key));
    let mut edges = [
        EdgeProc::new(dir.path(), "edge-a", &cert, &origin),
        EdgeProc::new(dir.path(), "edge-b", &cert, &origin),
    ];
    for e in &edges {
        let http = e.http;
        eventually(30, async || {
            request(http, "GET", "/live/x/index.m3u8", Bytes::new())
                .await
                .map(|_| ())
        })
        .await;
    }
    let mut random = rng(seed);
    let total = 20_000;
    let per_post = 50;
    // Kill an edge and the origin once each, at random points of the run.
    let kill_edge_at = random(total / per_post);
    let kill_origin_at = random(total / per_post);
    let mut acked: Vec<String> = Vec::new();
    let mut pending: Vec<Vec<String>> = (0..total / per_post)
        .map(|b| (0..per_post).map(|i| format!("s{seed}-{b}-{i}")).collect())
        .collect();
    pending.reverse();
    let mut n = 0;
    let mut retries = 0;
    let mut restarts: Vec<(Instant, &str)> = Vec::new();
    while let Some(ids) = pending.pop() {
        if n == kill_edge_at {
            edges[0].child = None; // SIGKILL
            restarts.push((Instant::now() + Duration::from_millis(300), "edge"));
        }
        if n == kill_origin_at {
            origin_proc = None; // SIGKILL
            restarts.push((Instant::now() + Duration::from_millis(500), "origin"));
        }
        restarts.retain(|(at, what)| {
            if Instant::now() < *at {
                return true;
            }
            match *what {
                "edge" => edges[0].start(),
                _ => origin_proc = Some(origin.start(dir.path(), &cert, &key)),
            }
            false
        });
        let edge = &edges[(n as usize) % 2];
        n += 1;
        let body = format!(
            "[{}]",
            ids.iter().map(|id| cart(id)).collect::<Vec<_>>().join(",")
        );
        match post(edge.http, "shop", body).await {
            Some((202, _)) => acked.extend(ids),
            // Not acknowledged (the edge is down): the client tries again, same ids.
            _ => {
                retries += 1;
                pending.push(ids);
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    }
    for (_, what) in restarts {
        match what {
            "edge" => edges[0].start(),
            _ => origin_proc = Some(origin.start(dir.path(), &cert, &key)),
        }
    }
    assert_eq!(acked.len() as u64, total);
    // Everything acknowledged reaches the origin's journal, once.
    let lines = eventually(60, async || {
        let l = journal(origin.admin).await;
        (l.len() as u64 >= total).then_some(l)
    })
    .await;
    let mut seen: HashMap<String, usize> = HashMap::new();
    for l in &lines {
        *seen
            .entry(l["event"]["id"].as_str().unwrap().to_string())
            .or_default() += 1;
    }
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "seed {seed}: written twice: {twice:?}");
    let missing: Vec<_> = acked.iter().filter(|id| !seen.contains_key(*id)).collect();
    assert!(
        missing.is_empty(),
        "seed {seed}: {} acknowledged ids missing",
        missing.len()
    );
    assert_eq!(lines.len() as u64, total);
    let metrics = request(origin.admin, "GET", "/metrics", Bytes::new())
        .await
        .unwrap()
        .1;
    let duplicates = daihuo::daemons::sample(
        &metrics,
        "daihuo_events_total{result=\"duplicate\",type=\"any\"}",
    );
    println!(
        "seed {seed}: edge killed at post {kill_edge_at}, origin at post {kill_origin_at}; \
         {retries} posts retried by the client; the restarted origin dropped {duplicates} \
         replayed duplicates"
    );
    drop(origin_proc);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_cart_events_survive_killed_edges_and_origin() {
    for seed in [1, 2] {
        nothing_lost(seed).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_id_from_two_users_is_two_events_and_retries_count_once() {
    let edge = edge_node::Edge::start(&loopback_config()).await.unwrap();
    let http = edge.addrs.http.unwrap();
    let admin = edge.addrs.admin;
    let cart = |user: &str| {
        format!(r#"{{"id":"c-42","type":"cart_add","user":"{user}","sku":"SKU-1","qty":1}}"#)
    };
    let likes =
        r#"[{"id":"lk-1","type":"like","user":"u1"},{"id":"lk-2","type":"like","user":"u1"}]"#;
    // Each post twice: the viewer retried.
    for body in [cart("alice"), cart("bob"), likes.to_string()] {
        for _ in 0..2 {
            let (status, text) = post(http, "demo", body.clone()).await.unwrap();
            assert_eq!(status, 202, "{text}");
        }
    }
    // After the like window, a last event to wait for: everything before it is in.
    tokio::time::sleep(Duration::from_millis(500)).await;
    post(http, "demo", cart("zed")).await.unwrap();
    let lines = eventually(10, async || {
        let l = journal(admin).await;
        l.iter().any(|l| l["event"]["user"] == "zed").then_some(l)
    })
    .await;
    let mut carts: Vec<&str> = lines
        .iter()
        .filter(|l| l["event"]["id"] == "c-42")
        .map(|l| l["event"]["user"].as_str().unwrap())
        .collect();
    carts.sort_unstable();
    assert_eq!(carts, ["alice", "bob", "zed"]);
    let liked: u64 = lines
        .iter()
        .filter(|l| l["event"]["type"] == "like")
        .map(|l| l["event"]["count"].as_u64().unwrap())
        .sum();
    assert_eq!(liked, 2, "retried likes count once: {lines:?}");
    edge.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_tokens_decide_who_may_post_carts() {
    const SECRET: &str = "the-business-login-service-secret-0123";
    let edge = edge_node::Edge::start(&daihuo::user_tokens_config(SECRET))
        .await
        .unwrap();
    let http = edge.addrs.http.unwrap();
    let now = daihuo::unix_now();
    let alice = format!(
        "Bearer {}",
        origin::auth::viewer_token(SECRET, "alice", now + 600)
    );
    let expired = format!(
        "Bearer {}",
        origin::auth::viewer_token(SECRET, "alice", now - 1)
    );
    let forged = alice.replace("alice", "bob");
    let cart = |id: &str, user: &str| {
        format!(r#"{{"id":"{id}","type":"cart_add","user":"{user}","sku":"SKU-1","qty":1}}"#)
    };
    let send = async |body: String, auth: Option<String>| {
        let headers: Vec<(&str, &str)> = auth
            .as_deref()
            .map(|a| vec![("authorization", a)])
            .unwrap_or_default();
        request_with(
            http,
            "POST",
            "/live/demo/events",
            Bytes::from(body),
            &headers,
        )
        .await
        .unwrap()
    };
    // No token: 401, saying what is needed.
    let (status, text) = send(cart("t1", "alice"), None).await;
    assert_eq!(status, 401, "{text}");
    assert!(text.contains("viewer token"), "{text}");
    // Alice's token for alice's cart: taken.
    let (status, text) = send(cart("t2", "alice"), Some(alice.clone())).await;
    assert_eq!(status, 202, "{text}");
    // Alice's token for a cart in bob's name, an expired token, a forged one: 403 with why.
    for (body, auth, why) in [
        (
            cart("t3", "bob"),
            alice.clone(),
            "not the viewer token's user",
        ),
        (cart("t4", "alice"), expired, "expired"),
        (cart("t5", "bob"), forged, "wrong"),
    ] {
        let (status, text) = send(body, Some(auth)).await;
        assert_eq!(status, 403, "{text}");
        assert!(text.contains(why), "{why}: {text}");
    }
    // Likes and (by default) comments need none.
    let like = r#"{"id":"t6","type":"like","user":"anyone"}"#.to_string();
    assert_eq!(send(like, None).await.0, 202);
    let comment = r#"{"id":"t7","type":"comment","user":"anyone","text":"hi"}"#.to_string();
    assert_eq!(send(comment, None).await.0, 202);
    // Only alice's own cart reached the journal.
    let admin = edge.addrs.admin;
    let lines = eventually(10, async || {
        let l = journal(admin).await;
        l.iter().any(|l| l["event"]["id"] == "t7").then_some(l)
    })
    .await;
    let carts: Vec<(&str, &str)> = lines
        .iter()
        .filter(|l| l["event"]["type"] == "cart_add")
        .map(|l| {
            (
                l["event"]["id"].as_str().unwrap(),
                l["event"]["user"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(carts, [("t2", "alice")]);
    edge.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_too_large_for_the_origin_is_split_and_blocks_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, _) = certificate(dir.path());
    let origin = OriginSpec::new("origin-a");
    let _origin = origin.start(dir.path(), &cert, &key);
    // Comments of up to 10,000 characters at the edge: 150 of them are a batch larger than
    // the origin takes in one request (1 MiB).
    let edge = EdgeProc::with_events(
        dir.path(),
        "edge-a",
        &cert,
        &origin,
        "max_comment_chars = 10000",
    );
    let http = edge.http;
    // Up once it takes a like (events need no stream, nor the origin yet).
    let like = r#"{"id":"warm","type":"like","user":"u0"}"#;
    eventually(30, async || {
        post(http, "big", like.into()).await.map(|_| ())
    })
    .await;
    let text = "x".repeat(9000);
    for b in 0..3 {
        let batch: Vec<String> = (0..50)
            .map(|i| {
                format!(r#"{{"id":"big-{b}-{i}","type":"comment","user":"u1","text":"{text}"}}"#)
            })
            .collect();
        let (status, body) = post(http, "big", format!("[{}]", batch.join(",")))
            .await
            .unwrap();
        assert_eq!(status, 202, "{body}");
    }
    let cart = r#"{"id":"small-1","type":"cart_add","user":"u2","sku":"S","qty":1}"#;
    assert_eq!(post(http, "small", cart.into()).await.unwrap().0, 202);
    let lines = eventually(30, async || {
        let l = journal(origin.admin).await;
        let comments = l.iter().filter(|l| l["event"]["type"] == "comment").count();
        (comments == 150 && l.iter().any(|l| l["room"] == "small")).then_some(l)
    })
    .await;
    assert!(lines
        .iter()
        .any(|l| l["room"] == "small" && l["event"]["id"] == "small-1"));
    let big = lines
        .iter()
        .filter(|l| l["room"] == "big" && l["event"]["type"] == "comment");
    assert_eq!(big.count(), 150);
}
