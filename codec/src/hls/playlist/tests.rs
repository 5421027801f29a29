//! Media playlist state and text.

use super::*;

const NOW_MS: i64 = 1_700_000_000_000; // 2023-11-14T22:13:20.000Z
const HALF: Duration = Duration::from_millis(500);

fn options(window: usize) -> PlaylistOptions {
    PlaylistOptions {
        target_duration: Duration::from_secs(2),
        part_target: HALF,
        window,
    }
}

/// The program date-time of part `index` of segment `msn`: 2 s segments from `NOW_MS`.
fn start(msn: u64, index: u32) -> i64 {
    NOW_MS + msn as i64 * 2000 + i64::from(index) * 500
}

/// Push `parts` half-second parts of segment `msn`, ending it when `complete`.
fn segment(pl: &mut MediaPlaylist, msn: u64, parts: u32, complete: bool) {
    for i in 0..parts {
        pl.push_part(msn, i, HALF, i == 0, start(msn, i));
    }
    if complete {
        pl.end_segment(msn, HALF * parts);
    }
}

fn block(msn: Option<u64>, part: Option<u32>) -> BlockingRequest {
    BlockingRequest {
        msn,
        part,
        skip: SkipRequest::No,
    }
}

#[test]
fn exact_text() {
    let mut pl = MediaPlaylist::new(options(3));
    segment(&mut pl, 10, 4, true);
    segment(&mut pl, 11, 4, true);
    segment(&mut pl, 12, 2, false);
    let reports = [RenditionReport {
        uri: "../audio/index.m3u8".into(),
        last_msn: 12,
        last_part: 3,
    }];
    let want = "#EXTM3U
#EXT-X-VERSION:9
#EXT-X-TARGETDURATION:2
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.50000,CAN-SKIP-UNTIL=12.0,CAN-SKIP-DATERANGES=YES
#EXT-X-PART-INF:PART-TARGET=0.50000
#EXT-X-MEDIA-SEQUENCE:10
#EXT-X-INDEPENDENT-SEGMENTS
#EXT-X-MAP:URI=\"init.mp4\"
#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:40.000Z
#EXT-X-PART:DURATION=0.50000,URI=\"part10.0.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.50000,URI=\"part10.1.m4s\"
#EXT-X-PART:DURATION=0.50000,URI=\"part10.2.m4s\"
#EXT-X-PART:DURATION=0.50000,URI=\"part10.3.m4s\"
#EXTINF:2.00000,
seg10.m4s
#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:42.000Z
#EXT-X-PART:DURATION=0.50000,URI=\"part11.0.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.50000,URI=\"part11.1.m4s\"
#EXT-X-PART:DURATION=0.50000,URI=\"part11.2.m4s\"
#EXT-X-PART:DURATION=0.50000,URI=\"part11.3.m4s\"
#EXTINF:2.00000,
seg11.m4s
#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:44.000Z
#EXT-X-PART:DURATION=0.50000,URI=\"part12.0.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.50000,URI=\"part12.1.m4s\"
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part12.2.m4s\"
#EXT-X-RENDITION-REPORT:URI=\"../audio/index.m3u8\",LAST-MSN=12,LAST-PART=3
";
    assert_eq!(pl.render(SkipRequest::No, &reports), want);
    assert_eq!(pl.last_part(), Some((12, 1)));
    assert_eq!(pl.next_part(), Some((12, 2)));
}

#[test]
fn default_targets_round_up() {
    let mut pl = MediaPlaylist::new(PlaylistOptions::default());
    pl.push_part(0, 0, Duration::from_nanos(333_333_333), true, NOW_MS);
    let text = pl.render(SkipRequest::No, &[]);
    assert!(text.contains("PART-HOLD-BACK=1.00002,"), "{text}");
    assert!(
        text.contains("#EXT-X-PART-INF:PART-TARGET=0.33334\n"),
        "{text}"
    );
    assert!(text.contains("#EXT-X-PART:DURATION=0.33333,URI=\"part0.0.m4s\",INDEPENDENT=YES\n"));
    assert!(
        text.contains("#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:13:20.000Z\n"),
        "{text}"
    );
}

