//! The `journal` sink: events as append-only JSON lines in files under the state directory,
//! each line `{"offset":N,"room":...,"event":{...}}`, fsynced before the append is
//! acknowledged. An event is written once per (user, id) within the idempotency window
//! ([`Dedup`], `[events] dedup_hours`): an event relayed again after any crash (the edge's
//! spool replays what it did not see acknowledged) or retried by its viewer is recognised.
//!
//! Appends are group-committed: each writes its lines under the journal's lock, then waits
//! outside it for an fsync that covers them; one waiter at a time runs the fsync for all that
//! are written by then (so many concurrent one-event appends share one fsync). An fsync that
//! fails rolls the file back to the last one that succeeded and fails every append past it.
//! Readers and sinks only ever see lines an fsync covered. The (user, id) pairs of durable
//! lines reach the index on its own thread; until then they are checked in memory
//! ([`Unindexed`]), so the index's commits are never on an acknowledgement's path.
//!
//! Readers consume with [`Journal::read`] from an offset (`GET /events?after=N` long-polls on
//! [`Journal::subscribe`]); a read seeks to a point at most [`SEEK_EVERY`] lines before its
//! offset instead of scanning its file, so the feed of a long show stays as fast as at its
//! start. Files roll over at [`FILE_BYTES`]; whole files are deleted, oldest first, by
//! [`Journal::trim`] once older or beyond what [`Retention`] keeps (never the file being
//! written, nor one holding offsets a sink has not published). A read from a deleted offset
//! gets [`JournalError::Trimmed`] (410 on the API).

use std::collections::{HashMap, HashSet};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use serde::Serialize;
use tokio::sync::watch;

use super::dedup::{Dedup, DedupError};
use super::model::Record;

/// A journal file rolls over past this many bytes.
pub const FILE_BYTES: u64 = 64 * 1024 * 1024;
/// A seek point every this many lines of a file.
pub const SEEK_EVERY: u64 = 256;

/// Why the journal failed (the intake answers 503 and the edge retries).
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("journal {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Dedup(#[from] DedupError),
    #[error("journal {path} line {line}: {why}")]
    Corrupt {
        path: String,
        line: usize,
        why: String,
    },
    /// The offset asked for was deleted by retention.
    #[error(
        "offset {asked} was deleted by retention ([events] retain_hours, retain_bytes); the \
         oldest kept is {oldest}: read from after={}",
        oldest.saturating_sub(1)
    )]
    Trimmed { asked: u64, oldest: u64 },
    /// An fsync failed after these lines were written; they were cut off again.
    #[error("journal not durable (rolled back): {0}")]
    RolledBack(String),
    #[error("journal closed (shutting down)")]
    Closed,
    /// The dedup index has not taken the last this many pairs for a while.
    #[error("the dedup index is {0} events behind the journal; not taking more for now")]
    IndexBehind(usize),
}

/// What the journal keeps (`[events] retain_hours`, `retain_bytes`): a file goes once its
/// last line is older than `max_age`, or while the journal is bigger than `max_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Retention {
    pub max_age: Option<Duration>,
    pub max_bytes: Option<u64>,
}

/// A journal file [`Journal::trim`] deleted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deleted {
    pub file: String,
    /// Its offsets, `first..end`.
    pub first: u64,
    pub end: u64,
    pub bytes: u64,
    pub why: &'static str,
}

#[derive(Serialize)]
struct Line<'a> {
    offset: u64,
    room: &'a str,
    event: &'a super::model::Event,
}

struct Inner {
    dir: PathBuf,
    /// First offsets of the files, in order (the last is being written).
    files: Vec<u64>,
    /// Shared with the fsync that runs outside the lock.
    file: Arc<File>,
    file_bytes: u64,
    /// A file rolls over past this many bytes ([`FILE_BYTES`]; tests make it small).
    roll_at: u64,
    next: u64,
    /// What the last fsync covered: the next offset and the bytes of the file being written.
    durable: (u64, u64),
    /// How many roll-backs there have been: an append waits for its fsync in its epoch.
    epoch: usize,
    /// Per file (by its first offset): (offset, byte position) of every [`SEEK_EVERY`]th line,
    /// from the file's first. Built as lines are written, or by one scan at a first read.
    seeks: HashMap<u64, Vec<(u64, u64)>>,
    /// Taken away by [`Journal::close`].
    dedup: Option<Arc<Dedup>>,
}

/// The pairs of lines written that the index has not taken yet, with their offsets.
#[derive(Default)]
struct Unindexed {
    pairs: HashMap<(String, String), u64>,
    /// Lines before this offset are durable: the indexer takes their pairs.
    durable: u64,
}

/// Where the group commit is.
struct Synced {
    /// Every line before this offset is durable.
    next: u64,
    /// A waiter is running the fsync.
    leader: bool,
    /// Per epoch, the offset its roll-back went back to, and why.
    rolled_back: Vec<(u64, String)>,
}

impl Synced {
    /// For lines before `end` written in `epoch`: `Ok` once durable, an error if they were
    /// rolled back, `None` while neither.
    fn covers(&self, end: u64, epoch: usize) -> Option<Result<(), JournalError>> {
        if let Some((point, why)) = self.rolled_back.get(epoch) {
            return Some(match end <= *point {
                true => Ok(()),
                false => Err(JournalError::RolledBack(why.clone())),
            });
        }
        (self.next >= end).then_some(Ok(()))
    }
}

/// The thread that hands durable lines' pairs to the index.
struct Indexer {
    wake: mpsc::Sender<()>,
    thread: std::thread::JoinHandle<()>,
}

