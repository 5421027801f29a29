//! Viewers' WebSocket (`/live/ROOM/ws`) against a real edge: opened with an HTTP/1.1
//! upgrade and with an HTTP/2 extended CONNECT (RFC 8441), posting events through the same
//! intake as `POST /events` and receiving the room's live feed; bad messages get answers or
//! close codes, signed playback applies, and shutdown tells open sockets.

// Tests panic on purpose when the system under test misbehaves.
#![allow(clippy::unwrap_used)]

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use daihuo::{eventually, loopback_config};
use futures::{SinkExt, StreamExt};
use http_body_util::Empty;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use crate::events::{journal, request};

type Socket<S> = WebSocketStream<S>;

/// Opens `path` as a WebSocket over HTTP/2 (prior knowledge on a plain listener) with an
/// extended CONNECT.
async fn over_h2(addr: SocketAddr, path: &str) -> Socket<TokioIo<hyper::upgrade::Upgraded>> {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut send, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    // One plain request first: the server's SETTINGS (which allow extended CONNECT) are in
    // once it is answered.
    let warm = http::Request::get(format!("http://{addr}/healthz"))
        .body(Empty::<Bytes>::new())
        .unwrap();
    send.send_request(warm).await.unwrap();
    let mut req = http::Request::builder()
        .method(http::Method::CONNECT)
        .version(http::Version::HTTP_2)
        .uri(format!("http://{addr}{path}"))
        .header("sec-websocket-version", "13")
        .body(Empty::<Bytes>::new())
        .unwrap();
    req.extensions_mut()
        .insert(hyper::ext::Protocol::from_static("websocket"));
    let res = send.send_request(req).await.unwrap();
    assert_eq!(res.status(), 200, "extended CONNECT answered");
    let upgraded = hyper::upgrade::on(res).await.unwrap();
    WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Client, None).await
}

/// The next JSON text message whose `type` is `kind` (others are passed over).
async fn next_of<S>(ws: &mut Socket<S>, kind: &str) -> serde_json::Value
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Text(t))) => {
                    let v: serde_json::Value = serde_json::from_str(&t).unwrap();
                    if v["type"] == kind {
                        return v;
                    }
                }
                Some(Ok(_)) => {}
                other => panic!("socket ended waiting for {kind}: {other:?}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("a {kind} message in time"))
}

/// The close frame's code that ends `ws` (messages before it are passed over).
async fn close_code<S>(ws: &mut Socket<S>) -> CloseCode
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(Some(frame)))) => return frame.code,
                Some(Ok(_)) => {}
                other => panic!("socket ended without a close frame: {other:?}"),
            }
        }
    })
    .await
    .expect("a close frame in time")
}

