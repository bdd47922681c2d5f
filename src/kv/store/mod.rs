//! One cache directory: the segment log, its lock, and the index built from it.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::files::{
    HEAD_NAME, LOCK_NAME, init_head, io_err, log_name, log_state, open_log, read_at, read_head,
    read_range,
};
use super::index::{F, Index, KeyId, Row};
use super::record::{self, Next, Reader};
use super::snapshot::{self, idx_name};
use super::value::Val;
use super::{KvError, Result};
use crate::fsio;

/// The setting that makes every acknowledged write durable (see `sync_durable`).
const DURABLE: &str = "durable";
/// Values whose encoding is at most this long stay in memory, while the values in memory
/// total under `INLINE_BUDGET`; the others are read from the log when asked for.
const INLINE_MAX: usize = 4096;
const INLINE_BUDGET: usize = 64 << 20;
/// Bytes of log read at a time when catching up.
const SYNC_CHUNK: usize = 1 << 20;
/// Compact once the log is this large and at least half of it is dead.
const COMPACT_MIN: u64 = 4 << 20;
/// Logs under this size get no index snapshot: they replay about as fast as one loads.
const SNAPSHOT_MIN: u64 = 1 << 20;
/// Writers write a new snapshot once the log has grown this much past the last one, or
/// `SNAPSHOT_PER_ROW` bytes per row if more: a new process then replays at most that much.
const SNAPSHOT_EVERY: u64 = 2 << 20;
const SNAPSHOT_PER_ROW: u64 = 256;
/// After a snapshot that took `d`, the next waits `SNAPSHOT_SHARE * d`, unless the log has
/// grown `MAX_DUE` times as far as is due: a fast fill spends little time on snapshots (the
/// snapshot on close catches up), while a new process never replays more than that.
const SNAPSHOT_SHARE: u32 = 100;
const MAX_DUE: u64 = 3;
/// A handle that goes away with every row in memory leaves a snapshot if the log has grown
/// this much past the last one.
const SNAPSHOT_ON_CLOSE: u64 = 64 << 10;

/// A row as handed out: its rowid and its fields, the value resolved.
#[derive(Clone, Debug)]
pub struct RowOut {
    pub rowid: u64,
    pub row: NewRow,
}

/// The fields of a row: what `put` stores and what reads hand out (in `RowOut`).
#[derive(Clone, Debug)]
pub struct NewRow {
    pub key: Val,
    pub raw: bool,
    pub store_time: f64,
    pub expire_time: Option<f64>,
    pub access_time: f64,
    pub access_count: i64,
    pub tag: Val,
    pub size: i64,
    pub mode: u8,
    pub filename: Option<String>,
    pub value: Val,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Policy {
    None,
    LeastRecentlyStored,
    LeastRecentlyUsed,
    LeastFrequentlyUsed,
}

impl Policy {
    pub fn parse(s: &str) -> Option<Policy> {
        Some(match s {
            "none" => Policy::None,
            "least-recently-stored" => Policy::LeastRecentlyStored,
            "least-recently-used" => Policy::LeastRecentlyUsed,
            "least-frequently-used" => Policy::LeastFrequentlyUsed,
            _ => return None,
        })
    }
}

pub struct Store {
    dir: PathBuf,
    /// `fsio::fork_epoch()` when the files were opened: a handle inherited through `fork()`
    /// shares them with its parent, so it opens its own before any use (`own`).
    epoch: u64,
    lock_file: File,
    log: File,
    generation: u64,
    /// Bytes of the log applied to the index.
    pos: u64,
    /// The index is empty and `pos` 0: the next sync starts from the snapshot, if usable.
    fresh: bool,
    /// The log offset the newest snapshot known to this process covers, and its file size.
    snap_pos: u64,
    snap_len: u64,
    /// No periodic snapshot before this instant (see `SNAPSHOT_SHARE`).
    snap_not_before: Option<Instant>,
    /// The buffer the last snapshot was encoded in, kept for the next.
    snap_buf: Vec<u8>,
    /// Offset of the first damaged record, if reading stopped at one.
    damaged: Option<u64>,
    index: Index,
    timeout: Option<Duration>,
    /// Nesting depth of an explicit transaction holding the exclusive lock.
    txn: u32,
    /// A transaction's records, written as one batch record when it commits. Their values
    /// are addressed as if already written at `pos`, so reads inside the transaction see them.
    pending: Option<Vec<u8>>,
    /// Set while `with_lock` holds the lock (true: exclusive), so nested calls reuse it.
    held: Option<bool>,
    compact_after_commit: bool,
    /// Reads skip the shared lock: on local filesystems appends are visible at once, and a
    /// record still being appended is recognised by its framing. Network filesystems revalidate
    /// their caches only when a lock is taken, so there every read locks.
    unlocked_reads: bool,
    /// Records appended under the lock that `durable` wants on stable storage before the
    /// call returns: synced once the lock is released (see `sync_durable`).
    unsynced: bool,
    /// The directory has been flushed once by this handle with `durable` on (it names the log
    /// and HEAD, which may be new).
    dir_synced: bool,
}

impl Store {
    pub fn open(dir: &Path, timeout: Option<Duration>) -> Result<Store> {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
        let lock_path = dir.join(LOCK_NAME);
        let lock_file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(io_err(&lock_path))?;
        let head = match read_head(dir) {
            Some(generation) => generation,
            None => init_head(dir, &lock_file, timeout)?,
        };
        let (log, generation) = open_log(dir, head)?;
        let mut store = Store {
            dir: dir.to_owned(),
            epoch: fsio::fork_epoch(),
            lock_file,
            log,
            generation,
            pos: 0,
            fresh: true,
            snap_pos: 0,
            snap_len: 0,
            snap_not_before: None,
            snap_buf: Vec::new(),
            damaged: None,
            index: Index::default(),
            timeout,
            txn: 0,
            pending: None,
            held: None,
            compact_after_commit: false,
            unlocked_reads: fsio::is_local_fs(dir)
                && std::env::var_os("CANDLECACHE_LOCKED_READS").is_none(),
            unsynced: false,
            dir_synced: false,
        };
        store.with_lock(false, |_| Ok(()))?;
        Ok(store)
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
    }

    /// Whether this handle was opened by a parent before `fork()`.
    pub fn inherited(&self) -> bool {
        self.epoch != fsio::fork_epoch()
    }

