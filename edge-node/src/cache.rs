//! The edge's object cache: init segments, parts and segments, bounded by bytes.
//!
//! Built on moka: entries are weighed by their length, so `cache.max_bytes` bounds media
//! memory whatever the object sizes. Misses are coalesced: however many viewers ask for one
//! object at once, one upstream fetch runs and every waiter gets its bytes when it completes
//! (moka's `try_get_with` wakes them; nothing polls). Failed fetches are not cached.

use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use moka::future::Cache;
use origin::store::Object;
use origin::ApiError;
use prometheus::IntCounterVec;

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

/// Byte-bounded, coalescing object cache.
#[derive(Clone)]
pub struct ObjectCache {
    cache: Cache<Key, Bytes>,
    /// `daihuo_cache_requests_total{result="hit|miss"}`.
    requests: IntCounterVec,
    /// `daihuo_upstream_fetches_total`: fetches actually started (misses minus coalesced).
    fetches: prometheus::IntCounter,
}

impl ObjectCache {
    pub fn new(max_bytes: u64, requests: IntCounterVec, fetches: prometheus::IntCounter) -> Self {
        let cache = Cache::builder()
            .max_capacity(max_bytes)
            .weigher(|_k: &Key, v: &Bytes| u32::try_from(v.len()).unwrap_or(u32::MAX))
            .expire_after(Lifetime)
            .build();
        Self {
            cache,
            requests,
            fetches,
        }
    }

    /// The object from cache, or fetched once by `fetch` for every concurrent asker.
    pub async fn get<F>(&self, key: Key, fetch: F) -> Result<Bytes, ApiError>
    where
        F: std::future::Future<Output = Result<Bytes, ApiError>>,
    {
        if let Some(hit) = self.cache.get(&key).await {
            self.requests.with_label_values(&["hit"]).inc();
            return Ok(hit);
        }
        self.requests.with_label_values(&["miss"]).inc();
        let fetches = self.fetches.clone();
        self.cache
            .try_get_with(key, async move {
                fetches.inc();
                fetch.await
            })
            .await
            .map_err(|e: Arc<ApiError>| (*e).clone())
    }

    /// Bytes held now (approximate until moka runs its pending maintenance).
    pub fn weighted_size(&self) -> u64 {
        self.cache.weighted_size()
    }
}

#[cfg(test)]
mod tests;