/// An append-only, deduplicating event journal.
pub struct Journal {
    inner: Mutex<Inner>,
    unindexed: Arc<Mutex<Unindexed>>,
    synced: Mutex<Synced>,
    synced_changed: Condvar,
    /// The next offset to be made durable, for long-poll readers.
    written: watch::Sender<u64>,
    indexer: Mutex<Option<Indexer>>,
    /// Tests make fsyncs fail.
    #[cfg(test)]
    fail_syncs: std::sync::atomic::AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Appended {
    pub accepted: usize,
    pub duplicates: usize,
    /// The journal lines before this offset hold the batch (its new events and the first
    /// copies of its duplicates): what a sink must have before the batch is acknowledged.
    pub end: u64,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> JournalError + '_ {
    move |source| JournalError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn file_name(first: u64) -> String {
    format!("journal-{first:020}.jsonl")
}

impl Journal {
    /// Opens (or creates) the journal in `dir` with an idempotency window of `window`,
    /// indexing the lines the index has not got yet and cutting off a last line that a crash
    /// left half-written.
    pub fn open(dir: &Path, window: std::time::Duration) -> Result<Self, JournalError> {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
        let mut files: Vec<u64> = std::fs::read_dir(dir)
            .map_err(io(dir))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_prefix("journal-")?
                    .strip_suffix(".jsonl")?
                    .parse()
                    .ok()
            })
            .collect();
        files.sort_unstable();
        if files.is_empty() {
            files.push(0);
        }
        let dedup = Dedup::open(&dir.join("dedup.redb"), window)?;
        let indexed = dedup.indexed_through()?;
        let mut pairs: Vec<(String, String)> = Vec::new();
        let mut seeks = HashMap::new();
        let mut next = files[0];
        let last = files.len() - 1;
        let mut kept_bytes = 0;
        // Files before the one holding the first line not indexed are not read at all.
        let skip = files
            .iter()
            .rposition(|f| *f <= indexed)
            .unwrap_or(0)
            .min(last);
        if skip > 0 {
            next = files[skip];
        }
        for (i, first) in files.iter().enumerate().skip(skip) {
            let path = dir.join(file_name(*first));
            let file = match File::open(&path) {
                Ok(f) => f,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound && i == last => continue,
                Err(e) => return Err(io(&path)(e)),
            };
            let mut reader = BufReader::new(file);
            let mut line = String::new();
            let mut good = 0u64;
            let mut number = 0;
            let mut file_seeks = Vec::new();
            loop {
                line.clear();
                let n = reader.read_line(&mut line).map_err(io(&path))?;
                if n == 0 {
                    break;
                }
                number += 1;
                let complete = line.ends_with('\n');
                let parsed = serde_json::from_str::<serde_json::Value>(line.trim_end());
                match (complete, parsed) {
                    (true, Ok(v)) => {
                        let offset = v["offset"].as_u64().unwrap_or(next);
                        if (offset - first) % SEEK_EVERY == 0 {
                            file_seeks.push((offset, good));
                        }
                        if offset >= indexed {
                            let field =
                                |k: &str| v["event"][k].as_str().unwrap_or_default().to_string();
                            pairs.push((field("user"), field("id")));
                        }
                        next = offset + 1;
                        good += n as u64;
                    }
                    // A torn last line: the append was never acknowledged; drop it.
                    _ if i == last => break,
                    (_, parsed) => {
                        return Err(JournalError::Corrupt {
                            path: path.display().to_string(),
                            line: number,
                            why: parsed
                                .err()
                                .map_or("unterminated".into(), |e| e.to_string()),
                        })
                    }
                }
            }
            if i == last {
                kept_bytes = good;
            }
            seeks.insert(*first, file_seeks);
        }
        let path = dir.join(file_name(files[last]));
        let mut file = OpenOptions::new()
            .create(true)
            .append(false)
            .write(true)
            .read(true)
            .truncate(false)
            .open(&path)
            .map_err(io(&path))?;
        file.set_len(kept_bytes).map_err(io(&path))?;
        file.seek(SeekFrom::Start(kept_bytes)).map_err(io(&path))?;
        if indexed > next {
            tracing::warn!(
                indexed,
                next,
                "the journal ends before what its dedup index has seen: lines were lost"
            );
        }
        if !pairs.is_empty() || indexed != next {
            let refs: Vec<(&str, &str)> = pairs
                .iter()
                .map(|(u, i)| (u.as_str(), i.as_str()))
                .collect();
            dedup.record(&refs, next)?;
            dedup.flush()?;
        }
        let dedup = Arc::new(dedup);
        let unindexed = Arc::new(Mutex::new(Unindexed {
            pairs: HashMap::new(),
            durable: next,
        }));
        let (wake, woken) = mpsc::channel();
        let thread = {
            let (dedup, unindexed) = (dedup.clone(), unindexed.clone());
            std::thread::Builder::new()
                .name("journal-index".into())
                .spawn(move || index(&dedup, &unindexed, &woken))
                .map_err(io(dir))?
        };
        Ok(Self {
            inner: Mutex::new(Inner {
                dir: dir.to_path_buf(),
                files,
                file: Arc::new(file),
                file_bytes: kept_bytes,
                roll_at: FILE_BYTES,
                next,
                durable: (next, kept_bytes),
                epoch: 0,
                seeks,
                dedup: Some(dedup),
            }),
            unindexed,
            synced: Mutex::new(Synced {
                next,
                leader: false,
                rolled_back: Vec::new(),
            }),
            synced_changed: Condvar::new(),
            written: watch::Sender::new(next),
            indexer: Mutex::new(Some(Indexer { wake, thread })),
            #[cfg(test)]
            fail_syncs: Default::default(),
        })
    }

    /// Appends the records whose (user, id) it has not seen within the window and returns
    /// once an fsync covers them (and the earlier lines any duplicates among them repeat). A
    /// failed write or fsync is cut off again before the error returns, so what follows is
    /// never behind a torn line. Blocking: call from a blocking thread.
    pub fn append(&self, records: &[Record]) -> Result<Appended, JournalError> {
        self.wait_for_index()?;
        let (done, epoch) = self.write(records)?;
        self.wait_durable(done.end, epoch)?;
        Ok(done)
    }