async fn send<S>(ws: &mut Socket<S>, text: &str)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    ws.send(Message::Text(text.into())).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_posts_events_and_receives_the_feed_over_http1_and_http2() {
    let edge = edge_node::Edge::start(&loopback_config()).await.unwrap();
    let http = edge.addrs.http.unwrap();
    let admin = edge.addrs.admin;

    let (mut h1, res) = tokio_tungstenite::connect_async(format!("ws://{http}/live/demo/ws"))
        .await
        .unwrap();
    assert_eq!(res.status(), 101);
    let mut h2 = over_h2(http, "/live/demo/ws").await;

    // Posted on one socket, seen on the other; the first comments may go by before the edge
    // follows its journal, so post until one arrives.
    let mut n = 0;
    eventually(30, async || {
        n += 1;
        let comment =
            format!(r#"{{"id":"w{n}","type":"comment","user":"u1","text":"hello over h2 {n}"}}"#);
        send(&mut h2, &comment).await;
        let ack = next_of(&mut h2, "accepted").await;
        assert_eq!(
            (ack["accepted"].as_u64(), ack["shed"].as_u64()),
            (Some(1), Some(0))
        );
        let seen = tokio::time::timeout(Duration::from_millis(500), next_of(&mut h1, "comment"))
            .await
            .ok()?;
        assert_eq!(seen["user"], "u1");
        assert!(seen["text"].as_str().unwrap().starts_with("hello over h2"));
        Some(())
    })
    .await;

    // A cart event and a batch with a like: acknowledged, then in the journal once each.
    send(
        &mut h1,
        r#"{"id":"ws-cart-1","type":"cart_add","user":"u9","sku":"SKU-1","qty":2}"#,
    )
    .await;
    assert_eq!(next_of(&mut h1, "accepted").await["accepted"], 1);
    send(&mut h1, r#"[{"id":"ws-l1","type":"like","user":"u9"}]"#).await;
    assert_eq!(next_of(&mut h1, "accepted").await["accepted"], 1);
    let likes = next_of(&mut h2, "likes").await;
    assert!(likes["count"].as_u64().unwrap() >= 1, "{likes}");
    let lines = eventually(10, async || {
        let l = journal(admin).await;
        l.iter()
            .any(|l| l["event"]["id"] == "ws-cart-1")
            .then_some(l)
    })
    .await;
    let carts: Vec<_> = lines
        .iter()
        .filter(|l| l["event"]["id"] == "ws-cart-1")
        .collect();
    assert_eq!(carts.len(), 1);
    assert_eq!(carts[0]["room"], "demo");
    assert_eq!(carts[0]["event"]["qty"], 2);

    // Bad input gets an answer with the POST's reason, and the socket goes on.
    send(&mut h1, "not json").await;
    let error = next_of(&mut h1, "error").await;
    assert_eq!(error["status"], 400, "{error}");
    send(
        &mut h1,
        r#"{"id":"bad","type":"comment","user":"u1","text":""}"#,
    )
    .await;
    assert_eq!(next_of(&mut h1, "error").await["status"], 400);
    send(
        &mut h1,
        r#"{"id":"ws-c2","type":"comment","user":"u1","text":"still here"}"#,
    )
    .await;
    assert_eq!(next_of(&mut h1, "accepted").await["accepted"], 1);

    // Binary: closed with 1003. Over the size of a POST body: closed with 1009.
    h1.send(Message::Binary(vec![1, 2, 3])).await.unwrap();
    assert_eq!(close_code(&mut h1).await, CloseCode::Unsupported);
    let big = format!(
        r#"{{"id":"big","type":"comment","user":"u1","text":"{}"}}"#,
        "x".repeat(daemon::serve::MAX_BODY + 1)
    );
    // The server may close before the whole message is written.
    let _ = h2.send(Message::Text(big)).await;
    assert_eq!(close_code(&mut h2).await, CloseCode::Size);

    // Not an opening: told how to open one.
    let (status, body) = request(http, "GET", "/live/demo/ws", Bytes::new())
        .await
        .unwrap();
    assert_eq!(status, 426, "{body}");
    assert!(body.contains("upgrade"), "{body}");
    // Counted while open.
    let (mut open, _) = tokio_tungstenite::connect_async(format!("ws://{http}/live/demo/ws"))
        .await
        .unwrap();
    let metrics = request(admin, "GET", "/metrics", Bytes::new())
        .await
        .unwrap()
        .1;
    assert!(
        metrics.contains(r#"daihuo_connections{transport="websocket"} 1"#),
        "{}",
        metrics
            .lines()
            .filter(|l| l.contains("daihuo_connections"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    // Shutdown: the open socket is told the server is going away.
    let told = tokio::spawn(async move { close_code(&mut open).await });
    edge.shutdown(Duration::from_secs(2)).await;
    assert_eq!(told.await.unwrap(), CloseCode::Away);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn signed_playback_guards_the_websocket() {
    const SECRET: &str = "a-long-enough-test-secret-for-hmac";
    let mut config = loopback_config();
    config.playback.signed = true;
    config.playback.secrets = vec![SECRET.into()];
    let edge = edge_node::Edge::start(&config).await.unwrap();
    let http = edge.addrs.http.unwrap();
    let expiry = daihuo::unix_now() + 600;
    let token = origin::auth::play_token(SECRET, "/live/demo/", expiry);
    let open = |extra: Option<(&'static str, String)>, query: &str| {
        let mut req =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                format!("ws://{http}/live/demo/ws{query}"),
            )
            .unwrap();
        if let Some((name, value)) = extra {
            req.headers_mut().insert(name, value.parse().unwrap());
        }
        tokio_tungstenite::connect_async(req)
    };
    let status = |r: Result<_, tokio_tungstenite::tungstenite::Error>| match r {
        Ok((_, res)) => {
            let res: http::Response<Option<Vec<u8>>> = res;
            res.status().as_u16()
        }
        Err(tokio_tungstenite::tungstenite::Error::Http(res)) => res.status().as_u16(),
        Err(e) => panic!("{e}"),
    };
    // No token: refused.
    assert_eq!(status(open(None, "").await), 403);
    // The token in the URL: any page may open it.
    let foreign = Some(("origin", "https://elsewhere.example".to_string()));
    assert_eq!(
        status(open(foreign.clone(), &format!("?token={token}")).await),
        101
    );
    // The token in the cookie: the edge's own page may, another site's page may not.
    let cookie = format!("daihuo_token={token}");
    let with_cookie_from = |page: String| {
        let mut req =
            tokio_tungstenite::tungstenite::client::IntoClientRequest::into_client_request(
                format!("ws://{http}/live/demo/ws"),
            )
            .unwrap();
        req.headers_mut().insert("cookie", cookie.parse().unwrap());
        req.headers_mut().insert("origin", page.parse().unwrap());
        tokio_tungstenite::connect_async(req)
    };
    assert_eq!(
        status(with_cookie_from(format!("http://{http}")).await),
        101
    );
    assert_eq!(
        status(with_cookie_from("https://elsewhere.example".into()).await),
        403
    );
    edge.shutdown(Duration::from_secs(2)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_posts_carts_with_the_viewer_token_of_its_url() {
    const SECRET: &str = "the-business-login-service-secret-0123";
    let edge = edge_node::Edge::start(&daihuo::user_tokens_config(SECRET))
        .await
        .unwrap();
    let http = edge.addrs.http.unwrap();
    let expiry = daihuo::unix_now() + 600;
    let token = origin::auth::viewer_token(SECRET, "alice", expiry);
    let cart = |user: &str| {
        format!(r#"{{"id":"ws-{user}","type":"cart_add","user":"{user}","sku":"S","qty":1}}"#)
    };
    let (mut with, _) =
        tokio_tungstenite::connect_async(format!("ws://{http}/live/demo/ws?user_token={token}"))
            .await
            .unwrap();
    send(&mut with, &cart("alice")).await;
    assert_eq!(next_of(&mut with, "accepted").await["accepted"], 1);
    send(&mut with, &cart("bob")).await;
    assert_eq!(next_of(&mut with, "error").await["status"], 403);
    let (mut without, _) = tokio_tungstenite::connect_async(format!("ws://{http}/live/demo/ws"))
        .await
        .unwrap();
    send(&mut without, &cart("alice")).await;
    assert_eq!(next_of(&mut without, "error").await["status"], 401);
    edge.shutdown(Duration::from_secs(2)).await;
}
