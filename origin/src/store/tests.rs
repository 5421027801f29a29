//! Store behaviour with virtual time: blocking requests are woken by publishes (not timers),
//! time out after three target durations, and refuse what is too far ahead.

use std::time::Duration;

use bytes::Bytes;
use codec::hls::query::{self, BlockingRequest};
use codec::hls::segmenter::Part;
use codec::TrackConfig;

use super::*;

/// The HTTP status a store error is answered with.
trait Status {
    fn status(&self) -> u16;
}

impl Status for StoreError {
    fn status(&self) -> u16 {
        crate::ApiError::from(self.clone()).status()
    }
}

const PART: Duration = Duration::from_millis(500);

/// Room `demo`'s media playlist of `rendition`, as text.
async fn playlist(
    store: &Store,
    rendition: &str,
    request: &BlockingRequest,
) -> Result<String, StoreError> {
    let bytes = store.media_playlist("demo", rendition, request).await?;
    Ok(String::from_utf8(bytes.to_vec()).expect("a playlist is text"))
}

fn store() -> Arc<Store> {
    Store::new(StoreOptions {
        segment_target: Duration::from_secs(2),
        part_target: PART,
        window: 5,
        linger: Duration::from_secs(60),
    })
}

fn audio() -> TrackConfig {
    TrackConfig::Aac {
        asc: Bytes::from_static(&[0x11, 0x90]),
        object_type: 2,
        sample_rate: 48_000,
        channels: 2,
    }
}

fn part(msn: u64, index: u32) -> Part {
    Part {
        msn,
        index,
        duration: PART,
        independent: true,
        start_dts: 0,
        time: 0,
        bytes: Bytes::from(format!("part {msn}.{index}")),
    }
}

fn blocking(q: &str) -> BlockingRequest {
    query::parse(q).expect("valid query")
}

/// Publishes four parts (one segment) of `audio` starting at the store's first msn.
fn publish_segment(p: &Publication, msn: u64) {
    for i in 0..4 {
        p.push_part("audio", part(msn, i));
    }
    p.end_segment("audio", msn, PART * 4);
}

#[tokio::test(start_paused = true)]
async fn blocking_reload_is_woken_by_the_publish() {
    let store = store();
    let p = store.publish("demo").unwrap();
    let msn = msn_of(p.set_rendition("audio", audio(), Bytes::from_static(b"init")));
    p.push_part("audio", part(msn, 0));

    let q = blocking(&format!("_HLS_msn={msn}&_HLS_part=1"));
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move { playlist(&store, "audio", &q).await })
    };
    let part_waiter = {
        let store = store.clone();
        tokio::spawn(async move {
            store
                .object("demo", "audio", Object::Part { msn, index: 1 })
                .await
        })
    };
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!waiter.is_finished() && !part_waiter.is_finished());
    let start = tokio::time::Instant::now();
    p.push_part("audio", part(msn, 1));
    let text = waiter.await.unwrap().unwrap();
    assert!(text.contains(&format!("part{msn}.1.m4s")), "{text}");
    assert_eq!(
        part_waiter.await.unwrap().unwrap(),
        Bytes::from(format!("part {msn}.1"))
    );
    // Answered by the wake-up itself: no virtual time passed.
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn readers_of_one_revision_share_one_render_and_any_change_renders_anew() {
    let store = store();
    let p = store.publish("demo").unwrap();
    let a = msn_of(p.set_rendition("audio", audio(), Bytes::from_static(b"init")));
    let b = msn_of(p.set_rendition("dub", audio(), Bytes::from_static(b"init-dub")));
    p.push_part("audio", part(a, 0));
    p.push_part("dub", part(b, 0));
    let whole = BlockingRequest::default();
    let get = async |request: &BlockingRequest| {
        store
            .media_playlist("demo", "audio", request)
            .await
            .unwrap()
    };
    let first = get(&whole).await;
    // The same bytes, not a copy, for every reader until something changes.
    assert_eq!(get(&whole).await.as_ptr(), first.as_ptr());
    let delta = get(&blocking("_HLS_skip=YES")).await;
    assert_ne!(delta.as_ptr(), first.as_ptr());
    assert_eq!(get(&whole).await.as_ptr(), first.as_ptr());
    // A part of another rendition changes this one's rendition report.
    p.push_part("dub", part(b, 1));
    let after = String::from_utf8(get(&whole).await.to_vec()).unwrap();
    assert!(
        after.contains(&format!("dub/index.m3u8\",LAST-MSN={b},LAST-PART=1")),
        "{after}"
    );
    assert!(!String::from_utf8_lossy(&first).contains("LAST-PART=1"));
    // And a part of its own is in the next render.
    p.push_part("audio", part(a, 1));
    let own = String::from_utf8(get(&whole).await.to_vec()).unwrap();
    assert!(own.contains(&format!("part{a}.1.m4s")), "{own}");
}

