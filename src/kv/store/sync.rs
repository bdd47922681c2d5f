//! Bringing the index up to date with the log: replaying the records appended since the last
//! call (following compactions to new generations, stepping over damage), reloading a
//! generation, and rebuilding the index from the whole log when a snapshot bucket cannot be
//! read. Every operation starts here (`with_lock`), locked or not, so the rules for damaged
//! records and for appends still in progress live in this one place.

use super::payload::apply;
use super::{INLINE_BUDGET, SYNC_CHUNK, Store};
use crate::kv::Result;
use crate::kv::files::{io_err, log_state, open_log, read_head, read_range};
use crate::kv::index::Index;
use crate::kv::record::{self, Next};
use crate::kv::value::Val;

impl Store {
    /// Apply records appended since the last call, following compactions to new generations.
    /// Damaged bytes are recorded and skipped (the caller holds the lock, so no writer is
    /// mid-append).
    pub(super) fn sync(&mut self) -> Result<()> {
        self.sync_inner(true, u64::MAX).map(|_| ())
    }

    /// The same without the lock: stops (returning false) at the first incomplete or damaged
    /// record, which may be a writer's append in progress; the caller then locks and syncs.
    pub(super) fn sync_unlocked(&mut self) -> Result<bool> {
        self.sync_inner(false, u64::MAX)
    }

    /// `sync_unlocked`, unless more than `budget` bytes were appended since the last call or
    /// the log moved to another generation (false, nothing read): for reads made while the
    /// caller holds the GIL, which must stay short.
    pub(super) fn sync_unlocked_within(&mut self, budget: u64) -> Result<bool> {
        if self.fresh {
            return Ok(false);
        }
        let (len, removed) = log_state(&self.log).map_err(io_err(&self.dir))?;
        if removed || len < self.pos || len - self.pos > budget {
            return Ok(false);
        }
        if len == self.pos {
            return Ok(true);
        }
        self.sync_inner(false, budget)
    }

    fn sync_inner(&mut self, locked: bool, budget: u64) -> Result<bool> {
        // The log is read in chunks, so opening a large one needs no buffer its size.
        let mut chunk = SYNC_CHUNK;
        loop {
            if self.fresh && budget != u64::MAX {
                // A new generation (its snapshot, its whole log) is not a short read.
                return Ok(false);
            }
            if std::mem::take(&mut self.fresh) {
                self.load_snapshot();
            }
            let (len, removed) = log_state(&self.log).map_err(io_err(&self.dir))?;
            if len < self.pos || len - self.pos > budget {
                if len >= self.pos {
                    return Ok(false);
                }
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

    pub(super) fn reload(&mut self, generation: u64) -> Result<()> {
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

    /// Rebuild the index from the whole log, checking every record (no snapshot).
    pub(super) fn rebuild(&mut self) -> Result<()> {
        self.reload(self.generation)?;
        self.fresh = false;
        // The snapshot is not used, but it is still on disk (and in the volume).
        self.stat_snapshot();
        self.sync()
    }

    /// Make sure the row for a key is in memory (parsing its snapshot bucket if need be).
    pub(super) fn load(&mut self, key: &Val, raw: bool) -> Result<()> {
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
    pub(super) fn load_all(&mut self) -> Result<&mut Index> {
        self.index.complete();
        self.recover_index()?;
        Ok(&mut self.index)
    }

    /// If a snapshot bucket could not be read (damaged, or gone from under an open file on a
    /// network filesystem), rebuild the index from the log alone, as without a snapshot,
    /// keeping a transaction's records not yet written.
    pub(super) fn recover_index(&mut self) -> Result<()> {
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
