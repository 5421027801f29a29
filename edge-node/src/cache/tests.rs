use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use super::{CacheMetrics, Key, ObjectCache};
use bytes::Bytes;
use origin::store::Object;
use origin::ApiError;

fn cache(max_bytes: u64) -> ObjectCache {
    ObjectCache::new(max_bytes, CacheMetrics::register(&origin::Metrics::new()))
}

fn key(msn: u64) -> Key {
    Key {
        room: "demo".into(),
        rendition: "720p".into(),
        object: Object::Part { msn, index: 0 },
    }
}

#[tokio::test(start_paused = true)]
async fn concurrent_misses_make_one_fetch() {
    let cache = cache(1 << 20);
    let calls = Arc::new(AtomicUsize::new(0));
    let mut waiters = Vec::new();
    for _ in 0..200 {
        let cache = cache.clone();
        let calls = calls.clone();
        waiters.push(tokio::spawn(async move {
            cache
                .get::<_, ApiError>(key(1), async move {
                    calls.fetch_add(1, Ordering::SeqCst);
                    // The part completes a little later; every asker waits for this one fetch.
                    tokio::time::sleep(Duration::from_millis(300)).await;
                    Ok(Bytes::from_static(b"part bytes"))
                })
                .await
        }));
    }
    for w in waiters {
        assert_eq!(w.await.expect("task").expect("bytes"), "part bytes");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1);
    assert_eq!(cache.metrics.fetches.get(), 1);
    assert_eq!(
        cache.metrics.requests.with_label_values(&["miss"]).get()
            + cache.metrics.requests.with_label_values(&["hit"]).get(),
        200
    );
    // Every miss but the fetching one waited for it.
    assert_eq!(
        cache.metrics.coalesced.get() + 1,
        cache.metrics.requests.with_label_values(&["miss"]).get()
    );
    // Later askers hit.
    let again = cache
        .get(key(1), async {
            Err(ApiError::NotFound("not asked".into()))
        })
        .await;
    assert_eq!(again.expect("cached"), "part bytes");
}

#[tokio::test(start_paused = true)]
async fn failures_are_not_cached() {
    let cache = cache(1 << 20);
    let err = cache
        .get(key(2), async {
            Err(ApiError::Unavailable("origin down".into()))
        })
        .await;
    assert_eq!(err.unwrap_err().status(), 503);
    let ok = cache
        .get(key(2), async {
            Ok::<_, ApiError>(Bytes::from_static(b"x"))
        })
        .await;
    assert_eq!(ok.expect("second fetch runs"), "x");
}

#[tokio::test]
async fn memory_is_bounded_by_bytes() {
    let cache = cache(1 << 20);
    for msn in 0..100 {
        let part = Bytes::from(vec![0u8; 64 * 1024]);
        let _ = cache
            .get(key(msn), async move { Ok::<_, ApiError>(part) })
            .await;
    }
    cache.tick().await;
    assert!(
        cache.weighted_size() <= 1 << 20,
        "{}",
        cache.weighted_size()
    );
}

#[tokio::test]
async fn a_forgotten_room_is_fetched_again() {
    let cache = cache(1 << 20);
    let other = Key {
        room: "other".into(),
        ..key(1)
    };
    for k in [key(1), other.clone()] {
        cache
            .get(k, async { Ok::<_, ApiError>(Bytes::from_static(b"old")) })
            .await
            .expect("cached");
    }
    cache.forget_room("demo");
    let demo = cache
        .get(key(1), async {
            Ok::<_, ApiError>(Bytes::from_static(b"new"))
        })
        .await;
    assert_eq!(demo.expect("fetched"), "new");
    let kept = cache
        .get(other, async {
            Ok::<_, ApiError>(Bytes::from_static(b"new"))
        })
        .await;
    assert_eq!(kept.expect("cached"), "old");
}

#[tokio::test]
async fn a_resize_keeps_what_fits_and_bounds_the_rest() {
    let cache = cache(1 << 20);
    for msn in 0..8 {
        cache
            .get(key(msn), async {
                Ok::<_, ApiError>(Bytes::from(vec![0u8; 100_000]))
            })
            .await
            .expect("cached");
    }
    cache.resize(2 << 20).await;
    cache.tick().await;
    assert!((0..8).all(|msn| cache.contains(&key(msn))));
    assert_eq!(cache.metrics.bytes.get(), 800_000);
    cache.resize(300_000).await;
    cache.tick().await;
    assert!(
        cache.weighted_size() <= 300_000,
        "{}",
        cache.weighted_size()
    );
    assert!(cache.metrics.evictions.get() >= 5);
}
