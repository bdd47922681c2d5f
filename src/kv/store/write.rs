//! Writes: put, delete, touch, expiry, eviction, clearing, culling and settings. Each appends
//! its records under the exclusive lock and applies them to the index in the same step
//! (`append`), so this process's index never differs from the log it wrote; inside a
//! transaction the records wait in `pending` until it commits.

use std::io::Write;

use super::payload::{
    apply, del_payload, put_payload, setting_payload, stats_payload, touch_payload,
};
use super::{NewRow, Policy, RowOut, Store};
use crate::kv::Result;
use crate::kv::files::{io_err, log_name};
use crate::kv::index::{F, KeyId};
use crate::kv::record;
use crate::kv::value::Val;

impl Store {
    /// Append records and apply them (caller holds the exclusive lock, index synced). Several
    /// records go in one batch record, so they apply together or not at all.
    pub(super) fn append(&mut self, payloads: &[Vec<u8>]) -> Result<()> {
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

    // ---- writes (exclusive lock) ----

    /// Insert or replace a row (keeping the rowid of a replaced one); returns the old row.
    pub fn put(&mut self, row: NewRow) -> Result<Option<RowOut>> {
        self.with_lock(true, |s| {
            s.load(&row.f.key, row.f.raw)?;
            let old = s.index.get(&row.f.key, row.f.raw).map(|r| s.replaced(r));
            s.append_put(row)?;
            Ok(old)
        })
    }

    /// Append the put of a row (caller holds the exclusive lock, the key loaded).
    pub(super) fn append_put(&mut self, mut row: NewRow) -> Result<()> {
        let rowid = match self.index.get(&row.f.key, row.f.raw) {
            // An update keeps the row's identity, including the key as first stored
            // (3 stays 3 when 3.0 replaces its value), as SQLite's UPDATE does.
            Some(o) => {
                row.f.key = o.f.key.clone();
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
                names.push(r.f.filename.clone());
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
                Some(r) if r.f.expire_time.is_none_or(|e| e > now) => {}
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
                        .is_some_and(|r| r.f.tag == *tag && !matches!(r.f.tag, Val::Null))
                })
                .cloned()
                .collect();
            s.delete_ids(&ids)
        })
    }

    pub fn clear(&mut self) -> Result<Vec<Option<String>>> {
        self.with_lock(true, |s| {
            let index = s.load_all()?;
            let names = index.rows.values().map(|r| r.f.filename.clone()).collect();
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
                Policy::LeastRecentlyUsed => (F(r.f.access_time), 0, r.rowid),
                Policy::LeastFrequentlyUsed => (F(0.0), r.f.access_count, r.rowid),
                _ => (F(r.f.store_time), 0, r.rowid),
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
