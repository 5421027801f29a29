//! The edge's object cache: init segments, parts and segments, bounded by bytes.
//!
//! Built on moka: entries are weighed by their length, so `cache.max_bytes` bounds media
//! memory whatever the object sizes. Misses are coalesced: however many viewers ask for one
//! object at once, one upstream fetch runs and every waiter gets its bytes when it completes
//! (moka's `try_get_with` wakes them; nothing polls). Failed fetches are not cached.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use moka::future::Cache;
use origin::store::Object;
use origin::ApiError;
use prometheus::{IntCounter, IntCounterVec, Opts};

/// What an object is, for the cache.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Key {
    pub room: String,
    pub rendition: String,
    pub object: Object,
}

/// How long an init segment may be served from cache: it changes when a stream is
/// re-published, unlike parts and segments whose numbers are never reused.
const INIT_TTL: Duration = Duration::from_secs(1);
/// How long a part or segment stays at most (it is evicted earlier under memory pressure).
const MEDIA_TTL: Duration = Duration::from_secs(300);

struct Lifetime;

impl moka::Expiry<Key, Bytes> for Lifetime {
    fn expire_after_create(&self, key: &Key, _value: &Bytes, _now: Instant) -> Option<Duration> {
        Some(match key.object {
            Object::Init => INIT_TTL,
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
        metrics.register(vec![
            Box::new(requests.clone()),
            Box::new(fetches.clone()),
            Box::new(coalesced.clone()),
        ]);
        Self {
            requests,
            fetches,
            coalesced,
        }
    }
}

/// Byte-bounded, coalescing object cache.
#[derive(Clone)]
pub struct ObjectCache {
    cache: Cache<Key, Bytes>,
    metrics: CacheMetrics,
}

impl ObjectCache {
    pub fn new(max_bytes: u64, metrics: CacheMetrics) -> Self {
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_k: &Key, v: &Bytes| u32::try_from(v.len()).unwrap_or(u32::MAX))
            .expire_after(Lifetime)
            .support_invalidation_closures()
            .build();
        Self { cache, metrics }
    }

    /// The object from cache, or fetched once by `fetch` for every concurrent asker.
    pub async fn get<F>(&self, key: Key, fetch: F) -> Result<Bytes, ApiError>
    where
        F: std::future::Future<Output = Result<Bytes, ApiError>>,
    {
        if let Some(hit) = self.cache.get(&key).await {
            self.metrics.requests.with_label_values(&["hit"]).inc();
            return Ok(hit);
        }
        self.metrics.requests.with_label_values(&["miss"]).inc();
        let fetched = AtomicBool::new(false);
        let result = self
            .cache
            .try_get_with(key, async {
                fetched.store(true, Ordering::Relaxed);
                self.metrics.fetches.inc();
                fetch.await
            })
            .await
            .map_err(|e: Arc<ApiError>| (*e).clone());
        if !fetched.load(Ordering::Relaxed) {
            self.metrics.coalesced.inc();
        }
        result
    }

    /// Drops every cached object of `room` (its numbering restarted: the old bytes under the
    /// same names are another stream's).
    pub fn forget_room(&self, room: &str) {
        let room = room.to_string();
        if let Err(e) = self.cache.invalidate_entries_if(move |k, _| k.room == room) {
            tracing::warn!("cache: cannot drop a room's objects: {e}");
        }
    }

    /// Whether `key` is cached now (a fetch in flight does not count).
    pub fn contains(&self, key: &Key) -> bool {
        self.cache.contains_key(key)
    }

    /// Bytes held now (approximate until moka runs its pending maintenance).
    pub fn weighted_size(&self) -> u64 {
        self.cache.weighted_size()
    }
}

#[cfg(test)]
mod tests;
