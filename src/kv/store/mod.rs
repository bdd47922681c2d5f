//! One cache directory: the segment log, its lock, and the index built from it.
//!
//! This file holds the handle (`Store`), its tuning constants, opening, locking and
//! transactions: what every operation goes through. The rest is split by concern, each an
//! `impl Store` of its own: `sync` (replaying the log into the index), `snapshots` (snapshot
//! upkeep), `read`, `write`, `compact` (compaction and `check`), `payload` (record encoders
//! and `apply`), and `fast` (whole operations for the Python fast path).

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use super::files::{LOCK_NAME, init_head, io_err, log_name, open_log, read_head};
use super::index::Index;
use super::record;
use super::row::Fields;
use super::value::Val;
use super::{KvError, Result};
use crate::fsio;

mod compact;
pub mod fast;
mod payload;
mod read;
mod snapshots;
mod sync;
mod write;

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

/// A row's fields and its value: what `put` stores and what reads hand out (in `RowOut`).
#[derive(Clone, Debug)]
pub struct NewRow {
    pub f: Fields,
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

    /// Whether a read under this policy writes the row's access fields (diskcache's `get`
    /// updates them for LRU and LFU).
    pub fn records_access(self) -> bool {
        matches!(
            self,
            Policy::LeastRecentlyUsed | Policy::LeastFrequentlyUsed
        )
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
}

impl Drop for Store {
    fn drop(&mut self) {
        // An inherited handle only closes its descriptors: the lock is the parent's.
        if !self.inherited() {
            self.snapshot_on_close();
        }
    }
}

#[cfg(test)]
mod tests;