    /// Holds an append while the index is [`MAX_UNINDEXED`] pairs behind (writes faster than
    /// redb takes them, in bulk): memory stays bounded. Fails after [`INDEX_WAIT`] (a failing
    /// index; the edge sends the batch again).
    fn wait_for_index(&self) -> Result<(), JournalError> {
        let started = std::time::Instant::now();
        while lock(&self.unindexed).pairs.len() > MAX_UNINDEXED {
            if started.elapsed() > INDEX_WAIT {
                return Err(JournalError::IndexBehind(MAX_UNINDEXED));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        Ok(())
    }

    /// Writes the new lines without an fsync; returns what it did (with the offset that must
    /// be durable before the append is acknowledged) and the epoch it was written in.
    fn write(&self, records: &[Record]) -> Result<(Appended, usize), JournalError> {
        let mut inner = lock(&self.inner);
        let dedup = inner.dedup.clone().ok_or(JournalError::Closed)?;
        if inner.file_bytes >= inner.roll_at {
            self.roll(&mut inner)?;
        }
        let pairs: Vec<(&str, &str)> = records
            .iter()
            .map(|r| (r.event.user.as_str(), r.event.id.as_str()))
            .collect();
        // Locked before the index is read: the indexer lets go of pairs only once its commit
        // is there to be read.
        let mut unindexed = lock(&self.unindexed);
        let indexed = dedup.seen(&pairs)?;
        let mut done = Appended::default();
        // A duplicate of a line not yet durable is acknowledged with it, not before; one of an
        // indexed line, once what is durable now is on the sink.
        let mut wait_for = 0;
        let mut fresh: HashSet<(&str, &str)> = HashSet::new();
        let mut out = Vec::new();
        let mut offsets = Vec::new();
        let file_first = *inner.files.last().unwrap_or(&0);
        let mut new_seeks = Vec::new();
        let mut next = inner.next;
        for ((r, pair), indexed) in records.iter().zip(&pairs).zip(indexed) {
            let written = (!unindexed.pairs.is_empty())
                .then(|| {
                    let key = (pair.0.to_string(), pair.1.to_string());
                    unindexed.pairs.get(&key).copied()
                })
                .flatten();
            if let Some(at) = written {
                wait_for = wait_for.max(at + 1);
            } else if indexed {
                wait_for = wait_for.max(inner.durable.0);
            }
            if indexed || written.is_some() || !fresh.insert(*pair) {
                done.duplicates += 1;
                continue;
            }
            let line = Line {
                offset: next,
                room: &r.room,
                event: &r.event,
            };
            let at = inner.file_bytes + out.len() as u64;
            // Serializing plain data cannot fail.
            if serde_json::to_writer(&mut out, &line).is_ok() {
                if (next - file_first) % SEEK_EVERY == 0 {
                    new_seeks.push((next, at));
                }
                out.push(b'\n');
                offsets.push((*pair, next));
                next += 1;
                done.accepted += 1;
            }
        }
        done.end = wait_for;
        if done.accepted == 0 {
            return Ok((done, inner.epoch));
        }
        if let Err(e) = (&*inner.file).write_all(&out) {
            // Disk full, an I/O error: cut the part that may have been written, so the next
            // append follows whole lines (the edge retries this batch).
            let keep = inner.file_bytes;
            let _ = inner.file.set_len(keep);
            let _ = (&*inner.file).seek(SeekFrom::Start(keep));
            return Err(io(&inner.dir.join(file_name(file_first)))(e));
        }
        inner.file_bytes += out.len() as u64;
        inner.next = next;
        inner.seeks.entry(file_first).or_default().extend(new_seeks);
        for ((user, id), offset) in offsets {
            unindexed
                .pairs
                .insert((user.to_string(), id.to_string()), offset);
        }
        done.end = next;
        Ok((done, inner.epoch))
    }

    /// [`Journal::append`] for async callers. The lines are written on a blocking thread; the
    /// wait for their fsync is a task's, not a parked thread's, so an fsync that ends wakes
    /// tasks (cheap), not one thread per poster (on two cores, 64 posters' threads woken at
    /// every fsync cost more than the fsync).
    ///
    /// The append runs as a task of its own: a caller that goes away (a request dropped)
    /// does not leave lines written and never fsynced, which the sink and the feed would not
    /// see until some other append's fsync.
    pub async fn append_async(
        self: &Arc<Self>,
        records: Vec<Record>,
    ) -> Result<Appended, JournalError> {
        tokio::spawn(self.clone().append_task(records))
            .await
            .map_err(|_| JournalError::Closed)?
    }

    async fn append_task(self: Arc<Self>, records: Vec<Record>) -> Result<Appended, JournalError> {
        let journal = self.clone();
        let (done, epoch) = tokio::task::spawn_blocking(move || {
            journal.wait_for_index()?;
            journal.write(&records)
        })
        .await
        .map_err(|_| JournalError::Closed)??;
        let mut changed = self.written.subscribe();
        loop {
            changed.borrow_and_update();
            let lead = {
                let mut synced = lock(&self.synced);
                if let Some(result) = synced.covers(done.end, epoch) {
                    return result.map(|()| done);
                }
                !std::mem::replace(&mut synced.leader, true)
            };
            if lead {
                // The whole duty runs on the blocking thread: a post cancelled meanwhile
                // cannot leave the journal with a leader that never ends.
                let journal = self.clone();
                let _ = tokio::task::spawn_blocking(move || journal.lead_sync()).await;
            } else if changed.changed().await.is_err() {
                // (The leader's end is announced on the watch too: `lead_sync`.)
                return Err(JournalError::Closed);
            }
        }
    }

    /// Returns once the lines before `end` are durable, running the fsync itself when no
    /// other waiter is; fails if they were rolled back.
    fn wait_durable(&self, end: u64, epoch: usize) -> Result<(), JournalError> {
        let mut synced = lock(&self.synced);
        loop {
            if let Some(result) = synced.covers(end, epoch) {
                return result;
            }
            if synced.leader {
                synced = self
                    .synced_changed
                    .wait(synced)
                    .unwrap_or_else(|e| e.into_inner());
                continue;
            }
            synced.leader = true;
            drop(synced);
            self.lead_sync();
            synced = lock(&self.synced);
        }
    }

    /// A leader's duty: one fsync, then the lead is free again, which every waiter hears of
    /// (blocking ones by the condvar, async ones by the watch of durable lines).
    fn lead_sync(&self) {
        self.sync_written();
        lock(&self.synced).leader = false;
        self.synced_changed.notify_all();
        self.written.send_modify(|_| {});
    }

    /// One fsync of everything written so far, outside the lock (appends go on meanwhile).
    fn sync_written(&self) {
        let (file, target, bytes) = {
            let inner = lock(&self.inner);
            (inner.file.clone(), inner.next, inner.file_bytes)
        };
        let result = file.sync_data();
        #[cfg(test)]
        let result = match self.fail_syncs.load(std::sync::atomic::Ordering::Relaxed) {
            true => Err(std::io::Error::other("injected fsync failure")),
            false => result,
        };
        let mut inner = lock(&self.inner);
        // A roll-over since has made them durable already.
        if target <= inner.durable.0 {
            return;
        }
        match result {
            Ok(()) => self.made_durable(&mut inner, target, bytes),
            Err(e) => {
                let path = inner.dir.join(file_name(*inner.files.last().unwrap_or(&0)));
                self.roll_back(&mut inner, &io(&path)(e));
            }
        }
    }

    /// Lines before `next` (`bytes` of the file being written) are durable.
    fn made_durable(&self, inner: &mut Inner, next: u64, bytes: u64) {
        inner.durable = (next, bytes);
        lock(&self.unindexed).durable = next;
        lock(&self.synced).next = next;
        self.synced_changed.notify_all();
        self.written.send_replace(next);
        if let Some(indexer) = lock(&self.indexer).as_ref() {
            let _ = indexer.wake.send(());
        }
    }

    /// An fsync failed: what it should have covered may or may not be on disk. The file is cut
    /// back to the last fsync that succeeded; the appends past it fail (their edges retry).
    fn roll_back(&self, inner: &mut Inner, why: &JournalError) {
        let (next, bytes) = inner.durable;
        tracing::error!(
            lost = inner.next - next,
            "{why}; the journal is cut back to offset {next}, its appends since fail"
        );
        let _ = inner.file.set_len(bytes);
        let _ = (&*inner.file).seek(SeekFrom::Start(bytes));
        inner.next = next;
        inner.file_bytes = bytes;
        let file_first = *inner.files.last().unwrap_or(&0);
        if let Some(seeks) = inner.seeks.get_mut(&file_first) {
            seeks.retain(|(offset, _)| *offset < next);
        }
        lock(&self.unindexed)
            .pairs
            .retain(|_, offset| *offset < next);
        inner.epoch += 1;
        lock(&self.synced).rolled_back.push((next, why.to_string()));
        self.synced_changed.notify_all();
        self.written.send_modify(|_| {});
    }

    /// Adds pairs other origins wrote (learnt from the bus) to the window: an append of one
    /// of them is a duplicate from when this returns.
    pub fn remember(&self, pairs: &[(&str, &str)]) -> Result<(), JournalError> {
        let dedup = lock(&self.inner)
            .dedup
            .clone()
            .ok_or(JournalError::Closed)?;
        Ok(dedup.remember(pairs)?)
    }

    /// Stops appends, hands the last pairs to the index and closes it (at shutdown, so that
    /// the state directory can be opened again whoever still holds the journal).
    pub fn close(&self) {
        let dedup = lock(&self.inner).dedup.take();
        let indexer = lock(&self.indexer).take();
        if let Some(Indexer { wake, thread }) = indexer {
            drop(wake);
            let _ = thread.join();
        }
        drop(dedup);
    }

    /// Up to `limit` lines with offsets after `after` (all kept when `after` is `None`).
    pub fn read(&self, after: Option<u64>, limit: usize) -> Result<Vec<String>, JournalError> {
        let oldest = self.oldest();
        let from = match after {
            Some(a) if a + 1 < oldest => {
                return Err(JournalError::Trimmed {
                    asked: a + 1,
                    oldest,
                })
            }
            Some(a) => a + 1,
            None => oldest,
        };
        let (dir, files, seek, durable) = {
            let inner = lock(&self.inner);
            // Retention may have run since `oldest` was read.
            let oldest = inner.files[0];
            if after.is_some() && from < oldest {
                return Err(JournalError::Trimmed {
                    asked: from,
                    oldest,
                });
            }
            // The file holding `from`: the last whose first offset is at most it.
            let start = inner.files.iter().rposition(|f| *f <= from).unwrap_or(0);
            let files = inner.files[start..].to_vec();
            let seek = inner.seeks.get(&files[0]).map(|s| {
                // The last seek point at or before `from`.
                let i = s.partition_point(|(o, _)| *o <= from);
                i.checked_sub(1).map_or((files[0], 0), |i| s[i])
            });
            (inner.dir.clone(), files, seek, inner.durable.0)
        };
        let seek = match seek {
            Some(seek) => seek,
            None => self.index_file(&dir, files[0], from)?,
        };
        let mut out = Vec::new();
        for (n, first) in files.iter().enumerate() {
            let path = dir.join(file_name(*first));
            let mut file = match File::open(&path) {
                Ok(f) => f,
                // Deleted by retention since the list was taken.
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(JournalError::Trimmed {
                        asked: from,
                        oldest: self.oldest(),
                    })
                }
                Err(e) => return Err(io(&path)(e)),
            };
            let (base, pos) = if n == 0 { seek } else { (*first, 0) };
            file.seek(SeekFrom::Start(pos)).map_err(io(&path))?;
            for (i, line) in BufReader::new(file).lines().enumerate() {
                let offset = base + i as u64;
                // Lines no fsync has covered yet may still be rolled back.
                if offset >= durable {
                    return Ok(out);
                }
                let line = line.map_err(io(&path))?;
                if offset >= from {
                    out.push(line);
                    if out.len() == limit {
                        return Ok(out);
                    }
                }
            }
        }
        Ok(out)
    }

    /// Scans the file starting at offset `first` once for its seek points (a file written
    /// before this process started and not read at open); the point to start reading `from`.
    fn index_file(&self, dir: &Path, first: u64, from: u64) -> Result<(u64, u64), JournalError> {
        let path = dir.join(file_name(first));
        let file = File::open(&path).map_err(io(&path))?;
        let mut reader = BufReader::new(file);
        let mut seeks = Vec::new();
        let (mut pos, mut offset) = (0u64, first);
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = reader.read_until(b'\n', &mut line).map_err(io(&path))?;
            if n == 0 || !line.ends_with(b"\n") {
                break;
            }
            if (offset - first) % SEEK_EVERY == 0 {
                seeks.push((offset, pos));
            }
            pos += n as u64;
            offset += 1;
        }
        let i = seeks.partition_point(|(o, _)| *o <= from);
        let start = i.checked_sub(1).map_or((first, 0), |i| seeks[i]);
        let mut inner = lock(&self.inner);
        inner.seeks.entry(first).or_insert(seeks);
        Ok(start)
    }

