//! `candlecache._core.resample`: exact aggregation into a coarser period, off the GIL.

use pyo3::prelude::*;

use super::arrow::{ArrowStream, import_stream};
use super::errors::to_py;
use super::ohlcv::period;
use crate::ohlcv::resample::resample as aggregate;
use crate::ohlcv::{OhlcvError, Ranges, frame};

/// Raise `ValueError` unless `coarse` candles are made of whole `fine` ones.
#[pyfunction]
pub fn check_nested(py: Python<'_>, fine: &str, coarse: &str) -> PyResult<()> {
    crate::ohlcv::resample::check_nested(&period(fine)?, &period(coarse)?).map_err(|e| to_py(py, e))
}

/// Move the `fine` candles of `fine_dir` opening before `cutoff` into `coarse_dir` as
/// `coarse` candles (whole, covered ones only); returns `(written, removed)`.
#[pyfunction]
#[pyo3(signature = (fine_dir, fine, coarse_dir, coarse, cutoff, now_ms, durable=false, lock_timeout=None))]
#[allow(clippy::too_many_arguments)]
pub fn compact_tier(
    py: Python<'_>,
    fine_dir: std::path::PathBuf,
    fine: &str,
    coarse_dir: std::path::PathBuf,
    coarse: &str,
    cutoff: i64,
    now_ms: i64,
    durable: bool,
    lock_timeout: Option<f64>,
) -> PyResult<(usize, usize)> {
    let (f, c) = (period(fine)?, period(coarse)?);
    let timeout = super::ohlcv::timeout(lock_timeout)?;
    py.detach(|| {
        crate::ohlcv::tiers::compact_tier(
            &fine_dir,
            &f,
            &coarse_dir,
            &c,
            cutoff,
            now_ms,
            durable,
            timeout,
        )
    })
    .map(|m| (m.written, m.removed))
    .map_err(|e| to_py(py, e))
}

/// Candles of `data` (anything with `__arrow_c_stream__`) aggregated into `period_name`.
/// `from_period` checks that its candles nest in the target's; with `covered`, a candle is
/// kept only if those ranges cover it up to `until`.
#[pyfunction]
#[pyo3(signature = (data, period_name, from_period=None, covered=None, until=i64::MAX))]
pub fn resample(
    py: Python<'_>,
    data: &Bound<'_, PyAny>,
    period_name: &str,
    from_period: Option<&str>,
    covered: Option<Vec<(i64, i64)>>,
    until: i64,
) -> PyResult<ArrowStream> {
    let to = period(period_name)?;
    if let Some(fine) = from_period {
        crate::ohlcv::resample::check_nested(&period(fine)?, &to).map_err(|e| to_py(py, e))?;
    }
    let batch = import_stream(data)?;
    let covered: Option<Ranges> = covered.map(|c| c.into_iter().collect());
    py.detach(|| {
        let rows = frame::normalize(&batch, false).map_err(OhlcvError::InvalidArgument)?;
        let sorted = frame::merge(vec![(0, rows)]).map_err(OhlcvError::InvalidArgument)?;
        let rows = frame::concat(sorted).map_err(OhlcvError::InvalidArgument)?;
        aggregate(&rows, &to, covered.as_ref().map(|c| (c, until)))
    })
    .map(|b| ArrowStream::new(vec![b]))
    .map_err(|e| to_py(py, e))
}
