//! The edge's durable spool: cart, order and comment events and merged like counts, written
//! to an embedded crash-safe store (redb) before the viewer gets 202, and deleted only when
//! the origin acknowledged them. One writer thread groups concurrent writes into one
//! transaction, so one fsync serves every viewer waiting at that moment (group commit).

use std::collections::VecDeque;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition};
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::{mpsc, oneshot, Notify};

const TABLE: TableDefinition<u64, &[u8]> = TableDefinition::new("spool");
/// Writes waiting for the writer thread; beyond, posters wait (backpressure).
const QUEUE: usize = 4096;
/// Most waiting writes grouped into one transaction.
const GROUP: usize = 1024;

/// Why the spool failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SpoolError {
    /// The spool file could not be opened or created.
    #[error("spool {path}: {source}")]
    Open {
        path: String,
        source: Arc<dyn std::error::Error + Send + Sync>,
    },
    /// The store refused a read or a write (a full disk, an I/O error).
    #[error("spool: {0}")]
    Store(Arc<redb::Error>),
    /// The spool was closed (the edge is stopping).
    #[error("spool writer stopped")]
    Stopped,
    /// Taking more would pass `[events] spool_max_bytes`: the viewer retries later.
    #[error("the spool is full ({0} bytes waiting for the origin)")]
    Full(u64),
}

/// A store error, shared by every writer of a group commit.
fn store(e: impl Into<redb::Error>) -> SpoolError {
    SpoolError::Store(Arc::new(e.into()))
}

/// An error opening the spool at `path`.
fn opening(path: &Path) -> impl Fn(Box<dyn std::error::Error + Send + Sync>) -> SpoolError + '_ {
    move |source| SpoolError::Open {
        path: path.display().to_string(),
        source: Arc::from(source),
    }
}

struct Write {
    items: Vec<Vec<u8>>,
    done: oneshot::Sender<Result<(), SpoolError>>,
}

/// The spool; shared. [`Spool::close`] releases the file (redb locks it while open).
pub struct Spool {
    db: std::sync::RwLock<Option<Arc<Database>>>,
    writes: std::sync::Mutex<Option<mpsc::Sender<Write>>>,
    writer: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
    /// Woken after every commit (the forwarder sleeps on it).
    pub written: Arc<Notify>,
    /// Bytes of the records held.
    bytes: Arc<AtomicU64>,
    /// Most bytes it takes (`[events] spool_max_bytes`); reloadable.
    max_bytes: AtomicU64,
    /// The first key of each commit and when it was made, oldest first (what [`Spool::waited`]
    /// reads; trimmed as the oldest records leave).
    commits: Arc<Mutex<VecDeque<(u64, Instant)>>>,
}

