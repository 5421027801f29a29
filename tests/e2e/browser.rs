//! A real browser: Debian's Chromium, headless, plays a live stream from a single-box edge
//! with hls.js in low-latency mode, from a page on another origin, for 60 s over HTTPS and
//! 60 s over HTTP/3 (to `localhost`, which Chromium tries over IPv6 first: the edge listens on
//! `[::]`). Asserted: no fatal hls.js error, no hole in the buffered media, the media played,
//! and the page saw which protocol carried each request (Timing-Allow-Origin). Stalls,
//! first-frame time and latency are printed, not asserted: this machine is shared.
//!
//! And the room page a viewer opens (`/live/ROOM/`), driven over the DevTools protocol: it
//! plays, shows the latency, and its comment, like and cart controls work against the edge.

// Tests panic on purpose when the system under test misbehaves.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use daihuo::browser::{chromium, play, url_origin, Live, Transport};
use daihuo::peers::ffmpeg_push;
use daihuo::{eventually, loopback_config, Child};

const SECONDS: u64 = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_plays_without_holes_over_https_and_http3() {
    let live = Live::start(loopback_config(), |srt| {
        ffmpeg_push(640, 360, 2 * SECONDS as u32 + 60, srt)
    })
    .await;
    let src = format!("https://localhost:{}/live/demo/index.m3u8", live.port);
    let cert = &live.cert;

    for (transport, protocol) in [(Transport::Https, "h2"), (Transport::Http3, "h3")] {
        let report = play(&src, cert, transport, SECONDS).await;
        let stats: serde_json::Value = serde_json::from_str(&report).unwrap();
        let latency: Vec<f64> = stats["latency"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_f64())
            .collect();
        let median = {
            let mut l = latency.clone();
            l.sort_by(f64::total_cmp);
            l.get(l.len() / 2).copied().unwrap_or(f64::NAN)
        };
        println!(
            "browser over {protocol}: hls.js {}, first frame {} ms ({} start gaps), {} stalls ({:.0} ms), \
             latency median {median:.2} s, requests by protocol {}, errors {}",
            stats["hls"],
            stats["firstFrameMs"],
            stats["startGaps"],
            stats["stalls"],
            stats["stalledMs"].as_f64().unwrap_or(0.0),
            stats["protocols"],
            stats["errors"],
        );
        assert_eq!(stats["fatal"], serde_json::json!([]), "{report}");
        assert_eq!(stats["holes"], 0, "hls.js seeked over a hole: {report}");
        assert!(
            stats["maxRanges"].as_u64().unwrap() <= 1,
            "holes in the buffered ranges: {report}"
        );
        assert!(
            stats["played"].as_f64().unwrap() >= SECONDS as f64 / 2.0,
            "little was played: {report}"
        );
        assert!(
            stats["protocols"][protocol].as_u64().unwrap_or(0) > 10,
            "requests over {protocol}, seen cross-origin: {report}"
        );
    }
    live.edge.shutdown(Duration::from_secs(2)).await;
}

/// A headless Chromium page driven over the DevTools protocol (a WebSocket to the page).
struct Page {
    ws: tokio_tungstenite::WebSocketStream<
        tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>,
    >,
    next: u64,
    _browser: Child,
    _profile: tempfile::TempDir,
}

impl Page {
    async fn open(url: &str, cert: &std::path::Path, transport: Transport) -> Self {
        let profile = tempfile::tempdir().unwrap();
        let mut cmd = chromium(profile.path(), cert, &url_origin(url), transport);
        cmd.arg("--remote-debugging-port=0").arg(url);
        let browser = Child::spawn(&mut cmd).expect("spawn chromium");
        // Chromium writes the port it took to DevToolsActivePort in the profile.
        let port_file = profile.path().join("DevToolsActivePort");
        let port = eventually(30, async || {
            let text = std::fs::read_to_string(&port_file).ok()?;
            text.lines().next()?.parse::<u16>().ok()
        })
        .await;
        let list = format!("http://127.0.0.1:{port}/json/list");
        let target = eventually(30, async || {
            let (_, body) = daihuo::peers::curl(&list).ok()?;
            let targets: serde_json::Value = serde_json::from_slice(&body).ok()?;
            targets.as_array()?.iter().find(|t| t["type"] == "page")?["webSocketDebuggerUrl"]
                .as_str()
                .map(str::to_string)
        })
        .await;
        let (ws, _) = tokio_tungstenite::connect_async(target.as_str())
            .await
            .expect("DevTools WebSocket");
        Self {
            ws,
            next: 0,
            _browser: browser,
            _profile: profile,
        }
    }

    /// Evaluates `expression` in the page (awaiting it if it is a promise); its value.
    async fn eval(&mut self, expression: &str) -> serde_json::Value {
        match self.try_eval(expression).await {
            Ok(value) => value,
            Err(e) => panic!("{expression}: {e}"),
        }
    }

