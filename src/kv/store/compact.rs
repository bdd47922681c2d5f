//! Compaction, which rewrites the live state as the next generation, and `check`, which
//! verifies the whole log and, with `fix`, compacts past damage and removes debris. Both deal
//! in generations and in the files other generations leave behind.

use std::fs;
use std::io::Write;
use std::path::PathBuf;

use super::payload::{generation_payload, put_payload, setting_payload, stats_payload};
use super::{COMPACT_MIN, SNAPSHOT_MIN, Store};
use crate::fsio;
use crate::kv::Result;
use crate::kv::files::{HEAD_NAME, io_err, log_name, read_head};
use crate::kv::record;
use crate::kv::snapshot::{self, idx_name};

impl Store {
    pub(super) fn maybe_compact(&mut self) -> Result<()> {
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
    pub(super) fn debris(&self) -> Vec<PathBuf> {
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
