//! Whole operations for the Python fast path (`src/python/kv.rs`): what `Cache.set`, `incr`
//! and `delete` do with python-diskcache's default `Disk` and a raw key, each in one call
//! under one lock, handing back only what the caller needs.

use super::payload::del_payload;
use super::{NewRow, Policy, Result, Store};
use crate::kv::{Fields, Val};

/// diskcache's `MODE_RAW`: the value is the column itself (str, bytes, int, float).
pub const MODE_RAW: u8 = 1;

/// diskcache's culling after a write (`cull_limit`, `size_limit`, `eviction_policy`).
#[derive(Clone, Copy, Debug)]
pub struct Cull {
    pub limit: usize,
    pub size_limit: u64,
    pub policy: Policy,
}

/// A number `incr` can add in the engine; anything else goes the Python way.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Num {
    Int(i64),
    Float(f64),
}

impl Num {
    fn of(v: &Val) -> Option<Num> {
        match *v {
            Val::Int(i) => Some(Num::Int(i)),
            Val::Float(f) => Some(Num::Float(f)),
            _ => None,
        }
    }

    /// Python's `+`, or None where Python's result would not fit a column (an int past i64,
    /// which diskcache would pickle).
    fn add(self, other: Num) -> Option<Num> {
        Some(match (self, other) {
            (Num::Int(a), Num::Int(b)) => Num::Int(a.checked_add(b)?),
            (Num::Int(a), Num::Float(b)) => Num::Float(a as f64 + b),
            (Num::Float(a), Num::Int(b)) => Num::Float(a + b as f64),
            (Num::Float(a), Num::Float(b)) => Num::Float(a + b),
        })
    }

    fn val(self) -> Val {
        match self {
            Num::Int(i) => Val::Int(i),
            Num::Float(f) => Val::float(f),
        }
    }
}

/// What `incr` did.
#[derive(Debug)]
pub enum Incr {
    /// The new value, and the value files the write made unreferenced.
    Done(Num, Vec<String>),
    /// No live row and no default: nothing written.
    Missing,
    /// The row holds something the engine does not add (a pickle, text): nothing written.
    Unsupported,
}

impl Store {
    /// Insert or replace a row, then cull as diskcache's `set` does; returns the value files
    /// this made unreferenced (the replaced row's and the culled rows').
    pub fn set_row(&mut self, row: NewRow, cull: Cull) -> Result<Vec<String>> {
        self.with_lock(true, |s| {
            s.load(&row.f.key, row.f.raw)?;
            let now = row.f.store_time;
            let mut names: Vec<String> = s
                .index
                .get(&row.f.key, row.f.raw)
                .and_then(|r| r.f.filename.clone())
                .into_iter()
                .collect();
            s.append_put(row)?;
            s.cull_into(now, cull, &mut names)?;
            Ok(names)
        })
    }

    fn cull_into(&mut self, now: f64, cull: Cull, names: &mut Vec<String>) -> Result<()> {
        if cull.limit > 0 {
            let culled = self.cull(now, cull.limit, cull.size_limit, cull.policy)?;
            names.extend(culled.into_iter().flatten());
        }
        Ok(())
    }

    /// diskcache's `incr` on a raw key: add `delta` to a live row's number (updating its access
    /// fields for `policy`), or store `default + delta` when there is no live row.
    pub fn incr(
        &mut self,
        key: &Val,
        delta: Num,
        default: Option<Num>,
        now: f64,
        cull: Cull,
    ) -> Result<Incr> {
        self.with_lock(true, |s| {
            s.load(key, true)?;
            // diskcache's incr takes a row expiring exactly now as live.
            let row = s.index.get(key, true);
            let live = row.filter(|r| r.f.expire_time.is_none_or(|e| e >= now));
            let Some(r) = live else {
                let Some(value) = default.and_then(|d| d.add(delta)) else {
                    return Ok(if default.is_none() {
                        Incr::Missing
                    } else {
                        Incr::Unsupported
                    });
                };
                let mut names: Vec<String> =
                    row.and_then(|r| r.f.filename.clone()).into_iter().collect();
                s.append_put(NewRow {
                    f: Fields::stored_now(key.clone(), now, None, Val::Null, MODE_RAW),
                    value: value.val(),
                })?;
                s.cull_into(now, cull, &mut names)?;
                return Ok(Incr::Done(value, names));
            };
            if r.f.mode != MODE_RAW {
                return Ok(Incr::Unsupported);
            }
            let current = match &r.inline {
                Some(v) => v.clone(),
                None => s.read_value(r)?,
            };
            let Some(value) = Num::of(&current).and_then(|n| n.add(delta)) else {
                return Ok(Incr::Unsupported);
            };
            let (access_time, access_count) = match cull.policy {
                Policy::LeastRecentlyUsed => (now, r.f.access_count),
                Policy::LeastFrequentlyUsed => (r.f.access_time, r.f.access_count + 1),
                _ => (r.f.access_time, r.f.access_count),
            };
            let row = NewRow {
                f: Fields {
                    raw: true,
                    store_time: now,
                    access_time,
                    access_count,
                    ..r.f.clone()
                },
                value: value.val(),
            };
            s.append_put(row)?;
            Ok(Incr::Done(value, Vec::new()))
        })
    }

