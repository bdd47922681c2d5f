//! Bindings of the market-data cache. The GIL is released for all disk and CPU work and
//! taken back only to call the user's callback and to build results.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use arrow_array::RecordBatch;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use super::arrow::{ArrowStream, to_batch};
use super::errors::{fs_to_py, to_py};
use super::hot::PyHotTier;
use crate::ohlcv::fetch::{self, Fetcher, Request};
use crate::ohlcv::integrity::{self, Fault, Verify};
use crate::ohlcv::{OhlcvError, Period, Ranges, frame, log, maintenance, read, store};

pub(super) fn period(name: &str) -> PyResult<Period> {
    Period::parse(name).map_err(|e| PyValueError::new_err(e.to_string()))
}

pub(super) fn timeout(seconds: Option<f64>) -> PyResult<Option<Duration>> {
    seconds
        .map(|s| {
            Duration::try_from_secs_f64(s).map_err(|_| {
                PyValueError::new_err(format!(
                    "lock_timeout must be a non-negative number of seconds, got {s}"
                ))
            })
        })
        .transpose()
}

/// Calls the user's callback with the GIL; keeps its exception object to re-raise as is.
pub(super) struct PyFetcher {
    pub(super) callback: Py<PyAny>,
    pub(super) params: Option<Py<PyDict>>,
    pub(super) adapt: Py<PyAny>,
    pub(super) progress: Option<Py<PyAny>>,
    pub(super) symbol: String,
    pub(super) period: String,
    pub(super) error: Mutex<Option<PyErr>>,
}

impl PyFetcher {
    fn keep(&self, err: PyErr) -> OhlcvError {
        let msg = err.to_string();
        if let Ok(mut slot) = self.error.lock() {
            *slot = Some(err);
        }
        OhlcvError::Callback(msg)
    }

    fn take_error(&self) -> Option<PyErr> {
        self.error.lock().ok().and_then(|mut e| e.take())
    }

    /// Run `work` with this fetcher and the GIL released. A failure of the callback raises
    /// the callback's own exception, unchanged.
    pub(super) fn serve(
        mut self,
        py: Python<'_>,
        work: impl FnOnce(&mut PyFetcher) -> crate::ohlcv::Result<Vec<RecordBatch>> + Send,
    ) -> PyResult<ArrowStream> {
        match py.detach(|| work(&mut self)) {
            Ok(batches) => Ok(ArrowStream::new(batches)),
            Err(OhlcvError::Callback(msg)) => Err(self
                .take_error()
                .unwrap_or_else(|| to_py(py, OhlcvError::Callback(msg)))),
            Err(e) => Err(to_py(py, e)),
        }
    }
}

impl Fetcher for PyFetcher {
    fn fetch(&mut self, since: i64, limit: i64) -> crate::ohlcv::Result<RecordBatch> {
        Python::attach(|py| {
            let args = PyTuple::new(
                py,
                [
                    self.symbol.clone().into_pyobject(py)?.into_any(),
                    self.period.clone().into_pyobject(py)?.into_any(),
                    since.into_pyobject(py)?.into_any(),
                    limit.into_pyobject(py)?.into_any(),
                ],
            )?;
            let kwargs = self.params.as_ref().map(|p| p.bind(py));
            let result = self.callback.bind(py).call(args, kwargs)?;
            let adapted = self.adapt.bind(py).call1((result,))?;
            to_batch(&adapted)
        })
        .map_err(|e| self.keep(e))
    }

    fn progress(&mut self, done: i64, total: i64) {
        if let Some(p) = &self.progress {
            Python::attach(|py| {
                let _ = p.bind(py).call1((done, total));
            });
        }
    }
}

/// The engine of `get_ohlcv_with_cache` (argument checks and defaults live in Python).
#[pyfunction]
#[pyo3(signature = (base_dir, symbol, period_name, start_time, count, fetch_callback, fetch_callback_params, enable_cache, now_ms, lock_timeout, durable, adapt, progress=None, hot=None, verify="fast", compression=("zstd".to_owned(), None)))]
#[allow(clippy::too_many_arguments)]
pub fn get_ohlcv(
    py: Python<'_>,
    base_dir: PathBuf,
    symbol: String,
    period_name: String,
    start_time: i64,
    count: i64,
    fetch_callback: Py<PyAny>,
    fetch_callback_params: Option<Py<PyDict>>,
    enable_cache: bool,
    now_ms: i64,
    lock_timeout: Option<f64>,
    durable: bool,
    adapt: Py<PyAny>,
    progress: Option<Py<PyAny>>,
    hot: Option<PyRef<'_, PyHotTier>>,
    verify: &str,
    compression: (String, Option<i32>),
) -> PyResult<ArrowStream> {
    let req = Request {
        dir: fetch::data_dir(&base_dir, &symbol, &period_name),
        period: period(&period_name)?,
        start_time,
        count,
        enable_cache,
        now_ms,
        durable,
        lock_timeout: timeout(lock_timeout)?,
        hot: hot.map(|h| h.inner.clone()),
        verify: Verify::parse(verify).map_err(|e| to_py(py, e))?,
        codec: crate::ohlcv::parquet_file::codec(&compression.0, compression.1)
            .map_err(|e| to_py(py, e))?,
    };
    let fetcher = PyFetcher {
        callback: fetch_callback,
        params: fetch_callback_params,
        adapt,
        progress,
        symbol,
        period: period_name,
        error: Mutex::new(None),
    };
    fetcher.serve(py, |f| fetch::get(&req, f))
}

