//! End-to-end: a single-box edge (embedded origin) on loopback, Debian's ffmpeg publishing
//! 1080p30 H.264 (B-frames) + AAC over SRT, viewers over HTTP/3 (quinn + h3), HTTPS (curl,
//! HTTP/2) and plain HTTP; what was served is decoded by ffmpeg.

// Tests panic on purpose when the system under test misbehaves.
#![allow(clippy::unwrap_used)]

use std::time::Duration;

use daihuo::peers::{curl, curl_headers, curl_http_version, ffmpeg_push, ffmpeg_source};
use daihuo::playlist::{attr, media_sequence, part_numbers, preload_hint, segments, tags, tfdt};
use daihuo::{eventually, loopback_config, require_ffmpeg, Child, H3Client};
use edge_node::Edge;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_push_plays_over_h3_https_and_http() {
    require_ffmpeg();
    let edge = Edge::start(&loopback_config()).await.expect("edge starts");
    let a = edge.addrs;
    let https = a.https.expect("https enabled");
    let http = a.http.expect("http enabled");
    // linger: ffmpeg waits for its last packets to be delivered before it closes.
    let srt = format!(
        "srt://{}?streamid=#!::r=live/demo,m=publish&linger=2",
        a.srt
    );
    let seconds = 12;
    let mut push = Child::spawn(&mut ffmpeg_push(1920, 1080, seconds, &srt)).expect("spawn ffmpeg");

    // Multivariant over HTTPS (curl negotiates HTTP/2).
    let base = format!("https://localhost:{}/live/demo", https.port());
    let multivariant = eventually(15, async || {
        let (status, body) = curl(&format!("{base}/index.m3u8")).ok()?;
        (status == 200).then(|| String::from_utf8_lossy(&body).into_owned())
    })
    .await;
    assert_eq!(
        curl_http_version(&format!("{base}/index.m3u8")).unwrap(),
        "2"
    );
    let inf = tags(&multivariant, "#EXT-X-STREAM-INF:");
    assert_eq!(inf.len(), 1, "{multivariant}");
    assert_eq!(
        attr(inf[0], "RESOLUTION"),
        Some("1920x1080"),
        "{multivariant}"
    );
    let codecs = attr(inf[0], "CODECS").unwrap();
    assert!(
        codecs.starts_with("avc1.64") && codecs.ends_with("mp4a.40.2"),
        "{codecs}"
    );
    assert!(attr(inf[0], "BANDWIDTH").unwrap().parse::<u64>().unwrap() > 100_000);
    assert_eq!(attr(inf[0], "AUDIO"), Some("audio"));
    assert_eq!(attr(inf[0], "FRAME-RATE"), Some("30.000"), "{multivariant}");
    let media = tags(&multivariant, "#EXT-X-MEDIA:");
    assert_eq!(attr(media[0], "URI"), Some("audio/index.m3u8"));
    assert_eq!(segments(&multivariant), vec!["1080p/index.m3u8"]);

    // Media playlist over HTTP/3, with every LL-HLS tag.
    let h3 = H3Client::connect(a.http3.expect("h3 enabled"), &edge.certificate())
        .await
        .expect("h3 connect");
    let path = "/live/demo/1080p/index.m3u8";
    let reply = h3.get(path).await.unwrap();
    assert_eq!(reply.status, 200);
    let playlist = String::from_utf8(reply.body.to_vec()).unwrap();
    for tag in [
        "#EXT-X-TARGETDURATION:2",
        "#EXT-X-SERVER-CONTROL:",
        "#EXT-X-PART-INF:PART-TARGET=",
        "#EXT-X-MAP:URI=\"init-",
        "#EXT-X-PART:",
        "#EXT-X-PRELOAD-HINT:TYPE=PART",
        "#EXT-X-PROGRAM-DATE-TIME:",
        "#EXT-X-RENDITION-REPORT:URI=\"../audio/index.m3u8\"",
    ] {
        assert!(playlist.contains(tag), "missing {tag} in\n{playlist}");
    }
    let control = tags(&playlist, "#EXT-X-SERVER-CONTROL:")[0];
    assert_eq!(attr(control, "CAN-BLOCK-RELOAD"), Some("YES"));
    assert!(attr(control, "PART-HOLD-BACK").is_some() && attr(control, "CAN-SKIP-UNTIL").is_some());

    // Blocking reload for a part that does not exist yet: the request waits and is answered
    // with a playlist that has it. Meanwhile the part itself is requested (also blocking).
    let (msn, part) = preload_hint(&playlist).expect("preload hint");
    let part_path = format!("/live/demo/1080p/part{msn}.{part}.m4s");
    let blocking = format!("{path}?_HLS_msn={msn}&_HLS_part={part}");
    let (reloaded, part_reply) = tokio::join!(h3.get(&blocking), h3.get(&part_path));
    let reloaded = String::from_utf8(reloaded.unwrap().body.to_vec()).unwrap();
    let listed = tags(&reloaded, "#EXT-X-PART:")
        .iter()
        .filter_map(|l| part_numbers(attr(l, "URI")?))
        .any(|p| p == (msn, part));
    assert!(
        listed,
        "part {msn}.{part} not in blocking reload:\n{reloaded}"
    );
    let part_reply = part_reply.unwrap();
    assert_eq!(part_reply.status, 200);
    assert!(part_reply.body.len() > 100);
    assert!(part_reply.headers.get("content-type").is_some());

    // The same bytes over HTTPS and plain HTTP.
    let (status, over_https) =
        curl(&format!("https://localhost:{}{part_path}", https.port())).unwrap();
    assert_eq!(status, 200);
    assert_eq!(over_https, part_reply.body.to_vec());
    let (status, over_http) = curl(&format!("http://{http}{part_path}")).unwrap();
    assert_eq!(status, 200);
    assert_eq!(over_http, part_reply.body.to_vec());

    // The publisher's uplink: its SRT round-trip time (each ACK and its ACK2), in seconds,
    // and the share of its packets lost over the last seconds.
    let rtt = eventually(15, async || {
        let (_, metrics) = curl(&format!("http://{}/metrics", a.admin)).ok()?;
        let metrics = String::from_utf8_lossy(&metrics).into_owned();
        let value = |name: &str| {
            metrics.lines().find_map(|l| {
                l.strip_prefix(name)?
                    .strip_prefix("{stream=\"demo\"}")?
                    .trim()
                    .parse::<f64>()
                    .ok()
            })
        };
        let rtt = value("daihuo_srt_rtt_seconds")?;
        let loss = value("daihuo_srt_loss_ratio")?;
        (rtt > 0.0).then_some((rtt, loss))
    })
    .await;
    assert!(rtt.0 < 1.0, "loopback RTT {} s", rtt.0);
    assert!((0.0..=1.0).contains(&rtt.1), "uplink loss ratio {}", rtt.1);

    // Answers advertise HTTP/3 on the port it is served on.
    let alt = reply.headers.get("alt-svc").expect("alt-svc");
    assert!(alt.to_str().unwrap().starts_with("h3=\":"), "{alt:?}");

    // Bad requests get 4xx, the stream goes on.
    for bad in [
        "/live/demo/4k/index.m3u8",
        "/live/demo/1080p/seg99999999999.m4s",
        "/live/../etc/passwd",
        "/live/demo/1080p/index.m3u8?_HLS_part=1",
    ] {
        let r = h3.get(bad).await.unwrap();
        assert!((400..500).contains(&r.status), "{bad}: {}", r.status);
    }

    // After the publish ends: ENDLIST, and every segment decodes with the right frame count.
    let status = tokio::task::spawn_blocking(move || push.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "ffmpeg push failed: {status}");
    let ended = eventually(10, async || {
        let body = h3.get(path).await.ok()?.body;
        let text = String::from_utf8(body.to_vec()).ok()?;
        text.contains("#EXT-X-ENDLIST").then_some(text)
    })
    .await;
    // The ended stream's per-stream series are gone (no pile-up over rooms); only its viewer
    // count stays while viewers (this test) still ask, up to 10 s after they stop.
    let (_, metrics) = curl(&format!("http://{}/metrics", a.admin)).unwrap();
    let metrics = String::from_utf8_lossy(&metrics);
    let left: Vec<&str> = metrics
        .lines()
        .filter(|l| l.contains("stream=\"demo\"") && !l.starts_with("daihuo_viewers{"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
    let video = download(&h3, "/live/demo/1080p", &ended).await;
    let frames = count_frames(&video, "v:0");
    assert_eq!(frames, seconds as u64 * 30, "video frames");
    let audio_playlist = String::from_utf8(
        h3.get("/live/demo/audio/index.m3u8")
            .await
            .unwrap()
            .body
            .to_vec(),
    )
    .unwrap();
    let audio = download(&h3, "/live/demo/audio", &audio_playlist).await;
    let audio_frames = count_frames(&audio, "a:0");
    // 48 kHz AAC: 1024 samples a frame, plus the encoder's priming frames. ffmpeg writes its
    // last audio PES at close (hence linger above).
    let expected = seconds as u64 * 48_000 / 1024;
    assert!(
        (expected..=expected + 3).contains(&audio_frames),
        "audio frames {audio_frames}, expected ~{expected}"
    );

    // HTTP/3's datagrams left in batches (GSO), not a system call each: the connection's
    // counts reach /metrics every few seconds while it is open.
    let (sent, calls) = eventually(15, async || {
        let (_, metrics) = curl(&format!("http://{}/metrics", a.admin)).ok()?;
        let metrics = String::from_utf8_lossy(&metrics).into_owned();
        let value = |name: &str| {
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(name)?.trim().parse::<f64>().ok())
        };
        let sent = value("daihuo_quic_datagrams_sent_total")?;
        let calls = value("daihuo_quic_send_calls_total")?;
        (sent > 1000.0).then_some((sent, calls))
    })
    .await;
    assert!(
        sent > 2.0 * calls,
        "{sent} datagrams sent in {calls} system calls: no segmentation offload"
    );

    edge.shutdown(Duration::from_secs(5)).await;
}

/// init.mp4 + every segment of `playlist` (which must start at its first segment), into a
/// temporary file.
async fn download(h3: &H3Client, base: &str, playlist: &str) -> tempfile::NamedTempFile {
    let mut bytes = h3
        .get(&format!("{base}/init.mp4"))
        .await
        .unwrap()
        .body
        .to_vec();
    let segs = segments(playlist);
    assert!(!segs.is_empty(), "{playlist}");
    let first = media_sequence(playlist).unwrap();
    assert_eq!(segs[0], format!("seg{first}.m4s"));
    for seg in segs {
        let r = h3.get(&format!("{base}/{seg}")).await.unwrap();
        assert_eq!(r.status, 200, "{seg}");
        bytes.extend_from_slice(&r.body);
    }
    let file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(file.path(), bytes).unwrap();
    file
}

/// Decodes `stream` of the file with ffmpeg (zero errors required) and returns its frame count.
fn count_frames(file: &tempfile::NamedTempFile, stream: &str) -> u64 {
    let decode = std::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i"])
        .arg(file.path())
        .args(["-map", &format!("0:{stream}"), "-f", "null", "-"])
        .output()
        .unwrap();
    assert!(decode.status.success());
    let errors = String::from_utf8_lossy(&decode.stderr);
    assert!(errors.trim().is_empty(), "decode errors: {errors}");
    let probe = std::process::Command::new("ffprobe")
        .args(["-v", "error", "-count_frames", "-select_streams", stream])
        .args(["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0"])
        .arg(file.path())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&probe.stdout);
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("ffprobe said {text:?}"))
}