#[test]
fn empty_playlist() {
    let pl = MediaPlaylist::new(PlaylistOptions::default());
    let text = pl.render(SkipRequest::Yes, &[]);
    assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:0\n"));
    assert!(!text.contains("PRELOAD-HINT"));
    assert_eq!(pl.last_part(), None);
    assert_eq!(pl.oldest_msn(), None);
    assert_eq!(pl.check_blocking(&block(Some(0), Some(0))), Blocking::Wait);
}

#[test]
fn window_trimming() {
    let mut pl = MediaPlaylist::new(options(3));
    for msn in 0..6 {
        segment(&mut pl, msn, 4, true);
    }
    assert_eq!(pl.oldest_msn(), Some(3));
    assert!(!pl.has_segment(2));
    assert!(!pl.has_part(2, 0));
    assert!(pl.has_segment(3));
    assert!(pl.has_part(5, 3));
    assert!(!pl.has_part(5, 4));
    let text = pl.render(SkipRequest::No, &[]);
    assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:3\n"));
    assert_eq!(text.matches("#EXTINF").count(), 3);
    assert!(text.ends_with("#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part6.0.m4s\"\n"));
}

#[test]
fn parts_only_in_the_last_three_target_durations() {
    let mut pl = MediaPlaylist::new(options(10));
    for msn in 0..6 {
        segment(&mut pl, msn, 4, true);
    }
    segment(&mut pl, 6, 1, false);
    // Total 12.5 s: segments ending after 6.5 s keep their parts (msn 3, 4, 5 and the open 6).
    let text = pl.render(SkipRequest::No, &[]);
    for msn in 0..3 {
        assert!(!text.contains(&format!("part{msn}.")), "{msn}: {text}");
        assert!(text.contains(&format!("seg{msn}.m4s")));
    }
    for msn in 3..6 {
        assert!(text.contains(&format!("URI=\"part{msn}.3.m4s\"")), "{msn}");
    }
    assert!(text.contains("URI=\"part6.0.m4s\",INDEPENDENT=YES"));
}

#[test]
fn skip_boundary() {
    let mut pl = MediaPlaylist::new(options(10));
    for msn in 0..10 {
        segment(&mut pl, msn, 4, true);
    }
    segment(&mut pl, 10, 1, false);
    // Total 20.5 s, CAN-SKIP-UNTIL 12 s: segments ending by 8.5 s (msn 0..=3) are skipped.
    let text = pl.render(SkipRequest::Yes, &[]);
    assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:0\n"));
    assert!(text.contains(
        "#EXT-X-MAP:URI=\"init.mp4\"\n#EXT-X-SKIP:SKIPPED-SEGMENTS=4\n#EXT-X-PROGRAM-DATE-TIME"
    ));
    assert!(!text.contains("seg3.m4s"));
    assert!(text.contains("seg4.m4s"));
    let v2 = pl.render(SkipRequest::V2, &[]);
    assert!(v2.contains("#EXT-X-SKIP:SKIPPED-SEGMENTS=4,RECENTLY-REMOVED-DATERANGES=\"\"\n"));
    // The full playlist has no skip.
    assert!(!pl.render(SkipRequest::No, &[]).contains("EXT-X-SKIP"));

    // Too short to skip anything: no EXT-X-SKIP tag at all.
    let mut short = MediaPlaylist::new(options(10));
    for msn in 0..6 {
        segment(&mut short, msn, 4, true);
    }
    assert!(!short.render(SkipRequest::Yes, &[]).contains("EXT-X-SKIP"));
}

