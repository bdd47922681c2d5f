//! Bindings of the shared cache on object storage. As for the local cache, the GIL is
//! released for all network and CPU work and taken back only for the user's callback.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::arrow::ArrowStream;
use super::errors::to_py;
use super::hot::PyHotTier;
use super::ohlcv::{PyFetcher, period, timeout};
use crate::ohlcv::fetch::Request;
use crate::ohlcv::integrity::Verify;
use crate::ohlcv::parquet_file;
use crate::shared::{Log, Root, market, runtime};

/// A cache root on object storage (`s3://bucket/prefix`, `gs://…`, `az://…`, `file://…`),
/// checked once per process to honour create-if-absent writes.
#[pyclass(frozen, name = "ObjectRoot", module = "candlecache._core")]
pub struct PyRoot {
    root: Root,
}

impl PyRoot {
    pub(super) fn root(&self) -> &Root {
        &self.root
    }
}

#[pymethods]
impl PyRoot {
    #[new]
    #[pyo3(signature = (url, options=None))]
    fn new(py: Python<'_>, url: &str, options: Option<HashMap<String, String>>) -> PyResult<Self> {
        let root = py
            .detach(|| -> crate::ohlcv::Result<Root> {
                let root = Root::parse(url, options.unwrap_or_default())?;
                runtime::block_on(root.self_test())??;
                Ok(root)
            })
            .map_err(|e| to_py(py, e))?;
        Ok(PyRoot { root })
    }

    #[getter]
    fn url(&self) -> &str {
        self.root.url()
    }

    fn __repr__(&self) -> String {
        format!("ObjectRoot({:?})", self.root.url())
    }
}

/// Whether `s` is an object store URL (`s3://`, `gs://`, `az://`, `file://`, …) rather than
/// a local path.
#[pyfunction]
pub fn is_object_url(s: &str) -> bool {
    crate::shared::is_url(s)
}

fn lease_of(seconds: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(seconds)
        .ok()
        .filter(|d| *d >= Duration::from_secs(1))
        .ok_or_else(|| {
            PyValueError::new_err(format!(
                "lease must be a number of seconds >= 1, got {seconds}"
            ))
        })
}

/// The engine of `get_ohlcv_with_cache` on an object store root.
#[pyfunction]
#[pyo3(signature = (root, folder, symbol, period_name, start_time, count, fetch_callback, fetch_callback_params, enable_cache, now_ms, lock_timeout, adapt, progress=None, hot=None, compression=("zstd".to_owned(), None), lease=60.0))]
#[allow(clippy::too_many_arguments)]
pub fn shared_get_ohlcv(
    py: Python<'_>,
    root: PyRef<'_, PyRoot>,
    folder: String,
    symbol: String,
    period_name: String,
    start_time: i64,
    count: i64,
    fetch_callback: Py<PyAny>,
    fetch_callback_params: Option<Py<PyDict>>,
    enable_cache: bool,
    now_ms: i64,
    lock_timeout: Option<f64>,
    adapt: Py<PyAny>,
    progress: Option<Py<PyAny>>,
    hot: Option<PyRef<'_, PyHotTier>>,
    compression: (String, Option<i32>),
    lease: f64,
) -> PyResult<ArrowStream> {
    let p = period(&period_name)?;
    let log = Log::new(&root.root, &folder, p);
    let req = Request {
        dir: log.place().into(),
        period: p,
        start_time,
        count,
        enable_cache,
        now_ms,
        durable: true,
        lock_timeout: timeout(lock_timeout)?,
        hot: hot.map(|h| h.inner.clone()),
        verify: Verify::Fast,
        codec: parquet_file::codec(&compression.0, compression.1).map_err(|e| to_py(py, e))?,
    };
    let lease = lease_of(lease)?;
    let fetcher = PyFetcher {
        callback: fetch_callback,
        params: fetch_callback_params,
        adapt,
        progress,
        symbol,
        period: period_name,
        error: Mutex::new(None),
    };
    fetcher.serve(py, |f| market::get(&req, &log, lease, f))
}

/// Stored rows of a folder below an object store root with `start <= time <= end`.
#[pyfunction]
#[pyo3(signature = (root, folder, period_name, start=None, end=None, hot=None))]
pub fn shared_read_range(
    py: Python<'_>,
    root: PyRef<'_, PyRoot>,
    folder: String,
    period_name: &str,
    start: Option<i64>,
    end: Option<i64>,
    hot: Option<PyRef<'_, PyHotTier>>,
) -> PyResult<ArrowStream> {
    let log = Log::new(&root.root, &folder, period(period_name)?);
    let hot = hot.map(|h| h.inner.clone());
    let (lo, hi) = (
        start.unwrap_or(i64::MIN),
        end.map_or(i64::MAX, |e| e.saturating_add(1)),
    );
    py.detach(|| {
        let state = runtime::block_on(log.state())??;
        market::read(&log, state, lo, hi, hot.as_deref())
    })
    .map(ArrowStream::new)
    .map_err(|e| to_py(py, e))
}

/// The merged ranges `[start, end)` the shared log of a folder covers.
#[pyfunction]
pub fn shared_coverage(
    py: Python<'_>,
    root: PyRef<'_, PyRoot>,
    folder: String,
    period_name: &str,
) -> PyResult<Vec<(i64, i64)>> {
    let log = Log::new(&root.root, &folder, period(period_name)?);
    py.detach(|| market::coverage(&log))
        .map(|r| r.as_slice().to_vec())
        .map_err(|e| to_py(py, e))
}

/// The names of the folders directly below `sub` (`""`: the root itself) of an object
/// store root: one listing with a delimiter.
#[pyfunction]
#[pyo3(signature = (root, sub=""))]
pub fn shared_folders(py: Python<'_>, root: PyRef<'_, PyRoot>, sub: &str) -> PyResult<Vec<String>> {
    let root = root.root.clone();
    py.detach(|| -> crate::ohlcv::Result<Vec<String>> {
        Ok(runtime::block_on(crate::shared::commits::folders(
            &root, sub,
        ))??)
    })
    .map_err(|e| to_py(py, e))
}
