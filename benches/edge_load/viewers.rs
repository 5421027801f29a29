//! The viewers: the object list they loop over (read from the edge's playlists and mirrored
//! to nginx's root), one keep-alive HTTP/1.1 or HTTP/3 connection each, and one timed run.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use bytes::Bytes;
use daihuo::playlist::{attr, segments, tags};
use daihuo::H3Client;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::CertificateDer;

use crate::servers::cpu_ticks;
use crate::ROOM;

/// Wrong responses printed in full (all are counted).
const SHOWN_ERRORS: usize = 5;

/// A media object every viewer loops over.
pub struct Object {
    pub path: String,
    pub len: usize,
}

/// Reads the ended stream's playlists, fetches every part and segment once from the edge
/// (which caches them) and writes the bytes under `www` at their URL paths.
pub async fn cache_objects(edge: SocketAddr, www: &Path) -> Result<Vec<Object>> {
    let mut conn = h1_connect(edge).await?;
    let base = format!("/live/{ROOM}");
    let mut playlists = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    // The publish is over: every media playlist ends with ENDLIST (soon, if not yet).
    loop {
        let multivariant = text(&mut conn, &format!("{base}/index.m3u8")).await?;
        let mut uris: Vec<String> = tags(&multivariant, "#EXT-X-MEDIA:")
            .iter()
            .filter_map(|l| attr(l, "URI").map(str::to_string))
            .collect();
        uris.extend(segments(&multivariant).iter().map(|s| s.to_string()));
        playlists.clear();
        for uri in &uris {
            playlists.push((
                uri.clone(),
                text(&mut conn, &format!("{base}/{uri}")).await?,
            ));
        }
        let ended = playlists.iter().all(|(_, p)| p.contains("#EXT-X-ENDLIST"));
        if ended && !playlists.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            bail!("the stream did not end:\n{multivariant}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    let mut objects = Vec::new();
    for (uri, playlist) in &playlists {
        let dir = uri.rsplit_once('/').map_or("", |(d, _)| d);
        let parts = tags(playlist, "#EXT-X-PART:");
        let names = parts
            .iter()
            .filter_map(|l| attr(l, "URI"))
            .chain(segments(playlist));
        for name in names {
            let path = format!("{base}/{dir}/{name}");
            let (status, body) = h1_get(&mut conn, &path).await?;
            if status != 200 {
                bail!("{path}: status {status}");
            }
            let file = www.join(path.trim_start_matches('/'));
            if let Some(parent) = file.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&file, &body)?;
            objects.push(Object {
                path,
                len: body.len(),
            });
        }
    }
    if objects.is_empty() {
        bail!("the playlists list no parts or segments");
    }
    Ok(objects)
}

/// Checks that nginx and the edge (now from its cache) serve identical bytes.
pub async fn same_bytes(objects: &[Object], nginx: SocketAddr, edge: SocketAddr) -> Result<()> {
    let (mut a, mut b) = (h1_connect(nginx).await?, h1_connect(edge).await?);
    for o in objects {
        let (sa, ba) = h1_get(&mut a, &o.path).await?;
        let (sb, bb) = h1_get(&mut b, &o.path).await?;
        if sa != 200 || sb != 200 || ba != bb || ba.len() != o.len {
            bail!(
                "{}: nginx {sa} ({} bytes), edge {sb} ({} bytes), expected {}",
                o.path,
                ba.len(),
                bb.len(),
                o.len
            );
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Viewers

pub enum Target {
    Http1(SocketAddr),
    Http3(SocketAddr, CertificateDer<'static>),
}

/// One viewer's connection.
enum Conn {
    Http1(SendRequest<Empty<Bytes>>),
    Http3(H3Client),
}

impl Conn {
    async fn open(target: &Target) -> Result<Self> {
        Ok(match target {
            Target::Http1(addr) => Conn::Http1(h1_connect(*addr).await?),
            Target::Http3(addr, cert) => Conn::Http3(H3Client::connect(*addr, cert).await?),
        })
    }

    /// GETs `path`: status and body length.
    async fn get(&mut self, path: &str) -> Result<(u16, usize)> {
        match self {
            Conn::Http1(send) => h1_get_len(send, path).await,
            Conn::Http3(h3) => {
                let reply = h3.get(path).await?;
                Ok((reply.status, reply.body.len()))
            }
        }
    }
}

/// What a set of viewers did.
#[derive(Default)]
pub struct Load {
    pub requests: u64,
    pub bytes: u64,
    /// Responses with a status other than 200 or a body of the wrong length.
    pub wrong: u64,
    /// Requests that failed in transport (the viewer reconnects).
    pub failed: u64,
    pub shown: Vec<String>,
}

impl Load {
    fn add(&mut self, other: Load) {
        self.requests += other.requests;
        self.bytes += other.bytes;
        self.wrong += other.wrong;
        self.failed += other.failed;
        let room = SHOWN_ERRORS.saturating_sub(self.shown.len());
        self.shown.extend(other.shown.into_iter().take(room));
    }
}

/// One viewer: GETs the objects in order, starting at `first`, until `deadline`.
async fn viewer(
    mut conn: Conn,
    target: Arc<Target>,
    objects: Arc<Vec<Object>>,
    first: usize,
    deadline: Instant,
) -> Load {
    let mut load = Load::default();
    let mut i = first;
    while Instant::now() < deadline {
        let o = &objects[i % objects.len()];
        i += 1;
        match conn.get(&o.path).await {
            Ok((200, len)) if len == o.len => {
                load.requests += 1;
                load.bytes += len as u64;
            }
            Ok((status, len)) => {
                load.wrong += 1;
                if load.shown.len() < SHOWN_ERRORS {
                    load.shown
                        .push(format!("{}: {status}, {len} of {} bytes", o.path, o.len));
                }
            }
            Err(e) => {
                load.failed += 1;
                if load.shown.len() < SHOWN_ERRORS {
                    load.shown.push(format!("{}: {e:#}", o.path));
                }
                match Conn::open(&target).await {
                    Ok(c) => conn = c,
                    Err(_) => break,
                }
            }
        }
    }
    load
}

/// One run's figures.
pub struct Measured {
    pub load: Load,
    pub wall: f64,
    /// Server CPU seconds (user + system) in the window.
    pub server_cpu: f64,
    /// This process's CPU seconds (the load generator) in the window.
    pub client_cpu: f64,
}

/// Opens `viewers` connections, then lets them loop over `objects` for `window`.
pub async fn measure(
    target: Arc<Target>,
    pids: &[u32],
    objects: &Arc<Vec<Object>>,
    viewers: usize,
    window: Duration,
    tick: f64,
) -> Result<Measured> {
    let conns = futures::future::join_all((0..viewers).map(|_| Conn::open(&target))).await;
    let conns = conns.into_iter().collect::<Result<Vec<_>>>()?;

    let (server0, client0) = (cpu_ticks(pids)?, cpu_ticks(&[std::process::id()])?);
    let start = Instant::now();
    let deadline = start + window;
    // Spread the viewers over the list, as players joining at different times would be.
    let stride = objects.len().max(1) as f64 / viewers as f64;
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(n, conn)| {
            let first = (n as f64 * stride) as usize;
            tokio::spawn(viewer(
                conn,
                target.clone(),
                objects.clone(),
                first,
                deadline,
            ))
        })
        .collect();
    let mut load = Load::default();
    for t in tasks {
        load.add(t.await?);
    }
    let wall = start.elapsed().as_secs_f64();
    let (server1, client1) = (cpu_ticks(pids)?, cpu_ticks(&[std::process::id()])?);
    Ok(Measured {
        load,
        wall,
        server_cpu: (server1 - server0) as f64 / tick,
        client_cpu: (client1 - client0) as f64 / tick,
    })
}

// ---------------------------------------------------------------------------------------
// HTTP/1.1 client

async fn h1_connect(addr: SocketAddr) -> Result<SendRequest<Empty<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr)
        .await
        .with_context(|| format!("connect {addr}"))?;
    stream.set_nodelay(true)?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(send)
}

async fn h1_request(
    send: &mut SendRequest<Empty<Bytes>>,
    path: &str,
) -> Result<hyper::Response<hyper::body::Incoming>> {
    let req = http::Request::get(path)
        .header(http::header::HOST, "127.0.0.1")
        .body(Empty::new())?;
    send.ready().await?;
    Ok(send.send_request(req).await?)
}

/// GETs `path`: status and body.
async fn h1_get(send: &mut SendRequest<Empty<Bytes>>, path: &str) -> Result<(u16, Bytes)> {
    let res = h1_request(send, path).await?;
    let status = res.status().as_u16();
    Ok((status, res.into_body().collect().await?.to_bytes()))
}

/// GETs `path`: status and body length (the body is read and dropped chunk by chunk).
async fn h1_get_len(send: &mut SendRequest<Empty<Bytes>>, path: &str) -> Result<(u16, usize)> {
    let res = h1_request(send, path).await?;
    let status = res.status().as_u16();
    let mut body = res.into_body();
    let mut len = 0;
    while let Some(frame) = body.frame().await {
        if let Some(data) = frame?.data_ref() {
            len += data.len();
        }
    }
    Ok((status, len))
}

/// GETs a playlist, which must answer 200.
async fn text(send: &mut SendRequest<Empty<Bytes>>, path: &str) -> Result<String> {
    let (status, body) = h1_get(send, path).await?;
    if status != 200 {
        bail!("{path}: status {status}");
    }
    Ok(String::from_utf8(body.to_vec())?)
}