#[test]
fn discontinuity_sequence() {
    let mut pl = MediaPlaylist::new(options(2));
    segment(&mut pl, 0, 4, true);
    segment(&mut pl, 1, 2, false);
    pl.mark_discontinuity(); // closes segment 1 with its two parts
    assert!(pl.has_segment(1));
    pl.push_part(7, 0, HALF, true, NOW_MS + 60_000);
    let text = pl.render(SkipRequest::No, &[]);
    assert!(!text.contains("DISCONTINUITY-SEQUENCE"));
    assert!(text.contains("#EXTINF:1.00000,\nseg1.m4s\n#EXT-X-DISCONTINUITY\n#EXT-X-PROGRAM-DATE-TIME:2023-11-14T22:14:20.000Z\n"), "{text}");
    pl.end_segment(7, HALF);
    segment(&mut pl, 8, 4, true);
    // Window [7, 8]: segment 7 still carries the tag.
    let text = pl.render(SkipRequest::No, &[]);
    assert!(!text.contains("DISCONTINUITY-SEQUENCE"));
    assert!(text.contains("#EXT-X-DISCONTINUITY\n"));
    segment(&mut pl, 9, 4, true);
    // Segment 7 and its tag slid out.
    let text = pl.render(SkipRequest::No, &[]);
    assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"));
    assert!(!text.contains("#EXT-X-DISCONTINUITY\n"));
    assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:8\n"));
}

#[test]
fn program_date_time_is_the_first_parts_time() {
    let mut pl = MediaPlaylist::new(options(5));
    pl.push_part(0, 0, HALF, true, NOW_MS);
    pl.push_part(0, 1, HALF, false, NOW_MS + 500);
    pl.end_segment(0, HALF * 2);
    pl.push_part(1, 0, HALF, true, NOW_MS + 1000);
    let text = pl.render(SkipRequest::No, &[]);
    let dates: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:"))
        .collect();
    assert_eq!(
        dates,
        ["2023-11-14T22:13:20.000Z", "2023-11-14T22:13:21.000Z"]
    );
}

#[test]
fn each_init_segment_has_its_map_where_it_starts() {
    let mut pl = MediaPlaylist::new(options(5));
    pl.set_map("init-a.mp4");
    segment(&mut pl, 0, 4, true);
    segment(&mut pl, 1, 4, true);
    // Re-published with new parameter sets: a discontinuity and another init segment.
    pl.mark_discontinuity();
    pl.set_map("init-b.mp4");
    segment(&mut pl, 2, 2, false);
    let text = pl.render(SkipRequest::No, &[]);
    let maps: Vec<&str> = text
        .lines()
        .filter(|l| {
            l.starts_with("#EXT-X-MAP") || l.starts_with("seg") || l.starts_with("#EXT-X-DISC")
        })
        .collect();
    assert_eq!(
        maps,
        [
            "#EXT-X-MAP:URI=\"init-a.mp4\"",
            "seg0.m4s",
            "seg1.m4s",
            "#EXT-X-DISCONTINUITY",
            "#EXT-X-MAP:URI=\"init-b.mp4\"",
        ]
    );
    let maps: Vec<&str> = pl.maps().collect();
    assert_eq!(
        maps,
        ["init-a.mp4", "init-a.mp4", "init-b.mp4", "init-b.mp4"]
    );
    // Once the old segments slid out, the header names the new one.
    for msn in 3..8 {
        segment(&mut pl, msn, 4, true);
    }
    let text = pl.render(SkipRequest::No, &[]);
    assert_eq!(text.matches("#EXT-X-MAP:").count(), 1, "{text}");
    assert!(text.contains("#EXT-X-MAP:URI=\"init-b.mp4\"\n"), "{text}");
}