    /// [`Self::eval`], with what the page threw as the error.
    async fn try_eval(&mut self, expression: &str) -> Result<serde_json::Value, String> {
        use futures::{SinkExt, StreamExt};
        use tokio_tungstenite::tungstenite::Message;
        self.next += 1;
        let id = self.next;
        let call = serde_json::json!({
            "id": id,
            "method": "Runtime.evaluate",
            "params": { "expression": expression, "awaitPromise": true, "returnByValue": true },
        });
        self.ws
            .send(Message::Text(call.to_string()))
            .await
            .expect("DevTools send");
        while let Some(message) = self.ws.next().await {
            let Ok(Message::Text(text)) = message else {
                continue;
            };
            let reply: serde_json::Value = serde_json::from_str(&text).unwrap();
            if reply["id"] != id {
                continue;
            }
            let result = &reply["result"];
            if let Some(thrown) = result.get("exceptionDetails") {
                return Err(thrown.to_string());
            }
            return Ok(result["result"]["value"].clone());
        }
        panic!("DevTools connection closed");
    }

    /// Polls `expression` until it is true, for at most `secs` seconds.
    async fn wait_for(&mut self, expression: &str, secs: u64) {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        while std::time::Instant::now() < deadline {
            // Before the page has loaded, what it names may not exist yet: not true yet.
            if self.try_eval(expression).await == Ok(serde_json::Value::Bool(true)) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let page = self
            .eval("document.querySelector('main').innerText + ' | ' + document.querySelector('aside').innerText")
            .await;
        panic!("not true within {secs} s: {expression}\npage: {page}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_room_page_plays_and_its_controls_work() {
    let live = Live::start(loopback_config(), |srt| ffmpeg_push(640, 360, 120, srt)).await;
    let (edge, cert, port) = (&live.edge, &live.cert, live.port);
    // The list of live rooms links to the room.
    let (status, index) = daihuo::peers::curl(&format!("https://localhost:{port}/")).unwrap();
    let index = String::from_utf8_lossy(&index);
    assert_eq!(status, 200, "{index}");
    assert!(
        index.contains("<a href=\"/live/demo/\">demo</a>"),
        "{index}"
    );

    let url = format!("https://localhost:{port}/live/demo/?sku=sku-42");
    let mut page = Page::open(&url, cert, Transport::Http3).await;
    let by_id = |id: &str| format!("document.getElementById('{id}')");
    page.wait_for(&format!("{}.currentTime > 2", by_id("video")), 40)
        .await;
    page.wait_for(&format!("/ s$/.test({}.textContent)", by_id("latency")), 10)
        .await;
    // The page is a viewer: the room's count comes on the feed.
    page.wait_for(
        &format!(
            "!{}.hidden && Number({}.textContent) >= 1",
            by_id("viewers-box"),
            by_id("viewers")
        ),
        15,
    )
    .await;
    // A comment sent from the page comes back on the feed, markup shown as text.
    let comment = "<b>hi</b> from the page";
    page.eval(&format!(
        "{}.value = {comment:?}; {}.requestSubmit(); true",
        by_id("comment"),
        by_id("comment-form")
    ))
    .await;
    page.wait_for(
        &format!(
            "[...document.querySelectorAll('#comments li')].some(li => li.textContent.endsWith(': ' + {comment:?}) && li.querySelectorAll('b').length === 1)"
        ),
        15,
    )
    .await;
    // Three likes come back merged on the feed.
    page.eval(&format!(
        "for (let i = 0; i < 3; i++) {}.click(); true",
        by_id("like")
    ))
    .await;
    page.wait_for(&format!("{}.textContent === '3'", by_id("likes")), 15)
        .await;
    // Add to cart: acknowledged, and in the journal with the page's SKU.
    page.eval(&format!("{}.click(); true", by_id("cart"))).await;
    page.wait_for(
        &format!("{}.textContent === 'added'", by_id("cart-status")),
        15,
    )
    .await;
    let (_, journal) =
        daihuo::peers::curl(&format!("http://{}/events?after=0", edge.addrs.admin)).unwrap();
    let journal = String::from_utf8_lossy(&journal);
    assert!(
        journal
            .lines()
            .any(|l| l.contains("\"cart_add\"") && l.contains("\"sku-42\"")),
        "{journal}"
    );
    // The browser's own WebSocket: one connection posts a comment and gets it back on the
    // feed.
    page.eval(
        "window.wsLog = []; const ws = new WebSocket(`wss://${location.host}/live/demo/ws`); \
         ws.onmessage = e => wsLog.push(JSON.parse(e.data)); \
         ws.onopen = () => ws.send(JSON.stringify({id: 'ws-page-1', type: 'comment', user: 'page', text: 'over a socket'})); true",
    )
    .await;
    page.wait_for(
        "wsLog.some(m => m.type === 'accepted' && m.accepted === 1) && \
         wsLog.some(m => m.type === 'comment' && m.text === 'over a socket')",
        15,
    )
    .await;
    drop(page);
    live.edge.shutdown(Duration::from_secs(2)).await;
}