/// The default listeners are dual-stack: HTTPS and HTTP/3 on `[::]` answer IPv4 and IPv6
/// clients (Chromium tries `::1` first for `localhost`). Answers carry the cross-origin
/// headers a page on another origin needs, preflights are answered, and `Alt-Svc` is sent
/// only where HTTP/3 can be reached (over TLS, not plain HTTP).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dual_stack_listeners_and_cross_origin_answers() {
    let mut config = loopback_config();
    config.https.listen = "[::]:0".parse().unwrap();
    config.http3.listen = "[::]:0".parse().unwrap();
    config.playback.cors_origins = vec!["https://shop.example".into()];
    let edge = Edge::start(&config).await.expect("edge starts");
    let (https, h3, http) = (
        edge.addrs.https.unwrap(),
        edge.addrs.http3.unwrap(),
        edge.addrs.http.unwrap(),
    );
    let path = "/live/nothing/index.m3u8";
    for host in ["127.0.0.1", "[::1]"] {
        let addr = format!("{host}:{}", h3.port()).parse().unwrap();
        let client = H3Client::connect(addr, &edge.certificate())
            .await
            .unwrap_or_else(|e| panic!("HTTP/3 over {host}: {e:#}"));
        let reply = client.get(path).await.unwrap();
        assert_eq!(reply.status, 404, "HTTP/3 over {host}");
        assert!(reply.headers.contains_key("alt-svc"), "HTTP/3 over {host}");
        let url = format!("https://{host}:{}{path}", https.port());
        let (status, head) = curl_headers(&url, &[]).unwrap();
        assert_eq!(status, 404, "HTTPS over {host}: {head}");
        let alt = format!("alt-svc: h3=\":{}\"", h3.port());
        assert!(head.contains(&alt), "HTTPS over {host}: {head}");
        assert!(head.contains("access-control-allow-origin: *"), "{head}");
        assert!(head.contains("timing-allow-origin: *"), "{head}");
    }
    let (status, head) = curl_headers(&format!("http://{http}{path}"), &[]).unwrap();
    assert_eq!(status, 404, "{head}");
    assert!(
        !head.contains("alt-svc"),
        "plain HTTP offers HTTP/3: {head}"
    );

    // A preflight (a page posting JSON to the events intake, with a header of its own).
    let events = format!("https://127.0.0.1:{}/live/demo/events", https.port());
    let preflight = [
        "-X",
        "OPTIONS",
        "-H",
        "Origin: https://elsewhere.example",
        "-H",
        "Access-Control-Request-Method: POST",
        "-H",
        "Access-Control-Request-Headers: content-type, x-trace-id",
    ];
    let (status, head) = curl_headers(&events, &preflight).unwrap();
    assert_eq!(status, 204, "{head}");
    for line in [
        "access-control-allow-origin: *",
        "access-control-allow-methods: get, head, post, options",
        "access-control-allow-headers: content-type, x-trace-id",
        "access-control-max-age: 600",
    ] {
        assert!(head.contains(line), "missing {line:?} in {head}");
    }
    // A listed origin is named back, with credentials; another gets the wildcard.
    let (_, head) = curl_headers(&events, &["-H", "Origin: https://shop.example"]).unwrap();
    assert!(
        head.contains("access-control-allow-origin: https://shop.example")
            && head.contains("access-control-allow-credentials: true")
            && head.contains("vary: origin"),
        "{head}"
    );
    let (_, head) = curl_headers(&events, &["-H", "Origin: https://evil.example"]).unwrap();
    assert!(head.contains("access-control-allow-origin: *"), "{head}");
    assert!(!head.contains("allow-credentials"), "{head}");
    edge.shutdown(Duration::from_secs(2)).await;
}

