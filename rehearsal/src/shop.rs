//! Shoppers: likes, comments, cart adds and orders posted at given rates through the edges
//! (`POST /live/ROOM/events`), each retried with its own id until acknowledged as a real
//! client does; feed watchers reading the server-sent event feed (`GET /live/ROOM/events`)
//! time each comment from its post to its display; and at the end a check that every
//! acknowledged cart and order is in the journal exactly once.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context, Result};
use bytes::Bytes;
use serde::Serialize;

use crate::http::{Conn, Net, Proto, Server};
use crate::Clock;

/// The kinds of events shoppers post.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Like,
    Comment,
    CartAdd,
    Order,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Like, Kind::Comment, Kind::CartAdd, Kind::Order];

    fn wire(self) -> &'static str {
        match self {
            Kind::Like => "like",
            Kind::Comment => "comment",
            Kind::CartAdd => "cart_add",
            Kind::Order => "order",
        }
    }

    fn prefix(self) -> &'static str {
        match self {
            Kind::Like => "l",
            Kind::Comment => "m",
            Kind::CartAdd => "c",
            Kind::Order => "o",
        }
    }

    /// Whether the journal must hold it exactly once (the money path).
    pub fn persisted(self) -> bool {
        matches!(self, Kind::CartAdd | Kind::Order)
    }
}

/// One posted event: who, when first sent, when acknowledged, and the failed tries' times.
#[derive(Debug, Clone)]
pub struct Posted {
    pub kind: Kind,
    pub user: String,
    pub id: String,
    pub sent: f64,
    pub acked: Option<f64>,
    pub failed_tries: Vec<f64>,
    pub last_error: Option<String>,
}

/// What the shoppers and feed watchers recorded.
#[derive(Debug, Default)]
pub struct Ledger {
    pub posted: Mutex<Vec<Posted>>,
    /// A comment's id and when it was sent, until a watcher shows it.
    pub comments_sent: Mutex<HashMap<String, f64>>,
    /// Seconds from a comment's post to its arrival on a feed.
    pub comment_latency: Mutex<Vec<f64>>,
    pub acked: AtomicU64,
    pub failed: AtomicU64,
}

/// Rates, events per second over all shoppers.
#[derive(Debug, Clone, Copy, Default)]
pub struct Rates {
    pub like: f64,
    pub comment: f64,
    pub cart: f64,
    pub order: f64,
}

impl Rates {
    fn of(&self, kind: Kind) -> f64 {
        match kind {
            Kind::Like => self.like,
            Kind::Comment => self.comment,
            Kind::CartAdd => self.cart,
            Kind::Order => self.order,
        }
    }

    pub fn any(&self) -> bool {
        Kind::ALL.iter().any(|k| self.of(*k) > 0.0)
    }
}

/// The shoppers' plan.
pub struct Plan {
    pub servers: Vec<Arc<Server>>,
    pub room: String,
    pub shoppers: usize,
    pub rates: Rates,
    pub proto: Proto,
    /// Names this run's users and ids apart from any other's.
    pub run_id: String,
    /// How long one event is retried before it counts as failed.
    pub give_up: Duration,
}

/// Posts events at the plan's rates from now until `until`; waits for the retries of those
/// posted (up to `give_up`).
pub async fn post(
    plan: Arc<Plan>,
    net: Arc<Net>,
    clock: Clock,
    ledger: Arc<Ledger>,
    until: Instant,
) {
    // One connection per shopper, spread over the edges.
    let mut conns = Vec::new();
    for i in 0..plan.shoppers.max(1) {
        let server = &plan.servers[i % plan.servers.len()];
        // Shoppers' addresses come after the viewers'.
        let n = u32::try_from(i).unwrap_or(0).wrapping_add(1 << 20);
        let local = server.client_address(n);
        conns.push(Arc::new(Lazy::new(
            plan.proto,
            server.clone(),
            net.clone(),
            local,
        )));
    }
    let seq = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    for kind in Kind::ALL {
        let rate = plan.rates.of(kind);
        if rate <= 0.0 {
            continue;
        }
        let (plan, clock, ledger, conns, seq) = (
            plan.clone(),
            clock.clone(),
            ledger.clone(),
            conns.clone(),
            seq.clone(),
        );
        tasks.spawn(async move {
            let mut posts = tokio::task::JoinSet::new();
            let mut every = tokio::time::interval(Duration::from_secs_f64(1.0 / rate));
            every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            while Instant::now() < until {
                every.tick().await;
                let n = seq.fetch_add(1, Ordering::Relaxed);
                let shopper = usize::try_from(n).unwrap_or(0) % conns.len();
                let posting = one(
                    kind,
                    n,
                    shopper,
                    conns[shopper].clone(),
                    plan.clone(),
                    clock.clone(),
                    ledger.clone(),
                );
                posts.spawn(posting);
            }
            while posts.join_next().await.is_some() {}
        });
    }
    while tasks.join_next().await.is_some() {}
}

