//! The `journal` sink: events as append-only JSON lines in files under the state directory,
//! each line `{"offset":N,"room":...,"event":{...}}`, fsynced before the append is
//! acknowledged. An event is written once per (user, id) within the idempotency window
//! ([`Dedup`], `[events] dedup_hours`): an event relayed again after any crash (the edge's
//! spool replays what it did not see acknowledged) or retried by its viewer is recognised.
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
use std::sync::Mutex;
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
    file: File,
    file_bytes: u64,
    /// A file rolls over past this many bytes ([`FILE_BYTES`]; tests make it small).
    roll_at: u64,
    next: u64,
    /// Per file (by its first offset): (offset, byte position) of every [`SEEK_EVERY`]th line,
    /// from the file's first. Built as lines are written, or by one scan at a first read.
    seeks: HashMap<u64, Vec<(u64, u64)>>,
    dedup: Dedup,
    /// Pairs written to the journal that the index failed to take; retried with the next.
    unrecorded: HashSet<(String, String)>,
}

/// An append-only, deduplicating event journal.
pub struct Journal {
    inner: Mutex<Inner>,
    /// The next offset to be written, for long-poll readers.
    written: watch::Sender<u64>,
}

/// What an append did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Appended {
    pub accepted: usize,
    pub duplicates: usize,
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
        let mut dedup = Dedup::open(&dir.join("dedup.redb"), window)?;
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
        Ok(Self {
            inner: Mutex::new(Inner {
                dir: dir.to_path_buf(),
                files,
                file,
                file_bytes: kept_bytes,
                roll_at: FILE_BYTES,
                next,
                seeks,
                dedup,
                unrecorded: HashSet::new(),
            }),
            written: watch::Sender::new(next),
        })
    }

    /// Appends the records whose (user, id) it has not seen within the window, fsyncs, and
    /// only then returns. A failed write is cut off again before the error returns, so what
    /// follows is never behind a torn line. Blocking: call from a blocking thread.
    pub fn append(&self, records: &[Record]) -> Result<Appended, JournalError> {
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        let mut out = Vec::new();
        let mut done = Appended::default();
        let pairs: Vec<(&str, &str)> = records
            .iter()
            .map(|r| (r.event.user.as_str(), r.event.id.as_str()))
            .collect();
        let seen = inner.dedup.seen(&pairs)?;
        let mut fresh: HashSet<(&str, &str)> = HashSet::new();
        if inner.file_bytes >= inner.roll_at {
            let first = inner.next;
            inner.roll(first)?;
        }
        let file_first = *inner.files.last().unwrap_or(&0);
        let mut new_seeks = Vec::new();
        let mut next = inner.next;
        for ((r, pair), seen) in records.iter().zip(&pairs).zip(seen) {
            let unrecorded = !inner.unrecorded.is_empty()
                && inner
                    .unrecorded
                    .contains(&(pair.0.to_string(), pair.1.to_string()));
            if seen || unrecorded || !fresh.insert(*pair) {
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
                next += 1;
                done.accepted += 1;
            }
        }
        if done.accepted == 0 {
            return Ok(done);
        }
        let path = inner.dir.join(file_name(file_first));
        if let Err(e) = inner
            .file
            .write_all(&out)
            .and_then(|()| inner.file.sync_data())
        {
            // Disk full, an I/O error: cut the part that may have been written, so the next
            // append follows whole lines (the edge retries this batch).
            let keep = inner.file_bytes;
            let _ = inner.file.set_len(keep);
            let _ = inner.file.seek(SeekFrom::Start(keep));
            return Err(io(&path)(e));
        }
        inner.file_bytes += out.len() as u64;
        inner.next = next;
        inner.seeks.entry(file_first).or_default().extend(new_seeks);
        let mut written: Vec<(&str, &str)> = fresh.into_iter().collect();
        let earlier: Vec<(String, String)> = inner.unrecorded.iter().cloned().collect();
        written.extend(earlier.iter().map(|(u, i)| (u.as_str(), i.as_str())));
        match inner.dedup.record(&written, next) {
            Ok(()) => inner.unrecorded.clear(),
            Err(e) => {
                // The lines are in the journal (acknowledged); a restart re-indexes them from
                // it. Until then they are remembered here.
                tracing::warn!("{e}; kept in memory until it recovers");
                let keep: Vec<(String, String)> = written
                    .iter()
                    .map(|(u, i)| (u.to_string(), i.to_string()))
                    .collect();
                inner.unrecorded.extend(keep);
            }
        }
        drop(inner);
        self.written.send_replace(next);
        Ok(done)
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
        let (dir, files, seek) = {
            let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
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
            (inner.dir.clone(), files, seek)
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
                let line = line.map_err(io(&path))?;
                if base + i as u64 >= from && !line.is_empty() {
                    out.push(line);
                    if out.len() == limit {
                        return Ok(out);
                    }
                }
            }
        }
        // A line being written right now may be torn: readers get whole lines only.
        out.retain(|l| serde_json::from_str::<serde_json::Value>(l).is_ok());
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
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        inner.seeks.entry(first).or_insert(seeks);
        Ok(start)
    }

    /// The next offset to be written, changing with every append.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.written.subscribe()
    }

    /// Rolls files over past `bytes` instead of [`FILE_BYTES`] (tests make many small files).
    #[cfg(test)]
    pub fn set_roll_at(&self, bytes: u64) {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).roll_at = bytes;
    }

    /// The oldest offset kept (the first of the oldest file).
    pub fn oldest(&self) -> u64 {
        let inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
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
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
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

impl Inner {
    fn roll(&mut self, first: u64) -> Result<(), JournalError> {
        let path = self.dir.join(file_name(first));
        self.file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(io(&path))?;
        // The new file's name must survive a crash too.
        File::open(&self.dir)
            .and_then(|d| d.sync_all())
            .map_err(io(&self.dir))?;
        self.files.push(first);
        self.file_bytes = 0;
        Ok(())
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
