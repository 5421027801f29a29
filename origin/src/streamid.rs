//! SRT stream ids: which room a publisher wants.
//!
//! Accepts the SRT access-control syntax (`#!::r=live/ROOM,m=publish`, keys in any order, see
//! Haivision's `AccessControl.md`) and a bare `live/ROOM`. Room names are validated against one
//! pattern ([`valid_name`]) because they end up in URLs, metrics labels and logs.

/// Longest stream id SRT itself carries (its `SRTO_STREAMID` limit), in bytes.
pub const MAX_STREAM_ID: usize = 512;

/// The application prefix of every room: `live/ROOM`.
pub const APP: &str = "live";

/// What a publisher asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishRequest {
    /// The room (stream key) under `live/`.
    pub room: String,
    /// The `u=` user name, when given.
    pub user: Option<String>,
    /// The `s=` value: a stream key or a signed publish token, when given.
    pub key: Option<String>,
    /// Set by an edge relaying a publish ([`RELAY_KEY`]); `None` from an encoder.
    pub relay: Option<RelayedPublish>,
}

/// The custom stream id key an edge's relay link carries:
/// `daihuo-relay=STARTED_MS.ID.TAKEOVER`, e.g. `daihuo-relay=1764316800123.9f3a06c2d1e4b587.1`.
pub const RELAY_KEY: &str = "daihuo-relay";

/// Which publish an edge relays, so an origin can tell that publish reconnecting (a link
/// that failed and came back) from another one for the same room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RelayedPublish {
    /// When the encoder's publish began at the edge, Unix ms: of two publishes, the later
    /// one may take over.
    pub started_ms: u64,
    /// Random per publish at the edge.
    pub id: u64,
    /// The edge allowed this publish to take over a live room (its `srt.takeover`).
    pub takeover: bool,
}

impl RelayedPublish {
    /// A publish beginning now, with a random id.
    pub fn new(takeover: bool) -> Self {
        use ring::rand::SecureRandom;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        // Should the OS's random source fail, the clock's nanoseconds still tell publishes
        // apart.
        let mut id = now.as_nanos().to_le_bytes()[..8]
            .try_into()
            .unwrap_or([0; 8]);
        let _ = ring::rand::SystemRandom::new().fill(&mut id);
        Self {
            started_ms: u64::try_from(now.as_millis()).unwrap_or(u64::MAX),
            id: u64::from_le_bytes(id),
            takeover,
        }
    }

    /// The stream id value, `STARTED_MS.ID.TAKEOVER`.
    pub fn value(&self) -> String {
        format!(
            "{}.{:016x}.{}",
            self.started_ms,
            self.id,
            u8::from(self.takeover)
        )
    }

    fn parse(value: &str) -> Option<Self> {
        let mut parts = value.split('.');
        let started_ms = parts.next()?.parse().ok()?;
        let id = parts.next()?;
        let id = (id.len() == 16).then(|| u64::from_str_radix(id, 16).ok())??;
        let takeover = match parts.next()? {
            "0" => false,
            "1" => true,
            _ => return None,
        };
        parts.next().is_none().then_some(Self {
            started_ms,
            id,
            takeover,
        })
    }
}

/// Why a stream id was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StreamIdError {
    /// No stream id at all: we cannot tell which room to publish.
    #[error("missing stream id (use #!::r=live/ROOM,m=publish)")]
    Missing,
    /// Longer than SRT allows.
    #[error("stream id is {0} bytes, longer than {MAX_STREAM_ID}")]
    TooLong(usize),
    /// `m=` is not `publish`: this listener only takes publishers.
    #[error("mode {0:?} is not supported, only m=publish")]
    Mode(String),
    /// The resource is not `live/ROOM`.
    #[error("resource {0:?} is not live/ROOM")]
    Resource(String),
    /// The room name has characters or a length we do not accept.
    #[error("room name {0:?} must be 1 to 64 of A-Z a-z 0-9 _ -")]
    Room(String),
    /// A malformed `key=value` item or a repeated key.
    #[error("malformed stream id item {0:?}")]
    Syntax(String),
}

/// Whether `name` is a valid room or rendition name: 1 to 64 ASCII letters, digits, `_` or `-`.
/// Nothing else ever reaches a URL, a label or a log line as a name (no `.`, `/`, `%`, NUL).
pub fn valid_name(name: &str) -> bool {
    conf::valid_room(name)
}

