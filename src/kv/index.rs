//! The in-memory index a process builds from the log: rows by key, by rowid, by key order,
//! by expiry; settings; hit/miss counters.
//!
//! An index opened from a snapshot starts with no rows in memory: a key's bucket of the
//! snapshot is read the first time the key is looked up (`load`), and the whole snapshot when
//! an operation needs every row (`complete`). Records replayed from the log after the
//! snapshot are applied without reading buckets: a row they write or delete shadows the
//! snapshot's row for that key, which is dropped (and taken out of the counters) when its
//! bucket is read, and a change of expiry or access fields is kept as a patch applied then.
//! The counters are exact once the shadowed buckets are read (`len`, `size` and
//! `live_bytes` read them), which a reader that only looks keys up never needs.

use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::FxHashMap;

use super::record::{Reader, Short};
use super::row::Fields;
use super::snapshot::{Lazy, Taken};
use super::value::Val;

#[derive(Clone, Debug)]
pub struct Row {
    pub rowid: u64,
    /// `f.key.stable_hash(f.raw)`, worked out once (snapshots group rows by it).
    pub hash: u64,
    pub f: Fields,
    /// The log record that holds this row: where its frame starts and how long it is.
    pub record: u64,
    pub record_len: u64,
    /// Where the value's encoding sits within that frame.
    pub value_at: u32,
    pub value_len: u32,
    /// The value, when it is kept in memory; otherwise it is read from the record.
    pub inline: Option<Val>,
}

impl Row {
    /// A row as put records and snapshot rows begin: its rowid, then its fields. Where its
    /// value is in the log, and the value itself, are the caller's to fill in.
    pub fn decode(r: &mut Reader<'_>) -> Result<Row, Short> {
        let rowid = r.u64()?;
        let f = Fields::decode(r)?;
        Ok(Row {
            rowid,
            hash: f.key.stable_hash(f.raw),
            f,
            record: 0,
            record_len: 0,
            value_at: 0,
            value_len: 0,
            inline: None,
        })
    }

    /// Bytes of this row's value kept in memory.
    pub fn inline_len(&self) -> usize {
        self.inline.as_ref().map_or(0, Val::heap_len)
    }
}

pub type KeyId = (Val, bool);

/// Total order on f64 for index keys.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct F(pub f64);