    /// In a child of `fork()`, replace the inherited files (and everything read through them)
    /// with the child's own: locking through the parent's lock file description would not
    /// exclude the parent, and unlocking it would release the parent's lock. A transaction
    /// the parent had begun stays the parent's.
    fn own(&mut self) -> Result<()> {
        if self.inherited() {
            let mine = Store::open(&self.dir, self.timeout)?;
            // The inherited handle's drop closes its descriptors and nothing else.
            *self = mine;
        }
        Ok(())
    }

    fn flock(&self, exclusive: bool) -> Result<()> {
        Ok(fsio::wait_for_lock(
            &self.lock_file,
            &self.dir.join(LOCK_NAME),
            exclusive,
            self.timeout,
        )?)
    }

    /// Run `f` on an index brought up to date, under the shared (reads) or exclusive (writes)
    /// lock, unless a transaction already holds the exclusive lock.
    pub fn with_lock<R>(
        &mut self,
        exclusive: bool,
        f: impl FnOnce(&mut Self) -> Result<R>,
    ) -> Result<R> {
        self.own()?;
        if self.txn > 0 {
            self.sync()?;
            self.recover_index()?;
            return f(self);
        }
        if let Some(held_exclusive) = self.held {
            if exclusive && !held_exclusive {
                return Err(KvError::Corrupt(
                    "internal: write attempted under a shared lock".into(),
                ));
            }
            return f(self);
        }
        if !exclusive && self.unlocked_reads && self.sync_unlocked()? {
            self.recover_index()?;
            return f(self);
        }
        self.flock(exclusive)?;
        self.held = Some(exclusive);
        let result = (|| {
            self.sync()?;
            self.recover_index()?;
            if exclusive && self.damaged.is_some() {
                // A torn or damaged tail: start a clean generation before appending after it.
                self.compact()?;
            }
            f(self)
        })();
        if exclusive && result.is_ok() {
            self.maybe_snapshot();
        }
        self.held = None;
        let _ = self.lock_file.unlock();
        let synced = self.sync_durable();
        result.and_then(|r| synced.map(|()| r))
    }

    /// Whether the cache's `durable` setting is on: every acknowledged write is on stable
    /// storage before the call returns.
    fn durable(&self) -> bool {
        matches!(self.index.settings.get(DURABLE), Some(Val::Int(v)) if *v != 0)
    }

    /// With `durable` on, flush the records this handle appended (`fdatasync`), after the lock
    /// is released: other processes append meanwhile, and one flush carries all the records
    /// written before it, so concurrent writers share flushes (group commit) instead of
    /// queueing behind each other's under the lock.
    fn sync_durable(&mut self) -> Result<()> {
        if std::mem::take(&mut self.unsynced) {
            let path = self.dir.join(log_name(self.generation));
            self.log.sync_data().map_err(io_err(&path))?;
            if !self.dir_synced {
                fsio::fsync_dir(&self.dir)?;
                self.dir_synced = true;
            }
        }
        Ok(())
    }

    /// Begin or nest an explicit transaction (the exclusive lock held across calls).
    pub fn begin(&mut self) -> Result<()> {
        self.own()?;
        if self.txn == 0 {
            self.flock(true)?;
            self.held = Some(true);
            let ready = self.sync().and_then(|_| {
                self.recover_index()?;
                if self.damaged.is_some() {
                    self.compact()
                } else {
                    Ok(())
                }
            });
            self.held = None;
            if let Err(e) = ready {
                let _ = self.lock_file.unlock();
                return Err(e);
            }
            self.pending = Some(vec![record::OP_BATCH]);
        }
        self.txn += 1;
        Ok(())
    }

    /// End a nesting level; the outermost commits (one atomic batch record) or rolls back.
    pub fn end(&mut self, commit: bool) -> Result<()> {
        self.own()?;
        if self.txn == 0 {
            return Ok(());
        }
        self.txn -= 1;
        if self.txn > 0 {
            return Ok(());
        }
        let pending = self.pending.take();
        // The transaction's exclusive lock is held until the end of this call.
        self.held = Some(true);
        let result = match pending {
            Some(batch) if commit && batch.len() > 1 => {
                let mut framed = Vec::with_capacity(batch.len() + record::HEADER);
                record::frame(&batch, &mut framed);
                let path = self.dir.join(log_name(self.generation));
                self.log
                    .write_all(&framed)
                    .map_err(io_err(&path))
                    .and_then(|_| {
                        self.pos += framed.len() as u64;
                        self.unsynced |= self.durable();
                        if std::mem::take(&mut self.compact_after_commit) {
                            self.compact()
                        } else {
                            self.maybe_snapshot();
                            Ok(())
                        }
                    })
            }
            Some(batch) if batch.len() > 1 => {
                // Roll back: forget what the transaction applied to the index.
                self.compact_after_commit = false;
                self.reload(self.generation).and_then(|_| self.sync())
            }
            _ => Ok(()),
        };
        self.held = None;
        let _ = self.lock_file.unlock();
        let synced = self.sync_durable();
        result.and(synced)
    }

    pub fn in_txn(&self) -> bool {
        self.txn > 0
    }

    /// Apply records appended since the last call, following compactions to new generations.
    /// Damaged bytes are recorded and skipped (the caller holds the lock, so no writer is
    /// mid-append).
    fn sync(&mut self) -> Result<()> {
        self.sync_inner(true).map(|_| ())
    }

    /// The same without the lock: stops (returning false) at the first incomplete or damaged
    /// record, which may be a writer's append in progress; the caller then locks and syncs.
    fn sync_unlocked(&mut self) -> Result<bool> {
        self.sync_inner(false)
    }