/// `[http3] endpoints = 4`: four QUIC endpoints on one port (SO_REUSEPORT). Every client is
/// answered whichever endpoint the kernel hands it to, and the per-address cap counts over
/// all four, not per endpoint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http3_on_several_endpoints_answers_everyone_and_caps_an_address_once() {
    let mut config = loopback_config();
    config.http3.listen = "[::]:0".parse().unwrap();
    config.http3.endpoints = 4;
    config.limits.max_connections_per_ip = 12;
    let edge = Edge::start(&config).await.expect("edge starts");
    let port = edge.addrs.http3.unwrap().port();
    let v4: std::net::SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let path = "/live/nothing/index.m3u8";
    // Twelve clients, each from its own port: were an endpoint not served, about a quarter of
    // them would get no answer.
    let mut held = Vec::new();
    for n in 0..12 {
        let client = H3Client::connect(v4, &edge.certificate())
            .await
            .unwrap_or_else(|e| panic!("client {n}: {e:#}"));
        assert_eq!(client.get(path).await.unwrap().status, 404, "client {n}");
        held.push(client);
    }
    // The address holds its twelve: more are refused on every endpoint.
    for n in 0..6 {
        let extra = tokio::time::timeout(
            Duration::from_secs(10),
            H3Client::connect(v4, &edge.certificate()),
        )
        .await;
        assert!(
            !matches!(extra, Ok(Ok(_))),
            "a 13th connection from one address was accepted ({n})"
        );
    }
    // Another address is not held back by that one's.
    let v6 = format!("[::1]:{port}").parse().unwrap();
    let other = H3Client::connect(v6, &edge.certificate()).await.unwrap();
    assert_eq!(other.get(path).await.unwrap().status, 404);
    drop(held);
    edge.shutdown(Duration::from_secs(2)).await;
}

