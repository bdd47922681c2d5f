//! The hot tier: decoded partition files kept in memory, per process, in an LRU bounded by
//! bytes. An entry is keyed by the file's path and its [`FileStamp`] (inode, length, mtime):
//! files are only replaced by rename or created anew, so a write by any process, this one or
//! another, changes the stamp or the listing, and the next read decodes again. The check is
//! one `stat` per file read, no timer.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use arrow_array::RecordBatch;

use super::frame;
use crate::fsio::FileStamp;

struct Entry {
    stamp: FileStamp,
    /// The rows decoded, those with `lo <= time < hi`.
    lo: i64,
    hi: i64,
    batches: Vec<RecordBatch>,
    bytes: usize,
    used: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HotStats {
    /// File reads served from memory.
    pub hits: u64,
    /// File reads decoded from disk.
    pub decodes: u64,
    pub evictions: u64,
    pub bytes: usize,
    pub entries: usize,
    pub budget: usize,
}

#[derive(Default)]
struct Inner {
    entries: HashMap<PathBuf, Entry>,
    bytes: usize,
    tick: u64,
    stats: HotStats,
}

/// Decoded files of one `MarketCache`, at most `budget` bytes of Arrow buffers.
pub struct HotTier {
    budget: usize,
    inner: Mutex<Inner>,
}

impl std::fmt::Debug for HotTier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HotTier({:?})", self.stats())
    }
}

impl HotTier {
    pub fn new(budget: usize) -> Self {
        HotTier {
            budget,
            inner: Mutex::new(Inner::default()),
        }
    }

    pub fn budget(&self) -> usize {
        self.budget
    }

    /// The rows of `path` with `lo <= time < hi` if held for this stamp (slices, no copy).
    pub fn get(&self, path: &Path, stamp: FileStamp, lo: i64, hi: i64) -> Option<Vec<RecordBatch>> {
        let mut inner = self.inner.lock().ok()?;
        inner.tick += 1;
        let tick = inner.tick;
        let entry = inner.entries.get_mut(path)?;
        if entry.stamp != stamp || lo < entry.lo || hi > entry.hi {
            return None;
        }
        entry.used = tick;
        let out = entry
            .batches
            .iter()
            .map(|b| frame::slice_sorted(b, lo, hi))
            .filter(|b| b.num_rows() > 0)
            .collect();
        inner.stats.hits += 1;
        Some(out)
    }

    /// Remember what was decoded of `path` (its rows with `lo <= time < hi`).
    pub fn put(&self, path: &Path, stamp: FileStamp, lo: i64, hi: i64, batches: &[RecordBatch]) {
        let bytes: usize = batches.iter().map(|b| b.get_array_memory_size()).sum();
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        inner.stats.decodes += 1;
        if bytes > self.budget {
            if let Some(old) = inner.entries.remove(path) {
                inner.bytes -= old.bytes;
            }
            return;
        }
        inner.tick += 1;
        let used = inner.tick;
        let entry = Entry {
            stamp,
            lo,
            hi,
            batches: batches.to_vec(),
            bytes,
            used,
        };
        if let Some(old) = inner.entries.insert(path.to_owned(), entry) {
            inner.bytes -= old.bytes;
        }
        inner.bytes += bytes;
        while inner.bytes > self.budget {
            let Some(victim) = inner
                .entries
                .iter()
                .min_by_key(|(_, e)| e.used)
                .map(|(p, _)| p.clone())
            else {
                break;
            };
            if let Some(old) = inner.entries.remove(&victim) {
                inner.bytes -= old.bytes;
                inner.stats.evictions += 1;
            }
        }
    }

    pub fn clear(&self) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.entries.clear();
            inner.bytes = 0;
        }
    }

    pub fn stats(&self) -> HotStats {
        self.inner.lock().map_or_else(
            |_| HotStats::default(),
            |i| HotStats {
                bytes: i.bytes,
                entries: i.entries.len(),
                budget: self.budget,
                ..i.stats
            },
        )
    }

    pub fn reset_stats(&self) {
        if let Ok(mut inner) = self.inner.lock() {
            inner.stats = HotStats::default();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stamp(dir: &Path) -> FileStamp {
        FileStamp::of(&std::fs::metadata(dir).unwrap())
    }

    #[test]
    fn hits_only_for_the_same_stamp_and_a_range_inside() {
        let dir = tempfile::tempdir().unwrap();
        let s = stamp(dir.path());
        let rows: Vec<[f64; 6]> = (0..10)
            .map(|i| [i as f64 * 60_000.0, 1.0, 2.0, 0.5, 1.5, 3.0])
            .collect();
        let batch = frame::from_rows(&rows);
        let hot = HotTier::new(1 << 20);
        let p = Path::new("/x/2024-01.parquet");
        assert!(hot.get(p, s, 0, 600_000).is_none());
        hot.put(p, s, 0, 600_000, std::slice::from_ref(&batch));
        let got = hot.get(p, s, 60_000, 180_000).unwrap();
        assert_eq!(frame::times(&got[0]).values(), &[60_000, 120_000]);
        assert!(
            hot.get(p, s, -1, 100).is_none(),
            "wider than what was decoded"
        );
        std::fs::write(dir.path().join("f"), b"x").unwrap();
        let other = stamp(&dir.path().join("f"));
        assert!(hot.get(p, other, 0, 100).is_none(), "another stamp");
        let st = hot.stats();
        assert_eq!((st.hits, st.decodes, st.entries), (1, 1, 1));
    }

    #[test]
    fn the_budget_evicts_the_least_recently_used() {
        let dir = tempfile::tempdir().unwrap();
        let s = stamp(dir.path());
        let batch = frame::from_rows(&[[0.0, 1.0, 2.0, 0.5, 1.5, 3.0]]);
        let size = batch.get_array_memory_size();
        let hot = HotTier::new(size * 2);
        for name in ["a", "b"] {
            hot.put(Path::new(name), s, 0, 1, std::slice::from_ref(&batch));
        }
        assert!(hot.get(Path::new("a"), s, 0, 1).is_some());
        hot.put(Path::new("c"), s, 0, 1, std::slice::from_ref(&batch));
        assert!(
            hot.get(Path::new("b"), s, 0, 1).is_none(),
            "b was least recently used"
        );
        assert!(hot.get(Path::new("a"), s, 0, 1).is_some());
        assert_eq!(hot.stats().evictions, 1);
    }
}