    fn sync_inner(&mut self, locked: bool) -> Result<bool> {
        // The log is read in chunks, so opening a large one needs no buffer its size.
        let mut chunk = SYNC_CHUNK;
        loop {
            if std::mem::take(&mut self.fresh) {
                self.load_snapshot();
            }
            let (len, removed) = log_state(&self.log).map_err(io_err(&self.dir))?;
            if len < self.pos {
                // Cannot shrink in normal operation: reload from scratch.
                self.reload(self.generation)?;
                continue;
            }
            if len == self.pos {
                if removed && let Some(head) = read_head(&self.dir).filter(|&h| h > self.generation)
                {
                    // The log was removed without a record naming the next generation in it
                    // (which compaction always appends first): follow HEAD rather than write
                    // to a file nobody reads.
                    self.reload(head)?;
                    continue;
                }
                return Ok(true);
            }
            let want = (len - self.pos).min(chunk as u64);
            let more = self.pos + want < len;
            let buf = read_range(&self.log, self.pos, want).map_err(io_err(&self.dir))?;
            let mut off = 0usize;
            let mut next_gen = None;
            let mut clean = true;
            let mut partial = false;
            while off < buf.len() {
                let next = record::next(&buf[off..]);
                if more && matches!(next, Next::Incomplete) {
                    // The record continues in the next chunk.
                    partial = true;
                    break;
                }
                let applied = match next {
                    Next::Record(payload) => {
                        let at = self.pos + off as u64;
                        let len = (record::HEADER + payload.len()) as u64;
                        apply(&mut self.index, payload, at, len)
                            .ok()
                            .map(|g| (g, record::HEADER + payload.len()))
                    }
                    Next::Incomplete | Next::Corrupt => None,
                };
                match applied {
                    Some((g, n)) => {
                        off += n;
                        if g.is_some() {
                            next_gen = g;
                            break;
                        }
                    }
                    None if !locked => {
                        clean = false;
                        break;
                    }
                    None => {
                        // Damaged bytes (a torn tail, or damage in the middle): remember where,
                        // and carry on from the next intact record, if there is one.
                        self.damaged.get_or_insert(self.pos + off as u64);
                        match resync(&buf, off) {
                            Some(next) => off = next,
                            None => break,
                        }
                    }
                }
            }
            self.pos += off as u64;
            if !clean {
                return Ok(false);
            }
            if partial {
                // Read at least the whole next record.
                chunk = if off == 0 {
                    record_len(&buf).map_or(chunk * 2, |n| n.max(chunk))
                } else {
                    SYNC_CHUNK
                };
                continue;
            }
            if more && next_gen.is_none() {
                chunk = SYNC_CHUNK;
                continue;
            }
            if next_gen.is_none() && self.damaged.is_some() {
                // A writer that found this damage compacted past it; its record naming the new
                // generation sits after the damage, but HEAD names it too.
                if let Some(head) = read_head(&self.dir).filter(|&h| h > self.generation) {
                    next_gen = Some(head);
                }
            }
            match next_gen {
                Some(g) => self.reload(g)?,
                None => return Ok(true),
            }
        }
    }

    fn reload(&mut self, generation: u64) -> Result<()> {
        let (log, generation) = open_log(&self.dir, generation)?;
        self.log = log;
        self.generation = generation;
        self.pos = 0;
        self.fresh = true;
        self.snap_pos = 0;
        self.snap_len = 0;
        self.damaged = None;
        self.index = Index::default();
        Ok(())
    }

    /// Start from this generation's snapshot, if there is one that matches the log.
    fn load_snapshot(&mut self) {
        let path = self.dir.join(idx_name(self.generation));
        let Some(snap) = snapshot::open(&path, self.generation) else {
            return;
        };
        if self.tail_crc(snap.covered).ok() != Some(snap.tail_crc) {
            return;
        }
        self.index = Index::from_snapshot(snap.lazy, snap.totals);
        self.pos = snap.covered;
        self.snap_pos = snap.covered;
        self.snap_len = snap.len;
    }

    /// The checksum of the log's last `TAIL_CHECK` bytes before `end`.
    fn tail_crc(&self, end: u64) -> std::io::Result<u32> {
        let from = end.saturating_sub(snapshot::TAIL_CHECK);
        let mut buf = vec![0u8; (end - from) as usize];
        read_at(&self.log, &mut buf, from)?;
        Ok(crc32fast::hash(&buf))
    }

    /// Rebuild the index from the whole log, checking every record (no snapshot).
    fn rebuild(&mut self) -> Result<()> {
        self.reload(self.generation)?;
        self.fresh = false;
        // The snapshot is not used, but it is still on disk (and in the volume).
        self.stat_snapshot();
        self.sync()
    }

    /// The size of this generation's snapshot file, as it is now.
    fn stat_snapshot(&mut self) {
        let path = self.dir.join(idx_name(self.generation));
        self.snap_len = fs::metadata(path).map_or(0, |m| m.len());
    }

    /// Write a snapshot if the log has grown enough past the newest one (caller holds the
    /// exclusive lock). A snapshot only speeds up opening, so failing to write one (a full
    /// disk, say) is not an error of the write that triggered it.
    fn maybe_snapshot(&mut self) {
        if self.pending.is_some() || self.damaged.is_some() {
            return;
        }
        let due = SNAPSHOT_EVERY.max(self.index.len_at_most() as u64 * SNAPSHOT_PER_ROW);
        let tail = self.pos.saturating_sub(self.snap_pos);
        if tail < due
            || (tail < MAX_DUE * due && self.snap_not_before.is_some_and(|t| Instant::now() < t))
        {
            return;
        }
        if self.pos >= COMPACT_MIN && self.pos > 2 * self.index.live_bytes() {
            // Compaction writes a snapshot of its own.
            let _ = self.compact();
            return;
        }
        let path = self.dir.join(idx_name(self.generation));
        if let Some(covered) = snapshot::peek_covered(&path, self.generation)
            && covered > self.snap_pos
            && covered <= self.pos
        {
            // Another process wrote a newer one.
            self.snap_pos = covered;
            self.stat_snapshot();
            if self.pos - covered < due {
                return;
            }
        }
        let started = Instant::now();
        let _ = self.write_snapshot();
        self.snap_not_before = Some(Instant::now() + started.elapsed() * SNAPSHOT_SHARE);
    }

    /// Before the handle goes: if this process holds every row in memory and the log has
    /// grown past the newest snapshot, leave a fresh one, so that the next process to open
    /// replays little. Never waits for the lock.
    fn snapshot_on_close(&mut self) {
        if self.txn > 0
            || self.damaged.is_some()
            || !self.index.is_complete()
            || self.pos < SNAPSHOT_MIN
            || self.pos - self.snap_pos < SNAPSHOT_ON_CLOSE
            || self.lock_file.try_lock().is_err()
        {
            return;
        }
        self.held = Some(true);
        if self.sync().is_ok() && self.index.is_complete() && self.damaged.is_none() {
            let path = self.dir.join(idx_name(self.generation));
            let newest = snapshot::peek_covered(&path, self.generation)
                .filter(|&c| c <= self.pos)
                .unwrap_or(0)
                .max(self.snap_pos);
            if self.pos - newest >= SNAPSHOT_ON_CLOSE {
                let _ = self.write_snapshot();
            }
        }
        self.held = None;
        let _ = self.lock_file.unlock();
    }