impl Spool {
    /// Opens (or creates) the spool file and starts its writer thread.
    pub fn open(path: &Path) -> Result<Arc<Self>, SpoolError> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| opening(path)(e.into()))?;
        }
        let db = Database::create(path).map_err(|e| opening(path)(e.into()))?;
        // Create the table so readers never meet a missing one.
        let txn = db.begin_write().map_err(|e| opening(path)(e.into()))?;
        let (next, held) = {
            let table = txn.open_table(TABLE).map_err(|e| opening(path)(e.into()))?;
            let last = table
                .last()
                .map_err(|e| opening(path)(e.into()))?
                .map(|(k, _)| k.value());
            let mut held = 0u64;
            for item in table.iter().map_err(|e| opening(path)(e.into()))? {
                let (_, v) = item.map_err(|e| opening(path)(e.into()))?;
                held += v.value().len() as u64;
            }
            (last.map_or(0, |k| k + 1), held)
        };
        txn.commit().map_err(|e| opening(path)(e.into()))?;
        let db = Arc::new(db);
        let (writes, rx) = mpsc::channel(QUEUE);
        let written = Arc::new(Notify::new());
        let bytes = Arc::new(AtomicU64::new(held));
        // Records from before this process count as written when the spool opened.
        let commits = Arc::new(Mutex::new(VecDeque::from_iter(
            (held > 0).then(|| (0, Instant::now())),
        )));
        let writer_state = (db.clone(), written.clone(), bytes.clone(), commits.clone());
        let thread = std::thread::Builder::new()
            .name("spool-writer".into())
            .spawn(move || writer(writer_state, rx, next))
            .map_err(|e| opening(path)(e.into()))?;
        Ok(Arc::new(Self {
            db: std::sync::RwLock::new(Some(db)),
            writes: std::sync::Mutex::new(Some(writes)),
            writer: std::sync::Mutex::new(Some(thread)),
            written,
            bytes,
            max_bytes: AtomicU64::new(u64::MAX),
            commits,
        }))
    }

    /// Stops taking writes, waits for the writer to commit what it has, makes the last
    /// deletions durable, and releases the file (once reads in flight finish). Later calls
    /// fail with [`SpoolError::Stopped`].
    pub fn close(&self) {
        drop(self.writes.lock().unwrap_or_else(|e| e.into_inner()).take());
        let thread = self.writer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(thread) = thread {
            let _ = thread.join();
        }
        if let Some(db) = self.db.write().unwrap_or_else(|e| e.into_inner()).take() {
            // An empty durable commit persists the non-durable deletions before it.
            let synced = db
                .begin_write()
                .map_err(store)
                .and_then(|t| t.commit().map_err(store));
            if let Err(e) = synced {
                tracing::warn!(
                    "spool: the last deletions were not synced ({e}); they will be sent again"
                );
            }
        }
    }

    fn database(&self) -> Result<Arc<Database>, SpoolError> {
        self.db
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(SpoolError::Stopped)
    }

    /// Takes at most `max` bytes of records from now on.
    pub fn set_max_bytes(&self, max: u64) {
        self.max_bytes.store(max, Ordering::Relaxed);
    }

    /// Bytes of the records held.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// How long the record under key `oldest`, the oldest held, has waited: since its commit
    /// (for a record from before this process started, since the spool was opened).
    fn waited(&self, oldest: u64) -> Duration {
        let mut commits = self.commits.lock().unwrap_or_else(|e| e.into_inner());
        while commits.len() > 1 && commits[1].0 <= oldest {
            commits.pop_front();
        }
        commits
            .front()
            .filter(|(first, _)| *first <= oldest)
            .map_or(Duration::ZERO, |(_, at)| at.elapsed())
    }

    /// How long the oldest record held has waited (zero for an empty spool), read from the
    /// store, whatever the forwarder has read or sent lately. Blocking.
    pub fn oldest_waited(&self) -> Result<Duration, SpoolError> {
        let txn = self.database()?.begin_read().map_err(store)?;
        let table = txn.open_table(TABLE).map_err(store)?;
        let first = table.first().map_err(store)?.map(|(k, _)| k.value());
        Ok(first.map_or(Duration::ZERO, |k| self.waited(k)))
    }

    /// Stores `items` durably; returns once committed.
    pub async fn write(&self, items: Vec<Vec<u8>>) -> Result<(), SpoolError> {
        let size: u64 = items.iter().map(|i| i.len() as u64).sum();
        let held = self.bytes();
        if held.saturating_add(size) > self.max_bytes.load(Ordering::Relaxed) {
            return Err(SpoolError::Full(held));
        }
        let (done, wait) = oneshot::channel();
        let writes = self
            .writes
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
            .ok_or(SpoolError::Stopped)?;
        writes
            .send(Write { items, done })
            .await
            .map_err(|_| SpoolError::Stopped)?;
        wait.await.map_err(|_| SpoolError::Stopped)?
    }

    /// Up to `n` oldest items with their keys. Blocking.
    pub fn oldest(&self, n: usize) -> Result<Vec<(u64, Vec<u8>)>, SpoolError> {
        self.oldest_after(None, n)
    }

    /// Up to `n` of the oldest records whose keys come after `after`.
    pub fn oldest_after(
        &self,
        after: Option<u64>,
        n: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, SpoolError> {
        let txn = self.database()?.begin_read().map_err(store)?;
        let table = txn.open_table(TABLE).map_err(store)?;
        let mut out = Vec::new();
        let from = after.map_or(0, |a| a.saturating_add(1));
        for item in table.range(from..).map_err(store)?.take(n) {
            let (k, v) = item.map_err(store)?;
            out.push((k.value(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// Deletes acknowledged items. Blocking.
    ///
    /// A deletion is not fsynced on its own: the next write's commit makes it durable (a
    /// deletion that empties the spool is fsynced at once). A crash before then only brings
    /// those records back, never loses one (every write is an fsynced commit, which persists
    /// the deletions before it): they are sent again and the origin drops them as duplicates
    /// by (user, id) (a dead letter is refused and filed again). So deletions never hold
    /// redb's one write transaction across an fsync that posters wait behind.
    pub fn remove(&self, keys: &[u64]) -> Result<(), SpoolError> {
        let mut txn = self.database()?.begin_write().map_err(store)?;
        {
            let mut table = txn.open_table(TABLE).map_err(store)?;
            let mut freed = 0u64;
            for k in keys {
                if let Some(v) = table.remove(k).map_err(store)? {
                    freed += v.value().len() as u64;
                }
            }
            let empties = table.is_empty().map_err(store)?;
            drop(table);
            if !empties {
                txn.set_durability(redb::Durability::None);
            }
            txn.commit().map_err(store)?;
            self.bytes
                .fetch_sub(freed.min(self.bytes()), Ordering::Relaxed);
        }
        Ok(())
    }

    /// Items waiting. Blocking.
    pub fn waiting(&self) -> Result<u64, SpoolError> {
        let txn = self.database()?.begin_read().map_err(store)?;
        let table = txn.open_table(TABLE).map_err(store)?;
        table.len().map_err(store)
    }
}

/// Commits queued writes, grouping whatever waits into one transaction.
type WriterState = (
    Arc<Database>,
    Arc<Notify>,
    Arc<AtomicU64>,
    Arc<Mutex<VecDeque<(u64, Instant)>>>,
);

fn writer(state: WriterState, mut rx: mpsc::Receiver<Write>, mut next: u64) {
    let (db, wake, bytes, commits) = state;
    while let Some(first) = rx.blocking_recv() {
        let mut group = vec![first];
        while group.len() < GROUP {
            match rx.try_recv() {
                Ok(w) => group.push(w),
                Err(_) => break,
            }
        }
        let start = next;
        let result = (|| -> Result<(), SpoolError> {
            let txn = db.begin_write().map_err(store)?;
            {
                let mut table = txn.open_table(TABLE).map_err(store)?;
                for w in &group {
                    for item in &w.items {
                        table.insert(next, item.as_slice()).map_err(store)?;
                        next += 1;
                    }
                }
            }
            txn.commit().map_err(store)
        })();
        if result.is_err() {
            next = start;
        } else {
            let size: u64 = group
                .iter()
                .flat_map(|w| &w.items)
                .map(|i| i.len() as u64)
                .sum();
            bytes.fetch_add(size, Ordering::Relaxed);
            commits
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push_back((start, Instant::now()));
        }
        for w in group {
            let _ = w.done.send(result.clone());
        }
        wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_survive_a_reopen_until_removed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spool.redb");
        {
            let spool = Spool::open(&path).unwrap();
            let writers: Vec<_> = (0..50u8)
                .map(|i| {
                    let spool = spool.clone();
                    tokio::spawn(async move { spool.write(vec![vec![i]]).await })
                })
                .collect();
            for w in writers {
                w.await.unwrap().unwrap();
            }
            assert_eq!(spool.waiting().unwrap(), 50);
            let first = spool.oldest(10).unwrap();
            spool
                .remove(&first.iter().map(|(k, _)| *k).collect::<Vec<_>>())
                .unwrap();
            spool.close();
            assert!(spool.write(vec![b"late".to_vec()]).await.is_err());
        }
        let spool = Spool::open(&path).unwrap();
        assert_eq!(spool.waiting().unwrap(), 40);
        spool.write(vec![b"next".to_vec()]).await.unwrap();
        let all = spool.oldest(100).unwrap();
        assert_eq!(all.len(), 41);
        assert!(all.windows(2).all(|w| w[0].0 < w[1].0));
        assert_eq!(all.last().unwrap().1, b"next");
    }

    /// The oldest record's wait runs from its commit; once it leaves, the next oldest's
    /// (a later commit) is what counts; an empty spool has waited nothing.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_oldest_records_wait_counts_from_its_commit() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(&dir.path().join("spool.redb")).unwrap();
        assert_eq!(spool.waited(0), Duration::ZERO);
        spool
            .write(vec![b"a".to_vec(), b"b".to_vec()])
            .await
            .unwrap();
        std::thread::sleep(Duration::from_secs(1));
        spool.write(vec![b"c".to_vec()]).await.unwrap();
        let first = spool.waited(0);
        assert!(first >= Duration::from_secs(1), "{first:?}");
        // Read from the store: the newest record leaving changes nothing.
        spool.remove(&[2]).unwrap();
        assert!(spool.oldest_waited().unwrap() >= first);
        spool.write(vec![b"c".to_vec()]).await.unwrap();
        // The oldest leaving does, whoever reads.
        spool.remove(&[0, 1]).unwrap();
        let next = spool.oldest_waited().unwrap();
        assert!(next < first, "{next:?} after {first:?}");
        // Records from before a restart count from the reopen.
        spool.close();
        let spool = Spool::open(&dir.path().join("spool.redb")).unwrap();
        assert!(spool.waited(2) < first);
        assert_eq!(spool.oldest(10).unwrap().len(), 1);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_full_spool_refuses_more_until_records_leave_and_reads_go_on_past_a_key() {
        let dir = tempfile::tempdir().unwrap();
        let spool = Spool::open(&dir.path().join("spool.redb")).unwrap();
        spool.set_max_bytes(10);
        spool.write(vec![b"12345678".to_vec()]).await.unwrap();
        assert!(matches!(
            spool.write(vec![b"12345".to_vec()]).await,
            Err(SpoolError::Full(8))
        ));
        let held = spool.oldest(10).unwrap();
        spool.remove(&[held[0].0]).unwrap();
        assert_eq!(spool.bytes(), 0);
        spool.set_max_bytes(1000);
        spool
            .write(vec![b"a".to_vec(), b"b".to_vec(), b"c".to_vec()])
            .await
            .unwrap();
        let all = spool.oldest(10).unwrap();
        let after_first = spool.oldest_after(Some(all[0].0), 10).unwrap();
        assert_eq!(after_first, all[1..]);
        spool.close();
    }
}