    /// The next offset to be made durable, changing with every fsync.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.written.subscribe()
    }

    /// Rolls files over past `bytes` instead of [`FILE_BYTES`] (tests make many small files).
    #[cfg(test)]
    pub fn set_roll_at(&self, bytes: u64) {
        lock(&self.inner).roll_at = bytes;
    }

    /// The oldest offset kept (the first of the oldest file).
    pub fn oldest(&self) -> u64 {
        let inner = lock(&self.inner);
        inner.files.first().copied().unwrap_or(0)
    }

    /// Deletes the oldest files that `retention` no longer keeps, as of `now`: by age (the
    /// file's modification time is its last append) or while the journal is over its size.
    /// Never the file being written, nor one holding an offset at or after `keep_from` (a
    /// sink's next to publish). Returns what went, oldest first.
    pub fn trim(
        &self,
        retention: Retention,
        keep_from: u64,
        now: SystemTime,
    ) -> Result<Vec<Deleted>, JournalError> {
        let mut inner = lock(&self.inner);
        let mut sizes = Vec::with_capacity(inner.files.len());
        for first in &inner.files[..inner.files.len() - 1] {
            let path = inner.dir.join(file_name(*first));
            let meta = std::fs::metadata(&path).map_err(io(&path))?;
            sizes.push((meta.len(), meta.modified().map_err(io(&path))?));
        }
        let mut total: u64 = sizes.iter().map(|(len, _)| len).sum::<u64>() + inner.file_bytes;
        let mut deleted = Vec::new();
        for (i, (len, modified)) in sizes.into_iter().enumerate() {
            let (first, end) = (inner.files[i], inner.files[i + 1]);
            if end > keep_from {
                break;
            }
            let old = retention
                .max_age
                .is_some_and(|age| now.duration_since(modified).is_ok_and(|d| d > age));
            let over = retention.max_bytes.is_some_and(|max| total > max);
            let why = match (old, over) {
                (true, _) => "older than retain_hours",
                (false, true) => "journal over retain_bytes",
                (false, false) => break,
            };
            let path = inner.dir.join(file_name(first));
            std::fs::remove_file(&path).map_err(io(&path))?;
            total -= len;
            deleted.push(Deleted {
                file: path.display().to_string(),
                first,
                end,
                bytes: len,
                why,
            });
        }
        if !deleted.is_empty() {
            inner.files.drain(..deleted.len());
            for d in &deleted {
                inner.seeks.remove(&d.first);
            }
            File::open(&inner.dir)
                .and_then(|d| d.sync_all())
                .map_err(io(&inner.dir))?;
        }
        Ok(deleted)
    }
}

