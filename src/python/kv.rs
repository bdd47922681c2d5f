//! Bindings of the key-value engine. One `KvStore` per cache directory; Python's `Cache`
//! (python/candlecache/core.py) keeps python-diskcache's semantics on top of it.

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::thread::ThreadId;
use std::time::Duration;

use pyo3::exceptions::{PyKeyError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyDict, PyFloat, PyInt, PyString, PyTuple};

use super::errors::fs_to_py;
use super::kv_values::{self, Deferred};
use crate::fsio::{FsError, fork_epoch};
use crate::kv::index::Row;
use crate::kv::store::fast::{Cull, Incr};
use crate::kv::{Fields, KvError, NewRow, Policy, RowOut, Store, Val};

fn to_py_err(py: Python<'_>, e: KvError) -> PyErr {
    match e {
        KvError::Fs(fs) => fs_to_py(py, fs),
        KvError::Corrupt(msg) => super::errors::corruption(py, msg),
    }
}

/// A Python value as a column value (the types python-diskcache stores in SQLite).
fn to_val(obj: &Bound<'_, PyAny>) -> PyResult<Val> {
    if obj.is_none() {
        return Ok(Val::Null);
    }
    if let Ok(b) = obj.cast::<PyBool>() {
        // SQLite stores booleans as integers.
        return Ok(Val::Int(b.is_true() as i64));
    }
    if obj.is_exact_instance_of::<PyInt>() {
        return Ok(Val::Int(obj.extract::<i64>()?));
    }
    if obj.is_exact_instance_of::<PyFloat>() {
        return Ok(Val::float(obj.extract::<f64>()?));
    }
    if obj.is_exact_instance_of::<PyString>() {
        return Ok(Val::Text(obj.extract::<String>()?));
    }
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Val::Blob(b.as_bytes().to_vec()));
    }
    if let Ok(b) = obj.extract::<Vec<u8>>() {
        return Ok(Val::Blob(b));
    }
    Err(PyTypeError::new_err(format!(
        "cannot store {} in the index",
        obj.get_type().name()?
    )))
}

pub(super) fn from_val(py: Python<'_>, v: Val) -> PyResult<Py<PyAny>> {
    Ok(match v {
        Val::Null => py.None(),
        Val::Int(i) => i.into_pyobject(py)?.into_any().unbind(),
        Val::Float(f) => f.into_pyobject(py)?.into_any().unbind(),
        Val::Text(s) => s.into_pyobject(py)?.into_any().unbind(),
        Val::Blob(b) => PyBytes::new(py, &b).into_any().unbind(),
    })
}

fn row_out(py: Python<'_>, out: RowOut) -> PyResult<Py<PyAny>> {
    let (rowid, r, value) = (out.rowid, out.row.f, out.row.value);
    let items: Vec<Py<PyAny>> = vec![
        rowid.into_pyobject(py)?.into_any().unbind(),
        from_val(py, r.key)?,
        (r.raw as i64).into_pyobject(py)?.into_any().unbind(),
        r.store_time.into_pyobject(py)?.into_any().unbind(),
        match r.expire_time {
            Some(e) => e.into_pyobject(py)?.into_any().unbind(),
            None => py.None(),
        },
        r.access_time.into_pyobject(py)?.into_any().unbind(),
        r.access_count.into_pyobject(py)?.into_any().unbind(),
        from_val(py, r.tag)?,
        r.size.into_pyobject(py)?.into_any().unbind(),
        (r.mode as i64).into_pyobject(py)?.into_any().unbind(),
        match r.filename {
            Some(f) => f.into_pyobject(py)?.into_any().unbind(),
            None => py.None(),
        },
        from_val(py, value)?,
    ];
    Ok(PyTuple::new(py, items)?.into_any().unbind())
}

fn opt_row(py: Python<'_>, r: Option<RowOut>) -> PyResult<Py<PyAny>> {
    match r {
        Some(r) => row_out(py, r),
        None => Ok(py.None()),
    }
}

/// `(rows removed, their value files)`.
fn names(py: Python<'_>, v: Vec<Option<String>>) -> PyResult<Py<PyAny>> {
    let count = v.len();
    let list: Vec<String> = v.into_iter().flatten().collect();
    Ok((count, list).into_pyobject(py)?.into_any().unbind())
}

