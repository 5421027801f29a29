//! The `on_publish` hook: an operator's HTTP service that allows or denies each publish.
//!
//! One POST per publish attempt, on a fresh HTTP/1.1 connection (publishes are rare next to
//! requests, and a fresh connection means no pool to go stale while the hook restarts). The
//! whole exchange, connect included, is bounded by the configured timeout; anything but a 2xx
//! in time denies, so a hook that is down fails closed.

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::TokioIo;

/// What the hook is told about a publish attempt.
#[derive(Debug, serde::Serialize)]
pub struct Attempt<'a> {
    pub room: &'a str,
    /// `u=` of the stream id, if given.
    pub user: Option<&'a str>,
    /// `s=` of the stream id (a key or token of the business's own), if given.
    pub key: Option<&'a str>,
    /// The publisher's address.
    pub peer: SocketAddr,
}

/// Why the hook did not allow a publish.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("on_publish hook denied it: {status} {reason}")]
    Denied { status: u16, reason: String },
    #[error("on_publish hook did not answer within {0:?}")]
    Timeout(Duration),
    #[error("on_publish hook failed: {0}")]
    Failed(String),
}

/// Asks the hook at `url` (validated by the configuration) about `attempt`.
pub async fn ask(url: &str, timeout: Duration, attempt: &Attempt<'_>) -> Result<(), Refusal> {
    match tokio::time::timeout(timeout, exchange(url, attempt)).await {
        Ok(result) => result,
        Err(_) => Err(Refusal::Timeout(timeout)),
    }
}

async fn exchange(url: &str, attempt: &Attempt<'_>) -> Result<(), Refusal> {
    let failed = |e: &dyn std::fmt::Display| Refusal::Failed(e.to_string());
    let (authority, path) = conf::hook_url(url).map_err(|e| failed(&e))?;
    let stream = tokio::net::TcpStream::connect(&authority)
        .await
        .map_err(|e| failed(&format!("connect {authority}: {e}")))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| failed(&e))?;
    // The connection goes with this exchange, on timeout too: the hook is not left holding
    // a socket per abandoned call.
    let _conn = AbortOnDrop(tokio::spawn(conn));
    let body = serde_json::to_vec(attempt).map_err(|e| failed(&e))?;
    let req = http::Request::post(path)
        .header(http::header::HOST, authority)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| failed(&e))?;
    let res = sender.send_request(req).await.map_err(|e| failed(&e))?;
    let status = res.status();
    if status.is_success() {
        return Ok(());
    }
    // The start of the body, for the audit line (the hook may say why).
    let body = Limited::new(res.into_body(), 4096)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let reason: String = String::from_utf8_lossy(&body)
        .chars()
        .take(200)
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    Err(Refusal::Denied {
        status: status.as_u16(),
        reason: reason.trim().to_string(),
    })
}

/// Aborts its task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A one-shot hook answering `answer` after `delay`, returning the request it got.
    async fn hook(
        answer: &'static str,
        delay: Duration,
    ) -> (String, tokio::task::JoinHandle<String>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/publish?site=a", listener.local_addr().unwrap());
        let task = tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let mut got = Vec::new();
            while !String::from_utf8_lossy(&got).contains("\"peer\"") {
                let n = s.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
            }
            tokio::time::sleep(delay).await;
            let _ = s.write_all(answer.as_bytes()).await;
            String::from_utf8_lossy(&got).into_owned()
        });
        (url, task)
    }

    fn attempt() -> Attempt<'static> {
        Attempt {
            room: "demo",
            user: Some("seller-1"),
            key: Some("k"),
            peer: "192.0.2.7:5000".parse().unwrap(),
        }
    }

    #[tokio::test]
    async fn allows_on_2xx_and_sends_the_attempt() {
        let (url, task) = hook("HTTP/1.1 204 No Content\r\n\r\n", Duration::ZERO).await;
        ask(&url, Duration::from_secs(5), &attempt()).await.unwrap();
        let request = task.await.unwrap();
        assert!(
            request.starts_with("POST /publish?site=a HTTP/1.1"),
            "{request}"
        );
        assert!(
            request
                .contains(r#"{"room":"demo","user":"seller-1","key":"k","peer":"192.0.2.7:5000"}"#),
            "{request}"
        );
    }

    #[tokio::test]
    async fn denies_on_anything_else() {
        let (url, _task) = hook(
            "HTTP/1.1 403 Forbidden\r\ncontent-length: 17\r\n\r\nseller suspended\n",
            Duration::ZERO,
        )
        .await;
        match ask(&url, Duration::from_secs(5), &attempt()).await {
            Err(Refusal::Denied {
                status: 403,
                reason,
            }) => assert_eq!(reason, "seller suspended"),
            other => panic!("{other:?}"),
        }
        // Slow: the timeout denies.
        let (url, _task) = hook("HTTP/1.1 200 OK\r\n\r\n", Duration::from_secs(5)).await;
        assert!(matches!(
            ask(&url, Duration::from_millis(200), &attempt()).await,
            Err(Refusal::Timeout(_))
        ));
        // Nobody listening: denied.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/", closed.local_addr().unwrap());
        drop(closed);
        assert!(matches!(
            ask(&url, Duration::from_secs(5), &attempt()).await,
            Err(Refusal::Failed(_))
        ));
    }
}