#[tokio::test(start_paused = true)]
async fn blocking_requests_time_out_after_three_target_durations() {
    let store = store();
    let p = store.publish("demo").unwrap();
    let msn = msn_of(p.set_rendition("audio", audio(), Bytes::from_static(b"init")));
    p.push_part("audio", part(msn, 0));
    let start = tokio::time::Instant::now();
    let q = blocking(&format!("_HLS_msn={msn}&_HLS_part=1"));
    let err = playlist(&store, "audio", &q).await.unwrap_err();
    assert_eq!(err.status(), 503);
    assert_eq!(start.elapsed(), Duration::from_secs(6));
}

#[tokio::test(start_paused = true)]
async fn too_far_ahead_and_unknown_things_are_refused_at_once() {
    let store = store();
    let p = store.publish("demo").unwrap();
    let msn = msn_of(p.set_rendition("audio", audio(), Bytes::from_static(b"init")));
    p.push_part("audio", part(msn, 0));
    let start = tokio::time::Instant::now();
    let far = blocking(&format!("_HLS_msn={}", msn + 10));
    let err = playlist(&store, "audio", &far).await.unwrap_err();
    assert_eq!(err.status(), 400);
    let not_hinted = Object::Part { msn, index: 3 };
    assert_eq!(
        store
            .object("demo", "audio", not_hinted)
            .await
            .unwrap_err()
            .status(),
        404
    );
    assert_eq!(
        store
            .object("demo", "video", Object::Init { id: None })
            .await
            .unwrap_err()
            .status(),
        404
    );
    assert_eq!(
        store.multivariant("nobody").await.unwrap_err().status(),
        404
    );
    assert_eq!(start.elapsed(), Duration::ZERO);
}

#[tokio::test(start_paused = true)]
async fn segments_are_their_parts_and_leave_with_the_window() {
    let store = store();
    let p = store.publish("demo").unwrap();
    let first = msn_of(p.set_rendition("audio", audio(), Bytes::from_static(b"init")));
    for msn in first..first + 8 {
        publish_segment(&p, msn);
    }
    let last = first + 7;
    let seg = store
        .object("demo", "audio", Object::Segment { msn: last })
        .await
        .unwrap();
    let expected: String = (0..4).map(|i| format!("part {last}.{i}")).collect();
    assert_eq!(seg, Bytes::from(expected));
    // Window of 5: the first segments are gone, and so are old parts.
    let gone = Object::Segment { msn: first };
    assert_eq!(
        store
            .object("demo", "audio", gone)
            .await
            .unwrap_err()
            .status(),
        404
    );
    let old_part = Object::Part {
        msn: first,
        index: 0,
    };
    assert_eq!(
        store
            .object("demo", "audio", old_part)
            .await
            .unwrap_err()
            .status(),
        404
    );
}