/// A connection opened at its first use and again after it fails.
struct Lazy {
    proto: Proto,
    server: Arc<Server>,
    net: Arc<Net>,
    local: Option<std::net::IpAddr>,
    conn: tokio::sync::Mutex<Option<Arc<Conn>>>,
}

impl Lazy {
    fn new(
        proto: Proto,
        server: Arc<Server>,
        net: Arc<Net>,
        local: Option<std::net::IpAddr>,
    ) -> Self {
        Self {
            proto,
            server,
            net,
            local,
            conn: tokio::sync::Mutex::new(None),
        }
    }

    async fn get(&self) -> Result<Arc<Conn>> {
        let mut conn = self.conn.lock().await;
        if let Some(c) = conn.as_ref() {
            return Ok(c.clone());
        }
        let c = Arc::new(Conn::open(self.proto, &self.server, &self.net, self.local).await?);
        *conn = Some(c.clone());
        Ok(c)
    }

    async fn reset(&self) {
        *self.conn.lock().await = None;
    }
}

/// Posts one event until it is acknowledged or `give_up` passes.
async fn one(
    kind: Kind,
    n: u64,
    shopper: usize,
    conn: Arc<Lazy>,
    plan: Arc<Plan>,
    clock: Clock,
    ledger: Arc<Ledger>,
) {
    let user = format!("rh-{}-{shopper}", plan.run_id);
    let id = format!("{}-{}-{n}", kind.prefix(), plan.run_id);
    let mut event = serde_json::json!({"id": id, "type": kind.wire(), "user": user});
    match kind {
        Kind::Comment => event["text"] = format!("rehearsal comment {n}").into(),
        Kind::CartAdd | Kind::Order => {
            event["sku"] = "SKU-REHEARSAL".into();
            event["qty"] = 1.into();
        }
        Kind::Like => {}
    }
    let body = Bytes::from(event.to_string());
    let path = format!("/live/{}/events", plan.room);
    let first = Instant::now();
    let mut posted = Posted {
        kind,
        user,
        id: id.clone(),
        sent: clock.at(first),
        acked: None,
        failed_tries: Vec::new(),
        last_error: None,
    };
    if kind == Kind::Comment {
        ledger
            .comments_sent
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(id.clone(), posted.sent);
    }
    let mut backoff = Duration::from_millis(100);
    loop {
        let tried = Instant::now();
        let answer = match conn.get().await {
            Ok(c) => {
                let post = c.request(
                    http::Method::POST,
                    &path,
                    body.clone(),
                    &[("content-type", "application/json")],
                );
                match tokio::time::timeout(Duration::from_secs(5), post).await {
                    Ok(Ok(f)) if f.status == 202 => Ok(()),
                    Ok(Ok(f)) => Err(anyhow!(
                        "{} {}",
                        f.status,
                        String::from_utf8_lossy(&f.body).trim()
                    )),
                    Ok(Err(e)) => {
                        conn.reset().await;
                        Err(e)
                    }
                    Err(_) => {
                        conn.reset().await;
                        Err(anyhow!("no answer in 5 s"))
                    }
                }
            }
            Err(e) => Err(e),
        };
        match answer {
            Ok(()) => {
                posted.acked = Some(clock.at(Instant::now()));
                ledger.acked.fetch_add(1, Ordering::Relaxed);
                break;
            }
            Err(e) => {
                posted.failed_tries.push(clock.at(tried));
                posted.last_error = Some(format!("{e:#}"));
                if first.elapsed() + backoff > plan.give_up {
                    ledger.failed.fetch_add(1, Ordering::Relaxed);
                    break;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
        }
    }
    ledger
        .posted
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(posted);
}

/// Reads the room's feed from `server` until `until`, timing this run's comments.
pub async fn watch(
    server: Arc<Server>,
    net: Arc<Net>,
    room: String,
    clock: Clock,
    ledger: Arc<Ledger>,
    until: Instant,
) {
    let path = format!("/live/{room}/events");
    let watching = async {
        loop {
            if let Err(_e) = watch_once(&server, &net, &path, &clock, &ledger).await {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    let _ = tokio::time::timeout_at(until.into(), watching).await;
}

async fn watch_once(
    server: &Arc<Server>,
    net: &Arc<Net>,
    path: &str,
    clock: &Clock,
    ledger: &Ledger,
) -> Result<()> {
    // HTTP/2 over TLS, HTTP/1.1 over plain HTTP: what a browser's EventSource uses.
    let proto = if server.https { Proto::H2 } else { Proto::H1 };
    let conn = Conn::open(proto, server, net, None).await?;
    let mut feed = conn.stream(path).await?;
    if feed.status != 200 {
        bail!("{path}: {}", feed.status);
    }
    let mut text = String::new();
    while let Some(piece) = feed.next().await? {
        text.push_str(&String::from_utf8_lossy(&piece));
        while let Some(end) = text.find("\n\n") {
            let message: String = text.drain(..end + 2).collect();
            comment_seen(&message, clock.at(Instant::now()), ledger);
        }
    }
    Ok(())
}

/// Times a comment of this run shown in `message` (one server-sent event).
fn comment_seen(message: &str, now: f64, ledger: &Ledger) {
    if !message.lines().any(|l| l == "event: comment") {
        return;
    }
    let Some(data) = message.lines().find_map(|l| l.strip_prefix("data: ")) else {
        return;
    };
    let Ok(value) = serde_json::from_str::<serde_json::Value>(data) else {
        return;
    };
    let Some(id) = value["id"].as_str() else {
        return;
    };
    let sent = ledger
        .comments_sent
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .remove(id);
    if let Some(sent) = sent {
        ledger
            .comment_latency
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(now - sent);
    }
}

/// The money path's check: how many acknowledged carts and orders the journals hold once,
/// more than once, or not at all.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Persisted {
    pub acknowledged: u64,
    pub once: u64,
    pub duplicated: u64,
    pub missing: u64,
    /// Up to ten missing or doubled (user, id) pairs, for the operator.
    pub examples: Vec<String>,
}

/// Reads every journal (`GET {url}/events?after=N`, paged until a read waits: the journal's
/// head) and counts this run's acknowledged carts and orders in them.
pub async fn check_journals(
    journals: &[Arc<Server>],
    net: &Arc<Net>,
    run_id: &str,
    ledger: &Ledger,
) -> Result<Persisted> {
    let mut seen: HashMap<(String, String), u64> = HashMap::new();
    for journal in journals {
        let conn = Conn::open(Proto::H1, journal, net, None)
            .await
            .with_context(|| format!("journal {}", journal.url))?;
        let mut after: Option<u64> = None;
        loop {
            let path = match after {
                Some(a) => format!("/events?after={a}"),
                None => "/events".to_string(),
            };
            // The journal long-polls at its head: a read that waits is the end.
            let Ok(got) = tokio::time::timeout(Duration::from_secs(2), conn.get(&path)).await
            else {
                break;
            };
            let got = got.with_context(|| format!("journal {}{path}", journal.url))?;
            if got.status != 200 {
                bail!(
                    "journal {}{path}: {} {}",
                    journal.url,
                    got.status,
                    String::from_utf8_lossy(&got.body).trim()
                );
            }
            let text = String::from_utf8_lossy(&got.body);
            let mut read = 0;
            for line in text.lines().filter(|l| !l.is_empty()) {
                read += 1;
                let v: serde_json::Value = serde_json::from_str(line)
                    .with_context(|| format!("journal {}: a line is not JSON", journal.url))?;
                if let Some(offset) = v["offset"].as_u64() {
                    after = Some(after.map_or(offset, |a| a.max(offset)));
                }
                let event = &v["event"];
                if let (Some(user), Some(id)) = (event["user"].as_str(), event["id"].as_str()) {
                    if id.contains(run_id) {
                        *seen.entry((user.to_string(), id.to_string())).or_default() += 1;
                    }
                }
            }
            if read == 0 {
                break;
            }
        }
    }
    let posted = ledger.posted.lock().unwrap_or_else(|e| e.into_inner());
    let mut out = Persisted::default();
    for p in posted
        .iter()
        .filter(|p| p.kind.persisted() && p.acked.is_some())
    {
        out.acknowledged += 1;
        match seen
            .get(&(p.user.clone(), p.id.clone()))
            .copied()
            .unwrap_or(0)
        {
            0 => {
                out.missing += 1;
                if out.examples.len() < 10 {
                    out.examples.push(format!("missing ({}, {})", p.user, p.id));
                }
            }
            1 => out.once += 1,
            n => {
                out.duplicated += 1;
                if out.examples.len() < 10 {
                    out.examples
                        .push(format!("{n} copies of ({}, {})", p.user, p.id));
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_comment_of_this_run_is_timed_once_and_others_are_ignored() {
        let ledger = Ledger::default();
        ledger
            .comments_sent
            .lock()
            .unwrap()
            .insert("m-r1-3".into(), 10.0);
        comment_seen("event: likes\ndata: {\"count\":3}\n\n", 10.1, &ledger);
        comment_seen(
            "event: comment\ndata: {\"id\":\"m-other\",\"text\":\"x\",\"user\":\"u\"}\n\n",
            10.2,
            &ledger,
        );
        let ours = "event: comment\ndata: {\"id\":\"m-r1-3\",\"text\":\"x\",\"user\":\"u\"}\n\n";
        comment_seen(ours, 10.25, &ledger);
        comment_seen(ours, 10.5, &ledger);
        let latency = ledger.comment_latency.lock().unwrap().clone();
        assert_eq!(latency.len(), 1);
        assert!((latency[0] - 0.25).abs() < 1e-9);
    }
}
