//! The viewers: the LL-HLS request mix they loop over (read from the edge's playlists and
//! mirrored to nginx's root), one connection each over the protocol of the run (the
//! rehearsal's clients: hyper for HTTP/1.1 and HTTP/2, quinn and h3 for HTTP/3), and one
//! timed run.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use daihuo::playlist::{attr, part_numbers, tags};
use rehearsal::http::{Conn, Net, Proto, Server};

use crate::servers::cpu_ticks;
use crate::ROOM;

/// Wrong responses printed in full (all are counted).
const SHOWN_ERRORS: usize = 5;

/// One request of the mix every viewer loops over, and the body length it must get.
pub struct Request {
    pub path: String,
    pub len: usize,
}

/// Where a run's viewers connect, and how.
#[derive(Clone)]
pub struct Target {
    pub proto: Proto,
    pub server: Arc<Server>,
    pub net: Arc<Net>,
}

impl Target {
    async fn open(&self) -> Result<Conn> {
        Conn::open(self.proto, &self.server, &self.net, None).await
    }
}

/// The LL-HLS mix of the ended stream, as a player at the live edge asks for it: for each
/// part of each media playlist, the blocking reload that announces it
/// (`?_HLS_msn=M&_HLS_part=P`, which the edge answers at once for an ended stream, from the
/// render it shares between viewers) and the part; video and audio interleaved. Fetched
/// once from the edge over plain HTTP (which caches the parts) and written under `www` at
/// their URL paths, the playlists as the files nginx serves for any query.
pub async fn cache_mix(edge: &Target, www: &Path) -> Result<Vec<Request>> {
    let conn = edge.open().await?;
    let base = format!("/live/{ROOM}");
    let mut playlists = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(15);
    // The publish is over: every media playlist ends with ENDLIST (soon, if not yet).
    loop {
        let multivariant = text(&conn, &format!("{base}/index.m3u8")).await?;
        let mut uris: Vec<String> = tags(&multivariant, "#EXT-X-MEDIA:")
            .iter()
            .filter_map(|l| attr(l, "URI").map(str::to_string))
            .collect();
        uris.extend(
            daihuo::playlist::segments(&multivariant)
                .iter()
                .map(|s| s.to_string()),
        );
        playlists.clear();
        for uri in &uris {
            let path = format!("{base}/{uri}");
            playlists.push((path.clone(), text(&conn, &path).await?));
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

    let write = |path: &str, body: &[u8]| -> Result<()> {
        let file = www.join(path.trim_start_matches('/'));
        if let Some(parent) = file.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(&file, body)?;
        Ok(())
    };
    let mut tracks = Vec::new();
    for (path, playlist) in &playlists {
        write(path, playlist.as_bytes())?;
        let dir = path.rsplit_once('/').map_or("", |(d, _)| d);
        let mut track = Vec::new();
        for uri in tags(playlist, "#EXT-X-PART:")
            .iter()
            .filter_map(|l| attr(l, "URI"))
        {
            let Some((msn, part)) = part_numbers(uri) else {
                bail!("{path}: a part named {uri}");
            };
            let part_path = format!("{dir}/{uri}");
            let got = conn.get(&part_path).await?;
            if got.status != 200 {
                bail!("{part_path}: status {}", got.status);
            }
            write(&part_path, &got.body)?;
            track.push([
                Request {
                    path: format!("{path}?_HLS_msn={msn}&_HLS_part={part}"),
                    len: playlist.len(),
                },
                Request {
                    path: part_path,
                    len: got.body.len(),
                },
            ]);
        }
        tracks.push(track);
    }
    let longest = tracks.iter().map(Vec::len).max().unwrap_or(0);
    if longest == 0 {
        bail!("the playlists list no parts");
    }
    let mut tracks: Vec<_> = tracks.into_iter().map(Vec::into_iter).collect();
    let mut mix = Vec::new();
    for _ in 0..longest {
        for track in &mut tracks {
            mix.extend(track.next().into_iter().flatten());
        }
    }
    Ok(mix)
}

/// Checks that every target answers every request of the mix with the same bytes.
pub async fn same_bytes(mix: &[Request], targets: &[&Target]) -> Result<()> {
    let mut conns = Vec::new();
    for t in targets {
        conns.push(t.open().await?);
    }
    for r in mix {
        let mut first: Option<bytes::Bytes> = None;
        for (t, conn) in targets.iter().zip(&conns) {
            let got = conn.get(&r.path).await?;
            let same = first.as_ref().is_none_or(|b| *b == got.body);
            if got.status != 200 || got.body.len() != r.len || !same {
                bail!(
                    "{} over {} at {}: {} ({} bytes), expected {} bytes like the first",
                    r.path,
                    t.proto.name(),
                    t.server.url,
                    got.status,
                    got.body.len(),
                    r.len
                );
            }
            first.get_or_insert(got.body);
        }
    }
    Ok(())
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

    fn show(&mut self, what: String) {
        if self.shown.len() < SHOWN_ERRORS {
            self.shown.push(what);
        }
    }
}

/// One viewer: makes the mix's requests in order, starting at `first`, until `deadline`.
async fn viewer(
    mut conn: Conn,
    target: Target,
    mix: Arc<Vec<Request>>,
    first: usize,
    deadline: Instant,
) -> Load {
    let mut load = Load::default();
    let mut i = first;
    while Instant::now() < deadline {
        let r = &mix[i % mix.len()];
        i += 1;
        match conn.get(&r.path).await {
            Ok(got) if got.status == 200 && got.body.len() == r.len => {
                load.requests += 1;
                load.bytes += r.len as u64;
            }
            Ok(got) => {
                load.wrong += 1;
                load.show(format!(
                    "{}: {}, {} of {} bytes",
                    r.path,
                    got.status,
                    got.body.len(),
                    r.len
                ));
            }
            Err(e) => {
                load.failed += 1;
                load.show(format!("{}: {e:#}", r.path));
                match target.open().await {
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

/// Opens `viewers` connections, then lets them loop over `mix` for `window`.
pub async fn measure(
    target: &Target,
    pids: &[u32],
    mix: &Arc<Vec<Request>>,
    viewers: usize,
    window: Duration,
    tick: f64,
) -> Result<Measured> {
    let conns = futures::future::join_all((0..viewers).map(|_| target.open())).await;
    let conns = conns.into_iter().collect::<Result<Vec<_>>>()?;

    let (server0, client0) = (cpu_ticks(pids)?, cpu_ticks(&[std::process::id()])?);
    let start = Instant::now();
    let deadline = start + window;
    // Spread the viewers over the mix, as players joining at different times would be; a
    // playlist and its part stay together.
    let stride = (mix.len() / 2).max(1) as f64 / viewers as f64;
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(n, conn)| {
            let first = 2 * (n as f64 * stride) as usize;
            tokio::spawn(viewer(conn, target.clone(), mix.clone(), first, deadline))
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

/// GETs a playlist, which must answer 200.
async fn text(conn: &Conn, path: &str) -> Result<String> {
    let got = conn.get(path).await?;
    if got.status != 200 {
        bail!("{path}: status {}", got.status);
    }
    Ok(String::from_utf8(got.body.to_vec())?)
}