/// Parses a publisher's stream id.
pub fn parse(stream_id: Option<&str>) -> Result<PublishRequest, StreamIdError> {
    let id = stream_id.unwrap_or("").trim();
    if id.is_empty() {
        return Err(StreamIdError::Missing);
    }
    if id.len() > MAX_STREAM_ID {
        return Err(StreamIdError::TooLong(id.len()));
    }
    let Some(items) = id.strip_prefix("#!::") else {
        return Ok(PublishRequest {
            room: room_of(id)?,
            user: None,
            key: None,
            relay: None,
        });
    };
    let (mut resource, mut mode, mut user, mut secret, mut relay) = (None, None, None, None, None);
    for item in items.split(',') {
        let (key, value) = item
            .split_once('=')
            .ok_or_else(|| StreamIdError::Syntax(item.to_string()))?;
        let slot = match key {
            "r" => &mut resource,
            "m" => &mut mode,
            "u" => &mut user,
            "s" => &mut secret,
            RELAY_KEY => &mut relay,
            // Other standard keys (h, t) and custom ones carry nothing we use.
            _ => continue,
        };
        if slot.replace(value.to_string()).is_some() {
            return Err(StreamIdError::Syntax(item.to_string()));
        }
    }
    match mode.as_deref() {
        None | Some("publish") => {}
        Some(other) => return Err(StreamIdError::Mode(other.to_string())),
    }
    let resource = resource.ok_or_else(|| StreamIdError::Resource(String::new()))?;
    let relay = match relay {
        Some(v) => Some(
            RelayedPublish::parse(&v)
                .ok_or_else(|| StreamIdError::Syntax(format!("{RELAY_KEY}={v}")))?,
        ),
        None => None,
    };
    Ok(PublishRequest {
        room: room_of(&resource)?,
        user,
        key: secret,
        relay,
    })
}

fn room_of(resource: &str) -> Result<String, StreamIdError> {
    let room = resource
        .strip_prefix(APP)
        .and_then(|r| r.strip_prefix('/'))
        .ok_or_else(|| StreamIdError::Resource(resource.to_string()))?;
    if !valid_name(room) {
        return Err(StreamIdError::Room(room.to_string()));
    }
    Ok(room.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(id: &str) -> Result<String, StreamIdError> {
        parse(Some(id)).map(|r| r.room)
    }

    #[test]
    fn access_control_syntax() {
        assert_eq!(room("#!::r=live/demo,m=publish").unwrap(), "demo");
        assert_eq!(room("#!::m=publish,r=live/shop-1").unwrap(), "shop-1");
        assert_eq!(room("#!::r=live/demo").unwrap(), "demo");
        let r = parse(Some("#!::u=alice,r=live/a_b,h=example.com,m=publish")).unwrap();
        assert_eq!(r.user.as_deref(), Some("alice"));
        assert_eq!(r.room, "a_b");
    }

    #[test]
    fn relayed_publishes() {
        let relayed = RelayedPublish {
            started_ms: 1_764_316_800_123,
            id: 0x9f3a_06c2_d1e4_b587,
            takeover: true,
        };
        let id = format!("#!::r=live/demo,m=publish,{RELAY_KEY}={}", relayed.value());
        assert_eq!(parse(Some(&id)).unwrap().relay, Some(relayed));
        assert_eq!(parse(Some("#!::r=live/demo")).unwrap().relay, None);
        for bad in [
            "1.2.1",
            "1764316800123.9f3a06c2d1e4b587",
            "1764316800123.9f3a06c2d1e4b587.2",
            "1764316800123.9f3a06c2d1e4b587.1.x",
            "x.9f3a06c2d1e4b587.0",
            "1.9f3a06c2d1e4b58g.0",
        ] {
            let id = format!("#!::r=live/demo,{RELAY_KEY}={bad}");
            assert!(
                matches!(parse(Some(&id)), Err(StreamIdError::Syntax(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn bare_resource() {
        assert_eq!(room("live/demo").unwrap(), "demo");
    }

    #[test]
    fn refusals() {
        assert_eq!(parse(None), Err(StreamIdError::Missing));
        assert_eq!(room(""), Err(StreamIdError::Missing));
        assert!(matches!(
            room("#!::r=live/demo,m=request"),
            Err(StreamIdError::Mode(_))
        ));
        assert!(matches!(
            room("#!::r=vod/demo"),
            Err(StreamIdError::Resource(_))
        ));
        assert!(matches!(
            room("#!::m=publish"),
            Err(StreamIdError::Resource(_))
        ));
        assert!(matches!(
            room("#!::r=live/a,r=live/b"),
            Err(StreamIdError::Syntax(_))
        ));
        assert!(matches!(room("#!::garbage"), Err(StreamIdError::Syntax(_))));
        for bad in [
            "live/..",
            "live/a/b",
            "live/a%2f",
            "live/a\0",
            "live/",
            "live/a.b",
        ] {
            assert!(matches!(room(bad), Err(StreamIdError::Room(_))), "{bad}");
        }
        let long = format!("live/{}", "a".repeat(10_000));
        assert_eq!(room(&long), Err(StreamIdError::TooLong(10_005)));
        assert!(matches!(
            room(&format!("live/{}", "a".repeat(65))),
            Err(StreamIdError::Room(_))
        ));
    }
}
