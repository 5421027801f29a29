//! The edge's object cache: init segments, parts and segments, bounded by bytes.
//!
//! Built on moka: entries are weighed by their length, so `cache.max_bytes` bounds media
//! memory whatever the object sizes. Misses are coalesced: however many viewers ask for one
//! object at once, one upstream fetch runs and every waiter gets its bytes when it completes
//! (moka's `try_get_with` wakes them; nothing polls). Failed fetches are not cached.
//!
//! The bound changes on reload: a cache of the new size takes the current entries (cheap
//! `Bytes` clones) and replaces the old one; fetches in flight finish into the old one.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use moka::future::Cache;
use moka::notification::RemovalCause;
use origin::store::Object;
use prometheus::{IntCounter, IntCounterVec, IntGauge, Opts};

/// What an object is, for the cache.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub room: String,
    pub rendition: String,
    pub object: Object,
}

/// How long `init.mp4` may be served from cache: it changes when a stream is re-published,
/// unlike named init segments, parts and segments, which never change.
const INIT_TTL: Duration = Duration::from_secs(1);
/// How long a part or segment stays at most (it is evicted earlier under memory pressure).
const MEDIA_TTL: Duration = Duration::from_secs(300);

struct Lifetime;

impl moka::Expiry<Key, Bytes> for Lifetime {
    fn expire_after_create(&self, key: &Key, _value: &Bytes, _now: Instant) -> Option<Duration> {
        Some(match key.object {
            Object::Init { id: None } => INIT_TTL,
            _ => MEDIA_TTL,
        })
    }
}

/// The cache's metric families.
#[derive(Clone)]
pub struct CacheMetrics {
    /// `daihuo_cache_requests_total{result="hit|miss"}`: the hit ratio.
    pub requests: IntCounterVec,
    /// `daihuo_upstream_fetches_total`: object fetches actually started.
    pub fetches: IntCounter,
    /// `daihuo_cache_coalesced_total`: misses that waited for another asker's fetch.
    pub coalesced: IntCounter,
    /// `daihuo_cache_bytes`: bytes held (updated after fills and by [`ObjectCache::tick`]).
    pub bytes: IntGauge,
    /// `daihuo_cache_evictions_total`: objects evicted to stay within `cache.max_bytes`.
    pub evictions: IntCounter,
}

impl CacheMetrics {
    /// Creates the families in `metrics`' registry (one `/metrics` for the box).
    pub fn register(metrics: &origin::Metrics) -> Self {
        let requests = IntCounterVec::new(
            Opts::new(
                "daihuo_cache_requests_total",
                "Object cache lookups by result.",
            ),
            &["result"],
        )
        .expect("static metric definition");
        let fetches = IntCounter::new(
            "daihuo_upstream_fetches_total",
            "Objects fetched from the origin (one per object however many viewers ask at once).",
        )
        .expect("static metric definition");
        let coalesced = IntCounter::new(
            "daihuo_cache_coalesced_total",
            "Cache misses answered by another asker's fetch of the same object.",
        )
        .expect("static metric definition");
        let bytes = IntGauge::new(
            "daihuo_cache_bytes",
            "Media bytes held by the object cache.",
        )
        .expect("static metric definition");
        let evictions = IntCounter::new(
            "daihuo_cache_evictions_total",
            "Objects evicted to keep the cache within cache.max_bytes.",
        )
        .expect("static metric definition");
        metrics.register(vec![
            Box::new(requests.clone()),
            Box::new(fetches.clone()),
            Box::new(coalesced.clone()),
            Box::new(bytes.clone()),
            Box::new(evictions.clone()),
        ]);
        Self {
            requests,
            fetches,
            coalesced,
            bytes,
            evictions,
        }
    }
}

/// Byte-bounded, coalescing object cache. Clones share it.
#[derive(Clone)]
pub struct ObjectCache {
    current: Arc<ArcSwap<Cache<Key, Bytes>>>,
    metrics: CacheMetrics,
}

impl ObjectCache {
    pub fn new(max_bytes: u64, metrics: CacheMetrics) -> Self {
        let cache = build(max_bytes, &metrics);
        Self {
            current: Arc::new(ArcSwap::from_pointee(cache)),
            metrics,
        }
    }

    /// Bounds the cache by `max_bytes` from now on, keeping what fits.
    pub async fn resize(&self, max_bytes: u64) {
        let next = build(max_bytes, &self.metrics);
        let old = self.current.load_full();
        for (key, value) in old.iter() {
            next.insert((*key).clone(), value).await;
        }
        self.current.store(Arc::new(next));
        tracing::info!(max_bytes, "object cache resized");
    }

    /// Runs moka's pending housekeeping and updates `daihuo_cache_bytes`.
    pub async fn tick(&self) {
        let cache = self.current.load_full();
        cache.run_pending_tasks().await;
        self.metrics.bytes.set(cache.weighted_size() as i64);
    }

    /// The object from cache, or fetched once by `fetch` for every concurrent asker (who all
    /// get its error, if it fails).
    pub async fn get<F, E>(&self, key: Key, fetch: F) -> Result<Bytes, E>
    where
        F: std::future::Future<Output = Result<Bytes, E>>,
        E: Clone + Send + Sync + 'static,
    {
        let cache = self.current.load_full();
        if let Some(hit) = cache.get(&key).await {
            self.metrics.requests.with_label_values(&["hit"]).inc();
            return Ok(hit);
        }
        self.metrics.requests.with_label_values(&["miss"]).inc();
        let fetched = AtomicBool::new(false);
        let result = cache
            .try_get_with(key, async {
                fetched.store(true, Ordering::Relaxed);
                self.metrics.fetches.inc();
                fetch.await
            })
            .await
            .map_err(|e: Arc<E>| (*e).clone());
        if !fetched.load(Ordering::Relaxed) {
            self.metrics.coalesced.inc();
        }
        result
    }

    /// Drops every cached object of `room` (its numbering restarted: the old bytes under the
    /// same names are another stream's).
    pub fn forget_room(&self, room: &str) {
        let room = room.to_string();
        let cache = self.current.load();
        if let Err(e) = cache.invalidate_entries_if(move |k, _| k.room == room) {
            tracing::warn!("cache: cannot drop a room's objects: {e}");
        }
    }

    /// Whether `key` is cached now (a fetch in flight does not count).
    pub fn contains(&self, key: &Key) -> bool {
        self.current.load().contains_key(key)
    }

    /// Bytes held now (approximate until moka runs its pending maintenance).
    pub fn weighted_size(&self) -> u64 {
        self.current.load().weighted_size()
    }
}

fn build(max_bytes: u64, metrics: &CacheMetrics) -> Cache<Key, Bytes> {
    let evictions = metrics.evictions.clone();
    Cache::builder()
        .max_capacity(max_bytes)
        .weigher(|_k: &Key, v: &Bytes| u32::try_from(v.len()).unwrap_or(u32::MAX))
        .expire_after(Lifetime)
        .eviction_listener(move |_k, _v, cause| {
            if cause == RemovalCause::Size {
                evictions.inc();
            }
        })
        .support_invalidation_closures()
        .build()
}

#[cfg(test)]
mod tests;