impl Journal {
    /// Makes the file being written durable and starts the next (so an fsync only ever
    /// concerns the last file).
    fn roll(&self, inner: &mut Inner) -> Result<(), JournalError> {
        let old = inner.dir.join(file_name(*inner.files.last().unwrap_or(&0)));
        if let Err(e) = inner.file.sync_data() {
            let e = io(&old)(e);
            self.roll_back(inner, &e);
            return Err(e);
        }
        let (first, bytes) = (inner.next, inner.file_bytes);
        self.made_durable(inner, first, bytes);
        let path = inner.dir.join(file_name(first));
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        // The new file's name must survive a crash too.
        File::open(&inner.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&inner.dir))?;
        inner.file = Arc::new(file);
        inner.files.push(first);
        inner.file_bytes = 0;
        inner.durable = (first, 0);
        Ok(())
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.close();
    }
}

/// At most this many written pairs wait in memory for the index; appends wait past it...
const MAX_UNINDEXED: usize = 200_000;
/// ...for at most this long.
const INDEX_WAIT: Duration = Duration::from_secs(5);

/// How often the indexer hands durable lines' pairs to the index: one commit for many group
/// commits (a commit costs CPU whatever its size), while memory holds at most this long's
/// pairs.
const INDEX_EVERY: Duration = Duration::from_millis(100);

