//! The playback URL layout, parsed once for the origin API and the edge router alike:
//!
//! ```text
//! /live/ROOM/index.m3u8               multivariant playlist
//! /live/ROOM/RENDITION/index.m3u8     media playlist (LL-HLS query parameters apply)
//! /live/ROOM/RENDITION/init.mp4       the current init segment
//! /live/ROOM/RENDITION/init-ID.mp4    init segment ID (16 hex digits; what playlists name)
//! /live/ROOM/RENDITION/segN.m4s       segment N
//! /live/ROOM/RENDITION/partN.K.m4s    part K of segment N
//! /live/ROOM/events                   viewer events
//! ```
//!
//! Names must pass [`crate::streamid::valid_name`], so no request component can smuggle `.`,
//! `/`, `%` or NUL into anything downstream. The path is matched raw (not percent-decoded):
//! an encoded character in a name is simply an invalid name.

use codec::hls::query::{BlockingRequest, QueryError};

use crate::store::{init_name, Object};
use crate::streamid::{valid_name, APP};

/// A parsed playback request: parsed once where it enters ([`parse_request`]), then read by
/// authorization, routing and the answer alike.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Multivariant {
        room: String,
    },
    MediaPlaylist {
        room: String,
        rendition: String,
        /// What the LL-HLS query asked for (`_HLS_msn`, `_HLS_part`, `_HLS_skip`).
        blocking: BlockingRequest,
    },
    Object {
        room: String,
        rendition: String,
        object: Object,
    },
    Events {
        room: String,
    },
    /// `/live/ROOM/`: the room's page (served by edges).
    RoomPage {
        room: String,
    },
    /// `/live/ROOM/ws`: a viewer's WebSocket for events and the live feed (served by edges).
    Socket {
        room: String,
    },
}

/// Why a request is not a playback request: a 404, except a bad LL-HLS query (400).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RouteError {
    #[error("path is not under /live/")]
    NotLive,
    #[error("invalid room or rendition name")]
    BadName,
    #[error("unknown file {0:?}")]
    UnknownFile(String),
    #[error(transparent)]
    Query(#[from] QueryError),
}

impl Route {
    /// The room this route is about.
    pub fn room(&self) -> &str {
        match self {
            Route::Multivariant { room }
            | Route::MediaPlaylist { room, .. }
            | Route::Object { room, .. }
            | Route::Events { room }
            | Route::RoomPage { room }
            | Route::Socket { room } => room,
        }
    }
}

impl std::fmt::Display for Route {
    /// The route's path (without the LL-HLS query): what [`parse`] reads back.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Route::Multivariant { room } => write!(f, "/{APP}/{room}/index.m3u8"),
            Route::MediaPlaylist {
                room, rendition, ..
            } => {
                write!(f, "/{APP}/{room}/{rendition}/index.m3u8")
            }
            Route::Object {
                room,
                rendition,
                object,
            } => {
                write!(f, "/{APP}/{room}/{rendition}/")?;
                match object {
                    Object::Init { id: None } => write!(f, "init.mp4"),
                    Object::Init { id: Some(id) } => write!(f, "{}", init_name(*id)),
                    Object::Segment { msn } => write!(f, "seg{msn}.m4s"),
                    Object::Part { msn, index } => write!(f, "part{msn}.{index}.m4s"),
                }
            }
            Route::Events { room } => write!(f, "/{APP}/{room}/events"),
            Route::RoomPage { room } => write!(f, "/{APP}/{room}/"),
            Route::Socket { room } => write!(f, "/{APP}/{room}/ws"),
        }
    }
}

/// Parses a request's path and, for a media playlist, its LL-HLS query.
pub fn parse_request(path: &str, query: &str) -> Result<Route, RouteError> {
    match parse(path)? {
        Route::MediaPlaylist {
            room, rendition, ..
        } => Ok(Route::MediaPlaylist {
            room,
            rendition,
            blocking: codec::hls::query::parse(query)?,
        }),
        route => Ok(route),
    }
}

/// Parses a request path (without the query string; a media playlist gets no blocking).
pub fn parse(path: &str) -> Result<Route, RouteError> {
    let rest = path
        .strip_prefix('/')
        .and_then(|p| p.strip_prefix(APP))
        .and_then(|p| p.strip_prefix('/'))
        .ok_or(RouteError::NotLive)?;
    let mut parts = rest.split('/');
    let (Some(room), Some(second)) = (parts.next(), parts.next()) else {
        return Err(RouteError::NotLive);
    };
    if !valid_name(room) {
        return Err(RouteError::BadName);
    }
    let room = room.to_string();
    let third = parts.next();
    if parts.next().is_some() {
        return Err(RouteError::UnknownFile(rest.to_string()));
    }
    match (second, third) {
        ("index.m3u8", None) => Ok(Route::Multivariant { room }),
        ("events", None) => Ok(Route::Events { room }),
        ("", None) => Ok(Route::RoomPage { room }),
        ("ws", None) => Ok(Route::Socket { room }),
        (rendition, Some(file)) => {
            if !valid_name(rendition) {
                return Err(RouteError::BadName);
            }
            let rendition = rendition.to_string();
            if file == "index.m3u8" {
                return Ok(Route::MediaPlaylist {
                    room,
                    rendition,
                    blocking: BlockingRequest::default(),
                });
            }
            let object = object(file).ok_or_else(|| RouteError::UnknownFile(file.to_string()))?;
            Ok(Route::Object {
                room,
                rendition,
                object,
            })
        }
        (file, None) => Err(RouteError::UnknownFile(file.to_string())),
    }
}