#[tokio::test(start_paused = true)]
async fn republish_continues_numbering_after_a_discontinuity() {
    let store = store();
    let p = store.publish("demo").unwrap();
    assert_eq!(store.publish("demo").err().map(|e| e.status()), Some(409));
    let first = msn_of(p.set_rendition("audio", audio(), Bytes::from_static(b"init")));
    publish_segment(&p, first);
    drop(p);

    // Ended: ENDLIST, and a blocking request is answered at once.
    let q = blocking(&format!("_HLS_msn={}", first + 1));
    let ended = playlist(&store, "audio", &q).await.unwrap();
    assert!(ended.contains("#EXT-X-ENDLIST"), "{ended}");

    let p = store.publish("demo").unwrap();
    let next = msn_of(p.set_rendition("audio", audio(), Bytes::from_static(b"init2")));
    assert_eq!(next, first + 1);
    p.push_part("audio", part(next, 0));
    let live = playlist(&store, "audio", &BlockingRequest::default())
        .await
        .unwrap();
    assert!(live.contains("#EXT-X-DISCONTINUITY"), "{live}");
    assert!(!live.contains("#EXT-X-ENDLIST"), "{live}");
    assert_eq!(
        store
            .object("demo", "audio", Object::Init { id: None })
            .await
            .unwrap(),
        Bytes::from_static(b"init2")
    );
    // Each initialization has its own name, and the playlist maps each segment to its own:
    // the old segment still to `init`, the new one to `init2`. Both are served by name.
    let (old, new) = (init_id(b"init"), init_id(b"init2"));
    assert_ne!(old, new);
    let maps: Vec<&str> = live
        .lines()
        .filter_map(|l| l.strip_prefix("#EXT-X-MAP:URI="))
        .collect();
    assert_eq!(
        maps,
        [
            format!("\"{}\"", init_name(old)),
            format!("\"{}\"", init_name(new))
        ]
    );
    for (id, bytes) in [(old, &b"init"[..]), (new, &b"init2"[..])] {
        let got = store.object("demo", "audio", Object::Init { id: Some(id) });
        assert_eq!(got.await.unwrap(), Bytes::copy_from_slice(bytes));
    }
    // Once the old segment left the window, so did its init segment.
    for msn in next..next + 6 {
        publish_segment(&p, msn);
    }
    let gone = store.object("demo", "audio", Object::Init { id: Some(old) });
    assert_eq!(gone.await.unwrap_err().status(), 404);
    // The same bytes always get the same name: on every origin, after every restart.
    assert_eq!(init_name(init_id(b"init2")), init_name(new));
    assert_eq!(init_name(0xff), "init-00000000000000ff.mp4");
}

fn video_360p() -> TrackConfig {
    TrackConfig::H264 {
        sps: Bytes::new(),
        pps: Bytes::new(),
        width: 640,
        height: 360,
        profile: 100,
        constraints: 0,
        level: 30,
    }
}

/// The number a segmenter told `first` gives a first segment in timeline slot 0.
fn msn_of(first: FirstMsn) -> u64 {
    match first {
        FirstMsn::Timeline { at_least } | FirstMsn::Exactly(at_least) => at_least,
    }
}

#[tokio::test(start_paused = true)]
async fn numbers_come_from_the_timeline_above_what_the_room_used() {
    let store = store();
    let p = store.publish("demo").unwrap();
    let first = p.set_rendition("audio", audio(), Bytes::from_static(b"init"));
    assert_eq!(first, FirstMsn::Timeline { at_least: 0 });
    publish_segment(&p, 7);
    drop(p);
    let p = store.publish("demo").unwrap();
    // The rendition in the playlist goes on; a new one starts above every used number.
    let audio_again = p.set_rendition("audio", audio(), Bytes::from_static(b"init2"));
    assert_eq!(audio_again, FirstMsn::Exactly(8));
    let video = video_360p();
    let new = p.set_rendition("360p", video, Bytes::from_static(b"v"));
    assert_eq!(new, FirstMsn::Timeline { at_least: 8 });
}

#[tokio::test(start_paused = true)]
async fn multivariant_waits_for_every_rendition() {
    let store = store();
    let p = store.publish("demo").unwrap();
    let msn = msn_of(p.set_rendition("audio", audio(), Bytes::from_static(b"a")));
    let video = video_360p();
    p.set_rendition("360p", video, Bytes::from_static(b"v"));
    p.push_part("360p", part(msn, 0));
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move { store.multivariant("demo").await })
    };
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(!waiter.is_finished(), "audio has no part yet");
    p.push_part("audio", part(msn, 0));
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(
        !waiter.is_finished(),
        "the video's frame rate is not measured yet"
    );
    let start = tokio::time::Instant::now();
    p.set_frame_rate("360p", 30.0);
    let text = waiter.await.unwrap().unwrap();
    assert_eq!(start.elapsed(), Duration::ZERO, "woken by the measurement");
    assert!(text.contains("FRAME-RATE=30.000"), "{text}");
    assert!(text.contains("RESOLUTION=640x360"), "{text}");
    assert!(text.contains("GROUP-ID=\"audio\""), "{text}");
    assert!(text.contains("avc1.64001e,mp4a.40.2"), "{text}");
}