impl Eq for F {}
impl PartialOrd for F {
    fn partial_cmp(&self, o: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for F {
    fn cmp(&self, o: &Self) -> std::cmp::Ordering {
        self.0.total_cmp(&o.0)
    }
}

#[derive(Default)]
pub struct Index {
    pub rows: FxHashMap<KeyId, Row>,
    pub by_rowid: BTreeMap<u64, KeyId>,
    /// Built on first use (key-order iteration and queues), then kept up to date.
    by_key: Option<BTreeSet<KeyId>>,
    pub by_expiry: BTreeSet<(F, u64)>,
    pub settings: BTreeMap<String, Val>,
    /// Sum of `size` over rows: the bytes of values kept in their own files.
    size: i64,
    pub hits: i64,
    pub misses: i64,
    /// Bytes of log records still describing live state.
    live_bytes: u64,
    /// Bytes of values held in memory (bounded by the store's budget).
    pub inline_bytes: usize,
    /// The snapshot's rows not parsed yet; `None` once all are (or without a snapshot).
    lazy: Option<Lazy>,
    /// A snapshot bucket failed to parse: its rows are missing, so the owner must rebuild
    /// the index from the log.
    pub broken: bool,
}

impl Index {
    /// An index whose rows are in `lazy`, with counters and settings as the snapshot has them.
    pub fn from_snapshot(lazy: Lazy, head: super::snapshot::Totals) -> Index {
        Index {
            settings: head.settings,
            size: head.size,
            hits: head.hits,
            misses: head.misses,
            live_bytes: head.live_bytes,
            lazy: Some(lazy),
            ..Index::default()
        }
    }

    /// Read the snapshot bucket that holds a key, if not done yet.
    pub fn load(&mut self, key: &Val, raw: bool) {
        if let Some(lazy) = self.lazy.as_mut().filter(|l| l.holds(key, raw)) {
            let taken = lazy.take_bucket_of(key, raw);
            self.adopt(taken);
        }
    }

    /// Read the buckets of the keys written or deleted since the snapshot, so that the
    /// counters are exact.
    fn resolve(&mut self) {
        if let Some(lazy) = self.lazy.as_mut().filter(|l| l.has_shadows()) {
            let taken = lazy.take_shadowed();
            self.adopt(taken);
        }
    }

    /// Read every remaining snapshot bucket, so that every row is in memory; returns self
    /// for the operations that need all rows (iteration, eviction order, compaction).
    pub fn complete(&mut self) -> &mut Index {
        if let Some(lazy) = self.lazy.take() {
            let taken = lazy.take_all();
            self.adopt(taken);
        }
        self
    }

    fn adopt(&mut self, taken: Result<Taken, Short>) {
        let Ok(taken) = taken else {
            // Its rows are missing now: the owner must rebuild from the log.
            self.lazy = None;
            self.broken = true;
            return;
        };
        for row in taken.stale {
            // In the snapshot's totals, but replaced or deleted since.
            self.size -= row.f.size;
            self.live_bytes = self.live_bytes.saturating_sub(row.record_len);
        }
        for row in taken.rows {
            // The totals already count the snapshot's rows: index the row without them.
            let id: KeyId = (row.f.key.clone(), row.f.raw);
            self.insert(id, row);
        }
        if self.lazy.as_ref().is_some_and(Lazy::is_done) {
            self.lazy = None;
        }
    }

    /// Whether lookups have read so many of the snapshot's buckets one by one (an eighth)
    /// that reading the rest at once is cheaper.
    pub fn touched_widely(&self) -> bool {
        self.lazy
            .as_ref()
            .is_some_and(|l| 8 * l.buckets_read() >= l.buckets().max(64))
    }

    /// Whether every row is in memory.
    pub fn is_complete(&self) -> bool {
        self.lazy.is_none()
    }

    /// Number of live rows, read or not.
    pub fn len(&mut self) -> usize {
        self.resolve();
        self.len_at_most()
    }

    pub fn is_empty(&mut self) -> bool {
        self.len() == 0
    }

    /// Sum of `size` over rows: the bytes of values kept in their own files.
    pub fn size(&mut self) -> i64 {
        self.resolve();
        self.size
    }

    /// Bytes of log records still describing live state.
    pub fn live_bytes(&mut self) -> u64 {
        self.resolve();
        self.live_bytes
    }

    /// `len` without reading shadowed buckets: exact, or more (by stale snapshot rows).
    pub fn len_at_most(&self) -> usize {
        self.rows.len() + self.lazy.as_ref().map_or(0, Lazy::unloaded_rows)
    }

    /// `size` without reading shadowed buckets: exact, or more.
    pub fn size_at_most(&self) -> i64 {
        self.size
    }

    /// `live_bytes` without reading shadowed buckets: exact, or more.
    pub fn live_bytes_at_most(&self) -> u64 {
        self.live_bytes
    }

    /// The row for a key, if it is in memory (call `load` first).
    pub fn get(&self, key: &Val, raw: bool) -> Option<&Row> {
        // Lookups clone the key into a tuple; keys are small in practice.
        self.rows.get(&(key.clone(), raw))
    }

    /// A rowid larger than every live row's. (SQLite takes the largest plus one; a row of
    /// the snapshot deleted since may make this larger, which orders rows the same.)
    pub fn next_rowid(&mut self) -> u64 {
        let loaded = self.by_rowid.keys().next_back().copied().unwrap_or(0);
        let unloaded = self.lazy.as_mut().map_or(0, Lazy::max_rowid);
        loaded.max(unloaded) + 1
    }

    /// Whether `by_expiry` holds every row that expires before `now` (rows still in the
    /// snapshot may not be in it; if one of them expires before `now`, load them all).
    pub fn expiry_complete_before(&mut self, now: f64) {
        if self
            .lazy
            .as_mut()
            .is_some_and(|l| l.min_expire().is_some_and(|e| e < now))
        {
            self.complete();
        }
    }

    /// A row written or deleted while its snapshot bucket is unread: the snapshot's row for
    /// the key, if any, is stale.
    fn shadow(&mut self, id: &KeyId) {
        if let Some(lazy) = self.lazy.as_mut() {
            lazy.shadow(id);
        }
    }

    /// Insert or replace a row; returns the row it replaced, if that was in memory.
    pub fn put(&mut self, row: Row) -> Option<Row> {
        let id: KeyId = (row.f.key.clone(), row.f.raw);
        let old = self.remove(&id);
        self.size += row.f.size;
        self.live_bytes += row.record_len;
        self.inline_bytes += row.inline_len();
        self.insert(id, row);
        old
    }

    /// Add a row to the maps (not to the totals).
    fn insert(&mut self, id: KeyId, row: Row) {
        self.by_rowid.insert(row.rowid, id.clone());
        if let Some(k) = self.by_key.as_mut() {
            k.insert(id.clone());
        }
        if let Some(e) = row.f.expire_time {
            self.by_expiry.insert((F(e), row.rowid));
        }
        self.rows.insert(id, row);
    }

    pub fn remove(&mut self, id: &KeyId) -> Option<Row> {
        self.shadow(id);
        let row = self.rows.remove(id)?;
        self.inline_bytes = self.inline_bytes.saturating_sub(row.inline_len());
        self.size -= row.f.size;
        self.live_bytes = self.live_bytes.saturating_sub(row.record_len);
        self.by_rowid.remove(&row.rowid);
        if let Some(k) = self.by_key.as_mut() {
            k.remove(id);
        }
        if let Some(e) = row.f.expire_time {
            self.by_expiry.remove(&(F(e), row.rowid));
        }
        Some(row)
    }

    pub fn clear_rows(&mut self) {
        self.lazy = None;
        self.rows.clear();
        self.by_rowid.clear();
        self.by_key = None;
        self.by_expiry.clear();
        self.size = 0;
        self.inline_bytes = 0;
        self.live_bytes = 0;
    }

    /// The snapshot's row for a key not in memory, if its bucket is unread (to be patched).
    fn unread(&mut self, id: &KeyId) -> Option<&mut Lazy> {
        if self.rows.contains_key(id) {
            return None;
        }
        self.lazy.as_mut().filter(|l| l.holds(&id.0, id.1))
    }

    pub fn set_access(&mut self, id: &KeyId, access_time: f64, access_count: i64) {
        if let Some(lazy) = self.unread(id) {
            lazy.patch_access(id, access_time, access_count);
            return;
        }
        if let Some(r) = self.rows.get_mut(id) {
            r.f.access_time = access_time;
            r.f.access_count = access_count;
        }
    }

    pub fn set_expire(&mut self, id: &KeyId, expire_time: Option<f64>) {
        if let Some(lazy) = self.unread(id) {
            lazy.patch_expire(id, expire_time);
            return;
        }
        if let Some(r) = self.rows.get_mut(id) {
            if let Some(e) = r.f.expire_time {
                self.by_expiry.remove(&(F(e), r.rowid));
            }
            r.f.expire_time = expire_time;
            if let Some(e) = expire_time {
                self.by_expiry.insert((F(e), r.rowid));
            }
        }
    }

    /// Keep a value read from the log in memory, within `budget` bytes of values in memory.
    pub fn keep_inline(&mut self, id: &KeyId, value: &Val, max: usize, budget: usize) {
        let n = value.heap_len();
        if n > max || self.inline_bytes + n > budget {
            return;
        }
        if let Some(r) = self.rows.get_mut(id)
            && r.inline.is_none()
        {
            r.inline = Some(value.clone());
            self.inline_bytes += n;
        }
    }

    /// Keys in SQLite's key order.
    pub fn by_key(&mut self) -> &BTreeSet<KeyId> {
        self.complete();
        self.by_key
            .get_or_insert_with(|| self.rows.keys().cloned().collect())
    }

    pub fn by_rowid_row(&self, rowid: u64) -> Option<&Row> {
        self.rows.get(self.by_rowid.get(&rowid)?)
    }
}
