//! Reading LL-HLS playlists the way a low-latency player does: the multivariant playlist's
//! variants and audio renditions, and a media playlist's segments, parts, preload hint and
//! program date-times.

/// The value of attribute `name` in a tag's attribute list (quotes removed).
pub fn attr<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let (_, mut rest) = line.split_once(':')?;
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], q[end + 1..].trim_start_matches(','))
        } else {
            after.split_once(',').unwrap_or((after, ""))
        };
        if key.trim() == name {
            return Some(value);
        }
        rest = next;
    }
    None
}

/// A variant of a multivariant playlist.
#[derive(Debug, Clone, PartialEq)]
pub struct Variant {
    pub uri: String,
    pub bandwidth: u64,
    /// The URI of its audio rendition, when its audio is apart.
    pub audio: Option<String>,
}

/// The variants of a multivariant playlist, in its order.
pub fn variants(text: &str) -> Vec<Variant> {
    let audio_uri = |group: &str| {
        text.lines()
            .filter(|l| l.starts_with("#EXT-X-MEDIA:"))
            .find(|l| attr(l, "TYPE") == Some("AUDIO") && attr(l, "GROUP-ID") == Some(group))
            .and_then(|l| attr(l, "URI"))
            .map(str::to_string)
    };
    let mut out = Vec::new();
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        if !line.starts_with("#EXT-X-STREAM-INF:") {
            continue;
        }
        let Some(uri) = lines.by_ref().map(str::trim).find(|l| !l.is_empty()) else {
            break;
        };
        out.push(Variant {
            uri: uri.to_string(),
            bandwidth: attr(line, "BANDWIDTH")
                .and_then(|b| b.parse().ok())
                .unwrap_or(0),
            audio: attr(line, "AUDIO").and_then(audio_uri),
        });
    }
    out
}

/// Where a piece of media sits: its segment's media sequence number and, for a part, its
/// index in that segment.
pub type Key = (u64, Option<u32>);

/// A part or a whole segment, what a player loads.
#[derive(Debug, Clone, PartialEq)]
pub struct Chunk {
    pub key: Key,
    pub uri: String,
    pub duration: f64,
    pub independent: bool,
    /// The capture time of its first frame (seconds since the Unix epoch), from the segment's
    /// `EXT-X-PROGRAM-DATE-TIME`.
    pub date: Option<f64>,
    /// The init segment it needs (`EXT-X-MAP`).
    pub map: Option<String>,
}

/// A media playlist.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Media {
    pub part_target: Option<f64>,
    pub part_hold_back: Option<f64>,
    pub target_duration: f64,
    /// What a player can load, oldest first: parts where the playlist lists them, else whole
    /// segments.
    pub chunks: Vec<Chunk>,
    /// Complete segments' numbers (their URI line is listed).
    pub last_complete: Option<u64>,
    pub preload_hint: Option<String>,
    pub ended: bool,
}

/// Parses `YYYY-MM-DDTHH:MM:SS(.fff)(Z|+HH:MM)` into seconds since the Unix epoch.
pub fn parse_date(s: &str) -> Option<f64> {
    let (date, time) = s.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>());
    let (y, m, day) = (d.next()?.ok()?, d.next()?.ok()?, d.next()?.ok()?);
    let (clock, offset) = match time.find(['Z', '+', '-']) {
        Some(i) => (&time[..i], &time[i..]),
        None => (time, "Z"),
    };
    let mut c = clock.split(':');
    let (h, min) = (
        c.next()?.parse::<i64>().ok()?,
        c.next()?.parse::<i64>().ok()?,
    );
    let sec: f64 = c.next()?.parse().ok()?;
    let offset_secs = match offset {
        "Z" | "" => 0,
        o => {
            let sign = if o.starts_with('-') { -1 } else { 1 };
            let (oh, om) = o[1..]
                .split_once(':')
                .unwrap_or((&o[1..3.min(o.len())], "0"));
            sign * (oh.parse::<i64>().ok()? * 3600 + om.parse::<i64>().ok()? * 60)
        }
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + h * 3600 + min * 60 - offset_secs) as f64 + sec)
}

fn number(line: &str) -> Option<f64> {
    line.split_once(':')?
        .1
        .split(',')
        .next()?
        .trim()
        .parse()
        .ok()
}