/// SRT ingest on `[::]` (the default) takes encoders over IPv4 and IPv6.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn srt_ingest_is_dual_stack() {
    require_ffmpeg();
    let mut config = loopback_config();
    config.srt.listen = "[::]:0".parse().unwrap();
    let edge = Edge::start(&config).await.expect("edge starts");
    let http = edge.addrs.http.unwrap();
    let port = edge.addrs.srt.port();
    for (room, host) in [("four", "127.0.0.1"), ("six", "[::1]")] {
        let srt = format!("srt://{host}:{port}?streamid=#!::r=live/{room},m=publish");
        let _push = Child::spawn(&mut ffmpeg_push(320, 180, 10, &srt)).expect("spawn ffmpeg");
        eventually(15, async || {
            let (status, _) = curl(&format!("http://{http}/live/{room}/index.m3u8")).ok()?;
            (status == 200).then_some(())
        })
        .await;
    }
    edge.shutdown(Duration::from_secs(2)).await;
}

/// Audio is cut where video is: part N of the audio rendition covers the time of part N of the
/// video (to the nearest AAC frame) whatever the encoder's keyframe interval, so a player
/// loading both finds no hole, and no audio part is a sliver. (Before, audio was cut on its own
/// at the 2 s slots while video waited for keyframes, and every audio segment ended with a
/// 64-85 ms part.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audio_parts_cover_the_time_of_the_video_parts() {
    require_ffmpeg();
    let edge = Edge::start(&loopback_config()).await.expect("edge starts");
    let srt = format!(
        "srt://{}?streamid=#!::r=live/demo,m=publish&linger=2",
        edge.addrs.srt
    );
    // No B-frames, so a video part's decode time is its presentation time; keyframes every
    // 1.5 s, so they fall anywhere in the 2 s slots, as real encoders' do.
    let mut cmd = ffmpeg_source(640, 360, 10, "1M", true);
    cmd.args([
        "-bf",
        "0",
        "-g",
        "45",
        "-keyint_min",
        "45",
        "-f",
        "mpegts",
        &srt,
    ]);
    let mut push = Child::spawn(&mut cmd).expect("spawn ffmpeg");
    let status = tokio::task::spawn_blocking(move || push.wait())
        .await
        .unwrap()
        .unwrap();
    assert!(status.success(), "ffmpeg push failed: {status}");
    let h3 = H3Client::connect(edge.addrs.http3.unwrap(), &edge.certificate())
        .await
        .unwrap();
    let video = eventually(10, async || {
        let body = h3.get("/live/demo/360p/index.m3u8").await.ok()?.body;
        let text = String::from_utf8(body.to_vec()).ok()?;
        text.contains("#EXT-X-ENDLIST").then_some(text)
    })
    .await;
    // Every part of every segment in the window, by number: (msn, index) -> start in seconds.
    let starts = async |rendition: &str, timescale: f64| {
        let mut starts = std::collections::BTreeMap::new();
        for seg in segments(&video) {
            let msn: u64 = seg[3..seg.len() - 4].parse().unwrap();
            for index in 0.. {
                let path = format!("/live/demo/{rendition}/part{msn}.{index}.m4s");
                let reply = h3.get(&path).await.unwrap();
                if reply.status != 200 {
                    break;
                }
                starts.insert((msn, index), tfdt(&reply.body) as f64 / timescale);
            }
        }
        starts
    };
    let (v, a) = (
        starts("360p", 90_000.0).await,
        starts("audio", 48_000.0).await,
    );
    assert!(v.len() > 15, "{} video parts", v.len());
    let aac_frame = 1024.0 / 48_000.0;
    let keys: Vec<_> = v.keys().copied().collect();
    for pair in keys.windows(2) {
        let (this, next) = (pair[0], pair[1]);
        let (Some(a0), Some(a1)) = (a.get(&this), a.get(&next)) else {
            panic!("audio has no part {this:?} or {next:?}: {:?}", a.keys());
        };
        let (v0, v1) = (v[&this], v[&next]);
        assert!(
            (a0 - v0).abs() <= aac_frame / 2.0 + 1e-4,
            "part {this:?} starts at {v0:.4} s in video, {a0:.4} s in audio"
        );
        assert!(
            ((a1 - a0) - (v1 - v0)).abs() <= aac_frame + 1e-4,
            "part {this:?} lasts {:.4} s in video, {:.4} s in audio",
            v1 - v0,
            a1 - a0
        );
    }
    edge.shutdown(Duration::from_secs(2)).await;
}
