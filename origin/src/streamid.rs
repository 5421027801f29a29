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
        });
    };
    let (mut resource, mut mode, mut user, mut secret) = (None, None, None, None);
    for item in items.split(',') {
        let (key, value) = item
            .split_once('=')
            .ok_or_else(|| StreamIdError::Syntax(item.to_string()))?;
        let slot = match key {
            "r" => &mut resource,
            "m" => &mut mode,
            "u" => &mut user,
            "s" => &mut secret,
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
    Ok(PublishRequest {
        room: room_of(&resource)?,
        user,
        key: secret,
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