/// `(file, fault, reason)` of every damaged file of a folder (fault: `undecodable`,
/// `mismatch` or `missing`), checked under the folder lock.
#[pyfunction]
#[pyo3(signature = (data_dir, period_name, lock_timeout=None))]
pub fn find_corrupt(
    py: Python<'_>,
    data_dir: PathBuf,
    period_name: &str,
    lock_timeout: Option<f64>,
) -> PyResult<Vec<(PathBuf, &'static str, String)>> {
    let p = period(period_name)?;
    let found = on_folder(py, &data_dir, true, lock_timeout, || {
        integrity::check(&data_dir, &p).map(|f| f.problems)
    })?;
    Ok(found
        .into_iter()
        .map(|p| {
            let fault = match p.fault {
                Fault::Undecodable => "undecodable",
                Fault::Mismatch => "mismatch",
                Fault::Missing => "missing",
            };
            (p.path, fault, p.reason)
        })
        .collect())
}

/// Stored rows of a folder with `start <= time <= end`.
#[pyfunction]
#[pyo3(signature = (data_dir, start=None, end=None, hot=None, verify="fast"))]
pub fn read_range(
    py: Python<'_>,
    data_dir: PathBuf,
    start: Option<i64>,
    end: Option<i64>,
    hot: Option<PyRef<'_, PyHotTier>>,
    verify: &str,
) -> PyResult<ArrowStream> {
    let hot = hot.map(|h| h.inner.clone());
    let verify = Verify::parse(verify).map_err(|e| to_py(py, e))?;
    let (lo, hi) = (
        start.unwrap_or(i64::MIN),
        end.map_or(i64::MAX, |e| e.saturating_add(1)),
    );
    py.detach(|| read::read_range_hot(&data_dir, lo, hi, hot.as_deref(), verify))
        .map(ArrowStream::new)
        .map_err(|e| to_py(py, e))
}

/// The live partition files of a folder (no superseded leftover, no file named otherwise,
/// no `*.corrupt`), sorted by name: every stored row is in exactly one of them.
#[pyfunction]
pub fn live_files(py: Python<'_>, data_dir: PathBuf) -> PyResult<Vec<PathBuf>> {
    py.detach(|| {
        let files: Vec<store::DataFile> = store::list(&data_dir)?
            .into_iter()
            .filter(|f| f.key.is_some())
            .collect();
        let stale = store::superseded(&files)?;
        Ok(files
            .into_iter()
            .filter(|f| !stale.contains(&f.path))
            .map(|f| f.path)
            .collect())
    })
    .map_err(|e: OhlcvError| to_py(py, e))
}

/// Raise `ValueError` unless `name` (and `level`) name a codec files can be written with.
#[pyfunction]
#[pyo3(signature = (name, level=None))]
pub fn check_codec(py: Python<'_>, name: &str, level: Option<i32>) -> PyResult<()> {
    crate::ohlcv::parquet_file::codec(name, level)
        .map(|_| ())
        .map_err(|e| to_py(py, e))
}

/// Take the folder lock unless the caller already coordinates writers itself, as the
/// original tool's `save_ohlcv` callers do (they hold `FileLock(".lock")` around it).
fn maybe_lock(
    dir: &Path,
    lock: bool,
    timeout: Option<Duration>,
) -> crate::ohlcv::Result<Option<crate::fsio::FolderLock>> {
    if lock {
        fetch::lock(dir, timeout).map(Some)
    } else {
        Ok(None)
    }
}

