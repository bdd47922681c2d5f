//! `candlecache._core.HotTier`: a `MarketCache`'s decoded files, shared with the engine.

use std::sync::Arc;

use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::ohlcv::HotTier;

#[pyclass(module = "candlecache._core", name = "HotTier", frozen)]
pub struct PyHotTier {
    pub inner: Arc<HotTier>,
}

#[pymethods]
impl PyHotTier {
    #[new]
    fn new(budget_bytes: usize) -> Self {
        PyHotTier {
            inner: Arc::new(HotTier::new(budget_bytes)),
        }
    }

    #[getter]
    fn budget(&self) -> usize {
        self.inner.budget()
    }

    /// Files decoded from disk so far (asked twice per call: cheaper than `stats()`).
    #[getter]
    fn decodes(&self) -> u64 {
        self.inner.stats().decodes
    }

    /// `{"hits", "decodes", "evictions", "bytes", "entries", "budget"}`.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.inner.stats();
        let d = PyDict::new(py);
        d.set_item("hits", s.hits)?;
        d.set_item("decodes", s.decodes)?;
        d.set_item("evictions", s.evictions)?;
        d.set_item("bytes", s.bytes)?;
        d.set_item("entries", s.entries)?;
        d.set_item("budget", s.budget)?;
        Ok(d)
    }

    fn reset_stats(&self) {
        self.inner.reset_stats();
    }

    fn clear(&self) {
        self.inner.clear();
    }
}