    /// Delete a key's row unless it expired by `now`: None if there was no live row, else
    /// the row's value file, if any. The value is not read, so a damaged record can go.
    pub fn delete_live(
        &mut self,
        key: &Val,
        raw: bool,
        now: f64,
    ) -> Result<Option<Option<String>>> {
        self.with_lock(true, |s| {
            s.load(key, raw)?;
            let name = match s.index.get(key, raw) {
                Some(r) if r.f.expire_time.is_none_or(|e| e > now) => r.f.filename.clone(),
                _ => return Ok(None),
            };
            s.append(&[del_payload(key, raw)])?;
            Ok(Some(name))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path(), None).unwrap();
        (dir, store)
    }

    const NO_CULL: Cull = Cull {
        limit: 0,
        size_limit: 0,
        policy: Policy::LeastRecentlyStored,
    };

    #[test]
    fn incr_adds_stores_defaults_and_refuses_what_python_must_do() {
        let (_d, mut s) = open();
        let k = Val::Text("n".into());
        assert!(matches!(
            s.incr(&k, Num::Int(1), None, 1.0, NO_CULL).unwrap(),
            Incr::Missing
        ));
        assert!(matches!(
            s.incr(&k, Num::Int(2), Some(Num::Int(40)), 1.0, NO_CULL)
                .unwrap(),
            Incr::Done(Num::Int(42), _)
        ));
        assert!(matches!(
            s.incr(&k, Num::Float(0.5), None, 2.0, NO_CULL).unwrap(),
            Incr::Done(Num::Float(f), _) if f == 42.5
        ));
        let big = Val::Text("big".into());
        s.incr(&big, Num::Int(i64::MAX), Some(Num::Int(0)), 1.0, NO_CULL)
            .unwrap();
        assert!(matches!(
            s.incr(&big, Num::Int(1), None, 1.0, NO_CULL).unwrap(),
            Incr::Unsupported
        ));
        let text = Val::Text("t".into());
        s.put(NewRow {
            f: Fields::stored_now(text.clone(), 1.0, None, Val::Null, MODE_RAW),
            value: Val::Text("x".into()),
        })
        .unwrap();
        assert!(matches!(
            s.incr(&text, Num::Int(1), None, 1.0, NO_CULL).unwrap(),
            Incr::Unsupported
        ));
        let row = s.row(&k, true).unwrap().unwrap();
        assert!(matches!(row.row.value, Val::Float(f) if f == 42.5));
    }

    #[test]
    fn delete_live_skips_expired_rows_and_hands_back_the_file() {
        let (_d, mut s) = open();
        let k = Val::Blob(b"k".to_vec());
        let row = |expire: Option<f64>, file: Option<&str>| NewRow {
            f: Fields {
                size: 3,
                filename: file.map(str::to_owned),
                ..Fields::stored_now(k.clone(), 1.0, expire, Val::Null, 2)
            },
            value: Val::Null,
        };
        s.put(row(Some(5.0), Some("a/b/c.val"))).unwrap();
        assert_eq!(s.delete_live(&k, true, 6.0).unwrap(), None);
        assert_eq!(
            s.delete_live(&k, true, 4.0).unwrap(),
            Some(Some("a/b/c.val".into()))
        );
        assert_eq!(s.delete_live(&k, true, 4.0).unwrap(), None);
        let names = s.set_row(row(None, Some("d/e/f.val")), NO_CULL).unwrap();
        assert!(names.is_empty());
        let names = s.set_row(row(None, None), NO_CULL).unwrap();
        assert_eq!(names, vec!["d/e/f.val".to_owned()]);
    }
}
