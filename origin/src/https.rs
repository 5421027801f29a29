//! HTTPS serving (the edge's viewers, the origin's API): TCP accept, TLS handshake (bounded in
//! time), then the shared hyper HTTP/1.1 + HTTP/2 serving of [`crate::serve`].

use std::sync::Arc;
use std::time::Duration;

use crate::serve::{serve_connection, Handler, HEADER_TIMEOUT};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;
use tracing::debug;

/// Accepts TLS connections until `shutdown` turns true.
pub async fn serve<H: Handler>(
    listener: TcpListener,
    tls: TlsAcceptor,
    handler: Arc<H>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let (tcp, addr) = tokio::select! {
            r = listener.accept() => match r {
                Ok(x) => x,
                Err(e) => {
                    debug!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = crate::serve::stopped(&mut shutdown) => return,
        };
        let _ = tcp.set_nodelay(true);
        let tls = tls.clone();
        let handler = handler.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            match tokio::time::timeout(HEADER_TIMEOUT, tls.accept(tcp)).await {
                Ok(Ok(stream)) => serve_connection(stream, handler, addr, shutdown).await,
                Ok(Err(e)) => debug!(peer = %addr, "tls handshake failed: {e}"),
                Err(_) => debug!(peer = %addr, "tls handshake timed out"),
            }
        });
    }
}
