//! End-to-end: the edge/origin split on loopback. Two `daihuo-origin` processes and an edge
//! with both as upstream origins (hot standby, pulling over HTTP/2); Debian's ffmpeg
//! publishes to the edge over SRT; a scripted LL-HLS client (blocking playlist reloads, then
//! the parts) plays from the edge over HTTP/3 while the stream's primary origin is killed
//! with SIGKILL. A second test pulls over HTTP/3 through origins that are down at start,
//! replaced by configuration, and all down. A third publishes one room through three edges:
//! a second encoder is ended where takeover is off and takes the room over where it is on.

// Tests panic on purpose when the system under test misbehaves.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use daihuo::daemons::{certificate, metric, OriginSpec};
use daihuo::peers::ffmpeg_push;
use daihuo::playlist::{
    attr, media_sequence, newest_part, part_numbers, preload_hint, segments, tags, tfdt,
};
use daihuo::{eventually, require_ffmpeg, Child, H3Client, LOOPBACK};
use edge_node::upstream::rendezvous;
use edge_node::Edge;

/// An edge config on loopback with `origins` upstream, trusting `ca`; `upstream` adds keys
/// to its `[upstream]` section.
fn edge_config(ca: &std::path::Path, upstream: &str, origins: &[&OriginSpec]) -> conf::EdgeConfig {
    let mut text = format!(
        "{LOOPBACK}[upstream]\nca = {:?}\n{upstream}\nprobe_interval_ms = 200\n\
         connect_timeout_ms = 500\n",
        ca.display().to_string()
    );
    for o in origins {
        text.push_str(&o.toml());
    }
    let mut config = conf::EdgeConfig::from_toml(&text).expect("valid edge config");
    config.events.state_dir = daihuo::state_dir();
    config
}

const H3: &str = "protocol = \"h3\"";

/// A part the client played: when it arrived, its numbers, its decode time.
#[derive(Debug)]
struct Played {
    at: Instant,
    msn: u64,
    index: u32,
    tfdt: u64,
}

/// Plays `rendition` of `demo` like an LL-HLS client until `stop` is set (or `until`, a
/// generous deadline): a blocking reload for the part its last playlist hinted at, then every
/// part listed since, in order, counting them into `progress`. Returns the parts and the
/// playlist errors (status, when, body), asserting on the way that EXT-X-MEDIA-SEQUENCE never
/// goes backwards.
async fn play(
    h3: &H3Client,
    rendition: &str,
    until: Instant,
    progress: &AtomicUsize,
    stop: &AtomicBool,
) -> (Vec<Played>, Vec<String>) {
    let started = Instant::now();
    let base = format!("/live/demo/{rendition}");
    let first = h3.get(&format!("{base}/index.m3u8")).await.unwrap();
    assert_eq!(first.status, 200);
    let first = String::from_utf8(first.body.to_vec()).unwrap();
    let mut next = preload_hint(&first).expect("a preload hint");
    let mut sequence = media_sequence(&first).unwrap();
    let mut played: Vec<Played> = Vec::new();
    let mut errors = Vec::new();
    while Instant::now() < until && !stop.load(Ordering::Acquire) {
        let (m, p) = next;
        let reply = h3
            .get(&format!("{base}/index.m3u8?_HLS_msn={m}&_HLS_part={p}"))
            .await
            .unwrap();
        if reply.status != 200 {
            // Counted, not fatal: the edge retries the backup itself, so none are expected.
            errors.push(format!(
                "{:?} after start, asking {m}.{p}: {} {}",
                started.elapsed(),
                reply.status,
                String::from_utf8_lossy(&reply.body).trim()
            ));
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        }
        let playlist = String::from_utf8(reply.body.to_vec()).unwrap();
        let seq = media_sequence(&playlist).unwrap();
        assert!(
            seq >= sequence,
            "media sequence went back: {sequence} -> {seq}"
        );
        sequence = seq;
        let hint = preload_hint(&playlist)
            .unwrap_or_else(|| panic!("no preload hint (did the stream end?) in\n{playlist}"));
        let listed: Vec<(u64, u32)> = tags(&playlist, "#EXT-X-PART:")
            .into_iter()
            .filter_map(|t| part_numbers(attr(t, "URI")?))
            .filter(|&n| n >= next && n < hint)
            .collect();
        // The hinted part itself, or (when its segment ended first) the next segment's first.
        assert!(
            !listed.is_empty(),
            "nothing new after {next:?} in\n{playlist}"
        );
        for (msn, index) in listed {
            let part = h3
                .get(&format!("{base}/part{msn}.{index}.m4s"))
                .await
                .unwrap();
            assert_eq!(part.status, 200, "part {msn}.{index}");
            played.push(Played {
                at: Instant::now(),
                msn,
                index,
                tfdt: tfdt(&part.body),
            });
            progress.store(played.len(), Ordering::Release);
        }
        next = hint;
    }
    (played, errors)
}

