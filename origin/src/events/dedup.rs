//! The idempotency window: the (user, id) pairs the journal wrote within the last `window`
//! (`[events] dedup_hours`, 24 h by default). A viewer's retry, or an edge replaying its spool
//! after a crash, is recognised by its pair and written once; two users who chose the same id
//! are two events.
//!
//! On disk (redb, with a small page cache), so memory stays flat whatever the id rate, and the
//! window survives restarts. Pairs live in two generations of tables: a pair is a duplicate if
//! either holds it; new pairs go to the current one. Once the current generation is older than
//! the window it becomes the previous one and the old previous is dropped whole (one table
//! deletion, no per-pair expiry): a pair is remembered for between one and two windows.
//!
//! Kept consistent with the journal, which is the truth: each batch of durable lines' pairs is
//! stored with the journal offset it brings the index to, in one transaction, by the journal's
//! indexer thread. Those commits are not fsynced (the journal append already was); one every
//! [`DURABLE_EVERY`] is. After a crash redb is back
//! at its last durable commit, and the journal re-indexes its lines from the offset that commit
//! recorded ([`Dedup::indexed_through`]).

use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use redb::{Database, Durability, ReadableTable, TableDefinition};

/// Settings and where the index has got to.
const META: TableDefinition<&str, u64> = TableDefinition::new("meta");
/// The journal offset up to which (exclusive) every line's pair is indexed.
const INDEXED_THROUGH: &str = "indexed_through";
/// Seconds since the epoch at which the current generation started.
const CURRENT: &str = "current";
/// Seconds since the epoch at which the previous generation started (absent: none).
const PREVIOUS: &str = "previous";

/// A fsynced commit at least this often; the others are not.
const DURABLE_EVERY: Duration = Duration::from_secs(1);
/// redb's page cache: what the index may keep in memory.
const CACHE_BYTES: usize = 16 * 1024 * 1024;

/// Why the index failed.
#[derive(Debug, thiserror::Error)]
#[error("dedup index: {0}")]
pub struct DedupError(Box<redb::Error>);

fn err(e: impl Into<redb::Error>) -> DedupError {
    DedupError(Box::new(e.into()))
}