/// Store rows (any table with a `time` column), replacing stored rows of the same time.
#[pyfunction]
#[pyo3(signature = (data_dir, period_name, data, durable=false, lock=true, lock_timeout=None))]
#[allow(clippy::too_many_arguments)]
pub fn write_rows(
    py: Python<'_>,
    data_dir: PathBuf,
    period_name: &str,
    data: &Bound<'_, PyAny>,
    durable: bool,
    lock: bool,
    lock_timeout: Option<f64>,
) -> PyResult<usize> {
    let p = period(period_name)?;
    let raw = to_batch(data)?;
    let timeout = timeout(lock_timeout)?;
    py.detach(|| -> crate::ohlcv::Result<usize> {
        let batch = frame::normalize(&raw, false).map_err(OhlcvError::BadCallbackData)?;
        let merged = frame::merge(vec![(0, batch)]).map_err(OhlcvError::BadCallbackData)?;
        let batch = frame::concat(merged).map_err(OhlcvError::BadCallbackData)?;
        if batch.num_rows() == 0 {
            return Ok(0);
        }
        std::fs::create_dir_all(&data_dir).map_err(|e| crate::fsio::FsError::io(&data_dir, e))?;
        let _guard = maybe_lock(&data_dir, lock, timeout)?;
        store::write_rows(&data_dir, &p, &batch, durable)?;
        Ok(batch.num_rows())
    })
    .map_err(|e| to_py(py, e))
}

/// The log's entries as dicts with the original fields.
#[pyfunction]
pub fn log_entries(py: Python<'_>, data_dir: PathBuf) -> PyResult<Vec<Py<PyDict>>> {
    let entries = py
        .detach(|| log::read_entries(&data_dir))
        .map_err(|e| to_py(py, e))?;
    entries
        .iter()
        .map(|e| {
            let d = PyDict::new(py);
            d.set_item("fetch_time", &e.fetch_time)?;
            d.set_item("data_start", e.data_start)?;
            d.set_item("data_end", e.data_end)?;
            d.set_item("count", e.count)?;
            d.set_item("source", &e.source)?;
            Ok(d.unbind())
        })
        .collect()
}

/// Append a log line (inclusive `data_start..=data_end`, as the original tool writes them).
#[pyfunction]
#[pyo3(signature = (data_dir, data_start, data_end, count, source, now_ms, durable=false))]
#[allow(clippy::too_many_arguments)]
pub fn log_append(
    py: Python<'_>,
    data_dir: PathBuf,
    data_start: i64,
    data_end: i64,
    count: i64,
    source: String,
    now_ms: i64,
    durable: bool,
) -> PyResult<()> {
    let entry = log::Entry {
        fetch_time: crate::ohlcv::period::iso_utc(now_ms),
        data_start,
        data_end,
        count,
        source,
    };
    py.detach(|| {
        std::fs::create_dir_all(&data_dir).map_err(|e| crate::fsio::FsError::io(&data_dir, e))?;
        log::append(&data_dir, &entry, durable)
    })
    .map_err(|e| to_py(py, e))
}

/// Merge the log into one line per covered range (under the folder lock).
#[pyfunction]
#[pyo3(signature = (data_dir, period_name, durable=false, lock=true, lock_timeout=None))]
pub fn log_compact(
    py: Python<'_>,
    data_dir: PathBuf,
    period_name: &str,
    durable: bool,
    lock: bool,
    lock_timeout: Option<f64>,
) -> PyResult<()> {
    let p = period(period_name)?;
    let timeout = timeout(lock_timeout)?;
    py.detach(|| {
        if !data_dir.join(log::LOG_NAME).exists() {
            return Ok(());
        }
        let _guard = maybe_lock(&data_dir, lock, timeout)?;
        log::compact(&data_dir, &p, durable, true).map(|_| ())
    })
    .map_err(|e| to_py(py, e))
}

/// What the log covers, as half-open `(start, end)` ranges.
#[pyfunction]
pub fn coverage(py: Python<'_>, data_dir: PathBuf, period_name: &str) -> PyResult<Vec<(i64, i64)>> {
    let p = period(period_name)?;
    py.detach(|| log::coverage(&data_dir, &p))
        .map(|r| r.as_slice().to_vec())
        .map_err(|e| to_py(py, e))
}

/// Rebuild the log from the stored rows; returns the number of lines written.
#[pyfunction]
#[pyo3(signature = (data_dir, period_name, now_ms, durable=false, lock=true, lock_timeout=None))]
#[allow(clippy::too_many_arguments)]
pub fn rebuild_log(
    py: Python<'_>,
    data_dir: PathBuf,
    period_name: &str,
    now_ms: i64,
    durable: bool,
    lock: bool,
    lock_timeout: Option<f64>,
) -> PyResult<usize> {
    let p = period(period_name)?;
    on_folder(py, &data_dir, lock, lock_timeout, || {
        maintenance::rebuild_log(&data_dir, &p, now_ms, durable)
    })
}