/// Two origins, an edge relaying to them (`upstream` adds `[upstream]` keys), ffmpeg
/// publishing `live/demo` to the edge for `seconds`, and an HTTP/3 client of the edge that has
/// seen the stream start.
pub(crate) struct Tiers {
    pub(crate) dir: tempfile::TempDir,
    der: rustls::pki_types::CertificateDer<'static>,
    pub(crate) specs: [OriginSpec; 2],
    /// The origins' processes; taking one out kills it (SIGKILL to its group).
    pub(crate) procs: Vec<Option<Child>>,
    pub(crate) edge: Edge,
    push: Child,
    h3: H3Client,
    /// The video rendition's name.
    video: String,
    /// Indices into `specs` of the room's primary and backup.
    primary: usize,
    backup: usize,
}

impl Tiers {
    /// The encoder pushes for 300 s, far longer than any test here needs even on a loaded
    /// machine (`play_through_kill` is bounded at 120 s), so a slow set-up never sees the
    /// stream end; the push is killed when the test ends.
    pub(crate) async fn start(upstream: &str) -> Self {
        require_ffmpeg();
        let dir = tempfile::tempdir().unwrap();
        let (cert, key, der) = certificate(dir.path());
        let specs = [OriginSpec::new("origin-a"), OriginSpec::new("origin-b")];
        let procs = specs
            .iter()
            .map(|s| Some(s.start(dir.path(), &cert, &key)))
            .collect();
        let edge = Edge::start(&edge_config(&cert, upstream, &[&specs[0], &specs[1]]))
            .await
            .expect("edge starts");
        let up = edge.upstream.clone().expect("tier mode");
        eventually(30, async || {
            up.origins().iter().all(|o| o.is_up()).then_some(())
        })
        .await;
        let names = [specs[0].name.as_str(), specs[1].name.as_str()];
        let order = rendezvous::rank(&names, "demo");
        let srt = format!(
            "srt://{}?streamid=#!::r=live/demo,m=publish&linger=2",
            edge.addrs.srt
        );
        let push = Child::spawn(&mut ffmpeg_push(640, 360, 300, &srt)).expect("spawn ffmpeg");
        let h3 = H3Client::connect(edge.addrs.http3.unwrap(), &edge.certificate())
            .await
            .unwrap();
        let multivariant = eventually(20, async || {
            let r = h3.get("/live/demo/index.m3u8").await.ok()?;
            (r.status == 200).then(|| String::from_utf8(r.body.to_vec()).unwrap())
        })
        .await;
        let video = segments(&multivariant)[0]
            .strip_suffix("/index.m3u8")
            .unwrap()
            .to_string();
        Self {
            dir,
            der,
            specs,
            procs,
            edge,
            push,
            h3,
            video,
            primary: order[0],
            backup: order[1],
        }
    }