/// The name of the generation table started at `since` (seconds since the epoch).
fn generation(since: u64) -> String {
    format!("pairs-{since:020}")
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Inserts `pairs` into the generation started at `since`.
fn insert(
    txn: &redb::WriteTransaction,
    since: u64,
    pairs: &[(&str, &str)],
) -> Result<(), DedupError> {
    let name = generation(since);
    let mut table = txn
        .open_table(TableDefinition::<(&str, &str), ()>::new(&name))
        .map_err(err)?;
    for pair in pairs {
        table.insert(*pair, ()).map_err(err)?;
    }
    Ok(())
}

/// The (user, id) pairs written within the window.
pub struct Dedup {
    db: Database,
    window: Duration,
    last_durable: Mutex<Instant>,
}

impl Dedup {
    /// Opens (or creates) the index at `path`.
    pub fn open(path: &Path, window: Duration) -> Result<Self, DedupError> {
        let db = Database::builder()
            .set_cache_size(CACHE_BYTES)
            .create(path)
            .map_err(err)?;
        let txn = db.begin_write().map_err(err)?;
        {
            let mut meta = txn.open_table(META).map_err(err)?;
            if meta.get(CURRENT).map_err(err)?.is_none() {
                meta.insert(CURRENT, now_secs()).map_err(err)?;
            }
        }
        txn.commit().map_err(err)?;
        Ok(Self {
            db,
            window,
            last_durable: Mutex::new(Instant::now()),
        })
    }

    /// The journal offset up to which every line is indexed (0: nothing yet).
    pub fn indexed_through(&self) -> Result<u64, DedupError> {
        let txn = self.db.begin_read().map_err(err)?;
        let meta = txn.open_table(META).map_err(err)?;
        Ok(meta
            .get(INDEXED_THROUGH)
            .map_err(err)?
            .map_or(0, |v| v.value()))
    }

    /// Which of `pairs` the window holds.
    pub fn seen(&self, pairs: &[(&str, &str)]) -> Result<Vec<bool>, DedupError> {
        let txn = self.db.begin_read().map_err(err)?;
        let meta = txn.open_table(META).map_err(err)?;
        let mut tables = Vec::new();
        for key in [CURRENT, PREVIOUS] {
            let Some(since) = meta.get(key).map_err(err)?.map(|v| v.value()) else {
                continue;
            };
            let name = generation(since);
            match txn.open_table(TableDefinition::<(&str, &str), ()>::new(&name)) {
                Ok(t) => tables.push(t),
                Err(redb::TableError::TableDoesNotExist(_)) => {}
                Err(e) => return Err(err(e)),
            }
        }
        pairs
            .iter()
            .map(|pair| {
                for t in &tables {
                    if t.get(*pair).map_err(err)?.is_some() {
                        return Ok(true);
                    }
                }
                Ok(false)
            })
            .collect()
    }

    /// Stores `pairs`, written to the journal up to offset `through` (exclusive); turns the
    /// generations over first when the current one is older than the window.
    pub fn record(&self, pairs: &[(&str, &str)], through: u64) -> Result<(), DedupError> {
        let mut txn = self.db.begin_write().map_err(err)?;
        let mut last_durable = self.last_durable.lock().unwrap_or_else(|e| e.into_inner());
        let durable = last_durable.elapsed() >= DURABLE_EVERY;
        txn.set_durability(if durable {
            Durability::Immediate
        } else {
            Durability::None
        });
        {
            let mut meta = txn.open_table(META).map_err(err)?;
            let now = now_secs();
            let mut current = meta.get(CURRENT).map_err(err)?.map_or(now, |v| v.value());
            if now.saturating_sub(current) >= self.window.as_secs() {
                if let Some(old) = meta.get(PREVIOUS).map_err(err)?.map(|v| v.value()) {
                    let name = generation(old);
                    txn.delete_table(TableDefinition::<(&str, &str), ()>::new(&name))
                        .map_err(err)?;
                }
                meta.insert(PREVIOUS, current).map_err(err)?;
                meta.insert(CURRENT, now).map_err(err)?;
                current = now;
            }
            insert(&txn, current, pairs)?;
            meta.insert(INDEXED_THROUGH, through).map_err(err)?;
        }
        txn.commit().map_err(err)?;
        if durable {
            *last_durable = Instant::now();
        }
        Ok(())
    }

    /// Adds `pairs` learnt elsewhere (another origin's, from the bus) to the current
    /// generation, where the journal's own are; not made durable (they are learnt again from
    /// the bus after a restart).
    pub fn remember(&self, pairs: &[(&str, &str)]) -> Result<(), DedupError> {
        let mut txn = self.db.begin_write().map_err(err)?;
        txn.set_durability(Durability::None);
        {
            let meta = txn.open_table(META).map_err(err)?;
            let current = meta
                .get(CURRENT)
                .map_err(err)?
                .map_or(now_secs(), |v| v.value());
            insert(&txn, current, pairs)?;
        }
        txn.commit().map_err(err)
    }

    /// Makes every commit so far durable (at shutdown; a crash re-indexes from the journal).
    pub fn flush(&self) -> Result<(), DedupError> {
        let mut txn = self.db.begin_write().map_err(err)?;
        txn.set_durability(Durability::Immediate);
        txn.commit().map_err(err)?;
        *self.last_durable.lock().unwrap_or_else(|e| e.into_inner()) = Instant::now();
        Ok(())
    }
}

impl Drop for Dedup {
    /// A clean stop leaves nothing to re-index.
    fn drop(&mut self) {
        if let Err(e) = self.flush() {
            tracing::warn!("{e}");
        }
    }
}

impl Dedup {
    /// Makes both generations `secs` older (tests of the window).
    #[cfg(test)]
    fn age_by(&mut self, secs: u64) {
        let txn = self.db.begin_write().unwrap();
        {
            let mut meta = txn.open_table(META).unwrap();
            // The previous first: the current one may move to its old name.
            for key in [PREVIOUS, CURRENT] {
                let Some(since) = meta.get(key).unwrap().map(|v| v.value()) else {
                    continue;
                };
                let (old, new) = (generation(since), generation(since - secs));
                let pairs: Vec<(String, String)> = {
                    let t = txn
                        .open_table(TableDefinition::<(&str, &str), ()>::new(&old))
                        .unwrap();
                    t.iter()
                        .unwrap()
                        .map(|e| {
                            let (k, ()) = (e.unwrap().0, ());
                            let (u, i) = k.value();
                            (u.to_string(), i.to_string())
                        })
                        .collect()
                };
                txn.delete_table(TableDefinition::<(&str, &str), ()>::new(&old))
                    .unwrap();
                let mut t = txn
                    .open_table(TableDefinition::<(&str, &str), ()>::new(&new))
                    .unwrap();
                for (u, i) in &pairs {
                    t.insert((u.as_str(), i.as_str()), ()).unwrap();
                }
                meta.insert(key, since - secs).unwrap();
            }
        }
        txn.commit().unwrap();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_are_scoped_by_user_remembered_across_reopens_and_forgotten_after_two_windows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dedup.redb");
        let window = Duration::from_secs(3600);
        let d = Dedup::open(&path, window).unwrap();
        assert_eq!(d.indexed_through().unwrap(), 0);
        d.record(&[("alice", "c-42")], 1).unwrap();
        // Another user's c-42 is another event.
        assert_eq!(
            d.seen(&[("alice", "c-42"), ("bob", "c-42")]).unwrap(),
            [true, false]
        );
        d.flush().unwrap();
        drop(d);
        let mut d = Dedup::open(&path, window).unwrap();
        assert_eq!(d.indexed_through().unwrap(), 1);
        assert_eq!(d.seen(&[("alice", "c-42")]).unwrap(), [true]);
        // One window on: alice's pair is in the previous generation, still remembered.
        d.age_by(3600);
        d.record(&[("bob", "c-42")], 2).unwrap();
        assert_eq!(
            d.seen(&[("alice", "c-42"), ("bob", "c-42")]).unwrap(),
            [true, true]
        );
        // Another window on: alice's generation is dropped whole, bob's is the previous.
        d.age_by(3600);
        d.record(&[], 2).unwrap();
        assert_eq!(
            d.seen(&[("alice", "c-42"), ("bob", "c-42")]).unwrap(),
            [false, true]
        );
    }
}