/// The indexer thread: after an fsync (and at most every [`INDEX_EVERY`]), the pairs of
/// durable lines go to the index in one commit, then leave memory. Once the journal closes:
/// a last round and a durable commit.
fn index(dedup: &Dedup, unindexed: &Mutex<Unindexed>, woken: &mpsc::Receiver<()>) {
    let mut last = std::time::Instant::now();
    loop {
        let open = woken.recv().is_ok();
        if open {
            std::thread::sleep(INDEX_EVERY.saturating_sub(last.elapsed()));
            last = std::time::Instant::now();
        }
        while woken.try_recv().is_ok() {}
        let (pairs, through) = {
            let u = lock(unindexed);
            let durable: Vec<((String, String), u64)> = u
                .pairs
                .iter()
                .filter(|(_, offset)| **offset < u.durable)
                .map(|(pair, offset)| (pair.clone(), *offset))
                .collect();
            (durable, u.durable)
        };
        let refs: Vec<(&str, &str)> = pairs
            .iter()
            .map(|((user, id), _)| (user.as_str(), id.as_str()))
            .collect();
        match dedup.record(&refs, through) {
            Ok(()) => {
                let mut u = lock(unindexed);
                for (pair, offset) in &pairs {
                    if u.pairs.get(pair) == Some(offset) {
                        u.pairs.remove(pair);
                    }
                }
            }
            // They stay in memory, checked there, and go with the next round; a restart
            // re-indexes them from the journal.
            Err(e) => tracing::warn!("{e}; its pairs stay in memory until it takes them"),
        }
        if !open {
            if let Err(e) = dedup.flush() {
                tracing::warn!("{e}");
            }
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::model::{Event, Kind};
    use super::*;

    fn record(id: &str) -> Record {
        by("u", id)
    }

    fn by(user: &str, id: &str) -> Record {
        Record {
            room: "demo".into(),
            event: Event {
                id: id.into(),
                kind: Kind::CartAdd,
                user: user.into(),
                sku: Some("s".into()),
                qty: Some(1),
                text: None,
                count: None,
            },
        }
    }

    #[test]
    fn duplicates_are_written_once_across_reopens_and_torn_lines_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let j = Journal::open(dir.path(), std::time::Duration::from_secs(3600)).unwrap();
        let a = j.append(&[record("a"), record("b"), record("a")]).unwrap();
        assert_eq!((a.accepted, a.duplicates), (2, 1));
        drop(j);
        // A crash mid-append leaves a torn line.
        let path = dir.path().join(file_name(0));
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(br#"{"offset":2,"room":"demo","ev"#).unwrap();
        drop(f);
        let j = Journal::open(dir.path(), std::time::Duration::from_secs(3600)).unwrap();
        let again = j.append(&[record("b"), record("c")]).unwrap();
        assert_eq!((again.accepted, again.duplicates), (1, 1));
        let lines = j.read(None, 100).unwrap();
        assert_eq!(lines.len(), 3, "{lines:?}");
        assert!(lines[2].starts_with(r#"{"offset":2,"room":"demo","event":{"id":"c""#));
        assert_eq!(j.read(Some(1), 100).unwrap().len(), 1);
        assert_eq!(*j.subscribe().borrow(), 3);
    }

    #[test]
    fn reads_seek_to_any_offset_in_any_file_before_and_after_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let window = std::time::Duration::from_secs(3600);
        let total = 3000u64;
        let check = |j: &Journal| {
            for from in [0u64, 1, 255, 256, 257, 1000, 2047, 2999] {
                let after = from.checked_sub(1);
                let lines = j.read(after, 600).unwrap();
                let offsets: Vec<u64> = lines
                    .iter()
                    .map(|l| {
                        serde_json::from_str::<serde_json::Value>(l).unwrap()["offset"]
                            .as_u64()
                            .unwrap()
                    })
                    .collect();
                let want: Vec<u64> = (from..total.min(from + 600)).collect();
                assert_eq!(offsets, want, "reading from {from}");
            }
        };
        let j = Journal::open(dir.path(), window).unwrap();
        j.inner.lock().unwrap().roll_at = 16 * 1024;
        let ids: Vec<String> = (0..total).map(|i| format!("e{i}")).collect();
        for batch in ids.chunks(7) {
            let records: Vec<Record> = batch.iter().map(|id| record(id)).collect();
            j.append(&records).unwrap();
        }
        let files = j.inner.lock().unwrap().files.len();
        assert!(files > 10, "{files} files");
        check(&j);
        drop(j);
        // Reopened: only the last file is scanned at open; the others get their seek points
        // at their first read.
        let j = Journal::open(dir.path(), window).unwrap();
        assert_eq!(j.inner.lock().unwrap().seeks.len(), 1);
        check(&j);
    }

    /// Retention deletes whole old files, oldest first, never the one being written nor one a
    /// sink has not published; a read from a deleted offset is refused with where to go on;
    /// a reopened journal starts at its oldest file and numbers on.
    #[test]
    fn retention_deletes_old_files_only_and_reads_of_them_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let window = std::time::Duration::from_secs(3600);
        let j = Journal::open(dir.path(), window).unwrap();
        j.inner.lock().unwrap().roll_at = 4 * 1024;
        let ids: Vec<String> = (0..1000).map(|i| format!("e{i}")).collect();
        for batch in ids.chunks(10) {
            let records: Vec<Record> = batch.iter().map(|id| record(id)).collect();
            j.append(&records).unwrap();
        }
        let files = j.inner.lock().unwrap().files.clone();
        assert!(files.len() > 8, "{files:?}");
        let now = SystemTime::now();
        let keep_all = Retention {
            max_age: Some(Duration::from_secs(3600)),
            max_bytes: Some(1 << 30),
        };
        assert!(j.trim(keep_all, u64::MAX, now).unwrap().is_empty());

        // By size: down to 12 KiB, but a sink has published only up to files[3]'s first.
        let by_size = Retention {
            max_age: None,
            max_bytes: Some(12 * 1024),
        };
        let gone = j.trim(by_size, files[3], now).unwrap();
        assert_eq!(
            gone.iter().map(|d| (d.first, d.end)).collect::<Vec<_>>(),
            [
                (files[0], files[1]),
                (files[1], files[2]),
                (files[2], files[3])
            ]
        );
        assert!(gone.iter().all(|d| d.why == "journal over retain_bytes"));
        assert_eq!(j.oldest(), files[3]);
        // Published on: it goes down to the size (3 files and the one being written).
        let gone = j.trim(by_size, u64::MAX, now).unwrap();
        assert!(!gone.is_empty());
        let left = j.inner.lock().unwrap().files.clone();
        let bytes: u64 = left
            .iter()
            .map(|f| {
                std::fs::metadata(dir.path().join(file_name(*f)))
                    .unwrap()
                    .len()
            })
            .sum();
        assert!(bytes <= 12 * 1024, "{bytes} bytes in {left:?}");
        assert_eq!(left.last(), files.last());

        // A read before the oldest kept: refused, saying where to go on.
        let oldest = j.oldest();
        match j.read(Some(0), 10) {
            Err(JournalError::Trimmed {
                asked: 1,
                oldest: o,
            }) => assert_eq!(o, oldest),
            other => panic!("{other:?}"),
        }
        let from_oldest = j.read(Some(oldest - 1), 10).unwrap();
        assert!(from_oldest[0].contains(&format!("\"offset\":{oldest},")));
        assert_eq!(j.read(None, 10).unwrap(), from_oldest);

        // By age, as of two hours on: everything but the file being written.
        let later = now + Duration::from_secs(7200);
        let by_age = Retention {
            max_age: Some(Duration::from_secs(3600)),
            max_bytes: None,
        };
        let gone = j.trim(by_age, u64::MAX, later).unwrap();
        assert!(gone.iter().all(|d| d.why == "older than retain_hours"));
        assert_eq!(j.inner.lock().unwrap().files, [*files.last().unwrap()]);
        drop(j);

        // Reopened: the oldest kept file is the start, and numbering goes on.
        let j = Journal::open(dir.path(), window).unwrap();
        assert_eq!(j.oldest(), *files.last().unwrap());
        j.append(&[record("after")]).unwrap();
        let all = j.read(None, 2000).unwrap();
        assert!(all.last().unwrap().contains("\"offset\":1000,"), "{all:?}");
        // Still a duplicate: the window outlives the deleted lines.
        assert_eq!(j.append(&[record("e5")]).unwrap().duplicates, 1);
    }

    fn offsets(lines: &[String]) -> Vec<u64> {
        lines
            .iter()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["offset"]
                    .as_u64()
                    .unwrap()
            })
            .collect()
    }

    /// Appends from many threads at once share fsyncs: each event is written once, offsets
    /// have no gaps, and the same pair posted by every thread is accepted by one.
    #[test]
    fn concurrent_appends_are_each_written_once_without_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let window = std::time::Duration::from_secs(3600);
        let j = Arc::new(Journal::open(dir.path(), window).unwrap());
        let threads: Vec<_> = (0..8)
            .map(|t| {
                let j = j.clone();
                std::thread::spawn(move || {
                    let mut shared_accepted = 0;
                    for i in 0..100 {
                        let own = j.append(&[by(&format!("t{t}"), &format!("c{i}"))]).unwrap();
                        assert_eq!(own.accepted, 1);
                        let shared = j.append(&[by("everyone", &format!("s{i}"))]).unwrap();
                        assert_eq!(shared.accepted + shared.duplicates, 1);
                        shared_accepted += shared.accepted;
                    }
                    shared_accepted
                })
            })
            .collect();
        let shared: usize = threads.into_iter().map(|t| t.join().unwrap()).sum();
        assert_eq!(shared, 100);
        let lines = j.read(None, 10_000).unwrap();
        assert_eq!(offsets(&lines), (0..900).collect::<Vec<u64>>());
        assert_eq!(*j.subscribe().borrow(), 900);
        drop(j);
        let j = Journal::open(dir.path(), window).unwrap();
        let again = j.append(&[by("t3", "c7"), by("everyone", "s99")]).unwrap();
        assert_eq!((again.accepted, again.duplicates), (0, 2));
    }

    /// Async posters (some cancelled mid-wait, as a dropped request is) and blocking ones
    /// share the group commit: every acknowledged event is there once, offsets have no gaps,
    /// no cancelled poster leaves the journal without a leader, and a failed fsync fails the
    /// async appends it should have covered.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn async_and_blocking_appends_share_fsyncs_and_cancelled_ones_hang_nothing() {
        use std::sync::atomic::Ordering::Relaxed;
        let dir = tempfile::tempdir().unwrap();
        let window = std::time::Duration::from_secs(3600);
        let j = Arc::new(Journal::open(dir.path(), window).unwrap());
        let blocking = {
            let j = j.clone();
            std::thread::spawn(move || {
                for i in 0..100 {
                    assert_eq!(j.append(&[by("b", &format!("c{i}"))]).unwrap().accepted, 1);
                }
            })
        };
        let tasks: Vec<_> = (0..16)
            .map(|t| {
                let j = j.clone();
                tokio::spawn(async move {
                    for i in 0..50 {
                        let post = j.append_async(vec![by(&format!("t{t}"), &format!("c{i}"))]);
                        if i % 10 == 3 {
                            // Cancelled: written or not, the next ones must still complete.
                            let _ = tokio::time::timeout(Duration::from_micros(1), post).await;
                            continue;
                        }
                        assert_eq!(post.await.unwrap().accepted, 1);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        blocking.join().unwrap();
        let lines = j.read(None, 10_000).unwrap();
        let n = lines.len() as u64;
        assert!(n >= 100 + 16 * 45, "{n} lines");
        assert_eq!(offsets(&lines), (0..n).collect::<Vec<u64>>());
        assert_eq!(*j.subscribe().borrow(), n);
        j.fail_syncs.store(true, Relaxed);
        match j.append_async(vec![record("lost")]).await {
            Err(JournalError::RolledBack(why)) => assert!(why.contains("injected"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(j.read(None, 10_000).unwrap().len() as u64, n);
    }

    /// A failed fsync fails its appends and cuts their lines off; readers never saw them,
    /// the retry takes their offsets, and a reopen finds whole lines only.
    #[test]
    fn a_failed_fsync_rolls_its_appends_back() {
        use std::sync::atomic::Ordering::Relaxed;
        let dir = tempfile::tempdir().unwrap();
        let window = std::time::Duration::from_secs(3600);
        let j = Journal::open(dir.path(), window).unwrap();
        j.append(&[record("a")]).unwrap();
        j.fail_syncs.store(true, Relaxed);
        match j.append(&[record("b"), record("c")]) {
            Err(JournalError::RolledBack(why)) => assert!(why.contains("injected"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(offsets(&j.read(None, 10).unwrap()), [0]);
        assert_eq!(*j.subscribe().borrow(), 1);
        j.fail_syncs.store(false, Relaxed);
        // Not a duplicate: the failed lines are gone from the window too.
        let retry = j.append(&[record("c"), record("b")]).unwrap();
        assert_eq!((retry.accepted, retry.duplicates, retry.end), (2, 0, 3));
        let lines = j.read(None, 10).unwrap();
        assert_eq!(offsets(&lines), [0, 1, 2]);
        assert!(lines[1].contains(r#""id":"c""#), "{lines:?}");
        drop(j);
        let j = Journal::open(dir.path(), window).unwrap();
        assert_eq!(j.read(None, 10).unwrap(), lines);
    }

    /// A long show: a million carts written in bulk (the issue's 10 million run in
    /// `benches/events`); the pairs waiting for the index in memory stay under their cap
    /// whatever the count, a reader from offset 0 pages through all, and a reader at the head
    /// gets the next one.
    #[test]
    fn a_long_show_keeps_memory_bounded_and_every_line_readable() {
        let dir = tempfile::tempdir().unwrap();
        let window = std::time::Duration::from_secs(3600);
        let j = Journal::open(dir.path(), window).unwrap();
        let total = 1_000_000u64;
        let mut most = 0;
        for first in (0..total).step_by(10_000) {
            let batch: Vec<Record> = (first..first + 10_000)
                .map(|i| by(&format!("u{}", i % 1000), &format!("x{i}")))
                .collect();
            assert_eq!(j.append(&batch).unwrap().accepted, 10_000);
            most = most.max(lock(&j.unindexed).pairs.len());
        }
        assert!(most <= MAX_UNINDEXED + 10_000, "{most} pairs in memory");
        let (mut after, mut read) = (None, 0u64);
        loop {
            let lines = j.read(after, 1000).unwrap();
            let Some(last) = lines.last() else { break };
            assert_eq!(offsets(&lines[..1])[0], after.map_or(0, |a| a + 1));
            read += lines.len() as u64;
            after = Some(offsets(std::slice::from_ref(last))[0]);
        }
        assert_eq!(read, total);
        let head = j.subscribe();
        assert_eq!(*head.borrow(), total);
        j.append(&[by("late", "next")]).unwrap();
        let lines = j.read(Some(total - 1), 1000).unwrap();
        assert!(lines[0].contains(r#""id":"next""#), "{lines:?}");
        // Everything reaches the index; nothing stays in memory.
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while !lock(&j.unindexed).pairs.is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "the index never caught up"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(j.append(&[by("u7", "x7")]).unwrap().duplicates, 1);
    }

    /// Closing releases the state directory whoever still holds the journal (a shutdown
    /// followed by a start in the same process).
    #[test]
    fn a_closed_journal_refuses_appends_and_can_be_opened_again() {
        let dir = tempfile::tempdir().unwrap();
        let window = std::time::Duration::from_secs(3600);
        let j = Arc::new(Journal::open(dir.path(), window).unwrap());
        let held = j.clone();
        j.append(&[record("a")]).unwrap();
        j.close();
        assert!(matches!(
            held.append(&[record("b")]),
            Err(JournalError::Closed)
        ));
        let again = Journal::open(dir.path(), window).unwrap();
        assert_eq!(again.append(&[record("a")]).unwrap().duplicates, 1);
        drop(held);
    }

    #[test]
    fn the_same_id_from_two_users_is_two_events_and_each_retry_is_one() {
        let dir = tempfile::tempdir().unwrap();
        let window = std::time::Duration::from_secs(3600);
        let j = Journal::open(dir.path(), window).unwrap();
        let a = j.append(&[by("alice", "c-42"), by("bob", "c-42")]).unwrap();
        assert_eq!((a.accepted, a.duplicates), (2, 0));
        let retry = j.append(&[by("bob", "c-42"), by("alice", "c-42")]).unwrap();
        assert_eq!((retry.accepted, retry.duplicates), (0, 2));
        drop(j);
        // A crash before the index's last durable commit: the index is behind the journal and
        // catches up from it at open.
        std::fs::remove_file(dir.path().join("dedup.redb")).unwrap();
        let j = Journal::open(dir.path(), window).unwrap();
        let again = j
            .append(&[by("alice", "c-42"), by("carol", "c-42")])
            .unwrap();
        assert_eq!((again.accepted, again.duplicates), (1, 1));
        assert_eq!(j.read(None, 100).unwrap().len(), 3);
    }
}