    /// Plays the video rendition, killing the origin serving the room (its primary, unless
    /// the backup answered first at the start: hot standby feeds both, and a room stays where
    /// it is served) once `before` parts played, and playing on until `after` more did. Counted in parts, not seconds, so a loaded machine
    /// slows the test down instead of failing it; 120 s bound the whole. Returns the parts
    /// played, the playlist errors and when the kill happened; panics, saying what the
    /// origins and the edge hold ([`Tiers::diagnose`]), when fewer than `before` parts played
    /// before the kill.
    async fn play_through_kill(
        &mut self,
        before: usize,
        after: usize,
    ) -> (Vec<Played>, Vec<String>, Instant) {
        let mut taken = std::mem::take(&mut self.procs);
        let this = &*self;
        let deadline = Instant::now() + Duration::from_secs(120);
        let (progress, stop) = (AtomicUsize::new(0), AtomicBool::new(false));
        let player = play(&this.h3, &this.video, deadline, &progress, &stop);
        let upstream = this.edge.upstream.clone().expect("tier mode");
        let serving = |procs: &mut Vec<Option<Child>>| {
            let name = upstream.serving("demo");
            let index = this
                .specs
                .iter()
                .position(|s| Some(&s.name) == name.as_ref());
            procs[index.unwrap_or(this.primary)].take()
        };
        let procs = &mut taken;
        let reached = async |n: usize| {
            while progress.load(Ordering::Acquire) < n && Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        let killer = async {
            reached(before).await;
            // Seen before the kill changes it.
            let stuck = match progress.load(Ordering::Acquire) < before {
                true => Some(this.diagnose().await),
                false => None,
            };
            // SIGKILL to the origin's process group: no goodbye on any socket.
            drop(serving(procs));
            let killed = Instant::now();
            reached(progress.load(Ordering::Acquire) + after).await;
            stop.store(true, Ordering::Release);
            (killed, stuck)
        };
        let ((played, errors), (killed, stuck)) = tokio::join!(player, killer);
        if let Some(state) = stuck {
            panic!(
                "{} parts before the kill; {} playlist requests failed: {errors:#?}\n{state}",
                played.len(),
                errors.len()
            );
        }
        self.procs = taken;
        (played, errors, killed)
    }

    /// What the origins and the edge hold now, for a failure message: each origin's log and
    /// the tail of its playlists (asked directly), the edge's relay and upstream metrics.
    async fn diagnose(&self) -> String {
        let mut out = String::new();
        let wanted = |l: &&str| {
            [
                "daihuo_relay",
                "daihuo_upstream",
                "daihuo_ingest",
                "daihuo_srt",
                "daihuo_publish",
            ]
            .iter()
            .any(|p| l.starts_with(p))
                && !l.contains("_bucket")
        };
        for s in &self.specs {
            out.push_str(&format!("== {}\n{}", s.name, s.log(self.dir.path())));
            if let Ok((200, body)) = daihuo::peers::curl(&format!("http://{}/metrics", s.admin)) {
                for line in String::from_utf8_lossy(&body).lines().filter(wanted) {
                    out.push_str(line);
                    out.push('\n');
                }
            }
            let Ok(client) = H3Client::connect(s.api, &self.der).await else {
                out.push_str("(no connection)\n");
                continue;
            };
            for rendition in ["audio", self.video.as_str()] {
                let path = format!("/live/demo/{rendition}/index.m3u8");
                match client.get(&path).await {
                    Ok(r) => {
                        let text = String::from_utf8_lossy(&r.body).into_owned();
                        let lines: Vec<&str> = text.lines().collect();
                        let tail = lines[lines.len().saturating_sub(6)..].join("\n");
                        out.push_str(&format!("{path}: {}\n{tail}\n", r.status));
                    }
                    Err(e) => out.push_str(&format!("{path}: {e}\n")),
                }
            }
        }
        let metrics = self.edge.metrics.render();
        out.push_str("== edge\n");
        for line in metrics.lines().filter(wanted) {
            out.push_str(line);
            out.push('\n');
        }
        out
    }

    /// The streamer's session to the edge never noticed: same session, still sending.
    fn assert_streamer_unaffected(&mut self) {
        assert!(self.push.0.try_wait().unwrap().is_none(), "ffmpeg stopped");
        assert_eq!(metric(&self.edge.metrics, "daihuo_publishes_total"), 1.0);
        assert_eq!(metric(&self.edge.metrics, "daihuo_streams_live"), 1.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn primary_origin_killed_mid_stream() {
    let mut t = Tiers::start("protocol = \"h2\"").await;
    let (edge, h3) = (&t.edge, &t.h3);
    // Both origins package the stream (hot standby) and number it alike.
    let mut origin_playlists = Vec::new();
    for s in &t.specs {
        let origin = H3Client::connect(s.api, &t.der).await.unwrap();
        let text = eventually(15, async || {
            let r = origin.get("/live/demo/audio/index.m3u8").await.ok()?;
            let t = String::from_utf8(r.body.to_vec()).ok()?;
            (r.status == 200 && segments(&t).len() >= 2).then_some(t)
        })
        .await;
        origin_playlists.push(text);
    }
    let seg_of = |t: &str, uri: &str| segments(t).contains(&uri);
    let common = segments(&origin_playlists[0])
        .into_iter()
        .filter(|s| seg_of(&origin_playlists[1], s))
        .count();
    assert!(
        common >= 1,
        "origins disagree on segment numbers:\n{origin_playlists:?}"
    );
    // The same media has the same program date-time and init segment name on both origins:
    // the clock was stamped once, at the edge.
    let dated = |t: &str| -> Vec<(String, String)> {
        let mut date = String::new();
        let mut out = Vec::new();
        for line in t.lines() {
            if let Some(d) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
                date = d.to_string();
            } else if line.starts_with("seg") {
                out.push((line.to_string(), date.clone()));
            }
        }
        out
    };
    let (a, b) = (dated(&origin_playlists[0]), dated(&origin_playlists[1]));
    let both: Vec<_> = a.iter().filter(|s| b.iter().any(|o| o.0 == s.0)).collect();
    assert!(!both.is_empty());
    for seg in both {
        assert!(
            b.contains(seg),
            "origins date {} differently:\n{origin_playlists:?}",
            seg.0
        );
    }
    let map = |t: &str| {
        tags(t, "#EXT-X-MAP:")
            .first()
            .and_then(|m| attr(m, "URI"))
            .map(str::to_string)
    };
    let init = map(&origin_playlists[0]).expect("a map");
    assert!(
        init.starts_with("init-") && init.ends_with(".mp4"),
        "{init}"
    );
    assert_eq!(map(&origin_playlists[1]), Some(init.clone()));

    // 200 concurrent viewers of one audio segment, its parts and the init segment: exactly one
    // upstream fetch per object, the other 199 askers served from that fetch or the cache.
    let audio = String::from_utf8(
        h3.get("/live/demo/audio/index.m3u8")
            .await
            .unwrap()
            .body
            .to_vec(),
    )
    .unwrap();
    let segs = segments(&audio);
    let seg = segs[segs.len() - 2];
    let msn: u64 = seg[3..seg.len() - 4].parse().unwrap();
    // Immutable objects only: `init.mp4` (the current init segment's alias) lives a second in
    // the cache by design, so under load a late asker may fetch it again.
    let mut objects = vec![init.clone(), seg.to_string()];
    objects.extend(
        tags(&audio, "#EXT-X-PART:")
            .into_iter()
            .filter_map(|t| attr(t, "URI"))
            .filter(|u| part_numbers(u).is_some_and(|(m, _)| m == msn))
            .map(str::to_string),
    );
    // The playlist fetch above prefetches its hinted part: ask for it too, which waits for
    // that fetch (it coalesces with it), so it is counted before, not during, what follows.
    let (m, p) = preload_hint(&audio).unwrap();
    let hinted = h3
        .get(&format!("/live/demo/audio/part{m}.{p}.m4s"))
        .await
        .unwrap();
    assert_eq!(hinted.status, 200);
    let fetches = "daihuo_upstream_fetches_total";
    let before = metric(&edge.metrics, fetches);
    let cert = edge.certificate();
    let clients: Vec<H3Client> = futures::future::join_all(
        (0..50).map(|_| H3Client::connect(edge.addrs.http3.unwrap(), &cert)),
    )
    .await
    .into_iter()
    .map(Result::unwrap)
    .collect();
    let viewers = (0..200).map(|v| {
        let client = &clients[v % clients.len()];
        let objects = &objects;
        async move {
            let mut bodies = Vec::new();
            for o in objects {
                let r = client.get(&format!("/live/demo/audio/{o}")).await.unwrap();
                assert_eq!(r.status, 200, "{o}");
                bodies.push(r.body);
            }
            bodies
        }
    });
    let seen = futures::future::join_all(viewers).await;
    assert!(
        seen.iter().all(|b| *b == seen[0]),
        "viewers got different bytes"
    );
    assert_eq!(
        metric(&edge.metrics, fetches) - before,
        objects.len() as f64,
        "upstream fetches for {} objects and 200 viewers",
        objects.len()
    );
    // An init segment by its own name never changes; the fixed name is the current one.
    let named = h3.get(&format!("/live/demo/audio/{init}")).await.unwrap();
    assert_eq!(
        named.headers["cache-control"],
        "public, max-age=300, immutable"
    );
    let current = h3.get("/live/demo/audio/init.mp4").await.unwrap();
    assert_eq!(current.headers["cache-control"], "max-age=1");
    assert_eq!(named.body, current.body);
    // One upstream blocking playlist request for 200 viewers asking for the same next part.
    let playlist_fetches = "daihuo_upstream_playlist_fetches_total";
    let before = metric(&edge.metrics, playlist_fetches);
    let blocking = (0..200).map(|v| {
        let client = &clients[v % clients.len()];
        async move {
            let path = format!("/live/demo/audio/index.m3u8?_HLS_msn={m}&_HLS_part={p}");
            client.get(&path).await.unwrap().status
        }
    });
    let statuses = futures::future::join_all(blocking).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(metric(&edge.metrics, playlist_fetches) - before, 1.0);
    drop(clients);

    // Play, kill the primary once 5 parts played, play 30 parts more.
    let (played, errors, killed) = t.play_through_kill(5, 30).await;
    let edge = &t.edge;

    let before_kill = played.iter().filter(|p| p.at < killed).count();
    let after_kill = played.len() - before_kill;
    assert!(before_kill >= 5, "{before_kill} parts before the kill");
    assert!(after_kill >= 15, "only {after_kill} parts after the kill");
    for w in played.windows(2) {
        let (a, b) = (&w[0], &w[1]);
        assert!((b.msn, b.index) > (a.msn, a.index), "{a:?} then {b:?}");
        // Continuous media: each part starts where the previous ended (parts are 1/3 s; a
        // missing or repeated part would show as a jump or a step back of the decode time).
        let step = b.tfdt.saturating_sub(a.tfdt);
        assert!(
            step > 0 && step <= 36_000,
            "decode time jumps {step} ticks from {a:?} to {b:?}"
        );
    }
    let stall = played.windows(2).map(|w| w[1].at - w[0].at).max().unwrap();
    let switch = played
        .iter()
        .find(|p| p.at >= killed)
        .map(|p| p.at - killed)
        .unwrap();
    // Recorded, not asserted (the machine is shared): the longest wait between two parts,
    // and from the kill to the first part after it.
    println!(
        "failover: longest wait between parts {stall:?}, first part {switch:?} after the kill, \
         {} playlist errors, {} parts played",
        errors.len(),
        played.len()
    );
    assert!(metric(&edge.metrics, "daihuo_upstream_failovers_total") >= 1.0);
    assert!(
        errors.is_empty(),
        "the client saw errors during the failover: {errors:#?}"
    );
    t.assert_streamer_unaffected();
    t.edge.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn origins_down_at_start_changed_by_config_and_all_down_over_h3() {
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, _) = certificate(dir.path());
    let a = OriginSpec::new("origin-a");
    let b = OriginSpec::new("origin-b");
    let admin = |edge: &Edge| format!("http://{}/readyz", edge.addrs.admin);
    let get = async |url: &str| -> (u16, String) {
        let (status, body) = daihuo::peers::curl(url).unwrap();
        (status, String::from_utf8_lossy(&body).into_owned())
    };

    // Origin unreachable at start: the edge starts, is not ready, and says why.
    let edge = Edge::start(&edge_config(&cert, H3, &[&a]))
        .await
        .expect("edge starts");
    let play = format!("http://{}/live/demo/index.m3u8", edge.addrs.http.unwrap());
    tokio::time::sleep(Duration::from_millis(500)).await;
    let (status, body) = get(&admin(&edge)).await;
    assert_eq!(
        (status, body.lines().next()),
        (503, Some("no origin is reachable"))
    );
    assert!(body.contains("scale: "), "{body}");
    let (status, body) = get(&play).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no origin is reachable"), "{body}");

    // It comes up: ready, and its answers pass through (no such stream: 404).
    let mut proc_a = Some(a.start(dir.path(), &cert, &key));
    eventually(30, async || {
        (get(&admin(&edge)).await.0 == 200).then_some(())
    })
    .await;
    let (status, body) = get(&play).await;
    assert_eq!(status, 404, "{body}");

    // The origin list changes by configuration: b replaces a.
    let proc_b = b.start(dir.path(), &cert, &key);
    let upstream = edge.upstream.clone().unwrap();
    upstream.set_origins(&edge_config(&cert, H3, &[&b]).upstream.origins);
    drop(proc_a.take());
    eventually(30, async || {
        let up = upstream.origins();
        (up.len() == 1 && up[0].peer.name == "origin-b" && up[0].is_up()).then_some(())
    })
    .await;
    assert_eq!(get(&admin(&edge)).await.0, 200);

    // All origins down: a clear 503 on playback and readiness; recovery when one returns.
    drop(proc_b);
    eventually(10, async || {
        (get(&admin(&edge)).await.0 == 503).then_some(())
    })
    .await;
    let (status, body) = get(&play).await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("no origin is reachable"), "{body}");
    let _proc_b = b.start(dir.path(), &cert, &key);
    eventually(30, async || {
        (get(&admin(&edge)).await.0 == 200).then_some(())
    })
    .await;
    assert_eq!(get(&play).await.0, 404);
    assert!(metric(&edge.metrics, "daihuo_upstream_up{origin=\"origin-b\"}") == 1.0);
    edge.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_standby_relay_moves_to_the_next_origin() {
    let mut t = Tiers::start("standby = \"cold\"").await;
    // Cold: only the primary receives the stream.
    let to_backup = H3Client::connect(t.specs[t.backup].api, &t.der)
        .await
        .unwrap();
    let status = to_backup.get("/live/demo/index.m3u8").await.unwrap().status;
    assert_eq!(status, 404, "the backup has the stream before any failure");

    let (played, errors, killed) = t.play_through_kill(4, 30).await;

    // The relay moved to the backup, which packages from then on; the client goes on.
    let status = to_backup.get("/live/demo/index.m3u8").await.unwrap().status;
    assert_eq!(status, 200, "the relay did not move to the backup");
    let after_kill: Vec<&Played> = played.iter().filter(|p| p.at >= killed).collect();
    assert!(
        after_kill.len() >= 10,
        "only {} parts after the kill",
        after_kill.len()
    );
    for w in played.windows(2) {
        assert!((w[1].msn, w[1].index) > (w[0].msn, w[0].index), "{w:?}");
        assert!(w[1].tfdt > w[0].tfdt, "decode time went back: {w:?}");
    }
    // Recorded, not asserted: a cold backup starts at the next keyframe after the relay
    // reached it, so the client waits and skips that much media.
    let stall = played.windows(2).map(|w| w[1].at - w[0].at).max().unwrap();
    let skipped = played
        .windows(2)
        .map(|w| w[1].tfdt - w[0].tfdt)
        .max()
        .unwrap();
    println!(
        "cold failover: longest wait between parts {stall:?}, largest media step {:.2} s, \
         {} playlist errors",
        skipped as f64 / 90_000.0,
        errors.len()
    );
    t.assert_streamer_unaffected();
    assert_eq!(metric(&t.edge.metrics, "daihuo_relay_connects_total"), 2.0);
    t.edge.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_room_is_taken_over_across_edges_only_when_configured() {
    require_ffmpeg();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, _) = certificate(dir.path());
    // Origins trust relayed takeovers only from edges that hold the SRT passphrase.
    let secret = "edges-share-this-passphrase";
    let spec = OriginSpec::new("origin-a").with_srt(&format!("passphrase = {secret:?}"));
    let _origin = spec.start(dir.path(), &cert, &key);
    let edge = |takeover| {
        let upstream = format!("srt_passphrase = {secret:?}\nstandby = \"cold\"");
        let mut config = edge_config(&cert, &upstream, &[&spec]);
        config.srt.publish_auth = conf::PublishAuth::Key;
        config
            .srt
            .stream_keys
            .insert("demo".into(), "demo-stream-key-1234".into());
        config.srt.takeover = takeover;
        async move { Edge::start(&config).await.expect("edge starts") }
    };
    let (a, b, c) = (edge(false).await, edge(false).await, edge(true).await);
    let keyed = |edge: &Edge| {
        format!(
            "srt://{}?streamid=#!::r=live/demo,m=publish,s=demo-stream-key-1234",
            edge.addrs.srt
        )
    };
    let origin_metric = |name: &str| {
        let (_, text) = daihuo::peers::curl(&format!("http://{}/metrics", spec.admin)).unwrap();
        daihuo::daemons::sample(&String::from_utf8_lossy(&text), name)
    };
    let mut first = Child::spawn(&mut ffmpeg_push(320, 180, 90, &keyed(&a))).unwrap();
    // The room's media playlist, as seen through edge C (pulled from the origin).
    let http = c.addrs.http.unwrap();
    let media = eventually(20, async || {
        let (status, body) =
            daihuo::peers::curl(&format!("http://{http}/live/demo/index.m3u8")).ok()?;
        let multivariant = String::from_utf8(body).ok().filter(|_| status == 200)?;
        Some(format!(
            "http://{http}/live/demo/{}",
            segments(&multivariant).first()?
        ))
    })
    .await;
    let live = eventually(20, async || newest_part(&media)).await;

    // Edge B allows no takeover: its encoder is let in, but the origin refuses its relay
    // as a conflict, so B ends that publish (ffmpeg exits long before its 90 s); the first
    // encoder is undisturbed.
    let mut second = Child::spawn(&mut ffmpeg_push(320, 180, 90, &keyed(&b))).unwrap();
    let ended = eventually(30, async || second.0.try_wait().unwrap()).await;
    println!("second encoder, at an edge without takeover: {ended}");
    assert!(
        first.0.try_wait().unwrap().is_none(),
        "the live publisher was disturbed"
    );
    assert_eq!(origin_metric("daihuo_publishes_total"), 1.0);
    eventually(10, async || newest_part(&media).filter(|n| *n > live)).await;

    // Edge C allows takeover: its newer publish replaces the first at the origin, and edge
    // A, refused from then on, ends the first encoder's publish.
    let _third = Child::spawn(&mut ffmpeg_push(320, 180, 90, &keyed(&c))).unwrap();
    let ended = eventually(30, async || first.0.try_wait().unwrap()).await;
    println!("first encoder, after a takeover at another edge: {ended}");
    assert_eq!(origin_metric("daihuo_publishes_total"), 2.0);
    let after = newest_part(&media).unwrap_or(live);
    eventually(15, async || newest_part(&media).filter(|n| *n > after)).await;
    assert_eq!(metric(&a.metrics, "daihuo_streams_live"), 0.0);
    assert_eq!(metric(&c.metrics, "daihuo_streams_live"), 1.0);
    assert_eq!(origin_metric("daihuo_streams_live"), 1.0);
    for edge in [a, b, c] {
        edge.shutdown(Duration::from_secs(2)).await;
    }
}

/// A room's viewer count on its live feed is the total over every edge: two edges, a viewer
/// at each, and the feed at either says 2 (each edge reports its count to the room's origin,
/// which answers the total).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_are_counted_over_every_edge() {
    require_ffmpeg();
    let dir = tempfile::tempdir().unwrap();
    let (cert, key, _) = certificate(dir.path());
    let spec = OriginSpec::new("origin-a");
    let _origin = spec.start(dir.path(), &cert, &key);
    let a = Edge::start(&edge_config(&cert, H3, &[&spec]))
        .await
        .unwrap();
    let b = Edge::start(&edge_config(&cert, H3, &[&spec]))
        .await
        .unwrap();
    for edge in [&a, &b] {
        let up = edge.upstream.clone().unwrap();
        eventually(30, async || {
            up.origins().iter().all(|o| o.is_up()).then_some(())
        })
        .await;
    }
    let srt = format!("srt://{}?streamid=#!::r=live/demo,m=publish", a.addrs.srt);
    let _push = Child::spawn(&mut ffmpeg_push(320, 180, 60, &srt)).unwrap();
    // One viewer at each edge, reloading the playlist as players do: over HTTP/3, one
    // connection each (a viewer is a client connection that got a playlist).
    let mut viewers = Vec::new();
    for edge in [&a, &b] {
        let client = H3Client::connect(edge.addrs.http3.unwrap(), &edge.certificate())
            .await
            .unwrap();
        eventually(30, async || {
            let r = client.get("/live/demo/index.m3u8").await.ok()?;
            (r.status == 200).then_some(())
        })
        .await;
        viewers.push(client);
    }
    let watching = tokio::spawn(async move {
        loop {
            for v in &viewers {
                let _ = v.get("/live/demo/index.m3u8").await;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    });
    // The feed at edge B, for a few report intervals: its viewers events reach 2.
    let feed = format!("http://{}/live/demo/events", b.addrs.http.unwrap());
    let counts = tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new("curl")
            .args(["-sN", "--max-time", "12", &feed])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.strip_prefix("data: {\"count\":"))
            .filter_map(|l| l.strip_suffix('}')?.parse::<u64>().ok())
            .collect::<Vec<u64>>()
    })
    .await
    .unwrap();
    watching.abort();
    println!("viewers on edge B's feed: {counts:?}");
    assert!(counts.contains(&2), "no total of 2 in {counts:?}");
    assert!(counts.iter().all(|c| *c <= 2), "{counts:?}");
}
