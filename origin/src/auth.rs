//! Publish authorization: who may publish a room.
//!
//! With `srt.publish_auth = "key"`, a publisher proves itself in the stream id's `s=` with
//! either the room's stream key (`srt.stream_keys`) or a signed publish token
//! `v1.EXPIRY.HEX`: HEX is HMAC-SHA256(secret, "publish:ROOM:EXPIRY") under one of
//! `srt.publish_secrets`, EXPIRY a Unix time in seconds. Tokens let a business service grant a
//! seller one room for a while without the edge holding per-seller state.
//!
//! Playback authorization (the edge's `[playback] signed = true`) uses the same shape of
//! token over a path prefix, the room: `v1.EXPIRY.HEX` with HEX = HMAC-SHA256(secret,
//! "play:/live/ROOM/:EXPIRY"), valid for every playlist, part and segment under it.
//!
//! Viewer tokens (`[events] user_tokens`) say who posts cart, order (and, if asked, comment)
//! events: `v1.EXPIRY.HEX.USER` with HEX = HMAC-SHA256(secret, "viewer:USER:EXPIRY") under one
//! of `events.user_secrets`, made by the business's login service. The user id comes last so
//! that it may hold any character but none of a header's forbidden ones.
//! Comparisons are constant-time (ring's HMAC verification).

use conf::{PublishAuth, SrtConfig};
use ring::hmac;

use crate::streamid::PublishRequest;

/// Why a publisher was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Denied {
    #[error("no stream key or token (s=) for a room that requires one")]
    Missing,
    #[error("wrong stream key or token")]
    Wrong,
    #[error("token expired")]
    Expired,
}

/// The message a publish token signs.
fn message(room: &str, expiry: u64) -> String {
    format!("publish:{room}:{expiry}")
}

/// A publish token for `room` valid until `expiry` (Unix seconds), signed with `secret`.
pub fn publish_token(secret: &str, room: &str, expiry: u64) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let tag = hmac::sign(&key, message(room, expiry).as_bytes());
    format!("v1.{expiry}.{}", hex(tag.as_ref()))
}

/// A playback token for everything under `prefix` (`/live/ROOM/`) until `expiry`.
pub fn play_token(secret: &str, prefix: &str, expiry: u64) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let tag = hmac::sign(&key, format!("play:{prefix}:{expiry}").as_bytes());
    format!("v1.{expiry}.{}", hex(tag.as_ref()))
}

/// Checks a playback token for `prefix` at `now`; returns its expiry.
pub fn check_play(secrets: &[String], prefix: &str, token: &str, now: u64) -> Result<u64, Denied> {
    let (expiry, sig) = token
        .strip_prefix("v1.")
        .and_then(|t| t.split_once('.'))
        .ok_or(Denied::Wrong)?;
    let expiry: u64 = expiry.parse().map_err(|_| Denied::Wrong)?;
    verify(
        secrets,
        &format!("play:{prefix}:{expiry}"),
        sig,
        expiry,
        now,
    )?;
    Ok(expiry)
}

/// A viewer token saying the bearer is `user` until `expiry`.
pub fn viewer_token(secret: &str, user: &str, expiry: u64) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    let tag = hmac::sign(&key, format!("viewer:{user}:{expiry}").as_bytes());
    format!("v1.{expiry}.{}.{user}", hex(tag.as_ref()))
}

/// Checks a viewer token at `now`; returns the user it names.
pub fn check_viewer<'t>(secrets: &[String], token: &'t str, now: u64) -> Result<&'t str, Denied> {
    let (expiry, rest) = token
        .strip_prefix("v1.")
        .and_then(|t| t.split_once('.'))
        .ok_or(Denied::Wrong)?;
    let (sig, user) = rest.split_once('.').ok_or(Denied::Wrong)?;
    let expiry: u64 = expiry.parse().map_err(|_| Denied::Wrong)?;
    verify(
        secrets,
        &format!("viewer:{user}:{expiry}"),
        sig,
        expiry,
        now,
    )?;
    Ok(user)
}

/// Whether hex `sig` signs `msg` under one of `secrets`, and `expiry` has not passed.
fn verify(secrets: &[String], msg: &str, sig: &str, expiry: u64, now: u64) -> Result<(), Denied> {
    let sig = unhex(sig).ok_or(Denied::Wrong)?;
    let valid = secrets.iter().any(|secret| {
        let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
        hmac::verify(&key, msg.as_bytes(), &sig).is_ok()
    });
    match (valid, expiry >= now) {
        (false, _) => Err(Denied::Wrong),
        (true, false) => Err(Denied::Expired),
        (true, true) => Ok(()),
    }
}