/// A size limit in bytes; diskcache accepts floats (FanoutCache divides by the shard count).
fn bytes_limit(limit: f64) -> u64 {
    if limit.is_nan() || limit <= 0.0 {
        0
    } else {
        limit.min(u64::MAX as f64) as u64
    }
}

fn policy(name: &str) -> PyResult<Policy> {
    Policy::parse(name)
        .ok_or_else(|| PyValueError::new_err(format!("unknown eviction policy {name:?}")))
}

fn timeout(t: Option<f64>) -> PyResult<Option<Duration>> {
    t.map(|s| {
        Duration::try_from_secs_f64(s).map_err(|_| PyValueError::new_err("timeout must be >= 0"))
    })
    .transpose()
}

/// CRC-32 (IEEE) of `data`, continuing from `value`; the same numbers as `zlib.crc32`, faster.
#[pyfunction]
#[pyo3(signature = (data, value=0))]
pub fn crc32(py: Python<'_>, data: &[u8], value: u32) -> u32 {
    py.detach(|| {
        let mut h = crc32fast::Hasher::new_with_initial(value);
        h.update(data);
        h.finalize()
    })
}

/// Which thread holds an explicit transaction, and how deeply nested.
#[derive(Default)]
struct Owner {
    thread: Option<ThreadId>,
    depth: u32,
}

/// The engine of one cache directory (see `src/kv`). Thread-safe; a transaction begun by
/// one thread makes other threads' calls wait until it ends.
#[pyclass(module = "candlecache._core", frozen)]
pub struct KvStore {
    store: Mutex<Option<Store>>,
    owner: Mutex<Owner>,
    /// The fork epoch `owner` belongs to (see `forget_parent`).
    epoch: AtomicU64,
    released: Condvar,
    directory: PathBuf,
    timeout: Mutex<Option<Duration>>,
}

impl KvStore {
    /// In a child of `fork()`, a transaction one of the parent's threads held is not this
    /// process's: forget it (the `Store` replaces its inherited files by itself).
    fn forget_parent(&self) {
        let now = fork_epoch();
        if self.epoch.load(Ordering::Relaxed) != now
            && self.epoch.swap(now, Ordering::Relaxed) != now
            && let Ok(mut owner) = self.owner.lock()
        {
            *owner = Owner::default();
        }
    }

    /// Wait until no other thread holds a transaction, then run `f` on the store.
    fn run<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut Store) -> crate::kv::Result<R> + Send,
    ) -> PyResult<R> {
        self.try_run(py, f)?.map_err(|e| to_py_err(py, e))
    }

    /// `run`, retrying while the lock is not had in time if `retry` (as `Cache._call` does),
    /// with Python's signal handlers run between attempts.
    fn run_retry<R: Send>(
        &self,
        py: Python<'_>,
        retry: bool,
        f: impl Fn(&mut Store) -> crate::kv::Result<R> + Send + Sync,
    ) -> PyResult<R> {
        loop {
            match self.try_run(py, &f)? {
                Err(KvError::Fs(FsError::Timeout { .. })) if retry => py.check_signals()?,
                r => return r.map_err(|e| to_py_err(py, e)),
            }
        }
    }

    fn try_run<R: Send>(
        &self,
        py: Python<'_>,
        f: impl FnOnce(&mut Store) -> crate::kv::Result<R> + Send,
    ) -> PyResult<crate::kv::Result<R>> {
        self.forget_parent();
        let result = py.detach(|| -> Result<crate::kv::Result<R>, &'static str> {
            let me = std::thread::current().id();
            {
                let mut owner = self.owner.lock().map_err(|_| "poisoned")?;
                while owner.thread.is_some_and(|t| t != me) {
                    owner = self.released.wait(owner).map_err(|_| "poisoned")?;
                }
            }
            let mut guard: MutexGuard<'_, Option<Store>> =
                self.store.lock().map_err(|_| "poisoned")?;
            let store = match guard.take() {
                Some(s) => guard.insert(s),
                None => {
                    // Closed: like diskcache's connections, the files are opened again on use.
                    let timeout = *self.timeout.lock().map_err(|_| "poisoned")?;
                    match Store::open(&self.directory, timeout) {
                        Ok(s) => guard.insert(s),
                        Err(e) => return Ok(Err(e)),
                    }
                }
            };
            Ok(f(store))
        });
        result.map_err(PyRuntimeError::new_err)
    }

    /// Run `f` on the store without releasing the GIL or waiting for anything: None if another
    /// thread holds the store or a transaction, or if `f` declines (see `Store::lookup_quick`).
    /// A read of a value in memory costs less than handing the GIL over and taking it back.
    fn quick<R>(&self, f: impl FnOnce(&mut Store) -> Option<R>) -> Option<R> {
        self.forget_parent();
        {
            let owner = self.owner.try_lock().ok()?;
            if owner
                .thread
                .is_some_and(|t| t != std::thread::current().id())
            {
                return None;
            }
        }
        let mut guard = self.store.try_lock().ok()?;
        f(guard.as_mut()?)
    }

    /// `Store::lookup_map` of a raw key: in a quick read that keeps the GIL when the read
    /// writes nothing (no access record, no statistics), else (or if it declines) the usual way.
    #[allow(clippy::too_many_arguments)]
    fn find<R: Send>(
        &self,
        py: Python<'_>,
        retry: bool,
        key: &Val,
        now: f64,
        p: Policy,
        stats: bool,
        map: impl Fn(&Row, Val) -> R + Copy + Send + Sync,
    ) -> PyResult<Option<R>> {
        if !stats
            && !p.records_access()
            && let Some(found) = self.quick(|s| s.lookup_quick(key, true, now, map))
        {
            return found.map_err(|e| to_py_err(py, e));
        }
        self.run_retry(py, retry, |s| s.lookup_map(key, true, now, p, stats, map))
    }

    /// Remove value files a write made unreferenced (GIL released).
    fn remove_files(&self, py: Python<'_>, names: Vec<String>) {
        if !names.is_empty() {
            py.detach(|| {
                for name in &names {
                    kv_values::remove_value_file(&self.directory, name);
                }
            });
        }
    }
}

