//! Bindings of the archive backfill: the whole run happens without the GIL, which is taken
//! back only to report progress and to build the report.

use std::path::PathBuf;

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use super::errors::{fs_to_py, to_py};
use super::ohlcv::{period, timeout};
use super::shared::PyRoot;
use crate::shared::Log;
use crate::vision::{self, Backfill, Market, VisionError, registry};

pub fn vision_to_py(py: Python<'_>, err: VisionError) -> PyErr {
    match err {
        VisionError::InvalidArgument(msg) => PyValueError::new_err(msg),
        VisionError::Ohlcv(e) => to_py(py, e),
        VisionError::Fs(e) => fs_to_py(py, e),
        VisionError::Client(_) => PyOSError::new_err(err.to_string()),
    }
}

fn target(symbol: &str, market: Option<&str>, market_id: Option<&str>) -> PyResult<vision::Target> {
    let market = market.map(Market::parse).transpose();
    let market = market.map_err(|e| PyValueError::new_err(e.to_string()))?;
    vision::market::infer(symbol, market, market_id)
        .map_err(|e| PyValueError::new_err(e.to_string()))
}

/// `(market, market_id)` of a ccxt symbol in the archive.
#[pyfunction]
#[pyo3(signature = (symbol, market=None, market_id=None))]
pub fn vision_target(
    symbol: &str,
    market: Option<&str>,
    market_id: Option<&str>,
) -> PyResult<(&'static str, String)> {
    let t = target(symbol, market, market_id)?;
    Ok((t.market.name(), t.id))
}

/// The engine of `backfill_binance_vision` (argument checks and defaults live in Python).
#[pyfunction]
#[pyo3(signature = (base_dir, symbol, period_name, market, market_id, base_url, start_ms, end_ms, verify, proceed_on_failure, retry, workers, lock_timeout, durable, lag_ms, now_ms, progress=None, root=None, folder=None))]
#[allow(clippy::too_many_arguments)]
pub fn vision_backfill<'py>(
    py: Python<'py>,
    base_dir: PathBuf,
    symbol: String,
    period_name: &str,
    market: Option<&str>,
    market_id: Option<&str>,
    base_url: String,
    start_ms: i64,
    end_ms: Option<i64>,
    verify: bool,
    proceed_on_failure: bool,
    retry: Vec<String>,
    workers: usize,
    lock_timeout: Option<f64>,
    durable: bool,
    lag_ms: i64,
    now_ms: i64,
    progress: Option<Py<PyAny>>,
    root: Option<PyRef<'py, PyRoot>>,
    folder: Option<String>,
) -> PyResult<Bound<'py, PyDict>> {
    let p = period(period_name)?;
    let shared = match (root, folder) {
        (Some(root), Some(folder)) => Some(Log::new(root.root(), &folder, p)),
        _ => None,
    };
    let req = Backfill {
        target: target(&symbol, market, market_id)?,
        base: base_dir,
        symbol,
        period: p,
        base_url,
        start_ms,
        end_ms,
        verify,
        proceed_on_failure,
        retry,
        workers,
        lock_timeout: timeout(lock_timeout)?,
        durable,
        lag_ms,
        now_ms,
        shared,
    };
    let mut report_progress = |done: usize, total: usize| {
        if let Some(p) = &progress {
            Python::attach(|py| {
                let _ = p.bind(py).call1((done, total));
            });
        }
    };
    let report = py
        .detach(|| vision::backfill(&req, &mut report_progress))
        .map_err(|e| vision_to_py(py, e))?;
    let out = PyDict::new(py);
    out.set_item("market", req.target.market.name())?;
    out.set_item("market_id", &req.target.id)?;
    out.set_item("files_planned", report.files_planned)?;
    out.set_item("files_downloaded", report.files_downloaded)?;
    out.set_item("files_skipped", report.files_skipped)?;
    out.set_item("files_verified", report.files_verified)?;
    out.set_item("files_unverified", report.files_unverified)?;
    out.set_item("files_missing", report.files_missing)?;
    out.set_item("failures", report.failures)?;
    out.set_item("rows_written", report.rows_written)?;
    out.set_item("holes", report.holes)?;
    out.set_item("bytes_downloaded", report.bytes)?;
    Ok(out)
}

/// The registry's failing files, oldest first, as dicts.
#[pyfunction]
pub fn vision_failures(py: Python<'_>, base_dir: PathBuf) -> PyResult<Vec<Bound<'_, PyDict>>> {
    let failures = py
        .detach(|| registry::read(&base_dir))
        .map_err(|e| vision_to_py(py, e))?;
    failures
        .into_iter()
        .map(|f| {
            let d = PyDict::new(py);
            d.set_item("file", f.file)?;
            d.set_item("url", f.url)?;
            d.set_item("symbol", f.symbol)?;
            d.set_item("period", f.period)?;
            d.set_item("market", f.market)?;
            d.set_item("market_id", f.market_id)?;
            d.set_item("reason", f.reason)?;
            d.set_item("expected", f.expected)?;
            d.set_item("actual", f.actual)?;
            d.set_item("when", f.when)?;
            d.set_item("attempts", f.attempts)?;
            Ok(d)
        })
        .collect()
}

/// Move the registry to a backup named with `stamp`; returns the backup's path.
#[pyfunction]
pub fn vision_clear_failures(
    py: Python<'_>,
    base_dir: PathBuf,
    stamp: String,
) -> PyResult<Option<PathBuf>> {
    py.detach(|| registry::clear(&base_dir, &stamp))
        .map_err(|e| vision_to_py(py, e))
}