    fn write_snapshot(&mut self) -> Result<()> {
        if self.pending.is_some() {
            return Ok(());
        }
        let crc = self.tail_crc(self.pos).map_err(io_err(&self.dir))?;
        let mut body = std::mem::take(&mut self.snap_buf);
        let start = snapshot::encode(&mut self.index, self.generation, self.pos, crc, &mut body);
        let written = (start.len() + body.len()) as u64;
        if self.index.broken {
            self.snap_buf = body;
            return Ok(());
        }
        let path = self.dir.join(idx_name(self.generation));
        let result = fsio::atomic_write(&path, false, |f| {
            f.write_all(&start)?;
            f.write_all(&body)
        });
        self.snap_buf = body;
        result?;
        self.snap_pos = self.pos;
        self.snap_len = written;
        Ok(())
    }

    /// Make sure the row for a key is in memory (parsing its snapshot bucket if need be).
    fn load(&mut self, key: &Val, raw: bool) -> Result<()> {
        self.index.load(key, raw);
        if self.index.touched_widely() {
            // A process that looks up this many keys will want most of them: one pass over
            // the log is cheaper than reading the rest bucket by bucket, and leaves small
            // values in memory. (A log too large for that has its snapshot read whole.)
            if self.pos <= INLINE_BUDGET as u64 {
                return self.rebuild_in_place();
            }
            self.index.complete();
        }
        self.recover_index()
    }

    /// Make sure every row is in memory.
    fn load_all(&mut self) -> Result<&mut Index> {
        self.index.complete();
        self.recover_index()?;
        Ok(&mut self.index)
    }

    /// If a snapshot bucket could not be read (damaged, or gone from under an open file on a
    /// network filesystem), rebuild the index from the log alone, as without a snapshot,
    /// keeping a transaction's records not yet written.
    fn recover_index(&mut self) -> Result<()> {
        if !self.index.broken {
            return Ok(());
        }
        self.rebuild_in_place()
    }

    /// Rebuild the index from the whole log in the middle of an operation, keeping a
    /// transaction's records not yet written.
    fn rebuild_in_place(&mut self) -> Result<()> {
        // The log is read as a locked reader reads it: lock if this call holds no lock.
        let lock_here = self.held.is_none() && self.txn == 0;
        if lock_here {
            self.flock(false)?;
        }
        let result = self.rebuild().map(|()| {
            if let Some(batch) = self.pending.as_ref().filter(|b| b.len() > 1) {
                let len = (record::HEADER + batch.len()) as u64;
                let _ = apply(&mut self.index, batch, self.pos, len);
            }
        });
        if lock_here {
            let _ = self.lock_file.unlock();
        }
        result
    }

    /// Bytes on disk: the log, the snapshot and the value files (`size` of their rows).
    fn disk_volume(&mut self) -> u64 {
        self.pos + self.snap_len + self.index.size().max(0) as u64
    }

    /// Append records and apply them (caller holds the exclusive lock, index synced). Several
    /// records go in one batch record, so they apply together or not at all.
    fn append(&mut self, payloads: &[Vec<u8>]) -> Result<()> {
        if let Some(batch) = self.pending.as_mut() {
            for p in payloads {
                // Where this record will be once the batch is written at `pos`.
                let at = self.pos + record::HEADER as u64 + batch.len() as u64;
                record::frame(p, batch);
                let _ = apply(&mut self.index, p, at, (record::HEADER + p.len()) as u64);
            }
            return Ok(());
        }
        let mut buf = Vec::new();
        let base = self.pos;
        if payloads.len() == 1 {
            record::frame(&payloads[0], &mut buf);
        } else {
            let mut batch = vec![record::OP_BATCH];
            for p in payloads {
                record::frame(p, &mut batch);
            }
            record::frame(&batch, &mut buf);
        }
        let path = self.dir.join(log_name(self.generation));
        self.log.write_all(&buf).map_err(io_err(&path))?;
        let payload = &buf[record::HEADER..];
        let _ = apply(&mut self.index, payload, base, buf.len() as u64);
        self.pos += buf.len() as u64;
        // Read after applying: the record may be the one that turns `durable` on.
        self.unsynced |= self.durable();
        Ok(())
    }

    /// Bytes of the log at `offset`, including a transaction's records not yet written.
    fn read_log(&self, offset: u64, len: u64) -> Result<Vec<u8>> {
        if let Some(batch) = &self.pending
            && offset >= self.pos
        {
            let start = (offset - self.pos) as usize - record::HEADER;
            return batch
                .get(start..start + len as usize)
                .map(<[u8]>::to_vec)
                .ok_or_else(|| KvError::Corrupt(format!("pending value at offset {offset}")));
        }
        let mut buf = vec![0u8; len as usize];
        read_at(&self.log, &mut buf, offset).map_err(io_err(&self.dir))?;
        Ok(buf)
    }

    /// A value read from its log record, whose checksum is verified on the way.
    fn read_value(&self, row: &Row) -> Result<Val> {
        let damaged = || {
            KvError::Corrupt(format!(
                "{}: the record of row {} at offset {} is damaged",
                log_name(self.generation),
                row.rowid,
                row.record
            ))
        };
        let buf = self.read_log(row.record, row.record_len)?;
        if !matches!(record::next(&buf), Next::Record(p) if p.len() + record::HEADER == buf.len()) {
            return Err(damaged());
        }
        let at = row.value_at as usize;
        let bytes = buf
            .get(at..at + row.value_len as usize)
            .ok_or_else(damaged)?;
        Val::decode(&mut Reader::new(bytes)).map_err(|_| damaged())
    }

    /// A row being replaced or deleted, as handed back to the caller: with its value, or
    /// with NULL if its record is damaged (which must not keep it from being overwritten).
    fn replaced(&self, row: &Row) -> RowOut {
        let value = match &row.inline {
            Some(v) => v.clone(),
            None => self.read_value(row).unwrap_or(Val::Null),
        };
        Self::row_out(row, value)
    }

    fn resolve(&self, row: &Row) -> Result<RowOut> {
        let value = match &row.inline {
            Some(v) => v.clone(),
            None => self.read_value(row)?,
        };
        Ok(Self::row_out(row, value))
    }

    fn row_out(row: &Row, value: Val) -> RowOut {
        RowOut {
            rowid: row.rowid,
            row: NewRow {
                key: row.key.clone(),
                raw: row.raw,
                store_time: row.store_time,
                expire_time: row.expire_time,
                access_time: row.access_time,
                access_count: row.access_count,
                tag: row.tag.clone(),
                size: row.size,
                mode: row.mode,
                filename: row.filename.clone(),
                value,
            },
        }
    }

    // ---- reads (shared lock) ----