#[pymethods]
impl KvStore {
    #[new]
    #[pyo3(signature = (directory, timeout=None))]
    fn new(py: Python<'_>, directory: PathBuf, timeout: Option<f64>) -> PyResult<Self> {
        let t = self::timeout(timeout)?;
        let store = py
            .detach(|| Store::open(&directory, t))
            .map_err(|e| to_py_err(py, e))?;
        Ok(KvStore {
            store: Mutex::new(Some(store)),
            owner: Mutex::new(Owner::default()),
            epoch: AtomicU64::new(fork_epoch()),
            released: Condvar::new(),
            directory,
            timeout: Mutex::new(t),
        })
    }

    #[getter]
    fn directory(&self) -> PathBuf {
        self.directory.clone()
    }

    fn set_timeout(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<()> {
        let t = self::timeout(timeout)?;
        if let Ok(mut slot) = self.timeout.lock() {
            *slot = t;
        }
        self.run(py, move |s| {
            s.set_timeout(t);
            Ok(())
        })
    }

    /// Begin (or nest) a transaction holding the exclusive lock.
    fn begin(&self, py: Python<'_>) -> PyResult<()> {
        self.forget_parent();
        let me = std::thread::current().id();
        py.detach(|| -> PyResult<()> {
            let mut owner = self
                .owner
                .lock()
                .map_err(|_| PyRuntimeError::new_err("poisoned"))?;
            while owner.thread.is_some_and(|t| t != me) {
                owner = self
                    .released
                    .wait(owner)
                    .map_err(|_| PyRuntimeError::new_err("poisoned"))?;
            }
            owner.thread = Some(me);
            owner.depth += 1;
            Ok(())
        })?;
        let begun = self.run(py, |s| s.begin());
        if begun.is_err() {
            let mut owner = self
                .owner
                .lock()
                .map_err(|_| PyRuntimeError::new_err("poisoned"))?;
            owner.depth -= 1;
            if owner.depth == 0 {
                owner.thread = None;
                self.released.notify_all();
            }
        }
        begun
    }

    /// End a transaction level; the outermost commits, or rolls back with `commit=False`.
    #[pyo3(signature = (commit=true))]
    fn end(&self, py: Python<'_>, commit: bool) -> PyResult<()> {
        self.forget_parent();
        let done = {
            let mut owner = self
                .owner
                .lock()
                .map_err(|_| PyRuntimeError::new_err("poisoned"))?;
            if owner.thread.is_none() {
                // Nothing to end: a transaction begun before fork() stayed with the parent.
                return Ok(());
            }
            if owner.thread != Some(std::thread::current().id()) {
                return Err(PyRuntimeError::new_err(
                    "transaction ended by a thread that does not hold it",
                ));
            }
            owner.depth -= 1;
            owner.depth == 0
        };
        let result = py.detach(|| match self.store.lock() {
            Ok(mut g) => match g.as_mut() {
                Some(s) => s.end(commit).map_err(Some),
                None => Ok(()),
            },
            Err(_) => Err(None),
        });
        if done {
            let mut owner = self
                .owner
                .lock()
                .map_err(|_| PyRuntimeError::new_err("poisoned"))?;
            owner.thread = None;
            self.released.notify_all();
        }
        match result {
            Ok(()) => Ok(()),
            Err(Some(e)) => Err(to_py_err(py, e)),
            Err(None) => Err(PyRuntimeError::new_err("poisoned")),
        }
    }

    /// Close the files; the next call opens them again. A transaction of this store is
    /// rolled back.
    fn close(&self, py: Python<'_>) {
        self.forget_parent();
        let busy = self
            .owner
            .lock()
            .map(|o| o.thread.is_some_and(|t| t != std::thread::current().id()))
            .unwrap_or(true);
        if busy {
            // Another thread's transaction is using the files; they are closed when unused.
            return;
        }
        py.detach(|| {
            if let Ok(mut g) = self.store.lock() {
                if let Some(s) = g.as_mut().filter(|s| !s.inherited()) {
                    while s.in_txn() {
                        let _ = s.end(false);
                    }
                }
                *g = None;
            }
        });
    }

    fn row(&self, py: Python<'_>, key: &Bound<'_, PyAny>, raw: bool) -> PyResult<Py<PyAny>> {
        let key = to_val(key)?;
        let r = self.run(py, move |s| s.row(&key, raw))?;
        opt_row(py, r)
    }

    #[pyo3(signature = (key, raw, now, policy_name, stats))]
    fn lookup(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        raw: bool,
        now: f64,
        policy_name: &str,
        stats: bool,
    ) -> PyResult<Py<PyAny>> {
        let key = to_val(key)?;
        let p = policy(policy_name)?;
        let r = self.run(py, move |s| s.lookup(&key, raw, now, p, stats))?;
        opt_row(py, r)
    }

    /// Insert or replace a row; then, with `cull_limit > 0`, cull as diskcache's `set` does.
    /// Returns `(old row or None, (culled count, culled files))`.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (key, raw, store_time, expire_time, access_time, access_count, tag, size, mode, filename, value, cull_limit=0, size_limit=0.0, policy_name="none"))]
    fn put(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        raw: bool,
        store_time: f64,
        expire_time: Option<f64>,
        access_time: f64,
        access_count: i64,
        tag: &Bound<'_, PyAny>,
        size: i64,
        mode: u8,
        filename: Option<String>,
        value: &Bound<'_, PyAny>,
        cull_limit: usize,
        size_limit: f64,
        policy_name: &str,
    ) -> PyResult<(Py<PyAny>, Py<PyAny>)> {
        let size_limit = bytes_limit(size_limit);
        let row = NewRow {
            f: Fields {
                key: to_val(key)?,
                raw,
                store_time,
                expire_time,
                access_time,
                access_count,
                tag: to_val(tag)?,
                size,
                mode,
                filename,
            },
            value: to_val(value)?,
        };
        let p = policy(policy_name)?;
        let (old, culled) = self.run(py, move |s| {
            s.with_lock(true, |s| {
                let old = s.put(row)?;
                let culled = if cull_limit > 0 {
                    s.cull(store_time, cull_limit, size_limit, p)?
                } else {
                    Vec::new()
                };
                Ok((old, culled))
            })
        })?;
        Ok((opt_row(py, old)?, names(py, culled)?))
    }

    fn delete(&self, py: Python<'_>, key: &Bound<'_, PyAny>, raw: bool) -> PyResult<Py<PyAny>> {
        let key = to_val(key)?;
        let r = self.run(py, move |s| s.delete(&key, raw))?;
        opt_row(py, r)
    }

    #[pyo3(signature = (key, raw, now, expire_time))]
    fn touch(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        raw: bool,
        now: f64,
        expire_time: Option<f64>,
    ) -> PyResult<bool> {
        let key = to_val(key)?;
        self.run(py, move |s| s.touch(&key, raw, now, expire_time))
    }

    #[pyo3(signature = (now, limit=None))]
    fn expire(&self, py: Python<'_>, now: f64, limit: Option<usize>) -> PyResult<Py<PyAny>> {
        let v = self.run(py, move |s| s.expire(now, limit))?;
        names(py, v)
    }

    fn evict(&self, py: Python<'_>, tag: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let tag = to_val(tag)?;
        let v = self.run(py, move |s| s.evict(&tag))?;
        names(py, v)
    }

    fn clear(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let v = self.run(py, |s| s.clear())?;
        names(py, v)
    }

    fn cull(
        &self,
        py: Python<'_>,
        now: f64,
        limit: usize,
        size_limit: f64,
        policy_name: &str,
    ) -> PyResult<Py<PyAny>> {
        let size_limit = bytes_limit(size_limit);
        let p = policy(policy_name)?;
        let v = self.run(py, move |s| s.cull(now, limit, size_limit, p))?;
        names(py, v)
    }

    fn count(&self, py: Python<'_>) -> PyResult<usize> {
        self.run(py, |s| s.count())
    }

    fn volume(&self, py: Python<'_>) -> PyResult<u64> {
        self.run(py, |s| s.volume())
    }

    fn stats(&self, py: Python<'_>) -> PyResult<(i64, i64)> {
        self.run(py, |s| s.stats())
    }

    fn reset_stats(&self, py: Python<'_>) -> PyResult<()> {
        self.run(py, |s| s.reset_stats())
    }

    fn settings(&self, py: Python<'_>) -> PyResult<Py<PyDict>> {
        let v = self.run(py, |s| s.settings())?;
        let d = PyDict::new(py);
        for (k, val) in v {
            d.set_item(k, from_val(py, val)?)?;
        }
        Ok(d.unbind())
    }

    fn set_setting(&self, py: Python<'_>, name: String, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let v = to_val(value)?;
        self.run(py, move |s| s.set_setting(&name, &v))
    }

    /// `(key, raw)` pairs in rowid order, or key order with `by_key`.
    #[pyo3(signature = (by_key=false, reverse=false))]
    fn keys(
        &self,
        py: Python<'_>,
        by_key: bool,
        reverse: bool,
    ) -> PyResult<Vec<(Py<PyAny>, bool)>> {
        let v = self.run(py, move |s| s.keys(by_key, reverse))?;
        v.into_iter()
            .map(|(k, raw)| Ok((from_val(py, k)?, raw)))
            .collect()
    }

    fn end_row(&self, py: Python<'_>, last: bool) -> PyResult<Py<PyAny>> {
        let r = self.run(py, move |s| s.end_row(last))?;
        opt_row(py, r)
    }

    fn end_in_range(
        &self,
        py: Python<'_>,
        lo: &Bound<'_, PyAny>,
        hi: &Bound<'_, PyAny>,
        last: bool,
    ) -> PyResult<Py<PyAny>> {
        let (lo, hi) = (to_val(lo)?, to_val(hi)?);
        let r = self.run(py, move |s| s.end_in_range(&lo, &hi, last))?;
        opt_row(py, r)
    }

    #[pyo3(signature = (fix=false))]
    fn check(&self, py: Python<'_>, fix: bool) -> PyResult<Vec<String>> {
        self.run(py, move |s| s.check(fix))
    }

    fn compact(&self, py: Python<'_>) -> PyResult<()> {
        self.run(py, |s| s.with_lock(true, |s| s.compact()))
    }

    // ---- the fast path of `Cache` with the default `Disk` (see kv_values.rs) ----
    // Each returns `kv_values::slow()` before doing anything when the call is the Python
    // path's (a key that needs pickling, a value that needs a file).

    /// `Cache.get(key, default, retry=retry)`: the value, `default`, or a `Deferred` row.
    #[pyo3(signature = (key, default, policy_name, statistics, retry=false))]
    fn get_value(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        default: Py<PyAny>,
        policy_name: &str,
        statistics: &Bound<'_, PyAny>,
        retry: bool,
    ) -> PyResult<Py<PyAny>> {
        let Some(key) = kv_values::raw_key(key) else {
            return Ok(kv_values::slow(py));
        };
        let p = policy(policy_name)?;
        let stats = statistics.is_truthy()?;
        let now = kv_values::now(py)?;
        let columns = |r: &Row, v: Val| (r.f.mode, r.f.filename.clone(), v);
        let found = self.find(py, retry, &key, now, p, stats, columns)?;
        let Some((mode, filename, value)) = found else {
            return Ok(default);
        };
        let value = match kv_values::decode_inline(py, mode, &filename, value)? {
            Ok(decoded) => return Ok(decoded),
            Err(value) => value,
        };
        let value = match value {
            Val::Null => None,
            v => Some(from_val(py, v)?),
        };
        Ok(Py::new(
            py,
            Deferred {
                mode,
                filename,
                value,
            },
        )?
        .into_any())
    }

    /// `Cache.set(key, value, expire, tag=tag, retry=retry)`: True once stored.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (key, value, expire, tag, retry, min_file_size, pickle_protocol, cull_limit, size_limit, policy_name))]
    fn set_value(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        value: &Bound<'_, PyAny>,
        expire: Option<f64>,
        tag: &Bound<'_, PyAny>,
        retry: bool,
        min_file_size: f64,
        pickle_protocol: i32,
        cull_limit: usize,
        size_limit: f64,
        policy_name: &str,
    ) -> PyResult<Py<PyAny>> {
        let Some(key) = kv_values::raw_key(key) else {
            return Ok(kv_values::slow(py));
        };
        let Some((mode, value)) =
            kv_values::inline_value(py, value, min_file_size, pickle_protocol)?
        else {
            return Ok(kv_values::slow(py));
        };
        let cull = Cull {
            limit: cull_limit,
            size_limit: bytes_limit(size_limit),
            policy: policy(policy_name)?,
        };
        let tag = to_val(tag)?;
        let now = kv_values::now(py)?;
        let row = NewRow {
            f: Fields::stored_now(key, now, expire.map(|e| now + e), tag, mode),
            value,
        };
        let names = self.run_retry(py, retry, |s| s.set_row(row.clone(), cull))?;
        self.remove_files(py, names);
        Ok(PyBool::new(py, true).to_owned().into_any().unbind())
    }

    /// `key in cache`: a bool.
    fn contains(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let Some(key) = kv_values::raw_key(key) else {
            return Ok(kv_values::slow(py));
        };
        let now = kv_values::now(py)?;
        let found = self.find(py, false, &key, now, Policy::None, false, |_, _| ())?;
        Ok(PyBool::new(py, found.is_some())
            .to_owned()
            .into_any()
            .unbind())
    }

    /// `Cache.delete(key, retry)`: whether a live row was deleted.
    #[pyo3(signature = (key, retry=false))]
    fn delete_value(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        retry: bool,
    ) -> PyResult<Py<PyAny>> {
        let Some(key) = kv_values::raw_key(key) else {
            return Ok(kv_values::slow(py));
        };
        let now = kv_values::now(py)?;
        let gone = self.run_retry(py, retry, |s| s.delete_live(&key, true, now))?;
        let found = gone.is_some();
        self.remove_files(py, gone.flatten().into_iter().collect());
        Ok(PyBool::new(py, found).to_owned().into_any().unbind())
    }

    /// `Cache.incr(key, delta, default, retry)`: the new value; KeyError without a default.
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (key, delta, default, retry, cull_limit, size_limit, policy_name))]
    fn incr_value(
        &self,
        py: Python<'_>,
        key: &Bound<'_, PyAny>,
        delta: &Bound<'_, PyAny>,
        default: &Bound<'_, PyAny>,
        retry: bool,
        cull_limit: usize,
        size_limit: f64,
        policy_name: &str,
    ) -> PyResult<Py<PyAny>> {
        let (Some(k), Some(d)) = (kv_values::raw_key(key), kv_values::number(delta)) else {
            return Ok(kv_values::slow(py));
        };
        let start = if default.is_none() {
            None
        } else {
            match kv_values::number(default) {
                Some(n) => Some(n),
                None => return Ok(kv_values::slow(py)),
            }
        };
        let cull = Cull {
            limit: cull_limit,
            size_limit: bytes_limit(size_limit),
            policy: policy(policy_name)?,
        };
        let now = kv_values::now(py)?;
        match self.run_retry(py, retry, |s| s.incr(&k, d, start, now, cull))? {
            Incr::Done(n, names) => {
                self.remove_files(py, names);
                kv_values::num_to_py(py, n)
            }
            Incr::Missing => Err(PyKeyError::new_err(key.clone().unbind())),
            Incr::Unsupported => Ok(kv_values::slow(py)),
        }
    }
}
