//! Viewers' WebSocket: `GET /live/ROOM/ws` upgraded over HTTP/1.1, or `CONNECT` with
//! `:protocol = websocket` over HTTP/2 (RFC 8441). One connection both posts events and
//! receives the room's live feed:
//!
//! - each text message the viewer sends is what a `POST /live/ROOM/events` body would be (one
//!   event or an array) and gets one answer, in order: `{"type":"accepted","accepted":N,
//!   "shed":M}` or `{"type":"error","status":429,"error":"..."}`. It goes through the same
//!   intake ([`Events::post`]): the same validation, rate limits, viewer tokens (the socket's
//!   `Authorization: Bearer`, or `?user_token=` in its URL) and spool; the router checks
//!   playback tokens before the upgrade as for the POST.
//! - the feed arrives as `{"type":"comment","id":..,"user":..,"text":..}`,
//!   `{"type":"likes","count":N}` and `{"type":"viewers","count":N}` messages; a viewer too
//!   slow to take them gets `{"type":"missed","messages":N}`.
//!
//! tungstenite does the framing (masking, fragments, control frames, UTF-8, size limits).
//! HTTP/3 has no upgrade here (RFC 9220 is not offered): such a request gets 426 and players
//! use HTTPS for the socket.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::{SinkExt, StreamExt};
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode, Version};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;
use tracing::debug;

use crate::events::Events;

/// The largest message a viewer may send: what a `POST /events` body may be.
const MAX_MESSAGE: usize = daemon::serve::MAX_BODY;
/// A ping this often keeps idle sockets (and the proxies between) open, and finds dead ones.
const PING: Duration = Duration::from_secs(15);

/// Checks a WebSocket opening request: the answer to send (101 on HTTP/1.1, 200 on HTTP/2)
/// and the connection to take once it is sent; otherwise the answer that says why not.
pub fn handshake(
    req: &Request<Bytes>,
    upgrade: Option<OnUpgrade>,
) -> Result<(Response<Bytes>, OnUpgrade), Refused> {
    let h = req.headers();
    let version_13 = h
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_some_and(|v| v.as_bytes() == b"13");
    let mut res = Response::new(Bytes::new());
    match (req.version(), req.method()) {
        (Version::HTTP_11, &Method::GET) if has_token(h, header::UPGRADE, "websocket") => {
            if !has_token(h, header::CONNECTION, "upgrade") {
                return Err(Refused("Connection: Upgrade is missing"));
            }
            let Some(key) = h.get(header::SEC_WEBSOCKET_KEY) else {
                return Err(Refused("Sec-WebSocket-Key is missing"));
            };
            if !version_13 {
                return Err(Refused("only WebSocket version 13 is spoken"));
            }
            let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
            *res.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
            let h = res.headers_mut();
            h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            h.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            h.insert(
                header::SEC_WEBSOCKET_ACCEPT,
                HeaderValue::from_str(&accept).expect("base64 is a header value"),
            );
        }
        (Version::HTTP_2, &Method::CONNECT)
            if req
                .extensions()
                .get::<hyper::ext::Protocol>()
                .is_some_and(|p| p.as_str().eq_ignore_ascii_case("websocket")) =>
        {
            if !version_13 {
                return Err(Refused("only WebSocket version 13 is spoken"));
            }
        }
        _ => {
            return Err(Refused(
                "a WebSocket opens with an HTTP/1.1 upgrade or an HTTP/2 extended CONNECT",
            ))
        }
    }
    let upgrade = upgrade.ok_or(Refused("this connection cannot be upgraded"))?;
    Ok((res, upgrade))
}

