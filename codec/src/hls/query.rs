//! The LL-HLS playlist request query: `_HLS_msn`, `_HLS_part` and `_HLS_skip`.
//!
//! [`parse`] reads the raw URL query string of a media playlist request (the part after `?`)
//! and returns what the client asked to block on and whether it wants a delta update. Every
//! error maps to HTTP 400, as RFC 8216bis 6.2.5.2 asks. Unknown parameters (tokens, cache
//! busters) are ignored. It never panics, whatever the input; `fuzz_targets/hls_query.rs`
//! checks that.

use std::str::FromStr;

/// `playlist` with `param` (`name=value`, already URL-safe) added to the query of every URI in
/// it: URI lines and `URI="..."` attributes (maps, parts, preload hints, rendition reports,
/// `EXT-X-MEDIA`). A player that cannot send cookies then carries a playback token on every
/// request it derives from this playlist.
pub fn carry(playlist: &str, param: &str) -> String {
    let param = super::quoted(param);
    let with = |uri: &str| {
        let sep = if uri.contains('?') { '&' } else { '?' };
        format!("{uri}{sep}{param}")
    };
    let mut out = String::with_capacity(playlist.len() + playlist.len() / 8);
    for line in playlist.lines() {
        if line.is_empty() {
        } else if !line.starts_with('#') {
            out.push_str(&with(line));
        } else {
            let mut rest = line;
            while let Some(at) = rest.find("URI=\"") {
                let (head, tail) = rest.split_at(at + 5);
                let Some(end) = tail.find('"') else { break };
                out.push_str(head);
                out.push_str(&with(&tail[..end]));
                rest = &tail[end..];
            }
            out.push_str(rest);
        }
        out.push('\n');
    }
    out
}

/// Name of the blocking media sequence number parameter.
const MSN: &str = "_HLS_msn";
/// Name of the blocking part index parameter.
const PART: &str = "_HLS_part";
/// Name of the delta update parameter.
const SKIP: &str = "_HLS_skip";

/// What a client asked for with `_HLS_skip` (RFC 8216bis 6.2.5.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum SkipRequest {
    /// No delta update: the whole playlist.
    #[default]
    No,
    /// `_HLS_skip=YES`: old segments may be replaced by `EXT-X-SKIP`.
    Yes,
    /// `_HLS_skip=v2`: as `Yes`, and date ranges may be skipped too.
    V2,
}

/// A parsed media playlist request query.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct BlockingRequest {
    /// `_HLS_msn`: hold the response until this media sequence number is available.
    pub msn: Option<u64>,
    /// `_HLS_part`: with `msn`, hold until this part index of that segment is available.
    pub part: Option<u32>,
    /// `_HLS_skip`: whether a delta update is wanted.
    pub skip: SkipRequest,
}

impl BlockingRequest {
    /// True when the request asks the server to hold the response (`_HLS_msn` present).
    pub fn is_blocking(&self) -> bool {
        self.msn.is_some()
    }
}