/// Whether `request` may publish under `config` at `now` (Unix seconds).
pub fn check_publish(config: &SrtConfig, request: &PublishRequest, now: u64) -> Result<(), Denied> {
    if config.publish_auth == PublishAuth::Open {
        return Ok(());
    }
    let given = request.key.as_deref().ok_or(Denied::Missing)?;
    if let Some(token) = given.strip_prefix("v1.") {
        let (expiry, sig) = token.split_once('.').ok_or(Denied::Wrong)?;
        let expiry: u64 = expiry.parse().map_err(|_| Denied::Wrong)?;
        let sig = unhex(sig).ok_or(Denied::Wrong)?;
        let msg = message(&request.room, expiry);
        let valid = config.publish_secrets.iter().any(|secret| {
            let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
            hmac::verify(&key, msg.as_bytes(), &sig).is_ok()
        });
        return match (valid, expiry >= now) {
            (false, _) => Err(Denied::Wrong),
            (true, false) => Err(Denied::Expired),
            (true, true) => Ok(()),
        };
    }
    let Some(expected) = config.stream_keys.get(&request.room) else {
        return Err(Denied::Wrong);
    };
    // Constant time: compare MACs of both under a key of their own.
    let key = hmac::Key::new(hmac::HMAC_SHA256, b"daihuo stream key comparison");
    let tag = hmac::sign(&key, expected.as_bytes());
    hmac::verify(&key, given.as_bytes(), tag.as_ref()).map_err(|_| Denied::Wrong)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if s.len() % 2 != 0 || s.len() > 128 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn config() -> SrtConfig {
        let mut c = SrtConfig {
            publish_auth: PublishAuth::Key,
            publish_secrets: vec![
                "an-old-secret-still-accepted-for-a-while".into(),
                SECRET.into(),
            ],
            ..SrtConfig::default()
        };
        c.stream_keys
            .insert("demo".into(), "demo-key-0123456789".into());
        c
    }

    fn request(room: &str, key: Option<&str>) -> PublishRequest {
        PublishRequest {
            room: room.into(),
            user: None,
            key: key.map(str::to_string),
            relay: None,
        }
    }

    #[test]
    fn stream_keys() {
        let c = config();
        assert_eq!(
            check_publish(&c, &request("demo", Some("demo-key-0123456789")), 0),
            Ok(())
        );
        assert_eq!(
            check_publish(&c, &request("demo", Some("demo-key-0123456780")), 0),
            Err(Denied::Wrong)
        );
        assert_eq!(
            check_publish(&c, &request("demo", None), 0),
            Err(Denied::Missing)
        );
        // A key is for its room only.
        assert_eq!(
            check_publish(&c, &request("shop", Some("demo-key-0123456789")), 0),
            Err(Denied::Wrong)
        );
        // Open: anyone.
        let open = SrtConfig::default();
        assert_eq!(check_publish(&open, &request("demo", None), 0), Ok(()));
    }

    #[test]
    fn playback_tokens_cover_their_prefix_until_expiry() {
        let secrets = vec![SECRET.to_string()];
        let t = play_token(SECRET, "/live/demo/", 100);
        assert_eq!(check_play(&secrets, "/live/demo/", &t, 50), Ok(100));
        assert_eq!(
            check_play(&secrets, "/live/demo/", &t, 101),
            Err(Denied::Expired)
        );
        assert_eq!(
            check_play(&secrets, "/live/other/", &t, 50),
            Err(Denied::Wrong)
        );
        assert_eq!(
            check_play(&secrets, "/live/demo/", &t.replace("v1.100", "v1.999"), 50),
            Err(Denied::Wrong)
        );
        // A publish token is not a playback token.
        let p = publish_token(SECRET, "demo", 100);
        assert_eq!(
            check_play(&secrets, "/live/demo/", &p, 50),
            Err(Denied::Wrong)
        );
    }

    #[test]
    fn viewer_tokens_name_their_user_until_expiry() {
        let secrets = vec![
            "old-secret-0123456789abcdef012345".to_string(),
            SECRET.to_string(),
        ];
        let t = viewer_token(SECRET, "user.with.dots", 100);
        assert_eq!(check_viewer(&secrets, &t, 50), Ok("user.with.dots"));
        assert_eq!(check_viewer(&secrets, &t, 101), Err(Denied::Expired));
        // Another user, a longer life, or a playback token: refused.
        let forged = t.replace("user.with.dots", "someone-else");
        assert_eq!(check_viewer(&secrets, &forged, 50), Err(Denied::Wrong));
        let longer = t.replace("v1.100.", "v1.999.");
        assert_eq!(check_viewer(&secrets, &longer, 50), Err(Denied::Wrong));
        let play = play_token(SECRET, "/live/demo/", 100);
        assert_eq!(check_viewer(&secrets, &play, 50), Err(Denied::Wrong));
        assert_eq!(check_viewer(&secrets, "garbage", 50), Err(Denied::Wrong));
    }

    #[test]
    fn signed_tokens() {
        let c = config();
        let token = publish_token(SECRET, "shop", 2_000);
        assert_eq!(
            check_publish(&c, &request("shop", Some(&token)), 1_999),
            Ok(())
        );
        assert_eq!(
            check_publish(&c, &request("shop", Some(&token)), 2_001),
            Err(Denied::Expired)
        );
        // Another room, a stretched expiry, a flipped bit, another secret: wrong.
        assert_eq!(
            check_publish(&c, &request("demo", Some(&token)), 0),
            Err(Denied::Wrong)
        );
        let stretched = token.replace("v1.2000.", "v1.9000.");
        assert_eq!(
            check_publish(&c, &request("shop", Some(&stretched)), 0),
            Err(Denied::Wrong)
        );
        let mut flipped = token.clone();
        let last = flipped.pop().unwrap();
        flipped.push(if last == '0' { '1' } else { '0' });
        assert_eq!(
            check_publish(&c, &request("shop", Some(&flipped)), 0),
            Err(Denied::Wrong)
        );
        let foreign = publish_token("someone-else-entirely-0123456789ab", "shop", 2_000);
        assert_eq!(
            check_publish(&c, &request("shop", Some(&foreign)), 0),
            Err(Denied::Wrong)
        );
        // The old secret still verifies (rotation overlap).
        let old = publish_token("an-old-secret-still-accepted-for-a-while", "shop", 2_000);
        assert_eq!(check_publish(&c, &request("shop", Some(&old)), 0), Ok(()));
        for junk in [
            "v1.",
            "v1.x.y",
            "v1.1.zz",
            "v1.1",
            "v1.1.",
            &"a".repeat(500),
        ] {
            assert_eq!(
                check_publish(&c, &request("shop", Some(junk)), 0),
                Err(Denied::Wrong),
                "{junk}"
            );
        }
    }
}