/// Whether comma-separated header `name` lists `token` (case-insensitive).
fn has_token(h: &HeaderMap, name: header::HeaderName, token: &str) -> bool {
    h.get_all(name)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Why a request does not open a WebSocket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Refused(&'static str);

impl Refused {
    /// 426 Upgrade Required, saying why.
    pub fn response(self) -> Response<Bytes> {
        let mut res = daemon::serve::text(StatusCode::UPGRADE_REQUIRED, format!("{self}\n"));
        let h = res.headers_mut();
        h.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        h.insert(
            header::SEC_WEBSOCKET_VERSION,
            HeaderValue::from_static("13"),
        );
        res
    }
}

/// One viewer's socket, from the upgrade until either side closes it (or the feed ends, at
/// shutdown: the viewer is told the server is going away).
pub struct Session {
    pub room: String,
    pub events: Arc<Events>,
    pub feed: mpsc::Receiver<Bytes>,
    /// Who posts, for the rate limits (`Peer::limit_key`).
    pub client: IpAddr,
    /// The viewer token the socket was opened with (`Authorization: Bearer` or
    /// `?user_token=`), for events that need one.
    pub bearer: Option<String>,
    /// Counts the socket in `daihuo_connections{transport="websocket"}` while it is open.
    pub open: daemon::serve::Open,
}

impl Session {
    pub async fn run(mut self, upgrade: OnUpgrade) {
        let io = match upgrade.await {
            Ok(io) => TokioIo::new(io),
            Err(e) => {
                debug!(room = %self.room, "websocket upgrade failed: {e}");
                return;
            }
        };
        let config = WebSocketConfig {
            max_message_size: Some(MAX_MESSAGE),
            max_frame_size: Some(MAX_MESSAGE),
            ..WebSocketConfig::default()
        };
        let mut ws = WebSocketStream::from_raw_socket(io, Role::Server, Some(config)).await;
        if let Err(e) = self.serve(&mut ws).await {
            debug!(room = %self.room, "websocket ended: {e}");
        }
    }

    async fn serve<S>(&mut self, ws: &mut WebSocketStream<S>) -> Result<(), tungstenite::Error>
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
    {
        let mut ping = tokio::time::interval(PING);
        ping.tick().await;
        loop {
            tokio::select! {
                m = ws.next() => match m {
                    Some(Ok(Message::Text(text))) => {
                        let answer = self.post(Bytes::from(text)).await;
                        ws.send(Message::Text(answer)).await?;
                    }
                    Some(Ok(Message::Binary(_))) => {
                        return close(ws, CloseCode::Unsupported, "text messages only").await;
                    }
                    // Pings are answered by tungstenite; a close is answered and then ends
                    // the stream.
                    Some(Ok(_)) => {}
                    Some(Err(tungstenite::Error::Capacity(e))) => {
                        return close(ws, CloseCode::Size, &e.to_string()).await;
                    }
                    Some(Err(e)) => return Err(e),
                    None => return Ok(()),
                },
                chunk = self.feed.recv() => match chunk {
                    Some(chunk) => {
                        for message in messages(&chunk) {
                            ws.feed(Message::Text(message)).await?;
                        }
                        ws.flush().await?;
                    }
                    None => return close(ws, CloseCode::Away, "server shutting down").await,
                },
                _ = ping.tick() => ws.send(Message::Ping(Vec::new())).await?,
            }
        }
    }

    /// Posts one message's events; the answer to send back.
    async fn post(&self, body: Bytes) -> String {
        let bearer = self.bearer.as_deref();
        match self
            .events
            .post(&self.room, &body, self.client, bearer)
            .await
        {
            Ok(posted) => serde_json::json!({
                "type": "accepted", "accepted": posted.accepted, "shed": posted.shed,
            }),
            Err(e) => serde_json::json!({
                "type": "error", "status": e.status(), "error": e.to_string(),
            }),
        }
        .to_string()
    }
}

async fn close<S>(
    ws: &mut WebSocketStream<S>,
    code: CloseCode,
    reason: &str,
) -> Result<(), tungstenite::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    let frame = CloseFrame {
        code,
        reason: reason.to_string().into(),
    };
    ws.close(Some(frame)).await
}

/// The feed's messages (kept as server-sent-event text, what most viewers read) as socket
/// messages: each `event: NAME` / `data: {..}` pair becomes the data object with `"type":
/// NAME`; a missed-messages note becomes `{"type":"missed","messages":N}`; keepalives go.
fn messages(chunk: &[u8]) -> Vec<String> {
    let text = String::from_utf8_lossy(chunk);
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let mut event = None;
        let mut data = None;
        for line in block.lines() {
            if let Some(n) = line
                .strip_prefix(": ")
                .and_then(|l| l.strip_suffix(" messages missed"))
                .and_then(|n| n.parse::<u64>().ok())
            {
                out.push(serde_json::json!({"type": "missed", "messages": n}).to_string());
            } else if let Some(name) = line.strip_prefix("event: ") {
                event = Some(name);
            } else if let Some(d) = line.strip_prefix("data: ") {
                data = serde_json::from_str::<serde_json::Value>(d).ok();
            }
        }
        if let (Some(name), Some(serde_json::Value::Object(mut fields))) = (event, data) {
            fields.insert("type".into(), name.into());
            out.push(serde_json::Value::Object(fields).to_string());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn feed_text_becomes_one_json_message_per_event() {
        let chunk = b"event: comment\ndata: {\"id\":\"m1\",\"text\":\"hi\",\"user\":\"u1\"}\n\n\
            event: likes\ndata: {\"count\":40}\n\n: keepalive\n\n: 3 messages missed\n\n";
        let got: Vec<serde_json::Value> = messages(chunk)
            .iter()
            .map(|m| serde_json::from_str(m).unwrap())
            .collect();
        assert_eq!(
            got,
            [
                serde_json::json!({"type":"comment","id":"m1","text":"hi","user":"u1"}),
                serde_json::json!({"type":"likes","count":40}),
                serde_json::json!({"type":"missed","messages":3}),
            ]
        );
    }

    fn request(version: Version, method: Method, headers: &[(&str, &str)]) -> Request<Bytes> {
        let mut b = Request::builder()
            .version(version)
            .method(method)
            .uri("/live/demo/ws");
        for (k, v) in headers {
            b = b.header(*k, *v);
        }
        b.body(Bytes::new()).unwrap()
    }

    #[test]
    fn openings_are_checked_and_refusals_say_why() {
        let good = [
            ("upgrade", "websocket"),
            ("connection", "keep-alive, Upgrade"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ];
        // Without hyper's upgrade handle the connection cannot be taken: still a refusal.
        let refused = handshake(&request(Version::HTTP_11, Method::GET, &good), None).unwrap_err();
        assert_eq!(refused.to_string(), "this connection cannot be upgraded");
        let res = refused.response();
        assert_eq!(res.status(), StatusCode::UPGRADE_REQUIRED);
        assert_eq!(res.headers()["sec-websocket-version"], "13");
        for (drop, why) in [
            (1, "Connection: Upgrade"),
            (2, "version 13"),
            (3, "Sec-WebSocket-Key"),
        ] {
            let headers: Vec<_> = good
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != drop)
                .map(|(_, h)| *h)
                .collect();
            let refused =
                handshake(&request(Version::HTTP_11, Method::GET, &headers), None).unwrap_err();
            assert!(refused.to_string().contains(why), "{refused}");
        }
        // A plain GET (or HTTP/3) is told how to open one.
        let refused = handshake(&request(Version::HTTP_3, Method::GET, &[]), None).unwrap_err();
        assert!(refused.to_string().contains("extended CONNECT"));
    }
}