    /// The row for a key whatever its expiry.
    pub fn row(&mut self, key: &Val, raw: bool) -> Result<Option<RowOut>> {
        self.with_lock(false, |s| s.fetch(key, raw, None))
    }

    /// The row for a key, unless it expired by `now`, its value resolved. A value read from
    /// the log is kept in memory if small, so the next read of it is a memory read too.
    fn fetch(&mut self, key: &Val, raw: bool, now: Option<f64>) -> Result<Option<RowOut>> {
        self.fetch_map(key, raw, now, Self::row_out)
    }

    /// `fetch`, handing the row and its value to `map` instead of copying every field.
    fn fetch_map<R>(
        &mut self,
        key: &Val,
        raw: bool,
        now: Option<f64>,
        map: impl FnOnce(&Row, Val) -> R,
    ) -> Result<Option<R>> {
        self.load(key, raw)?;
        let (value, from_log) = match self.index.get(key, raw) {
            Some(r) if now.is_none_or(|now| r.expire_time.is_none_or(|e| e > now)) => {
                match &r.inline {
                    Some(v) => (v.clone(), false),
                    None => (self.read_value(r)?, true),
                }
            }
            _ => return Ok(None),
        };
        if from_log {
            let id = (key.clone(), raw);
            self.index
                .keep_inline(&id, &value, INLINE_MAX, INLINE_BUDGET);
        }
        Ok(self.index.get(key, raw).map(|r| map(r, value)))
    }

    /// A live row for a key, updating access fields for `policy` and hit/miss counters.
    pub fn lookup(
        &mut self,
        key: &Val,
        raw: bool,
        now: f64,
        policy: Policy,
        stats: bool,
    ) -> Result<Option<RowOut>> {
        self.lookup_map(key, raw, now, policy, stats, Self::row_out)
    }

    /// `lookup`, handing the row and its value to `map` instead of copying every field.
    pub fn lookup_map<R>(
        &mut self,
        key: &Val,
        raw: bool,
        now: f64,
        policy: Policy,
        stats: bool,
        map: impl FnOnce(&Row, Val) -> R,
    ) -> Result<Option<R>> {
        let writes = stats
            || matches!(
                policy,
                Policy::LeastRecentlyUsed | Policy::LeastFrequentlyUsed
            );
        self.with_lock(writes, |s| {
            let found = s.fetch_map(key, raw, Some(now), |r, v| {
                (r.access_time, r.access_count, map(r, v))
            })?;
            let mut payloads = Vec::new();
            if let Some((access_time, access_count, _)) = &found {
                match policy {
                    Policy::LeastRecentlyUsed => {
                        payloads.push(access_payload(key, raw, now, *access_count))
                    }
                    Policy::LeastFrequentlyUsed => {
                        payloads.push(access_payload(key, raw, *access_time, access_count + 1))
                    }
                    _ => {}
                }
            }
            if stats {
                let (h, m) = if found.is_some() { (1, 0) } else { (0, 1) };
                payloads.push(stats_payload(record::OP_STATS, h, m));
            }
            if !payloads.is_empty() {
                s.append(&payloads)?;
            }
            Ok(found.map(|(_, _, out)| out))
        })
    }

    pub fn count(&mut self) -> Result<usize> {
        self.with_lock(false, |s| Ok(s.index.len()))
    }

    /// Bytes on disk: the log, the snapshot and the value files (`size` of their rows).
    pub fn volume(&mut self) -> Result<u64> {
        self.with_lock(false, |s| {
            // Another process may have written a newer snapshot.
            s.stat_snapshot();
            Ok(s.disk_volume())
        })
    }

    pub fn stats(&mut self) -> Result<(i64, i64)> {
        self.with_lock(false, |s| Ok((s.index.hits, s.index.misses)))
    }

    pub fn settings(&mut self) -> Result<Vec<(String, Val)>> {
        self.with_lock(false, |s| {
            Ok(s.index
                .settings
                .iter()
                .map(|(k, v)| (k.clone(), v.clone()))
                .collect())
        })
    }

    /// Keys (with raw flags) in rowid order, or in key order (`by_key`).
    pub fn keys(&mut self, by_key: bool, reverse: bool) -> Result<Vec<KeyId>> {
        self.with_lock(false, |s| {
            let index = s.load_all()?;
            let mut v: Vec<KeyId> = if by_key {
                index.by_key().iter().cloned().collect()
            } else {
                index.by_rowid.values().cloned().collect()
            };
            if reverse {
                v.reverse();
            }
            Ok(v)
        })
    }

    /// First (or last) row by rowid.
    pub fn end_row(&mut self, last: bool) -> Result<Option<RowOut>> {
        self.with_lock(false, |s| {
            let index = s.load_all()?;
            let id = if last {
                index.by_rowid.values().next_back()
            } else {
                index.by_rowid.values().next()
            }
            .cloned();
            match id.and_then(|id| s.index.rows.get(&id)) {
                Some(r) => Ok(Some(s.resolve(r)?)),
                None => Ok(None),
            }
        })
    }

    /// The first (or last) raw row in key order with `lo < key < hi`.
    pub fn end_in_range(&mut self, lo: &Val, hi: &Val, last: bool) -> Result<Option<RowOut>> {
        self.with_lock(false, |s| {
            use std::ops::Bound::Excluded;
            let id = {
                let range = s
                    .load_all()?
                    .by_key()
                    .range((Excluded((lo.clone(), true)), Excluded((hi.clone(), false))));
                let mut ids = range.filter(|(k, raw)| *raw && k > lo && k < hi);
                if last { ids.next_back() } else { ids.next() }.cloned()
            };
            match id.as_ref().and_then(|id| s.index.rows.get(id)) {
                Some(r) => Ok(Some(s.resolve(r)?)),
                None => Ok(None),
            }
        })
    }

    // ---- writes (exclusive lock) ----

    /// Insert or replace a row (keeping the rowid of a replaced one); returns the old row.
    pub fn put(&mut self, row: NewRow) -> Result<Option<RowOut>> {
        self.with_lock(true, |s| {
            s.load(&row.key, row.raw)?;
            let old = s.index.get(&row.key, row.raw).map(|r| s.replaced(r));
            s.append_put(row)?;
            Ok(old)
        })
    }

    /// Append the put of a row (caller holds the exclusive lock, the key loaded).
    fn append_put(&mut self, mut row: NewRow) -> Result<()> {
        let rowid = match self.index.get(&row.key, row.raw) {
            // An update keeps the row's identity, including the key as first stored
            // (3 stays 3 when 3.0 replaces its value), as SQLite's UPDATE does.
            Some(o) => {
                row.key = o.key.clone();
                o.rowid
            }
            None => self.index.next_rowid(),
        };
        self.append(&[put_payload(rowid, &row)])?;
        self.maybe_compact()
    }

