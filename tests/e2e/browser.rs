//! A real browser: Debian's Chromium, headless, plays a live stream from a single-box edge
//! with hls.js in low-latency mode, from a page on another origin, for 60 s over HTTPS and
//! 60 s over HTTP/3 (to `localhost`, which Chromium tries over IPv6 first: the edge listens on
//! `[::]`). Asserted: no fatal hls.js error, no hole in the buffered media, the media played,
//! and the page saw which protocol carried each request (Timing-Allow-Origin). Stalls,
//! first-frame time and latency are printed, not asserted: this machine is shared.

// Tests panic on purpose when the system under test misbehaves.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use daihuo::browser::{play, require_chromium, Transport};
use daihuo::daemons::{certificate, free_port};
use daihuo::peers::ffmpeg_push;
use daihuo::{eventually, loopback_config, require_ffmpeg, Child};
use edge_node::Edge;

const SECONDS: u64 = 60;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_plays_without_holes_over_https_and_http3() {
    require_ffmpeg();
    require_chromium();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, _) = certificate(dir.path());
    let mut config = loopback_config();
    config.https.cert = Some(cert.clone());
    config.https.key = Some(key);
    let port = free_port();
    config.https.listen = format!("[::]:{port}").parse().unwrap();
    config.http3.listen = format!("[::]:{port}").parse().unwrap();
    let edge = Edge::start(&config).await.expect("edge starts");
    let srt = format!(
        "srt://{}?streamid=#!::r=live/demo,m=publish",
        edge.addrs.srt
    );
    // A small passthrough source: two cores play, encode and serve at once.
    let _push = Child::spawn(&mut ffmpeg_push(640, 360, 2 * SECONDS as u32 + 60, &srt))
        .expect("spawn ffmpeg");
    let src = format!("https://localhost:{port}/live/demo/index.m3u8");
    let http = edge.addrs.http.unwrap();
    eventually(20, async || {
        let (status, _) =
            daihuo::peers::curl(&format!("http://{http}/live/demo/360p/index.m3u8")).ok()?;
        (status == 200).then_some(())
    })
    .await;

    for (transport, protocol) in [(Transport::Https, "h2"), (Transport::Http3, "h3")] {
        let report = play(&src, &cert, transport, SECONDS).await;
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
            "browser over {protocol}: hls.js {}, first frame {} ms, {} stalls ({:.0} ms), \
             latency median {median:.2} s, requests by protocol {}, errors {}",
            stats["hls"],
            stats["firstFrameMs"],
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
    edge.shutdown(Duration::from_secs(2)).await;
}