fn object(file: &str) -> Option<Object> {
    if file == "init.mp4" {
        return Some(Object::Init { id: None });
    }
    if let Some(hex) = file
        .strip_prefix("init-")
        .and_then(|f| f.strip_suffix(".mp4"))
    {
        // Exactly as `init_name` writes it: 16 lowercase hex digits.
        let canonical =
            hex.len() == 16 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
        return canonical
            .then(|| u64::from_str_radix(hex, 16).ok())
            .flatten()
            .map(|id| Object::Init { id: Some(id) });
    }
    if let Some(n) = file
        .strip_prefix("seg")
        .and_then(|f| f.strip_suffix(".m4s"))
    {
        return Some(Object::Segment { msn: number(n)? });
    }
    let (msn, index) = file
        .strip_prefix("part")
        .and_then(|f| f.strip_suffix(".m4s"))?
        .split_once('.')?;
    Some(Object::Part {
        msn: number(msn)?,
        index: u32::try_from(number(index)?).ok()?,
    })
}

/// A plain decimal number: digits only (no sign, no `+`), no leading zeros, no overflow.
fn number(s: &str) -> Option<u64> {
    let canonical =
        !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    canonical.then(|| s.parse().ok()).flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn display_is_the_path_parse_reads() {
        for path in [
            "/live/demo/index.m3u8",
            "/live/demo/720p/index.m3u8",
            "/live/demo/720p/init.mp4",
            "/live/demo/audio/seg12.m4s",
            "/live/demo/audio/part12.3.m4s",
            "/live/demo/events",
        ] {
            assert_eq!(parse(path).unwrap().to_string(), path);
        }
    }

    fn obj(path: &str) -> Object {
        match parse(path) {
            Ok(Route::Object { object, .. }) => object,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn playback_paths() {
        assert_eq!(
            parse("/live/demo/index.m3u8"),
            Ok(Route::Multivariant {
                room: "demo".into()
            })
        );
        assert_eq!(
            parse("/live/demo/720p/index.m3u8"),
            Ok(Route::MediaPlaylist {
                room: "demo".into(),
                rendition: "720p".into(),
                blocking: BlockingRequest::default(),
            })
        );
        // The LL-HLS query is parsed with the path, once; a bad one is refused then.
        assert_eq!(
            parse_request(
                "/live/demo/720p/index.m3u8",
                "_HLS_msn=7&_HLS_part=2&token=x"
            ),
            Ok(Route::MediaPlaylist {
                room: "demo".into(),
                rendition: "720p".into(),
                blocking: BlockingRequest {
                    msn: Some(7),
                    part: Some(2),
                    skip: Default::default(),
                },
            })
        );
        assert!(matches!(
            parse_request("/live/demo/720p/index.m3u8", "_HLS_part=2"),
            Err(RouteError::Query(_))
        ));
        assert_eq!(obj("/live/demo/720p/init.mp4"), Object::Init { id: None });
        assert_eq!(
            obj("/live/demo/720p/init-00000000000000ff.mp4"),
            Object::Init { id: Some(255) }
        );
        assert_eq!(
            obj("/live/demo/720p/seg12.m4s"),
            Object::Segment { msn: 12 }
        );
        assert_eq!(
            obj("/live/demo/audio/part12.3.m4s"),
            Object::Part { msn: 12, index: 3 }
        );
        assert_eq!(
            parse("/live/demo/events"),
            Ok(Route::Events {
                room: "demo".into()
            })
        );
        let socket = Route::Socket {
            room: "demo".into(),
        };
        assert_eq!(parse("/live/demo/ws"), Ok(socket.clone()));
        assert_eq!(parse(&socket.to_string()), Ok(socket));
    }

    #[test]
    fn hostile_paths_are_refused() {
        for bad in [
            "/live/../etc/passwd",
            "/live/%2e%2e/index.m3u8",
            "/live/demo/..%2f/index.m3u8",
            "/live/demo/../index.m3u8",
            "/live/de\0mo/index.m3u8",
            "/live/demo/720p/../../x",
            "/live/demo/720p/seg-1.m4s",
            "/live/demo/720p/seg+1.m4s",
            "/live/demo/720p/seg01.m4s",
            "/live/demo/720p/seg99999999999999999999999.m4s",
            "/live/demo/720p/part1.99999999999.m4s",
            "/live/demo/720p/part1.m4s",
            "/live/demo/720p/index.m3u8/x",
            "/live/demo",
            "/live/",
            "/vod/demo/index.m3u8",
            "",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should be refused");
        }
        let long = format!("/live/{}/index.m3u8", "a".repeat(10_000));
        assert_eq!(parse(&long), Err(RouteError::BadName));
    }
}
