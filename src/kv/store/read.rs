//! Reads: a row by key, rows in rowid or key order, counters and settings, and a row's value
//! resolved from memory or from its log record. They take the shared lock or none (see
//! `with_lock`); `lookup` appends only what its policy and statistics ask for (access fields,
//! hit/miss counts).

use super::payload::{access_payload, stats_payload};
use super::{INLINE_BUDGET, INLINE_MAX, NewRow, Policy, RowOut, Store};
use crate::kv::files::{io_err, log_name, read_at};
use crate::kv::index::{KeyId, Row};
use crate::kv::record::{self, Next, Reader};
use crate::kv::value::Val;
use crate::kv::{KvError, Result};

/// Bytes of log a quick read (`lookup_quick`) may catch up on before it defers to the
/// ordinary path, which releases the GIL.
const QUICK_SYNC: u64 = 64 << 10;

impl Store {
    /// Bytes on disk: the log, the snapshot and the value files (`size` of their rows).
    pub(super) fn disk_volume(&mut self) -> u64 {
        self.pos + self.snap_len + self.index.size().max(0) as u64
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
    pub(super) fn read_value(&self, row: &Row) -> Result<Val> {
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
    pub(super) fn replaced(&self, row: &Row) -> RowOut {
        let value = match &row.inline {
            Some(v) => v.clone(),
            None => self.read_value(row).unwrap_or(Val::Null),
        };
        Self::row_out(row, value)
    }

    pub(super) fn resolve(&self, row: &Row) -> Result<RowOut> {
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
                f: row.f.clone(),
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
            Some(r) if now.is_none_or(|now| r.f.expire_time.is_none_or(|e| e > now)) => {
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

    /// A live row for a key, read without waiting for anything and without writing: None when
    /// that cannot be a short call that never blocks (a network filesystem, a transaction,
    /// more than `QUICK_SYNC` bytes appended since this handle last looked, a new generation,
    /// snapshot buckets not all read yet, a handle inherited through `fork()`); the caller then
    /// goes the ordinary way. For reads made while the caller keeps the GIL.
    pub fn lookup_quick<R>(
        &mut self,
        key: &Val,
        raw: bool,
        now: f64,
        map: impl FnOnce(&Row, Val) -> R,
    ) -> Option<Result<Option<R>>> {
        if !self.unlocked_reads
            || self.txn > 0
            || self.held.is_some()
            || self.inherited()
            || !self.index.is_complete()
            || self.index.broken
        {
            return None;
        }
        match self.sync_unlocked_within(QUICK_SYNC) {
            Ok(true) if !self.index.broken => Some(self.fetch_map(key, raw, Some(now), map)),
            Ok(_) => None,
            Err(e) => Some(Err(e)),
        }
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
        self.with_lock(stats || policy.records_access(), |s| {
            let found = s.fetch_map(key, raw, Some(now), |r, v| {
                (r.f.access_time, r.f.access_count, map(r, v))
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
}