/// Run maintenance `f` on an existing folder under its lock (`lock=false`: the caller holds
/// it), without the GIL; a folder that does not exist is left alone and gives the default.
fn on_folder<R: Default + Send>(
    py: Python<'_>,
    data_dir: &Path,
    lock: bool,
    lock_timeout: Option<f64>,
    f: impl FnOnce() -> crate::ohlcv::Result<R> + Send,
) -> PyResult<R> {
    let timeout = timeout(lock_timeout)?;
    py.detach(|| {
        if !data_dir.is_dir() {
            return Ok(R::default());
        }
        let _guard = maybe_lock(data_dir, lock, timeout)?;
        f()
    })
    .map_err(|e| to_py(py, e))
}

/// Heal a folder under its lock: move damaged files aside and uncover what they held,
/// uncover what recorded files that are gone held, record anew files another tool rewrote.
/// Returns `(moved, missing, rerecorded)` paths.
#[pyfunction]
#[pyo3(signature = (data_dir, period_name, durable=false, lock_timeout=None))]
pub fn repair(
    py: Python<'_>,
    data_dir: PathBuf,
    period_name: &str,
    durable: bool,
    lock_timeout: Option<f64>,
) -> PyResult<(Vec<PathBuf>, Vec<PathBuf>, Vec<PathBuf>)> {
    let p = period(period_name)?;
    let done = on_folder(py, &data_dir, true, lock_timeout, || {
        integrity::repair(&data_dir, &p, durable)
    })?;
    Ok((done.moved, done.missing, done.rerecorded))
}

/// Forget `[lo, hi)` of a folder (its coverage, and with `drop_rows` its rows); returns the
/// rows dropped. A folder that does not exist has nothing to forget.
#[pyfunction]
#[pyo3(signature = (data_dir, period_name, lo, hi, drop_rows=false, durable=false, lock_timeout=None))]
#[allow(clippy::too_many_arguments)]
pub fn forget(
    py: Python<'_>,
    data_dir: PathBuf,
    period_name: &str,
    lo: i64,
    hi: i64,
    drop_rows: bool,
    durable: bool,
    lock_timeout: Option<f64>,
) -> PyResult<usize> {
    let p = period(period_name)?;
    on_folder(py, &data_dir, true, lock_timeout, || {
        maintenance::forget(&data_dir, &p, lo, hi, drop_rows, durable)
    })
}

/// Take a folder's lock and hold it for `seconds` (for tests and maintenance scripts).
#[pyfunction]
#[pyo3(signature = (data_dir, seconds, lock_timeout=None))]
pub fn hold_lock(
    py: Python<'_>,
    data_dir: PathBuf,
    seconds: f64,
    lock_timeout: Option<f64>,
) -> PyResult<()> {
    let timeout = timeout(lock_timeout)?;
    let hold = Duration::try_from_secs_f64(seconds)
        .map_err(|_| PyValueError::new_err("seconds must be >= 0"))?;
    py.detach(|| {
        std::fs::create_dir_all(&data_dir).map_err(|e| crate::fsio::FsError::io(&data_dir, e))?;
        let _guard = crate::fsio::FolderLock::acquire(&data_dir.join(".lock"), timeout)?;
        std::thread::sleep(hold);
        Ok(())
    })
    .map_err(|e| fs_to_py(py, e))
}

/// `[start, end)` minus the union of `covered`.
#[pyfunction]
pub fn ranges_missing(covered: Vec<(i64, i64)>, start: i64, end: i64) -> Vec<(i64, i64)> {
    covered.into_iter().collect::<Ranges>().missing(start, end)
}

/// The union of ranges, normalised: sorted, disjoint, adjacent ranges merged.
#[pyfunction]
pub fn ranges_union(ranges: Vec<(i64, i64)>) -> Vec<(i64, i64)> {
    ranges.into_iter().collect::<Ranges>().as_slice().to_vec()
}

/// Nominal length of a period in ms (30 days for `1M`).
#[pyfunction]
pub fn period_ms(period_name: &str) -> PyResult<i64> {
    Ok(period(period_name)?.nominal_ms())
}

/// Open time of the candle containing `t` (`floor`), or `t + n` periods (`add`).
#[pyfunction]
pub fn period_floor(period_name: &str, t: i64) -> PyResult<i64> {
    period(period_name)?
        .floor(t)
        .map_err(|e| PyValueError::new_err(e.to_string()))
}

#[pyfunction]
pub fn period_add(period_name: &str, t: i64, n: i64) -> PyResult<i64> {
    period(period_name)?
        .add(t, n)
        .map_err(|e| PyValueError::new_err(e.to_string()))
}

/// The partition key (file stem) of a candle, and the window name of a period.
#[pyfunction]
pub fn partition_key(t: i64, period_name: &str) -> PyResult<String> {
    period(period_name)?
        .partition_key(t)
        .map_err(|e| PyValueError::new_err(e.to_string()))
}

#[pyfunction]
pub fn partition_window(period_name: &str) -> PyResult<&'static str> {
    Ok(period(period_name)?.window().name())
}
