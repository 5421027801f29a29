//! Token buckets for event intake: per client address and per room. A room bucket also
//! decides what to shed under overload: likes need it at least half full, comments a tenth,
//! cart and order events are always taken.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Buckets idle this long are forgotten when the map grows large.
const IDLE: Duration = Duration::from_secs(60);
/// Past this many keys, idle buckets are swept.
const SWEEP_AT: usize = 100_000;

struct Bucket {
    level: f64,
    last: Instant,
}

/// Buckets of `rate` tokens per second holding at most `burst`, one per key.
pub struct Limiter<K> {
    rate: f64,
    burst: f64,
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K: Hash + Eq + Clone> Limiter<K> {
    pub fn new(rate: u32, burst: u32) -> Self {
        Self {
            rate: f64::from(rate),
            burst: f64::from(burst),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes `n` tokens from `key`'s bucket if that leaves at least `floor` (a share of the
    /// burst) in it; with `force`, takes what is there and never refuses.
    pub fn take(&self, key: &K, n: u32, floor: f64, force: bool, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= SWEEP_AT {
            buckets.retain(|_, b| now.duration_since(b.last) < IDLE);
        }
        let bucket = buckets.entry(key.clone()).or_insert(Bucket {
            level: self.burst,
            last: now,
        });
        let refill = now.duration_since(bucket.last).as_secs_f64() * self.rate;
        bucket.level = (bucket.level + refill).min(self.burst);
        bucket.last = now;
        let n = f64::from(n);
        if force {
            bucket.level = (bucket.level - n).max(0.0);
            return true;
        }
        if bucket.level - n >= floor * self.burst {
            bucket.level -= n;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sheds_likes_before_comments_and_never_carts() {
        let room: Limiter<&str> = Limiter::new(100, 100);
        let t = Instant::now();
        // Half the burst goes; then likes are refused, comments still pass.
        assert!(room.take(&"r", 50, 0.5, false, t));
        assert!(!room.take(&"r", 1, 0.5, false, t));
        assert!(room.take(&"r", 30, 0.1, false, t));
        assert!(!room.take(&"r", 20, 0.1, false, t));
        // Carts are always taken, even from an empty bucket.
        assert!(room.take(&"r", 500, 0.0, true, t));
        // It refills at the rate.
        assert!(room.take(&"r", 60, 0.0, false, t + Duration::from_millis(600)));
        assert!(!room.take(&"r", 10, 0.0, false, t + Duration::from_millis(600)));
    }
}