/// Why a playlist request query is invalid (answered with HTTP 400).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum QueryError {
    /// A numeric parameter is empty, signed, not decimal, or does not fit its type.
    #[error("{0} is not a valid unsigned integer")]
    InvalidNumber(&'static str),
    /// A parameter appears more than once.
    #[error("duplicate parameter {0}")]
    Duplicate(&'static str),
    /// `_HLS_part` given without `_HLS_msn`.
    #[error("_HLS_part without _HLS_msn")]
    PartWithoutMsn,
    /// `_HLS_skip` with a value other than `YES` or `v2`.
    #[error("_HLS_skip must be YES or v2")]
    InvalidSkip,
}

/// Parse a raw query string such as `_HLS_msn=12&_HLS_part=3&token=abc`.
///
/// A leading `?` is accepted. Parameters are split on `&` and the first `=`; names are matched
/// exactly (case-sensitive, not percent-decoded), so an encoded name counts as unknown.
pub fn parse(query: &str) -> Result<BlockingRequest, QueryError> {
    let query = query.strip_prefix('?').unwrap_or(query);
    let mut msn = None;
    let mut part = None;
    let mut skip = None;
    for pair in query.split('&') {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        match name {
            MSN => set_once(&mut msn, MSN, number::<u64>(MSN, value)?)?,
            PART => set_once(&mut part, PART, number::<u32>(PART, value)?)?,
            SKIP => {
                let value = match value {
                    "YES" => SkipRequest::Yes,
                    "v2" => SkipRequest::V2,
                    _ => return Err(QueryError::InvalidSkip),
                };
                set_once(&mut skip, SKIP, value)?;
            }
            _ => {}
        }
    }
    if part.is_some() && msn.is_none() {
        return Err(QueryError::PartWithoutMsn);
    }
    Ok(BlockingRequest {
        msn,
        part,
        skip: skip.unwrap_or_default(),
    })
}

/// Store `value` in `slot`, or fail if the parameter was already given.
fn set_once<T>(slot: &mut Option<T>, name: &'static str, value: T) -> Result<(), QueryError> {
    if slot.is_some() {
        return Err(QueryError::Duplicate(name));
    }
    *slot = Some(value);
    Ok(())
}

/// A decimal unsigned integer made of ASCII digits only (no sign, no spaces).
fn number<T: FromStr>(name: &'static str, value: &str) -> Result<T, QueryError> {
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(QueryError::InvalidNumber(name));
    }
    value.parse().map_err(|_| QueryError::InvalidNumber(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(q: &str) -> BlockingRequest {
        parse(q).expect("valid query")
    }

    #[test]
    fn empty_and_unknown() {
        assert_eq!(ok(""), BlockingRequest::default());
        assert_eq!(ok("?"), BlockingRequest::default());
        assert_eq!(ok("token=abc&&x"), BlockingRequest::default());
        assert!(!ok("token=abc").is_blocking());
    }

    #[test]
    fn full_request() {
        let r = ok("?_HLS_msn=273&_HLS_part=2&_HLS_skip=YES&sig=a%3Db");
        assert_eq!(
            r,
            BlockingRequest {
                msn: Some(273),
                part: Some(2),
                skip: SkipRequest::Yes
            }
        );
        assert!(r.is_blocking());
        assert_eq!(ok("_HLS_skip=v2").skip, SkipRequest::V2);
        assert_eq!(ok("_HLS_msn=18446744073709551615").msn, Some(u64::MAX));
        assert_eq!(ok("_HLS_msn=007").msn, Some(7));
    }

    #[test]
    fn part_without_msn() {
        assert_eq!(parse("_HLS_part=1"), Err(QueryError::PartWithoutMsn));
    }

    #[test]
    fn bad_numbers() {
        for q in [
            "_HLS_msn=",
            "_HLS_msn",
            "_HLS_msn=-1",
            "_HLS_msn=+1",
            "_HLS_msn=1.5",
            "_HLS_msn= 1",
            "_HLS_msn=0x10",
            "_HLS_msn=١",
            "_HLS_msn=18446744073709551616",
        ] {
            assert_eq!(parse(q), Err(QueryError::InvalidNumber(MSN)), "{q}");
        }
        assert_eq!(
            parse("_HLS_msn=1&_HLS_part=4294967296"),
            Err(QueryError::InvalidNumber(PART))
        );
        assert_eq!(
            parse("_HLS_msn=1&_HLS_part=-2"),
            Err(QueryError::InvalidNumber(PART))
        );
    }

    #[test]
    fn duplicates() {
        assert_eq!(
            parse("_HLS_msn=1&_HLS_msn=1"),
            Err(QueryError::Duplicate(MSN))
        );
        assert_eq!(
            parse("_HLS_msn=1&_HLS_part=1&_HLS_part=2"),
            Err(QueryError::Duplicate(PART))
        );
        assert_eq!(
            parse("_HLS_skip=YES&_HLS_skip=YES"),
            Err(QueryError::Duplicate(SKIP))
        );
    }

    #[test]
    fn bad_skip() {
        for q in [
            "_HLS_skip=yes",
            "_HLS_skip=",
            "_HLS_skip",
            "_HLS_skip=V2",
            "_HLS_skip=NO",
        ] {
            assert_eq!(parse(q), Err(QueryError::InvalidSkip), "{q}");
        }
    }

    #[test]
    fn messages_are_lowercase_facts() {
        assert_eq!(
            QueryError::InvalidNumber(MSN).to_string(),
            "_HLS_msn is not a valid unsigned integer"
        );
        assert_eq!(
            QueryError::PartWithoutMsn.to_string(),
            "_HLS_part without _HLS_msn"
        );
    }

    proptest::proptest! {
        #[test]
        fn never_panics(s in "\\PC*") {
            let _ = parse(&s);
        }

        #[test]
        fn roundtrip(msn in proptest::prelude::any::<u64>(), part in proptest::option::of(proptest::prelude::any::<u32>())) {
            let q = match part {
                Some(p) => format!("a=b&_HLS_part={p}&_HLS_msn={msn}"),
                None => format!("_HLS_msn={msn}"),
            };
            let r = parse(&q).expect("valid");
            proptest::prop_assert_eq!(r.msn, Some(msn));
            proptest::prop_assert_eq!(r.part, part);
        }
    }
}

#[cfg(test)]
mod carry_tests {
    use super::carry;

    #[test]
    fn every_uri_carries_the_parameter_and_nothing_else_changes() {
        let playlist = "#EXTM3U\n#EXT-X-MAP:URI=\"init-ab.mp4\"\n\
            #EXT-X-PART:DURATION=0.33333,URI=\"part7.0.m4s\",INDEPENDENT=YES\n\
            #EXTINF:2.00000,\nseg7.m4s\n\
            #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part8.0.m4s\"\n\
            #EXT-X-RENDITION-REPORT:URI=\"../480p/index.m3u8?x=1\",LAST-MSN=7,LAST-PART=0\n";
        let out = carry(playlist, "token=v1.9.ab");
        assert_eq!(
            out,
            "#EXTM3U\n#EXT-X-MAP:URI=\"init-ab.mp4?token=v1.9.ab\"\n\
            #EXT-X-PART:DURATION=0.33333,URI=\"part7.0.m4s?token=v1.9.ab\",INDEPENDENT=YES\n\
            #EXTINF:2.00000,\nseg7.m4s?token=v1.9.ab\n\
            #EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"part8.0.m4s?token=v1.9.ab\"\n\
            #EXT-X-RENDITION-REPORT:URI=\"../480p/index.m3u8?x=1&token=v1.9.ab\",LAST-MSN=7,LAST-PART=0\n"
        );
    }

    #[test]
    fn a_quote_in_the_parameter_cannot_break_out_of_an_attribute() {
        let out = carry("#EXT-X-MAP:URI=\"init.mp4\"\n", "token=a\"b\nc");
        assert_eq!(out, "#EXT-X-MAP:URI=\"init.mp4?token=abc\"\n");
    }
}