    pub fn delete(&mut self, key: &Val, raw: bool) -> Result<Option<RowOut>> {
        self.with_lock(true, |s| {
            s.load(key, raw)?;
            let old = match s.index.get(key, raw) {
                Some(r) => s.replaced(r),
                None => return Ok(None),
            };
            s.append(&[del_payload(key, raw)])?;
            Ok(Some(old))
        })
    }

    /// Delete rows by id, returning their filenames.
    fn delete_ids(&mut self, ids: &[KeyId]) -> Result<Vec<Option<String>>> {
        let mut names = Vec::new();
        let mut payloads = Vec::new();
        for (k, raw) in ids {
            if let Some(r) = self.index.get(k, *raw) {
                names.push(r.filename.clone());
                payloads.push(del_payload(k, *raw));
            }
        }
        if !payloads.is_empty() {
            self.append(&payloads)?;
        }
        Ok(names)
    }

    pub fn touch(
        &mut self,
        key: &Val,
        raw: bool,
        now: f64,
        expire_time: Option<f64>,
    ) -> Result<bool> {
        self.with_lock(true, |s| {
            s.load(key, raw)?;
            match s.index.get(key, raw) {
                Some(r) if r.expire_time.is_none_or(|e| e > now) => {}
                _ => return Ok(false),
            }
            s.append(&[touch_payload(key, raw, expire_time)])?;
            Ok(true)
        })
    }

    /// Remove expired rows (at most `limit`), returning their filenames.
    pub fn expire(&mut self, now: f64, limit: Option<usize>) -> Result<Vec<Option<String>>> {
        self.with_lock(true, |s| {
            let ids = s.expired(now, limit.unwrap_or(usize::MAX))?;
            s.delete_ids(&ids)
        })
    }

    /// Up to `limit` rows that expired before `now`, earliest first.
    fn expired(&mut self, now: f64, limit: usize) -> Result<Vec<KeyId>> {
        self.index.expiry_complete_before(now);
        self.recover_index()?;
        let index = &self.index;
        Ok(index
            .by_expiry
            .iter()
            .take_while(|(F(e), _)| *e < now)
            .take(limit)
            .filter_map(|(_, rowid)| index.by_rowid.get(rowid).cloned())
            .collect())
    }

    /// Remove rows with `tag`, returning their filenames.
    pub fn evict(&mut self, tag: &Val) -> Result<Vec<Option<String>>> {
        self.with_lock(true, |s| {
            let index = s.load_all()?;
            let ids: Vec<KeyId> = index
                .by_rowid
                .values()
                .filter(|id| {
                    index
                        .rows
                        .get(*id)
                        .is_some_and(|r| r.tag == *tag && !matches!(r.tag, Val::Null))
                })
                .cloned()
                .collect();
            s.delete_ids(&ids)
        })
    }

    pub fn clear(&mut self) -> Result<Vec<Option<String>>> {
        self.with_lock(true, |s| {
            let index = s.load_all()?;
            let names = index.rows.values().map(|r| r.filename.clone()).collect();
            s.append(&[vec![record::OP_CLEAR]])?;
            s.compact()?;
            Ok(names)
        })
    }

    /// diskcache's cull: up to `limit` expired rows, then, while the volume is at least
    /// `size_limit`, up to `limit` rows in the policy's order. Returns removed filenames.
    pub fn cull(
        &mut self,
        now: f64,
        limit: usize,
        size_limit: u64,
        policy: Policy,
    ) -> Result<Vec<Option<String>>> {
        self.with_lock(true, |s| {
            let mut names = Vec::new();
            let expired = s.expired(now, limit)?;
            let remaining = limit - expired.len();
            names.extend(s.delete_ids(&expired)?);
            let volume_at_most = s.pos + s.snap_len + s.index.size_at_most().max(0) as u64;
            if remaining == 0 || policy == Policy::None || volume_at_most < size_limit {
                return Ok(names);
            }
            if s.disk_volume() < size_limit {
                return Ok(names);
            }
            if s.pos > 2 * s.index.live_bytes().max(1) && s.pos > 64 * 1024 {
                // Much of the volume is dead log: reclaim it before evicting live entries.
                s.compact()?;
                if s.disk_volume() < size_limit {
                    return Ok(names);
                }
            }
            s.load_all()?;
            let victims = s.victims(policy, remaining);
            names.extend(s.delete_ids(&victims)?);
            Ok(names)
        })
    }

    fn victims(&self, policy: Policy, limit: usize) -> Vec<KeyId> {
        let mut order: Vec<(F, i64, u64)> = self
            .index
            .rows
            .values()
            .map(|r| match policy {
                Policy::LeastRecentlyUsed => (F(r.access_time), 0, r.rowid),
                Policy::LeastFrequentlyUsed => (F(0.0), r.access_count, r.rowid),
                _ => (F(r.store_time), 0, r.rowid),
            })
            .collect();
        let k = limit.min(order.len());
        if k == 0 {
            return Vec::new();
        }
        if k < order.len() {
            order.select_nth_unstable(k - 1);
            order.truncate(k);
        }
        order.sort_unstable();
        order
            .into_iter()
            .filter_map(|(_, _, rowid)| self.index.by_rowid.get(&rowid).cloned())
            .collect()
    }

    pub fn set_setting(&mut self, name: &str, value: &Val) -> Result<()> {
        self.with_lock(true, |s| {
            if s.index.settings.get(name) == Some(value)
                && same_type(s.index.settings.get(name), value)
            {
                return Ok(());
            }
            s.append(&[setting_payload(name, value)])
        })
    }

    pub fn reset_stats(&mut self) -> Result<()> {
        self.with_lock(true, |s| {
            s.append(&[stats_payload(record::OP_STATS_SET, 0, 0)])
        })
    }

    fn maybe_compact(&mut self) -> Result<()> {
        // (Reading every shadowed bucket for an exact count is left to `maybe_snapshot`.)
        if self.pos >= COMPACT_MIN && self.pos > 2 * self.index.live_bytes_at_most() {
            self.compact()?;
        }
        Ok(())
    }

