//! The in-memory index a process builds from the log: rows by key, by rowid, by key order,
//! by expiry; settings; hit/miss counters.

use std::collections::{BTreeMap, BTreeSet};

use rustc_hash::FxHashMap;

use super::value::Val;

/// Where a row's value lives: small values are kept in memory, larger ones are read from
/// the log at an offset when asked for.
#[derive(Clone, Debug)]
pub enum Slot {
    Inline(Val),
    At { offset: u64, len: u64 },
}

#[derive(Clone, Debug)]
pub struct Row {
    pub rowid: u64,
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
    pub value: Slot,
    /// Bytes of the log record that holds this row (for deciding when to compact).
    pub record_len: u64,
}

impl Row {
    /// Bytes of this row's value kept in memory.
    pub fn inline_len(&self) -> usize {
        match &self.value {
            Slot::Inline(v) => v.heap_len(),
            Slot::At { .. } => 0,
        }
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
    pub size: i64,
    pub hits: i64,
    pub misses: i64,
    /// Bytes of log records still describing live state.
    pub live_bytes: u64,
    /// Bytes of values held in memory (bounded by the store's budget).
    pub inline_bytes: usize,
}

impl Index {
    pub fn get(&self, key: &Val, raw: bool) -> Option<&Row> {
        // Lookups clone the key into a tuple; keys are small in practice.
        self.rows.get(&(key.clone(), raw))
    }

    pub fn next_rowid(&self) -> u64 {
        self.by_rowid.keys().next_back().map_or(1, |r| r + 1)
    }

    /// Insert or replace a row; returns the row it replaced.
    pub fn put(&mut self, row: Row) -> Option<Row> {
        let id: KeyId = (row.key.clone(), row.raw);
        let old = self.remove(&id);
        self.size += row.size;
        self.live_bytes += row.record_len;
        self.inline_bytes += row.inline_len();
        self.by_rowid.insert(row.rowid, id.clone());
        if let Some(k) = self.by_key.as_mut() {
            k.insert(id.clone());
        }
        if let Some(e) = row.expire_time {
            self.by_expiry.insert((F(e), row.rowid));
        }
        self.rows.insert(id, row);
        old
    }

    pub fn remove(&mut self, id: &KeyId) -> Option<Row> {
        let row = self.rows.remove(id)?;
        self.inline_bytes = self.inline_bytes.saturating_sub(row.inline_len());
        self.size -= row.size;
        self.live_bytes = self.live_bytes.saturating_sub(row.record_len);
        self.by_rowid.remove(&row.rowid);
        if let Some(k) = self.by_key.as_mut() {
            k.remove(id);
        }
        if let Some(e) = row.expire_time {
            self.by_expiry.remove(&(F(e), row.rowid));
        }
        Some(row)
    }

    pub fn clear_rows(&mut self) -> Vec<Row> {
        let rows: Vec<Row> = std::mem::take(&mut self.rows).into_values().collect();
        self.by_rowid.clear();
        self.by_key = None;
        self.by_expiry.clear();
        self.size = 0;
        self.inline_bytes = 0;
        for r in &rows {
            self.live_bytes = self.live_bytes.saturating_sub(r.record_len);
        }
        rows
    }

    pub fn set_access(&mut self, id: &KeyId, access_time: f64, access_count: i64) {
        if let Some(r) = self.rows.get_mut(id) {
            r.access_time = access_time;
            r.access_count = access_count;
        }
    }

    pub fn set_expire(&mut self, id: &KeyId, expire_time: Option<f64>) {
        if let Some(r) = self.rows.get_mut(id) {
            if let Some(e) = r.expire_time {
                self.by_expiry.remove(&(F(e), r.rowid));
            }
            r.expire_time = expire_time;
            if let Some(e) = expire_time {
                self.by_expiry.insert((F(e), r.rowid));
            }
        }
    }

    /// Keys in SQLite's key order.
    pub fn by_key(&mut self) -> &BTreeSet<KeyId> {
        self.by_key
            .get_or_insert_with(|| self.rows.keys().cloned().collect())
    }

    pub fn by_rowid_row(&self, rowid: u64) -> Option<&Row> {
        self.rows.get(self.by_rowid.get(&rowid)?)
    }
}