#[test]
fn blocking_requests() {
    let mut pl = MediaPlaylist::new(options(5));
    segment(&mut pl, 10, 4, true);
    segment(&mut pl, 11, 2, false);
    let cases = [
        (None, None, Blocking::Ready),
        (Some(3), None, Blocking::Ready),
        (Some(10), None, Blocking::Ready),
        (Some(11), None, Blocking::Wait),
        (Some(13), None, Blocking::Wait),
        (Some(14), None, Blocking::TooFar),
        (Some(10), Some(3), Blocking::Ready),
        (Some(10), Some(9), Blocking::Ready),
        (Some(11), Some(1), Blocking::Ready),
        (Some(11), Some(2), Blocking::Wait),
        // Advance Part Limit: 3 / 0.5 s = 6 parts ahead of (11, 1).
        (Some(11), Some(7), Blocking::Wait),
        (Some(11), Some(8), Blocking::TooFar),
        (Some(12), Some(0), Blocking::Wait),
        (Some(12), Some(4), Blocking::TooFar),
        (Some(13), Some(0), Blocking::TooFar),
        (Some(u64::MAX), Some(u32::MAX), Blocking::TooFar),
    ];
    for (msn, part, want) in cases {
        assert_eq!(
            pl.check_blocking(&block(msn, part)),
            want,
            "{msn:?} {part:?}"
        );
    }
    pl.end_segment(11, HALF * 2);
    // Segment 11 ended after part 1: part 2 of it never comes; the next segment answers it.
    assert_eq!(pl.check_blocking(&block(Some(11), None)), Blocking::Ready);
    assert_eq!(pl.check_blocking(&block(Some(11), Some(2))), Blocking::Wait);
    assert_eq!(pl.next_part(), Some((12, 0)));
    pl.push_part(12, 0, HALF, true, NOW_MS);
    assert_eq!(
        pl.check_blocking(&block(Some(11), Some(2))),
        Blocking::Ready
    );
    assert_eq!(
        pl.check_blocking(&block(Some(12), Some(0))),
        Blocking::Ready
    );
}

#[test]
fn ended_playlist() {
    let mut pl = MediaPlaylist::new(options(5));
    segment(&mut pl, 0, 4, true);
    segment(&mut pl, 1, 1, false);
    pl.set_ended();
    assert!(pl.is_ended());
    assert!(pl.has_segment(1));
    assert_eq!(pl.next_part(), None);
    let text = pl.render(SkipRequest::No, &[]);
    assert!(!text.contains("PRELOAD-HINT"));
    assert!(
        text.ends_with("#EXTINF:0.50000,\nseg1.m4s\n#EXT-X-ENDLIST\n"),
        "{text}"
    );
    assert_eq!(pl.check_blocking(&block(Some(9), Some(9))), Blocking::Ready);
}

#[test]
fn stale_and_repeated_parts_are_ignored() {
    let mut pl = MediaPlaylist::new(options(5));
    segment(&mut pl, 3, 2, false);
    pl.push_part(3, 1, HALF, false, NOW_MS); // repeat
    pl.push_part(2, 0, HALF, true, NOW_MS); // older segment
    pl.push_part(4, 0, HALF, true, NOW_MS); // newer segment closes 3
    pl.end_segment(3, HALF); // already closed: ignored
    assert!(pl.has_segment(3));
    assert_eq!(pl.last_part(), Some((4, 0)));
    let text = pl.render(SkipRequest::No, &[]);
    assert!(text.contains("#EXTINF:1.00000,\nseg3.m4s\n"));
    assert_eq!(text.matches("part3.1.m4s").count(), 1);
}

#[test]
fn target_duration_covers_long_segments_and_dependent_starts() {
    let mut pl = MediaPlaylist::new(options(5));
    pl.push_part(0, 0, Duration::from_millis(4600), false, NOW_MS);
    pl.end_segment(0, Duration::from_millis(4600));
    let text = pl.render(SkipRequest::No, &[]);
    assert!(text.contains("#EXT-X-TARGETDURATION:5\n"));
    assert!(text.contains("CAN-SKIP-UNTIL=30.0"));
    assert!(!text.contains("INDEPENDENT-SEGMENTS"));
}

#[test]
fn dates() {
    assert_eq!(DateTime(0).to_string(), "1970-01-01T00:00:00.000Z");
    assert_eq!(DateTime(-1).to_string(), "1969-12-31T23:59:59.999Z");
    assert_eq!(
        DateTime(951_782_400_123).to_string(),
        "2000-02-29T00:00:00.123Z"
    );
    assert_eq!(
        DateTime(4_107_542_400_000).to_string(),
        "2100-03-01T00:00:00.000Z"
    );
    assert_eq!(DateTime(NOW_MS).to_string(), "2023-11-14T22:13:20.000Z");
}
