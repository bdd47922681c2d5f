//! Upkeep of the index snapshot (its format is in `kv/snapshot.rs`): starting from one when
//! it matches the log, deciding when a writer writes a new one, and leaving one when a handle
//! goes. A snapshot only speeds up opening, so nothing here fails the operation that
//! triggered it.

use std::fs;
use std::io::Write;
use std::time::Instant;

use super::{
    COMPACT_MIN, MAX_DUE, SNAPSHOT_EVERY, SNAPSHOT_MIN, SNAPSHOT_ON_CLOSE, SNAPSHOT_PER_ROW,
    SNAPSHOT_SHARE, Store,
};
use crate::fsio;
use crate::kv::Result;
use crate::kv::files::{io_err, read_at};
use crate::kv::index::Index;
use crate::kv::snapshot::{self, idx_name};

impl Store {
    /// Start from this generation's snapshot, if there is one that matches the log.
    pub(super) fn load_snapshot(&mut self) {
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
    pub(super) fn tail_crc(&self, end: u64) -> std::io::Result<u32> {
        let from = end.saturating_sub(snapshot::TAIL_CHECK);
        let mut buf = vec![0u8; (end - from) as usize];
        read_at(&self.log, &mut buf, from)?;
        Ok(crc32fast::hash(&buf))
    }

    /// The size of this generation's snapshot file, as it is now.
    pub(super) fn stat_snapshot(&mut self) {
        let path = self.dir.join(idx_name(self.generation));
        self.snap_len = fs::metadata(path).map_or(0, |m| m.len());
    }

    /// Write a snapshot if the log has grown enough past the newest one (caller holds the
    /// exclusive lock). A snapshot only speeds up opening, so failing to write one (a full
    /// disk, say) is not an error of the write that triggered it.
    pub(super) fn maybe_snapshot(&mut self) {
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
    pub(super) fn snapshot_on_close(&mut self) {
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

    pub(super) fn write_snapshot(&mut self) -> Result<()> {
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
}