/// Parses a media playlist.
pub fn media(text: &str) -> Media {
    let mut out = Media::default();
    let mut msn = 0u64;
    let mut map: Option<String> = None;
    let mut date: Option<f64> = None;
    // Parts of the segment being read, and their total duration so far.
    let mut parts: Vec<Chunk> = Vec::new();
    let mut in_segment = 0.0;
    let mut duration = 0.0;
    for line in text.lines().map(str::trim) {
        if let Some(rest) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            msn = rest.parse().unwrap_or(0);
        } else if line.starts_with("#EXT-X-TARGETDURATION:") {
            out.target_duration = number(line).unwrap_or(0.0);
        } else if line.starts_with("#EXT-X-PART-INF:") {
            out.part_target = attr(line, "PART-TARGET").and_then(|v| v.parse().ok());
        } else if line.starts_with("#EXT-X-SERVER-CONTROL:") {
            out.part_hold_back = attr(line, "PART-HOLD-BACK").and_then(|v| v.parse().ok());
        } else if line.starts_with("#EXT-X-SKIP:") {
            let skipped: u64 = attr(line, "SKIPPED-SEGMENTS")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            msn += skipped;
        } else if line.starts_with("#EXT-X-MAP:") {
            map = attr(line, "URI").map(str::to_string);
        } else if let Some(rest) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            date = parse_date(rest);
        } else if line.starts_with("#EXT-X-PART:") {
            let d: f64 = attr(line, "DURATION")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0.0);
            let index = u32::try_from(parts.len()).unwrap_or(u32::MAX);
            parts.push(Chunk {
                key: (msn, Some(index)),
                uri: attr(line, "URI").unwrap_or_default().to_string(),
                duration: d,
                independent: attr(line, "INDEPENDENT") == Some("YES"),
                date: date.map(|t| t + in_segment),
                map: map.clone(),
            });
            in_segment += d;
        } else if line.starts_with("#EXTINF:") {
            duration = number(line).unwrap_or(0.0);
        } else if line.starts_with("#EXT-X-PRELOAD-HINT:") {
            if attr(line, "TYPE") == Some("PART") {
                out.preload_hint = attr(line, "URI").map(str::to_string);
            }
        } else if line == "#EXT-X-ENDLIST" {
            out.ended = true;
        } else if !line.is_empty() && !line.starts_with('#') {
            // A complete segment: its parts where listed, else itself.
            if parts.is_empty() {
                out.chunks.push(Chunk {
                    key: (msn, None),
                    uri: line.to_string(),
                    duration,
                    // Segments start with an independent frame (DESIGN's media rules).
                    independent: true,
                    date,
                    map: map.clone(),
                });
            } else {
                out.chunks.append(&mut parts);
            }
            out.last_complete = Some(msn);
            msn += 1;
            date = date.map(|t| t + duration);
            in_segment = 0.0;
        }
    }
    out.chunks.append(&mut parts);
    out
}

impl Media {
    /// The chunk after `key`, if this playlist lists it.
    pub fn after(&self, key: Key) -> Option<&Chunk> {
        let (msn, part) = key;
        let next_part = part.and_then(|p| self.find((msn, Some(p + 1))));
        let segment_done = self.last_complete.is_some_and(|c| c >= msn);
        next_part.or_else(|| {
            segment_done
                .then(|| {
                    self.find((msn + 1, Some(0)))
                        .or_else(|| self.find((msn + 1, None)))
                })
                .flatten()
        })
    }

    fn find(&self, key: Key) -> Option<&Chunk> {
        self.chunks.iter().find(|c| c.key == key)
    }

    /// The `_HLS_msn`/`_HLS_part` query of a blocking reload for what follows `key`.
    pub fn blocking_query(key: Key) -> String {
        match key {
            (msn, Some(p)) => format!("_HLS_msn={msn}&_HLS_part={}", p + 1),
            (msn, None) => format!("_HLS_msn={}&_HLS_part=0", msn + 1),
        }
    }

    /// Where a low-latency player starts: the independent chunk at or before `hold_back`
    /// seconds from the live edge (the part hold-back, or three target durations).
    pub fn start(&self) -> Option<&Chunk> {
        let hold_back = self.part_hold_back.unwrap_or(3.0 * self.target_duration);
        let mut from_edge = 0.0;
        let mut target = None;
        for (i, c) in self.chunks.iter().enumerate().rev() {
            from_edge += c.duration;
            if from_edge >= hold_back {
                target = Some(i);
                break;
            }
        }
        let target = target.unwrap_or(0);
        self.chunks[..=target.min(self.chunks.len().checked_sub(1)?)]
            .iter()
            .rev()
            .find(|c| c.independent)
            .or(self.chunks.first())
    }

