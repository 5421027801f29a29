//! Reading LL-HLS playlists in tests: tags, attributes, segment and part URIs.

/// The value of `ATTR=` in a tag line (quotes removed).
pub fn attr<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let (_, rest) = line.split_once(':')?;
    let mut rest = rest;
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let (value, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], q[end + 1..].trim_start_matches(','))
        } else {
            match after.split_once(',') {
                Some((v, n)) => (v, n),
                None => (after, ""),
            }
        };
        if key == name {
            return Some(value);
        }
        rest = next;
    }
    None
}

/// Lines starting with `tag`.
pub fn tags<'a>(playlist: &'a str, tag: &str) -> Vec<&'a str> {
    playlist.lines().filter(|l| l.starts_with(tag)).collect()
}

/// Segment URIs (non-tag, non-empty lines).
pub fn segments(playlist: &str) -> Vec<&str> {
    playlist
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect()
}

/// `EXT-X-MEDIA-SEQUENCE`.
pub fn media_sequence(playlist: &str) -> Option<u64> {
    tags(playlist, "#EXT-X-MEDIA-SEQUENCE:")
        .first()?
        .split_once(':')?
        .1
        .parse()
        .ok()
}

/// The (msn, part) of the `EXT-X-PRELOAD-HINT` URI `partN.K.m4s`.
pub fn preload_hint(playlist: &str) -> Option<(u64, u32)> {
    let line = tags(playlist, "#EXT-X-PRELOAD-HINT:").into_iter().next()?;
    part_numbers(attr(line, "URI")?)
}

/// The newest (msn, part) of the media playlist at `url` (plain HTTP, fetched with curl),
/// once it answers 200.
pub fn newest_part(url: &str) -> Option<(u64, u32)> {
    let (status, body) = crate::peers::curl(url).ok()?;
    (status == 200).then_some(())?;
    preload_hint(&String::from_utf8_lossy(&body))
}

/// (msn, part) of a `partN.K.m4s` URI.
pub fn part_numbers(uri: &str) -> Option<(u64, u32)> {
    let (m, k) = uri
        .strip_prefix("part")?
        .strip_suffix(".m4s")?
        .split_once('.')?;
    Some((m.parse().ok()?, k.parse().ok()?))
}

/// The decode time (`tfdt`) of a part or segment, in its track's timescale.
pub fn tfdt(fragment: &[u8]) -> u64 {
    let at = fragment
        .windows(4)
        .position(|w| w == b"tfdt")
        .expect("fragment has a tfdt");
    let body = &fragment[at + 4..];
    if body[0] == 1 {
        u64::from_be_bytes(body[4..12].try_into().expect("a 64-bit tfdt"))
    } else {
        u64::from(u32::from_be_bytes(
            body[4..8].try_into().expect("a 32-bit tfdt"),
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes() {
        let l = r#"#EXT-X-PART:DURATION=0.33334,URI="part5.2.m4s",INDEPENDENT=YES"#;
        assert_eq!(attr(l, "DURATION"), Some("0.33334"));
        assert_eq!(attr(l, "URI"), Some("part5.2.m4s"));
        assert_eq!(attr(l, "INDEPENDENT"), Some("YES"));
        assert_eq!(attr(l, "GAP"), None);
        assert_eq!(part_numbers("part5.2.m4s"), Some((5, 2)));
    }
}