#[tokio::test(start_paused = true)]
async fn multivariant_waits_for_announced_rungs_then_serves_what_came() {
    let store = store();
    let p = store.publish("demo").unwrap();
    p.expect_renditions(&[planned("720p", 3_000_000, 2_500_000)]);
    let msn = msn_of(p.set_rendition("audio", audio(), Bytes::from_static(b"a")));
    p.push_part("audio", part(msn, 0));
    let waiter = {
        let store = store.clone();
        tokio::spawn(async move { store.multivariant("demo").await })
    };
    for _ in 0..10 {
        tokio::task::yield_now().await;
    }
    assert!(
        !waiter.is_finished(),
        "the 720p rung is still encoding its first frames"
    );
    // It never comes (shed under load): after the block timeout what has media is served.
    let start = tokio::time::Instant::now();
    let text = waiter.await.unwrap().unwrap();
    assert_eq!(start.elapsed(), Duration::from_secs(6));
    assert!(text.contains("audio/index.m3u8"), "{text}");
}

fn planned(name: &str, peak_bps: u64, average_bps: u64) -> Planned {
    Planned {
        name: name.to_string(),
        peak_bps,
        average_bps,
    }
}

fn video(height: u16) -> TrackConfig {
    TrackConfig::H264 {
        sps: Bytes::new(),
        pps: Bytes::new(),
        width: height / 9 * 16,
        height,
        profile: 100,
        constraints: 0,
        level: 40,
    }
}

/// The variants' URIs and BANDWIDTH values, in the order listed.
fn variants(text: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if let Some(attrs) = line.strip_prefix("#EXT-X-STREAM-INF:") {
            let bandwidth = attrs
                .split(',')
                .find_map(|a| a.strip_prefix("BANDWIDTH="))
                .and_then(|b| b.parse().ok())
                .unwrap_or(0);
            out.push((lines.next().unwrap_or("").to_string(), bandwidth));
        }
    }
    out
}

#[tokio::test(start_paused = true)]
async fn variants_are_listed_in_ladder_order_with_nominal_bitrates_until_measured() {
    let store = store();
    let p = store.publish("demo").unwrap();
    p.expect_renditions(&[
        planned("1080p", 5_400_000, 4_500_000),
        planned("720p", 3_000_000, 2_500_000),
        planned("480p", 1_200_000, 1_000_000),
    ]);
    // The rungs' encoders answer in another order than the ladder's (CI under load saw
    // 480p before 720p). Only the audio is measured then (its parts, "part M.0": 8 bytes).
    let mut low = 0;
    for (name, height) in [("480p", 480), ("1080p", 1080), ("720p", 720)] {
        let msn = msn_of(p.set_rendition(name, video(height), Bytes::from_static(b"v")));
        p.push_part(name, part(msn, 0));
        p.set_frame_rate(name, 30.0);
        if name == "480p" {
            low = msn;
        }
    }
    let msn = msn_of(p.set_rendition("audio", audio(), Bytes::from_static(b"a")));
    p.push_part("audio", part(msn, 0));
    let audio_bps = 8 * 8 * 2;
    let listed = variants(&store.multivariant("demo").await.unwrap());
    assert_eq!(
        listed,
        vec![
            ("1080p/index.m3u8".to_string(), 5_400_000 + audio_bps),
            ("720p/index.m3u8".to_string(), 3_000_000 + audio_bps),
            ("480p/index.m3u8".to_string(), 1_200_000 + audio_bps),
        ]
    );
    // A measured segment replaces the nominal figure; the order stays the ladder's.
    p.end_segment("480p", low, PART);
    let listed = variants(&store.multivariant("demo").await.unwrap());
    let names: Vec<&str> = listed.iter().map(|(u, _)| u.as_str()).collect();
    assert_eq!(
        names,
        ["1080p/index.m3u8", "720p/index.m3u8", "480p/index.m3u8"]
    );
    assert_eq!(listed[2].1, 8 * 8 * 2 + audio_bps);
}

#[tokio::test(start_paused = true)]
async fn a_publish_that_never_had_media_leaves_nothing_behind() {
    let store = store();
    for i in 0..1000 {
        drop(store.publish(&format!("refused{i}")).unwrap());
    }
    assert!(lock(&store.streams).is_empty());
    // One with media lingers (its ended playlist stays readable), then goes.
    let p = store.publish("demo").unwrap();
    let msn = msn_of(p.set_rendition("audio", audio(), Bytes::from_static(b"init")));
    publish_segment(&p, msn);
    drop(p);
    assert!(store.multivariant("demo").await.is_ok());
    tokio::time::sleep(Duration::from_secs(61)).await;
    assert!(store.stream("demo").is_err());
}