    /// The media time of the live edge past `key`'s start: what is listed from it on.
    pub fn listed_from(&self, key: Key) -> f64 {
        self.chunks
            .iter()
            .skip_while(|c| c.key != key)
            .map(|c| c.duration)
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIVE: &str = "#EXTM3U
#EXT-X-TARGETDURATION:2
#EXT-X-VERSION:9
#EXT-X-SERVER-CONTROL:CAN-BLOCK-RELOAD=YES,PART-HOLD-BACK=1.002,CAN-SKIP-UNTIL=12.0
#EXT-X-PART-INF:PART-TARGET=0.334
#EXT-X-MEDIA-SEQUENCE:7
#EXT-X-MAP:URI=\"init-ab.mp4\"
#EXT-X-PROGRAM-DATE-TIME:2026-12-01T10:00:00.000Z
#EXTINF:2.000,
seg7.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-12-01T10:00:02.000Z
#EXT-X-PART:DURATION=0.334,URI=\"part8.0.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.333,URI=\"part8.1.m4s\"
#EXT-X-PART:DURATION=0.333,URI=\"part8.2.m4s\"
#EXT-X-PART:DURATION=0.334,URI=\"part8.3.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.333,URI=\"part8.4.m4s\"
#EXT-X-PART:DURATION=0.333,URI=\"part8.5.m4s\"
#EXTINF:2.000,
seg8.m4s
#EXT-X-PROGRAM-DATE-TIME:2026-12-01T10:00:04.000Z
#EXT-X-PART:DURATION=0.334,URI=\"part9.0.m4s\",INDEPENDENT=YES
#EXT-X-PART:DURATION=0.333,URI=\"part9.1.m4s\"
#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part9.2.m4s\"
";

    #[test]
    fn a_live_playlist_lists_segments_parts_and_the_hint() {
        let m = media(LIVE);
        assert_eq!(m.part_hold_back, Some(1.002));
        assert_eq!(m.part_target, Some(0.334));
        assert_eq!(m.last_complete, Some(8));
        assert_eq!(m.preload_hint.as_deref(), Some("part9.2.m4s"));
        let keys: Vec<Key> = m.chunks.iter().map(|c| c.key).collect();
        assert_eq!(keys[0], (7, None));
        assert_eq!(keys[1], (8, Some(0)));
        assert_eq!(*keys.last().unwrap(), (9, Some(1)));
        let p83 = m.chunks.iter().find(|c| c.key == (8, Some(3))).unwrap();
        assert!(
            (p83.date.unwrap() - (parse_date("2026-12-01T10:00:02Z").unwrap() + 1.0)).abs() < 1e-6
        );
        assert_eq!(p83.map.as_deref(), Some("init-ab.mp4"));
        // What follows: the next part, across a segment's end, and nothing yet past the edge.
        assert_eq!(m.after((8, Some(5))).unwrap().key, (9, Some(0)));
        assert_eq!(m.after((7, None)).unwrap().key, (8, Some(0)));
        assert!(m.after((9, Some(1))).is_none());
        assert_eq!(
            Media::blocking_query((9, Some(1))),
            "_HLS_msn=9&_HLS_part=2"
        );
        // A 1 s hold-back starts at the independent part at or before it: part 8.3.
        assert_eq!(m.start().unwrap().key, (8, Some(3)));
    }

    #[test]
    fn dates_and_variants_are_read() {
        assert_eq!(parse_date("1970-01-01T00:00:01.5Z"), Some(1.5));
        assert_eq!(parse_date("2000-03-01T00:00:00+01:00"), Some(951_865_200.0));
        let text = "#EXTM3U
#EXT-X-MEDIA:TYPE=AUDIO,GROUP-ID=\"aac\",NAME=\"audio\",DEFAULT=YES,URI=\"audio/index.m3u8\"
#EXT-X-STREAM-INF:BANDWIDTH=3000000,CODECS=\"avc1.64001f,mp4a.40.2\",AUDIO=\"aac\"
720p/index.m3u8
#EXT-X-STREAM-INF:BANDWIDTH=1000000,AUDIO=\"aac\"
480p/index.m3u8
";
        let v = variants(text);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].uri, "720p/index.m3u8");
        assert_eq!(v[0].bandwidth, 3_000_000);
        assert_eq!(v[1].audio.as_deref(), Some("audio/index.m3u8"));
    }
}