    /// Rewrite the live state as a new generation (caller holds the exclusive lock).
    ///
    /// The new log is written whole by atomic rename, then the old log gets a record naming
    /// the new generation (the commit point: every reader follows it), then HEAD is updated,
    /// the new generation's snapshot written and the old log and snapshot removed.
    ///
    /// A row whose record no longer reads back intact is left out: it is damaged.
    pub fn compact(&mut self) -> Result<()> {
        if self.pending.is_some() {
            // Inside a transaction: compact once it has committed.
            self.compact_after_commit = true;
            return Ok(());
        }
        if let Some(head) = read_head(&self.dir).filter(|&h| h > self.generation) {
            // This log is not the live one (its successor would have been named in it):
            // writing the next generation from it would replace a live log.
            self.reload(head)?;
            self.sync()?;
        }
        self.load_all()?;
        let next = self.generation + 1;
        // A snapshot left by an earlier attempt at this generation describes another log.
        let _ = fs::remove_file(self.dir.join(idx_name(next)));
        let mut buf = Vec::new();
        for (name, value) in &self.index.settings {
            record::frame(&setting_payload(name, value), &mut buf);
        }
        record::frame(
            &stats_payload(record::OP_STATS_SET, self.index.hits, self.index.misses),
            &mut buf,
        );
        let ids: Vec<u64> = self.index.by_rowid.keys().copied().collect();
        for rowid in ids {
            let Some(row) = self.index.by_rowid_row(rowid) else {
                continue;
            };
            if let Ok(out) = self.resolve(row) {
                record::frame(&put_payload(rowid, &out.row), &mut buf);
            }
        }
        let new_path = self.dir.join(log_name(next));
        let durable = self.durable();
        // Durable: the new log and HEAD are flushed (with their directory) before the record
        // naming the new generation, and that record before the old log goes.
        fsio::atomic_write(&new_path, durable, |f| f.write_all(&buf))?;
        let mut generation_rec = Vec::new();
        record::frame(&generation_payload(next), &mut generation_rec);
        self.log
            .write_all(&generation_rec)
            .map_err(io_err(&self.dir))?;
        if durable {
            self.log.sync_data().map_err(io_err(&self.dir))?;
        }
        let head = self.dir.join(HEAD_NAME);
        fsio::atomic_write(&head, durable, |f| f.write_all(next.to_string().as_bytes()))?;
        let old = self.generation;
        self.reload(next)?;
        self.sync()?;
        if self.pos >= SNAPSHOT_MIN {
            // (A smaller log replays about as fast as a snapshot loads.)
            let _ = self.write_snapshot();
        }
        let _ = fs::remove_file(self.dir.join(log_name(old)));
        let _ = fs::remove_file(self.dir.join(idx_name(old)));
        Ok(())
    }

    /// Verify the log; with `fix`, rewrite it without damaged parts. Returns warnings.
    pub fn check(&mut self, fix: bool) -> Result<Vec<String>> {
        // Rebuilding reads the whole log as a locked reader does: take the lock even where
        // reads go without it, or an append in progress would look like damage.
        let unlocked = std::mem::replace(&mut self.unlocked_reads, false);
        let result = self.with_lock(fix, |s| s.check_locked(fix));
        self.unlocked_reads = unlocked;
        result
    }

    fn check_locked(&mut self, fix: bool) -> Result<Vec<String>> {
        if self.pending.is_none() {
            // Every record is verified, not only those after the snapshot. (Inside a
            // transaction the index holds its uncommitted rows and is kept as it is.)
            self.rebuild()?;
        }
        let mut warnings = Vec::new();
        if let Some(at) = self.damaged {
            let len = self.log.metadata().map_err(io_err(&self.dir))?.len();
            warnings.push(format!(
                "{}: damaged or incomplete record at offset {at} of {len} bytes; {} bytes after it are unreadable",
                log_name(self.generation),
                len - at
            ));
        }
        warnings.extend(self.snapshot_problem());
        for path in self.debris() {
            warnings.push(format!(
                "orphan file {} (left by an interrupted compaction or snapshot)",
                path.display()
            ));
            if fix {
                let _ = fs::remove_file(path);
            }
        }
        for r in self.index.rows.values() {
            if r.inline.is_none()
                && let Err(e) = self.read_value(r)
            {
                warnings.push(e.to_string());
            }
        }
        if fix && !warnings.is_empty() {
            self.compact()?;
        }
        Ok(warnings)
    }

    /// What is wrong with this generation's snapshot, if there is one and it is unusable.
    fn snapshot_problem(&self) -> Option<String> {
        let name = idx_name(self.generation);
        let path = self.dir.join(&name);
        if !path.exists() {
            return None;
        }
        match snapshot::open(&path, self.generation) {
            Some(snap) if self.tail_crc(snap.covered).ok() != Some(snap.tail_crc) => Some(format!(
                "{name}: index snapshot does not match the log (ignored)"
            )),
            Some(snap) => match snap.lazy.take_all() {
                Ok(_) => None,
                Err(_) => Some(format!("{name}: damaged index snapshot (ignored)")),
            },
            None => Some(format!("{name}: damaged index snapshot (ignored)")),
        }
    }

    /// Engine files nobody uses: logs and snapshots of other generations, and temp files,
    /// left by a process killed while compacting or writing a snapshot. (Only meaningful
    /// under the lock: no writer is making such files then.)
    fn debris(&self) -> Vec<PathBuf> {
        let current = [log_name(self.generation), idx_name(self.generation)];
        let Ok(entries) = fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .filter(|n| {
                let engine =
                    n.starts_with("cache.") && (n.ends_with(".log") || n.ends_with(".idx"));
                let temp = fsio::is_temp_name(n)
                    && (n.starts_with(".cache.") || n.starts_with(&format!(".{HEAD_NAME}.")));
                (engine && !current.contains(n)) || temp
            })
            .map(|n| self.dir.join(n))
            .collect()
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // An inherited handle only closes its descriptors: the lock is the parent's.
        if !self.inherited() {
            self.snapshot_on_close();
        }
    }
}

/// The full length of the record starting `buf`, from its header.
fn record_len(buf: &[u8]) -> Option<usize> {
    let head = buf.get(..4)?;
    let n = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    (n <= record::MAX_RECORD).then_some(n + record::HEADER)
}

/// The offset of the next intact record after damaged bytes at `from`, if any.
fn resync(buf: &[u8], from: usize) -> Option<usize> {
    (from + 1..buf.len().saturating_sub(record::HEADER - 1)).find(|&j| {
        match record::next(&buf[j..]) {
            Next::Record(p) => p
                .first()
                .is_some_and(|op| (record::OP_PUT..=record::OP_BATCH).contains(op)),
            _ => false,
        }
    })
}

fn same_type(a: Option<&Val>, b: &Val) -> bool {
    matches!(
        (a, b),
        (Some(Val::Int(_)), Val::Int(_))
            | (Some(Val::Float(_)), Val::Float(_))
            | (Some(Val::Text(_)), Val::Text(_))
            | (Some(Val::Blob(_)), Val::Blob(_))
            | (Some(Val::Null), Val::Null)
    )
}

fn put_payload(rowid: u64, r: &NewRow) -> Vec<u8> {
    let mut p = Vec::with_capacity(96 + r.value.heap_len() + r.key.heap_len());
    record::put_u8(&mut p, record::OP_PUT);
    record::put_u64(&mut p, rowid);
    r.key.encode(&mut p);
    record::put_u8(&mut p, r.raw as u8);
    record::put_f64(&mut p, r.store_time);
    record::put_f64(&mut p, r.expire_time.unwrap_or(f64::NAN));
    record::put_f64(&mut p, r.access_time);
    record::put_i64(&mut p, r.access_count);
    r.tag.encode(&mut p);
    record::put_i64(&mut p, r.size);
    record::put_u8(&mut p, r.mode);
    match &r.filename {
        Some(f) => Val::Text(f.clone()).encode(&mut p),
        None => Val::Null.encode(&mut p),
    }
    r.value.encode(&mut p);
    p
}

/// A row's fields as `put_payload` writes them after the op byte, from the rowid up to the
/// value; snapshots store rows with the same fields in the same order. The row's place in
/// the log and its value are the caller's to fill in.
pub(super) fn decode_fields(r: &mut Reader<'_>) -> std::result::Result<Row, record::Short> {
    let rowid = r.u64()?;
    let key = Val::decode(r)?;
    let raw = r.u8()? != 0;
    Ok(Row {
        rowid,
        hash: key.stable_hash(raw),
        key,
        raw,
        store_time: r.f64()?,
        expire_time: opt_f64(r.f64()?),
        access_time: r.f64()?,
        access_count: r.i64()?,
        tag: Val::decode(r)?,
        size: r.i64()?,
        mode: r.u8()?,
        filename: match Val::decode(r)? {
            Val::Text(s) => Some(s),
            _ => None,
        },
        record: 0,
        record_len: 0,
        value_at: 0,
        value_len: 0,
        inline: None,
    })
}

fn del_payload(key: &Val, raw: bool) -> Vec<u8> {
    let mut p = vec![record::OP_DEL];
    key.encode(&mut p);
    p.push(raw as u8);
    p
}

fn touch_payload(key: &Val, raw: bool, expire_time: Option<f64>) -> Vec<u8> {
    let mut p = vec![record::OP_TOUCH];
    key.encode(&mut p);
    p.push(raw as u8);
    record::put_f64(&mut p, expire_time.unwrap_or(f64::NAN));
    p
}

fn access_payload(key: &Val, raw: bool, access_time: f64, access_count: i64) -> Vec<u8> {
    let mut p = vec![record::OP_ACCESS];
    key.encode(&mut p);
    p.push(raw as u8);
    record::put_f64(&mut p, access_time);
    record::put_i64(&mut p, access_count);
    p
}

fn stats_payload(op: u8, hits: i64, misses: i64) -> Vec<u8> {
    let mut p = vec![op];
    record::put_i64(&mut p, hits);
    record::put_i64(&mut p, misses);
    p
}

fn setting_payload(name: &str, value: &Val) -> Vec<u8> {
    let mut p = vec![record::OP_SETTING];
    Val::Text(name.to_owned()).encode(&mut p);
    value.encode(&mut p);
    p
}

fn generation_payload(generation: u64) -> Vec<u8> {
    let mut p = vec![record::OP_GEN];
    record::put_u64(&mut p, generation);
    p
}

fn opt_f64(f: f64) -> Option<f64> {
    (!f.is_nan()).then_some(f)
}

/// Apply one record to the index; returns the next generation for a GEN record.
fn apply(
    index: &mut Index,
    payload: &[u8],
    at: u64,
    len: u64,
) -> std::result::Result<Option<u64>, record::Short> {
    let mut r = Reader::new(payload);
    match r.u8()? {
        record::OP_PUT => {
            let mut row = decode_fields(&mut r)?;
            let start = r.pos;
            let n = Val::skip(&mut r)?;
            if n <= INLINE_MAX && index.inline_bytes + n <= INLINE_BUDGET {
                row.inline = Some(Val::decode(&mut Reader::new(&payload[start..start + n]))?);
            }
            row.record = at;
            row.record_len = len;
            row.value_at = (record::HEADER + start) as u32;
            row.value_len = n as u32;
            index.put(row);
        }
        record::OP_DEL => {
            let key = Val::decode(&mut r)?;
            let raw = r.u8()? != 0;
            index.remove(&(key, raw));
        }
        record::OP_CLEAR => {
            index.clear_rows();
        }
        record::OP_TOUCH => {
            let key = Val::decode(&mut r)?;
            let raw = r.u8()? != 0;
            let e = opt_f64(r.f64()?);
            index.set_expire(&(key, raw), e);
        }
        record::OP_ACCESS => {
            let key = Val::decode(&mut r)?;
            let raw = r.u8()? != 0;
            let t = r.f64()?;
            let c = r.i64()?;
            index.set_access(&(key, raw), t, c);
        }
        record::OP_STATS => {
            index.hits += r.i64()?;
            index.misses += r.i64()?;
        }
        record::OP_STATS_SET => {
            index.hits = r.i64()?;
            index.misses = r.i64()?;
        }
        record::OP_SETTING => {
            let Val::Text(name) = Val::decode(&mut r)? else {
                return Err(record::Short);
            };
            let value = Val::decode(&mut r)?;
            index.settings.insert(name, value);
        }
        record::OP_GEN => return Ok(Some(r.u64()?)),
        record::OP_BATCH => {
            // Inner records sit at `at + HEADER + 1 + offset within the batch`.
            let inner = &payload[1..];
            let mut off = 0usize;
            let mut next = None;
            while off < inner.len() {
                let Next::Record(p) = record::next(&inner[off..]) else {
                    return Err(record::Short);
                };
                let rec_at = at + record::HEADER as u64 + 1 + off as u64;
                let rec_len = (record::HEADER + p.len()) as u64;
                if let Some(g) = apply(index, p, rec_at, rec_len)? {
                    next = Some(g);
                }
                off += record::HEADER + p.len();
            }
            return Ok(next);
        }
        _ => return Err(record::Short),
    }
    Ok(None)
}

pub mod fast;

#[cfg(test)]
mod tests;
